"""The audit trail's outcome entries: appended in the background, every outcome waiting when an
append starts going into it, each recorded once in a valid chain."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from keyplan.apply.audit import AuditLog, read_audit, verify_chain
from keyplan.plan.model import CreateKey, CreateKeyArgs
from keyplan.state.backend import AuditHead
from keyplan.state.local import LocalBackend


class SlowCountingBackend(LocalBackend):
    """The local backend, counting its audit appends; each append takes a while, so outcomes
    arrive while one is under way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends: list[int] = []
        self.release = threading.Event()

    def append_audit(self, make_entries: Callable[[AuditHead | None], Sequence[bytes]]) -> AuditHead:
        def counted(head: AuditHead | None) -> Sequence[bytes]:
            entries = make_entries(head)
            self.appends.append(len(entries))
            return entries

        self.release.wait(timeout=10)
        return super().append_audit(counted)


def action(index: int) -> CreateKey:
    return CreateKey(id=f"create_key k{index} @ cloud.main", address=f"key.k{index}", target="cloud.main", args=CreateKeyArgs())


def test_outcomes_waiting_for_an_append_share_the_next_one(tmp_path: Path) -> None:
    backend = SlowCountingBackend(tmp_path / "keyplan.kpstate.json")
    audit = AuditLog(backend, "digest")
    for index in range(50):
        audit.mutated(action(index), "created", f"remote-{index}")
    backend.release.set()
    audit.flush()

    entries = read_audit(backend.read_audit())
    assert [e["address"] for e in entries] == [f"key.k{index}" for index in range(50)]
    assert {e["outcome"] for e in entries} == {"ok"}
    assert verify_chain(backend.read_audit()) == (50, [])
    assert sum(backend.appends) == 50
    assert len(backend.appends) <= 2, backend.appends  # the first outcome's append, then every one waiting


def test_outcomes_after_a_flush_are_appended_by_a_new_background_append(tmp_path: Path) -> None:
    backend = SlowCountingBackend(tmp_path / "keyplan.kpstate.json")
    backend.release.set()
    audit = AuditLog(backend, "digest")
    audit.started(action(1))
    audit.mutated(action(1), "created", "remote-1")
    audit.flush()
    audit.mutated(action(2), "created", "remote-2")
    audit.flush()
    entries = read_audit(backend.read_audit())
    assert [(e["address"], e["outcome"]) for e in entries] == [("key.k1", "started"), ("key.k1", "ok"), ("key.k2", "ok")]
    assert verify_chain(backend.read_audit()) == (3, [])
