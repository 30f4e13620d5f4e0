"""Spelling suggestions for diagnostics: "Did you mean ...?" for a misspelt name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str], *, render: str = "{}") -> str:
    """' Did you mean "x"?' when a candidate is close enough, else ''. `render` shapes the
    suggestion, e.g. "var.{}"."""
    match = closest(word, candidates)
    return f" Did you mean {render.format(match)}?" if match else ""
