"""Hostile clouds at the quota edges, through the real CLI against the embedded emulators: a
cloud that throttles a proof's calls forever, and an interrupt while every call is throttled.
The runs are processes of their own (forked) so that one that never ends fails the test instead of
hanging it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from providers.aws import KmsEmulator
from providers.emulation.server import start_embedded
from tests.e2e.conftest import ForkedKeyplan, Result, Workspace, keyplan_in_fork

HANG = 180  # seconds after which a run counts as hung (a bound, not a speed check)

MAC = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "mac" {
  algorithm = "HMAC_SHA256"
  usage     = "mac"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""

FOUR = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  for_each  = toset(["a", "b", "c", "d"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""

MAC_THROTTLED_FOREVER = {"aws-main": {"errors": [{"operation": "GenerateMac", "status": 429, "count": 1_000_000}]}}


def environment(faults: dict[str, object] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KEYPLAN_EMULATOR_FAULTS"}
    if faults is not None:
        env["KEYPLAN_EMULATOR_FAULTS"] = json.dumps(faults)
    return env


def run(workspace: Workspace, *args: str, faults: dict[str, object] | None = None) -> Result:
    return keyplan_in_fork(workspace.path, *args, env=environment(faults), timeout=HANG)


def test_verify_against_a_cloud_that_throttles_its_proofs_forever_stops_at_the_throttle_timeout(
    workspace: Workspace,
) -> None:
    # The proof's call (GenerateMac) belongs to no rate class: it was retried forever, ignoring
    # -throttle-timeout, and verify had no such flag.
    workspace.write(MAC)
    assert run(workspace, "apply", "-auto-approve").code == 0
    before = workspace.state_path.read_bytes()
    stopped = run(workspace, "verify", "-throttle-timeout=2s", faults=MAC_THROTTLED_FOREVER)
    assert stopped.code == 1, stopped.output
    assert "Traceback" not in stopped.output
    assert "kept throttling GenerateMac calls for" in stopped.output
    assert "rate_limits = { GenerateMac" not in stopped.output, "no class of that name can be set"
    assert workspace.state_path.read_bytes() == before
    assert run(workspace, "verify").code == 0


def test_apply_verify_against_a_cloud_that_throttles_its_proofs_forever_ends(workspace: Workspace) -> None:
    workspace.write(MAC)
    stopped = run(workspace, "apply", "-verify", "-auto-approve", "-throttle-timeout=2s", faults=MAC_THROTTLED_FOREVER)
    assert stopped.code == 1, stopped.output
    assert "kept throttling GenerateMac calls for" in stopped.output
    assert "Traceback" not in stopped.output
    assert workspace.state()["keys"]["key.mac"]["targets"]["aws.main"]["remote_id"]
    # the key was created and imported; only its proof failed: the summary says both
    assert "Apply failed! Keys: 1 created" in stopped.stdout, stopped.stdout
    assert "1 key failed (key.mac)" in stopped.stdout


def test_a_first_interrupt_ends_the_wait_of_calls_the_cloud_throttled(workspace: Workspace) -> None:
    # Every CreateKey after the first is throttled, forever. A call the cloud answered with a
    # throttling error did nothing there, so its step has still sent nothing: the first
    # interrupt gives it up ("not sent") instead of waiting for the throttle timeout.
    workspace.write(FOUR)
    forever = {"aws-main": {"profile": "realistic", "quota_scale": 0.0001}}
    process = ForkedKeyplan(workspace.path, "apply", "-auto-approve", "-throttle-timeout=30m", env=environment(forever))
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # the burst lets one key through; the others are throttled from then on
        seen.append(line)
        if "created at aws.main" in line:
            break
    audit = workspace.path / ".keyplan" / "audit.jsonl"
    for _ in range(HANG * 10):  # until every creation was sent once (and all but one throttled)
        entries = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        if sum(1 for e in entries if e.get("action") == "create_key" and e.get("outcome") == "started") >= 4:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the first interrupt did not end the quota waits") from None
    output = "".join(seen) + rest
    assert process.returncode == 130, output
    assert "Interrupted twice" not in output
    assert "Traceback" not in output

    resumed = run(workspace, "apply", "-auto-approve")
    assert resumed.code == 0, resumed.output
    state = workspace.state()["keys"]
    assert sorted(state) == [f'key.data["{k}"]' for k in "abcd"]
    server = start_embedded(KmsEmulator, workspace.path / ".keyplan", "aws-main")
    try:
        stored = [doc for _, doc in server.app.store.list("keys")]
    finally:
        server.stop()
        server.app.store.close()
    assert len(stored) == 4, "no key was created twice"


def test_import_and_discover_against_a_cloud_that_throttles_forever_stop_at_their_throttle_timeout(
    workspace: Workspace,
) -> None:
    # They had no -throttle-timeout: a cloud answering every listing or read with a throttling
    # error held them for the default 30 minutes.
    workspace.write(FOUR)
    assert run(workspace, "apply", "-auto-approve").code == 0
    remote_id = workspace.state()["keys"]['key.data["a"]']["targets"]["aws.main"]["remote_id"]
    state = workspace.state()  # the key's record at aws.main forgotten, its material kept
    del state["keys"]['key.data["a"]']["targets"]["aws.main"]
    workspace.state_path.write_text(json.dumps(state))
    reads_throttled = {
        "aws-main": {
            "errors": [
                {"operation": operation, "status": 429, "count": 1_000_000}
                for operation in ("ListKeys", "ListAliases", "DescribeKey", "ListResourceTags")
            ]
        }
    }
    for args in (("discover", "aws.main"), ("import", 'key.data["a"]', "aws.main", remote_id)):
        stopped = run(workspace, *args, "-throttle-timeout=2s", faults=reads_throttled)
        assert stopped.code == 1, (args, stopped.output)
        assert "kept throttling" in stopped.stderr and "Traceback" not in stopped.output, stopped.output
    assert "aws.main" not in workspace.state()["keys"]['key.data["a"]']["targets"], "nothing was imported"


def test_a_first_interrupt_ends_the_wait_of_a_proof_the_cloud_throttles(workspace: Workspace) -> None:
    # apply -verify: the key is made and imported, then its proof's GenerateMac is throttled
    # forever. A call no rate class covers waited on its own, deaf to a first interrupt, until
    # -throttle-timeout (30 minutes here).
    workspace.write(MAC)
    process = ForkedKeyplan(
        workspace.path, "apply", "-verify", "-auto-approve", "-throttle-timeout=30m", env=environment(MAC_THROTTLED_FOREVER)
    )
    audit = workspace.path / ".keyplan" / "audit.jsonl"
    for _ in range(HANG * 10):  # until the import is done: the proof runs next, and is throttled
        entries = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        if any(e.get("action") == "import_material" and e.get("outcome") == "ok" for e in entries):
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the proof's first GenerateMac answered with a throttling error; its step waits
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the first interrupt did not end the proof's wait") from None
    assert process.returncode == 130, output
    assert "Interrupted twice" not in output and "Traceback" not in output
    assert list(workspace.state()["keys"]) == ["key.mac"], "the key made before the interrupt is recorded"
