"""A state or keystore journal that is not a regular file (a pipe, a directory) is a diagnostic
that names it; nothing waits for a writer that never comes, and nothing is changed."""

from __future__ import annotations

import os

import pytest

from tests.e2e.conftest import CLOUD_CONFIGS, Workspace

EXTRA_KEY = """
key "extra" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


@pytest.mark.parametrize("kind", ["pipe", "directory"])
def test_a_state_journal_that_is_not_a_file_is_a_diagnostic(workspace: Workspace, kind: str) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    journal = workspace.path / "keyplan.kpstate.json.journal"
    os.mkfifo(journal) if kind == "pipe" else journal.mkdir()
    for command in (("plan",), ("apply", "-auto-approve")):
        result = workspace.keyplan(*command)
        assert result.code == 1 and "Traceback" not in result.output, result.output
        assert "Cannot read the state journal" in result.stderr and "keyplan.kpstate.json.journal" in result.stderr
    assert not workspace.state_path.exists()
    with workspace.aws() as (kms, _):
        assert kms.list_keys()["Keys"] == [], "nothing was created"


def test_a_keystore_journal_that_is_a_pipe_is_a_diagnostic_before_any_key_is_created(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0  # the keystore exists
    os.mkfifo(workspace.path / ".keyplan" / "keystore.json.journal")
    workspace.write(CLOUD_CONFIGS["aws"] + EXTRA_KEY)
    result = workspace.keyplan("apply", "-auto-approve")
    assert result.code == 1 and "Traceback" not in result.output, result.output
    assert "Cannot use the software keystore" in result.stderr and "not a regular file" in result.stderr
    assert sorted(workspace.state()["keys"]) == ['key.app["a"]', 'key.app["b"]']
    with workspace.aws() as (kms, _):
        assert len(kms.list_keys()["Keys"]) == 2, "no key exists without its material recorded"
