"""End to end through the CLI: HCL -> plan -> apply against the embedded Google Cloud KMS
emulator, with the software keystore. Out-of-band changes go through the official
google-cloud-kms client against the same emulator (see gcp_support.py), and what the emulator
unwrapped is compared with what state recorded, by fingerprint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from gcp_support import gcp_cloud, live_labels, materials_held

from providers.gcp.mapping import encode_label_value
from tests.e2e.conftest import Workspace, lifecycle_commands, secret_forms

GCP_PROVIDER = """
provider "gcp" "main" {
  project  = "p"
  location = "global"
  key_ring = "ring"
  endpoint = "embedded"
}
"""

CONFIG = (
    """
variable "apps" {
  type    = set(string)
  default = ["payments", "ledger"]
}
variable "team" {
  type    = string
  default = "core"
}

source "software" "local" {}
"""
    + GCP_PROVIDER
    + """
key "app" {
  for_each  = var.apps
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.gcp.main]
  labels = {
    app  = each.key
    team = var.team
  }
  rotation {
    every = "30d"
  }
}
"""
)

PAYMENTS, LEDGER = 'key.app["payments"]', 'key.app["ledger"]'
ONE_KEY = ("-var", 'apps=["payments"]')


def applied(workspace: Workspace, *extra: str, config: str = CONFIG) -> None:
    workspace.write(config)
    result = workspace.keyplan("apply", "-auto-approve", *extra)
    assert result.code == 0, result.output
    assert "Apply complete!" in result.stdout


def target(workspace: Workspace, address: str) -> dict[str, Any]:
    record: dict[str, Any] = workspace.state()["keys"][address]["targets"]["gcp.main"]
    return record


def fingerprints(workspace: Workspace, address: str) -> list[str]:
    return [m["fingerprint"] for m in workspace.state()["keys"][address]["materials"]]


def imported_versions(workspace: Workspace, address: str) -> dict[int, str]:
    """material version -> Cloud KMS version id, as state recorded the imports."""
    return {i["material_version"]: i["remote_version_id"] for i in target(workspace, address)["imports"]}


def plan_json(workspace: Workspace, *args: str) -> dict[str, Any]:
    result = workspace.keyplan("plan", "-json", *args)
    assert result.code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def assert_clean(workspace: Workspace, *args: str) -> None:
    again = workspace.keyplan("plan", "-detailed-exitcode", *args)
    assert again.code == 0, again.output
    assert "No changes" in again.stdout


def test_apply_imports_material_the_emulator_proves_and_replans_clean(workspace: Workspace) -> None:
    applied(workspace)
    state = workspace.state()
    assert sorted(state["keys"]) == [LEDGER, PAYMENTS]
    with gcp_cloud(workspace.path) as cloud:
        held = cloud.fingerprints()
        for address, record in state["keys"].items():
            name = record["targets"]["gcp.main"]["remote_id"]
            assert name.startswith("projects/p/locations/global/keyRings/ring/cryptoKeys/")
            version = imported_versions(workspace, address)[1]
            assert held[name] == {version: record["materials"][0]["fingerprint"]}
            assert cloud.primary(name) == version and cloud.version_states(name) == {version: "ENABLED"}
            key = cloud.client.get_crypto_key(name=name)
            assert key.import_only and key.version_template.protection_level.name == "HSM"
            assert live_labels(cloud, name) == {
                "app": address.split('"')[1],
                "team": "core",
                "keyplan-address": encode_label_value(address),
                "keyplan-managed-by": encode_label_value(f"keyplan-{state['lineage']}"),
            }
    for _ in range(3):
        assert_clean(workspace)


def test_label_change_is_one_update_per_key_and_goes_live(workspace: Workspace) -> None:
    applied(workspace)
    document = plan_json(workspace, "-var", "team=platform")
    changes = [c for c in document["changes"] if c["actions"] != ["no-op"]]
    assert [(c["address"], c["actions"]) for c in changes] == [(LEDGER, ["update"]), (PAYMENTS, ["update"])]
    assert all(c["reason"] == "changes labels" for c in changes)
    assert document["summary"] == {"update": 2}
    assert workspace.keyplan("apply", "-auto-approve", "-var", "team=platform").code == 0
    with gcp_cloud(workspace.path) as cloud:
        for address in (LEDGER, PAYMENTS):
            assert live_labels(cloud, target(workspace, address)["remote_id"])["team"] == "platform"
    assert_clean(workspace, "-var", "team=platform")


def test_disabled_outside_keyplan_is_drift_and_enabled_again(workspace: Workspace) -> None:
    applied(workspace, *ONE_KEY)
    name = target(workspace, PAYMENTS)["remote_id"]
    version = imported_versions(workspace, PAYMENTS)[1]
    with gcp_cloud(workspace.path) as cloud:
        cloud.set_version_state(name, version, "DISABLED")
    document = plan_json(workspace, *ONE_KEY)
    assert [(d["address"], d["kind"]) for d in document["drift"]] == [(PAYMENTS, "disabled")]
    assert [c["actions"] for c in document["changes"]] == [["update"]]
    assert document["changes"][0]["reason"] == "changes enabled"
    drift = workspace.keyplan("drift", *ONE_KEY)
    assert drift.code == 2 and "disabled outside keyplan" in drift.stdout, drift.output
    assert workspace.keyplan("apply", "-auto-approve", *ONE_KEY).code == 0
    with gcp_cloud(workspace.path) as cloud:
        assert cloud.version_states(name) == {version: "ENABLED"}
    assert_clean(workspace, *ONE_KEY)


def test_rotation_by_replace_and_by_elapsed_period_keeps_old_ciphertext_decryptable(workspace: Workspace) -> None:
    applied(workspace)
    payments, ledger = target(workspace, PAYMENTS)["remote_id"], target(workspace, LEDGER)["remote_id"]
    with gcp_cloud(workspace.path) as cloud:
        before = {name: cloud.encrypt(name, b"made before rotation") for name in (payments, ledger)}

    plan = workspace.keyplan("plan", "-replace", PAYMENTS)
    assert "1 to rotate" in plan.stdout and "-replace requested" in plan.stdout, plan.output
    assert workspace.keyplan("apply", "-auto-approve", "-replace", PAYMENTS).code == 0
    record = workspace.state()["keys"][PAYMENTS]
    assert [m["version"] for m in record["materials"]] == [1, 2]
    assert record["targets"]["gcp.main"]["current_material_version"] == 2
    assert_clean(workspace)

    # The rotation period elapses for ledger: its material was made 31 days ago as far as state knows.
    state = workspace.state()
    old = datetime.now(UTC) - timedelta(days=31)
    state["keys"][LEDGER]["materials"][0]["created_at"] = old.isoformat()
    workspace.state_path.write_text(json.dumps(state))
    document = plan_json(workspace)
    rotating = [c for c in document["changes"] if c["actions"] != ["no-op"]]
    assert [(c["address"], c["actions"]) for c in rotating] == [(LEDGER, ["rotate"])]
    assert "rotation period elapsed" in rotating[0]["reason"]
    assert workspace.keyplan("apply", "-auto-approve").code == 0

    with gcp_cloud(workspace.path) as cloud:
        held = cloud.fingerprints()
        for address, name in ((PAYMENTS, payments), (LEDGER, ledger)):
            versions = imported_versions(workspace, address)
            assert sorted(versions) == [1, 2] and versions[1] != versions[2]
            assert cloud.primary(name) == versions[2], "the new material is primary"
            assert held[name] == {
                versions[v]: fp for v, fp in zip((1, 2), fingerprints(workspace, address), strict=True)
            }
            assert cloud.decrypt(name, before[name]) == b"made before rotation"
            fresh = cloud.encrypt(name, b"after")
            assert int.from_bytes(fresh[1:5], "big") == int(versions[2]), "new ciphertext uses the new version"
    assert_clean(workspace)


def test_destroyed_version_is_restored_while_scheduled_and_reimported_once_destroyed(workspace: Workspace) -> None:
    applied(workspace, *ONE_KEY)
    name = target(workspace, PAYMENTS)["remote_id"]
    version = imported_versions(workspace, PAYMENTS)[1]
    [fingerprint] = fingerprints(workspace, PAYMENTS)
    with gcp_cloud(workspace.path) as cloud:
        ciphertext = cloud.encrypt(name, b"keep me")
        cloud.client.destroy_crypto_key_version(name=cloud.version_name(name, version))

    scheduled = workspace.keyplan("plan", "-detailed-exitcode", *ONE_KEY)
    assert scheduled.code == 2, scheduled.output
    assert "Changed outside keyplan" in scheduled.stdout and "scheduled for deletion" in scheduled.stdout
    document = plan_json(workspace, *ONE_KEY)
    assert [d["kind"] for d in document["drift"]] == ["deletion_scheduled"]
    assert [c["actions"] for c in document["changes"]] == [["restore", "update"]]
    assert workspace.keyplan("apply", "-auto-approve", *ONE_KEY).code == 0
    with gcp_cloud(workspace.path) as cloud:
        assert cloud.version_states(name) == {version: "ENABLED"}, "restored (DISABLED), then enabled"
        assert cloud.decrypt(name, ciphertext) == b"keep me"
    assert_clean(workspace, *ONE_KEY)

    with gcp_cloud(workspace.path) as cloud:
        cloud.client.destroy_crypto_key_version(name=cloud.version_name(name, version))
        cloud.advance_clock(31 * 86400)  # past destroy_time: the material is gone
        assert cloud.version_states(name) == {version: "DESTROYED"} and name not in cloud.fingerprints()
    destroyed = workspace.keyplan("plan", "-detailed-exitcode", *ONE_KEY)
    assert destroyed.code == 2 and "holds no material" in destroyed.stdout, destroyed.output
    document = plan_json(workspace, *ONE_KEY)
    assert [d["kind"] for d in document["drift"]] == ["material_missing"]
    [change] = document["changes"]
    assert change["actions"] == ["reimport"] and change["material_version"] == 1
    apply = workspace.keyplan("apply", "-auto-approve", *ONE_KEY)
    assert apply.code == 0, apply.output
    assert 'key.app["payments"]: material imported at gcp.main (1/1 keys)' in apply.stdout, "the same key, not a new one"
    assert "Keys: 0 created, 1 imported" in apply.stdout
    with gcp_cloud(workspace.path) as cloud:
        assert cloud.fingerprints()[name] == {version: fingerprint}, "the same material, in the same version"
        assert cloud.version_states(name) == {version: "ENABLED"} and cloud.primary(name) == version
        assert cloud.decrypt(name, ciphertext) == b"keep me"
    assert imported_versions(workspace, PAYMENTS) == {1: version}
    assert_clean(workspace, *ONE_KEY)


def test_import_job_expiring_between_plan_and_apply_is_replaced(workspace: Workspace) -> None:
    applied(workspace, *ONE_KEY)
    [(prerequisite_id, old_job)] = [
        (pid, record)
        for pid, record in workspace.state()["prerequisites"]["gcp.main"].items()
        if pid.startswith("import_job:")
    ]
    planfile = workspace.path / "ledger.kpplan"
    plan = workspace.keyplan("plan", f"-out={planfile}")
    assert plan.code == 0 and "1 to create" in plan.stdout, plan.output
    with gcp_cloud(workspace.path) as cloud:
        cloud.advance_clock(3 * 86400 + 3600)
        assert cloud.client.get_import_job(name=old_job["remote_id"]).state.name == "EXPIRED"
    apply = workspace.keyplan("apply", str(planfile), "-max-plan-age=0")
    assert apply.code == 0, apply.output
    new_job = workspace.state()["prerequisites"]["gcp.main"][prerequisite_id]
    assert new_job["remote_id"] != old_job["remote_id"]
    ledger = target(workspace, LEDGER)["remote_id"]
    with gcp_cloud(workspace.path) as cloud:
        jobs = {
            j.name: j.state.name
            for j in cloud.client.list_import_jobs(request={"parent": ledger.rsplit("/cryptoKeys/", 1)[0]})
        }
        assert jobs == {old_job["remote_id"]: "EXPIRED", new_job["remote_id"]: "ACTIVE"}
        assert cloud.fingerprints()[ledger] == {
            imported_versions(workspace, LEDGER)[1]: fingerprints(workspace, LEDGER)[0]
        }
    assert_clean(workspace)


MULTICLOUD = (
    """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}
