"""Terminal output: diagnostics, apply progress and prompts. The only module besides the
command functions that writes to the terminal."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

from keyplan.diagnostics import Diagnostic, Severity
from keyplan.escaping import for_terminal, for_terminal_lines
from keyplan.limits import ClassStats, RateClass
from keyplan.plan.model import Action


def use_colour(stream: TextIO, no_color: bool) -> bool:
    if no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def format_diagnostic(diagnostic: Diagnostic, colour: bool) -> str:
    if diagnostic.severity is Severity.ERROR:
        tag = "\x1b[1;31mError:\x1b[0m" if colour else "Error:"
    else:
        tag = "\x1b[1;33mWarning:\x1b[0m" if colour else "Warning:"
    # Messages quote configuration and cloud values: their control characters are shown escaped.
    lines = [f"{tag} {for_terminal(diagnostic.summary)}"]
    if diagnostic.range is not None:
        lines.append(f"  on {for_terminal(diagnostic.range)}")
    elif diagnostic.address:
        lines.append(f"  with {for_terminal(diagnostic.address)}")
    if diagnostic.detail:
        lines.append("")
        lines.extend("  " + line if line else "" for line in for_terminal_lines(diagnostic.detail).split("\n"))
    return "\n".join(lines)


def print_diagnostics(diagnostics: Iterable[Diagnostic], *, no_color: bool = False, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    colour = use_colour(stream, no_color)
    for diagnostic in diagnostics:
        stream.write("\n" + format_diagnostic(diagnostic, colour) + "\n")
    stream.flush()


class ProgressHooks:
    """Apply progress as plain lines (one per finished step), safe from many threads. On a
    terminal a status line shows what is running."""

    def __init__(self, stream: TextIO, *, colour: bool, total: int) -> None:
        self.stream = stream
        self.colour = colour
        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.live = stream.isatty()
        self.running: dict[str, float] = {}
        self.closed = False

    def close(self) -> None:
        """Nothing more is shown: the apply's summary follows."""
        with self.lock:
            if self.live and not self.closed:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            self.closed = True

    def _line(self, text: str) -> None:
        with self.lock:
            if self.closed:
                return
            if self.live:
                self.stream.write("\r\x1b[K")
            self.stream.write(text + "\n")
            if self.live and self.running:
                self.stream.write(f"[{self.done}/{self.total}] running: {len(self.running)} step(s)…")
            self.stream.flush()

    def started(self, action: Action) -> None:
        with self.lock:
            self.running[action.id] = time.monotonic()

    def finished(self, action: Action, seconds: float) -> None:
        with self.lock:
            self.running.pop(action.id, None)
            self.done += 1
            done = self.done
        self._line(f"[{done}/{self.total}] {for_terminal(action.label)}: done ({seconds:.1f}s)")

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        with self.lock:
            self.running.pop(action.id, None)
            self.done += 1
            done = self.done
        text = f"[{done}/{self.total}] {for_terminal(action.label)}: failed"
        self._line(f"\x1b[31m{text}\x1b[0m" if self.colour else text)

    def skipped(self, action: Action, because: str) -> None:
        with self.lock:
            self.done += 1
            done = self.done
        self._line(f"[{done}/{self.total}] {for_terminal(action.label)}: skipped (depends on a failed step)")

    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None:
        self._line(f"  {for_terminal(action.label)}: retry {attempt} in {delay:.1f}s ({for_terminal(reason)})")

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        return


def ask(prompt: str) -> str | None:
    """One line from standard input (a terminal or a pipe), stripped; None when it ended."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    answer = sys.stdin.readline()
    if not answer:
        sys.stdout.write("\n")
        return None
    return answer.strip()


def confirm(prompt: str) -> bool:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip() == "yes"


def quota_waits(rows: Iterable[tuple[str, RateClass, ClassStats]]) -> str:
    """What the run spent waiting on the clouds' request quotas, one line per quota."""
    lines = []
    for target, rate_class, stats in rows:
        throttled = f"; {stats.throttled} throttled answer(s) waited out" if stats.throttled else ""
        lines.append(
            f"  {for_terminal(target)} {for_terminal(rate_class.name)} ({rate_class.per_second:g}/s per "
            f"{for_terminal(rate_class.scope)}): waited {stats.waited_seconds:.1f}s over {stats.calls} call(s){throttled}\n"
        )
    return ("\nTime spent within request quotas:\n" + "".join(lines)) if lines else ""
