"""State: the record of what keyplan manages (model), where it is kept (the backend contract
in backend.py, the local file backend, a workspace's store in store.py) and how old formats are
upgraded."""

from keyplan.state.backend import (
    DEFAULT_WORKSPACE,
    JournalEntry,
    LockInfo,
    StateBackend,
    StateBackendPlugin,
    StateBackendSettings,
    StateError,
    StateErrorKind,
    StoredState,
)
from keyplan.state.local import LocalBackend
from keyplan.state.model import (
    FORMAT_VERSION,
    ImportedVersion,
    KeyRecord,
    MaterialVersion,
    State,
    TargetRecord,
)
from keyplan.state.store import StateStore

__all__ = [
    "DEFAULT_WORKSPACE",
    "FORMAT_VERSION",
    "ImportedVersion",
    "JournalEntry",
    "KeyRecord",
    "LocalBackend",
    "LockInfo",
    "MaterialVersion",
    "State",
    "StateBackend",
    "StateBackendPlugin",
    "StateBackendSettings",
    "StateError",
    "StateErrorKind",
    "StateStore",
    "StoredState",
    "TargetRecord",
]
