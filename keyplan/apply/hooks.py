"""Listeners on an apply: the walker reports every step through `ApplyHooks` and never prints.

Apply progress (`keyplan.cli.progress`: a bar on a terminal, lines in a log, JSON events) and the audit log
(`keyplan.apply.audit.AuditLog`) are listeners; `CompositeHooks` hands each event to several.
"""

from __future__ import annotations

from typing import Protocol

from keyplan.diagnostics import Diagnostic
from keyplan.plan.model import Action


class ApplyHooks(Protocol):
    def started(self, action: Action) -> None: ...
    def finished(self, action: Action, seconds: float) -> None: ...
    def failed(self, action: Action, diagnostic: Diagnostic) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...
    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...
    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None: ...
    def not_sent(self, action: Action, because: str) -> None: ...


class SilentHooks:
    def started(self, action: Action) -> None: ...
    def finished(self, action: Action, seconds: float) -> None: ...
    def failed(self, action: Action, diagnostic: Diagnostic) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...
    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...
    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None: ...
    def not_sent(self, action: Action, because: str) -> None: ...


class CompositeHooks:
    """Several listeners as one (the terminal, the audit log)."""

    def __init__(self, *listeners: ApplyHooks) -> None:
        self.listeners = listeners

    def started(self, action: Action) -> None:
        for listener in self.listeners:
            listener.started(action)

    def finished(self, action: Action, seconds: float) -> None:
        for listener in self.listeners:
            listener.finished(action, seconds)

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        for listener in self.listeners:
            listener.failed(action, diagnostic)

    def skipped(self, action: Action, because: str) -> None:
        for listener in self.listeners:
            listener.skipped(action, because)

    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None:
        for listener in self.listeners:
            listener.retrying(action, attempt, delay, reason)

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        for listener in self.listeners:
            listener.mutated(action, outcome, remote_id)

    def not_sent(self, action: Action, because: str) -> None:
        for listener in self.listeners:
            listener.not_sent(action, because)
