"""The `keyplan` command line: the only place that prints and chooses exit codes.

Exit codes: 0 success (with -detailed-exitcode: no changes), 1 error, 2 (with
-detailed-exitcode) changes present or drift found. User errors are printed as diagnostics
without a traceback; anything else is a bug, shown with its traceback and a request to report
it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from keyplan import __version__
from keyplan.cli import ui
from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.escaping import for_terminal
from keyplan.plan.diff import PlanOptions
from keyplan.plan.model import Plan
from keyplan.policy.model import Finding
from keyplan.state.local import LocalBackend
from keyplan.state.model import State

app = typer.Typer(
    name="keyplan",
    help="Declarative bring-your-own-key management for AWS KMS, Azure Key Vault / Managed HSM and Google Cloud KMS.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "-help", "--help"]},
)
state_app = typer.Typer(help="Inspect and change the state.", no_args_is_help=True)
app.add_typer(state_app, name="state")

DEFAULT_STATE_FILE = "keyplan.kpstate.json"


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@dataclass
class Globals:
    chdir: Path


_globals = Globals(chdir=Path("."))


def working_dir() -> Path:
    """The configuration directory of this invocation (after -chdir)."""
    return _globals.chdir.resolve()


def from_working_dir(path: Path) -> Path:
    """A path the user gave, read like Terraform after -chdir: relative to the configuration directory."""
    return path if path.is_absolute() else working_dir() / path


@app.callback()
def _main_options(
    chdir: Annotated[
        Path | None, typer.Option("-chdir", "--chdir", help="Switch to this directory before doing anything else.")
    ] = None,
) -> None:
    _globals.chdir = chdir or Path(".")
    _configure_logging()


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time, so captured output captures logs too."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging must never break a command
            self.handleError(record)


def _configure_logging() -> None:
    logger = logging.getLogger("keyplan")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(os.environ.get("KEYPLAN_LOG", "WARNING").upper())


# ---------------------------------------------------------------------------------------------
# Shared steps
# ---------------------------------------------------------------------------------------------

VarOpt = Annotated[list[str], typer.Option("-var", "--var", help="Set a variable: -var 'name=value'. Repeatable.")]
VarFileOpt = Annotated[
    list[Path], typer.Option("-var-file", "--var-file", help="Variables from an HCL or JSON file. Repeatable.")
]
NoColorOpt = Annotated[bool, typer.Option("-no-color", "--no-color", help="No colour in output.")]
LockOpt = Annotated[str, typer.Option("-lock", "--lock", help="Lock the state (true/false).")]
LockTimeoutOpt = Annotated[
    str, typer.Option("-lock-timeout", "--lock-timeout", help="How long to wait for a held lock, e.g. 30s.")
]


def _bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise DiagnosticsError.single(f"Invalid value for -{name}", f"-{name} takes true or false, not {text!r}.")


def _duration(name: str, text: str) -> timedelta:
    from keyplan.config.durations import DurationError, parse_duration

    if text.strip() in ("0", "0s"):
        return timedelta(0)
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise DiagnosticsError.single(f"Invalid value for -{name}", f"{text!r}: {exc.message}. {exc.hint}") from None


def load(var_args: list[str], var_files: list[Path], *, no_color: bool, validate: bool = True) -> Config:
    from keyplan.config.load import load_config

    config, diagnostics = load_config(
        working_dir(), var_args=var_args, var_files=[from_working_dir(f) for f in var_files]
    )
    if config is not None and validate:
        diagnostics.extend(validate_all(config))
    if diagnostics.has_errors() or config is None:
        raise DiagnosticsError(diagnostics)
    ui.print_diagnostics(diagnostics.warnings, no_color=no_color)
    return config


def validate_all(config: Config) -> Diagnostics:
    from keyplan.config.validate import validate_config

    return validate_config(config)


def policy_findings(config: Config, state: State | None = None) -> list[Finding]:
    """The findings of the configuration's policy block (none without one): configuration
    rules, and state rules when a state is given."""
    from keyplan.cli.check import offline_findings

    report = offline_findings(config, state)
    return report.findings if report else []


def policy_gate(findings: list[Finding], command: str, *, no_color: bool, show: bool = True) -> None:
    """Stop the command on error-level findings (exit 1); print the others as warnings unless
    the command shows them itself (a plan carries its findings)."""
    from keyplan.cli.check import as_diagnostics, refusal

    if any(f.severity == "error" for f in findings):
        raise DiagnosticsError([*as_diagnostics(findings), refusal(findings, command)])
    if show:
        ui.print_diagnostics(as_diagnostics(findings), no_color=no_color)


def backend_for(config: Config) -> LocalBackend:
    if config.state.kind != "local":
        raise DiagnosticsError.single(
            f"Unsupported state backend {config.state.kind!r}",
            'keyplan stores state in a local file: use `state "local" { path = "..." }` in the keyplan block.',
            range=config.state.range,
        )
    path = Path(str(config.state.attributes.get("path", DEFAULT_STATE_FILE)))
    return LocalBackend(path if path.is_absolute() else Path(config.directory) / path)


@contextmanager
def state_lock(backend: LocalBackend, operation: str, lock: str, lock_timeout: str) -> Iterator[None]:
    if not _bool("lock", lock):
        yield
        return
    with backend.locked(operation, _duration("lock-timeout", lock_timeout).total_seconds()):
        yield


def read_state(backend: LocalBackend) -> tuple[State, bool]:
    state = backend.read()
    return (state, True) if state is not None else (State(), False)


def plan_options(
    target: list[str],
    replace: list[str],
    refresh: str,
    refresh_only: bool,
    expiry_horizon: str | None,
    verify: bool = False,
) -> PlanOptions:
    return PlanOptions(
        targets=tuple(target),
        replace=tuple(replace),
        refresh=_bool("refresh", refresh),
        refresh_only=refresh_only,
        expiry_horizon=_duration("expiry-horizon", expiry_horizon) if expiry_horizon else None,
        verify=verify,
    )


VerifyOpt = Annotated[
    bool,
    typer.Option(
        "-verify",
        "--verify",
        help="Prove each import right after it (as keyplan verify): a verify_material action after each import_material.",
    ),
]


def run_plan(config: Config, state: State, prior_exists: bool, options: PlanOptions, parallelism: int) -> Plan:
    from keyplan.plan.planner import make_plan
    from keyplan.runtime import Session

    with Session(config) as session:
        plan, diagnostics = make_plan(
            session, state, prior_exists=prior_exists, options=options, parallelism=parallelism
        )
    if plan is None:
        raise DiagnosticsError(diagnostics)
    return plan.model_copy(update={"options": {**plan.options, "variables": _plain_variables(config)}})


def _plain_variables(config: Config) -> dict[str, object]:
    return {name: v.value for name, v in config.variables.items() if not v.sensitive}


def emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@app.command()
def version() -> None:
    """Print keyplan's version."""
    emit(f"keyplan {__version__}\n")


