"""One workspace of one state backend, as the commands use it: read (parse, upgrade, replay the
journal), write with the next serial under a compare-and-swap, journal appends during apply,
and the lock (waiting up to `-lock-timeout`, explaining who holds it, force-unlock).

Backends (`keyplan.state.backend`) only move opaque documents; everything about the state
format, the journal's meaning and the messages a refused user reads is here, once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from pydantic import ValidationError

from keyplan.crypto.fingerprint import is_current_fingerprint
from keyplan.diagnostics import DiagnosticsError
from keyplan.state.backend import (
    DEFAULT_WORKSPACE,
    JournalEntry,
    LockInfo,
    StateBackend,
    StateError,
    StateErrorKind,
)
from keyplan.state.local import parse_state, serialize_state
from keyplan.state.model import State

log = logging.getLogger("keyplan.state")


class JournalLine(NamedTuple):
    """One journal entry serialised (`JournalEntry.model_dump_json()`), and its serial."""

    serial: int
    text: str


class StateStore:
    """The state of `workspace` in `backend`. Remembers the version it last read or wrote, so
    every write is a compare-and-swap against what this command saw."""

    def __init__(self, backend: StateBackend, workspace: str = DEFAULT_WORKSPACE) -> None:
        self.backend = backend
        self.workspace = workspace
        self.where = backend.describe(workspace)
        self._version: str | None = None
        self._read_once = False
        self.has_journal = False  # the last read replayed a journal an interrupted apply left
        self.document_found = False  # the last read found a state document (not only a journal)
        # Without a document, whether the journal starts from an empty state (an interrupted first
        # apply: it holds the whole state) rather than from a document that is now gone.
        self.journal_is_whole = False
        self._sequence = 0
        self._lock = threading.Lock()

    # -- reading and writing ------------------------------------------------------------------------

    def read(self) -> State | None:
        stored = self.backend.read(self.workspace)
        origin = stored.origin or self.where
        with self._lock:
            self._version = stored.version
            self._read_once = True
            self.has_journal = bool(stored.journal)
            self.document_found = stored.data is not None
            self.journal_is_whole = stored.data is None and _first_serial(stored.journal) == 1
        state = parse_state(stored.data, origin) if stored.data is not None else None
        return replay(state, stored.journal, origin)

    def write(self, state: State) -> None:
        """Persist `state` with the next serial; the caller holds the state lock."""
        state.serial += 1
        self.write_current(state)

    def write_current(self, state: State) -> None:
        """Write `state` as it is (serial included), superseding the journal."""
        with self._lock:
            if not self._read_once:
                self._version = self.backend.read(self.workspace).version
                self._read_once = True
            self._version = self.backend.write(self.workspace, serialize_state(state), self._version)
            self.has_journal = False

    def append_journal(self, entries: list[JournalEntry]) -> None:
        self.append_journal_lines([JournalLine(entry.serial, entry.model_dump_json()) for entry in entries])

    def append_journal_lines(self, lines: list[JournalLine]) -> None:
        """Append journal entries already serialised (durable on return)."""
        data = "".join(line.text + "\n" for line in lines).encode()
        with self._lock:
            self._sequence += 1
            sequence = lines[0].serial if lines else self._sequence
        self.backend.append_journal(self.workspace, sequence, data)
        self.has_journal = True

    # -- locking ------------------------------------------------------------------------------------

    def current_lock(self) -> LockInfo | None:
        return self.backend.lock_holder(self.workspace)

    def acquire(self, operation: str, timeout: float = 0.0) -> LockInfo:
        info = LockInfo.for_this_process(operation, self.workspace)
        deadline = time.monotonic() + max(timeout, 0.0)
        waited_for: str | None = None
        while True:
            holder = self.backend.try_lock(info)
            if holder is None:
                return info
            if time.monotonic() >= deadline:
                raise self._held_error(holder, timeout)
            if holder.id != waited_for:
                waited_for = holder.id
                log.debug(
                    "the state %s is locked by %s (%s@%s, pid %d); waiting for it up to %gs",
                    self.where, holder.id, holder.who, holder.host, holder.pid, timeout,
                )
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))

    def release(self, info: LockInfo) -> None:
        self.backend.unlock(self.workspace, info.id)

    @contextmanager
    def locked(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        info = self.acquire(operation, timeout)
        try:
            yield info
        except BaseException as failure:
            try:
                self.release(info)
            except StateError as cannot_release:
                # The store is gone (it is probably why the command failed): report both, the
                # command's failure first, and how to clear the lock once the store is back.
                if isinstance(failure, DiagnosticsError):
                    failure.diagnostics.extend(self._unreleased(info, cannot_release).diagnostics)
                else:
                    raise self._unreleased(info, cannot_release) from failure
            raise
        try:
            self.release(info)
        except StateError as cannot_release:
            raise self._unreleased(info, cannot_release) from None

    def _unreleased(self, info: LockInfo, error: StateError) -> DiagnosticsError:
        return DiagnosticsError.single(
            "The state lock could not be released",
            f"{error.summary}: {error.detail}\nThe lock {info.id} on {self.where} stays until it is removed: once the "
            f"store answers again, run `keyplan force-unlock {info.id}` (or let a session-bound lock lapse).",
        )

    def force_unlock(self, lock_id: str) -> LockInfo:
        held = self.current_lock()
        if held is None:
            raise DiagnosticsError.single(
                "State is not locked", f"There is no lock on {self.where}; nothing to unlock."
            )
        if held.id != lock_id:
            raise DiagnosticsError.single(
                "Lock ID does not match",
                f"The lock on {self.where} has ID {held.id}, not {lock_id}:\n{held.describe()}\n"
                "Run `keyplan force-unlock` with the ID shown, and only if that operation is no longer running.",
            )
        self.backend.unlock(self.workspace, lock_id)
        return held

    def _held_error(self, held: LockInfo, timeout: float) -> StateError:
        if not type(self.backend).locks_outlive_their_holder:
            # The store frees the lock when its holder ends, however it ends: a refusal means it runs.
            advice = (
                " The lock is released as soon as that process ends, even if it is killed. If it hangs, stop "
                f"it, or remove the lock with `keyplan force-unlock {held.id}`."
            )
        else:
            dead = held.host == socket.gethostname() and held.pid and not _pid_alive(held.pid)
            advice = (
                (" The process that holds it is no longer running on this host." if dead else "")
                + f" If you are sure no operation is running, remove the lock with `keyplan force-unlock {held.id}`."
            )
        waited = f" after waiting {timeout:g}s" if timeout else ""
        return StateError(
            StateErrorKind.LOCKED,
            "Error acquiring the state lock",
            f"The state {self.where} is locked by another keyplan operation{waited}:\n{held.describe()}\n"
            f"Wait for it to finish, or pass -lock-timeout=DURATION to wait longer.{advice}",
            holder=held,
        )


def replay(state: State | None, journal: tuple[bytes, ...], origin: str) -> State | None:
    """Apply journal groups in order on top of `state`. A torn last line (an append cut short by
    a crash, so never acknowledged) is ignored; entries the state already holds are skipped."""
    lines = [line for group in journal for line in group.splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            entry = JournalEntry.model_validate_json(line)
        except ValidationError:
            if number == len(lines):
                break  # cut short by a crash before it was durable: that mutation never counted as done
            raise DiagnosticsError.single(
                "State journal is corrupt",
                f"Entry {number} of the journal of {origin} cannot be read. The journal holds what an interrupted "
                f"apply finished after the state was last written. Move it aside to continue from the state "
                "alone (the next plan re-discovers remote keys through their keyplan tags).",
            ) from None
        if state is None:
            state = State(lineage=entry.lineage, serial=0)
        if entry.lineage != state.lineage:
            raise DiagnosticsError.single(
                "State journal belongs to another state",
                f"The journal of {origin} was written for lineage {entry.lineage}, but the state has lineage "
                f"{state.lineage}. Move the journal aside if the state was replaced on purpose.",
            )
        if entry.serial <= state.serial:
            continue  # already folded into the state document
        for address, record in entry.keys.items():
            if record is None:
                state.keys.pop(address, None)
            else:
                for material in record.materials:  # a journal left by an older keyplan: see upgrade.py
                    if material.fingerprint is not None and not is_current_fingerprint(material.fingerprint):
                        material.fingerprint = None
                state.keys[address] = record
        for target, records in entry.prerequisites.items():
            state.prerequisites.setdefault(target, {}).update(records)
        state.serial = entry.serial
    return state


def _first_serial(journal: tuple[bytes, ...]) -> int | None:
    """The serial of the journal's first entry (1 when its apply started from no state)."""
    for group in journal:
        for line in group.splitlines():
            if line.strip():
                try:
                    return JournalEntry.model_validate_json(line).serial
                except ValidationError:
                    return None
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
