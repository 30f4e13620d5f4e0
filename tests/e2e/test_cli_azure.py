"""End to end through the CLI against embedded Azure vaults: a Key Vault (RSA and EC keys) and a
Managed HSM (AES), with the software keystore. Out-of-band changes go through
azure-keyvault-keys against the same emulator data (see azure_support); what the vaults
unwrapped is proven by fingerprint.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

from azure.keyvault.keys import JsonWebKey
from azure_support import AzureVault, azure_vault, embedded, key_name, materials

from providers.aws import KmsEmulator
from providers.emulation.store import DocumentStore
from providers.gcp.emulator import GcpKmsEmulator
from tests.e2e.conftest import KEYPLAN_BIN, REPO, Workspace, lifecycle_commands, secret_forms

VAULT_URL = "https://payments.vault.azure.net"
HSM_URL = "https://payments.managedhsm.azure.net"

CONFIG = """
variable "team" {
  type    = string
  default = "core"
}

source "software" "local" {}

provider "azure" "vault" {
  endpoint  = "embedded"
  vault_url = "https://payments.vault.azure.net"
}

provider "azure" "hsm" {
  endpoint  = "embedded"
  vault_url = "https://payments.managedhsm.azure.net"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.azure.hsm]
  labels    = { team = var.team }
  expiry {
    after = "365d"
  }
}

key "signing" {
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.azure.vault]
  labels    = { team = "core", use = "signing" }
}

key "unwrap" {
  algorithm = "RSA_3072"
  usage     = "decrypt"
  source    = source.software.local
  targets   = [provider.azure.vault]
}
"""


def remote_id(workspace: Workspace, address: str, target: str) -> str:
    return str(workspace.state()["keys"][address]["targets"][target]["remote_id"])


def fingerprints(workspace: Workspace, address: str) -> list[str]:
    return [m["fingerprint"] for m in workspace.state()["keys"][address]["materials"]]


def plan_json(workspace: Workspace, *args: str) -> dict[str, object]:
    result = workspace.keyplan("plan", "-json", *args)
    assert result.code == 0, result.output
    return dict(json.loads(result.stdout))


def changed(document: dict[str, object]) -> list[tuple[str, list[str]]]:
    changes = document["changes"]
    assert isinstance(changes, list)
    return [(c["address"], c["actions"]) for c in changes if c["actions"] != ["no-op"]]


def apply(workspace: Workspace, *args: str) -> str:
    result = workspace.keyplan("apply", "-auto-approve", *args)
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def hsm(workspace: Workspace) -> AbstractContextManager[AzureVault]:
    return azure_vault(workspace.path, "azure.hsm", HSM_URL)


def vault(workspace: Workspace) -> AbstractContextManager[AzureVault]:
    return azure_vault(workspace.path, "azure.vault", VAULT_URL)


def test_life_cycle_against_a_key_vault_and_a_managed_hsm(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    apply(workspace)

    # every material is proven by the vault that unwrapped it
    data, signing, unwrap = (
        remote_id(workspace, "key.data", "azure.hsm"),
        remote_id(workspace, "key.signing", "azure.vault"),
        remote_id(workspace, "key.unwrap", "azure.vault"),
    )
    assert data.startswith(HSM_URL + "/keys/") and signing.startswith(VAULT_URL + "/keys/")
    with hsm(workspace) as mhsm:
        assert mhsm.fingerprints() == {key_name(data): fingerprints(workspace, "key.data")}
        key = mhsm.client.get_key(key_name(data))
        assert key.key_type == "oct-HSM" and key.properties.expires_on is not None
        assert key.properties.tags == {
            "team": "core",
            "keyplan-address": "key.data",
            "keyplan-managed-by": f"keyplan-{workspace.state()['lineage']}",
        }
        ciphertext = mhsm.crypto(key.id).encrypt("A256GCM", b"before rotation")  # type: ignore[arg-type]
    with vault(workspace) as kv:
        assert kv.fingerprints() == {
            key_name(signing): fingerprints(workspace, "key.signing"),
            key_name(unwrap): fingerprints(workspace, "key.unwrap"),
        }
        assert kv.client.get_key(key_name(signing)).key_type == "EC-HSM"
        assert kv.client.get_key(key_name(unwrap)).key.key_ops == ["encrypt", "decrypt", "wrapKey", "unwrapKey"]

    for _ in range(3):
        again = workspace.keyplan("plan", "-detailed-exitcode")
        assert again.code == 0, again.output
        assert "No changes" in again.stdout

    # a tag change is one in-place update
    document = plan_json(workspace, "-var", "team=platform")
    assert changed(document) == [("key.data", ["update"])]
    assert document["summary"] == {"update": 1}
    apply(workspace, "-var", "team=platform")
    with hsm(workspace) as mhsm:
        assert (mhsm.client.get_key(key_name(data)).properties.tags or {})["team"] == "platform"
    workspace.write(CONFIG.replace('default = "core"', 'default = "platform"'))
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0

    # rotation: a new version; the old one still decrypts what it encrypted
    assert changed(plan_json(workspace, "-replace", "key.data")) == [("key.data", ["rotate"])]
    apply(workspace, "-replace", "key.data")
    record = workspace.state()["keys"]["key.data"]
    assert [m["version"] for m in record["materials"]] == [1, 2]
    imports = record["targets"]["azure.hsm"]["imports"]
    assert len({i["remote_version_id"] for i in imports}) == 2
    with hsm(workspace) as mhsm:
        versions = list(mhsm.client.list_properties_of_key_versions(key_name(data)))
        assert len(versions) == 2
        assert mhsm.client.get_key(key_name(data)).properties.version == imports[-1]["remote_version_id"]
        assert mhsm.fingerprints()[key_name(data)] == fingerprints(workspace, "key.data")
        old = mhsm.crypto(f"{mhsm.server.url}/keys/{key_name(data)}/{imports[0]['remote_version_id']}")
        decrypted = old.decrypt(
            "A256GCM",  # type: ignore[arg-type]
            ciphertext.ciphertext,
            iv=ciphertext.iv,
            authentication_tag=ciphertext.tag,
        )
        assert decrypted.plaintext == b"before rotation"
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0

    # disabled out of band: drift, and apply enables the key again
    with vault(workspace) as kv:
        kv.client.update_key_properties(key_name(signing), enabled=False)
    document = plan_json(workspace)
    assert [(d["address"], d["kind"]) for d in document["drift"]] == [("key.signing", "disabled")]  # type: ignore[union-attr]
    assert changed(document) == [("key.signing", ["update"])]
    apply(workspace)
    with vault(workspace) as kv:
        assert kv.client.get_key(key_name(signing)).properties.enabled is True

    # soft-deleted out of band: drift, and apply recovers the key (same material, same versions)
    with vault(workspace) as kv:
        kv.client.begin_delete_key(key_name(unwrap)).wait()
    document = plan_json(workspace)
    assert [(d["address"], d["kind"]) for d in document["drift"]] == [("key.unwrap", "deletion_scheduled")]  # type: ignore[union-attr]
    [(address, actions)] = changed(document)
    assert address == "key.unwrap" and actions[0] == "restore"  # then "update": keyplan re-asserts enabled
    shown = workspace.keyplan("plan")
    assert "Changed outside keyplan" in shown.stdout and "restore" in shown.stdout
    apply(workspace)
    with vault(workspace) as kv:
        recovered = kv.client.get_key(key_name(unwrap))
        assert recovered.properties.enabled is True
        assert kv.fingerprints()[key_name(unwrap)] == fingerprints(workspace, "key.unwrap")
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


NAME_CLASH = """
variable "keys" {
  type    = set(string)
  default = ["signing"]
}

