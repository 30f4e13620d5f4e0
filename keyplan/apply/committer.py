"""Writing state as apply goes: every completed mutation is on disk before its action counts
as done.

Writes are group-committed: a mutation is applied to the in-memory state under a lock, then
its thread waits until a write that includes it has finished. If no write is running, that
thread writes; mutations that complete meanwhile ride along with the next write. So state is
never behind a finished remote call, yet concurrent actions share writes instead of each
rewriting the whole file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from keyplan.state.local import LocalBackend, serialize_state, write_atomically
from keyplan.state.model import State


class StateCommitter:
    def __init__(self, backend: LocalBackend, state: State) -> None:
        self.backend = backend
        self.state = state
        self._cond = threading.Condition()
        self._dirty = 0
        self._written = 0
        self._writing = False
        self.writes = 0

    def commit(self, mutate: Callable[[State], None]) -> None:
        with self._cond:
            mutate(self.state)
            self._dirty += 1
            mine = self._dirty
            while self._written < mine:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                upto = self._dirty
                self.state.serial += 1
                data = serialize_state(self.state)
                self._cond.release()
                try:
                    write_atomically(self.backend.path, data)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
                self._written = upto
                self.writes += 1

    def read(self, view: Callable[[State], object]) -> object:
        with self._cond:
            return view(self.state)
