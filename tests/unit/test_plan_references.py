"""A saved plan whose steps name a step it does not have is refused at load, not half-way through apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from keyplan.diagnostics import DiagnosticsError
from keyplan.plan.model import Action, Plan
from keyplan.plan.planfile import _refuse_dangling_references


def _plan(depends_on: list[str]) -> Plan:
    return Plan.model_construct(
        actions=[
            TypeAdapter(Action).validate_python(
                {
                    "id": "generate_material key.a v1",
                    "kind": "generate_material",
                    "address": "key.a",
                    "source": "software.local",
                    "target": None,
                    "args": {"version": 1},
                    "depends_on": depends_on,
                }
            )
        ]
    )


def test_a_step_naming_a_missing_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DiagnosticsError) as refused:
        _refuse_dangling_references(_plan(["get_import_parameters key.a @ x v1"]), tmp_path / "p.kpplan")
    assert "does not have" in json.dumps([d.detail for d in refused.value.diagnostics])


def test_a_plan_whose_steps_resolve_is_accepted(tmp_path: Path) -> None:
    _refuse_dangling_references(_plan([]), tmp_path / "p.kpplan")
