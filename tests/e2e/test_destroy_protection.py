"""Destroy protection that sticks: `prevent_destroy` added to an existing key is written to state
even when nothing else changes, and a protected key cannot be deleted by removing its block, by
-target, or by `state rm` followed by an apply."""

from __future__ import annotations

from test_cli_aws import CONFIG, applied, remote_ids

from tests.e2e.conftest import Workspace


def test_prevent_destroy_added_later_survives_a_removed_block(workspace: Workspace) -> None:
    applied(workspace)  # prevent = false
    assert all(not k["prevent_destroy"] for k in workspace.state()["keys"].values())

    planned = workspace.keyplan("plan", "-var", "prevent=true", "-detailed-exitcode")
    assert planned.code == 2, planned.output  # not "No changes"
    assert "prevent_destroy = true is recorded in state" in planned.stdout
    assert "kms:ScheduleKeyDeletion" in planned.stdout  # the cloud's own guard is named
    assert workspace.keyplan("apply", "-auto-approve", "-var", "prevent=true").code == 0
    assert all(k["prevent_destroy"] for k in workspace.state()["keys"].values())
    assert workspace.keyplan("plan", "-var", "prevent=true", "-detailed-exitcode").code == 0

    # A later label change keeps the protection.
    assert workspace.keyplan("apply", "-auto-approve", "-var", "prevent=true", "-var", "team=x").code == 0
    assert all(k["prevent_destroy"] for k in workspace.state()["keys"].values())

    before = workspace.state_path.read_bytes()
    ids = remote_ids(workspace)
    # The block is gone (prevent_destroy with it): the state's protection still refuses the deletion.
    removed = workspace.keyplan("apply", "-auto-approve", "-var", 'apps=["payments"]', "-var", "team=x")
    assert removed.code == 1 and "prevent_destroy" in removed.stderr, removed.output
    targeted = workspace.keyplan(
        "apply", "-auto-approve", "-var", 'apps=["payments"]', "-var", "team=x", "-target", 'key.app["ledger"]'
    )
    assert targeted.code == 1 and "prevent_destroy" in targeted.stderr, targeted.output
    state_rm = workspace.keyplan("state", "rm", 'key.app["ledger"]')
    assert state_rm.code == 1 and "prevent_destroy" in state_rm.stderr, state_rm.output
    assert workspace.state_path.read_bytes() == before
    with workspace.aws() as (kms, _):
        for remote_id in ids.values():
            assert kms.describe_key(KeyId=remote_id)["KeyMetadata"]["KeyState"] == "Enabled"

    # The reviewed way: record prevent_destroy = false first, then remove the key.
    assert workspace.keyplan("apply", "-auto-approve", "-var", "team=x").code == 0
    assert all(not k["prevent_destroy"] for k in workspace.state()["keys"].values())
    gone = workspace.keyplan("apply", "-auto-approve", "-var", 'apps=["payments"]', "-var", "team=x")
    assert gone.code == 0, gone.output
    with workspace.aws() as (kms, _):
        assert kms.describe_key(KeyId=ids['key.app["ledger"]'])["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_a_forged_protection_change_is_refused(workspace: Workspace) -> None:
    import json

    from test_reviewed_plans import resealed

    applied(workspace, "-var", "prevent=true")
    workspace.write(CONFIG)
    planfile = workspace.path / "unprotect.kpplan"
    assert workspace.keyplan("plan", "-var", "prevent=false", f"-out={planfile}").code == 0
    document = json.loads(planfile.read_text())
    kinds = [a["kind"] for a in document["actions"]]
    assert kinds.count("record_protection") == 2
    for action in document["actions"]:
        action["args"]["prevent_destroy"] = True  # shown as false, would keep it protected
    refused = workspace.keyplan("show", str(resealed(document, workspace.path / "forged.kpplan")))
    assert refused.code == 1 and "records prevent_destroy = true" in refused.stderr, refused.output
