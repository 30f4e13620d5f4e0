"""`keyplan check`: the policy rules over the configuration and the state, for people and for
code-review pipelines (text, JSON or SARIF 2.1.0). The policy steps validate, plan, apply and
drift share are in `keyplan.operations.policy`.

Exit codes of check: 0 when no finding reaches -fail-on, 2 when one does, 1 on errors (an
invalid configuration or state). Without a `policy` block, check runs every built-in rule
with its defaults; validate, plan and drift run rules only when the configuration declares
a policy.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli import ui
from keyplan.cli.options import Exit, NoColorOpt, VarFileOpt, VarOpt, emit, load, parse_bool
from keyplan.policy.model import FindingSeverity, Phase


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
    from keyplan.operations.workspace import state_backend
    from keyplan.policy.engine import default_policy, evaluate
    from keyplan.policy.report import render_json, render_sarif, render_text

    config = load(var, var_file, no_color=no_color)
    state = state_backend(config).read() if parse_bool("state", with_state) else None
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
