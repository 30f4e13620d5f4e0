"""The state-backend contract: where a team keeps its state, and how it is locked.

A backend plugin (found through the `keyplan.state_backends` entry-point group, see
`keyplan.state.registry`) has a static half, `StateBackendPlugin` (its settings model, the
attributes of `keyplan { state "KIND" { ... } }`; no network), and a runtime half,
`StateBackend`, opened per run. keyplan's own local file is one such plugin; others live in
their own packages and keep state in systems a team already runs.

A backend stores opaque documents: it never parses state. Per workspace it keeps

- the **state document**, replaced whole by `write` with a compare-and-swap: the caller names
  the version it read (the store's own token: an ETag, a row version, the file's serial) and the
  write fails with `StateErrorKind.CONFLICT` if the stored copy is not that one any more;
- the **journal**: groups of mutations an apply has finished since the state document was last
  written, appended durably (`append_journal` returns once they would survive the process being
  killed) and dropped by the next `write`, which supersedes them;
- the **lock**: one holder at a time, with the holder's `LockInfo` (id, operation, who, where,
  since when) readable by everyone so a refused user can be told who holds it.

Beside the state of all its workspaces, a backend keeps the **audit trail** (`keyplan.apply.audit`):
entries numbered 1, 2, 3, ... each holding the hash of the one before, and a head record (the
last entry's number and hash) so entries cut off the end are noticed. `append_audit` adds one
entry atomically with respect to every other writer, so the chain never forks; `read_audit`
returns the entries as stored, and the core checks the chain.

The core (`keyplan.state.store.StateStore`) parses, upgrades and replays; waits for locks;
and turns these operations into the commands' behaviour. Backends report failures as
`StateError` with a `StateErrorKind`, a diagnostic the user can act on (never a traceback,
never a credential in the text).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationInfo, model_validator

from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.provider import PrerequisiteRecord
from keyplan.state.model import KeyRecord

DEFAULT_WORKSPACE = "default"


class LockInfo(BaseModel):
    """Who holds a workspace's lock: shown to anyone refused by it, and the id force-unlock needs."""

    id: str
    operation: str
    who: str
    host: str
    pid: int
    created: datetime
    workspace: str = DEFAULT_WORKSPACE

    @classmethod
    def for_this_process(cls, operation: str, workspace: str = DEFAULT_WORKSPACE) -> LockInfo:
        return cls(
            id=str(uuid.uuid4()),
            operation=operation,
            who=_user(),
            host=socket.gethostname(),
            pid=os.getpid(),
            created=datetime.now(UTC),
            workspace=workspace,
        )

    def describe(self) -> str:
        return (
            f"ID:        {self.id}\n"
            f"Operation: {self.operation}\n"
            f"Who:       {self.who}@{self.host} (pid {self.pid})\n"
            f"Since:     {self.created.isoformat(timespec='seconds')}"
        )


class JournalEntry(BaseModel):
    """One group of mutations made during an apply: the new value of every key record and
    prerequisite it touched (None: removed). Applied in order on top of the state document."""

    serial: int
    lineage: str
    keys: dict[str, KeyRecord | None] = {}
    prerequisites: dict[str, dict[str, PrerequisiteRecord]] = {}


AUDIT_GENESIS = "sha256:" + "0" * 64  # the `prev` of the first audit entry


class AuditHead(BaseModel):
    """The head record of an audit trail: the number and hash of its last entry."""

    seq: int
    hash: str

    def encode(self) -> bytes:
        return json.dumps({"seq": self.seq, "hash": self.hash}).encode() + b"\n"


def audit_entry_hash(entry: bytes) -> str:
    """What the next entry's `prev` holds: the SHA-256 of this entry's bytes (no line end)."""
    return "sha256:" + hashlib.sha256(entry.rstrip(b"\n")).hexdigest()


