"""The `keyplan` command line: the only place that prints and chooses exit codes.

Exit codes: 0 success (with -detailed-exitcode: no changes), 1 error, 2 (with
-detailed-exitcode) changes present or drift found. User errors are printed as diagnostics
without a traceback; anything else is a bug, shown with its traceback and a request to report
it.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from keyplan.cli import apply, approve, check, emulator, options, plan, review, state, ui, verify
from keyplan.cli.options import Exit
from keyplan.diagnostics import DiagnosticsError

app = typer.Typer(
    name="keyplan",
    help="Declarative bring-your-own-key management: keys generated in your key source, imported into cloud key "
    "management services.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "-help", "--help"]},
)
state_app = typer.Typer(help="Inspect and change the state.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@app.callback()
def _main_options(
    chdir: Annotated[
        Path | None, typer.Option("-chdir", "--chdir", help="Switch to this directory before doing anything else.")
    ] = None,
) -> None:
    options.set_chdir(chdir)
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


def _register_commands() -> None:
    """keyplan's own command modules, then what plugins contribute (`keyplan.commands` entry points)."""
    from keyplan.registry import command_contributions

    for module in (plan, apply, state, review, check, verify, approve, emulator):
        module.register(app, state_app)
    for _, contribute in command_contributions():
        contribute(app)


_register_commands()


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
