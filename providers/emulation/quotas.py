"""The emulators' `realistic` profile: each cloud's documented default request quotas enforced
with the cloud's own throttling answer (AWS `ThrottlingException` HTTP 400, Azure 429 with
`Retry-After`, Google 429 `RESOURCE_EXHAUSTED`), from the same tables the providers pace
themselves by (`providers/<cloud>/quotas.py`). `quota_scale` multiplies every quota, so tests
run the same rules fast."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from keyplan.limits import RateClass


class QuotaEnforcer:
    """A token bucket per class, holding `window` seconds of the class's rate (the clouds count
    per second, per 10 seconds or per minute)."""

    def __init__(
        self,
        classes: Iterable[RateClass],
        *,
        scale: float = 1.0,
        window: float = 1.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._rate: dict[str, float] = {}
        self._capacity: dict[str, float] = {}
        self._tokens: dict[str, float] = {}
        self._updated: dict[str, float] = {}
        self._class_of: dict[str, str] = {}
        self.throttled: dict[str, int] = {}
        for c in classes:
            rate = c.per_second * scale
            self._rate[c.name] = rate
            self._capacity[c.name] = self._tokens[c.name] = max(1.0, rate * window)
            self._updated[c.name] = now()
            self.throttled[c.name] = 0
            for operation in c.operations:
                self._class_of[operation] = c.name

    def describe(self) -> dict[str, dict[str, object]]:
        """Each class's enforced rate and operations (for benchmarks computing quota bounds)."""
        operations: dict[str, list[str]] = {name: [] for name in self._rate}
        for operation, name in self._class_of.items():
            operations[name].append(operation)
        return {name: {"per_second": rate, "operations": sorted(operations[name])} for name, rate in self._rate.items()}

    def admit(self, operation: str) -> float | None:
        """None when the call may go through; else the seconds until it could (Retry-After)."""
        name = self._class_of.get(operation)
        if name is None:
            return None
        with self._lock:
            now = self._now()
            rate = self._rate[name]
            self._tokens[name] = min(self._capacity[name], self._tokens[name] + (now - self._updated[name]) * rate)
            self._updated[name] = now
            if self._tokens[name] >= 1.0:
                self._tokens[name] -= 1.0
                return None
            self.throttled[name] += 1
            return (1.0 - self._tokens[name]) / rate

    def reset_counts(self) -> None:
        with self._lock:
            for name in self.throttled:
                self.throttled[name] = 0
