"""Planning: lock → read state → plan (configuration × state × the live clouds)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostic, DiagnosticsError
from keyplan.heap import collector_paused
from keyplan.operations.workspace import (
    LockOptions,
    locked,
    read_state,
    refuse_lost_state,
    state_backend,
    unsettled_creates,
)
from keyplan.plan.model import Plan
from keyplan.plan.work import PlanOptions
from keyplan.state.model import State

if TYPE_CHECKING:
    from keyplan.policy.engine import PolicyReport
    from keyplan.runtime import Session


def make_plan(
    config: Config,
    state: State,
    prior_exists: bool,
    options: PlanOptions,
    parallelism: int = 10,
    session: Session | None = None,
) -> Plan:
    """One plan against a state the caller has read (and locked, when it will act on it). The
    plan records the non-sensitive variable values it was made with, for `apply_saved`. With a
    `session`, its plugins stay open for the caller (an apply walks with the ones it planned with)."""
    from keyplan.plan.planner import make_plan as planner
    from keyplan.runtime import Session

    opening = Session(config, throttle_timeout=options.throttle_timeout) if session is None else nullcontext(session)
    with opening as opened, collector_paused():
        plan, diagnostics = planner(opened, state, prior_exists=prior_exists, options=options, parallelism=parallelism)
    if plan is None:
        raise DiagnosticsError(diagnostics)
    return plan.model_copy(update={"options": {**plan.options, "variables": plain_variables(config)}})


def plain_variables(config: Config) -> dict[str, object]:
    return {name: v.value for name, v in config.variables.items() if not v.sensitive}


def plan(config: Config, options: PlanOptions, *, lock: LockOptions, parallelism: int = 10) -> Plan:
    """`keyplan plan`: plan under the state lock. A declared policy's error-level findings stop
    it; the plan carries the others."""
    from keyplan.operations.policy import gate, policy_findings

    backend = state_backend(config)
    with locked(backend, "plan", lock):
        state, exists = read_state(backend)
        if not (options.refresh_only or options.allow_new_lineage):
            refuse_lost_state(backend)
        options = replace(options, unsettled_creates=unsettled_creates(backend))
        findings = policy_findings(config, state if exists else None)
        gate(findings, "plan")
        return make_plan(config, state, exists, options, parallelism).model_copy(update={"findings": findings})


@dataclass(frozen=True)
class DriftOutcome:
    plan: Plan  # refresh-only, its drift including material mismatches when verified
    policy: PolicyReport | None  # a declared policy's live rules
    proof_errors: list[Diagnostic]  # proofs that could not be tried or were refused (with `verify`)


def drift(config: Config, options: PlanOptions, *, lock: LockOptions, verify: bool = False) -> DriftOutcome:
    """`keyplan drift`: a refresh-only plan, with `verify` the proofs of `keyplan verify` (a
    mismatch is drift), and a declared policy's rules over the live keys."""
    from keyplan.operations.policy import live_findings

    backend = state_backend(config)
    proof_errors: list[Diagnostic] = []
    with locked(backend, "drift", lock):
        state, exists = read_state(backend)
        result = make_plan(config, state, exists, options, 10)
        if verify:
            from keyplan.verification import material_drift, run_verify, unproven_diagnostics

            proofs = run_verify(config, state)
            proof_errors = [*unproven_diagnostics(proofs), *proofs.errors]
            result = result.model_copy(update={"drift": [*result.drift, *material_drift(proofs)]})
    report = live_findings(config, state, result.live)
    return DriftOutcome(result.model_copy(update={"findings": report.findings if report else []}), report, proof_errors)


def plan_unlocked(config: Config, options: PlanOptions, parallelism: int = 10) -> Plan:
    """A plan only to look at (`keyplan graph`): the state is read without the lock."""
    state, exists = read_state(state_backend(config))
    return make_plan(config, state, exists, options, parallelism)