source "software" "local" {}

provider "azure" "vault" {
  endpoint  = "embedded"
  vault_url = "https://payments.vault.azure.net"
}

key "k" {
  for_each  = var.keys
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.azure.vault]
}
"""


def test_a_name_held_by_a_soft_deleted_key_is_reported_never_taken_over(workspace: Workspace) -> None:
    workspace.write(NAME_CLASH)
    apply(workspace)
    held = remote_id(workspace, 'key.k["signing"]', "azure.vault")
    first = fingerprints(workspace, 'key.k["signing"]')

    # removed from configuration: keyplan soft-deletes it, the name stays held
    plan = workspace.keyplan("plan", "-var", "keys=[]")
    assert "1 to delete" in plan.stdout and "recoverable for 90 days" in plan.stdout
    apply(workspace, "-var", "keys=[]")
    assert workspace.state()["keys"] == {}

    def refused() -> None:
        result = workspace.keyplan("apply", "-auto-approve")
        assert result.code == 1 and "Traceback" not in result.output
        assert "soft-deleted" in result.stderr
        assert "recover" in result.stderr and "purge" in result.stderr
        assert key_name(held) in result.stderr
        with vault(workspace) as kv:
            assert kv.client.get_deleted_key(key_name(held)).name == key_name(held)
            assert kv.fingerprints()[key_name(held)] == first, "nothing was imported"

    # a new key whose name collides with the deleted one
    refused()
    # state lost: the same again
    workspace.state_path.unlink()
    Path(str(workspace.state_path) + ".backup").unlink(missing_ok=True)
    refused()

    # once the operator purges it, the name is free
    with vault(workspace) as kv:
        kv.client.purge_deleted_key(key_name(held))
    apply(workspace)
    assert remote_id(workspace, 'key.k["signing"]', "azure.vault") == held
    with vault(workspace) as kv:
        assert kv.fingerprints() == {key_name(held): fingerprints(workspace, 'key.k["signing"]')}


def test_validate_refuses_aes_into_a_key_vault_and_aliases(workspace: Workspace) -> None:
    workspace.write(
        CONFIG.replace("targets   = [provider.azure.hsm]", "targets   = [provider.azure.vault]").replace(
            'labels    = { team = "core", use = "signing" }',
            'labels    = { team = "core", use = "signing" }\n  aliases = ["alias/signing"]\n  description = "x"',
        )
    )
    result = workspace.keyplan("validate")
    assert result.code == 1 and "Traceback" not in result.output
    assert "AES keys can be imported only into an Azure Managed HSM" in result.stderr
    assert "symmetric (oct-HSM)" in result.stderr and "managedhsm.azure.net" in result.stderr
    assert "Azure keys have no aliases" in result.stderr
    assert "Azure keys have no description" in result.stderr  # a warning alongside the errors
    assert "main.kp.hcl:" in result.stderr
    assert not (workspace.path / ".keyplan" / "emulators").exists(), "validate contacts no vault"


EXPORT = """
source "software" "local" {}

