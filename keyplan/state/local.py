"""The local state backend (`state "local"`, the default): a JSON file written atomically, its
previous copy kept as a backup, and a lock that dies with its process. It is a state-backend
plugin like any other (`keyplan.state.backend`); other workspaces live under
`keyplan.kpstate.d/<name>/`.

Writes go to a temporary file in the same directory, are fsynced, then renamed over the state,
so a crash leaves either the old or the new state, never half of one. The copy being replaced
is kept as `<path>.backup`.

The lock is an OS lock (`flock`, exclusive) on `<path>.lock`, held for as long as the command
runs; the file records the holder (id, operation, user, host, pid, time) for the message a
refused command shows. The kernel releases the lock when its process ends however it ends, so
after a crash or a SIGKILL the next command simply takes it: a lock file whose OS lock nobody
holds is a leftover and counts as no lock. (The `filelock` library would do the locking, but it
truncates the lock file each time it opens it, which would erase the holder's record.)
Releasing removes the file while still holding the lock; a command that opened the old file
meanwhile sees that it is no longer the one at the path and opens the new one. `force-unlock`
removes the file, so the next command locks a new one even while a stuck holder lives on.

Over 500 lines, on purpose: the state, its journal, the lock and the audit trail of one
directory share its naming, permissions and crash rules; apart, each part would restate them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import stat
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationError

from keyplan.diagnostics import DiagnosticsError
from keyplan.files import BACKUP_SUFFIX, read_file, write_atomically
from keyplan.state.backend import (
    DEFAULT_WORKSPACE,
    AuditHead,
    AuditTrail,
    BackendContext,
    LockInfo,
    PreviousCopy,
    StateBackend,
    StateBackendPlugin,
    StateBackendSettings,
    StateError,
    StateErrorKind,
    StoredState,
    audit_entry_hash,
    parse_audit_head,
    valid_workspace_name,
)
from keyplan.state.model import FORMAT_VERSION, State
from keyplan.state.upgrade import upgrade_state

if TYPE_CHECKING:
    from keyplan.state.store import StateStore

DEFAULT_STATE_PATH = "keyplan.kpstate.json"
DEFAULT_WORKSPACE_DIR = "keyplan.kpstate.d"
AUDIT_PATH = ".keyplan/audit.jsonl"  # relative to the configuration directory


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


class LocalSettings(StateBackendSettings):
    """The attributes of `state "local" { ... }`."""

    path: str = Field(default=DEFAULT_STATE_PATH, description="The state file of the default workspace, relative to the configuration directory.")
    workspace_dir: str = Field(
        default=DEFAULT_WORKSPACE_DIR,
        description="Where other workspaces keep their state files: <workspace_dir>/<name>/<file name of path>.",
    )


class LocalBackend(StateBackend):
    """The state file, plus `<path>.journal` while an apply runs: each completed mutation is an
    appended, fsynced line (cost independent of the number of keys), and the apply ends by
    writing the whole state once and removing the journal. The version named in a
    compare-and-swap is a digest of the file's content; the lock is an OS lock on `<path>.lock`."""

    locks_outlive_their_holder = False  # the kernel releases a dead process's lock

    def __init__(self, path: Path, workspace_dir: Path | None = None, audit_path: Path | None = None) -> None:
        self.path = path
        self.workspace_dir = workspace_dir if workspace_dir is not None else path.with_name(DEFAULT_WORKSPACE_DIR)
        self.audit_path = audit_path if audit_path is not None else path.parent / AUDIT_PATH
        self._write_lock = threading.Lock()
        self._locks_lock = threading.Lock()
        self._held: dict[str, tuple[int, str]] = {}  # workspace -> (locked descriptor, lock id)
        self._audit_lock = threading.Lock()
        # (inode, size) of the trail right after this backend's last append, and the head it wrote
        self._audit_written: tuple[tuple[int, int], AuditHead] | None = None

    def store(self, workspace: str = DEFAULT_WORKSPACE) -> StateStore:
        """One workspace of this backend, as commands use it."""
        from keyplan.state.store import StateStore

        return StateStore(self, workspace)

    # -- where things are ------------------------------------------------------------------------

    def state_path(self, workspace: str = DEFAULT_WORKSPACE) -> Path:
        return self.path if workspace == DEFAULT_WORKSPACE else self.workspace_dir / workspace / self.path.name

    def journal_path(self, workspace: str = DEFAULT_WORKSPACE) -> Path:
        path = self.state_path(workspace)
        return path.with_name(path.name + ".journal")

    def lock_path(self, workspace: str = DEFAULT_WORKSPACE) -> Path:
        path = self.state_path(workspace)
        return path.with_name(path.name + ".lock")

    def describe(self, workspace: str) -> str:
        return str(self.state_path(workspace))

    def backup_path(self, workspace: str = DEFAULT_WORKSPACE) -> Path:
        path = self.state_path(workspace)
        return path.with_name(path.name + BACKUP_SUFFIX)

    def previous_copy(self, workspace: str) -> PreviousCopy | None:
        backup = self.backup_path(workspace)
        if not backup.is_file():
            return None
        target = self.state_path(workspace)
        return PreviousCopy(str(backup), f"cp -p {shlex.quote(str(backup))} {shlex.quote(str(target))}")

    def workspaces(self) -> list[str]:
        found = {DEFAULT_WORKSPACE}
        if self.workspace_dir.is_dir():
            for entry in self.workspace_dir.iterdir():
                if entry.is_dir() and valid_workspace_name(entry.name):
                    found.add(entry.name)
        return sorted(found)

    # -- documents ---------------------------------------------------------------------------------

    def read(self, workspace: str) -> StoredState:
        path = self.state_path(workspace)
        if path.exists() and not path.is_file() and not path.is_dir():  # a pipe would hang, a device fill the memory
            raise DiagnosticsError.single(
                "Cannot read the state file",
                f"{path} is not a regular file (a pipe or a device). Set the state path to a file name, like "
                '`state "local" { path = "keyplan.kpstate.json" }`.',
            )
        try:
            data: bytes | None = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            data = None
        except OSError as exc:
            raise DiagnosticsError.single(
                "Cannot read the state file",
                f"{path} cannot be read ({exc.strerror}). "
                + ("It is a directory: set the state path to a file name, like "
                   '`state "local" { path = "keyplan.kpstate.json" }`.' if path.is_dir()
                   else "Check its permissions."),
            ) from None
        journal_path = self.journal_path(workspace)
        try:
            journal: tuple[bytes, ...] = (read_file(journal_path),)
        except (FileNotFoundError, NotADirectoryError):
            journal = ()
        except OSError as exc:
            raise DiagnosticsError.single(
                "Cannot read the state journal",
                f"{journal_path} cannot be read ({exc.strerror}). It holds the changes of an apply that had not "
                "finished writing the state: nothing was changed now. Make it a readable file again (or move it "
                "aside if it is not keyplan's), then run the command again.",
            ) from None
        return StoredState(data=data, version=_digest(data), journal=journal, origin=str(path))

    def write(self, workspace: str, data: bytes, expected_version: str | None) -> str:
        path = self.state_path(workspace)
        with self._write_lock:
            try:
                previous: bytes | None = path.read_bytes()
            except FileNotFoundError:
                previous = None
            if _digest(previous) != expected_version:
                raise _conflict(str(path))
            upgraded = _upgraded(previous, str(path))
            if upgraded is not None:
                # The copy being replaced held values no copy may keep: the backup is its upgraded form.
                write_atomically(path.with_name(path.name + BACKUP_SUFFIX), upgraded)
            write_atomically(path, data, keep_backup=upgraded is None)
            self.journal_path(workspace).unlink(missing_ok=True)
        version = _digest(data)
        assert version is not None
        return version

    def append_journal(self, workspace: str, sequence: int, data: bytes) -> None:
        path = self.journal_path(workspace)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # a workspace's first write: its directory is made then, not per line
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete_workspace(self, workspace: str) -> None:
        path = self.state_path(workspace)
        for leftover in (path, self.journal_path(workspace), path.with_name(path.name + ".backup"), self.lock_path(workspace)):
            leftover.unlink(missing_ok=True)
        if workspace != DEFAULT_WORKSPACE:
            with contextlib.suppress(OSError):
                path.parent.rmdir()

    # -- locking -------------------------------------------------------------------------------

    def lock_holder(self, workspace: str) -> LockInfo | None:
        """Who holds the lock, or None when no process does (a file left by a dead one is no lock)."""
        path = self.lock_path(workspace)
        with self._locks_lock:
            held = self._held.get(workspace)
            if held is not None:
                return _recorded_holder(held[0], workspace)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            return _unreadable_holder(workspace)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _recorded_holder(fd, workspace)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        path = self.lock_path(info.workspace)
        with self._locks_lock:
            held = self._held.get(info.workspace)
            if held is not None:  # this backend already holds it (another command of this process)
                return _recorded_holder(held[0], info.workspace)
        holder: LockInfo | None = None
        for _ in range(_LOCK_ATTEMPTS):
            fd = _open_lock_file(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Held, or looked at for an instant by `lock_holder`: ask again shortly before saying who.
                holder = _recorded_holder(fd, info.workspace)
                os.close(fd)
                time.sleep(_LOCK_RETRY_SECONDS)
                continue
            if not _is_at(fd, path):  # released (and removed) between our open and our lock
                os.close(fd)
                continue
            _record(fd, info)
            with self._locks_lock:
                self._held[info.workspace] = (fd, info.id)
            return None
        return holder or _unreadable_holder(info.workspace)

    def unlock(self, workspace: str, lock_id: str) -> None:
        path = self.lock_path(workspace)
        with self._locks_lock:
            held = self._held.get(workspace)
            if held is not None and held[1] == lock_id:
                del self._held[workspace]
                fd = held[0]
                try:
                    if _is_at(fd, path):  # not replaced by a force-unlock and someone else's lock
                        path.unlink(missing_ok=True)
                finally:
                    os.close(fd)  # the OS lock goes with the descriptor
                return
        holder = self.lock_holder(workspace)
        if holder is not None and holder.id == lock_id:
            # force-unlock of another process's lock: it keeps its OS lock on a file no command opens again
            path.unlink(missing_ok=True)


    # -- the audit trail: one JSON line per entry, the head record beside it -------------------------

    @property
    def audit_head_path(self) -> Path:
        return self.audit_path.with_name(self.audit_path.name + ".head")

    def prepare_audit(self) -> None:
        try:
            self.audit_path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.audit_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as exc:
            raise DiagnosticsError.single(
                "Cannot write the audit log",
                f"{self.audit_path} cannot be written ({exc.strerror}). Every remote change an apply makes is "
                "recorded there, so nothing was changed. Make it (and its directory) writable, then apply again.",
            ) from None

    def read_audit(self) -> AuditTrail:
        try:
            entries = tuple(line for line in self.audit_path.read_bytes().split(b"\n") if line.strip())
        except FileNotFoundError:
            entries = ()
        try:
            head: bytes | None = self.audit_head_path.read_bytes()
        except FileNotFoundError:
            head = None
        return AuditTrail(entries=entries, head=head, origin=str(self.audit_path))

    def append_audit(self, make_entries: Callable[[AuditHead | None], Sequence[bytes]]) -> AuditHead:
        # Private like the state: the trail reveals the key inventory and who changed it.
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            fd = os.open(self.audit_path, flags, 0o600)
        except OSError:  # made again, or refused with the reason, as before the first append
            self.prepare_audit()
            fd = os.open(self.audit_path, flags, 0o600)
        try:
            with self._audit_lock:
                fcntl.flock(fd, fcntl.LOCK_EX)  # other keyplan processes append to the same chain
                os.fchmod(fd, 0o600)
                stat = os.fstat(fd)
                last = self._audit_written
                # The head this backend wrote last, while the trail is as it left it (nobody appended
                # since); otherwise the head record is read again.
                if last is not None and last[0] == (stat.st_ino, stat.st_size):
                    head: AuditHead | None = last[1]
                else:
                    head = self._audit_head(fd)
                entries = [entry.rstrip(b"\n") for entry in make_entries(head)]
                appended = b"".join(entry + b"\n" for entry in entries)
                view = memoryview(appended)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                new_head = AuditHead(seq=(head.seq if head else 0) + len(entries), hash=audit_entry_hash(entries[-1]))
                write_atomically(self.audit_head_path, new_head.encode())
                self._audit_written = ((stat.st_ino, stat.st_size + len(appended)), new_head)
                return new_head
        finally:
            os.close(fd)  # releases the flock

    def _audit_head(self, fd: int) -> AuditHead | None:
        """The head record; for a trail written before head records existed, its last line."""
        try:
            return parse_audit_head(self.audit_head_path.read_bytes(), str(self.audit_path))
        except FileNotFoundError:
            pass
        size = os.fstat(fd).st_size
        tail = os.pread(fd, min(size, 65536), max(0, size - 65536))
        lines = [line for line in tail.splitlines() if line.strip()]
        if not lines:
            return None
        try:
            seq = int(json.loads(lines[-1]).get("seq", 0))
        except (ValueError, AttributeError):
            seq = 0
        return AuditHead(seq=seq, hash=audit_entry_hash(lines[-1]))


class LocalPlugin(StateBackendPlugin[LocalSettings]):
    kind = "local"
    settings_model = LocalSettings

    def open(self, settings: LocalSettings, context: BackendContext) -> LocalBackend:
        return LocalBackend(
            context.working_dir / settings.path,
            context.working_dir / settings.workspace_dir,
            context.working_dir / AUDIT_PATH,
        )


PLUGIN = LocalPlugin()


def _upgraded(previous: bytes | None, origin: str) -> bytes | None:
    """The state file being replaced, in the current format, when it is in an older one: a
    format upgrade may drop values no copy should keep (format 1 fingerprints), so the
    backup is the upgraded copy rather than the old bytes."""
    if previous is None:
        return None
    try:
        raw = json.loads(previous)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("format_version") == FORMAT_VERSION:
        return None
    try:
        return serialize_state(parse_state(previous, origin))
    except DiagnosticsError:
        return None


_LOCK_ATTEMPTS = 5
_LOCK_RETRY_SECONDS = 0.02


def _open_lock_file(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _cannot_lock(path, exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _cannot_lock(path, "it is not a regular file")
    return fd


def _is_at(fd: int, path: Path) -> bool:
    """The locked descriptor is still the file at `path` (not one removed and created again)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _record(fd: int, info: LockInfo) -> None:
    """Write who holds the lock into the lock file (private like the state it names)."""
    data = info.model_dump_json(indent=2).encode()
    os.fchmod(fd, 0o600)
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _recorded_holder(fd: int, workspace: str) -> LockInfo | None:
    """The holder recorded in an open lock file; None while the holder has not written it yet."""
    data = os.pread(fd, 64 * 1024, 0)
    if not data.strip():
        return None
    try:
        return LockInfo.model_validate_json(data)
    except ValidationError:
        return _unreadable_holder(workspace)


def _unreadable_holder(workspace: str) -> LockInfo:
    return LockInfo(
        id="unreadable", operation="unknown", who="unknown", host="unknown", pid=0,
        created=datetime.now(UTC), workspace=workspace,
    )


def _cannot_lock(path: Path, reason: str) -> DiagnosticsError:
    return DiagnosticsError.single(
        "Cannot lock the state",
        f"{path} cannot be created ({reason}), so the state cannot be locked or written. "
        "Nothing was changed. Make its directory writable, or point the state path elsewhere.",
    )


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _conflict(origin: str) -> StateError:
    return StateError(
        StateErrorKind.CONFLICT,
        "The state changed while this command ran",
        f"{origin} was written by someone else since it was read, so this write was refused to keep their "
        "changes. Run `keyplan plan` again to see the current state.",
    )
