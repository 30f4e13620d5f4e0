"""The drift report document: built from a plan's drift, counted by kind, ordered, and
described by the committed schema `schemas/drift.schema.json`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema

from keyplan.drift_report import SCHEMA_FILE, drift_report, drift_schema, render_drift_report, render_schema
from keyplan.plan.model import Drift, DriftKind, Plan, PriorState
from tests import schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def plan(drift: list[Drift]) -> Plan:
    return Plan(
        keyplan_version="test",
        created_at=datetime(2026, 6, 1, tzinfo=UTC),
        mode="refresh-only",
        prior=PriorState(lineage="l1", serial=7, exists=True),
        managed_by="keyplan-l1",
        config_digest="sha256:0",
        config_dir="/tmp",
        drift=drift,
    )


def test_report_counts_every_kind_and_orders_items() -> None:
    report = drift_report(
        plan(
            [
                Drift(address="key.b", target="aws.main", kind=DriftKind.DISABLED, summary="disabled"),
                Drift(address="key.a", target="gcp.main", kind=DriftKind.ORPHAN, summary="orphan", remote_id="r"),
                Drift(address="key.a", target="aws.main", kind=DriftKind.METADATA_EDITED, summary="edited",
                      recorded={"labels": {}}, live={"labels": {"x": "y"}}),
            ]
        )
    )
    assert [(i.address, i.target) for i in report.drift] == [("key.a", "aws.main"), ("key.a", "gcp.main"), ("key.b", "aws.main")]
    assert set(report.counts) == set(DriftKind)
    assert {k.value: n for k, n in report.counts.items() if n} == {"disabled": 1, "orphan": 1, "metadata_edited": 1}
    assert (report.total, report.clean, report.lineage, report.serial) == (3, False, "l1", 7)
    assert report.generated_at == datetime(2026, 6, 1, tzinfo=UTC)


def test_rendered_reports_validate_and_a_clean_one_says_so() -> None:
    schema = json.loads((SCHEMAS / SCHEMA_FILE).read_text())
    clean = json.loads(render_drift_report(plan([])))
    schemas.validate(clean, schema)
    assert clean["clean"] is True and clean["total"] == 0 and set(clean["counts"].values()) == {0}
    dirty = json.loads(render_drift_report(plan([Drift(address="key.a", target="aws.main", kind=DriftKind.EXPIRING,
                                                       summary="expires", live={"expires_at": "2026-06-02T00:00:00+00:00"})])))
    schemas.validate(dirty, schema)
    dirty["counts"]["not_a_kind"] = 1
    try:
        schemas.validate(dirty, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema accepts only known drift kinds")


def test_committed_schema_matches_the_model() -> None:
    assert (SCHEMAS / SCHEMA_FILE).read_text() == render_schema(), "run: python -m keyplan.drift_report"
    assert drift_schema()["$id"].endswith(SCHEMA_FILE)
