"""Bad input is a diagnostic, never a traceback or a hang: evaluation has size limits, numbers
and durations have ranges, the regular expressions of replace() run in linear time, state and
plan files that are directories, nested too deeply or of an unknown format are refused, the
keystore's KDF parameters are bounded, and an apply that could not record what it does stops
before it changes anything remotely."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Result, Workspace

HEAD = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
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


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A case that does not finish within a minute is a hang (this is not a speed check)."""

    def hung(*_: object) -> None:
        raise AssertionError("keyplan hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(result: Result, *words: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and "report this" not in result.output, result.output
    assert "Error:" in result.output
    for word in words:
        assert word in result.output, (word, result.output)


def _doubling(kind: str, levels: int = 64) -> str:
    seed = '"xxxxxxxx"' if kind == "string" else '["x", "y"]'
    lines = [f"  l0 = {seed}"]
    for i in range(1, levels):
        step = f'"${{local.l{i - 1}}}${{local.l{i - 1}}}"' if kind == "string" else f"concat(local.l{i - 1}, local.l{i - 1})"
        lines.append(f"  l{i} = {step}")
    return "locals {\n" + "\n".join(lines) + "\n}\n"


@pytest.mark.parametrize(
    "text, words",
    [
        (HEAD + KEY % 'rotation {\n    every = "99999999999999999999999d"\n  }', ("main.kp.hcl:", "duration")),
        (HEAD + KEY % 'expiry {\n    after = "1e308h"\n  }', ("main.kp.hcl:",)),
        (HEAD + "locals {\n  n = " + "7" * 5000 + "\n}\n" + KEY % "", ("main.kp.hcl:9:7", "number")),
        (HEAD + "locals {\n  n = 1e999999 * 2\n}\n" + KEY % "", ("main.kp.hcl:9",)),
        (HEAD + _doubling("string") + KEY % "", ("main.kp.hcl:", "too large")),
        (HEAD + _doubling("list") + KEY % "", ("main.kp.hcl:", "too large")),
        (HEAD + "locals {\n  p = setproduct(range(1000), range(1000), range(1000))\n}\n" + KEY % "", ("too large",)),
        (HEAD + 'locals {\n  f = format("%999999999d", 1)\n}\n' + KEY % "", ("main.kp.hcl:",)),
        (HEAD + 'keyplan {\n  state "local" {\n    path = "/"\n  }\n}\n' + KEY % "", ("main.kp.hcl:", "state")),
        (HEAD + 'keyplan {\n  state "local" {\n    path = "."\n  }\n}\n' + KEY % "", ("main.kp.hcl:", "directory")),
    ],
    ids=["duration", "expiry-overflow", "digits", "float-overflow", "string-bomb", "list-bomb", "setproduct",
         "format-width", "state-root", "state-dot"],
)
def test_configuration_limits_are_diagnostics(workspace: Workspace, text: str, words: tuple[str, ...]) -> None:
    workspace.write(text)
    for command in ("validate", "plan"):
        refused(workspace.keyplan(command), *words)
    assert not workspace.state_path.exists()


def test_catastrophic_regular_expressions_run_in_linear_time(workspace: Workspace) -> None:
    hostile = "a" * 5000 + "!"
    workspace.write(
        HEAD + f'locals {{\n  r = replace("{hostile}", "/(a+)+$/", "x")\n  s = replace("{hostile}", "/(a|a)*b/", "x")\n}}\n'
        + KEY % "description = length(local.r) > 0 ? local.s : \"\""
    )
    result = workspace.keyplan("validate")
    assert result.code == 0, result.output


def test_unsupported_regular_expression_features_are_a_diagnostic(workspace: Workspace) -> None:
    workspace.write(HEAD + 'locals {\n  r = replace("abab", "/(ab)\\\\1/", "x")\n}\n' + KEY % "")
    refused(workspace.keyplan("validate"), "main.kp.hcl:", "regular expression")


@pytest.mark.parametrize(
    "content, words",
    [
        (b"[" * 200000 + b"]" * 200000, ("State file",)),
        (b'{"a":' * 100000 + b"1" + b"}" * 100000, ("State file",)),
        (json.dumps({"format_version": -1, "serial": 1, "lineage": "l", "keys": {}}).encode(), ("format version",)),
        (json.dumps({"format_version": True, "serial": 1, "lineage": "l", "keys": {}}).encode(), ("format version",)),
        (json.dumps({"format_version": "2", "serial": 1, "lineage": "l", "keys": {}}).encode(), ("format version",)),
        (json.dumps({"format_version": 10**30, "serial": 1, "lineage": "l", "keys": {}}).encode(), ("newer keyplan",)),
        (b'{"format_version": 2, "serial": ' + b"9" * 5000 + b', "lineage": "l", "keys": {}}', ("State file",)),
    ],
    ids=["nested-lists", "nested-objects", "minus-one", "bool", "string", "huge", "huge-serial"],
)
def test_hostile_state_files_are_refused_and_left_untouched(workspace: Workspace, content: bytes, words: tuple[str, ...]) -> None:
    workspace.write(HEAD + KEY % "")
    workspace.state_path.write_bytes(content)
    for args in (("plan",), ("apply", "-auto-approve"), ("show",), ("state", "list"), ("drift",)):
        refused(workspace.keyplan(*args), *words)
    assert workspace.state_path.read_bytes() == content
    assert not (workspace.path / ".keyplan" / "emulators").exists() or _no_remote_keys(workspace)


def test_a_state_path_that_is_a_directory_is_refused(workspace: Workspace) -> None:
    workspace.write(HEAD + 'keyplan {\n  state "local" {\n    path = "states"\n  }\n}\n' + KEY % "")
    (workspace.path / "states").mkdir()
    refused(workspace.keyplan("validate"), "directory")
    refused(workspace.keyplan("plan"), "directory")


def test_a_plan_file_that_is_a_directory_is_refused(workspace: Workspace) -> None:
    workspace.write(HEAD + KEY % "")
    folder = workspace.path / "plans"
    folder.mkdir()
    refused(workspace.keyplan("plan", f"-out={folder}"), "directory")
    refused(workspace.keyplan("apply", str(folder)), "directory")
    refused(workspace.keyplan("show", str(folder)), "directory")
    assert not workspace.state_path.exists()


def _no_remote_keys(workspace: Workspace) -> bool:
    with workspace.aws() as (kms, _):
        return kms.list_keys()["Keys"] == []


def test_an_apply_that_cannot_write_its_audit_log_changes_nothing_remotely(workspace: Workspace) -> None:
    workspace.write(HEAD + KEY % "")
    (workspace.path / ".keyplan" / "audit.jsonl").mkdir(parents=True)
    refused(workspace.keyplan("apply", "-auto-approve"), "audit")
    assert _no_remote_keys(workspace)
    assert not workspace.state_path.exists()


def test_an_apply_that_cannot_write_its_state_changes_nothing_remotely(workspace: Workspace) -> None:
    workspace.write(HEAD + 'keyplan {\n  state "local" {\n    path = "blocked/keyplan.kpstate.json"\n  }\n}\n' + KEY % "")
    (workspace.path / "blocked").write_text("a file where the state directory should be")
    refused(workspace.keyplan("apply", "-auto-approve"), "blocked")
    assert not (workspace.path / ".keyplan" / "emulators").exists() or _no_remote_keys(workspace)


@pytest.mark.parametrize("field, value", [("n", 2**30), ("p", 10**6), ("r", 10**6), ("n", 3)])
def test_keystore_kdf_parameters_are_bounded(workspace: Workspace, field: str, value: int) -> None:
    workspace.write(HEAD + KEY % "")
    env = {"KEYPLAN_KEYSTORE_PASSPHRASE": "correct horse battery staple"}
    assert workspace.keyplan("apply", "-auto-approve", env=env).code == 0
    keystore = workspace.path / ".keyplan" / "keystore.json"
    document = json.loads(keystore.read_text())
    document["protection"][field] = value
    keystore.write_text(json.dumps(document))
    before = keystore.read_bytes(), workspace.state_path.read_bytes()
    refused(workspace.keyplan("apply", "-auto-approve", "-replace", "key.data", env=env), "keystore")
    assert (keystore.read_bytes(), workspace.state_path.read_bytes()) == before


def test_an_unusable_keystore_path_is_a_diagnostic_before_any_remote_change(workspace: Workspace) -> None:
    workspace.write(HEAD.replace('source "software" "local" {}', 'source "software" "local" {\n  keystore = "blocked/keystore.json"\n}') + KEY % "")
    (workspace.path / "blocked").write_text("a file where the keystore directory should be")
    refused(workspace.keyplan("apply", "-auto-approve"), "keystore")
    assert not workspace.state_path.exists() or not workspace.state()["keys"]
    assert not (workspace.path / ".keyplan" / "emulators").exists() or _no_remote_keys(workspace)


@pytest.mark.parametrize("content", ['{"x": ' + "[" * 100000 + "]" * 100000 + "}", '{"x": ' + "9" * 5000 + "}"], ids=["nested", "digits"])
def test_hostile_variable_files_are_diagnostics(workspace: Workspace, content: str) -> None:
    workspace.write('variable "x" {\n  type = any\n}\n')
    (workspace.path / "hostile.json").write_text(content)
    refused(workspace.keyplan("validate", "-var-file", str(workspace.path / "hostile.json")), "variables file")
