"""A key source whose state says it holds material must refuse to start empty: a keystore file
moved away between `plan -out` and `apply PLAN` stops the apply naming the keys it affects, and
is never replaced by a fresh, empty keystore. The keystore's passphrase is checked by `plan`,
before anyone confirms anything. (The PKCS#11 side, with a real SoftHSM2 token, is in
test_cli_hsm.py.)"""

from __future__ import annotations

from tests.e2e.conftest import CLOUD_CONFIGS, Workspace, emulator_counts

WITH_C = CLOUD_CONFIGS["aws"].replace('toset(["a", "b"])', 'toset(["a", "b", "c"])')


def test_a_keystore_moved_away_after_plan_out_stops_the_saved_apply(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    workspace.write(WITH_C)
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    keystore = workspace.path / ".keyplan" / "keystore.json"
    moved = keystore.rename(workspace.path / "keystore.json.elsewhere")
    before = emulator_counts(workspace.path)

    applied = workspace.keyplan("apply", str(planfile))
    assert applied.code == 1, applied.output
    assert "Apply complete!" not in applied.output and "Traceback" not in applied.output
    assert "Error: Key material is missing from its source" in applied.stderr
    assert str(keystore) in applied.stderr and "does not exist" in applied.stderr
    assert 'key.app["a"] material version 1' in applied.stderr and 'key.app["b"] material version 1' in applied.stderr
    assert not keystore.exists(), "no fresh, empty keystore in its place"
    assert emulator_counts(workspace.path) == before, "nothing was created"
    assert sorted(workspace.state()["keys"]) == ['key.app["a"]', 'key.app["b"]']

    planned = workspace.keyplan("plan")
    assert planned.code == 1 and "Key material is missing from its source" in planned.stderr
    assert not keystore.exists()

    moved.rename(keystore)
    again = workspace.keyplan("plan", f"-out={planfile}")
    assert again.code == 0, again.output
    assert workspace.keyplan("apply", str(planfile)).code == 0
    assert sorted(workspace.state()["keys"]) == ['key.app["a"]', 'key.app["b"]', 'key.app["c"]']


def test_the_keystore_passphrase_is_checked_by_plan_before_any_confirmation(workspace: Workspace) -> None:
    right = {"KEYPLAN_KEYSTORE_PASSPHRASE": "correct horse battery staple"}
    wrong = {"KEYPLAN_KEYSTORE_PASSPHRASE": "wrong horse"}
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve", env=right).code == 0
    workspace.write(WITH_C)  # only a new key: nothing else would open the keystore before generating

    planned = workspace.keyplan("plan", env=wrong)
    assert planned.code == 1, planned.output
    assert "Wrong passphrase for the software keystore" in planned.stderr

    asked = workspace.keyplan("apply", env=wrong, stdin="yes\n")
    assert asked.code == 1, asked.output
    assert "Wrong passphrase for the software keystore" in asked.stderr
    assert "Do you want to perform these actions" not in asked.output, "refused before asking"
    assert len(workspace.state()["keys"]) == 2
    assert workspace.keyplan("apply", "-auto-approve", env=right).code == 0