"""
    + GCP_PROVIDER
    + """
key "shared" {
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main, provider.gcp.main]
  labels      = { app = "shared" }
  description = "one key in two clouds"
}
"""
)


def test_one_key_in_aws_and_gcp_holds_the_same_material_in_both(workspace: Workspace) -> None:
    workspace.write(MULTICLOUD)
    validate = workspace.keyplan("validate")
    assert validate.code == 0, validate.output
    assert "description is not kept by Google Cloud KMS" in validate.output
    applied(workspace, config=MULTICLOUD)
    record = workspace.state()["keys"]["key.shared"]
    [fingerprint] = [m["fingerprint"] for m in record["materials"]]
    aws_arn = record["targets"]["aws.main"]["remote_id"]
    gcp_name = record["targets"]["gcp.main"]["remote_id"]
    assert workspace.emulator_fingerprints("aws-main")[aws_arn] == [fingerprint]
    with gcp_cloud(workspace.path) as cloud:
        assert list(cloud.fingerprints()[gcp_name].values()) == [fingerprint]
    with workspace.aws() as (kms, _):
        assert kms.describe_key(KeyId=aws_arn)["KeyMetadata"]["Description"] == "one key in two clouds"
    # Cloud KMS keeps no description: that is no difference to plan, now or later.
    assert_clean(workspace)

    with_aliases = MULTICLOUD.replace(
        'labels      = { app = "shared" }', 'labels      = { app = "shared" }\n  aliases     = ["alias/shared"]'
    )
    workspace.write(with_aliases)
    refused = workspace.keyplan("validate")
    assert refused.code == 1 and "Traceback" not in refused.output
    assert "main.kp.hcl:" in refused.stderr and "Google Cloud KMS keys have no aliases" in refused.stderr
    assert "gcp.main" in refused.stderr


LEAK_CONFIG = (
    """
