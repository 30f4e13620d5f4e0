"""`keyplan export-byok`: the Azure provider's own command, contributed to the `keyplan` command
line through the `keyplan.commands` entry point. It parses flags, runs the export under the
state lock (`providers.azure.byok`) and renders what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli.options import (
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    VarFileOpt,
    VarOpt,
    emit,
    load,
    lock_options,
)


def register(app: typer.Typer) -> None:
    """Add `keyplan export-byok` to the app."""
    app.command("export-byok")(export_byok)


def export_byok(
    address: Annotated[str, typer.Argument(metavar="ADDR", help='The key to export, e.g. key.data["prod"].')],
    vault: Annotated[
        str,
        typer.Option(
            "-vault", "--vault", metavar="PROVIDER", help="The Azure provider (vault) to export for, e.g. azure.hsm."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "-out", "--out", "--output", metavar="FILE", help="Where to write the .byok file."),
    ],
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Write a key's material, wrapped for an Azure vault's key-exchange key, as a .byok file."""
    from keyplan.operations.workspace import locked, read_state, state_backend
    from providers.azure.byok import ExportRequest, describe, export

    config = load(var, var_file, no_color=no_color)
    backend = state_backend(config)
    request = ExportRequest(address=address, vault=vault.removeprefix("provider."), output=output)
    with locked(backend, "export-byok", lock_options(lock, lock_timeout)):
        state, _ = read_state(backend)
        result = export(config, state, request)
    emit(describe(request, result, state))
