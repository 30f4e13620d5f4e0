"""Spelling suggestions for diagnostics: "Did you mean ...?" for a misspelt name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str]) -> str | None:
    names = sorted(set(candidates))
    # A shared stem of four or more letters ("expiration" / "expiry") says more about what was
    # meant than overall similarity does.
    stems = [name for name in names if len(_common_prefix(word.lower(), name.lower())) >= 4]
    if stems:
        return max(stems, key=lambda name: len(_common_prefix(word.lower(), name.lower())))
    matches = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _common_prefix(a: str, b: str) -> str:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return a[:length]


def did_you_mean(word: str, candidates: Iterable[str], *, render: str = "{}") -> str:
    """' Did you mean "x"?' when a candidate is close enough, else ''. `render` shapes the
    suggestion, e.g. "var.{}"."""
    match = closest(word, candidates)
    return f" Did you mean {render.format(match)}?" if match else ""
