"""The audit trail: every remote change keyplan makes (and every one that failed), appended to a
JSON Lines file, `.keyplan/audit.jsonl` in the configuration directory, as a hash chain.

Each line: `seq` (1, 2, 3, ...), `prev` (the SHA-256 of the previous line's bytes; zeros for the
first), time, user, host, pid, the plan digest and the approvers it ran under, the action,
address, target, remote id, outcome and a detail. A remote mutation is entered twice: `started`
before the call is made, then `ok` or `failed`; so no change reaches a cloud unrecorded, even if
keyplan is killed during the call. Never material: actions carry handles and remote ids only.

Beside the log, `audit.jsonl.head` holds the last entry's `seq` and hash (replaced atomically
after each append), so cutting entries off the end is noticed too. `verify_chain` finds an
edited, removed, reordered or truncated entry and says where (`keyplan log -verify`).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyplan.diagnostics import Diagnostic, DiagnosticsError
from keyplan.plan.model import Action

AUDIT_FILE = "audit.jsonl"
GENESIS = "sha256:" + "0" * 64


def line_hash(line: bytes) -> str:
    return "sha256:" + hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


class AuditLog:
    """An `ApplyHooks` listener that records remote mutations; other hook events are ignored.
    Also the one writer of the audit file for commands outside apply (`record`)."""

    def __init__(self, path: Path, plan_digest: str, approvers: list[str] | None = None) -> None:
        self.path = path
        self.plan_digest = plan_digest
        self.approvers = list(approvers or [])
        self._lock = threading.Lock()
        self._last: tuple[int, str] | None = None  # (seq, hash) of the last entry, once read
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        self._who = {"user": user, "host": socket.gethostname(), "pid": os.getpid()}
        self._check_writable()

    def _check_writable(self) -> None:
        """Open the log once before anything is done: an apply that could not record what it
        does refuses to start, rather than change keys it cannot account for."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as exc:
            raise DiagnosticsError.single(
                "Cannot write the audit log",
                f"{self.path} cannot be written ({exc.strerror}). Every remote change an apply makes is recorded "
                "there, so nothing was changed. Make it (and its directory) writable, then apply again.",
            ) from None

    def _append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            seq, prev = self._last if self._last is not None else _tail(self.path)
            body = {
                "seq": seq + 1,
                "prev": prev,
                "time": datetime.now(UTC).isoformat(),
                **self._who,
                "plan": self.plan_digest,
                "approvers": self.approvers,
                **entry,
            }
            line = json.dumps(body, sort_keys=True).encode()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Private like the state: the log reveals the key inventory and who changed it.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._last = (seq + 1, line_hash(line))
            _write_head(self.path, *self._last)

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

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        if action.kind.remote:
            self._append(self._entry(action, "ok", remote_id, outcome))

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        if action.kind.remote:
            self._append(self._entry(action, "failed", action.remote_id, diagnostic.summary))

    def finished(self, action: Action, seconds: float) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...
    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...


def _tail(path: Path) -> tuple[int, str]:
    """(seq, hash) of the file's last entry; (0, GENESIS) for an empty or missing file."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 65536))
            lines = [line for line in handle.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return 0, GENESIS
    if not lines:
        return 0, GENESIS
    try:
        seq = int(json.loads(lines[-1]).get("seq", 0))
    except (ValueError, AttributeError):
        seq = 0
    return seq, line_hash(lines[-1])


def _write_head(path: Path, seq: int, digest: str) -> None:
    head = head_path(path)
    temporary = head.with_name(head.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps({"seq": seq, "hash": digest}).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, head)


def read_audit(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entries.append(json.loads(line))
    return entries


@dataclass(frozen=True)
class ChainProblem:
    line: int  # 1-based line of the audit file (0: the file as a whole)
    problem: str


def verify_chain(path: Path) -> tuple[int, list[ChainProblem]]:
    """Check the hash chain: (entries read, every problem found with where it is)."""
    if not path.exists():
        return 0, []
    problems: list[ChainProblem] = []
    raw_lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
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
    head = head_path(path)
    if head.exists():
        try:
            recorded = json.loads(head.read_text())
            head_seq, head_hash = int(recorded["seq"]), str(recorded["hash"])
        except (ValueError, KeyError, TypeError):
            problems.append(ChainProblem(0, f"{head.name} is damaged, so truncation cannot be ruled out"))
        else:
            if head_seq != expected_seq - 1:
                problems.append(
                    ChainProblem(
                        len(raw_lines),
                        f"the log ends at entry {expected_seq - 1}, but {head.name} says entry {head_seq} was "
                        "written last: entries were cut off the end",
                    )
                )
            elif head_hash != expected_prev:
                problems.append(ChainProblem(len(raw_lines), "the last entry was edited after it was written"))
    elif raw_lines:
        problems.append(ChainProblem(0, f"{head.name} is missing, so truncation cannot be ruled out"))
    return len(raw_lines), problems
