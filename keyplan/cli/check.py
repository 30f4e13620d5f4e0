"""`keyplan check`: the policy rules over the configuration and the state, for people and for
code-review pipelines (text, JSON or SARIF 2.1.0), and the policy steps validate, plan and
drift share (registered by keyplan.cli.main).

Exit codes of check: 0 when no finding reaches -fail-on, 2 when one does, 1 on errors (an
invalid configuration or state). Without a `policy` block, check runs every built-in rule
with its defaults; validate, plan and drift run rules only when the configuration declares
a policy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli import ui
from keyplan.cli.main import Exit, NoColorOpt, VarFileOpt, VarOpt, backend_for, emit, load
from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostic, Severity
from keyplan.policy.engine import PolicyReport, default_policy, evaluate, live_keys
from keyplan.policy.model import Finding, FindingSeverity, Phase
from keyplan.policy.report import render_json, render_sarif, render_text
from keyplan.state.model import State


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("check")(check)


def check(
    output_format: Annotated[
        Format, typer.Option("-format", "--format", help="text, json (schemas/policy.schema.json) or sarif (SARIF 2.1.0).")
    ] = Format.TEXT,
    fail_on: Annotated[
        FindingSeverity,
        typer.Option("-fail-on", "--fail-on", help="Exit 2 when a finding is at least this severe: error, warning or info."),
    ] = FindingSeverity.ERROR,
    with_state: Annotated[
        str, typer.Option("-state", "--state", help="Also run the rules that read the state (true/false).")
    ] = "true",
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    no_color: NoColorOpt = False,
) -> None:
    """Check the keys against the policy rules, without contacting any cloud."""
    from keyplan.cli.main import _bool

    config = load(var, var_file, no_color=no_color)
    state = backend_for(config).read() if _bool("state", with_state) else None
    policy = config.policy if config.policy.declared else default_policy()
    report = evaluate(config, phases={Phase.CONFIG, Phase.STATE}, state=state, policy=policy)
    if output_format is Format.JSON:
        emit(render_json(report))
    elif output_format is Format.SARIF:
        emit(render_sarif(report, config_dir=Path(config.directory), base=Path.cwd()))
    else:
        emit(render_text(report, colour=ui.use_colour(sys.stdout, no_color)))
    if report.at_least(fail_on):
        raise Exit(2)


# ---------------------------------------------------------------------------------------------
# The policy steps of validate, plan and drift
# ---------------------------------------------------------------------------------------------


def offline_findings(config: Config, state: State | None) -> PolicyReport | None:
    """The configuration (and, given one, state) rules of a declared policy; None without one."""
    if not config.policy.declared:
        return None
    phases = {Phase.CONFIG} | ({Phase.STATE} if state is not None else set())
    return evaluate(config, phases=phases, state=state)


def live_findings(config: Config, state: State, live: dict[str, dict[str, object]]) -> PolicyReport | None:
    """The live rules of a declared policy over a refresh-only plan's inventory."""
    if not config.policy.declared:
        return None
    return evaluate(config, phases={Phase.LIVE}, state=state, live=live_keys(live))


def refusal(findings: list[Finding], command: str) -> Diagnostic:
    errors = sum(f.severity is FindingSeverity.ERROR for f in findings)
    return Diagnostic(
        severity=Severity.ERROR,
        summary=f"keyplan {command} stops on error-level policy findings",
        detail=f"{errors} policy finding(s) above are errors under the configuration's policy block. Fix them, "
        "lower the rule's severity in the policy block, or record an exception with a reason and an expiry date.",
    )


def as_diagnostics(findings: Iterable[Finding]) -> list[Diagnostic]:
    return [
        Diagnostic(
            severity=Severity.ERROR if f.severity is FindingSeverity.ERROR else Severity.WARNING,
            summary=f"Policy {f.rule}: {f.message}",
            detail=f.fix + (f"\n{f.note}" if f.note else ""),
            range=f.range,
            address=f.address,
        )
        for f in findings
    ]
