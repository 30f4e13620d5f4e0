"""Eventual consistency in the realistic profile: a resource created in the last `lag` seconds
(by the emulator's clock, from the creation time it stores, so the lag holds across restarts
of an embedded emulator) is not yet visible to other calls, as the clouds document (AWS KMS: "a
brief delay before the change is available ... NotFoundException if you call
GetParametersForImport immediately after CreateKey"; programming-eventual-consistency)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta


class Visibility:
    """`lag`: seconds before calls naming a new resource find it; `listing_lag`: before listings
    include it (listings catch up last)."""

    def __init__(self, now: Callable[[], datetime], lag: float = 0.0, listing_lag: float = 0.0) -> None:
        self.lag = lag
        self.listing_lag = listing_lag
        self._now = now

    def hidden(self, created: str | None) -> bool:
        """Whether a resource created at `created` (ISO 8601) is too new for calls naming it."""
        return self._younger(created, self.lag)

    def unlisted(self, created: str | None) -> bool:
        """Whether a resource created at `created` is too new for listings to include it."""
        return self._younger(created, max(self.lag, self.listing_lag))

    def _younger(self, created: str | None, seconds: float) -> bool:
        if seconds <= 0 or not created:
            return False
        return self._now() - datetime.fromisoformat(created) < timedelta(seconds=seconds)
