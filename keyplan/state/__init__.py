"""State: the record of what keyplan manages (model), how it is stored (local backend with
atomic writes, backups and locking) and how old formats are upgraded."""

from keyplan.state.local import LocalBackend, LockInfo
from keyplan.state.model import (
    FORMAT_VERSION,
    ImportedVersion,
    KeyRecord,
    MaterialVersion,
    State,
    TargetRecord,
)

__all__ = [
    "FORMAT_VERSION",
    "ImportedVersion",
    "KeyRecord",
    "LocalBackend",
    "LockInfo",
    "MaterialVersion",
    "State",
    "TargetRecord",
]
