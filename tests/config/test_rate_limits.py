"""`rate_limits` on a provider block: overrides of the documented default rates, and the
diagnostics for bad ones (with the attribute's position and the valid class names)."""

from __future__ import annotations

from keyplan.config import validate_config
from providers.aws.settings import AwsSettings
from providers.gcp.settings import GcpSettings
from tests.config.conftest import ConfigDir


def test_an_override_replaces_the_documented_rate_of_its_class_only() -> None:
    settings = AwsSettings.model_validate({"region": "eu-west-1", "rate_limits": {"CreateKey": 20}})
    rates = {c.name: c.per_second for c in settings.rate_classes()}
    assert rates["CreateKey"] == 20
    assert rates["ImportKeyMaterial"] == 5  # the documented default, untouched
    gcp = GcpSettings.model_validate({"project": "p", "key_ring": "r", "rate_limits": {"write": 3}})
    assert {c.name: c.per_second for c in gcp.rate_classes()} == {"read": 5.0, "write": 3.0}


def test_unknown_classes_and_non_positive_rates_are_diagnostics_at_the_attribute(config_dir: ConfigDir) -> None:
    config = config_dir.write(
        {
            "main.kp.hcl": """source "software" "main" {}
provider "aws" "main" {
  region = "eu-west-1"
  rate_limits = { CreateKee = 10 }
}
provider "gcp" "main" {
  project = "p"
  key_ring = "r"
  rate_limits = { write = -1 }
}
"""
        }
    ).ok()
    found = [(str(d.range), d.summary, d.detail) for d in validate_config(config)]
    unknown = [f for f in found if "CreateKee" in f[2]]
    assert len(unknown) == 1
    where, summary, detail = unknown[0]
    assert where.endswith("main.kp.hcl:4:3")
    assert summary == "Invalid argument value"
    assert "CreateKey" in detail and "ImportKeyMaterial" in detail  # the valid names are listed
    negative = [f for f in found if "rate_limits.write" in f[2]]
    assert len(negative) == 1 and negative[0][0].endswith("main.kp.hcl:9:3")
    assert "a rate is requests per second, a number from 0.01" in negative[0][2]
