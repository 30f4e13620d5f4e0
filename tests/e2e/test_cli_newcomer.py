"""What a newcomer trips on, through the CLI: version flags, a mistyped flag, -chdir to a missing
directory, a confirmation piped in, help texts, colour on dumb terminals. Interrupted applies are
in test_interrupted_apply.py."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from keyplan import __version__
from keyplan.cli import ui
from tests.e2e.conftest import Workspace

CONFIG = """
variable "apps" {
  type    = set(string)
  default = ["a", "b", "c", "d", "e", "f"]
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


@pytest.mark.parametrize("flag", ["-version", "--version"])
def test_version_flags(workspace: Workspace, flag: str) -> None:
    result = workspace.keyplan(flag)
    assert result.code == 0 and result.stdout == f"keyplan {__version__}\n"


def test_chdir_to_a_missing_directory_says_so(tmp_path: Path) -> None:
    from tests.e2e.conftest import run_keyplan

    result = run_keyplan(tmp_path / "nowhere", "plan")
    assert result.code == 1 and "does not exist" in result.stderr
    assert "holds no" not in result.stderr


def test_a_mistyped_flag_is_named_as_typed_with_a_suggestion(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    result = workspace.keyplan("plan", "-detailed-exitcod")
    assert result.code == 1
    assert "-detailed-exitcod." in result.stderr and "Did you mean -detailed-exitcode?" in result.stderr
    assert "No such option: -d" not in result.output and "Traceback" not in result.output


def test_apply_reads_the_confirmation_from_a_pipe(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace('"a", "b", "c", "d", "e", "f"', '"a"'))
    declined = workspace.keyplan("apply", stdin="no\n")
    assert declined.code == 1 and "Apply cancelled." in declined.stdout
    assert not workspace.state_path.exists()
    accepted = workspace.keyplan("apply", stdin="yes\n")
    assert accepted.code == 0 and "Apply complete!" in accepted.stdout, accepted.output
    assert list(workspace.state()["keys"]) == ['key.app["a"]']


def test_graph_takes_no_color_and_apply_flags_have_help(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace('"a", "b", "c", "d", "e", "f"', '"a"'))
    graph = workspace.keyplan("graph", "-no-color")
    assert graph.code == 0 and graph.stdout.startswith("digraph keyplan {"), graph.output
    helped = workspace.keyplan("apply", "-help", env={"TERM": "dumb", "COLUMNS": "200"})
    assert helped.code == 0
    lines = {line.split()[1]: line for line in helped.stdout.splitlines() if line.strip().startswith("│ --")}
    for flag in ("-target", "-replace", "-refresh", "-parallelism"):
        described = re.sub(r"\[[^\]]*\]", "", lines[f"-{flag}"].split(">", 1)[-1].replace("│", "")).strip()
        assert len(described) > 5, f"{flag} has no help text: {lines[f'-{flag}']}"


def test_no_colour_on_a_dumb_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert ui.use_colour(Terminal(), no_color=False)
    monkeypatch.setenv("TERM", "dumb")
    assert not ui.use_colour(Terminal(), no_color=False)
