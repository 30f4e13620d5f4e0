"""`keyplan validate`, `plan`, `drift` and `graph`: parse flags, call an operation, render."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyplan.cli import ui
from keyplan.cli.options import (
    Exit,
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    ThrottleTimeoutOpt,
    VarFileOpt,
    VarOpt,
    emit,
    from_working_dir,
    load,
    lock_options,
    parse_bool,
    parse_duration,
    variables,
    workspace,
)
from keyplan.diagnostics import DiagnosticsError
from keyplan.heap import collector_paused

if TYPE_CHECKING:  # `keyplan validate` loads no plan machinery
    from keyplan.plan.work import PlanOptions

TargetOpt = Annotated[
    list[str], typer.Option("-target", "--target", help="Plan only this key address.")
]
ReplaceOpt = Annotated[list[str], typer.Option("-replace", "--replace", help="Rotate this key now (new material version).")]
RefreshOpt = Annotated[str, typer.Option("-refresh", "--refresh", help="Read live inventory (true/false).")]
ParallelismOpt = Annotated[
    int, typer.Option("-parallelism", "--parallelism", min=1, max=256, help="Calls in flight at once.")
]


VerifyOpt = Annotated[
    bool,
    typer.Option(
        "-verify",
        "--verify",
        help="Prove each import right after it (as keyplan verify): a verify_material action after each import_material.",
    ),
]


AllowNewLineageOpt = Annotated[
    bool,
    typer.Option(
        "-allow-new-lineage",
        "--allow-new-lineage",
        help="Plan new keys even where keys for the same addresses exist under another keyplan state, or the "
        "state is missing beside its backup or journal (signs of a lost state, which stop the plan otherwise).",
    ),
]


def plan_options(
    target: list[str],
    replace: list[str],
    refresh: str,
    refresh_only: bool,
    expiry_horizon: str | None,
    verify: bool = False,
    allow_new_lineage: bool = False,
    throttle_timeout: str = "30m",
) -> PlanOptions:
    from keyplan.addresses import canonical
    from keyplan.plan.work import PlanOptions

    return PlanOptions(
        targets=tuple(canonical(address) for address in target),
        replace=tuple(canonical(address) for address in replace),
        refresh=parse_bool("refresh", refresh),
        refresh_only=refresh_only,
        expiry_horizon=parse_duration("expiry-horizon", expiry_horizon) if expiry_horizon else None,
        verify=verify,
        allow_new_lineage=allow_new_lineage,
        throttle_timeout=parse_duration("throttle-timeout", throttle_timeout).total_seconds(),
    )


def validate(
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    json_output: Annotated[bool, typer.Option("-json", "--json", help="Diagnostics as JSON.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """Check the configuration without contacting any cloud."""
    from keyplan.operations.policy import as_diagnostics, gate, policy_findings

    config, diagnostics = workspace().check(variables(var, var_file))
    findings = policy_findings(config) if config is not None and not diagnostics.has_errors() else []
    if json_output:
        emit(
            json.dumps(
                {
                    "valid": not diagnostics.has_errors() and not any(f.severity == "error" for f in findings),
                    "error_count": len(diagnostics.errors),
                    "warning_count": len(diagnostics.warnings),
                    "diagnostics": [d.model_dump(mode="json") for d in diagnostics],
                    "findings": [f.model_dump(mode="json") for f in findings],
                },
                indent=2,
            )
            + "\n"
        )
        raise Exit(1 if diagnostics.has_errors() or any(f.severity == "error" for f in findings) else 0)
    if diagnostics.has_errors():
        raise DiagnosticsError(diagnostics)
    ui.print_diagnostics(diagnostics.warnings, no_color=no_color)
    gate(findings, "validate")
    ui.print_diagnostics(as_diagnostics(findings), no_color=no_color)
    emit(f"Success! The configuration is valid ({len(config.keys) if config else 0} keys).\n")


def plan(
    out: Annotated[Path | None, typer.Option("-out", "--out", help="Save the plan to this file.")] = None,
    json_output: Annotated[bool, typer.Option("-json", "--json", help="Print the plan as JSON.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("-detailed-exitcode", "--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    target: TargetOpt = [],  # noqa: B006
    replace: ReplaceOpt = [],  # noqa: B006
    refresh: RefreshOpt = "true",
    refresh_only: Annotated[
        bool, typer.Option("-refresh-only", "--refresh-only", help="Only report drift (changes made outside keyplan).")
    ] = False,
    expiry_horizon: Annotated[
        str | None, typer.Option("-expiry-horizon", "--expiry-horizon", help="Report material expiring within this, e.g. 30d.")
    ] = None,
    parallelism: ParallelismOpt = 10,
    verify: VerifyOpt = False,
    allow_new_lineage: AllowNewLineageOpt = False,
    throttle_timeout: ThrottleTimeoutOpt = "30m",
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Show what apply would change: configuration against state and the live clouds."""
    from keyplan.operations.plan import plan as make_plan
    from keyplan.plan.model import Plan
    from keyplan.plan.planfile import plan_json, save_plan
    from keyplan.plan.render import render_json, render_text

    with collector_paused():  # configuration, plan and its text: large and acyclic (keyplan.heap)
        config = load(var, var_file, no_color=no_color)
        options = plan_options(
            target, replace, refresh, refresh_only, expiry_horizon, verify, allow_new_lineage, throttle_timeout
        )
        result = make_plan(config, options, lock=lock_options(lock, lock_timeout), parallelism=parallelism)
        if out is not None:
            out = from_working_dir(out)
            result = save_plan(result, out)
        if json_output:
            emit(render_json(result if out is not None else Plan.model_validate_json(plan_json(result))))
        else:
            ui.print_diagnostics(result.warnings, no_color=no_color)
            emit(render_text(result, colour=ui.use_colour(sys.stdout, no_color)))
            if out is not None:
                emit(f"\nSaved the plan to {out}. To apply exactly this plan, run: keyplan apply {out}\n")
    if detailed_exitcode and result.has_changes:
        raise Exit(2)


