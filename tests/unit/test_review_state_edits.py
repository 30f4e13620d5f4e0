"""State edits behind `keyplan state rm | mv | push`: what each changes and what each refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyplan.diagnostics import DiagnosticsError
from keyplan.state.edits import apply_moves, check_push, matching, plan_moves, remove
from keyplan.state.model import KeyRecord, MaterialVersion, State, TargetRecord

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def record(address: str) -> KeyRecord:
    return KeyRecord(
        address=address,
        algorithm="AES_256",
        usage="encrypt",
        source="software.local",
        materials=[MaterialVersion(version=1, handle="h-" + address, fingerprint="kcv:000000", created_at=NOW)],
        targets={"aws.main": TargetRecord(remote_id="arn:" + address)},
    )


def state() -> State:
    addresses = ['key.app["a"]', 'key.app["b"]', "key.app_other", "key.db"]
    return State(lineage="l1", serial=4, keys={a: record(a) for a in addresses})


def summary(error: pytest.ExceptionInfo[DiagnosticsError]) -> str:
    return next(iter(error.value.diagnostics)).summary


def test_a_block_name_matches_its_instances_only() -> None:
    s = state()
    assert matching(s, "key.app") == ['key.app["a"]', 'key.app["b"]']
    assert matching(s, "key.app_other") == ["key.app_other"]
    assert matching(s, 'key.app["c"]') == []


def test_remove_is_all_or_nothing() -> None:
    s = state()
    with pytest.raises(DiagnosticsError) as refused:
        remove(s, ["key.db", "key.nope"])
    assert summary(refused) == "No key key.nope in state"
    assert len(s.keys) == 4
    removed = remove(s, ["key.app", 'key.app["a"]'])
    assert [r.address for r in removed] == ['key.app["a"]', 'key.app["b"]']
    assert sorted(s.keys) == ["key.app_other", "key.db"]


def test_move_renames_records_and_their_addresses() -> None:
    s = state()
    apply_moves(s, plan_moves(s, "key.db", 'key.database["main"]'))
    assert s.keys['key.database["main"]'].address == 'key.database["main"]'
    assert s.keys['key.database["main"]'].targets["aws.main"].remote_id == "arn:key.db"
    apply_moves(s, plan_moves(s, "key.app", "key.service"))
    assert sorted(s.keys) == ['key.app_other', 'key.database["main"]', 'key.service["a"]', 'key.service["b"]']


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("key.db", "key.app_other", "key.app_other is already in state"),
        ("key.db", "db", "Invalid destination address db"),
        ("key.db", 'key.x["unterminated]', "Invalid destination address"),
        ("key.app", 'key.x["one"]', "Cannot move every instance of key.app into one instance"),
        ("key.nope", "key.x", "No key key.nope in state"),
        ("key.db", "key.db", "Source and destination are the same"),
    ],
)
def test_move_refusals(source: str, destination: str, message: str) -> None:
    with pytest.raises(DiagnosticsError) as refused:
        plan_moves(state(), source, destination)
    assert message in summary(refused)


def test_push_needs_the_same_lineage_and_a_newer_serial_unless_forced() -> None:
    current = state()
    newer = current.model_copy(update={"serial": 5})
    check_push(current, newer, force=False, origin="f")
    check_push(None, newer.model_copy(update={"lineage": "other"}), force=False, origin="f")
    for incoming, message in (
        (current.model_copy(update={"serial": 4}), "not newer"),
        (current.model_copy(update={"serial": 3}), "not newer"),
        (newer.model_copy(update={"lineage": "l2"}), "different lineage"),
    ):
        with pytest.raises(DiagnosticsError) as refused:
            check_push(current, incoming, force=False, origin="f")
        assert message in summary(refused)
        check_push(current, incoming, force=True, origin="f")
