"""Building a run's large structures: a configuration, state or plan of 100,000 keys is
millions of small objects that live until the command ends.

- `collector_paused`: they hold no reference cycles, yet while they are built every full
  collection of Python's cyclic collector walks all of them again (at 30,000 keys, half of
  `keyplan plan`'s time, for nothing to collect). Reference counting still frees every object
  the moment it is dropped; only cycles made meanwhile wait for the collector, which runs again
  when the pause ends.
- `frozen_heap`: while an apply walks, the configuration, state and plan built before it are
  still alive, and every full collection would walk them again; they are set apart from the
  collector for the walk (`gc.freeze`), so it looks only at what the walk itself allocates.
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


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Set every object alive now apart from the cyclic collector for the block (`gc.freeze`):
    collections during it look only at objects made since. They are given back when it ends
    (a cycle among them is collected then)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


_M = TypeVar("_M", bound=BaseModel)


@cache
def _blueprint(cls: type[BaseModel]) -> tuple[dict[str, Any], frozenset[str], tuple[str, ...], set[str]]:
    """For `trusted`: every field of `cls` in order with its default (None when it has none),
    the required fields, those whose default is mutable (copied for each instance), and the one
    set of field names the instances share."""
    if cls.__pydantic_post_init__ or cls.__pydantic_root_model__ or cls.__private_attributes__:
        raise TypeError(f"{cls.__name__} needs pydantic's own construction")
    fields = cls.model_fields
    defaults = {name: None if field.is_required() else field.get_default() for name, field in fields.items()}
    required = frozenset(name for name, field in fields.items() if field.is_required())
    mutable = tuple(name for name, value in defaults.items() if isinstance(value, list | dict | set | BaseModel))
    return defaults, required, mutable, set(fields)


def trusted(cls: type[_M], **values: Any) -> _M:
    """An instance of `cls` from values keyplan typed and checked itself, without validating or
    copying them: what `model_construct` does, without its per-field work. Every instance of a
    class shares one set of field names (all of them: keyplan never serialises "unset" fields
    apart), and a field not given takes its default (a copy of a mutable one)."""
    defaults, required, mutable, names = _blueprint(cls)
    state = defaults.copy()  # the fields in their declared order, which serialisation follows
    state.update(values)
    if len(state) != len(defaults):
        raise TypeError(f"{cls.__name__} has no field {sorted(values.keys() - names)[0]}")
    if not required <= values.keys():
        raise TypeError(f"{cls.__name__}.{sorted(required - values.keys())[0]} is required")
    for name in mutable:
        if name not in values:
            state[name] = copy(state[name])
    instance = cls.__new__(cls)
    object.__setattr__(instance, "__dict__", state)
    object.__setattr__(instance, "__pydantic_fields_set__", names)
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance
