"""`rate_limits` on a provider block, as a newcomer might write it: every rate that keyplan could
not pace by (not finite, too small to ever finish, not a number) is a diagnostic at the
attribute with exit 1, before anything is planned or changed."""

from __future__ import annotations

import pytest
from conftest import Workspace, emulator_counts

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region      = "eu-west-1"
  endpoint    = "embedded"
  rate_limits = { CreateKey = RATE }
}

key "data" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


@pytest.mark.parametrize("rate", ['"inf"', '"-Infinity"', '"nan"', "1e-300", "0.0001", "1e300", "true", "0", "-5"])
def test_a_rate_keyplan_cannot_pace_by_is_a_diagnostic_at_the_attribute(workspace: Workspace, rate: str) -> None:
    workspace.write(CONFIG.replace("RATE", rate))
    for command in (("validate",), ("apply", "-auto-approve")):
        result = workspace.keyplan(*command)
        assert result.code == 1, result.output
        assert "Traceback" not in result.output and "crashed" not in result.output
        assert "main.kp.hcl:7:3" in result.stderr
        assert "rate_limits.CreateKey" in result.stderr
        assert "requests per second" in result.stderr  # what a rate is, and its bounds
    assert not workspace.state_path.exists()
    assert emulator_counts(workspace.path) == {}


def test_rates_within_the_bounds_are_accepted_and_paced(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("RATE", '"50"'))  # a string holding a number converts, as in Terraform
    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert len(workspace.state()["keys"]) == 2
