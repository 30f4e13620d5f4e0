"""Static validation of an evaluated configuration against the installed plugins: everything
that can be checked without contacting a cloud or opening a key source.

Checks: source and provider kinds exist and their blocks match the plugin's settings model;
each key's algorithm and usage are known; its source and targets are declared; the source can
generate the algorithm; at least one wrap method is both producible by the source and accepted
by each target; and each target plugin's own `check_key`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from keyplan import registry
from keyplan.algorithms import ALGORITHMS, KeyUsage, get_algorithm
from keyplan.config.model import Config, KeyConfig, PluginBlock
from keyplan.config.settings_errors import settings_diagnostics
from keyplan.config.suggestions import did_you_mean
from keyplan.diagnostics import Diagnostics
from keyplan.heap import trusted
from keyplan.provider import (
    KeySpec,
    PluginSettings,
    ProviderPlugin,
    ProviderSettings,
    SourceCapabilities,
    SourcePlugin,
    WrapOffer,
)


def key_spec(key: KeyConfig) -> KeySpec:
    """What providers are told about a key. Raises ValueError for an unknown algorithm or usage,
    which `validate_config` reports first as diagnostics."""
    algorithm = get_algorithm(key.algorithm)
    if algorithm is None:
        raise ValueError(f"unknown algorithm {key.algorithm!r} for {key.address}")
    return trusted(  # every value below was checked by the configuration's evaluation
        KeySpec,
        address=key.address,
        algorithm=algorithm,
        usage=KeyUsage(key.usage) if key.usage is not None else algorithm.default_usage,
        labels=dict(key.labels),
        description=key.description,
        aliases=tuple(key.aliases),
        enabled=key.enabled,
        expiry=key.expiry,
        rotation=key.rotation,
        range=key.range,
    )


def validate_config(config: Config) -> Diagnostics:
    diagnostics = Diagnostics()
    sources = {
        address: checked
        for address, block in config.sources.items()
        if (checked := _check_source(block, diagnostics)) is not None
    }
    providers = {
        address: configured
        for address, block in config.providers.items()
        if (configured := _check_provider(block, diagnostics)) is not None
    }
    offers: dict[tuple[str, str], list[WrapOffer]] = {}  # per target and algorithm, asked once
    for key in config.keys.values():
        _check_key(key, config, sources, providers, offers, diagnostics)
    _check_state_backend(config, diagnostics)
    _check_local_state_path(config, diagnostics)
    return diagnostics


STATE_BACKEND_GROUP = "keyplan.state_backends"  # entry points of state backend plugins, beside the built-in "local"


def state_backend_kinds() -> tuple[str, ...]:
    from keyplan.registry import installed

    return tuple(sorted({"local", *(ep.name for ep in installed(STATE_BACKEND_GROUP))}))


def _check_state_backend_kind(config: Config, diagnostics: Diagnostics) -> None:
    """`plan` can only open a state backend that is installed, so `validate` says so first."""
    kinds = state_backend_kinds()
    if config.state.kind not in kinds:
        diagnostics.error(
            "Unknown state backend",
            f"No state backend named {config.state.kind!r} is installed.{did_you_mean(config.state.kind, kinds)} The "
            f"installed backends are {', '.join(kinds)}; correct the label of the state block, or install the "
            "package that provides the backend.",
            range=config.state.range,
        )


def _check_local_state_path(config: Config, diagnostics: Diagnostics) -> None:
    """The local state path names a file: not `/`, not a directory (which every command would
    fail to read or replace)."""
    if config.state.kind != "local":
        return
    path = config.state.attributes.get("path")
    if not isinstance(path, str) or not path.strip():
        diagnostics.error(
            "Invalid state path",
            'The local state path must be a file name, like `path = "keyplan.kpstate.json"`. Correct it.',
            range=config.state.range,
        )
        return
    resolved = Path(config.directory) / path
    if path.endswith(("/", "\\")) or resolved.is_dir():
        diagnostics.error(
            "State path is a directory",
            f"The local state path {path!r} names a directory, and the state is a file. Name a file in it, like "
            f'`path = "{path.rstrip("/")}/keyplan.kpstate.json"`.'.replace('"//', '"/'),
            range=config.state.range,
        )
def _check_state_backend(config: Config, diagnostics: Diagnostics) -> None:
    """The `state "KIND"` block against the installed backends and the backend's settings model."""
    from keyplan.state.workspaces import check_backend_settings

    state = config.state
    check_backend_settings(state.kind, state.attributes, state.range, state.attribute_ranges, diagnostics)


