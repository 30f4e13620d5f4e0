"""Applying: lock → read state → plan (or check a saved plan) → approve → walk → commit.

The caller supplies what is interactive as `ApplyCallbacks`: showing the plan, approving it,
and a listener for the walk's progress. `apply_saved` applies a reviewed plan exactly, with the
variable values it recorded.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from keyplan.apply.walker import ApplyHooks, ApplyResult, Interruption
from keyplan.approvals import Approval
from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.heap import frozen_heap
from keyplan.limits import DEFAULT_THROTTLE_TIMEOUT, ClassStats, RateClass
from keyplan.operations.plan import make_plan
from keyplan.operations.workspace import (
    LockOptions,
    Variables,
    Workspace,
    locked,
    read_state,
    refuse_lost_state,
    state_backend,
    unsettled_creates,
)
from keyplan.plan.model import Plan
from keyplan.plan.work import PlanOptions
from keyplan.state.model import State
from keyplan.state.store import StateStore

if TYPE_CHECKING:
    from keyplan.runtime import Session


@dataclass(frozen=True)
class ApplyCallbacks:
    show: Callable[[Plan], None] = lambda plan: None  # the plan about to be approved
    approve: Callable[[Plan], bool] = lambda plan: True  # called only when the plan changes something
    progress: Callable[[Plan], ApplyHooks | None] = lambda plan: None  # a listener for the walk
    warnings: Callable[[Diagnostics], None] = lambda warnings: None  # configuration warnings (apply_saved)
    # Stop requests from outside (Ctrl-C): the walk hands out no new step after the first, and
    # abandons the steps in flight after the second; the state is committed either way.
    interruption: Interruption | None = None


class ApplyStatus(StrEnum):
    NO_CHANGES = "no_changes"  # the plan had nothing to do
    CANCELLED = "cancelled"  # not approved
    ACCEPTED = "accepted"  # refresh-only: the clouds' values taken into state
    NOTHING_TO_DO = "nothing_to_do"  # an approved or saved plan without actions
    APPLIED = "applied"  # walked (see `result` for what failed)


@dataclass(frozen=True)
class ApplyOutcome:
    plan: Plan
    status: ApplyStatus
    result: ApplyResult | None = None
    quota_waits: list[tuple[str, RateClass, ClassStats]] = field(default_factory=list)  # time spent within quotas
    accepted: int = 0  # refresh-only: key targets whose live values were taken into state

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.ok


def apply(
    config: Config,
    options: PlanOptions,
    *,
    lock: LockOptions,
    parallelism: int = 10,
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT,
    callbacks: ApplyCallbacks = ApplyCallbacks(),
) -> ApplyOutcome:
    """`keyplan apply` without a plan file: plan, show, approve, walk, commit. A declared
    policy's error-level findings stop it before planning; the plan carries the others. A
    configuration that requires signed approvals applies changes only from a saved plan."""
    from keyplan.operations.policy import gate, policy_findings

    if config.approvals is not None and not options.refresh_only:
        raise DiagnosticsError.single(
            "This configuration requires approved plans",
            "The keyplan block has an approvals block, so changes are applied only from a saved plan its signers "
            "approved: run `keyplan plan -out=FILE`, have it approved with `keyplan approve FILE`, then "
            "`keyplan apply FILE`.",
        )
    backend = state_backend(config)
    with locked(backend, "apply", lock):
        state, exists = read_state(backend)
        if not (options.refresh_only or options.allow_new_lineage):
            refuse_lost_state(backend)
        options = replace(options, unsettled_creates=unsettled_creates(backend))
        findings = policy_findings(config, state if exists else None)
        gate(findings, "apply")
        from keyplan.runtime import Session

        # One session plans and walks: each provider's client and each source (a keystore's
        # unlocking) are opened once.
        with Session(config, throttle_timeout=throttle_timeout) as session:
            wait_for_unsettled_creates(session, state, options, callbacks)
            planned = make_plan(config, state, exists, options, parallelism, session=session)
            planned = planned.model_copy(update={"findings": findings})
            callbacks.show(planned)
            if not planned.has_changes:
                # Fingerprints a state upgrade dropped are filled in, and a journal an interrupted apply
                # left is folded into the state document, even when nothing else changes.
                if recompute_fingerprints(config, state) or backend.has_journal:
                    backend.write(state)
                return ApplyOutcome(planned, ApplyStatus.NO_CHANGES)
            if not callbacks.approve(planned):
                return ApplyOutcome(planned, ApplyStatus.CANCELLED)
            return execute(
                planned, config, backend, state, parallelism, callbacks, throttle_timeout=throttle_timeout, session=session
            )


def wait_for_unsettled_creates(session: Session, state: State, options: PlanOptions, callbacks: ApplyCallbacks) -> None:
    """An apply interrupted while creating a key may have made it, and a cloud that lists new
    keys only after a delay would not show it yet: creating the key again would make two. Wait
    until the target's consistency window has passed since that creation started, so the plan's
    scan finds the key (adopted) or the call never reached the cloud (created now)."""
    now = datetime.now(UTC)
    waits: list[tuple[float, str]] = []
    for address, target, started in options.unsettled_creates:
        record = state.keys.get(address)
        if (record is not None and target in record.targets) or target not in session.config.providers:
            continue
        _, settings = session.provider_plugin(target)
        remaining = (started + timedelta(seconds=settings.consistency_window()) - now).total_seconds()
        if remaining > 0:
            waits.append((remaining, f"{address} at {target}"))
    if not waits:
        return
    longest = max(seconds for seconds, _ in waits)
    listed = ", ".join(sorted(where for _, where in waits))
    notice = Diagnostics()
    notice.warning(
        f"Waiting {longest:.0f} s for keys an interrupted apply was creating",
        f"An interrupted apply started creating {listed}, and the cloud may not list a new key at once (eventual "
        "consistency). keyplan waits until it would, then looks again: a key that was made is adopted, not created a "
        "second time.",
    )
    callbacks.warnings(notice)
    time.sleep(longest)


def apply_saved(
    saved: Plan,
    workspace: Workspace,
    variables: Variables = Variables(),
    *,
    lock: LockOptions,
    parallelism: int = 10,
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT,
    max_age: timedelta | None = None,
    approvals: list[Approval] | None = None,
    callbacks: ApplyCallbacks = ApplyCallbacks(),
) -> tuple[Config, ApplyOutcome]:
    """`keyplan apply FILE`: the configuration loaded with the variable values the plan recorded
    (sensitive ones come from the environment or -var/-var-file again), the plan refused if the
    state, the configuration, keyplan or the plan's age no longer allow it, or when the
    configuration requires signed `approvals` the plan lacks; then walked."""
    from keyplan.approvals import check_approvals, valid_approvers
    from keyplan.plan.agreement import specs_from_configuration
    from keyplan.plan.planfile import check_applicable

    recorded = saved.options.get("variables", {})
    config, warnings = workspace.load(variables, planned_values=recorded if isinstance(recorded, dict) else {})
    callbacks.warnings(warnings)
    backend = state_backend(config)
    with locked(backend, "apply", lock):
        state, exists = read_state(backend)
        if not exists:
            state = State(lineage=saved.prior.lineage)
        problems = check_applicable(
            saved, state, state_exists=exists, config_digest=config.digest, max_age=max_age
        )
        problems.extend(specs_from_configuration(saved, config))
        now = datetime.now(UTC)
        problems.extend(check_approvals(saved, config.approvals, approvals or [], now))
        if problems.has_errors():
            raise DiagnosticsError(problems)
        approvers = (
            [s.name for s in valid_approvers(saved, config.approvals, approvals or [], now)[0]]
            if config.approvals
            else []
        )
        return config, execute(
            saved, config, backend, state, parallelism, callbacks, approvers, throttle_timeout=throttle_timeout
        )


def ensure_writable(directory: Path, what: str) -> None:
    """Refuse, before anything changes, when `directory` cannot hold `what`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise DiagnosticsError.single(
            f"Cannot write {what}",
            f"{directory} cannot hold {what} ({exc.strerror}). Nothing was changed. Make it a writable directory, "
            "or point the configuration elsewhere, then run the command again.",
        ) from None


