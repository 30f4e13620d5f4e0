"""Which backend and workspace a command uses.

The backend comes from the configuration's `keyplan { state "KIND" { ... } }` block (default:
the local file), validated against the backend plugin's settings model. The current workspace is
`KEYPLAN_WORKSPACE` when set, else the one `keyplan workspace select` recorded in
`.keyplan/environment` under the configuration directory, else "default".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from keyplan.config.model import Config

from keyplan.config.settings_errors import settings_diagnostics
from keyplan.config.suggestions import did_you_mean
from keyplan.diagnostics import Diagnostics, DiagnosticsError, SourceRange
from keyplan.state.backend import (
    DEFAULT_WORKSPACE,
    BackendContext,
    StateBackend,
    StateBackendPlugin,
    StateBackendSettings,
    valid_workspace_name,
)
from keyplan.state.registry import backend_kinds, backend_plugin
from keyplan.state.store import StateStore

ENVIRONMENT_FILE = Path(".keyplan") / "environment"
WORKSPACE_VARIABLE = "KEYPLAN_WORKSPACE"

BACKEND_RECORD = Path(".keyplan") / "backend.json"

_opened: list[StateBackend] = []


def current_workspace(directory: Path, environ: Mapping[str, str] = os.environ) -> str:
    name = environ.get(WORKSPACE_VARIABLE, "").strip()
    if not name:
        try:
            name = (directory / ENVIRONMENT_FILE).read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            name = ""
    name = name or DEFAULT_WORKSPACE
    if not valid_workspace_name(name):
        raise DiagnosticsError.single(
            f"Invalid workspace name {name[:64]!r}",
            f"Workspace names use letters, digits, - and _ (at most 64). Correct {WORKSPACE_VARIABLE} or run "
            "`keyplan workspace select NAME`.",
        )
    return name


def record_workspace(directory: Path, name: str) -> None:
    path = directory / ENVIRONMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n")


def check_backend_settings(
    kind: str,
    attributes: Mapping[str, object],
    range: SourceRange | None,
    attribute_ranges: Mapping[str, SourceRange],
    diagnostics: Diagnostics,
    sensitive: frozenset[str] = frozenset(),
) -> tuple[StateBackendPlugin[Any], StateBackendSettings] | None:
    """The plugin and its settings for a `state "KIND"` block; problems become diagnostics at
    the block or the attribute, with a suggestion for misspelt kinds and arguments."""
    kinds = backend_kinds()
    if kind not in kinds:
        diagnostics.error(
            "Unknown state backend kind",
            f"No state backend named {kind!r} is installed.{did_you_mean(kind, kinds)} The installed kinds are "
            f"{', '.join(kinds)}; correct the kind or install the package that provides it.",
            range=range,
        )
        return None
    try:
        plugin = backend_plugin(kind)
    except ImportError as exc:
        diagnostics.error(
            "State backend cannot be loaded",
            f"The state backend {kind!r} is registered but could not be imported ({type(exc).__name__}: {exc}). "
            "Reinstall keyplan or the package that provides it.",
            range=range,
        )
        return None
    assert plugin is not None
    fields = list(plugin.settings_model.model_fields)
    try:
        settings = plugin.settings_model.model_validate(dict(attributes), context={"sensitive": sensitive})
    except ValidationError as exc:
        settings_diagnostics(
            exc.errors(), fields, diagnostics, block=f'state "{kind}" block', range=range, attribute_ranges=attribute_ranges
        )
        return None
    diagnostics.extend(plugin.check(settings))
    return plugin, settings


def open_backend(
    kind: str,
    attributes: Mapping[str, object],
    directory: Path,
    *,
    range: SourceRange | None = None,
    attribute_ranges: Mapping[str, SourceRange] | None = None,
    sensitive: frozenset[str] = frozenset(),
) -> StateBackend:
    diagnostics = Diagnostics()
    checked = check_backend_settings(kind, attributes, range, attribute_ranges or {}, diagnostics, sensitive)
    if checked is None or diagnostics.has_errors():
        raise DiagnosticsError(diagnostics)
    plugin, settings = checked
    backend = plugin.open(settings, BackendContext(working_dir=directory))
    _opened.append(backend)
    return backend


def open_store(
    kind: str,
    attributes: Mapping[str, object],
    directory: Path,
    workspace: str,
    *,
    range: SourceRange | None = None,
    attribute_ranges: Mapping[str, SourceRange] | None = None,
    sensitive: frozenset[str] = frozenset(),
) -> StateStore:
    backend = open_backend(
        kind, attributes, directory, range=range, attribute_ranges=attribute_ranges, sensitive=sensitive
    )
    return StateStore(backend, workspace)


def close_all() -> None:
    """Close every backend this process opened (connections, and session locks with them)."""
    while _opened:
        _opened.pop().close()


# The backend a directory last used: changing the `state` block needs `keyplan init`.


def _configured(config: Config) -> dict[str, Any]:
    return {"kind": config.state.kind, "attributes": config.state.attributes}


def _recorded(directory: Path) -> dict[str, Any] | None:
    try:
        recorded = json.loads((directory / BACKEND_RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _record(directory: Path, backend: dict[str, Any]) -> None:
    path = directory / BACKEND_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(backend, indent=2, sort_keys=True) + "\n")


def check_recorded_backend(config: Config) -> None:
    """Refuse to use a backend other than the one this directory last used, until `keyplan init`
    says whether to move the state there (-migrate-state) or start over (-reconfigure)."""
    directory = Path(config.directory)
    recorded, configured = _recorded(directory), _configured(config)
    if recorded is None:
        _record(directory, configured)
        return
    if recorded != configured:
        raise DiagnosticsError.single(
            "The state backend changed",
            f'This directory last kept its state in state "{recorded.get("kind")}" and the configuration now says '
            f'state "{configured["kind"]}" (or other settings). Run `keyplan init -migrate-state` to move every '
            "workspace's state to the new backend, or `keyplan init -reconfigure` to use the new backend as it is "
            "(the old state stays where it was).",
            range=config.state.range,
        )
