"""Change review and drift jobs end to end: saved plans refused for each reason, every drift
class produced by an out-of-band change through boto3 against the AWS emulator, the drift
report against its schema, refresh-only applies, `keyplan import` / `discover`, the audit log
counted against the emulator's own call statistics, and `keyplan state rm | mv | pull | push`.

One workspace is applied once per test module and copied (configuration, state, keystore and
the emulator's SQLite store) for each test that changes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from test_leaks_and_failures import materials_held_by_emulator

from keyplan.drift_report import render_drift_report
from keyplan.plan.model import Plan
from keyplan.plan.planfile import load_plan, save_plan
from keyplan.state.local import LocalBackend
from providers.emulation.server import fetch_json
from tests import schemas
from tests.e2e.conftest import KEYPLAN_BIN, REPO, Workspace, secret_forms

KEYS = ["clean", "deleting", "disabled", "edited", "missing", "orphan", "rotated"]

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region            = "eu-west-1"
  endpoint          = "embedded"
  wrapping_key_spec = "RSA_2048"
}

key "k" {
  for_each    = toset(%s)
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  description = "key ${each.key}"
  aliases     = ["alias/${each.key}"]
  labels      = { team = "core" }
}

key "soon" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  expiry {
    after = "10d"
  }
}
""" % json.dumps(KEYS)

DRIFT_SCHEMA = json.loads((REPO / "schemas" / "drift.schema.json").read_text())


@pytest.fixture(scope="module")
def applied_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = Workspace(tmp_path_factory.mktemp("review-template"))
    template.write(CONFIG)
    result = template.keyplan("apply", "-auto-approve")
    assert result.code == 0, result.output
    return template.path


@pytest.fixture
def applied(applied_template: Path, tmp_path: Path) -> Workspace:
    copy = tmp_path / "ws"
    shutil.copytree(applied_template, copy)
    return Workspace(copy)


def address(name: str) -> str:
    return f'key.k["{name}"]'


def arn(workspace: Workspace, key: str) -> str:
    return str(workspace.state()["keys"][key]["targets"]["aws.main"]["remote_id"])


def tags_of(kms: Any, key_id: str) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}


def import_foreign_material(kms: Any, key_id: str, *, new: bool = False, wrapping: str = "RSA_4096") -> None:
    """Import 32 random bytes keyplan never saw, as any AWS user could."""
    params = kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec=wrapping
    )
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    kwargs: dict[str, Any] = {
        "KeyId": key_id,
        "ImportToken": params["ImportToken"],
        "EncryptedKeyMaterial": public.encrypt(os.urandom(32), oaep),
        "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
    }
    if new:
        kwargs["ImportType"] = "NEW_KEY_MATERIAL"
    kms.import_key_material(**kwargs)


def drift_report(workspace: Workspace, *args: str) -> tuple[int, dict[str, Any]]:
    """`keyplan drift -json` as a drift report document, validated against its schema."""
    result = workspace.keyplan("drift", "-json", *args)
    assert result.code in (0, 2), result.output
    document = json.loads(result.stdout)
    if "counts" not in document:
        # `keyplan drift -json` still prints the plan document: render the report from it.
        document.pop("summary", None)
        document = json.loads(render_drift_report(Plan.model_validate(document)))
    schemas.validate(document, DRIFT_SCHEMA)
    return result.code, document


# ---------------------------------------------------------------------------------------------
# drift
# ---------------------------------------------------------------------------------------------


