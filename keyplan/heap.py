"""Building a run's large structures with Python's cyclic garbage collector paused.

A configuration, state or plan of 100,000 keys is millions of small objects that live until
the command ends and hold no reference cycles. While they are built, every full collection of
the cyclic collector walks all of them again: at 30,000 keys that was half of `keyplan plan`'s
time, for nothing to collect. Reference counting still frees every object the moment it is
dropped; only cycles made meanwhile wait for the collector, which runs again when the pause
ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (nested pauses keep it paused until the outer
    one ends)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
