"""Data-driven diagnostics: each folder under cases/ holds `*.kp.hcl` files and expected.json,
which lists every error as [file:line:column, summary] in the order reported, and text each
error's detail must contain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyplan.config import load_config

CASES = Path(__file__).parent / "cases"


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_case(case: str) -> None:
    expected = json.loads((CASES / case / "expected.json").read_text())
    config, diagnostics = load_config(CASES / case, environ={})

    assert config is None
    assert [[str(d.range), d.summary] for d in diagnostics.errors] == expected["errors"]
    for summary, text in expected["detail_contains"].items():
        details = [d.detail for d in diagnostics.errors if d.summary == summary]
        assert any(text in detail for detail in details), (summary, details)
    for diagnostic in diagnostics:
        assert diagnostic.range is not None and diagnostic.range.line >= 1 and diagnostic.range.column >= 1
        # Every detail is written in sentences and says how to fix the problem at its end.
        assert diagnostic.detail.rstrip().endswith((".", "?")), diagnostic.detail
