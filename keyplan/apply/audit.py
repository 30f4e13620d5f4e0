"""The audit trail: every remote mutation an apply makes (and every one that failed) appended
to a JSON Lines file, `.keyplan/audit.jsonl` in the configuration directory.

Each line: time, user, host, pid, plan digest, action, address, target, remote id, outcome and,
for failures, the error summary. Never material: actions carry handles and remote ids only.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyplan.diagnostics import Diagnostic
from keyplan.plan.model import Action

AUDIT_FILE = "audit.jsonl"


class AuditLog:
    """An `ApplyHooks` listener that records mutations; other hook events are ignored."""

    def __init__(self, path: Path, plan_digest: str) -> None:
        self.path = path
        self.plan_digest = plan_digest
        self._lock = threading.Lock()
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        self._who = {"user": user, "host": socket.gethostname(), "pid": os.getpid()}

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps({"time": datetime.now(UTC).isoformat(), **self._who, "plan": self.plan_digest, **entry})
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Private like the state: the log reveals the key inventory and who changed it.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def record(self, entry: dict[str, Any]) -> None:
        """Append one entry made outside an apply's actions (`keyplan verify`'s proofs)."""
        self._append(entry)

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        if not action.kind.remote:
            return
        self._append(
            {
                "action": action.kind.value,
                "address": action.address,
                "target": action.target,
                "remote_id": remote_id,
                "outcome": "ok",
                "detail": outcome,
            }
        )

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        if not action.kind.remote:
            return
        self._append(
            {
                "action": action.kind.value,
                "address": action.address,
                "target": action.target,
                "remote_id": action.remote_id,
                "outcome": "failed",
                "detail": diagnostic.summary,
            }
        )

    def started(self, action: Action) -> None: ...
    def finished(self, action: Action, seconds: float) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...
    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...


def read_audit(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            entries.append(json.loads(line))
    return entries
