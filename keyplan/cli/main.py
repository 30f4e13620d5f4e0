"""The `keyplan` command line: the only place that prints and chooses exit codes.

Exit codes: 0 success (with -detailed-exitcode: no changes), 1 error, 2 (with
-detailed-exitcode) changes present or drift found. User errors are printed as diagnostics
without a traceback; anything else is a bug, shown with its traceback and a request to report
it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import io
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from keyplan import __version__
from keyplan.cli import options, ui
from keyplan.cli.options import Exit
from keyplan.diagnostics import DiagnosticsError
from keyplan.escaping import for_terminal, for_terminal_lines

# keyplan's command modules, in the order `keyplan -help` lists their commands, with the commands
# each adds. A run imports only the module of the command it runs (`keyplan plan` does not load
# the apply engine, `keyplan -version` no command at all); help, no command or a command not
# listed here (a plugin's) loads every module and every plugin's commands.
_COMMAND_MODULES = {
    "plan": ("validate", "plan", "drift", "graph"),
    "apply": ("apply",),
    "state": ("show", "state", "force-unlock"),
    "review": ("log", "import", "discover"),
    "check": ("check",),
    "verify": ("verify",),
    "approve": ("approve",),
    "emulator": ("version", "emulator"),
    "workspace": ("workspace", "init"),
}


def _print_version(value: bool) -> None:
    if value:
        options.emit(f"keyplan {__version__}\n")
        raise Exit(0)


def _main_options(
    chdir: Annotated[
        Path | None, typer.Option("-chdir", "--chdir", help="Switch to this directory before doing anything else.")
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "-version", "--version", help="Print keyplan's version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    if chdir is not None and not chdir.is_dir():
        raise DiagnosticsError.single(
            f"No directory {chdir}",
            f"-chdir names the directory that holds the configuration, and {chdir} "
            + ("is a file." if chdir.exists() else "does not exist.")
            + " Check the path.",
        )
    options.set_chdir(chdir)
    _configure_logging()


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time, so captured output captures logs too; a
    message quotes values from configuration or a cloud (a keystore path, a cloud's error), so
    its control characters are shown escaped."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(for_terminal_lines(self.format(record)) + "\n")
        except Exception:  # logging must never break a command
            self.handleError(record)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _configure_logging() -> None:
    logger = logging.getLogger("keyplan")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    level = os.environ.get("KEYPLAN_LOG", "WARNING").strip().upper() or "WARNING"
    if level not in _LOG_LEVELS:
        raise DiagnosticsError.single(
            "Invalid KEYPLAN_LOG",
            f"KEYPLAN_LOG is {for_terminal(level.lower())!r}; set it to one of {', '.join(_LOG_LEVELS)} or unset it.",
        )
    logger.setLevel(level)


def _app(modules: tuple[str, ...] | None) -> typer.Typer:
    """The `keyplan` command with the commands of `modules` (None: every module of keyplan's, then
    what plugins contribute through `keyplan.commands` entry points)."""
    app = typer.Typer(
        name="keyplan",
        help="Declarative bring-your-own-key management: keys generated in your key source, imported into cloud "
        "key management services.",
        add_completion=False,
        pretty_exceptions_enable=False,
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "-help", "--help"]},
    )
    app.callback()(_main_options)
    state_app = typer.Typer(help="Inspect and change the state.", no_args_is_help=True)
    app.add_typer(state_app, name="state")
    for name in _COMMAND_MODULES if modules is None else modules:
        importlib.import_module(f"keyplan.cli.{name}").register(app, state_app)
    if modules is None:
        from keyplan.registry import command_contributions

        for _, contribute in command_contributions():
            contribute(app)
    return app


def _modules_for(args: list[str]) -> tuple[str, ...] | None:
    """The command modules a run of `keyplan ARGS` needs: the one that adds the command it names,
    none for `-version` before any command, every one (None) otherwise."""
    words = iter(args)
    for word in words:
        if word in ("-chdir", "--chdir"):
            next(words, None)  # its value
        elif word in ("-version", "--version"):
            return ()
        elif not word.startswith("-"):
            return next(((module,) for module, commands in _COMMAND_MODULES.items() if word in commands), None)
    return None


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _click() -> Any:
    # typer ships its own copy of click in newer releases and depends on click in older ones;
    # its own copy wins even when another package installed click beside it.
    try:
        from typer import _click as click  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        import click  # type: ignore[import-not-found,no-redef,unused-ignore]
    return click


INTERRUPTED = 130  # 128 + SIGINT, as shells report an interrupted command
_INTERRUPTED_MESSAGE = (
    "\nInterrupted. The state records every change keyplan finished; run `keyplan plan` to see what is left.\n"
)


@contextmanager
def _termination_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, `timeout`) and SIGHUP (a closed terminal) stop keyplan the way
    Ctrl-C does: steps in flight finish and are recorded, the state is written, the lock released."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _unknown_flag(exc: Any, args: list[str]) -> str:
    """`Error: keyplan plan has no flag -detailed-exitcod. Did you mean -detailed-exitcode?`: the
    flag as typed (click names only its first letter for a single-dash flag it cannot split)."""
    context = exc.ctx
    known = [name for param in (context.command.params if context else []) for name in param.opts]
    outer = context.parent if context else None
    known_set = set(known) | {"-h", "-help", "--help"}
    while outer is not None:  # the flags of `keyplan` itself and of command groups (-chdir)
        known_set |= {name for param in outer.command.params for name in param.opts}
        outer = outer.parent
    typed = next(
        (a.split("=", 1)[0] for a in args if a.startswith("-") and a.split("=", 1)[0] not in known_set and a != "-"),
        exc.option_name,
    )
    where = context.command_path if context else "keyplan"
    close = difflib.get_close_matches(typed, [k for k in known if k.startswith("-") and not k.startswith("--")], n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"Error: {where} has no flag {typed}.{hint} Run `{where} -help` for its flags."


def _close_state_backends() -> None:
    if "keyplan.state.workspaces" not in sys.modules:
        return  # the command opened no state backend (`-version`, `-help`): nothing to load and close
    from keyplan.state.workspaces import close_all

    try:
        close_all()
    except Exception:  # closing must never hide the command's own outcome
        logging.getLogger("keyplan").debug("closing a state backend failed", exc_info=True)


@functools.cache
def _command(modules: tuple[str, ...] | None) -> Any:
    """The click command typer builds from `_app(modules)`: once per process and set of modules,
    since building it reads the signature and type hints of every command (a process that runs
    `main` many times, as the test suite does, would otherwise pay that on each run)."""
    return typer.main.get_command(_app(modules))


def main(argv: list[str] | None = None) -> NoReturn:
    click = _click()

    args = list(sys.argv[1:] if argv is None else argv)
    command = _command(_modules_for(args))
    abandoned = False
    try:
        with _termination_as_interrupt():
            returned = command.main(args=args, prog_name="keyplan", standalone_mode=False)
        # typer answers an interrupt (KeyboardInterrupt) by returning 130 instead of raising it
        code = INTERRUPTED if returned == INTERRUPTED else 0
        if code == INTERRUPTED:
            sys.stderr.write(_INTERRUPTED_MESSAGE)
    except Exit as exc:
        code, abandoned = exc.code, exc.abandoned
    except DiagnosticsError as exc:
        ui.print_diagnostics(exc.diagnostics, no_color="-no-color" in args or "--no-color" in args)
        code = 1
    except typer.Exit as exc:
        code = exc.exit_code
    except click.exceptions.NoSuchOption as exc:  # a mistyped flag: name it as typed and suggest the closest
        sys.stderr.write(for_terminal_lines(_unknown_flag(exc, args)) + "\n")  # the flag as typed: any bytes
        code = 1
    except click.ClickException as exc:  # usage errors: missing argument, bad value
        shown = io.StringIO()
        exc.show(file=shown)
        sys.stderr.write(for_terminal_lines(shown.getvalue()))
        code = 1
    except getattr(click.exceptions, "Abort", KeyboardInterrupt):  # click's form of Ctrl-C (typer's copy has none)
        sys.stderr.write("\nInterrupted.\n")
        code = INTERRUPTED
    except BrokenPipeError:
        # the reader of our output went away (`keyplan graph | head`): nothing left to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    except KeyboardInterrupt:
        sys.stderr.write(_INTERRUPTED_MESSAGE)
        code = INTERRUPTED
    except Exception:
        traceback.print_exc()
        sys.stderr.write(
            "\nkeyplan crashed: this is a bug in keyplan, not in your configuration. Please report it with the "
            "traceback above and the command you ran.\n"
        )
        code = 1
    finally:
        _close_state_backends()
    if abandoned:
        # An apply interrupted twice left steps running in worker threads; the state is written
        # and the lock released, and waiting for them is what the second interrupt refused.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