def test_each_drift_class_from_an_out_of_band_change(applied: Workspace) -> None:
    ids = {name: arn(applied, address(name)) for name in KEYS}
    with applied.aws() as (kms, _):
        kms.delete_imported_key_material(KeyId=ids["missing"])
        kms.disable_key(KeyId=ids["disabled"])
        kms.schedule_key_deletion(KeyId=ids["deleting"], PendingWindowInDays=7)
        kms.tag_resource(KeyId=ids["edited"], Tags=[{"TagKey": "team", "TagValue": "intruder"}])
        kms.create_alias(AliasName="alias/extra", TargetKeyId=ids["edited"])
        kms.update_key_description(KeyId=ids["edited"], Description="edited by hand")
        import_foreign_material(kms, ids["rotated"], new=True, wrapping="RSA_2048")
        kms.rotate_key_on_demand(KeyId=ids["rotated"])
    removed = applied.keyplan("state", "rm", address("orphan"))
    assert removed.code == 0, removed.output

    code, report = drift_report(applied)
    assert code == 2
    kinds = {(item["address"], item["kind"]) for item in report["drift"]}
    assert kinds == {
        (address("missing"), "material_missing"),
        (address("disabled"), "disabled"),
        (address("deleting"), "deletion_scheduled"),
        (address("edited"), "metadata_edited"),
        (address("rotated"), "unexpected_version"),
        (address("orphan"), "orphan"),
        ("key.soon", "expiring"),
    }
    assert report["clean"] is False and report["total"] == 7
    assert {kind: n for kind, n in report["counts"].items() if n} == {k: 1 for _, k in kinds}
    assert report["lineage"] == applied.state()["lineage"] and report["serial"] == applied.state()["serial"]
    by_address = {item["address"]: item for item in report["drift"]}
    edited = by_address[address("edited")]
    assert edited["remote_id"] == ids["edited"]
    assert edited["recorded"]["labels"] == {"team": "core"} and edited["live"]["labels"] == {"team": "intruder"}
    assert edited["live"]["aliases"] == ["alias/edited", "alias/extra"]
    assert edited["live"]["description"] == "edited by hand"
    assert by_address[address("orphan")]["remote_id"] == ids["orphan"]

    # A shorter horizon leaves the expiring key out; the text form names every class.
    _, near = drift_report(applied, "-expiry-horizon", "1d")
    assert near["counts"]["expiring"] == 0 and near["total"] == 6
    text = applied.keyplan("drift", "-no-color")
    assert text.code == 2
    for phrase in ("holds no material", "disabled outside keyplan", "scheduled for deletion", "edited outside keyplan",
                   "did not import is current", "state does not know it", "material expires at"):
        assert phrase in text.stdout, phrase


def test_clean_runs_exit_zero_every_time(applied_template: Path) -> None:
    workspace = Workspace(applied_template)  # read-only use of the shared workspace
    for _ in range(3):
        plan = workspace.keyplan("plan", "-detailed-exitcode")
        assert plan.code == 0, plan.output
        code, report = drift_report(workspace, "-expiry-horizon", "1d")
        assert code == 0 and report["clean"] is True and report["drift"] == []
        assert set(report["counts"].values()) == {0}


def test_refresh_only_apply_accepts_tag_edits_and_the_next_drift_is_clean(applied: Workspace) -> None:
    edited = arn(applied, address("edited"))
    with applied.aws() as (kms, _):
        kms.tag_resource(KeyId=edited, Tags=[{"TagKey": "team", "TagValue": "platform"}])
    assert applied.keyplan("drift", "-expiry-horizon", "1d").code == 2
    serial = applied.state()["serial"]
    accepted = applied.keyplan("apply", "-refresh-only", "-auto-approve")
    assert accepted.code == 0, accepted.output
    record = applied.state()["keys"][address("edited")]["targets"]["aws.main"]
    assert record["labels"] == {"team": "platform"} and applied.state()["serial"] == serial + 1
    for _ in range(2):
        assert applied.keyplan("drift", "-expiry-horizon", "1d").code == 0
    # The configuration still says team = core: the next plan puts it back, as an update.
    plan = json.loads(applied.keyplan("plan", "-json").stdout)
    assert plan["summary"] == {"update": 1}


# ---------------------------------------------------------------------------------------------
# saved plans
# ---------------------------------------------------------------------------------------------


def test_saved_plans_refused_for_age_version_lineage_and_format(applied: Workspace) -> None:
    planfile = applied.path / "review.kpplan"
    assert applied.keyplan("plan", f"-out={planfile}").code == 0
    saved = load_plan(planfile)

    old = applied.path / "old.kpplan"
    save_plan(saved.model_copy(update={"created_at": saved.created_at - timedelta(hours=30)}), old)
    expired = applied.keyplan("apply", str(old))
    assert expired.code == 1 and "Saved plan is too old" in expired.stderr and "-max-plan-age" in expired.stderr
    assert applied.keyplan("apply", str(old), "-max-plan-age", "48h").code == 0, "within a longer allowed age"

    assert applied.keyplan("plan", f"-out={planfile}").code == 0
    saved = load_plan(planfile)
    other_version = applied.path / "version.kpplan"
    save_plan(saved.model_copy(update={"keyplan_version": "0.0.1"}), other_version)
    refused = applied.keyplan("apply", str(other_version))
    assert refused.code == 1 and "Plan was made by another keyplan version" in refused.stderr

    malformed = applied.path / "malformed.kpplan"
    document = json.loads(planfile.read_text())
    document["actions"] = "none"
    malformed.write_text(json.dumps(document))
    refused = applied.keyplan("apply", str(malformed))
    assert refused.code == 1 and "does not match the plan format" in refused.stderr

    pulled = json.loads(applied.keyplan("state", "pull").stdout)
    pulled["lineage"] = "0" * 32
    replacement = applied.path / "other-lineage.json"
    replacement.write_text(json.dumps(pulled))
    assert applied.keyplan("state", "push", str(replacement), "-force").code == 0
    refused = applied.keyplan("apply", str(planfile))
    assert refused.code == 1 and "Plan belongs to a different state" in refused.stderr
    assert "Traceback" not in refused.output