def recompute_fingerprints(config: Config, state: State) -> bool:
    """Fill in the fingerprints a state format upgrade dropped (see keyplan/state/upgrade.py),
    asking each key's source for the current definition. True when any was filled in."""
    from keyplan.crypto.fingerprint import is_current_fingerprint
    from keyplan.runtime import Session

    missing = [
        (record, material)
        for record in state.keys.values()
        for material in record.materials
        if material.fingerprint is None and record.source in config.sources
    ]
    if not missing:
        return False
    with Session(config) as session:
        for record, material in missing:
            info = session.source(record.source).describe(material.handle)
            fresh = info.fingerprint if info.present else None
            material.fingerprint = fresh if fresh is not None and is_current_fingerprint(fresh) else None
    return any(material.fingerprint is not None for _, material in missing)


def _check_sources_hold(session: Session, plan: Plan, state: State) -> None:
    """Checked again before the walk (a saved plan may be applied long after it was made): a
    source whose recorded material went missing meanwhile stops the apply before any change."""
    from keyplan.plan.planner import check_sources_hold

    refused = Diagnostics()
    replacing = plan.options.get("replace") or []
    sources = {key.source for key in plan.keys.values()}
    check_sources_hold(session, state, sources, refused, tuple(str(a) for a in replacing if isinstance(replacing, list)))
    refused.raise_if_errors()


