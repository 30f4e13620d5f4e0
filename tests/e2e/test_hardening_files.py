"""Files keyplan writes carry modes that match what they hold, whatever the umask: state,
backups, plan files, the audit log, the lock and the keystore reveal the key inventory (or
protect material), so only their owner reads them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.state.local import LocalBackend
from tests.e2e.conftest import Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_keyplan_writes_is_private_whatever_the_umask(workspace: Workspace, open_umask: None) -> None:
    workspace.write(CONFIG)
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    assert workspace.keyplan("apply", str(planfile)).code == 0
    assert workspace.keyplan("apply", "-auto-approve", "-replace", "key.data").code == 0
    discovered = workspace.path / "inventory.txt"
    assert workspace.keyplan("discover", "aws.main", f"-out={discovered}").code == 0
    written = [
        planfile,
        discovered,
        workspace.state_path,
        workspace.path / "keyplan.kpstate.json.backup",
        workspace.path / ".keyplan" / "audit.jsonl",
        workspace.path / ".keyplan" / "keystore.json",
    ]
    modes = {str(p.relative_to(workspace.path)): oct(_mode(p)) for p in written}
    assert modes == {name: oct(0o600) for name in modes}


def test_an_audit_log_left_readable_by_an_older_keyplan_is_made_private(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    audit = workspace.path / ".keyplan" / "audit.jsonl"
    audit.parent.mkdir()
    audit.write_text("")
    audit.chmod(0o644)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    assert _mode(audit) == 0o600


def test_the_lock_file_is_private(tmp_path: Path, open_umask: None) -> None:
    backend = LocalBackend(tmp_path / "keyplan.kpstate.json").store()
    info = backend.acquire("plan")
    try:
        assert _mode(tmp_path / "keyplan.kpstate.json.lock") == 0o600
    finally:
        backend.release(info)


def test_a_keystore_entry_that_no_longer_decrypts_stops_plan_and_apply_before_any_step(workspace: Workspace) -> None:
    """An entry whose fingerprint was edited reads as written by an older keyplan, whose entries
    the first wrap seals again; it no longer decrypts, which used to stop an apply at that wrap,
    after its first steps had changed the state. It is refused before any step."""
    import json

    from test_cli_aws import CONFIG, applied

    applied(workspace)
    keystore = workspace.path / ".keyplan" / "keystore.json"
    document = json.loads(keystore.read_text())
    damaged = sorted(document["entries"])[0]
    document["entries"][damaged]["fingerprint"] = ""
    keystore.write_text(json.dumps(document))
    workspace.write(CONFIG)
    before = workspace.state_path.read_bytes()
    victim = damaged.split("/")[0]

    for args in (("plan",), ("apply", "-auto-approve", "-replace", victim)):
        refused = workspace.keyplan(*args)
        assert refused.code == 1, refused.output
        assert "does not decrypt" in refused.stderr and damaged in refused.stderr, refused.output
        assert "Traceback" not in refused.output
        assert workspace.state_path.read_bytes() == before
