"""Durations in configuration (`every = "90d"`): a whole number followed by one unit,
s (seconds), m (minutes), h (hours), d (days) or w (weeks)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^([0-9]+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class DurationError(Exception):
    """`hint` is a sentence saying how to write the duration instead."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


MAX_DURATION = timedelta(days=36500)  # a hundred years: longer than any key's life


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise DurationError("it is not a whole number followed by a unit", _hint(text.strip()))
    digits, unit = match.group(1).lstrip("0") or "0", match.group(2)
    if len(digits) > 12 or timedelta(**{_UNITS[unit]: int(digits)}) > MAX_DURATION:
        raise DurationError(
            "it is longer than a hundred years", f'Write at most "{MAX_DURATION.days}d"; keys do not live longer.'
        )
    if digits == "0":
        raise DurationError("a duration of zero is not allowed", "Write a positive duration, like \"90d\".")
    return timedelta(**{_UNITS[unit]: int(digits)})


def _hint(text: str) -> str:
    unit = text.lstrip("0123456789. ").lower()
    if unit in ("y", "yr", "year", "years"):
        return 'There is no year unit; write days instead, like "365d".'
    if unit in ("mo", "month", "months"):
        return 'There is no month unit; write days instead, like "30d".'
    if unit in ("day", "days", "hour", "hours", "week", "weeks", "min", "minute", "minutes", "sec", "seconds"):
        digits = re.match(r"[0-9]+", text)
        return f'Use the one-letter unit, like "{digits.group(0) if digits else "90"}{unit[0]}".'
    return 'Write a whole number followed by one unit: s, m, h, d or w, like "90d" or "12h".'
