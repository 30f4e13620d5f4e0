#!/usr/bin/env bash
# The HSM example: create a SoftHSM2 development token (once), apply the configuration to the
# embedded AWS, Google Cloud and Azure Managed HSM emulators, and show that a second plan has
# nothing to do. Run from the repository root after `make venv` (SoftHSM2: apt-get install softhsm2).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
keyplan="$here/../../.venv/bin/keyplan"
pins=".keyplan/softhsm/pins.env"
cd "$here"

if [ ! -f .keyplan/softhsm/softhsm2.conf ]; then
  echo "==> keyplan hsm init-dev --pin-file $pins   (a SoftHSM2 token in .keyplan/softhsm; PINs generated into a 0600 file)"
  "$keyplan" hsm init-dev --pin-file "$pins"
  echo
fi
# shellcheck disable=SC1090
. "$pins"

echo "==> keyplan validate"
"$keyplan" validate
echo
echo "==> keyplan apply -auto-approve   (generate in the token, wrap in the token for each cloud, import)"
"$keyplan" apply -auto-approve
echo
echo "==> keyplan state show key.payments"
"$keyplan" state show key.payments
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
echo "Done. The token, its PINs and the emulators' data are in $here/.keyplan/; the state is $here/keyplan.kpstate.json."
echo "Start over with: rm -rf $here/.keyplan $here/keyplan.kpstate.json*"
