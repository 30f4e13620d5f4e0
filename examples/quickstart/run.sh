#!/usr/bin/env bash
# The quickstart: apply the example against the embedded AWS KMS emulator, then show that a
# second plan has nothing to do. Run through `make quickstart` from the repository root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
keyplan="$here/../../.venv/bin/keyplan"
cd "$here"

echo "==> keyplan validate"
"$keyplan" validate
echo
echo "==> keyplan apply -auto-approve   (generate, wrap and import one key per app and environment)"
"$keyplan" apply -auto-approve
echo
echo "==> keyplan state list"
"$keyplan" state list
echo
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
echo "==> keyplan verify   (prove the cloud holds exactly the keystore's material, per key)"
"$keyplan" verify
echo
echo "Done. The state is in $here/keyplan.kpstate.json; the emulator's data and the keystore are in $here/.keyplan/."
echo "Run 'make quickstart' again any time: it converges to the same keys."
