"""`keyplan keystore re-protect`: the quickstart's keystore, protected by its development key
file, moves to a passphrase the way the warning says (set KEYPLAN_KEYSTORE_PASSPHRASE, run the
command), and a passphrase moves to a new one; both in one atomic write, with every key's
material unchanged (the fingerprints stay, and the clouds still prove holding it). A wrong
current passphrase changes nothing."""

from __future__ import annotations

import json

from tests.e2e.conftest import CLOUD_CONFIGS, Workspace

FIRST = {"KEYPLAN_KEYSTORE_PASSPHRASE": "first passphrase, long enough"}
SECOND = {"KEYPLAN_KEYSTORE_PASSPHRASE": "second passphrase, longer still"}


def keystore_entries(workspace: Workspace) -> dict[str, str]:
    document = json.loads((workspace.path / ".keyplan" / "keystore.json").read_text())
    return {handle: entry["fingerprint"] for handle, entry in document["entries"].items()}


def protection(workspace: Workspace) -> str:
    return str(json.loads((workspace.path / ".keyplan" / "keystore.json").read_text())["protection"]["kind"])


def assert_proven(workspace: Workspace, env: dict[str, str]) -> None:
    verified = workspace.keyplan("verify", "-json", env=env)
    assert verified.code == 0, verified.output
    assert [r["verdict"] for r in json.loads(verified.stdout)["results"]] == ["proven", "proven"]


def test_the_development_key_file_moves_to_a_passphrase_then_to_another(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    entries = keystore_entries(workspace)
    state = workspace.state_path.read_bytes()
    assert protection(workspace) == "key-file"

    # Following the warning: set the variable ... and the keystore says what to run.
    told = workspace.keyplan("plan", env=FIRST)
    assert told.code == 1 and "keyplan keystore re-protect" in told.stderr, told.output
    moved = workspace.keyplan("keystore", "re-protect", env=FIRST)
    assert moved.code == 0, moved.output
    assert "2 key material entries sealed again" in moved.stdout and "keystore.key" in moved.stdout
    assert protection(workspace) == "passphrase"
    assert keystore_entries(workspace) == entries, "the same material under the same handles"
    assert workspace.state_path.read_bytes() == state
    assert_proven(workspace, FIRST)
    assert workspace.keyplan("plan", "-detailed-exitcode", env=FIRST).code == 0

    rotated = workspace.keyplan(
        "keystore", "re-protect", env={**FIRST, "KEYPLAN_KEYSTORE_NEW_PASSPHRASE": SECOND["KEYPLAN_KEYSTORE_PASSPHRASE"]}
    )
    assert rotated.code == 0, rotated.output
    assert keystore_entries(workspace) == entries
    assert_proven(workspace, SECOND)
    old = workspace.keyplan("plan", env=FIRST)
    assert old.code == 1 and "Wrong passphrase for the software keystore" in old.stderr


def test_a_wrong_current_passphrase_or_no_new_one_changes_nothing(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve", env=FIRST).code == 0
    keystore = workspace.path / ".keyplan" / "keystore.json"
    before = keystore.read_bytes()

    wrong = workspace.keyplan(
        "keystore", "re-protect",
        env={"KEYPLAN_KEYSTORE_PASSPHRASE": "not it", "KEYPLAN_KEYSTORE_NEW_PASSPHRASE": "anything new"},
    )
    assert wrong.code == 1, wrong.output
    assert "Wrong passphrase for the software keystore" in wrong.stderr and "Traceback" not in wrong.output
    none = workspace.keyplan("keystore", "re-protect", env=FIRST)
    assert none.code == 1 and "No new passphrase" in none.stderr and "KEYPLAN_KEYSTORE_NEW_PASSPHRASE" in none.stderr
    same = workspace.keyplan(
        "keystore", "re-protect", env={**FIRST, "KEYPLAN_KEYSTORE_NEW_PASSPHRASE": FIRST["KEYPLAN_KEYSTORE_PASSPHRASE"]}
    )
    assert same.code == 1 and "The new passphrase is the current one" in same.stderr
    assert keystore.read_bytes() == before, "nothing changed"
    assert "first passphrase" not in wrong.output + none.output + same.output
    assert_proven(workspace, FIRST)
