"""Data-driven policy cases: each folder under cases/ holds `*.kp.hcl` files (with a policy
block), optionally the state (`state.json`) and the clouds' live inventory (`live.json`,
provider address -> inventory), and expected.json: the findings as
[file:line:column, rule, severity, address, target] in report order, and the rules that ran.

Every built-in rule has a case named `<rule>-fail` that must produce a finding of that rule and
a case named `<rule>-pass` that must not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyplan.config import load_config, validate_config
from keyplan.policy.engine import evaluate
from keyplan.policy.model import Phase
from keyplan.policy.rules import RULES
from keyplan.provider import Inventory
from keyplan.state.model import State

CASES = Path(__file__).parent / "cases"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _run(folder: Path) -> list[list[str | None]]:
    config, diagnostics = load_config(folder, environ={})
    assert config is not None, [str(d) for d in diagnostics]
    problems = validate_config(config)
    assert not problems.has_errors(), [str(d) for d in problems]
    state_file = folder / "state.json"
    live_file = folder / "live.json"
    state = State.model_validate_json(state_file.read_text()) if state_file.exists() else None
    live = None
    if live_file.exists():
        inventories = {t: Inventory.model_validate(v) for t, v in json.loads(live_file.read_text()).items()}
        live = {t: {k.remote_id: k for k in inventory.keys} for t, inventory in inventories.items()}
    report = evaluate(config, phases=set(Phase), state=state, live=live, now=NOW)
    return [[str(f.range) if f.range else None, f.rule, f.severity.value, f.address, f.target] for f in report.findings]


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_case(case: str) -> None:
    folder = CASES / case
    expected = json.loads((folder / "expected.json").read_text())
    assert _run(folder) == expected["findings"]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_has_a_failing_and_a_passing_case(rule: str) -> None:
    failing = json.loads((CASES / f"{rule}-fail" / "expected.json").read_text())["findings"]
    passing = json.loads((CASES / f"{rule}-pass" / "expected.json").read_text())["findings"]
    assert any(f[1] == rule for f in failing)
    assert not any(f[1] == rule for f in passing)
