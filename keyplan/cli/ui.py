"""Terminal output: diagnostics, quota waits and prompts. With `progress.py` (apply progress), the
only module besides the command functions that writes to the terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TextIO

from keyplan.diagnostics import Diagnostic, Severity
from keyplan.escaping import for_terminal, for_terminal_lines
from keyplan.limits import ClassStats, RateClass


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
        rate = "a sensitive rate" if rate_class.sensitive else f"{rate_class.per_second:g}/s"
        lines.append(
            f"  {for_terminal(target)} {for_terminal(rate_class.name)} ({rate} per "
            f"{for_terminal(rate_class.scope)}): waited {stats.waited_seconds:.1f}s over {stats.calls} call(s){throttled}\n"
        )
    return ("\nTime spent within request quotas:\n" + "".join(lines)) if lines else ""
