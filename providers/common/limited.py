"""Every remote call of a provider admitted through the run's limiter for its operation class
(keyplan.limits): throttling answers waited out and never shown, reads retried with backoff."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from keyplan.limits import TargetLimits, Throttled
from keyplan.provider import ErrorKind, ProviderError

T = TypeVar("T")


def _throttling(error: BaseException) -> float | bool:
    if isinstance(error, ProviderError) and error.throttled:
        return error.retry_after if error.retry_after else True
    return False


def _retryable(error: BaseException) -> bool:
    return isinstance(error, ProviderError) and error.kind is ErrorKind.RETRYABLE


def admitted(limits: TargetLimits, operation: str, send: Callable[[], T], *, read: bool) -> T:
    """`send()` (which raises classified `ProviderError`s) through the limiter of `operation`."""
    try:
        return limits.call(operation, send, read=read, throttling=_throttling, retryable=_retryable)
    except Throttled as stuck:
        higher = (
            f"ask the cloud for a higher quota and set rate_limits = {{ {stuck.rate_class} = N }} on this provider."
            if stuck.classed
            else "ask the cloud for a higher quota."
        )
        raise ProviderError(
            ErrorKind.FATAL,
            f"{stuck.target} kept throttling {stuck.rate_class} calls for {_duration(stuck.waited)} without progress",
            "Nothing is lost: the state records every key finished so far, and running the command again resumes "
            f"where this run stopped. Other callers may be using the same quota: run it again later, raise "
            f"-throttle-timeout, or {higher}",
            code="Throttled",
        ) from None


def _duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h 5 min`."""
    whole = max(1, round(seconds))
    if whole < 120:
        return f"{whole} s"
    hours, minutes = divmod(round(whole / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def retry_after_seconds(headers: object, now: datetime | None = None) -> float | None:
    """The wait a throttling answer asks for: `x-ms-retry-after-ms` (milliseconds) or
    `Retry-After` (seconds, or an HTTP date); None when the answer names none or nothing usable
    (negative, not a number, not finite, a date past). The limiter holds no wait past the throttle
    timeout, however long the cloud asks for."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = get(name) or get(name.lower())
        if not value:
            continue
        try:
            seconds = float(value) * scale
        except (TypeError, ValueError):
            seconds = _until(str(value), now) if scale == 1.0 else math.nan
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _until(http_date: str, now: datetime | None) -> float:
    """Seconds from now until an HTTP date (RFC 9110's Retry-After form); NaN when it is not one."""
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return math.nan
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - (now or datetime.now(UTC))).total_seconds()
