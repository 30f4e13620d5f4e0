"""Hostile values reaching the terminal through side doors: log lines (warnings quoting a path
from the configuration) and the environment variables keyplan reads."""

from __future__ import annotations

from tests.e2e.conftest import Workspace

HOSTILE_KEYSTORE = """
source "software" "local" {
  keystore = "ks\\u001b[31mRED\\u001b]0;pwned\\u0007\\u202e.json"
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def test_a_warning_quoting_a_configured_path_is_escaped_for_the_terminal(workspace: Workspace) -> None:
    workspace.write(HOSTILE_KEYSTORE)
    result = workspace.keyplan("apply", "-auto-approve")
    assert result.code == 0, result.output
    assert "WARNING: development key file" in result.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in result.output
    assert "ks\\x1b[31mRED\\x1b]0;pwned\\x07\\u202e.json" in result.stderr


def test_an_unknown_log_level_is_a_diagnostic(workspace: Workspace) -> None:
    workspace.write(HOSTILE_KEYSTORE)
    result = workspace.keyplan("validate", env={"KEYPLAN_LOG": "verbose\x1b[2J"})
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and "crashed" not in result.output
    assert "Invalid KEYPLAN_LOG" in result.output and "DEBUG, INFO, WARNING" in result.output
    assert "\x1b" not in result.output
    assert workspace.keyplan("validate", env={"KEYPLAN_LOG": "debug"}).code == 0


def test_a_malformed_emulator_configuration_in_the_environment_is_a_diagnostic(workspace: Workspace) -> None:
    workspace.write(HOSTILE_KEYSTORE)
    for name, value in (
        ("KEYPLAN_EMULATOR_FAULTS", "{not json"),
        ("KEYPLAN_EMULATOR_FAULTS", "[]"),
        ("KEYPLAN_EMULATOR_FAULTS", '{"aws-main": 5}'),
        ("KEYPLAN_EMULATOR_FAULTS", '{"aws-main": {"profile": "realistic", "quota_scale": 0}}'),
        ("KEYPLAN_EMULATOR_LATENCY_MS", "slow"),
    ):
        result = workspace.keyplan("plan", env={name: value})
        assert result.code == 1, (value, result.output)
        assert "Traceback" not in result.output and "crashed" not in result.output
        assert name in result.output and "Cannot open provider aws.main" in result.output


SENSITIVE_ENDPOINT = """
variable "endpoint" {
  type      = string
  sensitive = true
}

source "software" "local" {}

provider "aws" "main" {
  region      = "eu-west-1"
  endpoint    = var.endpoint
  credentials = "local"
}

provider "azure" "main" {
  vault_url   = "https://contoso.vault.azure.net"
  endpoint    = var.endpoint
  credentials = "local"
}

key "sig" {
  algorithm = "EC_P256"
  usage     = "sign"
  source    = source.software.local
  targets   = [provider.aws.main, provider.azure.main]
}
"""


def test_an_endpoint_from_a_sensitive_variable_is_not_shown_when_it_cannot_be_reached(workspace: Workspace) -> None:
    # An endpoint URL may carry credentials; declared sensitive, it must stay out of every message.
    workspace.write(SENSITIVE_ENDPOINT)
    secret = "http://keyplan:S3CRET-PASSWORD@127.0.0.1:9/private-path"
    for args in (("plan",), ("plan", "-json")):
        result = workspace.keyplan(*args, env={"KEYPLAN_VAR_endpoint": secret})
        assert result.code == 1, result.output
        assert "could not connect to (sensitive value)" in result.output
        assert "No connection could be made to (sensitive value)" in result.output
        for part in ("S3CRET-PASSWORD", "private-path", "127.0.0.1:9"):
            assert part not in result.output


SENSITIVE_STATE_ENDPOINT = """
variable "endpoint" {
  type      = string
  sensitive = true
}

keyplan {
  state "s3" {
    bucket   = "keyplan-state"
    key      = "state.json"
    region   = "eu-west-1"
    endpoint = var.endpoint
  }
}

source "software" "local" {}
"""


def test_a_state_endpoint_from_a_sensitive_variable_is_not_shown_when_it_cannot_be_reached(
    workspace: Workspace,
) -> None:
    workspace.write(SENSITIVE_STATE_ENDPOINT)
    secret = "http://keyplan:S3CRET-PASSWORD@127.0.0.1:9/private-path"
    env = {"KEYPLAN_VAR_endpoint": secret, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    result = workspace.keyplan("plan", env=env)
    assert result.code == 1, result.output
    assert "at (sensitive value)" in result.output
    for part in ("S3CRET-PASSWORD", "private-path", "127.0.0.1:9"):
        assert part not in result.output


def test_a_mistyped_flag_is_named_escaped(workspace: Workspace) -> None:
    workspace.write(HOSTILE_KEYSTORE)
    result = workspace.keyplan("plan", "-x\x1b]0;title\x07\x1b[2J")
    assert result.code == 1
    assert "has no flag -x\\x1b]0;title\\x07\\x1b[2J" in result.stderr
    assert "\x1b" not in result.output and "\x07" not in result.output
