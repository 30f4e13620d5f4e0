"""The engine's handling of exceptions and phases, on the data-driven cases' configurations."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from keyplan.config import Config, load_config
from keyplan.policy.engine import default_policy, evaluate
from keyplan.policy.model import Phase
from keyplan.policy.rules import RULES

CASES = Path(__file__).parent / "cases"


def _config(case: str) -> Config:
    config, diagnostics = load_config(CASES / case, environ={})
    assert config is not None, [str(d) for d in diagnostics]
    return config


def test_an_exception_waives_until_its_last_day_and_the_finding_returns_the_day_after() -> None:
    config = _config("exception-waived")  # the exception holds through 2026-12-31
    on_last_day = evaluate(config, now=datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert [f.address for f in on_last_day.findings] == ["key.other"]
    assert [f.address for f in on_last_day.waived] == ["key.legacy"]
    assert on_last_day.waived[0].note is not None and "Waived through 2026-12-31" in on_last_day.waived[0].note
    assert "the legacy reader cannot re-wrap" in on_last_day.waived[0].note

    day_after = evaluate(config, now=datetime(2027, 1, 1, 0, 30, tzinfo=UTC))
    assert [f.address for f in day_after.findings] == ["key.legacy", "key.other"]
    assert day_after.waived == []
    note = day_after.findings[0].note
    assert note is not None and "expired on 2026-12-31" in note and "main.kp.hcl:" in note


def test_rules_run_only_in_the_phases_asked_for_and_with_their_inputs() -> None:
    config = _config("material-age-fail")  # a live rule, listed
    assert evaluate(config, phases={Phase.CONFIG, Phase.STATE}).rules == []
    assert evaluate(config, phases={Phase.LIVE}).rules == []  # no live inventory given
    assert evaluate(config, phases={Phase.LIVE}, live={}, state=None).rules == ["material-age"]


def test_the_default_policy_runs_every_configuration_rule() -> None:
    config = _config("labels-pass")
    report = evaluate(config, phases={Phase.CONFIG}, policy=default_policy())
    assert report.rules == [r.id for r in RULES.values() if r.phase is Phase.CONFIG]
