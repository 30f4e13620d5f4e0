"""`keyplan apply`: parse flags, call the apply operation (fresh or saved plan), render."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from keyplan.apply.events import ApplyEndEvent, PlanEvent, diagnostic_event, event_line
from keyplan.apply.summary import KeyProgress, keys_done_by_change, keys_progress
from keyplan.apply.walker import ApplyHooks, ApplyResult, Interruption
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
    parse_duration,
    variables,
    workspace,
)
from keyplan.cli.plan import (
    AllowNewLineageOpt,
    ParallelismOpt,
    RefreshOpt,
    ReplaceOpt,
    TargetOpt,
    VerifyOpt,
    plan_options,
)
from keyplan.cli.progress import JsonProgress, LineProgress, TerminalProgress
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.escaping import for_terminal
from keyplan.operations.apply import ApplyCallbacks, ApplyOutcome, ApplyStatus
from keyplan.plan.model import Plan

INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command


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
    parallelism: ParallelismOpt = 32,
    max_plan_age: Annotated[
        str, typer.Option("-max-plan-age", "--max-plan-age", help="Refuse saved plans older than this.")
    ] = "24h",
    verify: VerifyOpt = False,
    allow_new_lineage: AllowNewLineageOpt = False,
    throttle_timeout: ThrottleTimeoutOpt = "30m",
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "-json",
            "--json",
            help="Progress and outcome as JSON events, one per line (schemas/apply-events.schema.json); needs "
            "-auto-approve or a saved plan.",
        ),
    ] = False,
) -> None:
    """Make the clouds match the configuration (or apply a saved plan exactly)."""
    from keyplan.approvals import read_approvals
    from keyplan.operations.apply import apply as apply_plan
    from keyplan.operations.apply import apply_saved
    from keyplan.plan.planfile import load_plan

    with _errors_as_events(json_output):
        if json_output and planfile is None and not auto_approve:
            raise DiagnosticsError.single(
                "apply -json needs -auto-approve or a saved plan",
                "With -json, standard output carries JSON events only, so keyplan cannot show the plan and ask for "
                "confirmation. Pass -auto-approve, or apply a reviewed plan: `keyplan plan -out=FILE`, then "
                "`keyplan apply -json FILE`.",
            )
        view = _ApplyView(ui.use_colour(sys.stdout, no_color), json_output=json_output)
        locking = lock_options(lock, lock_timeout)
        patience = parse_duration("throttle-timeout", throttle_timeout).total_seconds()
        if planfile is not None:
            if verify:
                raise DiagnosticsError.single(
                    "-verify does not change a saved plan",
                    "A saved plan applies exactly as it was reviewed. Make it with `keyplan plan -verify -out=FILE` to "
                    "prove each import as it is applied.",
                )
            if allow_new_lineage:
                raise DiagnosticsError.single(
                    "-allow-new-lineage does not change a saved plan",
                    "A saved plan applies exactly as it was reviewed. Make it with `keyplan plan -allow-new-lineage "
                    "-out=FILE` to plan new keys beside those of another state.",
                )
            saved = load_plan(from_working_dir(planfile))
            approvals = read_approvals(from_working_dir(planfile))
            max_age = parse_duration("max-plan-age", max_plan_age) if max_plan_age not in ("0", "0s") else None
            with _interrupts_as_requests(view.interruption), view.showing():
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
                        progress=view.progress,
                        warnings=lambda warnings: _warnings(warnings, json_output, no_color),
                        interruption=view.interruption,
                    ),
                )
            view.end(outcome)

        config = load(var, var_file, no_color=no_color)
        callbacks = ApplyCallbacks(
            show=lambda plan: _show(plan, json_output, no_color, view.colour),
            approve=lambda plan: auto_approve or _confirm(),
            progress=view.progress,
            warnings=lambda warnings: _warnings(warnings, json_output, no_color),
            interruption=view.interruption,
        )
        options = plan_options(target, replace, refresh, refresh_only, None, verify, allow_new_lineage)
        with _interrupts_as_requests(view.interruption), view.showing():
            outcome = apply_plan(
                config, options, lock=locking, parallelism=parallelism, throttle_timeout=patience, callbacks=callbacks
            )
        view.end(outcome)


def _show(plan: Plan, json_output: bool, no_color: bool, colour: bool) -> None:
    """The plan about to be applied, after its warnings (as `keyplan plan` shows them)."""
    from keyplan.plan.render import render_text

    _warnings(Diagnostics(plan.warnings), json_output, no_color)
    if not json_output:
        emit(render_text(plan, colour=colour))


def _warnings(warnings: Diagnostics, json_output: bool, no_color: bool) -> None:
    if not json_output:
        ui.print_diagnostics(warnings, no_color=no_color)
        return
    for warning in warnings:
        emit(event_line(diagnostic_event(warning)))


@contextmanager
def _errors_as_events(json_output: bool) -> Iterator[None]:
    """With -json, standard output carries JSON events only: diagnostics that stop an apply before
    or outside its walk (configuration, state, lock, plan file) become `diagnostic` events and an
    `apply_end` event with outcome "failed", and nothing is written as text."""
    try:
        yield
    except DiagnosticsError as error:
        if not json_output:
            raise
        for diagnostic in error.diagnostics:
            emit(event_line(diagnostic_event(diagnostic)))
        emit(event_line(ApplyEndEvent(outcome="failed")))
        raise Exit(1) from None


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


@contextmanager
def _interrupts_as_requests(interruption: Interruption) -> Iterator[None]:
    """While the plan is walked and its state committed, Ctrl-C, SIGTERM (a cancelled CI job,
    `timeout`) and SIGHUP (a closed terminal) ask the walk to stop instead of raising where they
    land: the first lets the steps in flight finish, the second abandons them. Before the walk
    (planning, the confirmation) they interrupt at once; after it they are only counted, so the
    final state write and the summary are never cut short."""

    def request(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if interruption.walked:
            interruption.request(name)
            if interruption.requests == 1:
                _notice(f"\n{name}: stopping after the steps in flight; interrupt again to abandon them at once.\n")
        else:
            raise KeyboardInterrupt(name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {number: signal.signal(number, request) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _notice(text: str) -> None:
    """A line to standard error from a signal handler: written with os.write, since the handler
    may run in the middle of a buffered write to the same stream."""
    try:
        os.write(sys.stderr.fileno(), text.encode())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class _ApplyView:
    """What an apply shows: the walk's progress, then how it ended (and the exit code)."""

    def __init__(self, colour: bool, *, json_output: bool = False) -> None:
        self.colour = colour
        self.json_output = json_output
        self.interruption = Interruption()
        self.hooks: LineProgress | TerminalProgress | JsonProgress | None = None

    def progress(self, plan: Plan) -> ApplyHooks:
        if self.json_output:
            emit(event_line(_plan_event(plan)))
            self.hooks = JsonProgress(sys.stdout, plan)
        elif sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
            emit("\n")
            self.hooks = TerminalProgress(sys.stdout, plan, colour=self.colour)
        else:
            emit("\n")
            self.hooks = LineProgress(sys.stdout, plan, colour=self.colour)
        return self.hooks

    @contextmanager
    def showing(self) -> Iterator[None]:
        """The progress display ends with the operation, even when it raises."""
        try:
            yield
        finally:
            self.close()

    def close(self) -> None:
        if self.hooks is not None:
            self.hooks.close()  # steps abandoned in flight may still report: nothing after the summary

    def end(self, outcome: ApplyOutcome) -> None:
        self.close()
        code = _json_end(outcome) if self.json_output else _render(outcome, self.colour)
        result = outcome.result
        if result is not None and (result.interrupted or self.interruption.stopping):
            raise Exit(INTERRUPTED, abandoned=result.abandoned)
        raise Exit(code)


