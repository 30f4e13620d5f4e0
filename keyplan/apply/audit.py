"""The audit trail: every remote change keyplan makes (and every one that failed), kept by the
state backend beside the state (the local backend: `.keyplan/audit.jsonl` in the configuration
directory; remote backends: beside their state, see `StateBackend.append_audit`) as a hash chain.

Each entry: `seq` (1, 2, 3, ...), `prev` (the SHA-256 of the previous entry's bytes; zeros for the
first), time, user, host, pid, workspace, the plan digest and the approvers it ran under, the
action, address, target, remote id, outcome and a detail. A remote mutation is entered twice:
`started` before the call is made, then `ok` or `failed`; so no change reaches a cloud
unrecorded, even if keyplan is killed during the call. Never material: actions carry handles and
remote ids only.

Beside the entries, the backend keeps a head record (the last entry's `seq` and hash, replaced
with each append), so cutting entries off the end is noticed too. `verify_chain` finds an
edited, removed, reordered or truncated entry and says where (`keyplan log -verify`).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from keyplan.diagnostics import Diagnostic, DiagnosticsError
from keyplan.state.backend import (
    AUDIT_GENESIS,
    DEFAULT_WORKSPACE,
    AuditHead,
    AuditTrail,
    StateBackend,
    StateError,
    audit_entry_hash,
)

if TYPE_CHECKING:  # `keyplan log` reads the trail without the plan models
    from keyplan.plan.model import Action

AUDIT_FILE = "audit.jsonl"
GENESIS = AUDIT_GENESIS
line_hash = audit_entry_hash


class AuditLog:
    """An `ApplyHooks` listener that records remote mutations; other hook events are ignored.
    Also the one writer of the audit trail for commands outside apply (`record`)."""

    def __init__(
        self,
        backend: StateBackend,
        plan_digest: str,
        approvers: list[str] | None = None,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> None:
        self.backend = backend
        self.plan_digest = plan_digest
        self.approvers = list(approvers or [])
        self.workspace = workspace
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        self._who = {"user": user, "host": socket.gethostname(), "pid": os.getpid()}
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._queued = self._written = self._failed_upto = 0
        self._appending = False
        self._failure: BaseException | None = None
        self._later: ThreadPoolExecutor | None = None
        self._soon: list[dict[str, Any]] = []  # outcome entries no append has taken yet
        self._outcomes: list[Future[None]] = []  # background appends
        self._unrecorded = 0  # outcome entries whose background append failed
        self._entered: set[str] = set()  # actions with a `started` entry
        # An apply that could not record what it does refuses to start, rather than change keys
        # it cannot account for.
        backend.prepare_audit()

    def _append(self, *entries: dict[str, Any]) -> None:
        """Durable when it returns. Entries of concurrent callers share one append (group commit):
        the first caller appends everything waiting, the others wait for it."""
        with self._cond:
            self._pending.extend(entries)
            self._queued += len(entries)
            mine = self._queued
            while self._written < mine:
                if self._failed_upto >= mine and self._failure is not None:
                    raise self._failure
                if self._appending:
                    self._cond.wait()
                    continue
                self._appending = True
                batch, upto = self._pending, self._queued
                self._pending = []
                self._cond.release()
                try:
                    self.backend.append_audit(partial(self._entries, batch=batch))
                except BaseException as failure:  # every caller whose entry was in the batch is told
                    self._cond.acquire()
                    self._failure, self._failed_upto = failure, upto
                    raise
                else:
                    self._cond.acquire()
                    self._written = upto
                finally:
                    self._appending = False
                    self._cond.notify_all()

    def _entries(self, head: AuditHead | None, batch: list[dict[str, Any]]) -> list[bytes]:
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
        made = []
        for entry in batch:
            body = {
                "seq": seq + 1,
                "prev": prev,
                "time": datetime.now(UTC).isoformat(),
                **self._who,
                "workspace": self.workspace,
                "plan": self.plan_digest,
                "approvers": self.approvers,
                **entry,
            }
            line = json.dumps(body, sort_keys=True).encode()
            made.append(line)
            seq, prev = seq + 1, line_hash(line)
        return made

    def record(self, entry: dict[str, Any]) -> None:
        """Append one entry made outside an apply's actions (`keyplan verify`, `export-byok`)."""
        self._append(entry)

    def _entry(self, action: Action, outcome: str, remote_id: str | None, detail: str) -> dict[str, Any]:
        return {
            "action": action.kind.value,
            "address": action.address,
            "target": action.target,
            "remote_id": remote_id,
            "outcome": outcome,
            "detail": detail,
        }

    def started(self, action: Action) -> None:
        if action.kind.mutates:
            self._append(self._entry(action, "started", action.remote_id, "about to call the cloud"))
            with self._cond:
                self._entered.add(action.id)

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        if action.kind.remote:
            self._append_soon(self._entry(action, "ok", remote_id, outcome))

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        if action.kind.remote:
            self._append_soon(self._entry(action, "failed", action.remote_id, diagnostic.summary))

    def _append_soon(self, entry: dict[str, Any]) -> None:
        """Outcomes are appended by a background thread (sharing appends with the `started`
        entries of other workers), so a worker does not wait a store round trip after each call:
        the guarantee that no change reaches a cloud unrecorded rests on `started`, which is
        durable before the call. Every outcome waiting when the thread takes them goes into one
        append. `flush` waits for them when the walk ends."""
        with self._cond:
            self._soon.append(entry)
            if len(self._soon) > 1:
                return  # a background append is queued and has not taken the waiting entries yet
            if self._later is None:
                self._later = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keyplan-audit")
            self._outcomes.append(self._later.submit(self._append_waiting))

    def _append_waiting(self) -> None:
        with self._cond:
            batch, self._soon = self._soon, []
        try:
            self._append(*batch)
        except BaseException:
            with self._cond:
                self._unrecorded += len(batch)
            raise

    def flush(self) -> None:
        """Wait until every outcome entry is durable; raise if some could not be recorded."""
        with self._cond:
            later, self._later = self._later, None
            outcomes, self._outcomes = self._outcomes, []
        if later is not None:
            later.shutdown(wait=True)
        failures = [error for future in outcomes if (error := future.exception()) is not None]
        if failures:
            first = failures[0]
            reason = f"{first.summary}: {first.detail}" if isinstance(first, StateError) else str(first)
            with self._cond:
                unrecorded = self._unrecorded
            raise DiagnosticsError.single(
                "Some audit entries could not be recorded",
                f"{unrecorded} outcome entr{'y' if unrecorded == 1 else 'ies'} of this apply did not reach the audit "
                f"trail ({reason}). Each change was entered as started before it was made; `keyplan log` shows which "
                "have no outcome.",
            )

    def finished(self, action: Action, seconds: float) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...

    def not_sent(self, action: Action, because: str) -> None:
        """An action entered as started that gave up unsent (an interrupt while it waited for its
        quota) gets the outcome `not sent`, so its `started` entry is not taken for a call whose
        answer was lost."""
        with self._cond:
            entered = action.id in self._entered
        if entered:
            self._append_soon(self._entry(action, "not sent", action.remote_id, because))

    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...


