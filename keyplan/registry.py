"""Finds provider and key-source plugins through the `keyplan.providers` and `keyplan.sources`
entry-point groups; built-in plugins are found the same way as third-party ones, with a
fallback to the built-in table when running from a source tree that was never installed.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from keyplan.provider import ProviderPlugin, SourcePlugin

_BUILTIN_PROVIDERS = {"aws": "providers.aws:PLUGIN", "gcp": "providers.gcp:PLUGIN", "azure": "providers.azure:PLUGIN"}
_BUILTIN_SOURCES = {"software": "providers.software:PLUGIN", "pkcs11": "providers.pkcs11:PLUGIN"}


def _load(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _table(group: str, builtin: dict[str, str]) -> dict[str, str]:
    table = dict(builtin)
    for ep in entry_points(group=group):
        table[ep.name] = ep.value
    return table


@cache
def provider_kinds() -> tuple[str, ...]:
    return tuple(sorted(_table("keyplan.providers", _BUILTIN_PROVIDERS)))


@cache
def source_kinds() -> tuple[str, ...]:
    return tuple(sorted(_table("keyplan.sources", _BUILTIN_SOURCES)))


@cache
def provider_plugin(kind: str) -> ProviderPlugin[Any] | None:
    spec = _table("keyplan.providers", _BUILTIN_PROVIDERS).get(kind)
    if spec is None:
        return None
    plugin = _load(spec)
    assert isinstance(plugin, ProviderPlugin), f"{spec} is not a ProviderPlugin"
    return plugin


@cache
def source_plugin(kind: str) -> SourcePlugin[Any] | None:
    spec = _table("keyplan.sources", _BUILTIN_SOURCES).get(kind)
    if spec is None:
        return None
    plugin = _load(spec)
    assert isinstance(plugin, SourcePlugin), f"{spec} is not a SourcePlugin"
    return plugin
