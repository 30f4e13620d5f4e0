"""`keyplan apply -json`: one JSON object per line, for machines. Documented by
`schemas/apply-events.schema.json`, generated from these models.

An apply prints the plan's warnings as `diagnostic` events (severity "warning"), a `plan` event
(what it is about to do), then `step` events as each step starts,
finishes, fails, is skipped or retried, a `key` event when a key is finished (every step done,
or the first one failed), a `progress` event every few seconds and one at the end, a
`diagnostic` event per failed step, and one `apply_end` event with the counts of the summary.
An apply stopped before its walk (configuration, state, lock, plan file) prints its diagnostics
as `diagnostic` events, then an `apply_end` event with outcome "failed".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from keyplan.diagnostics import Diagnostic, Severity, SourceRange


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))


class PlanEvent(_Event):
    """What the apply is about to do."""

    type: Literal["plan"] = "plan"
    keys: int = Field(description="Keys with at least one step.")
    steps: int
    summary: dict[str, int] = Field(description="Keys per kind of change, as in `plan -json`.")
    summary_targets: dict[str, int] = Field(description="Changes per kind, counted per key and target.")


class StepEvent(_Event):
    """One step (an action of the plan's graph) started, done, failed, skipped or retried."""

    type: Literal["step"] = "step"
    step: str = Field(description="The action's id.")
    kind: str = Field(description="The action's kind, e.g. create_key, import_material.")
    address: str | None = None
    target: str | None = None
    status: Literal["started", "done", "failed", "skipped", "retrying"]
    seconds: float | None = Field(default=None, description="done: how long the step took.")
    attempt: int | None = Field(default=None, description="retrying: the attempt that failed.")
    delay_seconds: float | None = Field(default=None, description="retrying: the wait before the next attempt.")
    reason: str | None = Field(default=None, description="failed, skipped, retrying: why.")


class KeyEvent(_Event):
    """A key is finished: every step of it is done, or one failed (its other steps do not run)."""

    type: Literal["key"] = "key"
    address: str
    status: Literal["done", "failed"]
    changes: list[str] = Field(description="What it counts as: create, adopt, import, update, rotate, delete, forget.")
    targets: list[str]


class ProgressEvent(_Event):
    """How far the apply is; every few seconds and once at the end."""

    type: Literal["progress"] = "progress"
    keys_total: int
    keys_done: int
    keys_failed: int
    steps_total: int
    steps_finished: int = Field(description="Steps done, failed or skipped.")
    steps_running: int
    elapsed_seconds: float
    keys_per_second: float
    eta_seconds: float | None = Field(
        description="Time left at the rate so far, never less than the plan's bounding quota allows for the steps left "
        "at its target; null before the first step finished when no quota bounds the apply."
    )


class DiagnosticEvent(_Event):
    """A failed step's diagnostic, or one that stopped the apply before its walk (then followed by
    an `apply_end` event with outcome "failed")."""

    type: Literal["diagnostic"] = "diagnostic"
    severity: Literal["error", "warning"]
    summary: str
    detail: str = ""
    address: str | None = None
    range: SourceRange | None = Field(default=None, description="Where in the configuration, when it is about it.")


def diagnostic_event(diagnostic: Diagnostic) -> DiagnosticEvent:
    return DiagnosticEvent(
        severity="error" if diagnostic.severity is Severity.ERROR else "warning",
        summary=diagnostic.summary,
        detail=diagnostic.detail or "",
        address=diagnostic.address,
        range=diagnostic.range,
    )


class ApplyEndEvent(_Event):
    """How the apply ended, with the counts its text summary shows."""

    type: Literal["apply_end"] = "apply_end"
    outcome: Literal["complete", "failed", "interrupted", "abandoned", "no_changes", "accepted"]
    keys: dict[str, int] = Field(
        default_factory=dict, description="Keys finished, per kind of change (created keys under create, ...)."
    )
    failed: list[str] = []
    partly_done: list[str] = []
    cut_short: list[str] = Field(
        default=[], description="abandoned: keys whose step was running at the second interrupt."
    )
    not_started: list[str] = []
    accepted: int | None = Field(default=None, description="accepted (-refresh-only): key targets taken into state.")


ApplyEvent = Annotated[
    PlanEvent | StepEvent | KeyEvent | ProgressEvent | DiagnosticEvent | ApplyEndEvent, Field(discriminator="type")
]


def event_line(event: _Event) -> str:
    return event.model_dump_json() + "\n"


def apply_events_schema() -> dict[str, Any]:
    schema: dict[str, Any] = TypeAdapter(ApplyEvent).json_schema(mode="serialization")
    return schema
