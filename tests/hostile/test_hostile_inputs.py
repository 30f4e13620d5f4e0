"""The hostile-input suite: generated configuration text, state files, plan files and keystore
files, each fed to keyplan the way a user would. Whatever the input:

- never a traceback (every problem is a diagnostic, exit code 1);
- never a hang (each case must finish within a generous bound; this is not a speed check);
- never a changed state or keystore after a refused command.

Cases are generated with hypothesis from mutations of real artifacts (a state and a keystore
written by a real apply against the embedded AWS emulator, a plan saved from it) and from a
vocabulary of fragments that broke keyplan before: doubling locals, long numbers, huge
durations, catastrophic regular expressions, escape sequences, deep nesting, Unicode.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyplan.cli.main import main
from keyplan.config import load_config, validate_config

CASE_SECONDS = 60  # a case still running after this is a hang
IN_CI = bool(os.environ.get("CI"))  # CI replays the same derandomized cases every run

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

variable "team" {
  type    = string
  default = "core"
}

locals {
  apps = ["payments", "ledger"]
}

key "data" {
  for_each    = toset(local.apps)
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  description = "data key for ${each.key}"
  labels      = { team = var.team, app = each.key }
  rotation {
    every = "90d"
  }
}
"""

FRAGMENTS = [
    "{", "}", "[", "]", "(", ")", '"', "${", "%{", "}", "=", "=>", ":", "?", "...", ",", "\n", "#", "//", "/*", "*/",
    "for x in local.apps :", "if", "var.team", "local.apps", "each.key", "each.value", "local.nope", "var.",
    'key "k" {', 'locals {', 'variable "v" {', "sensitive = true", "nonsensitive(var.team)", "sensitive(1)",
    'replace("' + "a" * 3000 + '!", "/(a+)+$/", "b")', 'replace("x", "/(x)\\\\1/", "")', 'format("%9999999d", 1)',
    '"99999999999999999999999d"', '"1e999h"', "7" * 300, "1e999999", "-0", "0x1F", "1.5e308 * 10",
    "setproduct(range(1000), range(1000), range(1000))", 'join("' + "-" * 100 + '", range(1000))',
    "[local.apps, local.apps]", '"${var.team}${var.team}"', "concat(local.apps, local.apps)",
    '"\\u001b[2J\\u0007"', '"\x1b]0;owned\x07"', "<<EOT\n", "EOT\n", "<<-EOT\n${x}\nEOT\n", "\ufeff", "\x00",
    "schlüssel", "ключ", "鍵", "\u202e", "é" * 50, "true", "false", "null", "[" * 60, "]" * 60, "(" * 60, ")" * 60,
    'keyplan {\n  state "local" {\n    path = "/"\n  }\n}\n', 'keyplan {\n  state "s3" {}\n}\n',
    'provider "aws" "x" {\n  region = "eu west"\n  endpoint = "http://[::1"\n}\n', "expiry {", "never = true",
    "lifecycle {", "prevent_destroy = true", "algorithm = \"AES_256\"", 'targets = [provider.aws.main]',
]


