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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from keyplan.crypto.wrap import WrapMethod
from keyplan.diagnostics import Diagnostic
from keyplan.policy.model import Finding
from keyplan.provider import ImportPurpose, KeySpec, PrerequisiteSpec, RemoteKey, WrapOffer

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
    MATERIAL_MISMATCH = "material_mismatch"  # drift -verify: the target holds other material than state says


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
    RECORD_PROTECTION = "record_protection"
    VERIFY_MATERIAL = "verify_material"  # apply -verify: prove the material just imported

    @property
    def remote(self) -> bool:
        """Whether the action calls a cloud (as opposed to the key source or state only)."""
        return self not in (
            ActionKind.GENERATE_MATERIAL,
            ActionKind.WRAP_MATERIAL,
            ActionKind.FORGET_KEY,
            ActionKind.ADOPT_KEY,
            ActionKind.RECORD_PROTECTION,
        )

    @property
    def mutates(self) -> bool:
        """Whether the action may change something in a cloud (every remote action but a read)."""
        return self.remote and self is not ActionKind.GET_IMPORT_PARAMETERS


# -- actions: one model per kind, told apart by `kind` -------------------------------------------
#
# Every action is `{id, kind, address, target, source, args, depends_on}`; `args` is a model of
# its own per kind. Actions that need an address, target or source declare it required, so the
# apply handlers never check for it.


class NoArgs(_Model):
    pass


class BaseAction(_Model):
    id: str
    kind: ActionKind
    address: str | None = None
    target: str | None = None
    source: str | None = None
    args: _Model  # each kind narrows this to its own model
    depends_on: list[str] = []

    @property
    def label(self) -> str:
        where = f" {self.address}" if self.address else ""
        at = f" @ {self.target}" if self.target else ""
        return f"{self.kind.value}{where}{at}"

    @property
    def remote_id(self) -> str | None:
        """The remote key the action names at plan time, if any (audit entries of failures)."""
        return None


class MaterialVersionArgs(_Model):
    version: int


class GenerateMaterialArgs(MaterialVersionArgs):
    pass


class GenerateMaterial(BaseAction):
    """Generate a new material version in the key's source (the material stays there)."""

    kind: Literal[ActionKind.GENERATE_MATERIAL] = ActionKind.GENERATE_MATERIAL
    address: str
    source: str
    args: GenerateMaterialArgs


class EnsurePrerequisiteArgs(_Model):
    spec: PrerequisiteSpec


class EnsurePrerequisite(BaseAction):
    """Find, reuse, create or replace a shared remote object (key ring, import job, KEK)."""

    kind: Literal[ActionKind.ENSURE_PREREQUISITE] = ActionKind.ENSURE_PREREQUISITE
    target: str
    args: EnsurePrerequisiteArgs


class CreateKeyArgs(_Model):
    replaces: str | None = None  # the remote key a re-created key replaces, for the record


class CreateKey(BaseAction):
    kind: Literal[ActionKind.CREATE_KEY] = ActionKind.CREATE_KEY
    address: str
    target: str
    args: CreateKeyArgs


class AdoptKeyArgs(_Model):
    remote_id: str
    live: RemoteKey  # the key as the inventory showed it at plan time
    material_version: int | None = None  # the material it was created for, if state holds it


class AdoptKey(BaseAction):
    """Record in state a remote key tagged with this address (created by an interrupted apply)."""

    kind: Literal[ActionKind.ADOPT_KEY] = ActionKind.ADOPT_KEY
    address: str
    target: str
    args: AdoptKeyArgs

    @property
    def remote_id(self) -> str | None:
        return self.args.remote_id


class GetImportParametersArgs(_Model):
    offer: WrapOffer


class GetImportParameters(BaseAction):
    kind: Literal[ActionKind.GET_IMPORT_PARAMETERS] = ActionKind.GET_IMPORT_PARAMETERS
    address: str
    target: str
    args: GetImportParametersArgs


class WrapMaterialArgs(MaterialVersionArgs):
    parameters_action: str  # the get_import_parameters action whose answer this wraps for


class WrapMaterial(BaseAction):
    kind: Literal[ActionKind.WRAP_MATERIAL] = ActionKind.WRAP_MATERIAL
    address: str
    target: str
    source: str
    args: WrapMaterialArgs


class ImportMaterialArgs(MaterialVersionArgs):
    purpose: ImportPurpose
    reimport_version_id: str | None = None
    # Versions the key holds that state does not record (an import whose answer was lost): each
    # is checked against the material first, and one holding it is recorded instead of importing.
    unrecorded_versions: tuple[str, ...] = ()
    parameters_action: str
    wrap_action: str
    offer: WrapOffer  # to fetch fresh parameters when the cloud says they expired


class ImportMaterial(BaseAction):
    kind: Literal[ActionKind.IMPORT_MATERIAL] = ActionKind.IMPORT_MATERIAL
    address: str
    target: str
    args: ImportMaterialArgs


class PromoteVersionArgs(MaterialVersionArgs):
    pass


class PromoteVersion(BaseAction):
    kind: Literal[ActionKind.PROMOTE_VERSION] = ActionKind.PROMOTE_VERSION
    address: str
    target: str
    args: PromoteVersionArgs


class UpdateKey(BaseAction):
    """Set labels, aliases, description and enabled to what the key spec says."""

    kind: Literal[ActionKind.UPDATE_KEY] = ActionKind.UPDATE_KEY
    address: str
    target: str
    args: NoArgs = NoArgs()


class RemoteKeyArgs(_Model):
    remote_id: str | None = None


