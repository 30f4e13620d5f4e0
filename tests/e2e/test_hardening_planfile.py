"""A saved plan stays applicable after an edit that changes nothing the configuration means
(comments, layout), and goes stale after one that does."""

from __future__ import annotations

from tests.e2e.conftest import Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  labels    = { team = "red" }
}
"""


def test_a_comment_only_edit_keeps_a_saved_plan_applicable(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    workspace.write("# reviewed in PR 42\n" + CONFIG.replace("  labels", "  // the owning team\n  labels   "))
    result = workspace.keyplan("apply", str(planfile))
    assert result.code == 0, result.output
    assert "key.data" in workspace.state()["keys"]


def test_a_meaningful_edit_makes_a_saved_plan_stale(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    workspace.write(CONFIG.replace('"red"', '"blue"'))
    result = workspace.keyplan("apply", str(planfile))
    assert result.code == 1 and "configuration changed" in result.output, result.output
    assert not workspace.state_path.exists()
