"""A value derived from a sensitive variable is sensitive, through locals, templates, functions
and for expressions. keyplan refuses it in a key block, whose values go to the clouds (labels,
descriptions and aliases are readable by anyone who may list keys) and into state and plan
files; `nonsensitive(...)` says explicitly that a value may be published. Wherever it is
refused, the value itself never appears: not in output, plan files, state or the audit log."""

from __future__ import annotations

from tests.e2e.conftest import Workspace

SECRET = "hunter2-owner-secret"

HEAD = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

variable "owner" {
  type      = string
  sensitive = true
}

variable "teams" {
  type      = set(string)
  default   = ["red", "blue"]
  sensitive = true
}

locals {
  tag     = "team-${upper(var.owner)}"
  derived = { for k in [var.owner] : "x" => replace(k, "secret", "s") }
  plain   = "visible-value"
}
"""

KEY = """
key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  %s
}
"""

FORMS = [
    "labels = { owner = local.tag }",
    "description = local.derived.x",
    'description = "owner: ${var.owner}"',
    'aliases = ["alias/${lower(var.owner)}"]',
    'labels = merge({ a = local.plain }, { b = join("-", [var.owner]) })',
    'description = length(var.owner) > 3 ? "long" : "short"',
]


def _secret_forms() -> list[str]:
    return [SECRET, SECRET.upper(), SECRET.replace("secret", "s"), SECRET.lower()]


def _all_written(workspace: Workspace) -> bytes:
    return b"".join(p.read_bytes() for p in workspace.path.rglob("*") if p.is_file() and "emulators" not in p.parts)


def test_a_value_derived_from_a_sensitive_variable_is_refused_in_a_key_and_never_shown(workspace: Workspace) -> None:
    env = {"KEYPLAN_VAR_owner": SECRET}
    for form in FORMS:
        workspace.write(HEAD + KEY % form)
        for args in (("validate",), ("plan",), ("plan", "-json"), ("plan", f"-out={workspace.path / 'p.kpplan'}")):
            result = workspace.keyplan(*args, env=env)
            assert result.code == 1, (form, args, result.output)
            assert "Sensitive value in a key" in result.output, (form, result.output)
            assert "main.kp.hcl:" in result.output
            for secret in _secret_forms():
                assert secret not in result.output, (form, secret, result.output)
        written = _all_written(workspace)
        for secret in _secret_forms():
            assert secret.encode() not in written
    assert not (workspace.path / "p.kpplan").exists()
    assert not workspace.state_path.exists()


def test_for_each_over_a_sensitive_value_is_refused(workspace: Workspace) -> None:
    workspace.write(HEAD + (KEY % "labels = { t = each.key }").replace("key \"data\" {", 'key "data" {\n  for_each = var.teams'))
    result = workspace.keyplan("plan", env={"KEYPLAN_VAR_owner": SECRET})
    assert result.code == 1
    assert "Sensitive value in a key" in result.output and "for_each" in result.output
    assert "red" not in result.output and "blue" not in result.output


def test_nonsensitive_publishes_a_value_explicitly(workspace: Workspace) -> None:
    workspace.write(HEAD + KEY % "labels = { owner = nonsensitive(local.tag) }")
    result = workspace.keyplan("plan", env={"KEYPLAN_VAR_owner": "public-owner"})
    assert result.code == 0, result.output
    assert "team-PUBLIC-OWNER" in result.output


def test_sensitive_values_may_configure_sources_and_providers_but_never_reach_a_plan_file(workspace: Workspace) -> None:
    # (not a setting every key id is made of, such as the region: tests/e2e/test_sensitive_identity.py)
    workspace.write(
        HEAD.replace('region   = "eu-west-1"', 'region   = "eu-west-1"\n  deletion_window_days = length(var.owner) > 0 ? 7 : 30')
        + KEY % ""
    )
    env = {"KEYPLAN_VAR_owner": SECRET}
    planfile = workspace.path / "p.kpplan"
    result = workspace.keyplan("plan", f"-out={planfile}", env=env)
    assert result.code == 0, result.output
    applied = workspace.keyplan("apply", str(planfile), env=env)
    assert applied.code == 0, applied.output
    outputs = (result.output + applied.output + workspace.keyplan("show", str(planfile), "-json").output).encode()
    for secret in _secret_forms():
        assert secret.encode() not in _all_written(workspace) + outputs
