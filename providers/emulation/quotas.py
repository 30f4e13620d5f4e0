"""The emulators' `realistic` profile: each cloud's documented default request quotas enforced
with the cloud's own throttling answer (AWS `ThrottlingException` HTTP 400, Azure 429 with
`Retry-After`, Google 429 `RESOURCE_EXHAUSTED`), from the same tables the providers pace
themselves by (`providers/<cloud>/quotas.py`). `quota_scale` multiplies every quota, so tests
run the same rules fast. A call may cost more than one unit of its class's budget where the cloud
weighs its transactions (Key Vault: by key type, `EmulatorApp.quota_cost`)."""

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
        self.spent: dict[str, float] = {}  # units admitted per class since the last reset
        for c in classes:
            rate = c.per_second * scale
            self._rate[c.name] = rate
            self._capacity[c.name] = self._tokens[c.name] = max(1.0, rate * window)
            self._updated[c.name] = now()
            self.throttled[c.name] = 0
            self.spent[c.name] = 0.0
            for operation in c.operations:
                self._class_of[operation] = c.name

    def describe(self) -> dict[str, dict[str, object]]:
        """Each class's enforced rate and operations (for benchmarks computing quota bounds)."""
        operations: dict[str, list[str]] = {name: [] for name in self._rate}
        for operation, name in self._class_of.items():
            operations[name].append(operation)
        return {name: {"per_second": rate, "operations": sorted(operations[name])} for name, rate in self._rate.items()}

    def class_of(self, operation: str) -> str | None:
        return self._class_of.get(operation)

    def admit(self, operation: str, cost: float = 1.0) -> float | None:
        """None when the call may go through, its `cost` in units taken from its class's bucket;
        else the seconds until it could (Retry-After). A throttled call takes nothing (Key Vault:
        "failed requests that return a 429 do not count towards the throttle limits")."""
        name = self._class_of.get(operation)
        if name is None:
            return None
        with self._lock:
            now = self._now()
            rate = self._rate[name]
            need = min(cost, self._capacity[name])  # a scaled-down bucket still admits its dearest call
            self._tokens[name] = min(self._capacity[name], self._tokens[name] + (now - self._updated[name]) * rate)
            self._updated[name] = now
            if self._tokens[name] >= need:
                self._tokens[name] -= need
                self.spent[name] += need
                return None
            self.throttled[name] += 1
            return (need - self._tokens[name]) / rate

    def reset_counts(self) -> None:
        with self._lock:
            for name in self.throttled:
                self.throttled[name] = 0
                self.spent[name] = 0.0
