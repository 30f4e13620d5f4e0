"""One source of truth in a plan: the actions apply runs must be exactly what the reviewed
changes say.

A plan shows people its `changes` (text, JSON, Markdown) and apply walks its `actions`. A plan
file edited after review could make the two disagree, say by adding a `schedule_deletion` that
no change shows. `disagreements` compares them both ways, per key and target:

- every action is implied by a change of the same key and target (a `create_key` by a `create`,
  an `import_material` of purpose `new_version` by a `rotate` with the same material version and
  wrap method, a `schedule_deletion` by a `delete` of the same remote key, ...);
- every change has the actions it implies (a `delete` its `schedule_deletion`, an `update` its
  `update_key`, ...);
- the key specs apply would send (labels, enabled) are those the changes show.

`show` and `apply` both refuse a plan with any disagreement and name each one, so what is shown
is what runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.plan.model import (
    Action,
    ActionKind,
    AdoptKey,
    ChangeAction,
    ForgetKey,
    GenerateMaterial,
    GetImportParameters,
    ImportMaterial,
    Plan,
    PlannedChange,
    RecordProtection,
    ScheduleDeletion,
    WrapMaterial,
)
from keyplan.plan.planner import desired_keys
from keyplan.provider import ImportPurpose

# Which change actions allow an action of each kind at the same key and target.
_ALLOWED_BY: dict[ActionKind, frozenset[ChangeAction]] = {
    ActionKind.CREATE_KEY: frozenset({ChangeAction.CREATE}),
    ActionKind.ADOPT_KEY: frozenset({ChangeAction.ADOPT}),
    ActionKind.GET_IMPORT_PARAMETERS: frozenset(
        {ChangeAction.CREATE, ChangeAction.IMPORT, ChangeAction.REIMPORT, ChangeAction.ROTATE}
    ),
    ActionKind.WRAP_MATERIAL: frozenset({ChangeAction.CREATE, ChangeAction.IMPORT, ChangeAction.REIMPORT, ChangeAction.ROTATE}),
    ActionKind.IMPORT_MATERIAL: frozenset(
        {ChangeAction.CREATE, ChangeAction.IMPORT, ChangeAction.REIMPORT, ChangeAction.ROTATE}
    ),
    ActionKind.PROMOTE_VERSION: frozenset({ChangeAction.ROTATE}),
    ActionKind.VERIFY_MATERIAL: frozenset(
        {ChangeAction.CREATE, ChangeAction.IMPORT, ChangeAction.REIMPORT, ChangeAction.ROTATE}
    ),
    ActionKind.UPDATE_KEY: frozenset({ChangeAction.UPDATE, ChangeAction.CREATE}),
    ActionKind.CANCEL_DELETION: frozenset({ChangeAction.RESTORE}),
    ActionKind.SCHEDULE_DELETION: frozenset({ChangeAction.DELETE}),
}

_PURPOSE_OF: dict[ImportPurpose, frozenset[ChangeAction]] = {
    ImportPurpose.INITIAL: frozenset({ChangeAction.CREATE, ChangeAction.IMPORT}),
    ImportPurpose.REIMPORT: frozenset({ChangeAction.REIMPORT}),
    ImportPurpose.NEW_VERSION: frozenset({ChangeAction.ROTATE}),
}

# What each change action needs among the actions of its key and target.
_REQUIRES: dict[ChangeAction, ActionKind] = {
    ChangeAction.CREATE: ActionKind.CREATE_KEY,
    ChangeAction.ADOPT: ActionKind.ADOPT_KEY,
    ChangeAction.IMPORT: ActionKind.IMPORT_MATERIAL,
    ChangeAction.REIMPORT: ActionKind.IMPORT_MATERIAL,
    ChangeAction.ROTATE: ActionKind.PROMOTE_VERSION,
    ChangeAction.UPDATE: ActionKind.UPDATE_KEY,
    ChangeAction.RESTORE: ActionKind.CANCEL_DELETION,
    ChangeAction.DELETE: ActionKind.SCHEDULE_DELETION,
}


def disagreements(plan: Plan) -> list[str]:
    """Every way the plan's actions and its changes disagree, as sentences; [] when they agree."""
    changes: dict[tuple[str, str | None], PlannedChange] = {}
    problems: list[str] = []
    for change in plan.changes:
        where = (change.address, change.target)
        if where in changes:
            problems.append(f"two changes are listed for {_where(*where)}")
        changes[where] = change
    by_place: dict[tuple[str | None, str | None], list[Action]] = defaultdict(list)
    for action in plan.actions:
        by_place[(action.address, action.target)].append(action)
        problem = _unexplained(action, changes, plan)
        if problem:
            problems.append(f"action {action.id!r} {problem}")
    for (address, target), change in changes.items():
        kinds = {a.kind for a in by_place.get((address, target), [])}
        for verb in change.actions:
            needed = ActionKind.RECORD_PROTECTION if target is None and verb is ChangeAction.UPDATE else _REQUIRES.get(verb)
            if needed is not None and needed not in kinds:
                problems.append(f"the change {verb.value} of {_where(address, target)} has no {needed.value} action")
        if ChangeAction.FORGET in change.actions and not _forgotten(plan.actions, address, target):
            problems.append(f"the change forget of {_where(address, target)} has no forget_key action")
        planned = plan.keys.get(address)
        if change.after is not None and planned is not None and ChangeAction.NOOP not in change.actions:
            spec = planned.spec
            if change.after.labels != spec.labels or change.after.enabled != spec.enabled:
                problems.append(
                    f"the key spec of {address} sets other labels or another enabled state than the change of "
                    f"{_where(address, target)} shows"
                )
    return problems


