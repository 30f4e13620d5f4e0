"""`keyplan emulator KIND`: run a provider plugin's local emulator, and `keyplan version`."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

import typer

from keyplan import __version__
from keyplan.cli.options import Exit, emit, from_working_dir
from keyplan.diagnostics import DiagnosticsError


def version() -> None:
    """Print keyplan's version."""
    emit(f"keyplan {__version__}\n")


def emulator(
    kind: Annotated[str, typer.Argument(help="The provider kind, as in a `provider \"KIND\"` block.")],
    port: Annotated[int, typer.Option("--port", "-port", help="Loopback port (0: any free port).")] = 0,
    data_dir: Annotated[Path, typer.Option("--data-dir", "-data-dir", help="Where the emulator keeps its data (relative to -chdir).")] = Path(
        ".keyplan/emulators"
    ),
    latency_ms: Annotated[float, typer.Option("--latency-ms", "-latency-ms", help="Delay added to every call.")] = 0.0,
    variant: Annotated[
        str | None, typer.Option("--kind", "-kind", help="Which of the provider's emulators, when it has several.")
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            "--name",
            "-name",
            help='Serve the data of `provider "KIND" "NAME"` with endpoint = "embedded" (KIND-NAME.sqlite in the '
            "data directory), e.g. to change keys behind keyplan's back between runs.",
        ),
    ] = "main",
    profile: Annotated[
        Literal["default", "realistic"],
        typer.Option(
            "--profile",
            "-profile",
            help="realistic: enforce the cloud's documented request quotas with its own throttling answer, and "
            "list new keys after a delay (docs/quotas.md).",
        ),
    ] = "default",
    quota_scale: Annotated[
        float, typer.Option("--quota-scale", "-quota-scale", help="Multiply every quota (realistic profile).")
    ] = 1.0,
) -> None:
    """Run a cloud emulator on loopback until interrupted (for tools other than keyplan)."""
    from keyplan.provider import EmulatorOptions
    from keyplan.registry import provider_kinds, provider_plugin

    available = {k: p for k in provider_kinds() if (p := provider_plugin(k)) is not None and p.emulator_variants}
    plugin = available.get(kind)
    if plugin is None:
        raise DiagnosticsError.single(f"No emulator named {kind!r}", f"Choose one of: {', '.join(available)}.")
    if variant is not None and variant not in plugin.emulator_variants:
        raise DiagnosticsError.single(
            f"{kind} has no emulator kind {variant!r}", f"Choose one of: {', '.join(plugin.emulator_variants)}."
        )
    _check_options(port, latency_ms, quota_scale, name)
    options = EmulatorOptions(
        data_dir=from_working_dir(data_dir), name=name, port=port, latency_ms=latency_ms, variant=variant,
        profile=profile, quota_scale=quota_scale,
    )  # fmt: skip
    try:
        code = plugin.serve_emulator(options)
    except OSError as exc:  # the port is taken, the data directory cannot be written ...
        where = f" ({exc.filename})" if exc.filename else ""
        raise DiagnosticsError.single(
            f"The {kind} emulator cannot start: {exc.strerror or exc}{where}",
            "Choose another --port (0 picks a free one) or a --data-dir this user can write.",
        ) from None
    raise Exit(code)


def _check_options(port: int, latency_ms: float, quota_scale: float, name: str) -> None:
    problems = []
    if not re.fullmatch(r"[^\W\d][\w-]*", name):  # a block name (it makes a file name: no path may sneak in)
        problems.append(
            "--name is a provider block's name: a letter or underscore, then letters, digits, underscores and dashes"
        )
    if not 0 <= port <= 65535:
        problems.append("--port must be from 0 (any free port) to 65535")
    if not (math.isfinite(latency_ms) and 0 <= latency_ms <= 60_000):
        problems.append("--latency-ms must be a number of milliseconds from 0 to 60000")
    if not (math.isfinite(quota_scale) and 0 < quota_scale <= 1_000_000):
        problems.append("--quota-scale must be a positive number (every quota is multiplied by it)")
    if problems:
        raise DiagnosticsError.single("Invalid emulator option", "; ".join(problems) + ".")


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("version")(version)
    app.command("emulator")(emulator)
