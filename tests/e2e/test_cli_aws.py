"""End to end through the CLI: HCL -> plan -> apply against the embedded AWS KMS emulator,
with the software keystore. Out-of-band changes go through boto3 against the same emulator."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from keyplan.state.local import LocalBackend
from tests import schemas
from tests.e2e.conftest import ForkedKeyplan, Workspace, resume_after_kill

CONFIG = """
variable "apps" {
  type    = set(string)
  default = ["payments", "ledger"]
}
variable "team" {
  type    = string
  default = "core"
}
variable "prevent" {
  type    = bool
  default = false
}

source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "app" {
  for_each    = var.apps
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  description = "data key for ${each.key}"
  aliases     = ["alias/${each.key}"]
  labels = {
    app  = each.key
    team = var.team
  }
  expiry {
    after = "90d"
  }
  lifecycle {
    prevent_destroy = var.prevent
  }
}
"""


def applied(workspace: Workspace, *extra: str) -> None:
    workspace.write(CONFIG)
    result = workspace.keyplan("apply", "-auto-approve", *extra)
    assert result.code == 0, result.output
    assert "Apply complete!" in result.stdout


def remote_ids(workspace: Workspace) -> dict[str, str]:
    state = workspace.state()
    return {address: record["targets"]["aws.main"]["remote_id"] for address, record in state["keys"].items()}


def test_apply_imports_material_the_emulator_proves_and_replans_clean(workspace: Workspace) -> None:
    applied(workspace)
    state = workspace.state()
    assert sorted(state["keys"]) == ['key.app["ledger"]', 'key.app["payments"]']
    held = workspace.emulator_fingerprints()
    for record in state["keys"].values():
        target = record["targets"]["aws.main"]
        assert held[target["remote_id"]] == [record["materials"][0]["fingerprint"]]
        assert target["imports"][0]["expires_at"] is not None
    for _ in range(3):
        again = workspace.keyplan("plan", "-detailed-exitcode")
        assert again.code == 0, again.output
        assert "No changes" in again.stdout
    with workspace.aws() as (kms, _):
        aliases = {a["AliasName"]: a["TargetKeyId"] for a in kms.list_aliases()["Aliases"]}
        for address, arn in remote_ids(workspace).items():
            name = address.split('"')[1]
            assert arn.endswith(aliases[f"alias/{name}"])
            meta = kms.describe_key(KeyId=arn)["KeyMetadata"]
            assert meta["KeyState"] == "Enabled" and meta["Origin"] == "EXTERNAL"
            assert meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"


def test_label_change_plans_updates_only(workspace: Workspace) -> None:
    applied(workspace)
    plan = workspace.keyplan("plan", "-detailed-exitcode", "-var", "team=platform", "-json")
    assert plan.code == 2, plan.output
    document = json.loads(plan.stdout)
    changes = [c for c in document["changes"] if c["actions"] != ["no-op"]]
    assert [c["actions"] for c in changes] == [["update"], ["update"]]
    assert document["summary"] == {"update": 2}
    assert workspace.keyplan("apply", "-auto-approve", "-var", "team=platform").code == 0
    with workspace.aws() as (kms, _):
        for arn in remote_ids(workspace).values():
            tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=arn)["Tags"]}
            assert tags["team"] == "platform"
            assert tags["keyplan-managed-by"] == f"keyplan-{workspace.state()['lineage']}"


def test_an_update_shows_the_clouds_value_as_it_is_now(workspace: Workspace) -> None:
    # Changed at the cloud behind keyplan's back: the update puts back the configured description,
    # and the plan shows the change from what the cloud holds, not from what the state recorded.
    applied(workspace)
    arn = remote_ids(workspace)['key.app["payments"]']
    with workspace.aws() as (kms, _):
        kms.update_key_description(KeyId=arn, Description="changed <by hand>")
    plan = workspace.keyplan("plan", "-no-color")
    assert plan.code == 0, plan.output
    assert 'description: "changed <by hand>" -> "data key for payments"' in plan.stdout, plan.stdout
    document = json.loads(workspace.keyplan("plan", "-json").stdout)
    [change] = [c for c in document["changes"] if c["actions"] == ["update"]]
    assert change["before"]["description"] == "changed <by hand>"
    assert change["after"]["description"] == "data key for payments"
    assert change["before"]["labels"] == change["after"]["labels"], "only the description changes"
    assert "labels:" not in plan.stdout and "aliases:" not in plan.stdout


def test_removed_key_is_scheduled_for_deletion(workspace: Workspace) -> None:
    applied(workspace)
    ledger = remote_ids(workspace)['key.app["ledger"]']
    plan = workspace.keyplan("plan", "-var", 'apps=["payments"]')
    assert plan.code == 0, plan.output
    assert "1 to delete" in plan.stdout and 'key.app["ledger"]' in plan.stdout
    assert workspace.keyplan("apply", "-auto-approve", "-var", 'apps=["payments"]').code == 0
    assert list(workspace.state()["keys"]) == ['key.app["payments"]']
    with workspace.aws() as (kms, _):
        assert kms.describe_key(KeyId=ledger)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    again = workspace.keyplan("plan", "-detailed-exitcode", "-var", 'apps=["payments"]')
    assert again.code == 0, again.output


def test_prevent_destroy_refuses_deletion_and_leaves_state_untouched(workspace: Workspace) -> None:
    applied(workspace, "-var", "prevent=true")
    before = workspace.state_path.read_bytes()
    plan = workspace.keyplan("plan", "-var", 'apps=["payments"]', "-var", "prevent=true")
    assert plan.code == 1
    assert "prevent_destroy" in plan.stderr and "Traceback" not in plan.output
    apply = workspace.keyplan("apply", "-auto-approve", "-var", 'apps=["payments"]')
    assert apply.code == 1 and "prevent_destroy" in apply.stderr
    assert workspace.state_path.read_bytes() == before


def test_material_deleted_out_of_band_is_drift_and_reimported(workspace: Workspace) -> None:
    applied(workspace)
    payments = remote_ids(workspace)['key.app["payments"]']
    fingerprint = workspace.state()["keys"]['key.app["payments"]']["materials"][0]["fingerprint"]
    with workspace.aws() as (kms, _):
        kms.delete_imported_key_material(KeyId=payments)
        assert kms.describe_key(KeyId=payments)["KeyMetadata"]["KeyState"] == "PendingImport"
    plan = workspace.keyplan("plan", "-detailed-exitcode")
    assert plan.code == 2, plan.output
    assert "Changed outside keyplan" in plan.stdout and "holds no material" in plan.stdout
    assert "reimport" in plan.stdout
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    with workspace.aws() as (kms, _):
        assert kms.describe_key(KeyId=payments)["KeyMetadata"]["KeyState"] == "Enabled"
    assert workspace.emulator_fingerprints()[payments] == [fingerprint]
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def test_rotation_with_replace_keeps_old_ciphertext_decryptable(workspace: Workspace) -> None:
    applied(workspace)
    payments = remote_ids(workspace)['key.app["payments"]']
    with workspace.aws() as (kms, _):
        old = kms.encrypt(KeyId=payments, Plaintext=b"hello")["CiphertextBlob"]
    plan = workspace.keyplan("plan", "-replace", 'key.app["payments"]')
    assert "1 to rotate" in plan.stdout, plan.output
    assert workspace.keyplan("apply", "-auto-approve", "-replace", 'key.app["payments"]').code == 0
    record = workspace.state()["keys"]['key.app["payments"]']
    assert [m["version"] for m in record["materials"]] == [1, 2]
    assert record["targets"]["aws.main"]["current_material_version"] == 2
    with workspace.aws() as (kms, _):
        assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"hello"
        rotations = kms.list_key_rotations(KeyId=payments)["Rotations"]
        assert len(rotations) == 1
    assert sorted(workspace.emulator_fingerprints()[payments]) == sorted(m["fingerprint"] for m in record["materials"])
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def test_key_created_before_a_crash_is_adopted_not_duplicated(workspace: Workspace) -> None:
    applied(workspace)
    # Simulate a crash between CreateKey and the state write: state forgets the target record.
    state = workspace.state()
    arn = state["keys"]['key.app["ledger"]']["targets"]["aws.main"]["remote_id"]
    del state["keys"]['key.app["ledger"]']["targets"]["aws.main"]
    workspace.state_path.write_text(json.dumps(state))
    plan = workspace.keyplan("plan", "-json")
    changes = {c["address"]: c["actions"] for c in json.loads(plan.stdout)["changes"]}
    assert changes == {'key.app["ledger"]': ["adopt"], 'key.app["payments"]': ["no-op"]}
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    assert remote_ids(workspace)['key.app["ledger"]'] == arn
    with workspace.aws() as (kms, _):
        assert len(kms.list_keys()["Keys"]) == 2
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def test_killed_apply_converges_without_duplicate_keys(workspace: Workspace) -> None:
    # The embedded emulator lists a new key at once: a key whose creation the kill cut short is
    # found by the next apply without waiting out a listing delay (tests/e2e/test_lost_create.py
    # covers that wait).
    config = CONFIG.replace('endpoint = "embedded"', 'endpoint = "embedded"\n  consistency_window_seconds = 0')
    workspace.write(config.replace('default = ["payments", "ledger"]', 'default = ["a", "b", "c", "d", "e", "f"]'))
    env = dict(os.environ, KEYPLAN_EMULATOR_LATENCY_MS="150")
    process = ForkedKeyplan(workspace.path, "apply", "-auto-approve", "-parallelism", "3", env=env)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if ": created at aws.main" in line:  # a key finished, others in flight
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    assert LocalBackend(workspace.state_path).store().current_lock() is None, "the lock died with its process"
    result = resume_after_kill(workspace)  # parallel steps in flight; tests/e2e/test_crash_at_every_call.py kills at each call
    assert result.code == 0, result.output
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0
    with workspace.aws() as (kms, _):
        keys = kms.list_keys()["Keys"]
    assert len(keys) == 6, "every key exists exactly once\n" + "".join(seen) + result.output
    assert sorted(remote_ids(workspace).values()) == sorted(k["KeyArn"] for k in keys)


def test_saved_plan_applies_exactly_and_stale_or_altered_plans_are_refused(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    altered = workspace.path / "altered.kpplan"
    document = json.loads(planfile.read_text())
    document["changes"][0]["after"]["labels"]["team"] = "evil"
    altered.write_text(json.dumps(document))
    refused = workspace.keyplan("apply", str(altered))
    assert refused.code == 1 and "Plan file was altered" in refused.stderr
    assert not workspace.state_path.exists()

    assert workspace.keyplan("apply", str(planfile)).code == 0
    stale = workspace.keyplan("apply", str(planfile))
    assert stale.code == 1 and "stale" in stale.stderr and "serial" in stale.stderr

    second = workspace.path / "second.kpplan"
    assert workspace.keyplan("plan", "-var", "team=x", f"-out={second}").code == 0
    # The plan records team=x, so a changed default of `team` would change nothing it means; a
    # changed description does.
    workspace.write(CONFIG.replace('"data key for ${each.key}"', '"key for ${each.key}"'))
    moved = workspace.keyplan("apply", str(second))
    assert moved.code == 1 and "configuration changed" in moved.stderr


def test_held_lock_is_refused_with_who_holds_it(workspace: Workspace) -> None:
    applied(workspace)
    backend = LocalBackend(workspace.state_path).store()
    held = backend.acquire("apply")
    try:
        result = workspace.keyplan("apply", "-auto-approve")
        assert result.code == 1
        assert "Error acquiring the state lock" in result.stderr and held.id in result.stderr
        assert "Traceback" not in result.output
    finally:
        assert workspace.keyplan("force-unlock", held.id, "-force").code == 0
    assert workspace.keyplan("plan").code == 0


def test_apply_without_a_terminal_needs_auto_approve(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    result = workspace.keyplan("apply")
    assert result.code == 1 and "-auto-approve" in result.stderr
    assert not workspace.state_path.exists()


def test_user_errors_are_diagnostics_not_tracebacks(workspace: Workspace) -> None:
    workspace.write('key "x" {\n  algorithm = "AES_256"\n  source = source.software.nope\n  targets = [\n')
    result = workspace.keyplan("plan")
    assert result.code == 1 and "Traceback" not in result.output
    assert "main.kp.hcl:" in result.stderr
    workspace.write(CONFIG)
    workspace.state_path.write_text("{not json")
    corrupt = workspace.keyplan("plan")
    assert corrupt.code == 1 and "not valid JSON" in corrupt.stderr and "backup" in corrupt.stderr


def test_graph_and_state_commands(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    dot = workspace.keyplan("graph")
    assert dot.code == 0 and dot.stdout.startswith("digraph keyplan")
    assert '"create_key key.app[\\"payments\\"] @ aws.main" -> "get_import_parameters' in dot.stdout
    applied(workspace)
    listing = workspace.keyplan("state", "list")
    assert listing.stdout.split() == ['key.app["ledger"]', 'key.app["payments"]']
    shown = workspace.keyplan("state", "show", 'key.app["payments"]')
    assert "aeskcv:" in shown.stdout and "@ aws.main: arn:aws:kms:eu-west-1" in shown.stdout
    missing = workspace.keyplan("state", "show", 'key.app["nope"]')
    assert missing.code == 1 and "state list" in missing.stderr


def test_plan_json_validates_against_the_published_schema(workspace: Workspace) -> None:
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json").read_text())
    workspace.write(CONFIG)
    first = workspace.keyplan("plan", "-json")
    schemas.validate(json.loads(first.stdout), schema)
    applied(workspace)
    with workspace.aws() as (kms, _):
        kms.disable_key(KeyId=remote_ids(workspace)['key.app["payments"]'])
    drift = workspace.keyplan("plan", "-json", "-var", "team=x")
    document = json.loads(drift.stdout)
    schemas.validate(document, schema)
    assert [d["kind"] for d in document["drift"]] == ["disabled"]


def test_expiring_material_is_renewed_before_it_lapses(workspace: Workspace) -> None:
    import base64
    from datetime import UTC, datetime, timedelta

    from keyplan.crypto import SecretBytes, WrapMethod, wrap
    from providers.emulation.store import DocumentStore

    applied(workspace)
    payments = remote_ids(workspace)['key.app["payments"]']
    store = DocumentStore(workspace.path / ".keyplan" / "emulators" / "aws-main.sqlite")
    material = next(
        SecretBytes(base64.b64decode(m["secret"]))
        for _, key in store.list("keys")
        if key["arn"] == payments
        for m in key["materials"]
    )
    store.close()
    soon = datetime.now(UTC) + timedelta(days=5)
    with workspace.aws() as (kms, _):
        # Someone re-imports the same material out of band with a much shorter expiry.
        params = kms.get_parameters_for_import(
            KeyId=payments, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
        )
        kms.import_key_material(
            KeyId=payments,
            ImportToken=params["ImportToken"],
            EncryptedKeyMaterial=wrap(WrapMethod.RSAES_OAEP_SHA_256, params["PublicKey"], material),
            ExpirationModel="KEY_MATERIAL_EXPIRES",
            ValidTo=soon,
        )
    plan = workspace.keyplan("plan", "-json")
    changes = {c["address"]: c for c in json.loads(plan.stdout)["changes"]}
    assert changes['key.app["payments"]']["actions"] == ["reimport"], plan.output
    assert "expires at" in changes['key.app["payments"]']["reason"]
    assert changes['key.app["ledger"]']["actions"] == ["no-op"]
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    with workspace.aws() as (kms, _):
        meta = kms.describe_key(KeyId=payments)["KeyMetadata"]
        assert meta["KeyState"] == "Enabled"
        assert meta["ValidTo"] > soon + timedelta(days=80)
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def test_target_and_refresh_flags_limit_what_is_planned(workspace: Workspace) -> None:
    applied(workspace)
    only = workspace.keyplan("plan", "-json", "-var", "team=platform", "-target", 'key.app["payments"]')
    changes = {c["address"]: c["actions"] for c in json.loads(only.stdout)["changes"]}
    assert changes == {'key.app["payments"]': ["update"]}, only.output
    assert workspace.keyplan("apply", "-auto-approve", "-var", "team=platform", "-target", 'key.app["payments"]').code == 0
    state = workspace.state()["keys"]
    assert state['key.app["payments"]']["targets"]["aws.main"]["labels"]["team"] == "platform"
    assert state['key.app["ledger"]']["targets"]["aws.main"]["labels"]["team"] == "core"

    with workspace.aws() as (kms, _):
        kms.delete_imported_key_material(KeyId=remote_ids(workspace)['key.app["ledger"]'])
    # Without refresh keyplan trusts its state and does not ask the cloud: no drift is seen.
    stale = workspace.keyplan("plan", "-refresh=false", "-detailed-exitcode", "-var", "team=platform", "-target", 'key.app["ledger"]', "-json")
    assert {c["address"]: c["actions"] for c in json.loads(stale.stdout)["changes"]} == {'key.app["ledger"]': ["update"]}
    assert json.loads(stale.stdout)["drift"] == []
    fresh = workspace.keyplan("plan", "-json", "-var", "team=platform", "-target", 'key.app["ledger"]')
    document = json.loads(fresh.stdout)
    assert [d["kind"] for d in document["drift"]] == ["material_missing"]
    assert document["changes"][0]["actions"] == ["reimport", "update"]


def test_usage_errors_are_short_and_paths_follow_chdir(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    bad = workspace.keyplan("plan", "--no-such-flag")
    assert bad.code == 1 and "has no flag --no-such-flag" in bad.stderr and "Traceback" not in bad.output
    saved = workspace.keyplan("plan", "-out=relative.kpplan")
    assert saved.code == 0 and (workspace.path / "relative.kpplan").exists(), "-out is read from the -chdir directory"
    assert workspace.keyplan("show", "relative.kpplan").code == 0
