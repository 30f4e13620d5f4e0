"""What the diff reads and what it decides: the desired keys and targets with the plan's options
(`DesiredKey`, `TargetInfo`, `PlanOptions`), the work per key and target the action graph is
built from (`KeyWork`, `TargetWork`), and the metadata comparisons both sides use."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keyplan.diagnostics import Diagnostics, SourceRange
from keyplan.heap import trusted
from keyplan.limits import DEFAULT_THROTTLE_TIMEOUT
from keyplan.plan.model import (
    Drift,
    Metadata,
    PlannedChange,
)
from keyplan.provider import (
    ImportPurpose,
    KeySpec,
    KeyState,
    PrerequisiteSpec,
    ProviderPlugin,
    ProviderSettings,
    RemoteKey,
    WrapOffer,
)
from keyplan.state.model import TargetRecord


@dataclass(frozen=True)
class DesiredKey:
    spec: KeySpec
    source: str
    targets: tuple[str, ...]
    prevent_destroy: bool = False
    range: SourceRange | None = None


@dataclass(frozen=True)
class TargetInfo:
    address: str
    plugin: ProviderPlugin[Any]
    settings: ProviderSettings


@dataclass(frozen=True)
class PlanOptions:
    targets: tuple[str, ...] = ()  # -target: only these addresses (a key name matches all its instances)
    replace: tuple[str, ...] = ()  # -replace: rotate these keys now
    refresh: bool = True
    refresh_only: bool = False
    expiry_horizon: timedelta | None = None
    verify: bool = False  # -verify: prove each import right after it (a verify_material action)
    # -allow-new-lineage: a new state creates keys although keys for the same addresses exist under
    # another keyplan state (another lineage), which otherwise stops the plan as a sign of a lost state
    allow_new_lineage: bool = False
    # (address, target, when): keys an interrupted apply announced creating (a `started` audit
    # entry with no outcome after it), which may exist and yet not be listed by their cloud
    unsettled_creates: tuple[tuple[str, str, datetime], ...] = ()
    # -throttle-timeout: how long refresh waits on a cloud throttling one kind of call before it stops
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT

    def selects(self, address: str) -> bool:
        if not self.targets:
            return True
        return any(address == t or address.startswith(t + "[") for t in self.targets)


@dataclass
class TargetWork:
    """What the action graph must do for one key at one target (internal to planning)."""

    address: str
    target: str
    change: PlannedChange
    create: bool = False
    adopt: RemoteKey | None = None
    adopt_material_version: int | None = None  # the material the adopted key was created for
    cancel_deletion: bool = False
    import_version: int | None = None  # material version to import
    import_purpose: ImportPurpose | None = None
    reimport_version_id: str | None = None
    unrecorded_versions: tuple[str, ...] = ()  # versions to check for the material before importing
    promote: bool = False
    update: bool = False
    delete: str | None = None  # the remote id to schedule for deletion
    offer: WrapOffer | None = None
    prerequisites: list[PrerequisiteSpec] = field(default_factory=list)
    live: RemoteKey | None = None


@dataclass
class KeyWork:
    address: str
    source: str
    generate_version: int | None = None  # new material version to generate first
    forget: bool = False
    protect: bool | None = None  # lifecycle.prevent_destroy to write into state
    targets: list[TargetWork] = field(default_factory=list)


@dataclass
class DiffResult:
    changes: list[PlannedChange]
    drift: list[Drift]
    work: list[KeyWork]
    diagnostics: Diagnostics


def desired_metadata(spec: KeySpec) -> Metadata:
    return trusted(
        Metadata,
        labels=dict(spec.labels), aliases=sorted(spec.aliases), description=spec.description, enabled=spec.enabled
    )


def recorded_metadata(record: TargetRecord) -> Metadata:
    return trusted(
        Metadata,
        labels=dict(record.labels),
        aliases=sorted(record.aliases),
        description=record.description,
        enabled=record.enabled,
    )


def live_metadata(key: RemoteKey) -> Metadata:
    # A key waiting for material reports itself disabled; importing enables it, so that is not a
    # difference keyplan needs to act on.
    enabled = True if key.state is KeyState.PENDING_IMPORT else key.enabled
    return trusted(
        Metadata, labels=dict(key.labels), aliases=sorted(key.aliases), description=key.description, enabled=enabled
    )


def as_created(desired: Metadata | None) -> Metadata:
    """A key as creating and importing it leaves it: the contract's create sets the labels and
    the description, and the first import makes it usable; aliases and disabling need an update
    (so a new key without them costs no update call)."""
    desired = desired or Metadata()
    return trusted(Metadata, labels=desired.labels, aliases=[], description=desired.description, enabled=True)


def metadata_differences(a: Metadata, b: Metadata, fields: frozenset[str]) -> list[str]:
    return [name for name in ("labels", "aliases", "description", "enabled") if name in fields and getattr(a, name) != getattr(b, name)]
