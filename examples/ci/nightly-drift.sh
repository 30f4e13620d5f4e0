#!/usr/bin/env bash
# Scheduled drift check for keyplan: compares every cloud with the state and fails loudly when
# a key was changed outside keyplan (material deleted or expired, disabled, scheduled for
# deletion, tags/aliases/description edited, material keyplan did not import made current,
# keys tagged by this state that state does not know, material expiring soon).
#
# Exit codes (those of `keyplan drift`):
#   0  clean: the clouds match the state
#   2  drift: the report is printed and kept in $REPORT_FILE; the job fails
#   1  keyplan could not check (configuration, credentials, unreachable cloud, held lock)
#
# Settings (environment):
#   KEYPLAN         the keyplan command                          (default: keyplan)
#   KEYPLAN_DIR     the configuration directory                  (default: .)
#   REPORT_FILE     where the JSON drift report is written        (default: keyplan-drift.json)
#   EXPIRY_HORIZON  report material expiring within this          (default: 30d)
#   LOCK_TIMEOUT    how long to wait for a running apply's lock   (default: 10m)
set -uo pipefail

KEYPLAN=${KEYPLAN:-keyplan}
KEYPLAN_DIR=${KEYPLAN_DIR:-.}
REPORT_FILE=${REPORT_FILE:-keyplan-drift.json}
EXPIRY_HORIZON=${EXPIRY_HORIZON:-30d}
LOCK_TIMEOUT=${LOCK_TIMEOUT:-10m}

"$KEYPLAN" -chdir "$KEYPLAN_DIR" drift -json -no-color -expiry-horizon="$EXPIRY_HORIZON" \
  -lock-timeout="$LOCK_TIMEOUT" >"$REPORT_FILE"
code=$?

case "$code" in
  0)
    echo "keyplan drift: clean. The clouds match the state."
    ;;
  2)
    {
      echo "keyplan drift: KEYS WERE CHANGED OUTSIDE KEYPLAN. The JSON report is in $REPORT_FILE."
      echo
      "$KEYPLAN" -chdir "$KEYPLAN_DIR" drift -no-color -expiry-horizon="$EXPIRY_HORIZON" \
        -lock-timeout="$LOCK_TIMEOUT" || true
      echo
      echo "Review each item. To restore what the configuration says, run keyplan plan and apply. To keep"
      echo "the clouds' values instead, run: keyplan apply -refresh-only"
    } >&2
    ;;
  *)
    echo "keyplan drift could not check the clouds (exit $code); see the diagnostics above." >&2
    code=1
    ;;
esac
exit "$code"
