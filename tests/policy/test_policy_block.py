"""The `policy` block as the loader reads it: bad input becomes diagnostics with
file:line:column (never an exception), and good input becomes the `Policy` model."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from keyplan.config import load_config
from keyplan.policy.model import FindingSeverity

HEAD = """
source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "orders" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = { app = "orders", env = "prod" }
}
"""  # ends on line 12


def _errors(tmp_path: Path, policy: str) -> list[tuple[str, str, str]]:
    (tmp_path / "main.kp.hcl").write_text(HEAD + policy)
    config, diagnostics = load_config(tmp_path, environ={})
    assert config is None
    for diagnostic in diagnostics:
        assert diagnostic.range is not None and diagnostic.detail.rstrip().endswith((".", "?")), str(diagnostic)
    return [(str(d.range), d.summary, d.detail) for d in diagnostics.errors]


@pytest.mark.parametrize(
    ("policy", "expected_place", "summary", "detail"),
    [
        ('policy {\n  rule "rotaton" {}\n}\n', "main.kp.hcl:14:8", "Unknown policy rule", 'Did you mean rotation?'),
        ('policy {\n  rule "rotation" {\n    max_dayz = 3\n  }\n}\n', "main.kp.hcl:15:5", "Unsupported argument", "Did you mean max_days?"),
        ('policy {\n  rule "rotation" {\n    max_days = 0\n  }\n}\n', "main.kp.hcl:15:16", "Invalid rule parameter", "greater than or equal to 1"),
        ('policy {\n  rule "rotation" {\n    severity = "fatal"\n  }\n}\n', "main.kp.hcl:15:16", "Invalid severity", "error, warning or info"),
        ('policy {\n  builtin = "some"\n}\n', "main.kp.hcl:14:13", "Invalid value for builtin", '"listed"'),
        ('policy {\n  rules "x" {}\n}\n', "main.kp.hcl:14:3", "Unsupported block type", "Did you mean rule?"),
        (
            'policy {\n  rule "labels" {\n    scope {\n      labels = ["env"]\n    }\n  }\n}\n',
            "main.kp.hcl:16:16", "Invalid selector", "map of label names",
        ),
        (
            'policy {\n  rule "labels" {\n    scope {\n      addresses = ["payments*"]\n    }\n  }\n}\n',
            "main.kp.hcl:16:19", "Invalid selector", "starts with key.",
        ),
        (
            'policy {\n  rule "labels" {\n    scope {\n      target_kinds = ["awz"]\n    }\n  }\n}\n',
            "main.kp.hcl:16:22", "Invalid selector", "Did you mean aws?",
        ),
        (
            'policy {\n  rule "labels" {\n    scope {\n      label = { env = "prod" }\n    }\n  }\n}\n',
            "main.kp.hcl:16:7", "Unsupported argument", "Did you mean labels?",
        ),
        (
            'policy {\n  exception "rotation" {\n    expires = "2026-12-31"\n  }\n}\n',
            "main.kp.hcl:14:13", "Missing required argument", "must set `reason`",
        ),
        (
            'policy {\n  exception "rotation" {\n    reason = "legacy"\n  }\n}\n',
            "main.kp.hcl:14:13", "Missing required argument", "must set `expires`",
        ),
        (
            'policy {\n  exception "rotation" {\n    reason  = "legacy"\n    expires = "2026-02-30"\n  }\n}\n',
            "main.kp.hcl:16:15", "Invalid expiry date", "YYYY-MM-DD",
        ),
        (
            'policy {\n  exception "rotaton" {\n    reason  = "legacy"\n    expires = "2026-12-31"\n  }\n}\n',
            "main.kp.hcl:14:13", "Exception for an unknown rule", "Did you mean rotation?",
        ),
        (
            'policy {\n  custom "owner" {\n    condition = key.labels\n    message   = "x"\n  }\n}\n',
            "main.kp.hcl:15:17", "Custom rule condition is not a bool", "for key.orders it is a map",
        ),
        (
            'policy {\n  custom "owner" {\n    condition = key.labels.owner == "a"\n    message   = "x"\n  }\n}\n',
            "main.kp.hcl:15:28", "Unsupported attribute", "lookup(map, key, default)",
        ),
        (
            'policy {\n  custom "owner" {\n    message = "x"\n  }\n}\n',
            "main.kp.hcl:14:10", "Missing required argument", "must set `condition`",
        ),
    ],
)
def test_bad_policy_input_is_a_diagnostic(
    tmp_path: Path, policy: str, expected_place: str, summary: str, detail: str
) -> None:
    errors = _errors(tmp_path, policy)
    assert [(place, title) for place, title, _ in errors] == [(expected_place, summary)]
    assert detail in errors[0][2]


def test_duplicate_policy_blocks(tmp_path: Path) -> None:
    errors = _errors(tmp_path, "policy {}\npolicy {}\n")
    assert [(place, title) for place, title, _ in errors] == [("main.kp.hcl:14:1", "Duplicate policy block")]


def test_a_policy_block_becomes_the_policy_model(tmp_path: Path) -> None:
    (tmp_path / "main.kp.hcl").write_text(
        HEAD
        + """
variable "days" {
  default = 90
}
policy {
  builtin = "listed"
  rule "rotation" {
    severity = "error"
    max_days = var.days
    scope {
      labels    = { env = ["prod", "stag*"] }
      addresses = "key.ord*"
    }
  }
  exception "custom.owner" {
    reason  = "owners are being assigned"
    expires = "2026-12-31"
  }
  custom "owner" {
    condition = contains(keys(key.labels), "owner")
    message   = "Every key names its owner."
  }
}
"""
    )
    config, diagnostics = load_config(tmp_path, environ={})
    assert config is not None, [str(d) for d in diagnostics]
    policy = config.policy
    assert policy.declared and policy.only_listed
    rotation = policy.rules["rotation"]
    assert rotation.severity is FindingSeverity.ERROR and rotation.params == {"max_days": 90}
    assert rotation.scope is not None
    assert rotation.scope.labels == {"env": ("prod", "stag*")} and rotation.scope.addresses == ("key.ord*",)
    assert [(e.rule, e.expires) for e in policy.exceptions] == [("custom.owner", date(2026, 12, 31))]
    assert policy.custom["owner"].holds == {"key.orders": False}


def test_no_policy_block(tmp_path: Path) -> None:
    (tmp_path / "main.kp.hcl").write_text(HEAD)
    config, _ = load_config(tmp_path, environ={})
    assert config is not None and not config.policy.declared


def test_a_sensitive_value_cannot_reach_a_finding(tmp_path: Path) -> None:
    (tmp_path / "main.kp.hcl").write_text(
        HEAD
        + """
variable "token" {
  sensitive = true
}
policy {
  custom "owner" {
    condition = true
    message   = "owner ${var.token}"
  }
}
"""
    )
    config, diagnostics = load_config(tmp_path, environ={"KEYPLAN_VAR_token": "hunter2-secret"})
    assert config is None
    assert [(str(d.range), d.summary) for d in diagnostics.errors] == [("main.kp.hcl:20:17", "Sensitive value in a policy text")]
    assert "hunter2" not in "".join(str(d) for d in diagnostics)
