"""Error handling every cloud provider does the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from keyplan.provider import ErrorKind, ProviderError

T = TypeVar("T")

RETRY_ADVICE = "keyplan retries this with backoff; if it persists, try again later."


def sentence(text: str) -> str:
    """A cloud's message as one sentence of keyplan's detail text."""
    text = text.strip()
    return text if text.endswith(".") else text + "."


def unless_not_found(read: Callable[[], T]) -> T | None:
    """`read()`, or None when the cloud says the object does not exist."""
    try:
        return read()
    except ProviderError as error:
        if error.kind is ErrorKind.NOT_FOUND:
            return None
        raise
