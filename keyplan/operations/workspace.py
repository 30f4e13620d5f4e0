"""The configuration directory of one run: its configuration, its state backend and the lock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.heap import collector_paused

if TYPE_CHECKING:  # every command module imports this one: what it names costs nothing until used
    from keyplan.config.model import Config
    from keyplan.state.model import State
    from keyplan.state.store import StateStore

DEFAULT_STATE_FILE = "keyplan.kpstate.json"


@dataclass(frozen=True)
class Variables:
    """Variable values given on the command line, as `-var` and `-var-file`."""

    args: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class LockOptions:
    enabled: bool = True
    timeout: timedelta = field(default=timedelta(0))


@dataclass(frozen=True)
class Workspace:
    """A configuration directory (after -chdir). Paths the user gives are read relative to it."""

    directory: Path

    def path(self, given: Path) -> Path:
        return given if given.is_absolute() else self.directory / given

    def check(
        self,
        variables: Variables = Variables(),
        *,
        planned_values: Mapping[str, object] | None = None,
        validate: bool = True,
    ) -> tuple[Config | None, Diagnostics]:
        """Load the configuration and (unless `validate` is off) validate it; every problem comes back
        as a diagnostic."""
        from keyplan.config.load import load_config
        from keyplan.config.validate import validate_config

        with collector_paused():
            config, diagnostics = load_config(
                self.directory,
                var_args=list(variables.args),
                var_files=[self.path(f) for f in variables.files],
                planned_values=planned_values,
            )
            if config is not None and validate:
                diagnostics.extend(validate_config(config))
        return config, diagnostics

    def load(
        self,
        variables: Variables = Variables(),
        *,
        validate: bool = True,
        planned_values: Mapping[str, object] | None = None,
    ) -> tuple[Config, Diagnostics]:
        """The configuration and its warnings; errors are raised."""
        config, diagnostics = self.check(variables, planned_values=planned_values, validate=validate)
        if diagnostics.has_errors() or config is None:
            raise DiagnosticsError(diagnostics)
        return config, Diagnostics(diagnostics.warnings)


def state_backend(config: Config) -> StateStore:
    """The current workspace's state in the configured backend."""
    from keyplan.state.workspaces import check_recorded_backend, current_workspace, open_store

    check_recorded_backend(config)
    directory = Path(config.directory)
    return open_store(
        config.state.kind,
        config.state.attributes,
        directory,
        current_workspace(directory),
        range=config.state.range,
        attribute_ranges=config.state.attribute_ranges,
        sensitive=config.state.sensitive,
    )


@contextmanager
def locked(backend: StateStore, operation: str, lock: LockOptions) -> Iterator[None]:
    if not lock.enabled:
        yield
        return
    with backend.locked(operation, lock.timeout.total_seconds()):
        yield


def refuse_lost_state(backend: StateStore) -> None:
    """After `read_state`: a state document that is missing while its backup or a journal is
    there was lost (deleted, moved, a path changed), not never written. Planning from nothing
    would create every key a second time, so say how to get it back instead."""
    if backend.document_found:
        return
    backup = backend.backend.previous_copy(backend.workspace)
    partial_journal = backend.has_journal and not backend.journal_is_whole
    if backup is None and not partial_journal:
        return  # never written, or a first apply interrupted (its journal holds everything)
    where = backend.where
    if backup is not None:
        restore = (
            f"{backup.where} is its copy from before the last write. Restore it (`{backup.restore}`), then run "
            "`keyplan plan` again and read it before applying."
        )
        found = f"its previous copy {backup.where} is there"
    else:
        restore = (
            "The journal holds only what the last apply finished, not the keys recorded before it. Restore the "
            "state from your copies or the backend's history, then run `keyplan plan` again."
        )
        found = "the journal of an interrupted apply, which started from a state document, is there"
    raise DiagnosticsError.single(
        "The state is missing, but it existed",
        f"No state was found at {where}, yet {found}. Planning from an empty state would create a second key for "
        f"every address at its targets. {restore} To start a new state here on purpose, move the leftovers aside "
        "or pass -allow-new-lineage.",
    )


_TAIL_APPENDS = 200  # appends read back for an interrupted apply's last entries (a store may keep one object each)


def unsettled_creates(backend: StateStore) -> tuple[tuple[str, str, datetime], ...]:
    """Keys an interrupted apply of this workspace announced creating and never recorded: a
    `create_key` entry `started` in the audit trail (durable before the call) with no outcome
    after it. Such a key may exist while its cloud does not list it yet (eventual consistency),
    so the plan waits for it instead of creating a second one. Only read after an interrupted
    apply (its journal is there); a damaged trail is `keyplan log -verify`'s to report."""
    if not backend.has_journal:
        return ()
    from keyplan.apply.audit import DamagedAuditEntry, read_audit
    from keyplan.state.backend import StateError

    try:
        entries = read_audit(backend.backend.read_audit_tail(_TAIL_APPENDS))
    except (DamagedAuditEntry, StateError):
        return ()
    started: dict[tuple[str, str], datetime] = {}
    for entry in entries:
        if entry.get("action") != "create_key" or entry.get("workspace", backend.workspace) != backend.workspace:
            continue
        where = (str(entry.get("address")), str(entry.get("target")))
        if entry.get("outcome") != "started":
            started.pop(where, None)
            continue
        try:
            when = datetime.fromisoformat(str(entry.get("time")))
        except ValueError:
            continue
        if when.tzinfo is not None:  # keyplan writes UTC times; an edited entry without a zone is ignored
            started[where] = when
    return tuple((address, target, when) for (address, target), when in sorted(started.items()))


def read_state(backend: StateStore) -> tuple[State, bool]:
    """The state, and whether it existed (a new state otherwise)."""
    from keyplan.state.model import State

    state = backend.read()
    return (state, True) if state is not None else (State(), False)