# ---------------------------------------------------------------------------------------------
# Plugin blocks
# ---------------------------------------------------------------------------------------------


def _check_source(block: PluginBlock, diagnostics: Diagnostics) -> tuple[SourcePlugin[Any], SourceCapabilities] | None:
    plugin = _load_plugin(block, "source", diagnostics)
    if not isinstance(plugin, SourcePlugin):
        return None
    settings = _settings(block, plugin.settings_model, "source", diagnostics)
    if settings is None:
        return None
    return plugin, plugin.declared_capabilities(settings)


def _check_provider(
    block: PluginBlock, diagnostics: Diagnostics
) -> tuple[ProviderPlugin[Any], ProviderSettings] | None:
    plugin = _load_plugin(block, "provider", diagnostics)
    if not isinstance(plugin, ProviderPlugin):
        return None
    settings: ProviderSettings | None = _settings(block, plugin.settings_model, "provider", diagnostics)
    if settings is None:
        return None
    return plugin, settings


def _load_plugin(block: PluginBlock, role: str, diagnostics: Diagnostics) -> SourcePlugin[Any] | ProviderPlugin[Any] | None:
    kinds = registry.source_kinds() if role == "source" else registry.provider_kinds()
    if block.kind not in kinds:
        diagnostics.error(
            f"Unknown {role} kind",
            f"No {role} plugin named {block.kind!r} is installed.{did_you_mean(block.kind, kinds)} The installed "
            f"{role} kinds are {', '.join(kinds)}; correct the kind or install the plugin that provides it.",
            range=block.range,
            address=block.address,
        )
        return None
    try:
        return registry.source_plugin(block.kind) if role == "source" else registry.provider_plugin(block.kind)
    except ImportError as exc:
        diagnostics.error(
            f"{role.capitalize()} plugin cannot be loaded",
            f"The plugin for {role} kind {block.kind!r} is registered but could not be imported "
            f"({type(exc).__name__}: {exc}). Reinstall keyplan or the package that provides this plugin.",
            range=block.range,
            address=block.address,
        )
        return None


SettingsT = TypeVar("SettingsT", bound=PluginSettings)


