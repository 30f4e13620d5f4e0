"""Policy checks through the real CLI: `keyplan check` in every format with its exit codes
(SARIF validated against the SARIF 2.1.0 schema, JSON against schemas/policy.schema.json),
validate and plan refusing on error-level findings and carrying the others, bad policy input
as diagnostics, and drift's live rules against the embedded AWS emulator after out-of-band
changes made through boto3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import schemas
from tests.e2e.conftest import KEYPLAN_BIN, REPO, Workspace

SARIF_SCHEMA = json.loads((REPO / "tests" / "policy" / "sarif-schema-2.1.0.json").read_text())
POLICY_SCHEMA = json.loads((REPO / "schemas" / "policy.schema.json").read_text())
PLAN_SCHEMA = json.loads((REPO / "schemas" / "plan.schema.json").read_text())
DRIFT_SCHEMA = json.loads((REPO / "schemas" / "drift.schema.json").read_text())

PLUGINS = """
source "software" "local" {}

provider "aws" "main" {
  region            = "eu-west-1"
  endpoint          = "embedded"
  wrapping_key_spec = "RSA_2048"
}
"""

# Line 10: the key block; line 12: its source.
KEYS = PLUGINS + """
key "orders" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  labels    = { app = "orders", env = "%(env)s" }
  rotation {
    every = "%(rotation)s"
  }
  expiry {
    after = "180d"
  }
}
"""

POLICY = """
policy {
  rule "rotation" {
    max_days = 90
  }
  rule "lingering-deletion" {
    max_days = 7
  }
  rule "cross-cloud-material" {
    enabled = false
  }
}
"""


def _write(workspace: Workspace, *, env: str = "dev", rotation: str = "30d", policy: str = POLICY) -> None:
    workspace.write(KEYS % {"env": env, "rotation": rotation} + policy)


def test_check_text_json_and_sarif_with_exit_codes(workspace: Workspace) -> None:
    _write(workspace, env="prod")  # prod: the hardware-source and prevent-destroy rules apply (errors)
    text = workspace.keyplan("check", "-no-color")
    assert text.code == 2, text.output
    assert "Error[hardware-source]" in text.stdout and "on main.kp.hcl:12:15, key.orders" in text.stdout
    assert "Error[prevent-destroy]" in text.stdout and "Traceback" not in text.output

    report = workspace.keyplan("check", "-format=json")
    assert report.code == 2
    document = json.loads(report.stdout)
    schemas.validate(document, POLICY_SCHEMA)
    assert document["counts"] == {"error": 2, "warning": 0, "info": 0}
    assert {(f["rule"], f["range"]["line"], f["range"]["column"]) for f in document["findings"]} == {
        ("hardware-source", 12, 15),
        ("prevent-destroy", 10, 1),
    }

    sarif = workspace.keyplan("check", "-format=sarif")
    assert sarif.code == 2
    log = json.loads(sarif.stdout)
    schemas.validate(log, SARIF_SCHEMA)
    results = log["runs"][0]["results"]
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert {rules[r["ruleIndex"]]["id"] for r in results} == {r["ruleId"] for r in results}
    located = {
        (
            r["ruleId"],
            r["level"],
            Path(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]).name,
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["locations"][0]["physicalLocation"]["region"]["startColumn"],
        )
        for r in results
    }
    assert located == {("hardware-source", "error", "main.kp.hcl", 12, 15), ("prevent-destroy", "error", "main.kp.hcl", 10, 1)}

    # -fail-on decides exit 2; findings below it exit 0.
    _write(workspace, rotation="120d")  # dev: only the rotation period (a warning) is a finding
    assert workspace.keyplan("check", "-fail-on=error").code == 0
    assert workspace.keyplan("check", "-fail-on=warning").code == 2
    _write(workspace)
    clean = workspace.keyplan("check", "-fail-on=info")
    assert clean.code == 0 and "No findings." in clean.stdout


def test_check_without_a_policy_block_runs_the_built_in_defaults(workspace: Workspace) -> None:
    workspace.write(KEYS % {"env": "prod", "rotation": "30d"})
    assert workspace.keyplan("validate").code == 0  # no policy block: validate runs no rules
    result = workspace.keyplan("check", "-format=json", "-fail-on=info")
    document = json.loads(result.stdout)
    assert result.code == 2
    assert {"hardware-source", "prevent-destroy", "cross-cloud-material", "labels"} <= set(document["rules"])
    assert {f["rule"] for f in document["findings"]} == {"hardware-source", "prevent-destroy"}


def test_sarif_locations_are_relative_to_the_directory_check_runs_in(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    config = workspace.path / "infra" / "keys"
    config.mkdir(parents=True)
    (config / "main.kp.hcl").write_text(KEYS % {"env": "prod", "rotation": "30d"} + POLICY)
    monkeypatch.chdir(workspace.path)
    sarif = Workspace(config).keyplan("check", "-format=sarif")
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in json.loads(sarif.stdout)["runs"][0]["results"]}
    assert uris == {"infra/keys/main.kp.hcl"}


def test_bad_policy_input_exits_1_with_diagnostics(workspace: Workspace) -> None:
    workspace.write(
        KEYS % {"env": "dev", "rotation": "30d"}
        + """