def execute(
    plan: Plan,
    config: Config,
    backend: StateStore,
    state: State,
    parallelism: int,
    callbacks: ApplyCallbacks,
    approvers: list[str] | None = None,
    *,
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT,
    session: Session | None = None,
) -> ApplyOutcome:
    """Walk an approved plan against the state the caller read under the lock; the state is
    committed as the walk goes and written whole at the end. Walks with `session`'s plugins when
    given (the caller closes it), else opens its own."""
    from keyplan.apply.audit import AuditLog
    from keyplan.apply.committer import StateCommitter
    from keyplan.apply.walker import CompositeHooks, Walker, accept_live
    from keyplan.plan.planfile import plan_digest
    from keyplan.runtime import Session

    # Everything this apply must write is checked before the first change: the state's
    # directory, and (when there is work) the audit log, opened now.
    from keyplan.state.local import LocalBackend

    if isinstance(backend.backend, LocalBackend):  # a remote store reports its own errors as it is written
        ensure_writable(backend.backend.state_path(backend.workspace).parent, "the state")
    walking = plan.mode != "refresh-only" and bool(plan.actions)
    audit = AuditLog(backend.backend, plan.digest or plan_digest(plan), approvers, backend.workspace) if walking else None
    if recompute_fingerprints(config, state):
        backend.write(state)
    committer = StateCommitter(backend, state)
    if plan.mode == "refresh-only":
        return ApplyOutcome(plan, ApplyStatus.ACCEPTED, accepted=accept_live(plan, committer))
    if audit is None:
        return ApplyOutcome(plan, ApplyStatus.NOTHING_TO_DO)
    progress = callbacks.progress(plan)
    hooks = CompositeHooks(progress, audit) if progress is not None else CompositeHooks(audit)
    with nullcontext(session) if session is not None else Session(config, throttle_timeout=throttle_timeout) as session:
        _check_sources_hold(session, plan, state)
        try:
            with frozen_heap():
                walker = Walker(
                    plan, session, committer, hooks=hooks, parallelism=parallelism, interruption=callbacks.interruption
                )
                result = walker.run()
        finally:
            try:
                audit.flush()  # every outcome entry durable before the apply reports
            finally:
                committer.finish()
    return ApplyOutcome(plan, ApplyStatus.APPLIED, result=result, quota_waits=session.limits.waits())
