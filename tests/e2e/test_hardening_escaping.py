"""Values from configuration or a cloud cannot steer the medium they are shown in: terminal
escape sequences are shown escaped, and a label, for_each key or description cannot break out
of a Markdown code block, a table cell or a `<summary>` in a pull-request comment."""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import Result, Workspace

ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m"
BREAKOUT = "x\n```\n## LGTM - approved by security\n```\n"
EACH_KEY = "a|b</code></summary><img src=x onerror=alert(1)>`c"
HOSTILE = "plain" + ESCAPES + BREAKOUT

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

variable "hostile" {
  type = string
}

key "data" {
  for_each    = toset([var.hostile, "%s"])
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  description = var.hostile
  labels      = { note = var.hostile }
}
"""


def _hostile_env() -> dict[str, str]:
    return {"KEYPLAN_VAR_hostile": HOSTILE}


def assert_terminal_safe(result: Result) -> None:
    for control in ("\x1b", "\x9b", "\x07"):
        assert control not in result.output, (control, result.output)
    assert not any(line.lstrip().startswith("## LGTM") for line in result.output.splitlines()), result.output


def assert_markdown_safe(markdown: str) -> None:
    lines = markdown.splitlines()
    assert "\x1b" not in markdown and "\x9b" not in markdown
    assert "<img" not in markdown
    fences_open = False
    for line in lines:
        if line.startswith("```"):
            fences_open = not fences_open
        elif not fences_open:
            assert not line.lstrip().startswith("## LGTM"), markdown
    assert not fences_open
    assert markdown.count("<summary>") == markdown.count("</summary>") > 0
    assert markdown.count("<code>") == markdown.count("</code>")
    tables = [line for line in lines if line.startswith("|")]
    header_cells = {line.count("|") for line in tables if line.startswith("| |") or line.startswith("|---|---|---|---|---|")}
    assert header_cells == {6}
    for line in tables:
        assert line.count("|") in (4, 6), line


def test_hostile_configuration_values_are_escaped_in_every_medium(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("%s", EACH_KEY.replace('"', '\\"')))
    env = _hostile_env()
    plan = workspace.keyplan("plan", env=env)
    assert plan.code == 0, plan.output
    assert_terminal_safe(plan)
    assert "\\n## LGTM" in plan.stdout, "the value is still shown, escaped"
    planfile = workspace.path / "hostile.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}", env=env).code == 0
    markdown = workspace.keyplan("show", str(planfile), "-markdown", env=env)
    assert markdown.code == 0
    assert_markdown_safe(markdown.stdout)
    document = json.loads(workspace.keyplan("show", str(planfile), "-json", env=env).stdout)
    assert HOSTILE in [(change.get("after") or {}).get("description") for change in document["changes"]], "JSON keeps it exact"
    applied = workspace.keyplan("apply", str(planfile), env=env)
    assert applied.code == 0, applied.output
    assert_terminal_safe(applied)
    graph = workspace.keyplan("graph", str(planfile), env=env)
    assert graph.code == 0 and "\\x9b" in graph.stdout, graph.output
    assert_terminal_safe(graph)
    for args in (("log",), ("show",), ("state", "list"), ("state", "show", 'key.data["a|b</code></summary><img src=x onerror=alert(1)>`c"]')):
        result = workspace.keyplan(*args, env=env)
        assert result.code == 0, (args, result.output)
        assert_terminal_safe(result)


def test_hostile_values_returned_by_a_cloud_are_escaped(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("%s", "b"))
    env = _hostile_env()
    assert workspace.keyplan("apply", "-auto-approve", env=env).code == 0
    remote_id = workspace.state()["keys"]['key.data["b"]']["targets"]["aws.main"]["remote_id"]
    with workspace.aws() as (kms, _):
        kms.update_key_description(KeyId=remote_id, Description="cloud" + ESCAPES + BREAKOUT)
        kms.tag_resource(KeyId=remote_id, Tags=[{"TagKey": "note", "TagValue": "cloud" + ESCAPES + BREAKOUT}])
    for args in (("plan",), ("drift",)):
        result = workspace.keyplan(*args, env=env)
        assert result.code in (0, 2), result.output
        assert "cloud" in result.stdout
        assert_terminal_safe(result)
    planfile = workspace.path / "drift.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}", env=env).code == 0
    markdown = workspace.keyplan("show", str(planfile), "-markdown", env=env).stdout
    assert_markdown_safe(markdown)
    assert not re.search(r"^#+ LGTM", markdown, re.MULTILINE)


def test_discover_cannot_be_steered_into_writing_configuration_by_cloud_values(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace("%s", "b"))
    env = _hostile_env()
    assert workspace.keyplan("apply", "-auto-approve", env=env).code == 0
    injected = '\n}\nkey "evil" {\n  algorithm = "AES_256"\n' + ESCAPES
    with workspace.aws() as (kms, _):
        kms.create_key(
            Origin="EXTERNAL",
            Description="outside" + injected,
            Tags=[
                {"TagKey": "keyplan-address", "TagValue": "key.x" + injected},
                {"TagKey": "keyplan-managed-by", "TagValue": "keyplan-other" + injected},
            ],
        )
    result = workspace.keyplan("discover", "aws.main", env=env)
    assert result.code == 0, result.output
    assert "outside" in result.stdout
    assert_terminal_safe(result)
    assert not any(line.startswith('key "evil"') for line in result.stdout.splitlines()), result.stdout
