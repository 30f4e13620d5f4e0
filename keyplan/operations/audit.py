"""The audit trail through the configured state backend: opening it for a command that changes
or exports something remote, and reading it for `keyplan log`."""

from __future__ import annotations

from keyplan.apply.audit import AuditLog
from keyplan.config.model import Config
from keyplan.state.backend import AuditTrail


def audit_log(config: Config, plan_digest: str = "", approvers: list[str] | None = None) -> AuditLog:
    """The trail of the configured backend, ready to append to (refuses now if it cannot be)."""
    from keyplan.operations.workspace import state_backend

    store = state_backend(config)
    return AuditLog(store.backend, plan_digest, approvers, store.workspace)


def audit_trail(config: Config) -> AuditTrail:
    """Every entry of the configured backend's trail, with its head record, as stored."""
    from keyplan.operations.workspace import state_backend

    return state_backend(config).backend.read_audit()
