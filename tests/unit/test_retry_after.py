"""What a throttling answer's Retry-After / x-ms-retry-after-ms asks for, whatever the cloud sends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from providers.common.limited import retry_after_seconds

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0"}, 0.0),
        ({"x-ms-retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "Tue, 01 Dec 2026 12:00:30 GMT"}, 30.0),  # the HTTP-date form (RFC 9110)
        ({"Retry-After": "Tue, 01 Dec 2026 11:59:00 GMT"}, None),  # already past
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "1e999"}, None),
        ({"x-ms-retry-after-ms": "-1", "Retry-After": "2"}, 2.0),
        ({"x-ms-retry-after-ms": "Tue, 01 Dec 2026 12:00:30 GMT"}, None),  # milliseconds are never a date
        ({"Retry-After": "\x1b[2J"}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_seconds(headers, now=NOW) == seconds


def test_no_headers() -> None:
    assert retry_after_seconds(None) is None
