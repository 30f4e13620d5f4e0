"""The drift report: what `keyplan drift -json` prints for scheduled jobs, a compact document
of everything that changed outside keyplan, without the plan's actions and key specs.

It names the state it was checked against (lineage and serial), lists each drift item (kind,
key address, target, remote id, a one-line summary, what state recorded and what the cloud
says) and counts the items by kind, every kind present (zero when clean) so dashboards and
alerts can read a fixed shape. Its JSON Schema is `schemas/drift.schema.json`, generated
from `DriftReport`; regenerate with: python -m keyplan.drift_report
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from keyplan import __version__
from keyplan.plan.model import Drift, DriftKind, Plan
from keyplan.policy.model import Finding

DRIFT_REPORT_FORMAT_VERSION = 1
SCHEMA_FILE = "drift.schema.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DriftItem(_Model):
    """One difference between what state recorded and what a cloud holds now."""

    kind: DriftKind = Field(description="What changed; see DriftKind.")
    address: str = Field(description='The key address, e.g. key.app["payments"]; "(unknown)" for an untagged orphan.')
    target: str = Field(description="The provider address, KIND.NAME.")
    remote_id: str | None = Field(default=None, description="The cloud's id of the key.")
    summary: str = Field(description="One line for people.")
    recorded: dict[str, Any] = Field(default={}, description="What state says keyplan last set.")
    live: dict[str, Any] = Field(default={}, description="What the cloud says now.")


class DriftReport(_Model):
    """The result of one `keyplan drift` run."""

    format_version: int = Field(
        default=DRIFT_REPORT_FORMAT_VERSION, description="Changes only on incompatible changes to this document."
    )
    keyplan_version: str
    generated_at: datetime = Field(description="When the clouds were read (the plan's creation time).")
    lineage: str = Field(description="The lineage of the state the clouds were compared with.")
    serial: int = Field(ge=0, description="The serial of that state.")
    clean: bool = Field(description="True when nothing changed outside keyplan (exit code 0).")
    total: int = Field(ge=0, description="How many drift items there are.")
    counts: dict[DriftKind, int] = Field(description="Drift items by kind; every kind is present, zero when absent.")
    drift: list[DriftItem] = Field(description="Every drift item, ordered by address, target and kind.")
    findings: list[Finding] = Field(
        default=[], description="Findings of the policy's live rules (with a policy block); an error exits 2."
    )


def drift_report(plan: Plan) -> DriftReport:
    """The drift report of a (refresh-only) plan."""
    items = sorted((_item(d) for d in plan.drift), key=lambda i: (i.address, i.target, i.kind.value))
    counts = dict.fromkeys(DriftKind, 0)
    for item in items:
        counts[item.kind] += 1
    return DriftReport(
        keyplan_version=__version__,
        generated_at=plan.created_at,
        lineage=plan.prior.lineage,
        serial=plan.prior.serial,
        clean=not items,
        total=len(items),
        counts=counts,
        drift=items,
        findings=plan.findings,
    )


def _item(drift: Drift) -> DriftItem:
    return DriftItem(
        kind=drift.kind,
        address=drift.address,
        target=drift.target,
        remote_id=drift.remote_id,
        summary=drift.summary,
        recorded=drift.recorded,
        live=drift.live,
    )


def render_drift_report(plan: Plan) -> str:
    """The report as pretty JSON with a trailing newline (what `keyplan drift -json` prints)."""
    return json.dumps(drift_report(plan).model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def drift_schema() -> dict[str, Any]:
    from keyplan.schemas import with_meta

    return with_meta(
        DriftReport.model_json_schema(mode="serialization"),
        SCHEMA_FILE,
        "keyplan drift report",
        "What `keyplan drift -json` prints: every change made outside keyplan since the state was "
        "written, counted by kind. `keyplan drift` exits 0 when `clean`, 2 when there is drift, 1 on errors. "
        "`format_version` changes only on incompatible changes.",
    )


def render_schema() -> str:
    return json.dumps(drift_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "schemas" / SCHEMA_FILE
    target.write_text(render_schema())
    print(f"wrote schemas/{SCHEMA_FILE}")