@contextlib.contextmanager
def bounded(seconds: int = CASE_SECONDS) -> Iterator[None]:
    def hung(*_: object) -> None:
        raise AssertionError(f"keyplan did not finish within {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def keyplan(workdir: Path, *args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), bounded():
            try:
                main(["-chdir", str(workdir), *args])
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved_stdin
    output = out.getvalue() + err.getvalue()
    assert "Traceback" not in output and "keyplan crashed" not in output, (args, output)
    assert code in (0, 1, 2), (args, code, output)
    return code, output


# ---------------------------------------------------------------------------------------------
# Configuration text
# ---------------------------------------------------------------------------------------------


@st.composite
def configuration_text(draw: st.DrawFn) -> str:
    text = CONFIG
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        operation = draw(st.sampled_from(["insert", "insert", "delete", "duplicate", "character"]))
        if operation == "insert":
            text = text[:position] + draw(st.sampled_from(FRAGMENTS)) + text[position:]
        elif operation == "delete":
            text = text[:position] + text[position + draw(st.integers(min_value=1, max_value=40)) :]
        elif operation == "duplicate":
            span = text[position : position + draw(st.integers(min_value=1, max_value=200))]
            text = text[:position] + span * draw(st.integers(min_value=2, max_value=4)) + text[position:]
        else:
            text = text[:position] + draw(st.characters(codec="utf-8")) + text[position + 1 :]
    return text


@settings(max_examples=150, deadline=None, database=None, derandomize=IN_CI, suppress_health_check=list(HealthCheck))
@given(text=configuration_text())
def test_configuration_text_never_crashes_or_hangs(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    directory = tmp_path_factory.mktemp("config")
    (directory / "main.kp.hcl").write_text(text, encoding="utf-8", errors="surrogatepass")
    with bounded():
        config, diagnostics = load_config(directory, environ={"KEYPLAN_VAR_team": "x" * 100})
        if config is not None:
            diagnostics.extend(validate_config(config))
    if config is None:
        assert diagnostics.has_errors()
    for diagnostic in diagnostics:
        assert diagnostic.summary and diagnostic.detail


# ---------------------------------------------------------------------------------------------
# State, plan and keystore files, from a real apply
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory after a real apply: state, backup, keystore, emulator data, and a
    saved plan that would rotate one key."""
    workdir = tmp_path_factory.mktemp("applied")
    (workdir / "main.kp.hcl").write_text(CONFIG)
    assert keyplan(workdir, "apply", "-auto-approve")[0] == 0
    assert keyplan(workdir, "plan", "-replace", 'key.data["ledger"]', f"-out={workdir / 'saved.kpplan'}")[0] == 0
    return workdir


def _copy(applied: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("case")
    shutil.copytree(applied, workdir, dirs_exist_ok=True)
    return workdir


def _guarded(workdir: Path) -> dict[str, bytes | None]:
    """What a refused command must leave exactly as it was."""
    paths = ["keyplan.kpstate.json", ".keyplan/keystore.json", ".keyplan/keystore.key", "keyplan.kpstate.json.journal"]
    return {p: (workdir / p).read_bytes() if (workdir / p).is_file() else None for p in paths}


def run_refusing_cleanly(workdir: Path, *args: str) -> None:
    before = _guarded(workdir)
    code, output = keyplan(workdir, *args)
    if code == 1:
        assert _guarded(workdir) == before, (args, output)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "\x1b[2J", "kcv:" + "00" * 16, "1970-01-01T00:00:00Z", "AES_256", "aws.main", "../../x"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _paths(value, (*prefix, index))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = _replace(document[head], tuple(rest), value)
    return copy


@st.composite
def mutated_json(draw: st.DrawFn, original: bytes) -> bytes:
    """A JSON document with one value replaced, one member removed, or its bytes damaged."""
    document = json.loads(original)
    kind = draw(st.sampled_from(["replace", "replace", "remove", "bytes", "nest"]))
    if kind == "bytes":
        data = bytearray(original)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            at = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[at] = draw(st.integers(min_value=0, max_value=255))
        return bytes(data[: draw(st.integers(min_value=0, max_value=len(data)))] if draw(st.booleans()) else data)
    if kind == "nest":
        depth = draw(st.sampled_from([100, 5000, 100000]))
        return b"[" * depth + b"]" * depth
    path = draw(st.sampled_from(_paths(document)[1:] or [()]))
    if kind == "remove" and path:
        parent = _paths_get(document, path[:-1])
        if isinstance(parent, dict):
            trimmed = {k: v for k, v in parent.items() if k != path[-1]}
            return json.dumps(_replace(document, path[:-1], trimmed)).encode()
    return json.dumps(_replace(document, path, draw(json_values))).encode()


def _paths_get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


# Each case copies a working directory and runs real commands; a few dozen per kind of file keep
# the suite under a minute on a quiet machine. Every `make test` on a developer's machine draws new
# ones; CI replays a fixed sequence (IN_CI) so that a landing is judged on the same cases each time.
HOSTILE_SETTINGS = settings(
    max_examples=15, deadline=None, database=None, derandomize=IN_CI, suppress_health_check=list(HealthCheck)
)


@HOSTILE_SETTINGS
@given(data=st.data())
def test_state_files_never_crash_hang_or_change_when_refused(
    applied: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    workdir = _copy(applied, tmp_path_factory)
    state = workdir / "keyplan.kpstate.json"
    state.write_bytes(data.draw(mutated_json(state.read_bytes())))
    for args in (("show",), ("state", "list"), ("plan", "-refresh=false"), ("apply", "-auto-approve", "-refresh=false")):
        run_refusing_cleanly(workdir, *args)


@HOSTILE_SETTINGS
@given(data=st.data())
def test_plan_files_never_crash_hang_or_change_state_when_refused(
    applied: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    from keyplan.plan.model import Plan
    from keyplan.plan.planfile import plan_digest

    workdir = _copy(applied, tmp_path_factory)
    planfile = workdir / "saved.kpplan"
    mutated = data.draw(mutated_json(planfile.read_bytes()))
    if data.draw(st.booleans()):
        # Sealed again, as someone who knows the format would: the content digest then matches and
        # only the plan's own checks stand between the file and the clouds.
        with contextlib.suppress(Exception):
            plan = Plan.model_validate_json(mutated)
            mutated = json.dumps({**json.loads(mutated), "digest": plan_digest(plan)}).encode()
    planfile.write_bytes(mutated)
    for args in (("show", str(planfile)), ("show", str(planfile), "-markdown"), ("apply", str(planfile))):
        run_refusing_cleanly(workdir, *args)


@settings(HOSTILE_SETTINGS, max_examples=12)
@given(data=st.data())
def test_keystore_files_never_crash_hang_or_change_when_refused(
    applied: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    workdir = _copy(applied, tmp_path_factory)
    keystore = workdir / ".keyplan" / "keystore.json"
    keystore.write_bytes(data.draw(mutated_json(keystore.read_bytes())))
    for args in (("plan", "-refresh=false"), ("apply", "-auto-approve", "-replace", 'key.data["payments"]')):
        run_refusing_cleanly(workdir, *args)
