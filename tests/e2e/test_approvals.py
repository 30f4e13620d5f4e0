"""Signed approvals, M of N: saved plans apply only with enough valid signatures from the
configured approvers (Ed25519 over the plan's digest)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_reviewed_plans import resealed

from tests.e2e.conftest import Workspace

PASSPHRASE = {"KEYPLAN_SIGNING_PASSPHRASE": "correct horse battery staple"}

CONFIG = """
keyplan {
  approvals {
    signers      = [%s]
    required     = 1
    required_for = { delete = 2, rotate = 2 }
  }
}

variable "apps" {
  type    = set(string)
  default = ["payments", "ledger"]
}

source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "app" {
  for_each  = var.apps
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def new_signer(workspace: Workspace, name: str) -> str:
    made = workspace.keyplan("approve", "-new-key", f"{name}.pem", "-name", name, env=PASSPHRASE)
    assert made.code == 0, made.output
    assert "BEGIN ENCRYPTED PRIVATE KEY" in (workspace.path / f"{name}.pem").read_text()
    match = re.search(r'\{ name = "%s", public_key = "(ed25519:[^"]+)" \}' % name, made.stdout)
    assert match, made.stdout
    return match.group(0)


@pytest.fixture
def team(workspace: Workspace) -> Workspace:
    signers = [new_signer(workspace, name) for name in ("alice", "bob", "carol")]
    new_signer(workspace, "mallory")  # has a key, but is not in the approvals block
    workspace.write(CONFIG % ", ".join(signers))
    return workspace


def approve(workspace: Workspace, planfile: Path, name: str) -> None:
    result = workspace.keyplan("approve", str(planfile), "-key", f"{name}.pem", "-name", name, env=PASSPHRASE)
    assert result.code == 0, result.output


def plan(workspace: Workspace, name: str, *args: str) -> Path:
    planfile = workspace.path / name
    result = workspace.keyplan("plan", f"-out={planfile}", *args)
    assert result.code == 0, result.output
    return planfile


def test_unsigned_plans_and_unreviewed_applies_are_refused(team: Workspace) -> None:
    direct = team.keyplan("apply", "-auto-approve")
    assert direct.code == 1 and "requires approved plans" in direct.stderr
    planfile = plan(team, "create.kpplan")
    unsigned = team.keyplan("apply", str(planfile))
    assert unsigned.code == 1, unsigned.output
    assert "needs 1 approval and has 0 (nobody)" in unsigned.stderr
    assert "1 more from: alice, bob, carol" in unsigned.stderr
    assert not team.state_path.exists()


def test_two_of_three_apply_a_deletion_and_the_audit_names_them(team: Workspace) -> None:
    created = plan(team, "create.kpplan")
    approve(team, created, "alice")
    shown = team.keyplan("show", str(created))
    assert shown.code == 0 and "Approvals:" in shown.stdout and "alice" in shown.stdout
    assert team.keyplan("apply", str(created)).code == 0

    deletion = plan(team, "delete.kpplan", "-var", 'apps=["payments"]')
    approve(team, deletion, "alice")
    short = team.keyplan("apply", str(deletion))
    assert short.code == 1, short.output
    assert "needs 2 approvals (delete needs 2) and has 1 (alice)" in short.stderr
    assert "1 more from: bob, carol" in short.stderr
    approve(team, deletion, "bob")
    assert json.loads(team.keyplan("show", str(deletion), "-json").stdout)["approvals"][1]["signer"] == "bob"
    applied = team.keyplan("apply", str(deletion), "-var", 'apps=["payments"]')
    assert applied.code == 0, applied.output
    audit = [json.loads(line) for line in (team.path / ".keyplan" / "audit.jsonl").read_text().splitlines()]
    deleted = [e for e in audit if e["action"] == "schedule_deletion" and e["outcome"] == "ok"]
    assert deleted and deleted[0]["approvers"] == ["alice", "bob"]
    assert team.keyplan("log", "-verify").code == 0


def test_unknown_replayed_and_altered_signatures_are_refused(team: Workspace) -> None:
    first = plan(team, "first.kpplan")
    approve(team, first, "mallory")
    unknown = team.keyplan("apply", str(first))
    assert unknown.code == 1 and "by a key the approvals block does not list" in unknown.stderr

    # alice's approval of another plan, replayed on this one
    other = plan(team, "other.kpplan", "-var", 'apps=["payments"]')
    approve(team, other, "alice")
    shutil.copy(Path(f"{other}.approvals.json"), Path(f"{first}.approvals.json"))
    replayed = team.keyplan("apply", str(first))
    assert replayed.code == 1 and "is for another plan" in replayed.stderr, replayed.output

    # an approval whose validity was stretched after signing
    approve(team, first, "alice")
    approvals = json.loads(Path(f"{first}.approvals.json").read_text())
    approvals[-1]["expires_at"] = "2099-01-01T00:00:00Z"
    Path(f"{first}.approvals.json").write_text(json.dumps(approvals))
    stretched = team.keyplan("apply", str(first))
    assert stretched.code == 1 and "does not verify" in stretched.stderr, stretched.output

    # the plan altered after alice signed it (digest recomputed): her signature no longer counts
    approve(team, first, "alice")
    document = json.loads(first.read_text())
    document["created_at"] = "2020-01-01T00:00:00Z"
    altered = resealed(document, team.path / "altered.kpplan")
    shutil.copy(Path(f"{first}.approvals.json"), Path(f"{altered}.approvals.json"))
    refused = team.keyplan("apply", str(altered))
    assert refused.code == 1 and "is for another plan" in refused.stderr, refused.output
    assert not team.state_path.exists()

    # the untouched plan with alice's fresh approval applies
    assert team.keyplan("apply", str(first)).code == 0


def test_the_ci_review_script_runs_the_two_reviewer_flow(team: Workspace) -> None:
    import os
    import subprocess

    from tests.e2e.conftest import KEYPLAN_BIN, REPO

    team.write((team.path / "main.kp.hcl").read_text().replace("required     = 1", "required     = 2"))

    def stage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = dict(os.environ, KEYPLAN=str(KEYPLAN_BIN), KEYPLAN_DIR=str(team.path), **PASSPHRASE, **env)
        return subprocess.run(
            ["bash", str(REPO / "examples" / "ci" / "review.sh"), *args],
            cwd=team.path, env=environment, capture_output=True, text=True, timeout=120,
        )

    assert stage("plan").returncode == 2
    early = stage("apply")
    assert early.returncode == 1 and "needs 2 approvals" in early.stderr, early.stdout + early.stderr
    assert stage("approve", SIGNER="alice", SIGNING_KEY="alice.pem").returncode == 0
    assert stage("approve", SIGNER="bob", SIGNING_KEY="bob.pem").returncode == 0
    applied = stage("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert sorted(team.state()["keys"]) == ['key.app["ledger"]', 'key.app["payments"]']