def _plan_event(plan: Plan) -> PlanEvent:
    from keyplan.plan.render import summary_counts, target_counts

    return PlanEvent(
        keys=len({a.address for a in plan.actions if a.address is not None}),
        steps=len(plan.actions),
        summary=dict(summary_counts(plan)),
        summary_targets=dict(target_counts(plan)),
    )


def _json_end(outcome: ApplyOutcome) -> int:
    """`apply -json`: the last event, with what the text summary says; the exit code."""
    statuses = {ApplyStatus.NO_CHANGES: "no_changes", ApplyStatus.NOTHING_TO_DO: "no_changes"}
    if outcome.status in statuses:
        emit(event_line(ApplyEndEvent(outcome="no_changes")))
        return 0
    if outcome.status is ApplyStatus.ACCEPTED:
        emit(event_line(ApplyEndEvent(outcome="accepted", accepted=outcome.accepted)))
        return 0
    result = outcome.result
    assert result is not None, outcome.status  # -json applies only with -auto-approve or a saved plan
    progress = keys_progress(outcome.plan, result)
    ended = (
        "abandoned"
        if result.abandoned
        else "interrupted"
        if result.interrupted
        else "complete"
        if result.ok
        else "failed"
    )
    emit(
        event_line(
            ApplyEndEvent(
                outcome=ended,
                keys=dict(keys_done_by_change(outcome.plan, result)),
                failed=progress.of(KeyProgress.FAILED),
                partly_done=progress.of(KeyProgress.PARTLY_DONE),
                cut_short=progress.of(KeyProgress.CUT_SHORT),
                not_started=progress.of(KeyProgress.NOT_STARTED),
            )
        )
    )
    return INTERRUPTED if result.interrupted else 0 if result.ok else 1


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
    if result.diagnostics:
        ui.print_diagnostics(result.diagnostics, no_color=not colour)
    if result.interrupted:
        emit(_interrupted(outcome.plan, result))
        return INTERRUPTED
    done = _keys_done(outcome.plan, result)
    if not result.ok:
        failed = keys_progress(outcome.plan, result).of(KeyProgress.FAILED)
        noun = "key" if len(failed) == 1 else "keys"
        listed = f" ({_keys(failed)})" if failed else ""
        emit(
            f"\nApply failed! {done}; {len(failed)} {noun} failed{listed}. The state records everything that was "
            "done; run `keyplan plan` to see what is left.\n"
        )
        return 1
    emit(f"\nApply complete! {done}.\n")
    return 0


