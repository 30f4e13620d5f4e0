"""The local state lock is an OS lock that dies with its process: after a SIGKILL the next
command goes on without `force-unlock`; a live holder (another process) is still refused, named,
and waited for with -lock-timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.state.local import LocalBackend
from tests.e2e.conftest import ForkedKeyplan, Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "app" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""

# Another process holding the lock, as a running keyplan would: it says who it is, then holds the
# lock until told to release it (a line on standard input) or killed.
_HOLDER = """
import json, sys
from pathlib import Path
from keyplan.state.local import LocalBackend
store = LocalBackend(Path(sys.argv[1])).store()
info = store.acquire("apply")
print(json.dumps(info.model_dump(mode="json")), flush=True)
sys.stdin.readline()
store.release(info)
print("released", flush=True)
"""


@pytest.fixture
def holder(workspace: Workspace) -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workspace.state_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    info = json.loads(process.stdout.readline())
    try:
        yield process, info
    finally:
        process.kill()
        process.wait(timeout=30)


def test_a_live_holder_is_refused_by_name_and_waited_for(
    workspace: Workspace, holder: tuple[subprocess.Popen[str], dict[str, object]]
) -> None:
    workspace.write(CONFIG)
    process, info = holder
    refused = workspace.keyplan("plan")
    assert refused.code == 1 and "Error acquiring the state lock" in refused.stderr, refused.output
    assert str(info["id"]) in refused.stderr and f"pid {process.pid}" in refused.stderr
    assert "Operation: apply" in refused.stderr and "Traceback" not in refused.output
    unlock = workspace.keyplan("force-unlock", str(info["id"]))
    assert unlock.code == 1 and "-force" in unlock.stderr, "no terminal: force-unlock needs -force"

    waiting = ForkedKeyplan(
        workspace.path, "plan", "-lock-timeout=120s", env={"KEYPLAN_LOG": "DEBUG", **os.environ}, stderr_apart=True
    )
    assert waiting.stderr is not None and process.stdin is not None and process.stdout is not None
    for line in waiting.stderr:
        if "waiting for it" in line:
            break
    else:
        raise AssertionError("the plan never waited for the lock")
    process.stdin.write("release\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "released"
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and "2 to create" in out, out


def test_a_dead_holder_needs_no_force_unlock(
    workspace: Workspace, holder: tuple[subprocess.Popen[str], dict[str, object]]
) -> None:
    workspace.write(CONFIG)
    process, info = holder
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    lock_file = Path(str(workspace.state_path) + ".lock")
    assert json.loads(lock_file.read_text())["id"] == info["id"], "the dead holder's record is left behind"
    assert LocalBackend(workspace.state_path).store().current_lock() is None
    unlock = workspace.keyplan("force-unlock", str(info["id"]), "-force")
    assert unlock.code == 1 and "not locked" in unlock.stderr
    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert not lock_file.exists(), "released and removed at the end of the apply"
