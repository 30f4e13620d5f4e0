"""`trusted`: the plan's models built from values the planner typed itself, without validation."""

from __future__ import annotations

import pytest

from keyplan.heap import trusted
from keyplan.plan.model import (
    CreateKey,
    CreateKeyArgs,
    ForgetKey,
    ForgetKeyArgs,
    PlannedChange,
)


def test_a_trusted_model_equals_the_validated_one() -> None:
    made = trusted(CreateKey, id="create_key key.a @ aws.main", address="key.a", target="aws.main",
                   args=trusted(CreateKeyArgs, replaces=None), depends_on=["generate_material key.a v1"])  # fmt: skip
    validated = CreateKey(id="create_key key.a @ aws.main", address="key.a", target="aws.main",
                          args=CreateKeyArgs(), depends_on=["generate_material key.a v1"])  # fmt: skip
    assert made == validated
    assert made.model_dump_json() == validated.model_dump_json()
    assert made.source is None and made.kind == "create_key"  # defaults filled in


def test_mutable_defaults_are_not_shared() -> None:
    first = trusted(ForgetKey, id="forget_key key.a", address="key.a")
    second = trusted(ForgetKey, id="forget_key key.b", address="key.b")
    assert first.depends_on == [] and first.depends_on is not second.depends_on
    assert first.args == ForgetKeyArgs() and first.args is not second.args
    notes = trusted(PlannedChange, address="key.a", actions=[], reason="r")
    assert notes.notes == [] and notes.notes is not PlannedChange.model_fields["notes"].default


def test_unknown_or_missing_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="no field remote"):
        trusted(CreateKeyArgs, remote="x")
    with pytest.raises(TypeError, match="CreateKey.address is required"):
        trusted(CreateKey, id="create_key key.a @ aws.main", target="aws.main", args=CreateKeyArgs())