@app.command()
def validate(
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    json_output: Annotated[bool, typer.Option("-json", "--json", help="Diagnostics as JSON.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """Check the configuration without contacting any cloud."""
    from keyplan.config.load import load_config

    config, diagnostics = load_config(
        working_dir(), var_args=var, var_files=[from_working_dir(f) for f in var_file]
    )
    if config is not None:
        diagnostics.extend(validate_all(config))
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
    policy_gate(findings, "validate", no_color=no_color)
    emit(f"Success! The configuration is valid ({len(config.keys) if config else 0} keys).\n")


@app.command()
def plan(
    out: Annotated[Path | None, typer.Option("-out", "--out", help="Save the plan to this file.")] = None,
    json_output: Annotated[bool, typer.Option("-json", "--json", help="Print the plan as JSON.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("-detailed-exitcode", "--detailed-exitcode", help="Exit 2 when there are changes.")
    ] = False,
    target: Annotated[list[str], typer.Option("-target", "--target", help="Plan only this key address.")] = [],  # noqa: B006
    replace: Annotated[
        list[str], typer.Option("-replace", "--replace", help="Rotate this key now (new material version).")
    ] = [],  # noqa: B006
    refresh: Annotated[str, typer.Option("-refresh", "--refresh", help="Read live inventory (true/false).")] = "true",
    refresh_only: Annotated[
        bool, typer.Option("-refresh-only", "--refresh-only", help="Only report drift (changes made outside keyplan).")
    ] = False,
    expiry_horizon: Annotated[
        str | None, typer.Option("-expiry-horizon", "--expiry-horizon", help="Report material expiring within this, e.g. 30d.")
    ] = None,
    parallelism: Annotated[int, typer.Option("-parallelism", "--parallelism", min=1, max=256)] = 10,
    verify: VerifyOpt = False,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Show what apply would change: configuration against state and the live clouds."""
    config = load(var, var_file, no_color=no_color)
    backend = backend_for(config)
    options = plan_options(target, replace, refresh, refresh_only, expiry_horizon, verify)
    with state_lock(backend, "plan", lock, lock_timeout):
        state, exists = read_state(backend)
        findings = policy_findings(config, state if exists else None)
        policy_gate(findings, "plan", no_color=no_color, show=False)
        result = run_plan(config, state, exists, options, parallelism).model_copy(update={"findings": findings})
    from keyplan.plan.planfile import plan_json, save_plan
    from keyplan.plan.render import render_json, render_text

    if out is not None:
        out = from_working_dir(out)
        result = save_plan(result, out)
    if json_output:
        emit(render_json(result if out is not None else Plan.model_validate_json(plan_json(result))))
    else:
        ui.print_diagnostics([], no_color=no_color)
        emit(render_text(result, colour=ui.use_colour(sys.stdout, no_color)))
        if out is not None:
            emit(f"\nSaved the plan to {out}. To apply exactly this plan, run: keyplan apply {out}\n")
    if detailed_exitcode and result.has_changes:
        raise Exit(2)


@app.command()
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
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Report changes made outside keyplan; exit 2 when there are any (for scheduled jobs)."""
    config = load(var, var_file, no_color=no_color)
    backend = backend_for(config)
    options = plan_options([], [], "true", True, expiry_horizon)
    with state_lock(backend, "drift", lock, lock_timeout):
        state, exists = read_state(backend)
        result = run_plan(config, state, exists, options, 10)
        if verify:
            from keyplan.verification import material_drift, run_verify

            proofs = run_verify(config, state)
            ui.print_diagnostics(proofs.errors, no_color=no_color)
            result = result.model_copy(update={"drift": [*result.drift, *material_drift(proofs)]})
            if proofs.errors and not result.drift:
                raise Exit(1)
    from keyplan.cli.check import live_findings
    from keyplan.drift_report import render_drift_report
    from keyplan.plan.render import render_text

    report = live_findings(config, state, result.live)
    result = result.model_copy(update={"findings": report.findings if report else []})
    emit(render_drift_report(result) if json_output else render_text(result, colour=ui.use_colour(sys.stdout, no_color)))
    if result.drift or (report and report.errors):
        raise Exit(2)


@app.command()
def apply(
    planfile: Annotated[Path | None, typer.Argument(help="A plan saved with `keyplan plan -out`.")] = None,
    auto_approve: Annotated[
        bool, typer.Option("-auto-approve", "--auto-approve", help="Apply without asking for confirmation.")
    ] = False,
    target: Annotated[list[str], typer.Option("-target", "--target")] = [],  # noqa: B006
    replace: Annotated[list[str], typer.Option("-replace", "--replace")] = [],  # noqa: B006
    refresh: Annotated[str, typer.Option("-refresh", "--refresh")] = "true",
    refresh_only: Annotated[
        bool, typer.Option("-refresh-only", "--refresh-only", help="Accept the clouds' current values into state.")
    ] = False,
    parallelism: Annotated[int, typer.Option("-parallelism", "--parallelism", min=1, max=256)] = 10,
    max_plan_age: Annotated[
        str, typer.Option("-max-plan-age", "--max-plan-age", help="Refuse saved plans older than this.")
    ] = "24h",
    verify: VerifyOpt = False,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Make the clouds match the configuration (or apply a saved plan exactly)."""
    from keyplan.approvals import check_approvals, read_approvals, valid_approvers
    from keyplan.plan.agreement import specs_from_configuration
    from keyplan.plan.planfile import check_applicable, load_plan
    from keyplan.plan.render import render_text

    colour = ui.use_colour(sys.stdout, no_color)
    if planfile is not None:
        if verify:
            raise DiagnosticsError.single(
                "-verify does not change a saved plan",
                "A saved plan applies exactly as it was reviewed. Make it with `keyplan plan -verify -out=FILE` to "
                "prove each import as it is applied.",
            )
        saved = load_plan(from_working_dir(planfile))
        with tempfile.TemporaryDirectory() as scratch:
            # The plan records the (non-sensitive) variable values it was made with.
            recorded = Path(scratch) / "planned.kpvars.json"
            recorded.write_text(json.dumps(saved.options.get("variables", {})))
            config = load(var, [recorded, *var_file], no_color=no_color)
        backend = backend_for(config)
        with state_lock(backend, "apply", lock, lock_timeout):
            state, exists = read_state(backend)
            if not exists:
                state = State(lineage=saved.prior.lineage)
            problems = check_applicable(
                saved,
                state,
                state_exists=exists,
                config_digest=config.digest,
                max_age=_duration("max-plan-age", max_plan_age) if max_plan_age not in ("0", "0s") else None,
            )
            problems.extend(specs_from_configuration(saved, config))
            approvals = read_approvals(from_working_dir(planfile))
            problems.extend(check_approvals(saved, config.approvals, approvals, datetime.now(UTC)))
            if problems.has_errors():
                raise DiagnosticsError(problems)
            approvers = (
                [s.name for s in valid_approvers(saved, config.approvals, approvals, datetime.now(UTC))[0]]
                if config.approvals
                else []
            )
            code = execute(saved, config, backend, state, parallelism, colour, approvers)
        raise Exit(code)

    config = load(var, var_file, no_color=no_color)
    if config.approvals is not None and not refresh_only:
        raise DiagnosticsError.single(
            "This configuration requires approved plans",
            "The keyplan block has an approvals block, so changes are applied only from a saved plan its signers "
            "approved: run `keyplan plan -out=FILE`, have it approved with `keyplan approve FILE`, then "
            "`keyplan apply FILE`.",
        )
    backend = backend_for(config)
    options = plan_options(target, replace, refresh, refresh_only, None, verify)
    with state_lock(backend, "apply", lock, lock_timeout):
        state, exists = read_state(backend)
        findings = policy_findings(config, state if exists else None)
        policy_gate(findings, "apply", no_color=no_color, show=False)
        result = run_plan(config, state, exists, options, parallelism).model_copy(update={"findings": findings})
        emit(render_text(result, colour=colour))
        if not result.has_changes:
            raise Exit(0)
        if not auto_approve:
            if not sys.stdin.isatty():
                raise DiagnosticsError.single(
                    "No terminal to confirm the apply",
                    "keyplan apply asks for confirmation, but standard input is not a terminal. Review the plan and "
                    "pass -auto-approve, or save a plan with `keyplan plan -out=FILE` and run `keyplan apply FILE`.",
                )
            if not ui.confirm("\nDo you want to perform these actions? Only 'yes' will be accepted.\n  Enter a value: "):
                emit("\nApply cancelled.\n")
                raise Exit(1)
        raise Exit(execute(result, config, backend, state, parallelism, colour))


def execute(
    plan_: Plan,
    config: Config,
    backend: LocalBackend,
    state: State,
    parallelism: int,
    colour: bool,
    approvers: list[str] | None = None,
) -> int:
    from keyplan.apply.committer import StateCommitter
    from keyplan.apply.walker import Walker, accept_live
    from keyplan.runtime import Session

    committer = StateCommitter(backend, state)
    if plan_.mode != "refresh-only" and not plan_.actions:
        emit("No changes. Nothing to apply.\n")
        return 0
    if plan_.mode == "refresh-only":
        changed = accept_live(plan_, committer)
        emit(f"\nApply complete! Accepted the clouds' values for {changed} key target(s) into state.\n")
        return 0
    from keyplan.apply.audit import AUDIT_FILE, AuditLog
    from keyplan.apply.walker import CompositeHooks
    from keyplan.plan.planfile import plan_digest

    progress = ui.ProgressHooks(sys.stdout, colour=colour, total=len(plan_.actions))
    audit = AuditLog(Path(config.directory) / ".keyplan" / AUDIT_FILE, plan_.digest or plan_digest(plan_), approvers)
    hooks = CompositeHooks(progress, audit)
    emit("\n")
    with Session(config) as session:
        try:
            result = Walker(plan_, session, committer, hooks=hooks, parallelism=parallelism).run()
        finally:
            committer.finish()
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


@app.command()
def show(
    planfile: Annotated[Path | None, typer.Argument(help="A saved plan; without it, the state.")] = None,
    json_output: Annotated[bool, typer.Option("-json", "--json")] = False,
    markdown: Annotated[bool, typer.Option("-markdown", "--markdown", help="Markdown for a pull-request comment.")] = False,
    no_color: NoColorOpt = False,
) -> None:
    """Show a saved plan (text, JSON or Markdown) or the current state."""
    from keyplan.approvals import approvals_text, read_approvals
    from keyplan.plan.planfile import load_plan
    from keyplan.plan.render import render_json, render_markdown, render_text

    if planfile is not None:
        saved = load_plan(from_working_dir(planfile))
        approvals = read_approvals(from_working_dir(planfile))
        if json_output:
            document = json.loads(render_json(saved))
            document["approvals"] = [a.model_dump(mode="json") for a in approvals]
            emit(json.dumps(document, indent=2, sort_keys=True) + "\n")
        elif markdown:
            emit(render_markdown(saved) + approvals_text(approvals, markdown=True))
        else:
            emit(render_text(saved, colour=ui.use_colour(sys.stdout, no_color)) + approvals_text(approvals))
        return
    config = load([], [], no_color=no_color, validate=False)
    state = backend_for(config).read()
    if state is None:
        emit("No state.\n")
        return
    if json_output:
        emit(json.dumps(state.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        return
    for address in sorted(state.keys):
        emit(_state_show(state, address))


def _state_show(state: State, address: str) -> str:
    record = state.keys[address]
    lines = [f"# {address}", f"  algorithm: {record.algorithm} ({record.usage}), source {record.source}"]
    for material in record.materials:
        lines.append(
            f"  material v{material.version}: {material.fingerprint} (created {material.created_at.isoformat(timespec='seconds')})"
        )
    for target, target_record in sorted(record.targets.items()):
        lines.append(f"  @ {target}: {target_record.remote_id}")
        current = target_record.current_material_version
        lines.append(f"      current material: v{current}" if current else "      current material: none")
        for imported in target_record.imports:
            expires = f", expires {imported.expires_at.isoformat(timespec='seconds')}" if imported.expires_at else ""
            lines.append(f"      imported v{imported.material_version} as {imported.remote_version_id}{expires}")
        if target_record.labels:
            lines.append("      labels: " + ", ".join(f"{k}={v}" for k, v in sorted(target_record.labels.items())))
        if target_record.aliases:
            lines.append("      aliases: " + ", ".join(target_record.aliases))
        lines.append(f"      enabled: {str(target_record.enabled).lower()}")
        if target_record.deletion_date:
            lines.append(f"      deletion scheduled: {target_record.deletion_date.isoformat(timespec='seconds')}")
    return "\n".join(for_terminal(line) for line in lines) + "\n\n"


@state_app.command("list")
def state_list() -> None:
    """List the key addresses in state."""
    config = load([], [], no_color=True, validate=False)
    state = backend_for(config).read()
    for address in sorted(state.keys if state else {}):
        emit(for_terminal(address) + "\n")


@state_app.command("show")
def state_show(address: Annotated[str, typer.Argument(help="A key address, e.g. key.app[\"payments-prod\"].")]) -> None:
    """Show one key's record in state."""
    config = load([], [], no_color=True, validate=False)
    state = backend_for(config).read()
    if state is None or address not in state.keys:
        known = ", ".join(sorted(state.keys)[:5]) if state else ""
        raise DiagnosticsError.single(
            f"No key {address} in state",
            "Run `keyplan state list` to see the addresses in state." + (f" Some are: {known}." if known else ""),
        )
    emit(_state_show(state, address))


@app.command()
def graph(
    planfile: Annotated[Path | None, typer.Argument(help="A saved plan; without it, a fresh plan.")] = None,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
) -> None:
    """Print the action graph in DOT format (for Graphviz)."""
    from keyplan.plan.graph import ActionGraph
    from keyplan.plan.planfile import load_plan

    if planfile is not None:
        saved = load_plan(from_working_dir(planfile))
    else:
        config = load(var, var_file, no_color=True)
        backend = backend_for(config)
        state, exists = read_state(backend)
        saved = run_plan(config, state, exists, PlanOptions(), 10)
    emit(ActionGraph(saved.actions).to_dot())


@app.command("force-unlock")
def force_unlock(
    lock_id: Annotated[str, typer.Argument(metavar="ID", help="The lock ID shown in the lock error.")],
    force: Annotated[bool, typer.Option("-force", "--force", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a state lock left by an operation that is no longer running."""
    config = load([], [], no_color=True, validate=False)
    backend = backend_for(config)
    if not force:
        if not sys.stdin.isatty():
            raise DiagnosticsError.single(
                "No terminal to confirm force-unlock", "Pass -force to remove the lock without confirmation."
            )
        if not ui.confirm(f"Remove the lock {lock_id}? Only 'yes' will be accepted.\n  Enter a value: "):
            raise Exit(1)
    held = backend.force_unlock(lock_id)
    emit(f"keyplan state has been unlocked (the lock was held by {held.who}@{held.host} for {held.operation}).\n")


@app.command()
def emulator(
    kind: Annotated[str, typer.Argument(help="aws, gcp or azure")],
    port: Annotated[int, typer.Option("--port", "-port")] = 0,
    data_dir: Annotated[Path, typer.Option("--data-dir", "-data-dir")] = Path(".keyplan/emulators"),
    latency_ms: Annotated[float, typer.Option("--latency-ms", "-latency-ms")] = 0.0,
) -> None:
    """Run a cloud emulator on loopback until interrupted (for tools other than keyplan)."""
    import importlib

    if kind not in ("aws", "gcp", "azure"):
        raise DiagnosticsError.single(f"No emulator named {kind!r}", "Choose one of: aws, gcp, azure.")
    module = importlib.import_module(f"providers.{kind}.emulator")
    args = ["--port", str(port), "--data-dir", str(data_dir), "--latency-ms", str(latency_ms)]
    raise Exit(int(module.main(args) or 0))


def _register_command_groups() -> None:
    # Command groups kept in their own modules: HSM set-up, BYOK transfer files, review and
    # adoption workflows. Each adds its commands to the app (and to `keyplan state`).
    from keyplan.cli import approve, byok, check, hsm, review, verify

    for module in (hsm, byok, review, check, verify, approve):
        module.register(app, state_app)


_register_command_groups()


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _click() -> Any:
    # typer ships its own copy of click in newer releases and depends on click in older ones.
    try:
        import click  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:
        from typer import _click as click
    return click


def main(argv: list[str] | None = None) -> NoReturn:
    click = _click()

    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        command.main(args=args, prog_name="keyplan", standalone_mode=False)
        code = 0
    except Exit as exc:
        code = exc.code
    except DiagnosticsError as exc:
        ui.print_diagnostics(exc.diagnostics, no_color="-no-color" in args or "--no-color" in args)
        code = 1
    except typer.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:  # usage errors: unknown flag, missing argument
        exc.show()
        code = 1
    except typer.Abort:
        sys.stderr.write("\nInterrupted.\n")
        code = 1
    except BrokenPipeError:
        # the reader of our output went away (`keyplan graph | head`): nothing left to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted. State records every step that finished; run `keyplan plan` to see the rest.\n")
        code = 1
    except Exception:
        traceback.print_exc()
        sys.stderr.write(
            "\nkeyplan crashed: this is a bug in keyplan, not in your configuration. Please report it with the "
            "traceback above and the command you ran.\n"
        )
        code = 1
    sys.exit(code)
