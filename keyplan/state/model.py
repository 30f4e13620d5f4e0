"""The state: what keyplan last did, one record per key address. Never key material.

A key record holds the key's material versions as the source knows them (handle, fingerprint,
when generated) and, per target, the remote key id, which material versions were imported
(with the remote version ids and expiry) and the metadata keyplan last set. `serial` grows by
one with every write; `lineage` names one history of states, so plan files and pushes can tell
a newer copy of the same state from a different state altogether.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from keyplan import __version__
from keyplan.provider import PrerequisiteRecord

FORMAT_VERSION = 2


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MaterialVersion(_Model):
    version: int = Field(ge=1)
    handle: str  # reference inside the key source; not the material
    fingerprint: str | None  # None: dropped by a format upgrade, recomputed through the source at the next apply
    created_at: datetime


class ImportedVersion(_Model):
    material_version: int
    remote_version_id: str
    imported_at: datetime
    expires_at: datetime | None = None


class TargetRecord(_Model):
    remote_id: str
    exists_remotely: bool = True  # False until the first import where the cloud creates on import
    imports: list[ImportedVersion] = []
    current_material_version: int | None = None
    labels: dict[str, str] = {}
    aliases: list[str] = []
    description: str | None = None
    enabled: bool = True
    deletion_date: datetime | None = None  # set once deletion was scheduled

    def imported(self, material_version: int) -> ImportedVersion | None:
        for entry in reversed(self.imports):
            if entry.material_version == material_version:
                return entry
        return None


class KeyRecord(_Model):
    address: str
    algorithm: str
    usage: str
    source: str
    prevent_destroy: bool = False
    materials: list[MaterialVersion] = []
    targets: dict[str, TargetRecord] = {}

    @property
    def latest_material(self) -> MaterialVersion | None:
        return max(self.materials, key=lambda m: m.version) if self.materials else None

    def material(self, version: int) -> MaterialVersion | None:
        for entry in self.materials:
            if entry.version == version:
                return entry
        return None


class State(_Model):
    format_version: int = FORMAT_VERSION
    serial: int = 0
    lineage: str = Field(default_factory=lambda: uuid.uuid4().hex)
    keyplan_version: str = __version__
    keys: dict[str, KeyRecord] = {}
    prerequisites: dict[str, dict[str, PrerequisiteRecord]] = {}  # target -> prerequisite id -> record

    @property
    def managed_by(self) -> str:
        """The value of the keyplan-managed-by tag on every remote key of this state's lineage."""
        return f"keyplan-{self.lineage}"

    def record_prerequisite(self, target: str, record: PrerequisiteRecord) -> None:
        self.prerequisites.setdefault(target, {})[record.id] = record