policy {
  rule "rotaton" {}
  exception "rotation" {
    expires = "2026-12-31"
  }
  custom "owner" {
    condition = key.labels
    message   = "Keys name their owner."
  }
}
"""
    )
    for command in (("check",), ("validate",), ("plan",)):
        result = workspace.keyplan(*command, "-no-color")
        assert result.code == 1, (command, result.output)
        assert "Traceback" not in result.output
        assert "Unknown policy rule" in result.stderr and "on main.kp.hcl:24:8" in result.stderr
        assert "Did you mean rotation?" in result.stderr
        assert "must set `reason`" in result.stderr and "on main.kp.hcl:25:13" in result.stderr
        assert "Custom rule condition is not a bool" in result.stderr and "on main.kp.hcl:29:17" in result.stderr
    assert not workspace.state_path.exists()


def test_validate_and_plan_refuse_on_errors_and_carry_warnings(workspace: Workspace) -> None:
    _write(workspace, env="prod")
    validate = workspace.keyplan("validate", "-no-color")
    assert validate.code == 1 and "Policy hardware-source" in validate.stderr
    assert json.loads(workspace.keyplan("validate", "-json").stdout)["valid"] is False

    refused = workspace.keyplan("plan", "-no-color")
    assert refused.code == 1
    assert "keyplan plan stops on error-level policy findings" in refused.stderr
    assert "Policy prevent-destroy" in refused.stderr and "on main.kp.hcl:10:1" in refused.stderr
    assert refused.stdout == "" and not workspace.state_path.exists()
    refused_apply = workspace.keyplan("apply", "-auto-approve", "-no-color")
    assert refused_apply.code == 1 and "keyplan apply stops" in refused_apply.stderr
    assert not workspace.state_path.exists()

    # Downgraded to warnings: the plan is made and shows them, in text, JSON and Markdown.
    _write(
        workspace,
        env="prod",
        policy=POLICY.replace("policy {", 'policy {\n  rule "hardware-source" {\n    severity = "warning"\n  }\n'
                              '  rule "prevent-destroy" {\n    severity = "info"\n  }'),
    )
    valid = workspace.keyplan("validate", "-no-color")
    assert valid.code == 0 and "Warning: Policy hardware-source" in valid.stderr
    plan = workspace.keyplan("plan", "-no-color", "-out=review.kpplan")
    assert plan.code == 0, plan.output
    assert plan.stdout.startswith("Policy findings:")
    assert "Warning[hardware-source]" in plan.stdout and "Info[prevent-destroy]" in plan.stdout
    document = json.loads(workspace.keyplan("plan", "-json").stdout)
    schemas.validate(document, PLAN_SCHEMA)
    assert sorted((f["rule"], f["severity"]) for f in document["findings"]) == [
        ("hardware-source", "warning"),
        ("prevent-destroy", "info"),
    ]
    markdown = workspace.keyplan("show", "review.kpplan", "-markdown")
    assert "#### Policy findings" in markdown.stdout and "| warning | hardware-source | <code>key.orders</code> |" in markdown.stdout


def test_drift_runs_the_live_rules_against_the_clouds(workspace: Workspace) -> None:
    _write(workspace)
    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    clean = workspace.keyplan("drift", "-json")
    assert clean.code == 0, clean.output
    assert json.loads(clean.stdout)["findings"] == []

    # The material was made 45 days ago (the state says so) and the key rotates every 30 days;
    # nobody ran apply since.
    state = workspace.state()
    material = state["keys"]["key.orders"]["materials"][0]
    material["created_at"] = (datetime.now(UTC) - timedelta(days=45)).isoformat()
    workspace.state_path.write_text(json.dumps(state))
    aged = workspace.keyplan("drift", "-json")
    assert aged.code == 2, aged.output
    report = json.loads(aged.stdout)
    schemas.validate(report, DRIFT_SCHEMA)
    assert report["clean"] is True  # nothing changed outside keyplan: the finding alone exits 2
    assert [(f["rule"], f["severity"], f["address"], f["target"]) for f in report["findings"]] == [
        ("material-age", "error", "key.orders", "aws.main")
    ]

    # A key scheduled for deletion out of band with a 30-day window: past the policy's 7 days.
    remote_id = state["keys"]["key.orders"]["targets"]["aws.main"]["remote_id"]
    with workspace.aws() as (kms, _):
        kms.schedule_key_deletion(KeyId=remote_id, PendingWindowInDays=30)
    lingering = workspace.keyplan("drift", "-no-color")
    assert lingering.code == 2
    assert "Policy findings:" in lingering.stdout and "Warning[lingering-deletion]" in lingering.stdout
    assert "pending deletion at aws.main until" in lingering.stdout


def test_the_regulated_example_is_clean_and_a_broken_rule_stops_plan(workspace: Workspace) -> None:
    shutil.copy(REPO / "examples" / "regulated" / "main.kp.hcl", workspace.path)
    clean = workspace.keyplan("check", "-format=json", "-fail-on=info")
    assert clean.code == 0, clean.output
    document = json.loads(clean.stdout)
    assert document["findings"] == []
    assert [(f["rule"], f["address"]) for f in document["waived"]] == [("expiry", "key.receipts")]

    config = workspace.path / "main.kp.hcl"
    config.write_text(config.read_text().replace('every = "90d"', 'every = "180d"'))
    broken = workspace.keyplan("check", "-format=json")
    assert broken.code == 2
    assert sorted({(f["rule"], f["severity"]) for f in json.loads(broken.stdout)["findings"]}) == [("rotation", "error")]
    refused = workspace.keyplan("plan", "-no-color")
    assert refused.code == 1 and "keyplan plan stops on error-level policy findings" in refused.stderr


def test_the_review_script_writes_sarif_for_code_review(workspace: Workspace) -> None:
    env = dict(os.environ, KEYPLAN=str(KEYPLAN_BIN), KEYPLAN_DIR=str(workspace.path))

    def check() -> subprocess.CompletedProcess[str]:
        script = REPO / "examples" / "ci" / "review.sh"
        return subprocess.run(
            ["bash", str(script), "check"], cwd=workspace.path, env=env, capture_output=True, text=True, timeout=120
        )

    _write(workspace)
    passed = check()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    schemas.validate(json.loads((workspace.path / "keyplan.sarif").read_text()), SARIF_SCHEMA)
    _write(workspace, env="prod")
    failed = check()
    assert failed.returncode == 2 and "Policy: findings at or above error" in failed.stderr
    results = json.loads((workspace.path / "keyplan.sarif").read_text())["runs"][0]["results"]
    assert {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]) for r in results} == {
        ("hardware-source", "main.kp.hcl"),
        ("prevent-destroy", "main.kp.hcl"),
    }


GCP_KEYS = """
source "software" "local" {}

