"""A lost state must never silently create duplicate keys (on each cloud's emulator): with the
state file gone, the next plan finds the keys it created through their keyplan-address and
keyplan-managed-by tags, now under another lineage, and stops with how to recover; nothing is
created until the user says so with -allow-new-lineage. A state file missing beside its backup
is refused naming the backup."""

from __future__ import annotations

import shutil

import pytest

from keyplan.state.backend import JournalEntry
from keyplan.state.local import LocalBackend
from tests.e2e.conftest import CLOUD_CONFIGS, Workspace, emulator_counts


@pytest.mark.parametrize("cloud", sorted(CLOUD_CONFIGS))
def test_a_lost_state_stops_the_plan_and_creates_nothing(workspace: Workspace, cloud: str) -> None:
    workspace.write(CLOUD_CONFIGS[cloud])
    first = workspace.keyplan("apply", "-auto-approve")
    assert first.code == 0, first.output
    created = emulator_counts(workspace.path)
    workspace.state_path.unlink()

    for command in (("plan",), ("apply", "-auto-approve")):
        refused = workspace.keyplan(*command)
        assert refused.code == 1, refused.output
        assert "already exist" in refused.stderr and "managed by another keyplan state" in refused.stderr
        assert 'key.app["a"]' in refused.stderr and 'key.app["b"]' in refused.stderr
        assert "restore the state" in refused.stderr and "-allow-new-lineage" in refused.stderr
        assert "keyplan import" in refused.stderr
        assert "Traceback" not in refused.output
    assert emulator_counts(workspace.path) == created, "a refused plan or apply created nothing"
    assert not workspace.state_path.exists()

    planned = workspace.keyplan("plan", "-allow-new-lineage", "-json")
    assert planned.code == 0, planned.output
    proceeded = workspace.keyplan("apply", "-auto-approve", "-allow-new-lineage")
    if cloud == "azure":
        # Azure names a key after its address, and an import under a held name would replace that
        # key's material: its provider refuses the takeover even when the plan goes on.
        assert proceeded.code == 1, proceeded.output
        assert "held by a key managed by another keyplan state" in proceeded.stderr
    else:
        assert proceeded.code == 0, proceeded.output
        assert len(workspace.state()["keys"]) == 2
        grown = emulator_counts(workspace.path)
        assert grown[KEYS[cloud]] == created[KEYS[cloud]] + 2, "the flag creates this state's own keys"


KEYS = {"aws": "keys", "gcp": "cryptoKeys", "azure": "keys"}


@pytest.mark.parametrize("cloud", sorted(CLOUD_CONFIGS))
def test_a_state_missing_beside_its_backup_is_refused_naming_the_backup(workspace: Workspace, cloud: str) -> None:
    workspace.write(CLOUD_CONFIGS[cloud])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    relabelled = workspace.keyplan("apply", "-auto-approve", "-var", "team=platform")
    assert relabelled.code == 0, relabelled.output
    backup = workspace.state_path.with_name(workspace.state_path.name + ".backup")
    assert backup.exists()
    created = emulator_counts(workspace.path)
    workspace.state_path.unlink()

    refused = workspace.keyplan("plan")
    assert refused.code == 1, refused.output
    assert "The state is missing, but it existed" in refused.stderr
    assert str(backup) in refused.stderr and "cp -p" in refused.stderr
    assert emulator_counts(workspace.path) == created

    shutil.copy2(backup, workspace.state_path)
    restored = workspace.keyplan("plan", "-json", "-var", "team=platform")
    assert restored.code == 0, restored.output
    assert '"create"' not in restored.stdout and '"adopt"' not in restored.stdout


def test_a_state_missing_beside_a_journal_is_refused(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    state = LocalBackend(workspace.state_path).store().read()
    assert state is not None
    workspace.state_path.unlink()
    # An apply killed after journalling one key, its state file deleted meanwhile.
    address = 'key.app["a"]'
    entry = JournalEntry(serial=state.serial + 1, lineage=state.lineage, keys={address: state.keys[address]})
    LocalBackend(workspace.state_path).store().append_journal([entry])

    refused = workspace.keyplan("plan")
    assert refused.code == 1, refused.output
    assert "The state is missing, but it existed" in refused.stderr and "journal" in refused.stderr
    assert workspace.keyplan("plan", "-refresh-only").code == 0, "a refresh-only plan creates nothing: allowed"