provider "azure" "hsm" {
  endpoint  = "embedded"
  vault_url = "https://payments.managedhsm.azure.net"
}

provider "azure" "vault" {
  endpoint  = "embedded"
  vault_url = "https://payments.vault.azure.net"
}

# never a target: its operators upload .byok files themselves
provider "azure" "manual" {
  endpoint  = "embedded"
  vault_url = "https://manual.managedhsm.azure.net"
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.azure.hsm]
  labels    = { team = "core" }
}

key "signing" {
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.azure.vault]
}
"""


def held_materials(workspace: Workspace) -> list[bytes]:
    """Every material the workspace's vaults unwrapped, read from their stores."""
    found = []
    for path in sorted((workspace.path / ".keyplan" / "emulators").glob("azure-*.sqlite")):
        store = DocumentStore(path)
        try:
            found += [base64.b64decode(doc["private"]) for _, doc in store.list("versions") if doc["imported"]]
        finally:
            store.close()
    return found


def leak_forms(material: bytes) -> list[bytes]:
    # the transfer blob is base64url, so its prefix form is checked too
    return [*secret_forms(material), base64.urlsafe_b64encode(material)[:24]]


def test_export_byok_and_no_artifact_or_output_contains_material(workspace: Workspace) -> None:
    workspace.write(EXPORT)
    env = {"KEYPLAN_LOG": "DEBUG"}
    outputs: list[bytes] = []

    def run(*args: str, code: int = 0) -> str:
        result = workspace.keyplan(*args, env=env)
        assert result.code == code, (args, result.output)
        assert "Traceback" not in result.output
        outputs.append(result.output.encode())
        return result.output

    before = run("export-byok", "key.data", "-vault", "azure.manual", "-o", "data.byok", code=1)
    assert "key.data has no material yet" in before and "keyplan apply" in before
    planfile = workspace.path / "first.kpplan"
    for args in lifecycle_commands(planfile, rotate="key.data", show="key.data"):
        run(*args)

    # the current (second) material of key.data, for a vault keyplan never imports into
    exported = run("export-byok", "key.data", "-vault", "azure.manual", "-o", "exports/data.byok")
    [current] = [m for m in workspace.state()["keys"]["key.data"]["materials"] if m["version"] == 2]
    kek = "https://manual.managedhsm.azure.net/keys/keyplan-kek/"
    assert kek in exported and current["fingerprint"] in exported
    assert "az keyvault key import --hsm-name manual --name data-" in exported
    assert "--byok-file exports/data.byok --kty oct-HSM" in exported
    blob = (workspace.path / "exports" / "data.byok").read_bytes()
    header = json.loads(blob)["header"]
    assert header["kid"].startswith(kek) and header["enc"] == "CKM_RSA_AES_KEY_WRAP"
    signing = run("export-byok", "key.signing", "--vault", "provider.azure.manual", "--out", "signing.byok")
    assert "--kty EC-HSM --curve P-256 --ops sign verify" in signing
    # every export is in the audit trail: announced before the vault is asked, then its outcome
    audit = [json.loads(line) for line in (workspace.path / ".keyplan" / "audit.jsonl").read_text().splitlines()]
    exports = [(e["address"], e["outcome"]) for e in audit if e["action"] == "export_byok"]
    assert exports == [  # the first attempt (no material yet) was refused before anything was asked
        ("key.data", "started"), ("key.data", "ok"),
        ("key.signing", "started"), ("key.signing", "ok"),
    ]
    assert "intact" in run("log", "-verify")

    # refusals are diagnostics
    assert "No key key.nope" in run("export-byok", "key.nope", "-vault", "azure.manual", "-o", "x.byok", code=1)
    wrong_kind = run("export-byok", "key.data", "-vault", "aws.main", "-o", "x.byok", code=1)
    assert "aws.main is not an Azure provider" in wrong_kind
    typo = run("export-byok", "key.data", "-vault", "azure.manul", "-o", "x.byok", code=1)
    assert "No provider azure.manul" in typo and "azure.manual" in typo
    into_vault = run("export-byok", "key.data", "-vault", "azure.vault", "-o", "x.byok", code=1)
    assert "only into an Azure Managed HSM" in into_vault
    assert not (workspace.path / "x.byok").exists()

    # the operator imports the file with the real SDK; the vault proves it unwrapped that material
    with azure_vault(workspace.path, "azure.manual", "https://manual.managedhsm.azure.net") as manual:
        jwk = JsonWebKey(kty="oct-HSM", key_ops=["encrypt", "decrypt", "wrapKey", "unwrapKey"], t=blob)
        manual.client.import_key("uploaded-by-hand", jwk, hardware_protected=True)
        assert manual.fingerprints() == {"uploaded-by-hand": [current["fingerprint"]]}

    # nothing keyplan wrote or printed holds any material, in any encoding
    materials = held_materials(workspace)
    assert len(materials) == 4, "AES v1 and v2, EC, and the hand-imported AES v2"
    artifacts = [p for p in workspace.path.rglob("*") if p.is_file() and ".keyplan/emulators" not in str(p)]
    assert {"keyplan.kpstate.json", "first.kpplan", "keystore.json", "data.byok", "audit.jsonl"} <= {
        p.name for p in artifacts
    }
    blobs = [(str(p.relative_to(workspace.path)), p.read_bytes()) for p in artifacts]
    blobs += [(f"output {i}", out) for i, out in enumerate(outputs)]
    for material in materials:
        for needle in leak_forms(material):
            for name, content in blobs:
                assert needle not in content, f"material found in {name}"


