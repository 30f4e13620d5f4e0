"""Paths that name something other than a file keyplan wrote: a device (reading it would fill the
memory) or a pipe (reading it would wait forever), given as the state file, the keystore or a
saved plan. Each is a diagnostic. The runs are processes of their own (forked) with their memory
capped and a time limit, so a regression is a traceback or a timeout, not the machine's memory."""

from __future__ import annotations

import os

from tests.e2e.conftest import Result, Workspace, keyplan_in_fork

CAP = 3 * 2**30


def run(workspace: Workspace, *args: str, env: dict[str, str] | None = None) -> Result:
    environment = {**{k: v for k, v in os.environ.items() if k != "KEYPLAN_EMULATOR_FAULTS"}, **(env or {})}
    return keyplan_in_fork(workspace.path, *args, env=environment, timeout=120, memory_cap=CAP)


def config(state: str = "keyplan.kpstate.json", keystore: str = ".keyplan/keystore.json") -> str:
    return f"""
keyplan {{
  state "local" {{ path = "{state}" }}
}}
source "software" "local" {{
  keystore = "{keystore}"
}}
provider "aws" "main" {{
  region   = "eu-west-1"
  endpoint = "embedded"
}}
key "data" {{
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}}
"""


def assert_refused(result: Result, summary: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and "crashed" not in result.output, result.output
    assert summary in result.output


def test_a_state_path_naming_a_device_is_refused(workspace: Workspace) -> None:
    workspace.write(config(state="/dev/zero"))
    assert_refused(run(workspace, "plan"), "Cannot read the state file")


def test_a_keystore_naming_a_device_is_refused(workspace: Workspace) -> None:
    workspace.write(config(keystore="/dev/zero"))
    assert_refused(run(workspace, "plan"), "The software keystore is corrupt")


def test_a_saved_plan_naming_a_device_or_a_pipe_is_refused(workspace: Workspace) -> None:
    workspace.write(config())
    assert_refused(run(workspace, "show", "/dev/zero"), "Cannot read the plan file")
    pipe = workspace.path / "review.kpplan"
    os.mkfifo(pipe)
    assert_refused(run(workspace, "show", str(pipe)), "Cannot read the plan file")
    assert_refused(run(workspace, "apply", str(pipe)), "Cannot read the plan file")


def test_a_pushed_state_signing_key_or_approvals_file_naming_a_device_is_refused(workspace: Workspace) -> None:
    workspace.write(config())
    assert_refused(run(workspace, "state", "push", "/dev/zero"), "Cannot read /dev/zero")
    planfile = workspace.path / "review.kpplan"
    assert run(workspace, "plan", f"-out={planfile}").code == 0
    passphrase = {"KEYPLAN_SIGNING_PASSPHRASE": "a passphrase"}
    assert_refused(run(workspace, "approve", "-key", "/dev/zero", str(planfile), env=passphrase), "Cannot read the signing key")
    assert_refused(run(workspace, "approve", "-key", "/tmp", str(planfile), env=passphrase), "Cannot read the signing key")
    (workspace.path / "review.kpplan.approvals.json").symlink_to("/dev/zero")
    assert_refused(run(workspace, "show", str(planfile)), "The approvals file is damaged")
