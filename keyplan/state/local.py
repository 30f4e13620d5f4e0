"""The local state backend: a JSON file written atomically, its previous copy kept as a backup,
and an exclusive lock file that says who holds it.

Writes go to a temporary file in the same directory, are fsynced, then renamed over the state,
so a crash leaves either the old or the new state, never half of one. The copy being replaced
is kept as `<path>.backup`. The lock is `<path>.lock`, created with O_EXCL; it records an id,
the operation, user, host, pid and time so a held lock can be explained and, if its holder is
gone, removed with `keyplan force-unlock ID`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from keyplan.crypto.fingerprint import is_current_fingerprint
from keyplan.diagnostics import DiagnosticsError
from keyplan.files import BACKUP_SUFFIX, write_atomically
from keyplan.provider import PrerequisiteRecord
from keyplan.state.model import FORMAT_VERSION, KeyRecord, State
from keyplan.state.upgrade import upgrade_state


class LockInfo(BaseModel):
    id: str
    operation: str
    who: str
    host: str
    pid: int
    created: datetime

    def describe(self) -> str:
        return (
            f"ID:        {self.id}\n"
            f"Operation: {self.operation}\n"
            f"Who:       {self.who}@{self.host} (pid {self.pid})\n"
            f"Since:     {self.created.isoformat(timespec='seconds')}"
        )


def serialize_state(state: State) -> bytes:
    # pydantic's own serializer is several times faster than model_dump + json.dumps, which
    # matters because apply rewrites the whole file; keys are sorted so files diff well.
    ordered = state.model_copy(
        update={"keys": dict(sorted(state.keys.items())), "prerequisites": dict(sorted(state.prerequisites.items()))}
    )
    return (ordered.model_dump_json(indent=2) + "\n").encode()


def parse_state(data: bytes, origin: str) -> State:
    """Read, upgrade and validate a state document; corrupt input is a user error."""
    try:
        raw = json.loads(data)
    except RecursionError:
        raise DiagnosticsError.single(
            "State file is nested too deeply",
            f"{origin} nests arrays or objects deeper than any keyplan state, so it is not one or it was damaged. "
            f"Restore it from {origin}.backup.",
        ) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a number too long to read
        raise DiagnosticsError.single(
            "State file is not valid JSON",
            f"{origin} could not be read ({exc}). It may have been truncated or edited by hand. "
            f"Restore it from {origin}.backup (the copy before the last write) or from your "
            "state history, then run the command again.",
        ) from None
    if not isinstance(raw, dict):
        raise DiagnosticsError.single(
            "State file is not a keyplan state",
            f"{origin} holds JSON but not a state object. Restore it from {origin}.backup.",
        )
    raw = upgrade_state(raw, origin)
    try:
        return State.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise DiagnosticsError.single(
            "State file is corrupt",
            f"{origin} does not match the state format ({problems}). Restore it from {origin}.backup "
            "or from your state history; do not edit state by hand, use `keyplan state` commands.",
        ) from None


class JournalEntry(BaseModel):
    """One group of mutations made during an apply: the new value of every key record and
    prerequisite it touched (None: removed). Applied in order on top of the state file."""

    serial: int
    lineage: str
    keys: dict[str, KeyRecord | None] = {}
    prerequisites: dict[str, dict[str, PrerequisiteRecord]] = {}


class LocalBackend:
    """The state file, plus `<path>.journal` while an apply runs: each completed mutation is an
    appended, fsynced line (cost independent of the number of keys), and the apply ends by
    writing the whole state once and removing the journal. Reading replays a journal left by an
    interrupted apply, so nothing that finished is lost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.journal_path = path.with_name(path.name + ".journal")
        self._write_lock = threading.Lock()

    def read(self) -> State | None:
        try:
            data = self.path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            data = None
        except OSError as exc:
            raise DiagnosticsError.single(
                "Cannot read the state file",
                f"{self.path} cannot be read ({exc.strerror}). "
                + ("It is a directory: set the state path to a file name, like "
                   '`state "local" { path = "keyplan.kpstate.json" }`.' if self.path.is_dir()
                   else "Check its permissions."),
            ) from None
        state = parse_state(data, str(self.path)) if data is not None else None
        return self._replay(state)

    def write(self, state: State) -> None:
        """Persist `state` with the next serial; the caller holds the state lock."""
        with self._write_lock:
            state.serial += 1
            self.write_current(state)

    def write_current(self, state: State) -> None:
        """Write `state` as it is (serial included) and fold the journal into it."""
        upgraded = self._upgraded_previous()
        if upgraded is not None:
            # The copy being replaced held values no copy may keep: the backup is its upgraded form.
            write_atomically(self.path.with_name(self.path.name + BACKUP_SUFFIX), upgraded)
        write_atomically(self.path, serialize_state(state), keep_backup=upgraded is None)
        self.journal_path.unlink(missing_ok=True)

    def _upgraded_previous(self) -> bytes | None:
        """The state file being replaced, in the current format, when it is in an older one: a
        format upgrade may drop values no copy should keep (format 1 fingerprints), so the
        backup is the upgraded copy rather than the old bytes."""
        try:
            previous = self.path.read_bytes()
            raw = json.loads(previous)
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("format_version") == FORMAT_VERSION:
            return None
        try:
            return serialize_state(parse_state(previous, str(self.path)))
        except DiagnosticsError:
            return None

    def append_journal(self, entries: list[JournalEntry]) -> None:
        data = "".join(entry.model_dump_json() + "\n" for entry in entries).encode()
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _replay(self, state: State | None) -> State | None:
        try:
            lines = self.journal_path.read_bytes().splitlines()
        except FileNotFoundError:
            return state
        for number, line in enumerate(lines, start=1):
            try:
                entry = JournalEntry.model_validate_json(line)
            except ValidationError:
                if number == len(lines):
                    break  # cut short by a crash before its fsync: that mutation never counted as done
                raise DiagnosticsError.single(
                    "State journal is corrupt",
                    f"Line {number} of {self.journal_path} cannot be read. The journal holds what an interrupted "
                    f"apply finished after {self.path} was last written. Move it aside to continue from the state "
                    "file alone (the next plan re-discovers remote keys through their keyplan tags).",
                ) from None
            if state is None:
                state = State(lineage=entry.lineage, serial=0)
            if entry.lineage != state.lineage:
                raise DiagnosticsError.single(
                    "State journal belongs to another state",
                    f"{self.journal_path} was written for lineage {entry.lineage}, but {self.path} has lineage "
                    f"{state.lineage}. Move the journal aside if the state file was replaced on purpose.",
                )
            if entry.serial <= state.serial:
                continue  # already folded into the state file
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

    # -- locking -------------------------------------------------------------------------------

    def current_lock(self) -> LockInfo | None:
        try:
            return LockInfo.model_validate_json(self.lock_path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError:
            return LockInfo(
                id="unreadable", operation="unknown", who="unknown", host="unknown", pid=0, created=datetime.now(UTC)
            )

    def acquire(self, operation: str, timeout: float = 0.0) -> LockInfo:
        info = LockInfo(
            id=str(uuid.uuid4()),
            operation=operation,
            who=_user(),
            host=socket.gethostname(),
            pid=os.getpid(),
            created=datetime.now(UTC),
        )
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cannot_lock(exc) from None
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if time.monotonic() >= deadline:
                    raise self._held_error(timeout) from None
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
                continue
            except OSError as exc:
                raise self._cannot_lock(exc) from None
            os.fchmod(fd, 0o600)  # it names who holds the state: private like the state itself
            with os.fdopen(fd, "w") as handle:
                handle.write(info.model_dump_json(indent=2))
            return info

    def _cannot_lock(self, exc: OSError) -> DiagnosticsError:
        return DiagnosticsError.single(
            "Cannot lock the state",
            f"{self.lock_path} cannot be created ({exc.strerror}), so the state cannot be locked or written. "
            "Nothing was changed. Make its directory writable, or point the state path elsewhere.",
        )

    def release(self, info: LockInfo) -> None:
        held = self.current_lock()
        if held is not None and held.id == info.id:
            self.lock_path.unlink(missing_ok=True)

    def force_unlock(self, lock_id: str) -> LockInfo:
        held = self.current_lock()
        if held is None:
            raise DiagnosticsError.single(
                "State is not locked", f"There is no lock on {self.path}; nothing to unlock."
            )
        if held.id != lock_id:
            raise DiagnosticsError.single(
                "Lock ID does not match",
                f"The lock on {self.path} has ID {held.id}, not {lock_id}:\n{held.describe()}\n"
                "Run `keyplan force-unlock` with the ID shown, and only if that operation is no longer running.",
            )
        self.lock_path.unlink(missing_ok=True)
        return held

    @contextmanager
    def locked(self, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
        info = self.acquire(operation, timeout)
        try:
            yield info
        finally:
            self.release(info)

    def _held_error(self, timeout: float) -> DiagnosticsError:
        held = self.current_lock()
        describe = held.describe() if held else "(the lock file disappeared while waiting)"
        alive = ""
        if held and held.host == socket.gethostname() and held.pid and not _pid_alive(held.pid):
            alive = " The process that holds it is no longer running on this host."
        waited = f" after waiting {timeout:g}s" if timeout else ""
        return DiagnosticsError.single(
            "Error acquiring the state lock",
            f"The state {self.path} is locked by another keyplan operation{waited}:\n{describe}\n"
            f"Wait for it to finish, or pass -lock-timeout=DURATION to wait longer.{alive} If you are sure "
            f"no operation is running, remove the lock with `keyplan force-unlock {held.id if held else 'ID'}`.",
        )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
