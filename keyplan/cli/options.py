"""What every command shares: the -chdir directory, the common flags, their parsing, and writing
to standard output. Command modules import this (and `ui`), never each other; plugins' command
contributions use it too."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyplan.diagnostics import DiagnosticsError
from keyplan.operations.workspace import LockOptions, Variables, Workspace

if TYPE_CHECKING:
    from keyplan.config.model import Config


class Exit(Exception):
    """Ends a command with this exit code (only `main` turns it into the process's exit).
    `abandoned`: threads were left running (an apply interrupted twice), so the process ends
    without waiting for them."""

    def __init__(self, code: int, *, abandoned: bool = False) -> None:
        self.code = code
        self.abandoned = abandoned


@dataclass
class _Globals:
    chdir: Path


_globals = _Globals(chdir=Path("."))


def set_chdir(chdir: Path | None) -> None:
    _globals.chdir = chdir or Path(".")


def workspace() -> Workspace:
    """The configuration directory of this invocation (after -chdir)."""
    return Workspace(_globals.chdir.resolve())


def from_working_dir(path: Path) -> Path:
    """A path the user gave, read like Terraform after -chdir: relative to the configuration directory."""
    return workspace().path(path)


VarOpt = Annotated[list[str], typer.Option("-var", "--var", help="Set a variable: -var 'name=value'. Repeatable.")]
VarFileOpt = Annotated[
    list[Path], typer.Option("-var-file", "--var-file", help="Variables from an HCL or JSON file. Repeatable.")
]
NoColorOpt = Annotated[bool, typer.Option("-no-color", "--no-color", help="No colour in output.")]
LockOpt = Annotated[str, typer.Option("-lock", "--lock", help="Lock the state (true/false).")]
ThrottleTimeoutOpt = Annotated[
    str,
    typer.Option(
        "-throttle-timeout",
        "--throttle-timeout",
        help="Stop when a cloud throttles one kind of call this long without letting one through.",
    ),
]
LockTimeoutOpt = Annotated[
    str, typer.Option("-lock-timeout", "--lock-timeout", help="How long to wait for a held lock, e.g. 30s.")
]


def parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise DiagnosticsError.single(f"Invalid value for -{name}", f"-{name} takes true or false, not {text!r}.")


def parse_duration(name: str, text: str) -> timedelta:
    from keyplan.config.durations import DurationError
    from keyplan.config.durations import parse_duration as parse

    if text.strip() in ("0", "0s"):
        return timedelta(0)
    if text.strip().isdigit():  # a number of what: say it, with this option's own examples
        raise DiagnosticsError.single(
            f"Invalid value for -{name}",
            f"{text!r} has no unit. Write a whole number followed by one unit: s, m, h, d or w, like "
            f'-{name}={text.strip()}s or -{name}={text.strip()}m.',
        )
    try:
        return parse(text)
    except DurationError as exc:
        raise DiagnosticsError.single(f"Invalid value for -{name}", f"{text!r}: {exc.message}. {exc.hint}") from None


def lock_options(lock: str, lock_timeout: str) -> LockOptions:
    return LockOptions(enabled=parse_bool("lock", lock), timeout=parse_duration("lock-timeout", lock_timeout))


def variables(var: list[str], var_file: list[Path]) -> Variables:
    return Variables(args=tuple(var), files=tuple(var_file))


def load(var: list[str], var_file: list[Path], *, no_color: bool, validate: bool = True) -> Config:
    """The configuration, its warnings printed; errors are raised."""
    from keyplan.cli import ui

    config, warnings = workspace().load(variables(var, var_file), validate=validate)
    ui.print_diagnostics(warnings, no_color=no_color)
    return config


def emit(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
