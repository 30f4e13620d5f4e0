"""`keyplan apply`: parse flags, call the apply operation (fresh or saved plan), render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from keyplan.apply.walker import ApplyHooks
from keyplan.cli import ui
from keyplan.cli.options import (
    Exit,
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    VarFileOpt,
    VarOpt,
    emit,
    from_working_dir,
    load,
    lock_options,
    parse_duration,
    variables,
    workspace,
)
from keyplan.cli.plan import ParallelismOpt, RefreshOpt, ReplaceOpt, TargetOpt, VerifyOpt, plan_options
from keyplan.diagnostics import DiagnosticsError
from keyplan.operations.apply import ApplyCallbacks, ApplyOutcome, ApplyStatus
from keyplan.plan.model import Plan


def apply(
    planfile: Annotated[Path | None, typer.Argument(help="A plan saved with `keyplan plan -out`.")] = None,
    auto_approve: Annotated[
        bool, typer.Option("-auto-approve", "--auto-approve", help="Apply without asking for confirmation.")
    ] = False,
    target: TargetOpt = [],  # noqa: B006 - typer reads defaults
    replace: ReplaceOpt = [],  # noqa: B006
    refresh: RefreshOpt = "true",
    refresh_only: Annotated[
        bool, typer.Option("-refresh-only", "--refresh-only", help="Accept the clouds' current values into state.")
    ] = False,
    parallelism: ParallelismOpt = 10,
    max_plan_age: Annotated[
        str, typer.Option("-max-plan-age", "--max-plan-age", help="Refuse saved plans older than this.")
    ] = "24h",
    verify: VerifyOpt = False,
    throttle_timeout: Annotated[
        str,
        typer.Option(
            "-throttle-timeout",
            "--throttle-timeout",
            help="Stop when a cloud throttles one kind of call this long without letting one through.",
        ),
    ] = "30m",
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Make the clouds match the configuration (or apply a saved plan exactly)."""
    from keyplan.approvals import read_approvals
    from keyplan.operations.apply import apply as apply_plan
    from keyplan.operations.apply import apply_saved
    from keyplan.plan.planfile import load_plan
    from keyplan.plan.render import render_text

    colour = ui.use_colour(sys.stdout, no_color)
    locking = lock_options(lock, lock_timeout)
    patience = parse_duration("throttle-timeout", throttle_timeout).total_seconds()
    if planfile is not None:
        if verify:
            raise DiagnosticsError.single(
                "-verify does not change a saved plan",
                "A saved plan applies exactly as it was reviewed. Make it with `keyplan plan -verify -out=FILE` to "
                "prove each import as it is applied.",
            )
        saved = load_plan(from_working_dir(planfile))
        approvals = read_approvals(from_working_dir(planfile))
        max_age = parse_duration("max-plan-age", max_plan_age) if max_plan_age not in ("0", "0s") else None
        _, outcome = apply_saved(
            saved,
            workspace(),
            variables(var, var_file),
            lock=locking,
            parallelism=parallelism,
            throttle_timeout=patience,
            max_age=max_age,
            approvals=approvals,
            callbacks=ApplyCallbacks(
                progress=lambda plan: _progress(plan, colour),
                warnings=lambda warnings: ui.print_diagnostics(warnings, no_color=no_color),
            ),
        )
        raise Exit(_render(outcome, colour))

    config = load(var, var_file, no_color=no_color)
    callbacks = ApplyCallbacks(
        show=lambda plan: emit(render_text(plan, colour=colour)),
        approve=lambda plan: auto_approve or _confirm(),
        progress=lambda plan: _progress(plan, colour),
    )
    options = plan_options(target, replace, refresh, refresh_only, None, verify)
    outcome = apply_plan(
        config, options, lock=locking, parallelism=parallelism, throttle_timeout=patience, callbacks=callbacks
    )
    raise Exit(_render(outcome, colour))


def _confirm() -> bool:
    """The answer from the terminal, or from a pipe (`echo yes | keyplan apply`)."""
    answer = ui.ask("\nDo you want to perform these actions? Only 'yes' will be accepted.\n  Enter a value: ")
    if answer is None:
        raise DiagnosticsError.single(
            "No answer to confirm the apply",
            "keyplan apply asks for confirmation, and standard input ended without an answer. Review the plan and "
            "pass -auto-approve (or pipe the answer: echo yes | keyplan apply), or save a plan with "
            "`keyplan plan -out=FILE` and run `keyplan apply FILE`.",
        )
    return answer == "yes"


def _progress(plan: Plan, colour: bool) -> ApplyHooks:
    emit("\n")
    return ui.ProgressHooks(sys.stdout, colour=colour, total=len(plan.actions))


def _render(outcome: ApplyOutcome, colour: bool) -> int:
    """What the apply did, and the exit code."""
    if outcome.status is ApplyStatus.NO_CHANGES:
        return 0
    if outcome.status is ApplyStatus.CANCELLED:
        emit("\nApply cancelled.\n")
        return 1
    if outcome.status is ApplyStatus.NOTHING_TO_DO:
        emit("No changes. Nothing to apply.\n")
        return 0
    if outcome.status is ApplyStatus.ACCEPTED:
        emit(f"\nApply complete! Accepted the clouds' values for {outcome.accepted} key target(s) into state.\n")
        return 0
    result = outcome.result
    assert result is not None
    emit(ui.quota_waits(outcome.quota_waits))
    if not result.ok:
        ui.print_diagnostics(result.diagnostics, no_color=not colour)
        emit(
            f"\nApply failed: {len(result.succeeded)} step(s) done, {len(result.failed)} failed, "
            f"{len(result.skipped)} skipped. The state records everything that was done; run `keyplan plan` to see "
            "what is left.\n"
        )
        return 1
    emit(f"\nApply complete! {len(result.succeeded)} step(s) done.\n")
    return 0


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("apply")(apply)
