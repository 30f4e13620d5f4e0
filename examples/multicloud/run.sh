#!/usr/bin/env bash
# The multicloud example: one AES-256 material imported into AWS KMS, Google Cloud KMS and an
# Azure Managed HSM, and one EC P-256 signing key into an Azure Key Vault and AWS KMS, all
# against keyplan's embedded emulators. Then a second plan shows there is nothing left to do.
# Run from the repository root after `make venv`: bash examples/multicloud/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
keyplan="${KEYPLAN:-$here/../../.venv/bin/keyplan}"
cd "$here"

echo "==> keyplan validate"
"$keyplan" validate
echo
echo "==> keyplan apply -auto-approve   (generate each material once, wrap it for every cloud, import)"
"$keyplan" apply -auto-approve
echo
echo "==> keyplan state show key.data   (one material, its fingerprint, and where it was imported)"
"$keyplan" state show key.data
echo "==> keyplan plan -detailed-exitcode   (a second plan: nothing to do)"
set +e
"$keyplan" plan -detailed-exitcode
code=$?
set -e
if [ "$code" -ne 0 ]; then
  echo "expected no changes on the second plan, got exit code $code" >&2
  exit 1
fi
echo
echo "Done. The state is in $here/keyplan.kpstate.json; the emulators' data and the keystore are in $here/.keyplan/."
