"""On a terminal, apply shows a live progress bar (rich) with each finished key printed above it,
and takes the bar away at the end; without one (a pipe, TERM=dumb) it prints plain lines and no
cursor control. The apply runs as a real process on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

from tests.e2e.conftest import KEYPLAN_BIN, Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "app" {
  for_each  = toset(["a", "b", "c"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""

HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def on_a_terminal(workspace: Workspace, *args: str, **env: str) -> tuple[int, str]:
    """Run keyplan with a pseudo-terminal as standard output and error; its exit code and what
    the terminal received."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(KEYPLAN_BIN), "-chdir", str(workspace.path), *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "KEYPLAN_EMULATOR_LATENCY_MS": "150", **env},
    )
    os.close(terminal)
    received = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    return process.wait(timeout=30), received.decode(errors="replace")


def test_on_a_terminal_apply_shows_a_live_bar_and_a_line_per_key(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    code, shown = on_a_terminal(workspace, "apply", "-auto-approve", "-parallelism", "1")
    assert code == 0, shown
    assert HIDE_CURSOR in shown and SHOW_CURSOR in shown, "no live display: " + repr(shown[-400:])
    assert shown.index(HIDE_CURSOR) < shown.rindex(SHOW_CURSOR)
    assert "Applying" in shown, repr(shown[-400:])
    text = _ESCAPE.sub("", shown)
    assert re.search(r"\d+/\d+ keys", text), text  # the bar's status: keys done of all
    for app in ("a", "b", "c"):
        assert f'key.app["{app}"]: created at aws.main' in text, text
    assert "Apply complete! Keys: 3 created" in text, text


def test_without_a_terminal_there_is_no_bar_and_no_cursor_control(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    piped = subprocess.run(
        [str(KEYPLAN_BIN), "-chdir", str(workspace.path), "apply", "-auto-approve"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, TERM="xterm-256color"),
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "\x1b" not in piped.stdout and "Applying" not in piped.stdout
    assert piped.stdout.count(": created at aws.main") == 3

    workspace.write(CONFIG.replace('"c"]', '"c", "d"]'))
    code, shown = on_a_terminal(workspace, "apply", "-auto-approve", TERM="dumb")
    assert code == 0, shown
    assert HIDE_CURSOR not in shown and "Applying" not in shown, repr(shown)
    assert 'key.app["d"]: created at aws.main' in shown
