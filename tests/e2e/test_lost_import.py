"""An import whose answer was lost (a crash after the cloud imported, before state recorded it)
is found, not made again, where an import adds a version (Azure, Google): the next plan lists the
versions state does not record and the import step proves them against the material first. A
version that holds other material (someone imported into a key keyplan manages) stops the key.
The crash suite (test_crash_at_every_call.py) kills real applies at the import; here state is
edited to forget an import, which is what such a crash leaves on Azure."""

from __future__ import annotations

import json

from azure.keyvault.keys import JsonWebKey
from azure_support import azure_vault, key_name

from tests.e2e.conftest import CLOUD_CONFIGS, Workspace

HSM_URL = "https://payments.managedhsm.azure.net"
A, B = 'key.app["a"]', 'key.app["b"]'


def forget_imports(workspace: Workspace, address: str) -> str:
    """State as an apply killed right after this key's import leaves it; the key's remote id."""
    state = workspace.state()
    target = state["keys"][address]["targets"]["azure.hsm"]
    target["imports"], target["current_material_version"], target["exists_remotely"] = [], None, False
    state["serial"] += 1
    workspace.state_path.write_text(json.dumps(state))
    return str(target["remote_id"])


def versions(workspace: Workspace, name: str) -> list[str]:
    with azure_vault(workspace.path, "azure.hsm", HSM_URL) as hsm:
        return [v.version or "" for v in hsm.client.list_properties_of_key_versions(name)]


def test_the_version_a_lost_import_left_is_proven_and_recorded_not_imported_again(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["azure"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    name = key_name(forget_imports(workspace, A))
    [held] = versions(workspace, name)

    plan = workspace.keyplan("plan")
    assert plan.code == 0, plan.output
    assert f"holds 1 version(s) state does not record ({held})" in plan.output, plan.output
    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    audit = [json.loads(line) for line in (workspace.path / ".keyplan" / "audit.jsonl").read_text().splitlines()]
    [outcome] = [e["detail"] for e in audit if e["action"] == "import_material" and e["outcome"] == "ok"][2:]
    assert f"is already version {held}" in outcome and "proven by" in outcome, outcome
    assert versions(workspace, name) == [held], "imported again as a second version"
    [recorded] = workspace.state()["keys"][A]["targets"]["azure.hsm"]["imports"]
    assert recorded["remote_version_id"] == held
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def test_a_version_of_other_material_stops_the_key(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["azure"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    # someone imports key b's material under key a's name (a BYOK file made by keyplan for b)
    exported = workspace.keyplan("export-byok", B, "-vault", "azure.hsm", "-o", "b.byok")
    assert exported.code == 0, exported.output
    name = key_name(forget_imports(workspace, A))
    with azure_vault(workspace.path, "azure.hsm", HSM_URL) as hsm:
        blob = (workspace.path / "b.byok").read_bytes()
        jwk = JsonWebKey(kty="oct-HSM", key_ops=["encrypt", "decrypt", "wrapKey", "unwrapKey"], t=blob)
        hsm.client.import_key(name, jwk, hardware_protected=True)
    before = versions(workspace, name)
    assert len(before) == 2

    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 1, applied.output
    assert "holds a version keyplan did not import" in applied.output, applied.output
    assert "holds other material than v1" in applied.output
    assert versions(workspace, name) == before, "keyplan imported next to a foreign version"
    assert workspace.state()["keys"][A]["targets"]["azure.hsm"]["imports"] == []