def parse_audit_head(data: bytes | None, origin: str) -> AuditHead | None:
    """The head record a backend stored; a damaged one stops appends (`keyplan log -verify` says more)."""
    if data is None:
        return None
    try:
        return AuditHead.model_validate_json(data)
    except ValueError:
        raise StateError(
            StateErrorKind.FATAL,
            "The audit trail's head record is damaged",
            f"The head record of the audit trail in {origin} cannot be read, so no entry can be chained after it. "
            "Run `keyplan log -verify` to see what was changed, keep the trail as evidence, and restore it.",
        ) from None


@dataclass(frozen=True)
class AuditTrail:
    """An audit trail as stored: its entries in sequence order (as found, tampering included)
    and its head record (None: no head record stored)."""

    entries: tuple[bytes, ...]
    head: bytes | None
    origin: str


class StateErrorKind(StrEnum):
    UNREACHABLE = "unreachable"  # endpoint or server not answering, connection dropped
    AUTH = "auth"  # wrong or missing credentials, access denied
    NOT_FOUND = "not_found"  # the bucket, database or schema does not exist
    LOCKED = "locked"  # someone else holds the lock (`holder` says who)
    CONFLICT = "conflict"  # compare-and-swap failed: someone else wrote first
    FATAL = "fatal"  # anything else the backend cannot do


class StateError(DiagnosticsError):
    """A state backend failure, carried to the CLI as a diagnostic."""

    def __init__(self, kind: StateErrorKind, summary: str, detail: str, *, holder: LockInfo | None = None) -> None:
        diagnostics = Diagnostics()
        diagnostics.error(summary, detail)
        super().__init__(diagnostics)
        self.kind = kind
        self.summary = summary
        self.detail = detail
        self.holder = holder


@dataclass(frozen=True)
class PreviousCopy:
    """Where a backend keeps a state's previous copy, and how a person puts it back."""

    where: str  # a path, an object URL with its version, a table and row: for messages
    restore: str  # a command or statement that restores it as the state document


@dataclass(frozen=True)
class StoredState:
    """What a backend holds for one workspace: the state document (None: never written), the
    version to name in the next compare-and-swap, and the journal: everything appended since the
    last write, in append order (one piece per group, or fewer pieces holding the same bytes)."""

    data: bytes | None
    version: str | None
    journal: tuple[bytes, ...] = ()
    origin: str = ""  # where it was read, for messages: a path, an object URL, a table


class StateBackendSettings(BaseModel):
    """Base of every `state "KIND" { ... }` block's attributes (each backend extends it)."""

    model_config = ConfigDict(extra="forbid")

    # The attributes derived from a sensitive value, from the validation context
    # `{"sensitive": <names>}`: messages quote them as `shown(name)`.
    _sensitive: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _mark_sensitive(self, info: ValidationInfo) -> StateBackendSettings:
        context = info.context if isinstance(info.context, dict) else {}
        self._sensitive = frozenset(context.get("sensitive", ()))
        return self

    def shown(self, name: str) -> str:
        """An attribute as a message may quote it: `(sensitive value)` when it derives from a
        sensitive variable."""
        return "(sensitive value)" if name in self._sensitive else str(getattr(self, name))


@dataclass(frozen=True)
class BackendContext:
    """What a backend may use besides its settings."""

    working_dir: Path  # the configuration directory; relative paths are read from here


