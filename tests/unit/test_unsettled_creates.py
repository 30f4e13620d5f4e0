"""Which creations an interrupted apply left unsettled, read from the audit trail's tail: a
`create_key` entry `started` with no outcome after it, in this workspace, with a time keyplan
wrote (UTC); nothing at all when no interrupted apply left a journal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from keyplan.apply.audit import AuditLog
from keyplan.operations.workspace import unsettled_creates
from keyplan.state.backend import JournalEntry
from keyplan.state.model import State
from keyplan.state.store import StateStore
from keyplan.state.workspaces import open_backend

T = "2026-12-01T08:00:00+00:00"


def store_with(tmp_path: Path, entries: list[dict[str, object]], *, interrupted: bool = True) -> StateStore:
    store = StateStore(open_backend("local", {"path": "s.kpstate.json"}, tmp_path))
    state = State(lineage="l1")
    store.write(state)
    log = AuditLog(store.backend, "sha256:plan")
    for entry in entries:
        log.record({"action": "create_key", "target": "aws.main", "remote_id": None, "detail": "", **entry})
    if interrupted:
        store.append_journal([JournalEntry(serial=state.serial + 1, lineage="l1")])
    reader = StateStore(open_backend("local", {"path": "s.kpstate.json"}, tmp_path))
    reader.read()
    return reader


def test_a_creation_started_without_an_outcome_is_unsettled(tmp_path: Path) -> None:
    store = store_with(
        tmp_path,
        [
            {"address": "key.a", "outcome": "started", "time": T},
            {"address": "key.b", "outcome": "started", "time": T},
            {"address": "key.b", "outcome": "ok", "time": T},
            {"address": "key.c", "outcome": "started", "time": T, "workspace": "other"},
            {"address": "key.d", "outcome": "started", "time": "2026-12-01T08:00:00"},  # no zone: not keyplan's
        ],
    )
    assert unsettled_creates(store) == (("key.a", "aws.main", datetime(2026, 12, 1, 8, tzinfo=UTC)),)


def test_without_an_interrupted_apply_nothing_is_read(tmp_path: Path) -> None:
    store = store_with(tmp_path, [{"address": "key.a", "outcome": "started", "time": T}], interrupted=False)
    assert unsettled_creates(store) == ()