class CancelDeletion(BaseAction):
    kind: Literal[ActionKind.CANCEL_DELETION] = ActionKind.CANCEL_DELETION
    address: str
    target: str
    args: RemoteKeyArgs

    @property
    def remote_id(self) -> str | None:
        return self.args.remote_id


class ScheduleDeletionArgs(_Model):
    remote_id: str


class ScheduleDeletion(BaseAction):
    kind: Literal[ActionKind.SCHEDULE_DELETION] = ActionKind.SCHEDULE_DELETION
    address: str
    target: str
    args: ScheduleDeletionArgs

    @property
    def remote_id(self) -> str | None:
        return self.args.remote_id


class ForgetKeyArgs(_Model):
    target_only: bool = False  # drop one target's record, not the whole key

    @model_serializer(mode="wrap")
    def _omit_default(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        body: dict[str, Any] = handler(self)
        return body if self.target_only else {}


class ForgetKey(BaseAction):
    """Drop a key (or one of its targets) from state; calls nothing."""

    kind: Literal[ActionKind.FORGET_KEY] = ActionKind.FORGET_KEY
    address: str
    args: ForgetKeyArgs = ForgetKeyArgs()


class RecordProtectionArgs(_Model):
    prevent_destroy: bool


class RecordProtection(BaseAction):
    """Write the key's `lifecycle.prevent_destroy` into state (which guards deletion); calls nothing."""

    kind: Literal[ActionKind.RECORD_PROTECTION] = ActionKind.RECORD_PROTECTION
    address: str
    args: RecordProtectionArgs


class VerifyMaterialArgs(MaterialVersionArgs):
    pass


class VerifyMaterial(BaseAction):
    """Prove that the target holds the material version just imported (`apply -verify`)."""

    kind: Literal[ActionKind.VERIFY_MATERIAL] = ActionKind.VERIFY_MATERIAL
    address: str
    target: str
    args: VerifyMaterialArgs


Action = Annotated[
    GenerateMaterial
    | EnsurePrerequisite
    | CreateKey
    | AdoptKey
    | GetImportParameters
    | WrapMaterial
    | ImportMaterial
    | PromoteVersion
    | UpdateKey
    | CancelDeletion
    | ScheduleDeletion
    | ForgetKey
    | RecordProtection
    | VerifyMaterial,
    Field(discriminator="kind"),
]
"""Any action of a plan; `kind` says which model it is."""

ACTION_MODELS: dict[ActionKind, type[BaseAction]] = {
    ActionKind.GENERATE_MATERIAL: GenerateMaterial,
    ActionKind.ENSURE_PREREQUISITE: EnsurePrerequisite,
    ActionKind.CREATE_KEY: CreateKey,
    ActionKind.ADOPT_KEY: AdoptKey,
    ActionKind.GET_IMPORT_PARAMETERS: GetImportParameters,
    ActionKind.WRAP_MATERIAL: WrapMaterial,
    ActionKind.IMPORT_MATERIAL: ImportMaterial,
    ActionKind.PROMOTE_VERSION: PromoteVersion,
    ActionKind.UPDATE_KEY: UpdateKey,
    ActionKind.CANCEL_DELETION: CancelDeletion,
    ActionKind.SCHEDULE_DELETION: ScheduleDeletion,
    ActionKind.FORGET_KEY: ForgetKey,
    ActionKind.RECORD_PROTECTION: RecordProtection,
    ActionKind.VERIFY_MATERIAL: VerifyMaterial,
}


class PlannedKey(_Model):
    """What apply needs to know about a key, frozen at plan time."""

    spec: KeySpec
    source: str
    prevent_destroy: bool = False


class PriorState(_Model):
    lineage: str
    serial: int
    exists: bool


class QuotaEstimate(_Model):
    """The request quota that bounds an apply of the plan, when the work is long enough to matter
    (`plan/estimate.py`)."""

    seconds: float  # the least time the quota allows for the plan's calls of that class
    target: str  # provider block
    rate_class: str
    per_second: float
    calls: int


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
    estimate: QuotaEstimate | None = None  # the quota that bounds the apply, when it takes a while
    digest: str = ""

    @property
    def has_changes(self) -> bool:
        return any(ChangeAction.NOOP not in c.actions for c in self.changes) or (
            self.mode == "refresh-only" and bool(self.drift)
        )


# The kinds of change a summary counts, in the order it shows them.
CHANGE_KINDS = ("create", "adopt", "import", "update", "rotate", "delete", "forget")


def change_kind(change: PlannedChange) -> str | None:
    """What one change of one key at one target counts as in a summary (None: no change)."""
    actions = change.actions
    if ChangeAction.NOOP in actions:
        return None
    for action, kind in (
        (ChangeAction.CREATE, "create"),
        (ChangeAction.ADOPT, "adopt"),
        (ChangeAction.DELETE, "delete"),
        (ChangeAction.FORGET, "forget"),
        (ChangeAction.ROTATE, "rotate"),
        (ChangeAction.REIMPORT, "import"),
        (ChangeAction.IMPORT, "import"),
    ):
        if action in actions:
            return kind
    return "update"


def key_changes(plan: Plan) -> dict[str, list[str]]:
    """Per key address, the kinds of change it has across its targets (each kind once, in
    `CHANGE_KINDS` order): a key created at three targets is one key to create."""
    kinds: dict[str, set[str]] = {}
    for change in plan.changes:
        kind = change_kind(change)
        if kind is not None:
            kinds.setdefault(change.address, set()).add(kind)
    return {address: [k for k in CHANGE_KINDS if k in found] for address, found in kinds.items()}
