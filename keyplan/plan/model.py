"""The plan: what keyplan intends to do, as data that can be saved, reviewed and applied.

A plan holds three things. `changes` say, per key and target, what will happen and why (the
reviewable part). `drift` says what changed outside keyplan since the state was written.
`actions` are the action graph: single source or provider operations with their dependencies,
which `apply` walks. Apply never consults the configuration: everything it needs is here, so a
saved plan applies exactly what was reviewed. Plans hold no secrets.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from keyplan.crypto.wrap import WrapMethod
from keyplan.diagnostics import Diagnostic
from keyplan.policy.model import Finding
from keyplan.provider import KeySpec

PLAN_FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChangeAction(StrEnum):
    CREATE = "create"  # new remote key (+ material import)
    ADOPT = "adopt"  # a remote key tagged with this address, created by an interrupted apply
    IMPORT = "import"  # first import of material into an existing remote key
    REIMPORT = "reimport"  # the same material again, after the cloud lost it
    ROTATE = "rotate"  # a new material version, made current
    UPDATE = "update"  # labels, aliases, description, enabled
    RESTORE = "restore"  # cancel a deletion scheduled outside keyplan
    DELETE = "delete"  # schedule deletion (key or target removed from config)
    FORGET = "forget"  # drop from state only
    NOOP = "no-op"

    @property
    def symbol(self) -> str:
        return {
            "create": "+",
            "adopt": "+",
            "import": "~",
            "reimport": "±",
            "rotate": "±",
            "update": "~",
            "restore": "~",
            "delete": "-",
            "forget": "-",
            "no-op": " ",
        }[self.value]


class Metadata(_Model):
    labels: dict[str, str] = {}
    aliases: list[str] = []
    description: str | None = None
    enabled: bool = True


class WrapChoice(_Model):
    method: WrapMethod
    wrapping_key_bits: int
    in_hardware: bool = False


class PlannedChange(_Model):
    address: str
    target: str | None = None  # provider address; None for source-only changes
    actions: list[ChangeAction]
    reason: str
    remote_id: str | None = None
    before: Metadata | None = None
    after: Metadata | None = None
    wrap: WrapChoice | None = None
    material_version: int | None = None
    notes: list[str] = []

    @property
    def symbol(self) -> str:
        if ChangeAction.DELETE in self.actions:
            return "-"
        if ChangeAction.CREATE in self.actions or ChangeAction.ADOPT in self.actions:
            return "+"
        if ChangeAction.ROTATE in self.actions or ChangeAction.REIMPORT in self.actions:
            return "±"
        return "~"


class DriftKind(StrEnum):
    MATERIAL_MISSING = "material_missing"  # deleted or expired: the key holds no usable material
    DISABLED = "disabled"  # key or version disabled outside keyplan
    ENABLED = "enabled"  # re-enabled outside keyplan while keyplan keeps it disabled
    DELETION_SCHEDULED = "deletion_scheduled"  # scheduled for deletion / destroy / soft-deleted
    DELETED = "deleted"  # gone from the cloud
    METADATA_EDITED = "metadata_edited"  # labels/tags, aliases or description edited
    UNEXPECTED_VERSION = "unexpected_version"  # a version or material keyplan did not import is current
    ORPHAN = "orphan"  # tagged as managed by this state's lineage but unknown to state
    EXPIRING = "expiring"  # material expires within the configured horizon


class Drift(_Model):
    address: str
    target: str
    kind: DriftKind
    summary: str
    remote_id: str | None = None
    recorded: dict[str, Any] = {}  # what state says
    live: dict[str, Any] = {}  # what the cloud says


class ActionKind(StrEnum):
    GENERATE_MATERIAL = "generate_material"
    ENSURE_PREREQUISITE = "ensure_prerequisite"
    CREATE_KEY = "create_key"
    ADOPT_KEY = "adopt_key"
    GET_IMPORT_PARAMETERS = "get_import_parameters"
    WRAP_MATERIAL = "wrap_material"
    IMPORT_MATERIAL = "import_material"
    PROMOTE_VERSION = "promote_version"
    UPDATE_KEY = "update_key"
    CANCEL_DELETION = "cancel_deletion"
    SCHEDULE_DELETION = "schedule_deletion"
    FORGET_KEY = "forget_key"
    ACCEPT_LIVE = "accept_live"  # refresh-only: write the cloud's values into state

    @property
    def remote(self) -> bool:
        """Whether the action calls a cloud (as opposed to the key source or state only)."""
        return self not in (
            ActionKind.GENERATE_MATERIAL,
            ActionKind.WRAP_MATERIAL,
            ActionKind.FORGET_KEY,
            ActionKind.ADOPT_KEY,
            ActionKind.ACCEPT_LIVE,
        )


class Action(_Model):
    id: str
    kind: ActionKind
    address: str | None = None
    target: str | None = None
    source: str | None = None
    args: dict[str, Any] = {}
    depends_on: list[str] = []

    @property
    def label(self) -> str:
        where = f" {self.address}" if self.address else ""
        at = f" @ {self.target}" if self.target else ""
        return f"{self.kind.value}{where}{at}"


class PlannedKey(_Model):
    """What apply needs to know about a key, frozen at plan time."""

    spec: KeySpec
    source: str
    prevent_destroy: bool = False


class PriorState(_Model):
    lineage: str
    serial: int
    exists: bool


class Plan(_Model):
    format_version: int = PLAN_FORMAT_VERSION
    keyplan_version: str
    created_at: datetime
    mode: str = "normal"  # "normal" | "refresh-only"
    prior: PriorState
    managed_by: str
    config_digest: str
    config_dir: str
    options: dict[str, Any] = {}  # targets, replace, refresh
    keys: dict[str, PlannedKey] = {}
    changes: list[PlannedChange] = []
    drift: list[Drift] = []
    actions: list[Action] = []
    warnings: list[Diagnostic] = []
    findings: list[Finding] = []  # policy findings below error level, shown with the plan
    live: dict[str, dict[str, Any]] = {}  # refresh-only: target -> remote_id -> live values
    digest: str = ""

    @property
    def has_changes(self) -> bool:
        return any(ChangeAction.NOOP not in c.actions for c in self.changes) or (
            self.mode == "refresh-only" and bool(self.drift)
        )