def _unexplained(action: Action, changes: dict[tuple[str, str | None], PlannedChange], plan: Plan) -> str | None:
    """Why no reviewed change explains `action`, or None when one does."""
    if isinstance(action, GenerateMaterial):
        versions = {
            c.material_version
            for (address, _), c in changes.items()
            if address == action.address and ({ChangeAction.CREATE, ChangeAction.ROTATE} & set(c.actions))
        }
        return None if action.args.version in versions else "generates material no create or rotate change shows"
    if action.kind is ActionKind.ENSURE_PREREQUISITE:
        imports = any(
            target == action.target and set(_ALLOWED_BY[ActionKind.IMPORT_MATERIAL]) & set(c.actions)
            for (_, target), c in changes.items()
        )
        return None if imports else "prepares an import no change shows"
    if isinstance(action, ForgetKey):
        return None if _forget_explained(action, changes, plan) else "forgets a key no change removes"
    if isinstance(action, RecordProtection):
        change = changes.get((action.address, None))
        planned = plan.keys.get(action.address)
        if change is None or ChangeAction.UPDATE not in change.actions:
            return f"is not shown by any change of {action.address}"
        if planned is None or planned.prevent_destroy != action.args.prevent_destroy:
            return f"records prevent_destroy = {str(action.args.prevent_destroy).lower()}, which the key's plan does not say"
        return None
    change = changes.get((action.address or "", action.target))
    allowed = _ALLOWED_BY[action.kind]
    if change is None or not (allowed & set(change.actions)):
        return f"is not shown by any change of {_where(action.address or '', action.target)}"
    if isinstance(action, ScheduleDeletion) and action.args.remote_id != change.remote_id:
        return f"deletes {action.args.remote_id}, but the change deletes {change.remote_id}"
    if isinstance(action, AdoptKey) and action.args.remote_id != change.remote_id:
        return f"adopts {action.args.remote_id}, but the change adopts {change.remote_id}"
    if isinstance(action, ImportMaterial | WrapMaterial) and action.args.version != change.material_version:
        return f"handles material version {action.args.version}, but the change shows {change.material_version}"
    if isinstance(action, ImportMaterial) and not (_PURPOSE_OF[action.args.purpose] & set(change.actions)):
        return f"imports for purpose {action.args.purpose.value}, which the change does not show"
    if isinstance(action, ImportMaterial | GetImportParameters):
        offer = action.args.offer
        if change.wrap is None or (change.wrap.method, change.wrap.wrapping_key_bits) != (offer.method, offer.wrapping_key_bits):
            return f"wraps with {offer.method.value} under RSA-{offer.wrapping_key_bits}, which the change does not show"
    return None


def _forget_explained(action: ForgetKey, changes: dict[tuple[str, str | None], PlannedChange], plan: Plan) -> bool:
    if action.args.target_only:
        change = changes.get((action.address, action.target))
        return change is not None and ChangeAction.FORGET in change.actions
    own = [c for (address, _), c in changes.items() if address == action.address]
    removing = {ChangeAction.DELETE, ChangeAction.FORGET}
    return bool(own) and action.address not in plan.keys and all(set(c.actions) <= removing for c in own)


def _forgotten(actions: Iterable[Action], address: str, target: str | None) -> bool:
    for action in actions:
        if isinstance(action, ForgetKey) and action.address == address:
            if action.args.target_only == (target is not None) and action.target == target:
                return True
            if not action.args.target_only:
                return True
    return False


def _where(address: str, target: str | None) -> str:
    return f"{address} @ {target}" if target else address


def refuse_disagreement(plan: Plan, path: str) -> None:
    """Raise a diagnostic naming every disagreement between the plan's actions and its changes."""
    problems = disagreements(plan)
    if problems:
        listed = "".join(f"\n  - {problem}" for problem in problems)
        raise DiagnosticsError.single(
            "The plan's actions do not match its reviewed changes",
            f"{path} would run actions its changes do not show (or show changes it would not run), so what "
            f"a reviewer saw is not what would run:{listed}\nDo not apply it; make a new plan with "
            "`keyplan plan -out=FILE` and have it reviewed again.",
        )


def specs_from_configuration(plan: Plan, config: Config) -> Diagnostics:
    """The key specs a saved plan carries must be those its configuration gives (the configuration
    digest already matched): an edited spec would send other labels or settings than reviewed."""
    diagnostics = Diagnostics()
    desired = desired_keys(config)
    for address, planned in plan.keys.items():
        wanted = desired.get(address)
        if wanted is None:
            diagnostics.error(
                "The plan carries a key its configuration does not declare",
                f"The plan names {address}, which the configuration it was made from does not declare. The plan "
                "was edited after it was saved; make a new one and have it reviewed again.",
                address=address,
            )
            continue
        ours = (wanted.spec.model_copy(update={"range": None}), wanted.source, wanted.prevent_destroy)
        theirs = (planned.spec.model_copy(update={"range": None}), planned.source, planned.prevent_destroy)
        if ours != theirs:
            diagnostics.error(
                "The plan's key spec differs from its configuration",
                f"The plan carries settings for {address} (labels, aliases, description, enabled, expiry, "
                "rotation, source or protection) other than its configuration gives. The plan was edited after it "
                "was saved; make a new one and have it reviewed again.",
                address=address,
            )
    return diagnostics
