"""When a failed plugin call is tried again: errors the plugin classified as retryable
(throttling, 5xx, timeouts), with exponential backoff and full jitter, a bounded number of times."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # calls in all, the first one included
    base_seconds: float = 0.2
    cap_seconds: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): uniform in [0, min(cap, base·2^attempt)]."""
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * (2**attempt)))

    def allows(self, failures: int) -> bool:
        """Whether another call may follow `failures` failed ones."""
        return failures < self.attempts
