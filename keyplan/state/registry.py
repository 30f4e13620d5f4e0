"""Finds state-backend plugins through the `keyplan.state_backends` entry-point group; the
local backend is also known without installation metadata (a source tree never installed)."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from keyplan.state.backend import StateBackendPlugin

GROUP = "keyplan.state_backends"
_BUILTIN = {"local": "keyplan.state.local:PLUGIN"}


def _table() -> dict[str, str]:
    table = dict(_BUILTIN)
    from keyplan.registry import installed

    for ep in installed(GROUP):
        table[ep.name] = ep.value
    return table


@cache
def backend_kinds() -> tuple[str, ...]:
    return tuple(sorted(_table()))


@cache
def backend_plugin(kind: str) -> StateBackendPlugin[Any] | None:
    spec = _table().get(kind)
    if spec is None:
        return None
    module_name, _, attr = spec.partition(":")
    plugin = getattr(importlib.import_module(module_name), attr)
    assert isinstance(plugin, StateBackendPlugin), f"{spec} is not a StateBackendPlugin"
    return plugin