# ---------------------------------------------------------------------------------------------
# import and discover
# ---------------------------------------------------------------------------------------------

TWO_TARGETS = """
source "software" "local" {}

provider "aws" "main" {
  region            = "eu-west-1"
  endpoint          = "embedded"
  wrapping_key_spec = "RSA_2048"
}

provider "aws" "dr" {
  region            = "eu-west-1"
  endpoint          = "embedded"
  wrapping_key_spec = "RSA_2048"
}

key "shared" {
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main, provider.aws.dr]
  description = "shared data key"
  labels      = { team = "core" }
}
%s
"""

FRESH_KEY = """
key "fresh" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.dr]
}
"""


def forget_target(workspace: Workspace, key: str, target: str) -> str:
    """Drop one target record from state, as if state never learned of that remote key."""
    state = workspace.state()
    remote_id = state["keys"][key]["targets"].pop(target)["remote_id"]
    workspace.state_path.write_text(json.dumps(state))
    return str(remote_id)


def test_import_adopts_a_key_holding_keyplan_material_and_refuses_the_rest(workspace: Workspace) -> None:
    workspace.write(TWO_TARGETS % "")
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    fingerprint = workspace.state()["keys"]["key.shared"]["materials"][0]["fingerprint"]
    dr_key = forget_target(workspace, "key.shared", "aws.dr")

    with workspace.aws("aws-dr") as (kms, _):
        foreign = kms.create_key(Origin="EXTERNAL", Description="made by hand")["KeyMetadata"]["Arn"]
        import_foreign_material(kms, foreign, wrapping="RSA_2048")
        kms.create_alias(AliasName="alias/by-hand", TargetKeyId=foreign)
        elsewhere = kms.create_key(
            Origin="EXTERNAL", Tags=[{"TagKey": "keyplan-managed-by", "TagValue": "keyplan-" + "f" * 32}]
        )["KeyMetadata"]["Arn"]

    # Still tagged by this state: discover offers it as a block and an import command.
    found = workspace.keyplan("discover", "aws.dr")
    assert found.code == 0, found.output
    assert f"#   keyplan import 'key.shared' aws.dr '{dr_key}'\n" in found.stdout
    assert "key.shared: tagged by this state but not in state" in found.stdout
    assert f"# {foreign}" in found.stdout and '# key "by-hand" {' in found.stdout
    assert f"'{foreign}'  # refused: keyplan does not hold this key's material" in found.stdout
    assert "managed by another keyplan state" in found.stdout
    out = workspace.path / "discovered.hcl"
    written = workspace.keyplan("discover", "aws.dr", "-o", str(out))
    assert written.code == 0 and "3 imported key(s)" in written.stdout and out.exists()
    assert workspace.keyplan("discover", "aws.dr", "-o", str(out)).code == 1, "never overwrites"

    # Untagged, the key would be replaced by a plan: keyplan import takes it over instead.
    with workspace.aws("aws-dr") as (kms, _):
        kms.untag_resource(KeyId=dr_key, TagKeys=["keyplan-address", "keyplan-managed-by"])
    before = json.loads(workspace.keyplan("plan", "-json").stdout)
    assert before["summary"] == {"create": 1}

    refusals = {
        "not in config": (("key.nope", "aws.dr", dr_key), "No key key.nope in the configuration"),
        "not a target": (("key.shared", "aws.other", dr_key), "aws.other is not one of key.shared's targets"),
        "other material": (("key.shared", "aws.dr", foreign), "does not hold keyplan's material for key.shared"),
        "other state": (("key.shared", "aws.dr", elsewhere), "is managed by another keyplan state"),
        "already in state": (("key.shared", "aws.main", dr_key), "key.shared at aws.main is already in state"),
        "missing": (("key.shared", "aws.dr", dr_key.replace(dr_key[-4:], "0000")), "No key"),
    }
    serial = workspace.state()["serial"]
    for name, (args, message) in refusals.items():
        refused = workspace.keyplan("import", *args)
        assert refused.code == 1 and message in refused.stderr, (name, refused.output)
        assert "Traceback" not in refused.output
    assert workspace.state()["serial"] == serial, "refusals write nothing"

    workspace.write(TWO_TARGETS % FRESH_KEY)
    refused = workspace.keyplan("import", "key.fresh", "aws.dr", foreign)
    assert refused.code == 1 and "keyplan does not hold the material of key.fresh" in refused.stderr
    assert "bring-your-own-key" in refused.stderr
    workspace.write(TWO_TARGETS % "")

    imported = workspace.keyplan("import", "key.shared", "aws.dr", dr_key)
    assert imported.code == 0, imported.output
    assert "aws.dr showed that the key holds material v1" in imported.stdout and "Import successful!" in imported.stdout
    assert "accepted this material again" in imported.stdout, "the proof says how it was shown"
    record = workspace.state()["keys"]["key.shared"]["targets"]["aws.dr"]
    assert record["remote_id"] == dr_key and record["current_material_version"] == 1
    assert workspace.state()["serial"] == serial + 1
    with workspace.aws("aws-dr") as (kms, _):
        tags = tags_of(kms, dr_key)
        assert tags["keyplan-address"] == "key.shared" and tags["keyplan-managed-by"] == "keyplan-" + workspace.state()["lineage"]
        assert tags["team"] == "core"
    assert workspace.emulator_fingerprints("aws-dr")[dr_key] == [fingerprint]
    after = workspace.keyplan("plan", "-detailed-exitcode")
    assert after.code == 0, after.output
    again = workspace.keyplan("import", "key.shared", "aws.dr", dr_key)
    assert again.code == 1 and "already in state" in again.stderr


