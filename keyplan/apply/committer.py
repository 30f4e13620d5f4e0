"""Writing state as apply goes: every completed mutation is durable in the state backend before
its action counts as done, at a cost that does not grow with the number of keys.

A mutation names what it touched (one key record, or one target's prerequisites). It is
applied to the in-memory state under a lock and recorded as one journal line holding the new
value of what it touched. Appends are group-committed: every line waiting when an append starts
goes into it. Two ways to wait for durability:

- `commit()` returns once an append holding its line is durable (the committing thread becomes
  the appender if none is running);
- after `defer_durability()` (the walker), `commit()` returns at once and a flusher thread
  appends; `durability()` hands the calling thread a future that completes once everything it
  committed is durable. The walker frees the worker at once and starts the action's dependents
  only when that future completes, so a store 20 ms away costs an apply latency on each chain of
  steps, not throughput. A backend whose requests cost more than their latency (an object store:
  each request is signed, checksummed and billed) sets `StateBackend.journal_interval`: the
  flusher then starts at most one append per interval, so the same mutations travel in fewer,
  larger appends.

At the end of the apply `finish()` writes the whole state once, which drops the journal; a crash
before that leaves the journal, which the next read replays. A commit after `finish()` is
refused (`StateFinished`): a step abandoned in flight by a second interrupt may still complete
while the process ends, and its change must not reach a state whose lock is being released.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from keyplan.state.backend import JournalEntry
from keyplan.state.model import State
from keyplan.state.store import JournalLine, StateStore

T = TypeVar("T")


class StateFinished(RuntimeError):
    """A mutation committed after the apply's final state write."""


class StateCommitter:
    def __init__(self, backend: StateStore, state: State) -> None:
        self.backend = backend
        self.state = state
        self._cond = threading.Condition()
        self._pending: list[JournalLine] = []
        self._dirty = 0
        self._written = 0
        self._appending = False
        self.writes = 0  # journal appends and whole-state writes
        self._deferred = False
        self._flusher: threading.Thread | None = None
        self._closing = False
        self._finished = False
        self._failure: BaseException | None = None
        self._waiting: deque[tuple[int, Future[None]]] = deque()  # deferred commits not yet durable
        self._mine = threading.local()

    def defer_durability(self) -> None:
        """From now on `commit()` returns before its line is durable; a flusher thread appends,
        and `durability()` says when a thread's commits are durable."""
        with self._cond:
            if self._flusher is None:
                self._deferred = True
                self._flusher = threading.Thread(target=self._flush, name="keyplan-state-journal", daemon=True)
                self._flusher.start()

    def durability(self) -> Future[None] | None:
        """A future completing once every mutation this thread committed (deferred) is durable,
        failing if the append failed; None when there is nothing to wait for."""
        future: Future[None] | None = getattr(self._mine, "future", None)
        self._mine.future = None
        return future

    def commit(
        self, mutate: Callable[[State], None], *, key: str | None = None, prerequisites_of: str | None = None
    ) -> None:
        """Apply `mutate` and return once it is durable. Name the key address or the target whose
        prerequisites it changes; a mutation that names neither rewrites the whole state."""
        with self._cond:
            if self._finished:
                raise StateFinished("the apply's state was already written for the last time")
            mutate(self.state)
            self.state.serial += 1
            if key is None and prerequisites_of is None:
                self._write_whole()
                return
            record = self.state.keys.get(key) if key is not None else None
            entry = JournalEntry(
                serial=self.state.serial,
                lineage=self.state.lineage,
                keys={key: record} if key is not None else {},
                prerequisites={prerequisites_of: dict(self.state.prerequisites.get(prerequisites_of, {}))}
                if prerequisites_of is not None
                else {},
            )
            # Serialised now, under the lock: the append happens outside it while other threads
            # mutate the same records (a line costs one serialisation, not a deep copy and one).
            self._pending.append(JournalLine(entry.serial, entry.model_dump_json()))
            self._dirty += 1
            mine = self._dirty
            if self._deferred:
                future: Future[None] = Future()
                if self._failure is not None:
                    future.set_exception(self._failure)
                else:
                    self._waiting.append((mine, future))
                    self._cond.notify_all()
                self._mine.future = future
                return
            while self._written < mine:
                if self._appending:
                    self._cond.wait()
                    continue
                self._appending = True
                batch, upto = self._pending, self._dirty
                self._pending = []
                self._cond.release()
                try:
                    self.backend.append_journal_lines(batch)
                finally:
                    self._cond.acquire()
                    self._appending = False
                    self._cond.notify_all()
                self._written = max(self._written, upto)
                self.writes += 1

    def _flush(self) -> None:
        """The flusher of deferred commits: append everything waiting, one append at a time, at
        most one per the backend's `journal_interval`."""
        interval = self.backend.backend.journal_interval
        next_start = 0.0
        with self._cond:
            while True:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                # More lines join this append meanwhile; but when none came for a fifth of the
                # interval (the end of a walk, a quiet stretch), waiting longer only delays.
                waiting_for = len(self._pending)
                while not self._closing and (wait := next_start - time.monotonic()) > 0:
                    self._cond.wait(min(wait, interval / 5))
                    if len(self._pending) == waiting_for:
                        break
                    waiting_for = len(self._pending)
                next_start = time.monotonic() + interval
                self._appending = True
                batch, upto = self._pending, self._dirty
                self._pending = []
                self._cond.release()
                failure: BaseException | None = None
                try:
                    self.backend.append_journal_lines(batch)
                except BaseException as error:  # handed to every action waiting on this append
                    failure = error
                finally:
                    self._cond.acquire()
                    self._appending = False
                if failure is None:
                    self._written = max(self._written, upto)
                    self.writes += 1
                else:
                    self._failure = self._failure or failure
                self._settle(upto)
                self._cond.notify_all()

    def _settle(self, upto: int) -> None:
        while self._waiting and self._waiting[0][0] <= upto:
            _, future = self._waiting.popleft()
            if self._failure is not None:
                future.set_exception(self._failure)
            else:
                future.set_result(None)

    def finish(self) -> None:
        """Write the whole state once and fold the journal into it (nothing to do when the apply
        changed nothing: an untouched state, or no state at all, stays as it is)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            flusher = self._flusher
        if flusher is not None:
            flusher.join()
        with self._cond:
            while self._appending:
                self._cond.wait()
            self._finished = True
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
        self._settle(self._dirty)  # the whole state holds every deferred commit too

    def read(self, view: Callable[[State], T]) -> T:
        """A consistent look at the state as it is now (between mutations)."""
        with self._cond:
            return view(self.state)
