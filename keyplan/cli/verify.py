"""`keyplan verify`: prove that each target holds exactly the material its key source holds
(registered by keyplan.cli.main; the work is `keyplan.operations.verify`). Exit 0 when every
imported version is proven or unprovable by design (no proof exists for that kind of key), 2 when
any target holds other material, 1 when the verification is incomplete: a proof could not be
tried (credentials, an unreachable endpoint) or was refused (a disabled key, a usage that forbids
the operation, a configuration block missing)."""

from __future__ import annotations

import sys
from typing import Annotated

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
    load,
    lock_options,
    parse_duration,
)


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("verify")(verify)


def verify(
    addresses: Annotated[
        list[str] | None, typer.Argument(metavar="[ADDR]...", help="Key addresses to verify; all keys in state without.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("-json", "--json", help="Print the results as JSON (schemas/verify.schema.json).")
    ] = False,
    parallelism: Annotated[int, typer.Option("-parallelism", "--parallelism", min=1, max=256)] = 10,
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
    throttle_timeout: ThrottleTimeoutOpt = "30m",
) -> None:
    """Prove, per key, target and imported version, that the cloud holds the source's material."""
    from keyplan.operations.verify import verify as prove_all
    from keyplan.verification import render_json, render_text, unproven_diagnostics, warnings_for

    config = load(var, var_file, no_color=no_color)
    from keyplan.addresses import canonical

    given = [canonical(address) for address in addresses or []]
    patience = parse_duration("throttle-timeout", throttle_timeout).total_seconds()
    report = prove_all(
        config, given, lock=lock_options(lock, lock_timeout), parallelism=parallelism, throttle_timeout=patience
    )
    if json_output:
        emit(render_json(report))
    else:
        ui.print_diagnostics(
            [*warnings_for(report), *unproven_diagnostics(report), *report.errors], no_color=no_color
        )
        emit(render_text(report, colour=ui.use_colour(sys.stdout, no_color)))
    if report.mismatches:
        raise Exit(2)
    if not report.complete:
        raise Exit(1)