# ---------------------------------------------------------------------------------------------
# audit log
# ---------------------------------------------------------------------------------------------

AUDITED = """
source "software" "local" {}

provider "aws" "main" {
  region            = "eu-west-1"
  endpoint          = "%s"
  credentials       = "local"
  wrapping_key_spec = "RSA_2048"
}

key "k" {
  for_each  = toset(%s)
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  aliases   = ["alias/${each.key}"]
  labels    = { app = each.key }
}
"""

# Audit action -> the KMS operations that action performs (one audit line per action).
ONE_CALL_ACTIONS = {
    "create_key": "CreateKey",
    "import_material": "ImportKeyMaterial",
    "promote_version": "RotateKeyOnDemand",
    "schedule_deletion": "ScheduleKeyDeletion",
}
UPDATE_CALLS = {"TagResource", "UntagResource", "CreateAlias", "UpdateAlias", "DeleteAlias", "UpdateKeyDescription",
                "EnableKey", "DisableKey"}


def test_audit_log_holds_every_mutation_and_no_material(workspace: Workspace) -> None:
    with workspace.aws() as (_, server):
        for args, keys in (
            (("apply", "-auto-approve"), ["a", "b"]),
            (("apply", "-auto-approve", "-replace", 'key.k["a"]'), ["a", "b"]),
            (("apply", "-auto-approve"), ["a"]),
        ):
            workspace.write(AUDITED % (server.url, json.dumps(keys)))
            result = workspace.keyplan(*args)
            assert result.code == 0, result.output
        calls = fetch_json(server.url + "/_emulator/stats")["calls"]

    entries = json.loads(workspace.keyplan("log", "-json").stdout)
    # each remote mutation is announced before the call, then its outcome follows
    started = [e for e in entries if e["outcome"] == "started"]
    entries = [e for e in entries if e["outcome"] != "started"]
    assert sorted((e["action"], e["address"], e["target"]) for e in started) == sorted(
        (e["action"], e["address"], e["target"]) for e in entries
    )
    remote = [e for e in entries if e["action"] not in ("generate_material",)]
    assert all(e["outcome"] == "ok" for e in entries)
    by_action: dict[str, int] = {}
    for entry in remote:
        by_action[entry["action"]] = by_action.get(entry["action"], 0) + 1
    for action, operation in ONE_CALL_ACTIONS.items():
        assert by_action.get(action, 0) == calls.get(operation, 0), (action, by_action, calls)
    assert by_action == {"create_key": 2, "import_material": 3, "promote_version": 1, "schedule_deletion": 1,
                         "update_key": 2}
    assert sum(calls.get(op, 0) for op in UPDATE_CALLS) >= by_action["update_key"]
    assert set(calls) - UPDATE_CALLS - set(ONE_CALL_ACTIONS.values()) <= {
        "ListKeys", "ListAliases", "DescribeKey", "ListResourceTags", "GetParametersForImport", "ListKeyRotations"
    }, "every mutating call is one the audit log covers"
    state_ids = {r["targets"]["aws.main"]["remote_id"] for r in workspace.state()["keys"].values()}
    assert {e["remote_id"] for e in remote if e["action"] == "promote_version"} <= state_ids
    assert len({e["plan"] for e in entries}) == 3, "each apply's entries carry its plan digest"

    table = workspace.keyplan("log")
    assert table.code == 0 and table.stdout.splitlines()[0].split()[:4] == ["TIME", "WHO", "ACTION", "KEY"]
    assert len(table.stdout.splitlines()) == len(entries) + len(started) + 1
    last = workspace.keyplan("log", "-n", "1", "-json")
    assert json.loads(last.stdout) == entries[-1:]
    intact = workspace.keyplan("log", "-verify")
    assert intact.code == 0 and f"{len(entries) + len(started)} entries" in intact.stdout
    trail = workspace.path / ".keyplan" / "audit.jsonl"
    lines = trail.read_text().splitlines()
    trail.write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    tampered = workspace.keyplan("log", "-verify")
    assert tampered.code == 1 and "tampered" in tampered.stderr and "entry 4" in tampered.stderr, tampered.output
    audit = (workspace.path / ".keyplan" / "audit.jsonl").read_bytes()
    outputs = table.stdout.encode()
    for material in materials_held_by_emulator(workspace):
        for needle in secret_forms(material):
            assert needle not in audit and needle not in outputs


