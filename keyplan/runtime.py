"""A run's open plugins: key sources and providers opened once, on first use, shared by the
planner and the apply walker, and closed at the end (which stops embedded emulators).

Plugin failures to open (missing module, unreachable HSM, bad credentials) become diagnostics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from keyplan.config.model import Config, PluginBlock
from keyplan.diagnostics import DiagnosticsError
from keyplan.limits import DEFAULT_THROTTLE_TIMEOUT, CallLimits
from keyplan.provider import (
    KeySource,
    PluginSettings,
    Provider,
    ProviderError,
    ProviderPlugin,
    ProviderSettings,
    RuntimeContext,
    SourceError,
    SourcePlugin,
)
from keyplan.registry import provider_plugin, source_plugin

SettingsT = TypeVar("SettingsT", bound=PluginSettings)
Opened = TypeVar("Opened", Provider, KeySource)


def _settings(block: PluginBlock, model: type[SettingsT]) -> SettingsT:
    try:
        return model.model_validate(block.attributes, context={"sensitive": block.sensitive})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DiagnosticsError.single(
            f"Invalid {block.kind} settings",
            f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}. Run `keyplan validate` for every problem.",
            range=block.range,
            address=block.address,
        ) from None


class Session:
    def __init__(
        self, config: Config, *, log: logging.Logger | None = None, throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT
    ) -> None:
        self.config = config
        self.limits = CallLimits(throttle_timeout=throttle_timeout)  # every provider's calls, by quota
        self.working_dir = Path(config.directory)
        self.data_dir = self.working_dir / ".keyplan"
        self.log = log or logging.getLogger("keyplan")
        self._providers: dict[str, Provider] = {}
        self._sources: dict[str, KeySource] = {}
        self._lock = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}

    def context(self, address: str) -> RuntimeContext:
        return RuntimeContext(
            address=address, working_dir=self.working_dir, data_dir=self.data_dir, log=self.log, limits=self.limits
        )

    def provider_plugin(self, address: str) -> tuple[ProviderPlugin[Any], ProviderSettings]:
        block = self.config.providers[address]
        plugin = provider_plugin(block.kind)
        if plugin is None:
            raise DiagnosticsError.single(f"Unknown provider kind {block.kind!r}", range=block.range)
        return plugin, _settings(block, plugin.settings_model)

    def source_plugin(self, address: str) -> tuple[SourcePlugin[Any], PluginSettings]:
        block = self.config.sources[address]
        plugin = source_plugin(block.kind)
        if plugin is None:
            raise DiagnosticsError.single(f"Unknown source kind {block.kind!r}", range=block.range)
        return plugin, _settings(block, plugin.settings_model)

    def _once(self, address: str) -> threading.Lock:
        with self._lock:
            return self._opening.setdefault(address, threading.Lock())

    def provider(self, address: str) -> Provider:
        def open_provider() -> Provider:
            plugin, settings = self.provider_plugin(address)
            return plugin.open(settings, self.context(address))

        return self._opened(self._providers, address, self.config.providers[address], open_provider, ProviderError)

    def source(self, address: str) -> KeySource:
        def open_source() -> KeySource:
            plugin, settings = self.source_plugin(address)
            return plugin.open(settings, self.context(address))

        return self._opened(self._sources, address, self.config.sources[address], open_source, SourceError)

    def _opened(
        self,
        opened: dict[str, Opened],
        address: str,
        block: PluginBlock,
        open_plugin: Callable[[], Opened],
        refusal: type[ProviderError] | type[SourceError],
    ) -> Opened:
        """The plugin of `block`, opened on first use (once, however many threads ask); its
        refusal to open is a diagnostic on the block."""
        found = opened.get(address)
        if found is not None:  # opened already: every call of an apply's workers comes here
            return found
        role = "provider" if refusal is ProviderError else "source"
        with self._once(address):
            if address not in opened:
                try:
                    opened[address] = open_plugin()
                except refusal as exc:
                    raise DiagnosticsError.single(
                        f"Cannot open {role} {address}: {exc.summary}", exc.detail, range=block.range, address=address
                    ) from None
            return opened[address]

    def close(self) -> None:
        for provider in self._providers.values():
            try:
                provider.close()
            except Exception:  # closing must not hide the run's own outcome
                self.log.debug("closing a provider failed", exc_info=True)
        for source in self._sources.values():
            try:
                source.close()
            except Exception:
                self.log.debug("closing a source failed", exc_info=True)
        self._providers.clear()
        self._sources.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