class DamagedAuditEntry(ValueError):
    def __init__(self, number: int) -> None:
        super().__init__(f"audit entry {number} is not JSON")
        self.number = number


def read_audit(trail: AuditTrail) -> list[dict[str, Any]]:
    """The entries as JSON objects; an entry that is not one raises DamagedAuditEntry."""
    entries = []
    for number, raw in enumerate((raw for raw in trail.entries if raw.strip()), start=1):
        try:
            entries.append(json.loads(raw))
        except ValueError:
            raise DamagedAuditEntry(number) from None
    return entries


@dataclass(frozen=True)
class ChainProblem:
    line: int  # 1-based number of the entry in the trail (0: the trail as a whole)
    problem: str


def verify_chain(trail: AuditTrail) -> tuple[int, list[ChainProblem]]:
    """Check the hash chain: (entries read, every problem found with where it is)."""
    problems: list[ChainProblem] = []
    raw_lines = [line for line in trail.entries if line.strip()]
    expected_prev, expected_seq = GENESIS, 1
    for number, raw in enumerate(raw_lines, start=1):
        try:
            entry = json.loads(raw)
            seq, prev = int(entry["seq"]), str(entry["prev"])
        except (ValueError, KeyError, TypeError):
            problems.append(ChainProblem(number, "not an entry of the chain (not JSON, or no seq and prev)"))
            expected_prev, expected_seq = line_hash(raw), expected_seq + 1
            continue
        if seq != expected_seq:
            what = "entries before it were removed or moved" if seq > expected_seq else "entries were reordered or repeated"
            problems.append(ChainProblem(number, f"entry {seq} where entry {expected_seq} was due: {what}"))
        elif prev != expected_prev:
            problems.append(
                ChainProblem(number, f"entry {seq} does not follow the line before it: that line was edited or replaced")
            )
        expected_prev, expected_seq = line_hash(raw), seq + 1
    if trail.head is not None:
        try:
            recorded = json.loads(trail.head)
            head_seq, head_hash = int(recorded["seq"]), str(recorded["hash"])
        except (ValueError, KeyError, TypeError):
            problems.append(ChainProblem(0, "the head record is damaged, so truncation cannot be ruled out"))
        else:
            if head_seq != expected_seq - 1:
                problems.append(
                    ChainProblem(
                        len(raw_lines),
                        f"the trail ends at entry {expected_seq - 1}, but the head record says entry {head_seq} was "
                        "written last: entries were cut off the end",
                    )
                )
            elif head_hash != expected_prev:
                problems.append(ChainProblem(len(raw_lines), "the last entry was edited after it was written"))
    elif raw_lines:
        problems.append(ChainProblem(0, "the head record is missing, so truncation cannot be ruled out"))
    return len(raw_lines), problems