source "software" "local" {}
"""
    + GCP_PROVIDER
    + """
key "mac" {
  algorithm = "HMAC_SHA256"
  source    = source.software.local
  targets   = [provider.gcp.main]
}

key "data" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.gcp.main]
  labels    = { app = each.key }
}

key "signing" {
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.gcp.main]
}

provider "gcp" "raw" {
  project             = "p"
  location            = "global"
  key_ring            = "raw"
  endpoint            = "embedded"
  symmetric_algorithm = "AES_256_GCM"
}

key "raw" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.gcp.raw]
}
"""
)



def test_no_artifact_or_output_of_a_gcp_run_contains_material(workspace: Workspace) -> None:
    workspace.write(LEAK_CONFIG)
    env = {"KEYPLAN_LOG": "DEBUG"}
    outputs = []
    planfile = workspace.path / "first.kpplan"
    for args in lifecycle_commands(planfile, rotate='key.data["a"]', show="key.mac"):
        result = workspace.keyplan(*args, env=env)
        assert result.code in (0, 2), (args, result.output)
        outputs.append(result.output.encode())
    materials = materials_held(workspace.path)
    assert len(materials) == 5, "4 keys imported, one rotated once"
    materials += materials_held(workspace.path, "gcp-raw")  # proven by RawEncrypt/RawDecrypt in `verify`
    assert len(materials) == 6
    artifacts = [p for p in workspace.path.rglob("*") if p.is_file() and ".keyplan/emulators" not in str(p)]
    names = {p.name for p in artifacts}
    assert {"keyplan.kpstate.json", "keyplan.kpstate.json.backup", "first.kpplan", "keystore.json"} <= names
    blobs = [(str(p.relative_to(workspace.path)), p.read_bytes()) for p in artifacts]
    blobs += [(f"output {i}", out) for i, out in enumerate(outputs)]
    for material in materials:
        for needle in secret_forms(material):
            for name, blob in blobs:
                assert needle not in blob, f"material found in {name}"
