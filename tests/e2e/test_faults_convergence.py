"""A whole apply and a whole refresh of the multicloud example while every emulator fails one
call in five at random: throttling (429), unavailability (503) and lost answers (500 after the
work was done). The apply converges, each cloud holds each key's material exactly once, and no
throttling answer reaches the user."""

from __future__ import annotations

import json
import shutil
from collections import Counter

from azure_support import embedded, key_name, materials

from providers.aws import KmsEmulator
from providers.azure.emulator import emulator_class
from providers.gcp.emulator import GcpKmsEmulator
from tests.e2e.conftest import REPO, Workspace

FAULTS = {
    "seed": 11,
    "errors": [
        {"operation": "*", "status": 429, "rate": 0.1},
        {"operation": "*", "status": 503, "rate": 0.05},
        {"operation": "*", "status": 500, "rate": 0.05, "after": True},
    ],
}
EMULATORS = {
    "aws.main": KmsEmulator,
    "gcp.main": GcpKmsEmulator,
    "azure.hsm": emulator_class("managedhsm"),
    "azure.vault": emulator_class("vault"),
}


def test_apply_and_refresh_converge_under_random_faults_without_duplicates(workspace: Workspace) -> None:
    shutil.copy(REPO / "examples" / "multicloud" / "main.kp.hcl", workspace.path / "main.kp.hcl")
    env = {"KEYPLAN_EMULATOR_FAULTS": json.dumps({name.replace(".", "-"): FAULTS for name in EMULATORS})}

    applied = workspace.keyplan("apply", "-auto-approve", env=env)
    assert applied.code == 0, applied.output
    assert "Throttl" not in applied.output and "Error" not in applied.output

    refreshed = workspace.keyplan("plan", "-detailed-exitcode", env=env)
    assert refreshed.code == 0, refreshed.output
    assert "No changes" in refreshed.stdout

    assert_each_material_held_once(workspace)


def test_lost_answers_to_creates_and_imports_leave_no_second_key_or_version(workspace: Workspace) -> None:
    shutil.copy(REPO / "examples" / "multicloud" / "main.kp.hcl", workspace.path / "main.kp.hcl")

    def lost(*operations: str) -> dict[str, object]:
        return {"errors": [{"operation": op, "status": 503, "count": 1, "after": True} for op in operations]}

    faults = {
        "aws-main": lost("CreateKey", "ImportKeyMaterial"),
        "gcp-main": lost("CreateCryptoKey", "ImportCryptoKeyVersion"),
        "azure-hsm": lost("ImportKey"),
        "azure-vault": lost("ImportKey"),
    }
    applied = workspace.keyplan("apply", "-auto-approve", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(faults)})
    assert applied.code == 0, applied.output
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0
    assert_each_material_held_once(workspace)


def test_an_import_whose_promotion_is_refused_once_is_not_sent_again(workspace: Workspace) -> None:
    shutil.copy(REPO / "examples" / "multicloud" / "main.kp.hcl", workspace.path / "main.kp.hcl")
    faults = {"gcp-main": {"errors": [{"operation": "UpdateCryptoKeyPrimaryVersion", "status": 503, "count": 1}]}}
    applied = workspace.keyplan("apply", "-auto-approve", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(faults)})
    assert applied.code == 0, applied.output
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0
    assert_each_material_held_once(workspace)


def assert_each_material_held_once(workspace: Workspace) -> None:
    """What each emulator holds: exactly the keys state records, each material once."""
    state = workspace.state()
    for target, app in EMULATORS.items():
        expected = {
            record["targets"][target]["remote_id"]
            for record in state["keys"].values()
            if target in record["targets"]
        }
        if target.startswith("azure."):  # the vault reports its keys by name
            expected = {key_name(remote_id) for remote_id in expected}
        with embedded(workspace.path, app, target) as server:
            held = Counter(m["key"].split("/cryptoKeyVersions/")[0] for m in materials(server))
            if app is KmsEmulator:
                stored = [doc for _, doc in server.app.store.list("keys")]
                assert len(stored) == len(expected), f"{target}: a lost CreateKey answer left a second key"
        assert set(held) == expected, target
        assert all(count == 1 for count in held.values()), f"{target} holds a material twice: {held}"


def test_refresh_reads_are_retried_like_writes(workspace: Workspace) -> None:
    shutil.copy(REPO / "examples" / "multicloud" / "main.kp.hcl", workspace.path / "main.kp.hcl")
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    failing_reads = {
        "aws-main": {"errors": [{"operation": op, "status": 503, "count": 2} for op in ("ListKeys", "DescribeKey")]},
        "gcp-main": {"errors": [{"operation": "ListCryptoKeys", "status": 503, "count": 2}]},
        "azure-hsm": {"errors": [{"operation": "GetKeys", "status": 500, "count": 2}]},
        "azure-vault": {"errors": [{"operation": "GetKey", "status": 429, "count": 2}]},
    }
    planned = workspace.keyplan("plan", "-detailed-exitcode", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(failing_reads)})
    assert planned.code == 0, planned.output
    assert "No changes" in planned.stdout
