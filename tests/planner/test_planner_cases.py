"""Planner cases as data: each folder under cases/ holds a configuration, a prior state, the
live inventory the providers would report, and the expected changes, drift kinds and action
graph. The diff runs with the real rules of the plugins each case configures (AWS, Google
Cloud and Azure providers: what each imports, its prerequisites such as key rings, import jobs
and key-exchange keys, the metadata it keeps) and the software source's capabilities, at a
fixed time. A case may set plan options (`options.json`: PlanOptions' fields) and may expect
the plan to be refused (`"errors"` in expected.json: the summaries of its errors)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyplan.config.load import load_config
from keyplan.plan.diff import diff
from keyplan.plan.graph import build_actions
from keyplan.plan.model import ImportMaterial
from keyplan.plan.planner import desired_keys
from keyplan.plan.work import PlanOptions, TargetInfo
from keyplan.provider import Inventory
from keyplan.registry import provider_plugin, source_plugin
from keyplan.state.model import State

CASES = Path(__file__).parent / "cases"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_case(case: str) -> None:
    folder = CASES / case
    config, diagnostics = load_config(folder)
    assert config is not None, list(diagnostics)
    state_file = folder / "state.json"
    state = State.model_validate_json(state_file.read_text()) if state_file.exists() else State(lineage="l1")
    live = {t: Inventory.model_validate(v) for t, v in json.loads((folder / "live.json").read_text()).items()}
    targets = {}
    for address, block in config.providers.items():
        plugin = provider_plugin(block.kind)
        assert plugin is not None
        targets[address] = TargetInfo(address, plugin, plugin.settings_model.model_validate(block.attributes))
    capabilities = {}
    for address, block in config.sources.items():
        plugin = source_plugin(block.kind)
        assert plugin is not None
        capabilities[address] = plugin.declared_capabilities(plugin.settings_model.model_validate(block.attributes))

    options_file = folder / "options.json"
    options = PlanOptions(**json.loads(options_file.read_text())) if options_file.exists() else PlanOptions()
    desired = desired_keys(config)
    result = diff(desired, state, live, targets, capabilities, options, NOW, new_state=not state_file.exists())

    expected = json.loads((folder / "expected.json").read_text())
    if "errors" in expected:  # a case the plan refuses: the errors' summaries, nothing else checked
        assert [d.summary for d in result.diagnostics.errors] == expected["errors"]
        return
    assert not result.diagnostics.has_errors(), list(result.diagnostics)
    assert [
        {"address": c.address, "target": c.target, "actions": [a.value for a in c.actions]} for c in result.changes
    ] == expected["changes"]
    assert [d.kind.value for d in result.drift] == expected["drift"]
    actions = build_actions(result.work)
    assert sorted(a.id for a in actions) == sorted(expected["actions"])
    # versions the key holds that state does not record, to check before importing (lost imports)
    unrecorded = {a.id: list(a.args.unrecorded_versions) for a in actions if isinstance(a, ImportMaterial)}
    assert {k: v for k, v in unrecorded.items() if v} == expected.get("unrecorded_versions", {})
    # built without validation (`trusted`): each model is what validating its own document gives
    built = [*config.keys.values(), *(d.spec for d in desired.values()), *result.changes, *actions]
    assert [type(m).model_validate_json(m.model_dump_json()) for m in built] == built
