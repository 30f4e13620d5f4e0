"""`trusted`: models built from values keyplan typed itself, without validation; the action
graph's shared arguments."""

from __future__ import annotations

import pytest

from keyplan.crypto.wrap import WrapMethod
from keyplan.heap import trusted
from keyplan.plan.graph import build_actions
from keyplan.plan.model import (
    ChangeAction,
    CreateKey,
    CreateKeyArgs,
    ForgetKey,
    ForgetKeyArgs,
    GenerateMaterialArgs,
    PlannedChange,
)
from keyplan.plan.work import KeyWork, TargetWork
from keyplan.provider import ImportPurpose, WrapOffer


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


def _created(address: str, version: int, offer: WrapOffer) -> KeyWork:
    change = PlannedChange(address=address, target="aws.main", actions=[ChangeAction.CREATE], reason="not in state")
    target = TargetWork(address=address, target="aws.main", change=change, create=True, import_version=version,
                        import_purpose=ImportPurpose.INITIAL, offer=offer)  # fmt: skip
    return KeyWork(address=address, source="software.local", generate_version=version, targets=[target])


def test_actions_with_the_same_arguments_share_one_arguments_object() -> None:
    offer = WrapOffer(method=WrapMethod.RSA_AES_KEY_WRAP_SHA_256, wrapping_key_bits=4096)
    actions = build_actions([_created("key.a", 1, offer), _created("key.b", 1, offer), _created("key.c", 2, offer)])
    by = {(a.kind.value, a.address): a for a in actions}
    assert by[("generate_material", "key.a")].args is by[("generate_material", "key.b")].args
    assert by[("generate_material", "key.c")].args == GenerateMaterialArgs(version=2)  # other values, its own
    assert by[("create_key", "key.a")].args is by[("create_key", "key.c")].args
    assert by[("get_import_parameters", "key.a")].args is by[("get_import_parameters", "key.b")].args
    assert by[("wrap_material", "key.a")].args != by[("wrap_material", "key.b")].args  # names its own step
    assert [type(a).model_validate_json(a.model_dump_json()) for a in actions] == actions