provider "gcp" "main" {
  project  = "p"
  location = "global"
  key_ring = "ring"
  endpoint = "embedded"
}

key "ledger" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.gcp.main]
  labels    = { app = "ledger", env = "dev" }
  rotation {
    every = "30d"
  }
}

policy {
  builtin = "listed"
  rule "lingering-deletion" {
    max_days = 7
  }
}
"""


def test_drift_finds_a_key_left_pending_deletion_at_the_second_cloud(workspace: Workspace) -> None:
    from gcp_support import gcp_cloud

    workspace.write(GCP_KEYS)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    assert workspace.keyplan("drift", "-json").code == 0
    target = workspace.state()["keys"]["key.ledger"]["targets"]["gcp.main"]
    with gcp_cloud(workspace.path) as cloud:
        [version] = cloud.client.list_crypto_key_versions(request={"parent": target["remote_id"]})
        cloud.client.destroy_crypto_key_version(name=version.name)  # destroyed after the scheduled window

    drifted = workspace.keyplan("drift", "-json")
    assert drifted.code == 2, drifted.output
    report = json.loads(drifted.stdout)
    schemas.validate(report, DRIFT_SCHEMA)
    assert [(f["rule"], f["address"], f["target"]) for f in report["findings"]] == [
        ("lingering-deletion", "key.ledger", "gcp.main")
    ]
    assert "more than 7 days from now" in report["findings"][0]["message"]