def _settings(block: PluginBlock, model: type[SettingsT], role: str, diagnostics: Diagnostics) -> SettingsT | None:
    try:
        return model.model_validate(block.attributes, context={"sensitive": block.sensitive})
    except ValidationError as exc:
        settings_diagnostics(
            exc.errors(),
            list(model.model_fields),
            diagnostics,
            block=f'{role} "{block.kind}" block {block.address}',
            range=block.range,
            attribute_ranges=block.attribute_ranges,
            address=block.address,
        )
        return None


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def _check_key(
    key: KeyConfig,
    config: Config,
    sources: dict[str, tuple[SourcePlugin[Any], SourceCapabilities]],
    providers: dict[str, tuple[ProviderPlugin[Any], ProviderSettings]],
    offered: dict[tuple[str, str], list[WrapOffer]],
    diagnostics: Diagnostics,
) -> None:
    algorithm = get_algorithm(key.algorithm)
    if algorithm is None:
        diagnostics.error(
            "Unknown algorithm",
            f"keyplan has no algorithm {key.algorithm!r}.{did_you_mean(key.algorithm, ALGORITHMS)} The algorithms are "
            f"{', '.join(ALGORITHMS)}.",
            range=key.range_of("algorithm"),
            address=key.address,
        )
    elif key.usage is not None and key.usage not in {usage.value for usage in algorithm.usages}:
        allowed = ", ".join(usage.value for usage in algorithm.usages)
        diagnostics.error(
            "Usage not allowed for this algorithm",
            f"A {algorithm.name} key can be used for {allowed}, not {key.usage!r}.{did_you_mean(key.usage, [u.value for u in KeyUsage])} "
            "Choose one of those usages or another algorithm.",
            range=key.range_of("usage"),
            address=key.address,
        )
    source_ok = _check_references(key, config, diagnostics)
    if algorithm is None or not source_ok:
        return
    if key.usage is not None and key.usage not in {usage.value for usage in algorithm.usages}:
        return
    spec = key_spec(key)
    capabilities = sources[key.source][1] if key.source in sources else None
    if capabilities is not None and algorithm.name not in capabilities.algorithms:
        diagnostics.error(
            "Source cannot generate this algorithm",
            f"The source {key.source} cannot generate {algorithm.name} keys; it generates "
            f"{', '.join(sorted(capabilities.algorithms)) or 'none'}. Use another algorithm or another source.",
            range=key.range_of("source"),
            address=key.address,
        )
        capabilities = None
    for index, target in enumerate(key.targets):
        if target not in providers:
            continue
        plugin, settings = providers[target]
        target_range = key.attribute_ranges.get(f"targets[{index}]", key.range_of("targets"))
        offers = offered.get((target, algorithm.name))
        if offers is None:
            offers = offered[(target, algorithm.name)] = plugin.wrap_offers(settings, algorithm)
        if capabilities is not None and offers and not {o.method for o in offers} & capabilities.wrap_methods:
            diagnostics.error(
                "No common wrap method",
                f"The target {target} accepts {algorithm.name} material wrapped with "
                f"{', '.join(str(o.method) for o in offers)}, and the source {key.source} can wrap with "
                f"{', '.join(sorted(str(m) for m in capabilities.wrap_methods)) or 'nothing'}. Use a source that "
                "can produce one of the accepted formats.",
                range=target_range,
                address=key.address,
            )
        diagnostics.extend(plugin.check_key(settings, target, spec))


def _check_references(key: KeyConfig, config: Config, diagnostics: Diagnostics) -> bool:
    ok = True
    if key.source not in config.sources:
        ok = False
        hint = did_you_mean(key.source, config.sources, render="source.{}")
        diagnostics.error(
            "Undeclared source",
            f"The key's source {key.source!r} is not declared.{hint} Declare a `source \"KIND\" \"NAME\"` block, or "
            "refer to a declared one as source.KIND.NAME.",
            range=key.range_of("source"),
            address=key.address,
        )
    if not key.targets:
        diagnostics.error(
            "No targets",
            "The key has an empty targets list, so it would be imported nowhere. Add at least one provider, like "
            "targets = [provider.KIND.NAME].",
            range=key.range_of("targets"),
            address=key.address,
        )
    for index, target in enumerate(key.targets):
        if target in config.providers:
            continue
        hint = did_you_mean(target, config.providers, render="provider.{}")
        diagnostics.error(
            "Undeclared provider",
            f"The target {target!r} is not a declared provider.{hint} Declare a `provider \"KIND\" \"NAME\"` block, "
            "or refer to a declared one as provider.KIND.NAME.",
            range=key.attribute_ranges.get(f"targets[{index}]", key.range_of("targets")),
            address=key.address,
        )
    if len(set(key.targets)) != len(key.targets):
        diagnostics.error(
            "Duplicate target",
            "The same provider appears more than once in targets. List each provider once.",
            range=key.range_of("targets"),
            address=key.address,
        )
    return ok
