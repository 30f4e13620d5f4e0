"""Building a run's large structures: a configuration, state or plan of 100,000 keys is
millions of small objects that live until the command ends.

- `collector_paused`: they hold no reference cycles, yet while they are built every full
  collection of Python's cyclic collector walks all of them again (at 30,000 keys, half of
  `keyplan plan`'s time, for nothing to collect). Reference counting still frees every object
  the moment it is dropped; only cycles made meanwhile wait for the collector, which runs again
  when the pause ends.
- `trusted`: the per-key pydantic models keyplan fills from values it typed and checked itself
  are built without validating them again, and share one set of field names per class (pydantic
  gives each instance its own: 728 bytes for a model of five fields or more).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from copy import copy
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel


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


_M = TypeVar("_M", bound=BaseModel)


@cache
def _blueprint(cls: type[BaseModel]) -> tuple[tuple[tuple[str, Any], ...], set[str]]:
    """Each field of `cls` with its default (`...` when it has none), and the one set of field
    names every instance `trusted` builds shares."""
    if cls.__pydantic_post_init__ or cls.__pydantic_root_model__ or cls.__private_attributes__:
        raise TypeError(f"{cls.__name__} needs pydantic's own construction")
    fields = tuple((name, ... if f.is_required() else f.get_default()) for name, f in cls.model_fields.items())
    return fields, {name for name, _ in fields}


def trusted(cls: type[_M], **values: Any) -> _M:
    """An instance of `cls` from values keyplan typed and checked itself, without validating or
    copying them: what `model_construct` does, without its per-field work. Every instance of a
    class shares one set of field names (all of them: keyplan never serialises "unset" fields
    apart), and a field not given takes its default (a copy of a mutable one)."""
    fields, names = _blueprint(cls)
    if not values.keys() <= names:
        raise TypeError(f"{cls.__name__} has no field {sorted(values.keys() - names)[0]}")
    state: dict[str, Any] = {}
    for name, default in fields:
        if name in values:
            state[name] = values[name]
        elif default is ...:
            raise TypeError(f"{cls.__name__}.{name} is required")
        else:
            state[name] = copy(default) if isinstance(default, list | dict | set | BaseModel) else default
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", state)
    object.__setattr__(instance, "__pydantic_fields_set__", names)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance
