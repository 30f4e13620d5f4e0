"""keyplan CLI commands for where state lives (registered by keyplan.cli.main):

- `keyplan workspace list | show | new | select | delete`: one state per workspace, in every
  backend; the configuration reads the current one as `keyplan.workspace`;
- `keyplan init [-migrate-state | -reconfigure]`: record the configured state backend, and when
  the `state` block changed, move every workspace's state (journal included) to the new backend
  under both backends' locks, refusing a target that holds another state's history.

Every command that uses state checks the configured backend against the one recorded in
`.keyplan/backend.json` (`check_recorded_backend`), so changing the `state` block never
silently starts from an empty state somewhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from keyplan.cli.options import LockOpt, LockTimeoutOpt, emit, load, parse_bool, parse_duration
from keyplan.cli.options import workspace as configuration_dir
from keyplan.config.model import Config
from keyplan.diagnostics import DiagnosticsError
from keyplan.state.backend import DEFAULT_WORKSPACE, StateBackend, valid_workspace_name
from keyplan.state.model import State
from keyplan.state.store import StateStore
from keyplan.state.workspaces import _configured, _record, _recorded, check_recorded_backend


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    workspace_app = typer.Typer(help="Manage workspaces: one state per workspace.", no_args_is_help=True)
    workspace_app.command("list")(workspace_list)
    workspace_app.command("show")(workspace_show)
    workspace_app.command("new")(workspace_new)
    workspace_app.command("select")(workspace_select)
    workspace_app.command("delete")(workspace_delete)
    app.add_typer(workspace_app, name="workspace")
    app.command("init")(init)


# ---------------------------------------------------------------------------------------------
# The configured backend
# ---------------------------------------------------------------------------------------------


def _open(kind: str, attributes: dict[str, Any], directory: Path, config: Config | None = None) -> StateBackend:
    from keyplan.state.workspaces import open_backend

    if config is not None:
        return open_backend(
            kind,
            attributes,
            directory,
            range=config.state.range,
            attribute_ranges=config.state.attribute_ranges,
            sensitive=config.state.sensitive,
        )
    return open_backend(kind, attributes, directory)


def _backend(config: Config) -> StateBackend:
    check_recorded_backend(config)
    return _open(config.state.kind, config.state.attributes, Path(config.directory), config)


# ---------------------------------------------------------------------------------------------
# keyplan workspace
# ---------------------------------------------------------------------------------------------


def _current() -> str:
    from keyplan.state.workspaces import current_workspace

    return current_workspace(configuration_dir().directory)


def _check_name(name: str) -> None:
    if not valid_workspace_name(name):
        raise DiagnosticsError.single(
            f"Invalid workspace name {name[:64]!r}",
            "Workspace names use letters, digits, - and _ (at most 64 characters), e.g. prod or eu-west.",
        )


def workspace_list() -> None:
    """List the workspaces; the current one is marked with *."""
    config = load([], [], no_color=True, validate=False)
    current = _current()
    names = _backend(config).workspaces()
    for name in sorted(set(names) | {current}):
        emit(f"{'*' if name == current else ' '} {name}\n")


def workspace_show() -> None:
    """Print the current workspace's name."""
    emit(_current() + "\n")


def workspace_new(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new workspace's name.")],
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Create a workspace with an empty state and select it."""
    from keyplan.state.workspaces import record_workspace

    _check_name(name)
    config = load([], [], no_color=True, validate=False)
    backend = _backend(config)
    if name in backend.workspaces():
        raise DiagnosticsError.single(
            f"Workspace {name} already exists", f"Select it with `keyplan workspace select {name}`."
        )
    store = StateStore(backend, name)
    with _locked(store, "workspace new", lock, lock_timeout):
        store.write(State())
    record_workspace(configuration_dir().directory, name)
    emit(f'Created and switched to workspace "{name}". It has an empty state: keyplan apply creates its keys.\n')


def workspace_select(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The workspace to use from now on in this directory.")],
    or_create: Annotated[
        bool, typer.Option("-or-create", "--or-create", help="Create the workspace if it does not exist.")
    ] = False,
) -> None:
    """Use another workspace (recorded in .keyplan/environment; KEYPLAN_WORKSPACE overrides it)."""
    from keyplan.config.suggestions import did_you_mean
    from keyplan.state.workspaces import record_workspace

    _check_name(name)
    config = load([], [], no_color=True, validate=False)
    backend = _backend(config)
    names = backend.workspaces()
    if name not in names:
        if not or_create:
            raise DiagnosticsError.single(
                f"Workspace {name} does not exist",
                f"The workspaces are {', '.join(names)}.{did_you_mean(name, names)} Create it with "
                f"`keyplan workspace new {name}` (or pass -or-create).",
            )
        StateStore(backend, name).write(State())
    record_workspace(configuration_dir().directory, name)
    emit(f'Switched to workspace "{name}".\n')


def workspace_delete(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The workspace to delete.")],
    force: Annotated[
        bool, typer.Option("-force", "--force", help="Delete even if its state still records keys.")
    ] = False,
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Delete a workspace's state (its remote keys stay as they are)."""
    _check_name(name)
    if name == DEFAULT_WORKSPACE:
        raise DiagnosticsError.single("The default workspace cannot be deleted", "Delete other workspaces only.")
    if name == _current():
        raise DiagnosticsError.single(
            f"Workspace {name} is the current workspace",
            f"Select another one first (`keyplan workspace select {DEFAULT_WORKSPACE}`), then delete {name}.",
        )
    config = load([], [], no_color=True, validate=False)
    backend = _backend(config)
    if name not in backend.workspaces():
        raise DiagnosticsError.single(f"Workspace {name} does not exist", "`keyplan workspace list` shows them.")
    store = StateStore(backend, name)
    with _locked(store, "workspace delete", lock, lock_timeout):
        state = store.read()
        if state is not None and state.keys and not force:
            raise DiagnosticsError.single(
                f"Workspace {name} still manages {len(state.keys)} key(s)",
                "Deleting its state would leave those keys at the clouds with nothing recording them. Destroy them "
                "first (remove their key blocks and apply in that workspace), or pass -force to delete the state "
                "anyway (the keys keep their keyplan tags; `keyplan discover` finds them).",
            )
        backend.delete_workspace(name)
    emit(f'Deleted workspace "{name}".\n')


def _locked(store: StateStore, operation: str, lock: str, lock_timeout: str) -> Any:
    from contextlib import nullcontext

    if not parse_bool("lock", lock):
        return nullcontext()
    return store.locked(operation, parse_duration("lock-timeout", lock_timeout).total_seconds())


# ---------------------------------------------------------------------------------------------
# keyplan init
# ---------------------------------------------------------------------------------------------


def init(
    migrate_state: Annotated[
        bool, typer.Option("-migrate-state", "--migrate-state", help="Move the state to the newly configured backend.")
    ] = False,
    reconfigure: Annotated[
        bool, typer.Option("-reconfigure", "--reconfigure", help="Use the configured backend without moving state.")
    ] = False,
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
) -> None:
    """Prepare this directory: record the state backend, or move state after the backend changed."""
    if migrate_state and reconfigure:
        raise DiagnosticsError.single("Choose one of -migrate-state and -reconfigure", "They exclude each other.")
    config = load([], [], no_color=True, validate=True)
    directory = Path(config.directory)
    recorded, configured = _recorded(directory), _configured(config)
    target = _open(config.state.kind, config.state.attributes, directory, config)
    if recorded is None or recorded == configured or reconfigure:
        target.workspaces()  # reaches the backend: a wrong bucket or database is reported now
        _record(directory, configured)
        emit(f'keyplan has been initialized: state "{config.state.kind}" at {target.describe(_current())}.\n')
        return
    if not migrate_state:
        check_recorded_backend(config)  # raises: says what to choose
    source = _open(str(recorded["kind"]), dict(recorded.get("attributes", {})), directory)
    moved = [
        line
        for workspace in source.workspaces()
        if (line := _migrate(source, target, workspace, lock, lock_timeout)) is not None
    ]
    _record(directory, configured)
    for line in moved:
        emit(line + "\n")
    emit(
        f'\nThe state now lives in state "{config.state.kind}" ({len(moved)} workspace(s) moved). The old copies '
        "were left where they were; remove them once you have checked the new backend.\n"
    )


def _migrate(source: StateBackend, target: StateBackend, workspace: str, lock: str, lock_timeout: str) -> str | None:
    old, new = StateStore(source, workspace), StateStore(target, workspace)
    with _locked(old, "init -migrate-state", lock, lock_timeout), _locked(new, "init -migrate-state", lock, lock_timeout):
        state = old.read()
        if state is None:
            return None
        existing = new.read()
        if existing is not None and existing.lineage != state.lineage:
            raise DiagnosticsError.single(
                f"The new backend already holds another state for workspace {workspace}",
                f"{new.where} has lineage {existing.lineage}; the state being moved has lineage {state.lineage}. "
                "They are different histories, so moving would replace every record kept there. Point the state "
                "block at an empty location, or remove that state first if it is really unused.",
            )
        if existing is not None and existing.serial >= state.serial:
            return f"{workspace}: already at serial {existing.serial} in {new.where}"
        new.write_current(state)  # the journal replayed into it: nothing an interrupted apply finished is lost
        return f"{workspace}: moved serial {state.serial} ({len(state.keys)} keys) from {old.where} to {new.where}"