def _keys_done(plan: Plan, result: ApplyResult) -> str:
    """`Keys: 2 created, 1 imported, 1 updated, 0 rotated, 0 deleted` (adopted and forgotten when any)."""
    counts = keys_done_by_change(plan, result)
    parts = [f"{counts['create']} created"]
    if counts["adopt"]:
        parts.append(f"{counts['adopt']} adopted")
    parts += [
        f"{counts['import']} imported",
        f"{counts['update']} updated",
        f"{counts['rotate']} rotated",
        f"{counts['delete']} deleted",
    ]
    if counts["forget"]:
        parts.append(f"{counts['forget']} forgotten")
    return "Keys: " + ", ".join(parts)


_SHOWN_PER_LIST = 8


def _keys(addresses: list[str]) -> str:
    shown = ", ".join(for_terminal(address) for address in addresses[:_SHOWN_PER_LIST])
    more = len(addresses) - _SHOWN_PER_LIST
    return f"{shown} and {more} more" if more > 0 else shown


def _interrupted(plan: Plan, result: ApplyResult) -> str:
    """Per key, what an interrupted apply did and did not do."""
    progress = keys_progress(plan, result)
    parts = []
    for kind, words in (
        (KeyProgress.DONE, "done"),
        (KeyProgress.PARTLY_DONE, "partly done"),
        (KeyProgress.CUT_SHORT, "cut short in flight"),
        (KeyProgress.FAILED, "failed"),
        (KeyProgress.NOT_STARTED, "not started"),
    ):
        addresses = progress.of(kind)
        if addresses or kind in (KeyProgress.DONE, KeyProgress.NOT_STARTED):
            noun = "key" if len(addresses) == 1 else "keys"
            listed = f" ({_keys(addresses)})" if addresses else ""
            parts.append(f"{len(addresses)} {noun} {words}{listed}")
    if result.abandoned:
        how = (
            "Interrupted twice: the steps in flight were abandoned; a remote change they made may or may not have "
            "happened, and the next plan finds it (keyplan tags the keys it creates)."
        )
    else:
        how = "Interrupted: no step started after the interrupt, and the steps in flight finished."
    return (
        f"\n{how}\n{', '.join(parts)}.\n"
        "The state records every step that finished. Run `keyplan apply` again to finish.\n"
    )


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("apply")(apply)
