"""Every remote call of a provider admitted through the run's limiter for its operation class
(keyplan.limits): throttling answers waited out and never shown, reads retried with backoff."""

from __future__ import annotations

from collections.abc import Callable
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


def retry_after_seconds(headers: object) -> float | None:
    """The wait a throttling answer asks for: `x-ms-retry-after-ms` (milliseconds) or
    `Retry-After` (seconds); None when the answer names none or a date."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = get(name) or get(name.lower())
        if value:
            try:
                seconds = float(value) * scale
            except (TypeError, ValueError):
                continue
            if seconds >= 0:
                return seconds
    return None
