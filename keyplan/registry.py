"""Finds plugins the way keyring finds backends: through entry points, and only through them.
keyplan ships its own providers and key sources as ordinary plugins of the same groups, so an
installed third-party plugin is found exactly like a built-in one.

Entry-point groups:

- `keyplan.providers`: NAME = a `ProviderPlugin` instance (the `provider "NAME"` block kind);
- `keyplan.sources`: NAME = a `SourcePlugin` instance (the `source "NAME"` block kind);
- `keyplan.commands`: NAME = a `CommandContribution`, a callable that adds a plugin's own
  commands to the `keyplan` command line (e.g. a key source's set-up commands);
- `keyplan.signers`: SCHEME = a `SignerPlugin` (`keyplan.signers`) opening the approval signers
  that `keyplan approve -signer SCHEME:...` names (a key in a hardware token, for example).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import EntryPoint, EntryPoints, entry_points
from typing import TYPE_CHECKING, Any

from keyplan.provider import ProviderPlugin, SourcePlugin

if TYPE_CHECKING:
    from keyplan.signers import SignerPlugin

PROVIDERS = "keyplan.providers"
SOURCES = "keyplan.sources"
COMMANDS = "keyplan.commands"
SIGNERS = "keyplan.signers"

# What a `keyplan.commands` entry point names: called once with the `keyplan` typer app.
CommandContribution = Callable[[Any], None]


class PluginLoadError(ImportError):
    """An entry point names something that is not the plugin its group promises (reported like a
    plugin that cannot be imported)."""


@cache
def _installed() -> EntryPoints:
    """Every installed entry point, read once: each lookup by group would read every installed
    package's metadata again (a few hundred files at each start)."""
    found: Any = entry_points()  # Python 3.11: a mapping of groups; from 3.12: EntryPoints
    if isinstance(found, EntryPoints):
        return found
    return EntryPoints(point for points in found.values() for point in points)


def installed(group: str) -> EntryPoints:
    """The installed entry points of `group` (from the one reading of them all)."""
    return _installed().select(group=group)


@cache
def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in sorted(_installed().select(group=group), key=lambda ep: ep.name)}


def _load(group: str, name: str, expected: type[object]) -> Any:
    entry = _entry_points(group).get(name)
    if entry is None:
        return None
    plugin = entry.load()
    if not isinstance(plugin, expected):
        raise PluginLoadError(f"the entry point {group}:{name} = {entry.value} is not a {expected.__name__}")
    return plugin


@cache
def provider_kinds() -> tuple[str, ...]:
    return tuple(_entry_points(PROVIDERS))


@cache
def source_kinds() -> tuple[str, ...]:
    return tuple(_entry_points(SOURCES))


@cache
def provider_plugin(kind: str) -> ProviderPlugin[Any] | None:
    plugin: ProviderPlugin[Any] | None = _load(PROVIDERS, kind, ProviderPlugin)
    return plugin


@cache
def source_plugin(kind: str) -> SourcePlugin[Any] | None:
    plugin: SourcePlugin[Any] | None = _load(SOURCES, kind, SourcePlugin)
    return plugin


@cache
def signer_schemes() -> tuple[str, ...]:
    return tuple(_entry_points(SIGNERS))


@cache
def signer_plugin(scheme: str) -> SignerPlugin | None:
    from keyplan.signers import SignerPlugin

    plugin: SignerPlugin | None = _load(SIGNERS, scheme, SignerPlugin)
    return plugin


def command_contributions() -> list[tuple[str, CommandContribution]]:
    """Every plugin's command contribution, by entry-point name."""
    found: list[tuple[str, CommandContribution]] = []
    for name, entry in _entry_points(COMMANDS).items():
        contribution = entry.load()
        if not callable(contribution):
            raise PluginLoadError(f"the entry point {COMMANDS}:{name} = {entry.value} is not callable")
        found.append((name, contribution))
    return found