def drift(
    json_output: Annotated[
        bool, typer.Option("-json", "--json", help="Print the drift report as JSON (schemas/drift.schema.json).")
    ] = False,
    expiry_horizon: Annotated[
        str, typer.Option("-expiry-horizon", "--expiry-horizon", help="Report material expiring within this.")
    ] = "30d",
    verify: Annotated[
        bool,
        typer.Option(
            "-verify",
            "--verify",
            help="Also prove each key's material at each target (as keyplan verify); a mismatch is drift.",
        ),
    ] = False,
    throttle_timeout: ThrottleTimeoutOpt = "30m",
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Report changes made outside keyplan; exit 2 when there are any (for scheduled jobs)."""
    from keyplan.drift_report import render_drift_report
    from keyplan.operations.plan import drift as refresh_only
    from keyplan.plan.render import render_text

    config = load(var, var_file, no_color=no_color)
    options = plan_options([], [], "true", True, expiry_horizon, throttle_timeout=throttle_timeout)
    outcome = refresh_only(config, options, lock=lock_options(lock, lock_timeout), verify=verify)
    result, report = outcome.plan, outcome.policy
    if outcome.proof_errors:
        ui.print_diagnostics(outcome.proof_errors, no_color=no_color)
    emit(render_drift_report(result) if json_output else render_text(result, colour=ui.use_colour(sys.stdout, no_color)))
    if result.drift or (report and report.errors):
        raise Exit(2)
    if outcome.proof_errors:  # with -verify, as keyplan verify: a proof not tried or refused is incomplete
        raise Exit(1)


def graph(
    planfile: Annotated[Path | None, typer.Argument(help="A saved plan; without it, a fresh plan.")] = None,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    no_color: NoColorOpt = False,  # accepted like everywhere: DOT has no colour
) -> None:
    """Print the action graph in DOT format: render it with Graphviz (`keyplan graph | dot -Tsvg > plan.svg`;
    Graphviz is the `graphviz` package of most systems)."""
    from keyplan.operations.plan import plan_unlocked
    from keyplan.plan.graph import ActionGraph
    from keyplan.plan.planfile import load_plan
    from keyplan.plan.work import PlanOptions

    if planfile is not None:
        saved = load_plan(from_working_dir(planfile))
    else:
        saved = plan_unlocked(load(var, var_file, no_color=True), PlanOptions())
    emit(ActionGraph(saved.actions).to_dot())


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("plan")(plan)
    app.command("drift")(drift)
    app.command("graph")(graph)
