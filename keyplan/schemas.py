"""The JSON Schemas of keyplan's documents (plan and `-json` plan output, state, drift report,
policy report, verification report, `apply -json` events), generated from the models so they cannot drift from the
code. `schemas/*.schema.json` are these, committed for readers and other tools; a test checks
the committed files match.

Regenerate with: python -m keyplan.schemas
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keyplan.plan.model import Plan
from keyplan.state.model import State

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def with_meta(schema: dict[str, Any], ident: str, title: str, description: str) -> dict[str, Any]:
    """A model's JSON Schema as one of keyplan's published documents: its id, title and description."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://keyplan.dev/schemas/{ident}",
        "title": title,
        "description": description,
        **{k: v for k, v in schema.items() if k != "title"},
    }


def plan_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema(mode="serialization")
    schema["properties"]["summary"] = {
        "type": "object",
        "description": "Only in `-json` output: how many keys have a change of each kind (create, adopt, import, "
        "update, rotate, delete, forget); a key changed at several targets counts once per kind.",
        "additionalProperties": {"type": "integer", "minimum": 0},
    }
    schema["properties"]["summary_targets"] = {
        "type": "object",
        "description": "Only in `-json` output: the same counts per key and target (a key created at three targets "
        "counts three times).",
        "additionalProperties": {"type": "integer", "minimum": 0},
    }
    schema["properties"]["approvals"] = {
        "type": "array",
        "description": "Only in `keyplan show -json PLANFILE`: the signed approvals kept beside the plan file.",
        "items": {"type": "object"},
    }
    return with_meta(
        schema,
        "plan.schema.json",
        "keyplan plan",
        "A keyplan plan, as saved by `keyplan plan -out` and printed by `keyplan plan -json` / `keyplan show -json`. "
        "`format_version` changes only on incompatible changes.",
    )


def state_schema() -> dict[str, Any]:
    return with_meta(
        State.model_json_schema(mode="serialization"),
        "state.schema.json",
        "keyplan state",
        "The keyplan state file. It never holds key material: only handles, fingerprints and remote ids.",
    )


def documents() -> dict[str, dict[str, Any]]:
    from keyplan.apply.events import apply_events_schema
    from keyplan.drift_report import drift_schema
    from keyplan.policy.report import policy_schema
    from keyplan.verification import verify_schema

    return {
        "plan.schema.json": plan_schema(),
        "state.schema.json": state_schema(),
        "drift.schema.json": drift_schema(),
        "policy.schema.json": policy_schema(),
        "verify.schema.json": verify_schema(),
        "apply-events.schema.json": with_meta(
            apply_events_schema(),
            "apply-events.schema.json",
            "keyplan apply -json event",
            "One line of `keyplan apply -json`: plan, step, key, progress, diagnostic or apply_end, told apart by `type`.",
        ),
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, schema in documents().items():
        (SCHEMA_DIR / name).write_text(render(schema))
        print(f"wrote schemas/{name}")
