"""Writing state as apply goes: every completed mutation is on disk before its action counts
as done, at a cost that does not grow with the number of keys.

A mutation names what it touched (one key record, or one target's prerequisites). It is
applied to the in-memory state under a lock and recorded as one journal line holding the new
value of what it touched; its thread then waits until a journal append that includes the line
has been fsynced. Appends are group-committed: if none is running, that thread appends every
waiting line at once. At the end of the apply `finish()` writes the whole state once and removes
the journal; a crash before that leaves the journal, which the next read replays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from keyplan.state.backend import JournalEntry
from keyplan.state.model import State
from keyplan.state.store import StateStore

T = TypeVar("T")


class StateCommitter:
    def __init__(self, backend: StateStore, state: State) -> None:
        self.backend = backend
        self.state = state
        self._cond = threading.Condition()
        self._pending: list[JournalEntry] = []
        self._dirty = 0
        self._written = 0
        self._appending = False
        self.writes = 0  # journal appends and whole-state writes

    def commit(
        self, mutate: Callable[[State], None], *, key: str | None = None, prerequisites_of: str | None = None
    ) -> None:
        """Apply `mutate` and return once it is durable. Name the key address or the target whose
        prerequisites it changes; a mutation that names neither rewrites the whole state."""
        with self._cond:
            mutate(self.state)
            self.state.serial += 1
            if key is None and prerequisites_of is None:
                self._write_whole()
                return
            record = self.state.keys.get(key) if key is not None else None
            entry = JournalEntry(
                serial=self.state.serial,
                lineage=self.state.lineage,
                # copies: the append happens outside the lock while other threads mutate
                keys={key: record.model_copy(deep=True) if record is not None else None} if key is not None else {},
                prerequisites={prerequisites_of: dict(self.state.prerequisites.get(prerequisites_of, {}))}
                if prerequisites_of is not None
                else {},
            )
            self._pending.append(entry)
            self._dirty += 1
            mine = self._dirty
            while self._written < mine:
                if self._appending:
                    self._cond.wait()
                    continue
                self._appending = True
                batch, upto = self._pending, self._dirty
                self._pending = []
                self._cond.release()
                try:
                    self.backend.append_journal(batch)
                finally:
                    self._cond.acquire()
                    self._appending = False
                    self._cond.notify_all()
                self._written = max(self._written, upto)
                self.writes += 1

    def finish(self) -> None:
        """Write the whole state once and fold the journal into it (nothing to do when the apply
        changed nothing: an untouched state, or no state at all, stays as it is)."""
        with self._cond:
            while self._appending:
                self._cond.wait()
            if self._dirty or self.backend.has_journal:
                self._write_whole()

    def _write_whole(self) -> None:
        # Called with the lock held and no append running: the state in memory includes every
        # journalled mutation, so the whole-state write supersedes the journal.
        while self._appending:
            self._cond.wait()
        self.backend.write_current(self.state)
        self._pending = []
        self._written = self._dirty
        self.writes += 1

    def read(self, view: Callable[[State], T]) -> T:
        """A consistent look at the state as it is now (between mutations)."""
        with self._cond:
            return view(self.state)