def test_log_without_entries_says_where_they_will_be(workspace: Workspace) -> None:
    workspace.write(AUDITED % ("embedded", '["a"]'))
    result = workspace.keyplan("log")
    assert result.code == 0 and "No audit entries yet" in result.stdout and "audit.jsonl" in result.stdout


# ---------------------------------------------------------------------------------------------
# state rm | mv | pull | push
# ---------------------------------------------------------------------------------------------


def test_state_rm_and_mv_write_the_next_serial_keep_a_backup_and_retag(applied: Workspace) -> None:
    start = applied.state()
    pulled = applied.keyplan("state", "pull")
    assert pulled.code == 0 and json.loads(pulled.stdout) == start

    missing = applied.keyplan("state", "rm", address("nope"), address("clean"))
    assert missing.code == 1 and 'No key key.k["nope"] in state' in missing.stderr
    assert applied.state() == start, "all or nothing"

    clean_id = arn(applied, address("clean"))
    moved = applied.keyplan("state", "mv", address("clean"), address("renamed"))
    assert moved.code == 0, moved.output
    after_mv = applied.state()
    assert address("renamed") in after_mv["keys"] and address("clean") not in after_mv["keys"]
    assert after_mv["keys"][address("renamed")]["address"] == address("renamed")
    assert after_mv["serial"] == start["serial"] + 1
    backup = json.loads((applied.path / "keyplan.kpstate.json.backup").read_text())
    assert backup == start
    with applied.aws() as (kms, _):
        tags = tags_of(kms, clean_id)
        assert tags["keyplan-address"] == "key.k@5b@22renamed@22@5d" and tags["team"] == "core"
        assert kms.describe_key(KeyId=clean_id)["KeyMetadata"]["Description"] == "key clean"

    for args, message in (
        (("mv", address("renamed"), address("edited")), "is already in state"),
        (("mv", address("renamed"), "app.payments"), "Invalid destination address"),
        (("mv", "key.k", address("x")), "Cannot move every instance"),
        (("mv", address("nope"), address("x")), "No key"),
    ):
        refused = applied.keyplan("state", *args)
        assert refused.code == 1 and message in refused.stderr, refused.output
    assert applied.state() == after_mv

    removed = applied.keyplan("state", "rm", address("renamed"), address("edited"))
    assert removed.code == 0 and "orphans" in removed.stdout
    after_rm = applied.state()
    assert address("edited") not in after_rm["keys"] and after_rm["serial"] == after_mv["serial"] + 1

    whole = applied.keyplan("state", "mv", "key.k", "key.app", "-retag=false")
    assert whole.code == 0, whole.output
    assert sorted(applied.state()["keys"]) == sorted(
        [f'key.app["{n}"]' for n in KEYS if n not in ("clean", "edited")] + ["key.soon"]
    )
    assert "old keyplan-address tag" in whole.stdout

    backend = LocalBackend(applied.state_path).store()
    held = backend.acquire("apply")
    try:
        locked = applied.keyplan("state", "rm", "key.soon")
        assert locked.code == 1 and "Error acquiring the state lock" in locked.stderr
    finally:
        backend.release(held)


