"""Running one read per item concurrently, bounded by the provider's `max_concurrency`."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def fan_out(work: Callable[[K], T], items: Iterable[K], *, max_workers: int, name: str) -> dict[K, T]:
    """`work(item)` for every item, at most `max_workers` at a time, answers by item in the
    items' order. The first failure is raised once the pool has stopped."""
    items = list(items)
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)), thread_name_prefix=f"keyplan-{name}") as pool:
        return dict(zip(items, pool.map(work, items), strict=True))