class StateBackend(ABC):
    """The runtime half. One instance serves every workspace of one configured backend; it may
    be used from several threads at once (apply commits from its worker threads)."""

    #: True when a lock outlives a killed holder until `force_unlock` (a file, an object); False
    #: when the store releases it as the holder's connection drops (a database session lock).
    locks_outlive_their_holder: ClassVar[bool] = True

    #: Seconds between the starts of two journal appends during an apply (0: append as soon as
    #: the previous append is done). Mutations finished meanwhile share the next append.
    journal_interval: ClassVar[float] = 0.0

    @abstractmethod
    def describe(self, workspace: str) -> str:
        """Where this workspace's state lives, for messages (never a credential)."""

    @abstractmethod
    def workspaces(self) -> list[str]:
        """Every workspace with a state document or a journal, plus "default"."""

    @abstractmethod
    def read(self, workspace: str) -> StoredState:
        """The state document, its version and its journal; a missing document is not an error."""

    @abstractmethod
    def write(self, workspace: str, data: bytes, expected_version: str | None) -> str:
        """Replace the state document if the stored version is `expected_version` (None: only if
        there is none), drop the journal, and return the new version. Durable when it returns.
        Raises `StateError(CONFLICT)` if someone else wrote in between."""

    @abstractmethod
    def append_journal(self, workspace: str, sequence: int, data: bytes) -> None:
        """Append one group of journal lines (`sequence` grows with every group of an apply).
        Durable when it returns."""

    @abstractmethod
    def delete_workspace(self, workspace: str) -> None:
        """Remove the workspace's state document, journal and lock record."""

    @abstractmethod
    def try_lock(self, info: LockInfo) -> LockInfo | None:
        """Take `info.workspace`'s lock for `info`; return None when taken, else the current
        holder (returned at once, never waiting: the core decides how long to retry)."""

    @abstractmethod
    def lock_holder(self, workspace: str) -> LockInfo | None:
        """Who holds the lock now, if anyone."""

    @abstractmethod
    def unlock(self, workspace: str, lock_id: str) -> None:
        """Release the lock if `lock_id` holds it; also how `force-unlock` clears a lock whose
        holder is gone (the core checks the id against `lock_holder` first)."""

    def previous_copy(self, workspace: str) -> PreviousCopy | None:
        """A copy of this workspace's state from before its last write, when the backend keeps one
        and it is there; else None. A missing state document beside such a copy is a lost state,
        not a new one. Called only when the state document is missing."""
        return None

    # -- the audit trail ---------------------------------------------------------------------------

    @abstractmethod
    def read_audit(self) -> AuditTrail:
        """Every entry of the audit trail, oldest first, and the head record."""

    def read_audit_tail(self, appends: int) -> AuditTrail:
        """At least the entries of the last `appends` appends, oldest first (what an apply that was
        just interrupted wrote), for a backend where the whole trail is costly to read. Default:
        the whole trail."""
        return self.read_audit()

    @abstractmethod
    def append_audit(self, make_entries: Callable[[AuditHead | None], Sequence[bytes]]) -> AuditHead:
        """Append entries: call `make_entries` with the current head (None: empty trail), store the
        entries it returns as numbers `head.seq + 1`, `head.seq + 2`, ... and the new head, as one
        step no other writer can interleave with (a writer that loses a race calls `make_entries`
        again on the new head). Durable when it returns; returns the new head. Several entries
        in one call cost one append: concurrent writers of one process share it (group commit)."""

    def prepare_audit(self) -> None:  # noqa: B027 - optional hook
        """Check the trail can be appended to, before an apply changes anything. Default: nothing
        (a remote store reports its errors as it is written)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (and with them any lock a session held)."""


BackendSettingsT = TypeVar("BackendSettingsT", bound=StateBackendSettings)


class StateBackendPlugin(ABC, Generic[BackendSettingsT]):
    """The static half of a state backend, generic over its settings model: the core validates
    the `state` block with `settings_model` and hands the plugin that very type."""

    kind: ClassVar[str]
    settings_model: type[BackendSettingsT]

    def check(self, settings: BackendSettingsT) -> Diagnostics:
        """Static checks beyond the settings model (no network). Default: none."""
        return Diagnostics()

    @abstractmethod
    def open(self, settings: BackendSettingsT, context: BackendContext) -> StateBackend: ...


def valid_workspace_name(name: str) -> bool:
    """Workspace names become path segments and object-key parts: letters, digits, - and _."""
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "-_" for c in name) and name.isascii()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