def test_state_push_refuses_other_lineages_and_older_copies_without_force(applied: Workspace) -> None:
    copy = applied.path / "pulled.json"
    copy.write_text(applied.keyplan("state", "pull").stdout)
    current = applied.state()

    same = applied.keyplan("state", "push", str(copy))
    assert same.code == 1 and "not newer" in same.stderr and f"serial {current['serial']}" in same.stderr

    edited = json.loads(copy.read_text())
    del edited["keys"]["key.soon"]
    edited["serial"] = current["serial"] + 1
    copy.write_text(json.dumps(edited))
    pushed = applied.keyplan("state", "push", str(copy))
    assert pushed.code == 0, pushed.output
    assert "key.soon" not in applied.state()["keys"] and applied.state()["serial"] == current["serial"] + 2
    assert json.loads((applied.path / "keyplan.kpstate.json.backup").read_text()) == current

    older = applied.keyplan("state", "push", str(copy))
    assert older.code == 1 and "not newer" in older.stderr

    stranger = dict(edited, lineage="1" * 32, serial=999)
    copy.write_text(json.dumps(stranger))
    other = applied.keyplan("state", "push", str(copy))
    assert other.code == 1 and "different lineage" in other.stderr
    forced = applied.keyplan("state", "push", str(copy), "-force")
    assert forced.code == 0 and "lineage changed" in forced.stdout
    assert applied.state()["lineage"] == "1" * 32 and applied.state()["serial"] == 1000

    from_stdin = applied.keyplan("state", "push", "-", "-force", stdin=json.dumps(edited))
    assert from_stdin.code == 0 and applied.state()["lineage"] == edited["lineage"]

    (applied.path / "broken.json").write_text("{nope")
    broken = applied.keyplan("state", "push", str(applied.path / "broken.json"))
    assert broken.code == 1 and "not valid JSON" in broken.stderr and "Traceback" not in broken.output


# ---------------------------------------------------------------------------------------------
# the CI examples
# ---------------------------------------------------------------------------------------------

CI = REPO / "examples" / "ci"


def run_script(workspace: Workspace, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KEYPLAN=str(KEYPLAN_BIN), KEYPLAN_DIR=str(workspace.path))
    return subprocess.run(
        ["bash", str(CI / script), *args], cwd=workspace.path, env=env, capture_output=True, text=True, timeout=120
    )


def test_ci_scripts_review_apply_and_report_drift(workspace: Workspace) -> None:
    workspace.write(AUDITED % ("embedded", '["a"]'))
    planned = run_script(workspace, "review.sh", "plan")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    comment = (workspace.path / "keyplan-plan.md").read_text()
    assert comment.startswith("### keyplan plan") and 'key.k["a"]' in comment
    applied = run_script(workspace, "review.sh", "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    stale = run_script(workspace, "review.sh", "apply")
    assert stale.returncode == 1 and "stale" in stale.stderr

    clean = run_script(workspace, "nightly-drift.sh")
    assert clean.returncode == 0 and "clean" in clean.stdout, clean.stdout + clean.stderr
    with workspace.aws() as (kms, _):
        kms.disable_key(KeyId=workspace.state()["keys"]['key.k["a"]']["targets"]["aws.main"]["remote_id"])
    drifted = run_script(workspace, "nightly-drift.sh")
    assert drifted.returncode == 2
    assert "CHANGED OUTSIDE KEYPLAN" in drifted.stderr and "disabled outside keyplan" in drifted.stderr
    assert json.loads((workspace.path / "keyplan-drift.json").read_text())["drift"][0]["kind"] == "disabled"

    (workspace.path / "main.kp.hcl").write_text("key {")
    broken = run_script(workspace, "nightly-drift.sh")
    assert broken.returncode == 1 and "could not check" in broken.stderr