def test_multicloud_example_imports_one_material_into_three_clouds(workspace: Workspace) -> None:
    example = REPO / "examples" / "multicloud"
    for name in ("main.kp.hcl", "run.sh", "README.md"):
        shutil.copy(example / name, workspace.path / name)
    result = subprocess.run(
        ["bash", str(workspace.path / "run.sh")],
        check=False,
        capture_output=True,
        text=True,
        env=dict(os.environ, KEYPLAN=str(KEYPLAN_BIN)),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes" in result.stdout

    state = workspace.state()
    [data] = fingerprints(workspace, "key.data")
    [signing] = fingerprints(workspace, "key.signing")
    data_ids = {t: r["remote_id"] for t, r in state["keys"]["key.data"]["targets"].items()}
    signing_ids = {t: r["remote_id"] for t, r in state["keys"]["key.signing"]["targets"].items()}
    assert sorted(data_ids) == ["aws.main", "azure.hsm", "gcp.main"]
    assert sorted(signing_ids) == ["aws.main", "azure.vault"]

    with embedded(workspace.path, KmsEmulator, "aws.main") as aws:
        held = {m["key"]: m["fingerprint"] for m in materials(aws)}
        assert held == {data_ids["aws.main"]: data, signing_ids["aws.main"]: signing}
    with embedded(workspace.path, GcpKmsEmulator, "gcp.main") as gcp:
        assert [(m["key"], m["fingerprint"]) for m in materials(gcp)] == [(data_ids["gcp.main"], data)]
    with azure_vault(workspace.path, "azure.hsm", "https://contoso-keys.managedhsm.azure.net") as mhsm:
        assert mhsm.fingerprints() == {key_name(data_ids["azure.hsm"]): [data]}
    with azure_vault(workspace.path, "azure.vault", "https://contoso-signing.vault.azure.net") as kv:
        assert kv.fingerprints() == {key_name(signing_ids["azure.vault"]): [signing]}


def test_discover_names_the_algorithm_of_ec_and_aes_keys(workspace: Workspace) -> None:
    """A key listing carries no key type: discover reads each key, so keyplan's own EC and AES
    keys are offered with their algorithm, not as UNKNOWN."""
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    for target, expected in (("azure.hsm", ["AES_256"]), ("azure.vault", ["EC_P256", "RSA_3072"])):
        found = workspace.keyplan("discover", target)
        assert found.code == 0, found.output
        assert "UNKNOWN" not in found.stdout and "an algorithm keyplan does not import" not in found.stdout
        for algorithm in expected:
            assert f": {algorithm}, enabled" in found.stdout, found.stdout
