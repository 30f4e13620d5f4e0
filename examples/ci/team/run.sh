#!/usr/bin/env bash
# The CI scripts against shared state: start a local S3 (moto's server mode, from the test
# extras), create the state bucket, then run the review pipeline's plan and apply stages and the
# nightly drift job exactly as a CI system would, and show that the state lives in the bucket.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
keyplan="${KEYPLAN:-$repo/.venv/bin/keyplan}"
cd "$here"
# a fresh run every time: a new bucket below, so also a new embedded cloud and keystore
rm -rf .keyplan keyplan.kpplan keyplan-plan.md keyplan-drift.json

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true; rm -f "$here"/keyplan.kpplan "$here"/keyplan-plan.md "$here"/keyplan-drift.json' EXIT
export KEYPLAN_VAR_state_endpoint="http://127.0.0.1:$port"
"$python" - <<PY
import time, boto3
s3 = boto3.client("s3", endpoint_url="$KEYPLAN_VAR_state_endpoint", region_name="eu-west-1",
                  aws_access_key_id="keyplan-local", aws_secret_access_key="keyplan-local")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="acme-keyplan-state", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket="acme-keyplan-state", VersioningConfiguration={"Status": "Enabled"})
        break
    except Exception:
        time.sleep(0.1)
PY

export KEYPLAN="$keyplan" KEYPLAN_DIR="$here"
echo "==> review.sh plan   (the plan stage: saves the plan and the Markdown comment)"
set +e
../review.sh plan
code=$?
set -e
[ "$code" -eq 2 ] || { echo "expected changes (exit 2), got $code" >&2; exit 1; }
echo
echo "==> review.sh apply  (the apply stage: applies exactly the reviewed plan)"
../review.sh apply
echo
echo "==> nightly-drift.sh"
../nightly-drift.sh
echo
echo "==> the state is in the bucket, not in this directory"
"$KEYPLAN" -chdir "$here" state list
test ! -e "$here/keyplan.kpstate.json"
"$python" - <<PY
import boto3
s3 = boto3.client("s3", endpoint_url="$KEYPLAN_VAR_state_endpoint", region_name="eu-west-1",
                  aws_access_key_id="keyplan-local", aws_secret_access_key="keyplan-local")
versions = s3.list_object_versions(Bucket="acme-keyplan-state", Prefix="ci/keys.kpstate.json")["Versions"]
print(f"s3://acme-keyplan-state/ci/keys.kpstate.json: {sum(v['Key'] == 'ci/keys.kpstate.json' for v in versions)} versions kept")
PY
