"""`rate_limits` on a provider block, as a newcomer might write it: every rate that keyplan could
not pace by (not finite, too small to ever finish, not a number) is a diagnostic at the
attribute with exit 1, before anything is planned or changed."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Workspace, emulator_counts

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


SENSITIVE = """
variable "keys" {
  type    = number
  default = 12
}

variable "raised" {
  type      = number
  default   = 0.37
  sensitive = true
}

source "software" "local" {}

provider "aws" "main" {
  region      = "eu-west-1"
  endpoint    = "embedded"
  rate_limits = { CreateKey = var.raised }
}

key "data" {
  for_each  = toset([for i in range(var.keys) : "k${i}"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def test_a_rate_from_a_sensitive_variable_is_never_shown(workspace: Workspace) -> None:
    # 12 calls at 0.37/s would be estimated at about 32 s and shown as "22.2/min".
    workspace.write(SENSITIVE)
    forms = ("0.37", "22.2", "about 32 s")
    planned = workspace.keyplan("plan", "-out", "p.kpplan")
    assert planned.code == 0, planned.output
    shown = [planned.output, workspace.keyplan("plan", "-json").stdout, (workspace.path / "p.kpplan").read_text()]
    shown.append(workspace.keyplan("show", "-markdown", "p.kpplan").stdout)
    for text in shown:
        for form in forms:
            assert form not in text
    # Three keys at 0.9/s: the apply waits on the quota, and its summary says so without the rate.
    applied = workspace.keyplan("apply", "-auto-approve", "-var", "keys=3", "-var", "raised=0.9")
    assert applied.code == 0, applied.output
    assert "aws.main CreateKey (" in applied.stdout and "0.9" not in applied.output
