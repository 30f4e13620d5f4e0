"""`keyplan verify`: under the state lock, prove per key, target and imported version that the
target holds the source's material (`keyplan.verification`)."""

from __future__ import annotations

from keyplan.config.model import Config
from keyplan.limits import DEFAULT_THROTTLE_TIMEOUT
from keyplan.operations.workspace import LockOptions, locked, read_state, state_backend
from keyplan.verification import VerificationReport


def verify(
    config: Config,
    addresses: list[str],
    *,
    lock: LockOptions,
    parallelism: int = 10,
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT,
) -> VerificationReport:
    from keyplan.verification import run_verify

    backend = state_backend(config)
    with locked(backend, "verify", lock):
        state, _ = read_state(backend)
        return run_verify(config, state, addresses, parallelism=parallelism, throttle_timeout=throttle_timeout)
