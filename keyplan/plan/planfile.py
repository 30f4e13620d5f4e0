"""Saved plan files: a plan as JSON with a content digest, bound to the state it was made from
(lineage and serial) and to a digest of the configuration and variables.

`check_applicable` refuses a plan when anything it relied on moved, and says exactly what:
the file was altered, it belongs to another state, the state changed since, the configuration
changed since, it was made by another keyplan version, or it is older than the allowed age.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from keyplan import __version__
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.files import write_atomically
from keyplan.plan.agreement import refuse_disagreement
from keyplan.plan.graph import ActionGraph
from keyplan.plan.model import (
    PLAN_FORMAT_VERSION,
    Action,
    CreateKey,
    GenerateMaterial,
    GetImportParameters,
    ImportMaterial,
    Plan,
    PromoteVersion,
    VerifyMaterial,
    WrapMaterial,
)
from keyplan.state.model import State


def plan_digest(plan: Plan) -> str:
    body = plan.model_dump(mode="json", exclude={"digest"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def plan_json(plan: Plan) -> bytes:
    sealed = plan.model_copy(update={"digest": plan_digest(plan)})
    return (json.dumps(sealed.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def save_plan(plan: Plan, path: Path) -> Plan:
    data = plan_json(plan)
    if path.is_dir():
        raise DiagnosticsError.single(
            "Plan file path is a directory", f"{path} is a directory. Name a file for the plan, like {path / 'review.kpplan'}."
        )
    try:
        write_atomically(path, data, mode=0o600)  # it lists the key inventory
    except OSError as exc:
        raise DiagnosticsError.single(
            "Cannot write the plan file", f"{path} cannot be written ({exc.strerror}). Choose a writable place for it."
        ) from None
    return Plan.model_validate_json(data)


def load_plan(path: Path) -> Plan:
    if path.exists() and not path.is_file() and not path.is_dir():  # a pipe would hang, a device fill the memory
        raise DiagnosticsError.single(
            "Cannot read the plan file",
            f"{path} is not a regular file (a pipe or a device). Give the path of a plan saved with "
            "`keyplan plan -out=FILE`.",
        )
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DiagnosticsError.single(
            "Plan file not found", f"{path} does not exist. Save a plan first with `keyplan plan -out={path}`."
        ) from None
    except OSError as exc:
        raise DiagnosticsError.single(
            "Cannot read the plan file",
            f"{path} cannot be read ({exc.strerror}){': it is a directory' if path.is_dir() else ''}. "
            "Give the path of a plan saved with `keyplan plan -out=FILE`.",
        ) from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested or numbers beyond reason
        raise DiagnosticsError.single(
            "Not a keyplan plan file",
            f"{path} is not valid JSON. Plan files are written by `keyplan plan -out=FILE`; make a new one.",
        ) from None
    if not isinstance(raw, dict) or raw.get("format_version") != PLAN_FORMAT_VERSION:
        raise DiagnosticsError.single(
            "Not a keyplan plan file of a known format",
            f"{path} does not carry plan format version {PLAN_FORMAT_VERSION}. Make a new plan with "
            f"`keyplan plan -out={path}`.",
        )
    try:
        plan = Plan.model_validate(raw)
    except ValidationError:
        raise DiagnosticsError.single(
            "Plan file was altered",
            f"{path} does not match the plan format, so it was edited or damaged after it was saved. "
            "Do not apply it; make a new plan and have it reviewed again.",
        ) from None
    if plan_digest(plan) != plan.digest:
        raise DiagnosticsError.single(
            "Plan file was altered",
            f"The content digest of {path} does not match its content, so the plan was edited after it was saved "
            "(and after it may have been reviewed). Do not apply it; make a new plan and have it reviewed again.",
        )
    _refuse_dangling_references(plan, path)
    refuse_disagreement(plan, str(path))
    return plan


def _refuse_dangling_references(plan: Plan, path: Path) -> None:
    """Every step an action waits on or reads from (`depends_on`, `args.*_action`) is in the plan,
    and comes before it: a step reads another's answer only after it (otherwise the walk would
    fail half-way, or crash, instead of before its first call), material is generated before a
    key holds it or it is wrapped, and a key is created before its material is imported."""
    ids = {action.id for action in plan.actions}
    for action in plan.actions:
        named = list(action.depends_on) + _read_steps(action)
        missing = next((name for name in named if name not in ids), None)
        if missing is not None:
            raise _altered(path, f"step {action.id!r} refers to step {missing!r}, which the plan does not have")
    graph = ActionGraph.checked(plan.actions)
    if graph is None:
        raise _altered(path, "its steps wait on each other in a circle")
    generated = {(a.address, a.args.version): a.id for a in plan.actions if isinstance(a, GenerateMaterial)}
    created = {(a.address, a.target): a.id for a in plan.actions if isinstance(a, CreateKey)}
    imported = {(a.address, a.target, a.args.version): a.id for a in plan.actions if isinstance(a, ImportMaterial)}
    for action in plan.actions:
        before = set(_read_steps(action))
        if isinstance(action, WrapMaterial):
            before.add(generated.get((action.address, action.args.version), ""))
        if isinstance(action, CreateKey):
            before.update(step for (address, _), step in generated.items() if address == action.address)
        if isinstance(action, (GetImportParameters, ImportMaterial)):
            before.add(created.get((action.address, action.target), ""))
        if isinstance(action, (PromoteVersion, VerifyMaterial)):  # a version is promoted or proven once imported
            before.add(imported.get((action.address, action.target, action.args.version), ""))
        before.discard("")
        if before and not before <= graph.ancestors(action.id):
            late = sorted(before - graph.ancestors(action.id))[0]
            raise _altered(path, f"step {action.id!r} would not wait for step {late!r}, which must come before it")


def _read_steps(action: Action) -> list[str]:
    return [value for field, value in action.args if field.endswith("_action") and isinstance(value, str)]


def _altered(path: Path, problem: str) -> DiagnosticsError:
    return DiagnosticsError.single(
        "Plan file was altered",
        f"In {path}, {problem}, so the plan was edited after it was saved. Do not apply it; make a new plan and "
        "have it reviewed again.",
    )


def check_applicable(
    plan: Plan,
    state: State,
    *,
    state_exists: bool,
    config_digest: str,
    max_age: timedelta | None,
    now: datetime | None = None,
) -> Diagnostics:
    diagnostics = Diagnostics()
    fresh = "Run `keyplan plan -out=FILE` again and have the new plan reviewed."
    if plan.keyplan_version != __version__:
        diagnostics.error(
            "Plan was made by another keyplan version",
            f"The plan was made by keyplan {plan.keyplan_version}; this is {__version__}. {fresh}",
        )
    if plan.prior.exists and state_exists and plan.prior.lineage != state.lineage:
        diagnostics.error(
            "Plan belongs to a different state",
            f"The plan was made against state lineage {plan.prior.lineage}, but the current state has lineage "
            f"{state.lineage}. It was made in another workspace or the state was replaced. {fresh}",
        )
    elif plan.prior.exists != state_exists or plan.prior.serial != state.serial:
        diagnostics.error(
            "Saved plan is stale: the state changed since it was made",
            f"The plan was made against state serial {plan.prior.serial}"
            f"{'' if plan.prior.exists else ' (no state yet)'}; the state is now at serial {state.serial}"
            f"{'' if state_exists else ' (no state)'}. Another apply ran in between, so the plan may no longer "
            f"be right. {fresh}",
        )
    elif plan.prior.exists:
        _refuse_remote_ids_state_does_not_record(plan, state, diagnostics)
    if plan.config_digest != config_digest:
        diagnostics.error(
            "Saved plan is stale: the configuration changed since it was made",
            "The configuration files or variable values differ from those the plan was made with "
            f"(digest {plan.config_digest[:19]}… then, {config_digest[:19]}… now). Apply the plan with the same "
            f"configuration and variables, or {fresh[0].lower()}{fresh[1:]}",
        )
    if max_age is not None:
        age = (now or datetime.now(UTC)) - plan.created_at
        if age > max_age:
            diagnostics.error(
                "Saved plan is too old",
                f"The plan was made {_human(age)} ago, at {plan.created_at.isoformat(timespec='seconds')}; the "
                f"maximum age is {_human(max_age)} (-max-plan-age). The clouds may have moved since. {fresh}",
            )
    return diagnostics


def _refuse_remote_ids_state_does_not_record(plan: Plan, state: State, diagnostics: Diagnostics) -> None:
    """The plan was made against this very state (same lineage and serial), so every remote key it
    names for a key state records at that target is the one state records. Another id means the
    plan was edited and resealed (its digest is a checksum, not a signature): applied, it would
    delete or change a key that state gives to another address."""
    for change in plan.changes:
        record = state.keys.get(change.address)
        target = record.targets.get(change.target) if record is not None and change.target else None
        if target is None or change.remote_id is None or change.remote_id == target.remote_id:
            continue
        diagnostics.error(
            "Plan file was altered",
            f"The plan names {change.remote_id} for {change.address} @ {change.target}, but the state it was made "
            f"against records {target.remote_id} there, so the plan was edited after it was saved. Do not apply it; "
            "make a new plan and have it reviewed again.",
            address=change.address,
        )


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
