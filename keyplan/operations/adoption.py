"""`keyplan import` and `keyplan discover`: bringing existing remote keys under management
(the rules and the proof live in `keyplan.adopt`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from keyplan.adopt import ImportOutcome
from keyplan.config.model import Config
from keyplan.diagnostics import DiagnosticsError
from keyplan.discovery import Discovered
from keyplan.limits import DEFAULT_THROTTLE_TIMEOUT
from keyplan.operations.workspace import LockOptions, locked, read_state, state_backend
from keyplan.state.model import State


def import_key(
    config: Config,
    address: str,
    target: str,
    remote_id: str,
    *,
    lock: LockOptions,
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT,
) -> ImportOutcome:
    """Describe, check, prove (where the target can) and tag the remote key, then record it."""
    from keyplan.adopt import check_importable, import_remote_key
    from keyplan.runtime import Session

    backend = state_backend(config)
    with locked(backend, "import", lock):
        state, _ = read_state(backend)
        record = check_importable(config, state, address, target, remote_id)
        with Session(config, throttle_timeout=throttle_timeout) as session:
            outcome = import_remote_key(session, state, record, target, remote_id, datetime.now(UTC))
        record.targets[target] = outcome.record
        backend.write(state)
    return outcome


@dataclass(frozen=True)
class Discovery:
    target: str
    found: list[Discovered]
    state: State
    at: datetime


def discover(config: Config, target: str, *, throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT) -> Discovery:
    """Every imported key at `target`, classified against the state (read without the lock:
    nothing is written)."""
    from keyplan.discovery import classify
    from keyplan.provider import DiscoverRequest, ProviderError
    from keyplan.runtime import Session

    if target not in config.providers:
        known = ", ".join(sorted(config.providers)) or "none"
        raise DiagnosticsError.single(
            f"No provider {target} in the configuration",
            f"Name a provider block by KIND.NAME, as declared. Declared: {known}.",
        )
    state, _ = read_state(state_backend(config))
    with Session(config, throttle_timeout=throttle_timeout) as session:
        try:
            keys = list(session.provider(target).discover(DiscoverRequest()).keys)
        except ProviderError as error:
            raise DiagnosticsError.single(f"Cannot list the keys of {target}: {error.summary}", error.detail) from None
    return Discovery(target, classify(keys, state, target), state, datetime.now(UTC))
