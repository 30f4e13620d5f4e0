"""Opaque page tokens over a stable, ordered list: what AWS's `Marker` and Google's `pageToken`
carry in the emulators (the clouds' own tokens are opaque too; clients only echo them)."""

from __future__ import annotations

import base64
from typing import TypeVar

T = TypeVar("T")


def offset_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def token_offset(token: str) -> int:
    """The offset a token stands for; ValueError when it is not a token this emulator made."""
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not a page token") from None
    if offset < 0:
        raise ValueError("not a page token")
    return offset


def page(items: list[T], token: str | None, size: int) -> tuple[list[T], str | None]:
    """The page of `items` a token points at, and the token of the next page (None at the end)."""
    start = token_offset(token) if token else 0
    end = start + size
    return items[start:end], (offset_token(end) if end < len(items) else None)
