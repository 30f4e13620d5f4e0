"""`keyplan keystore`: the software key source's own commands, contributed to the `keyplan`
command line through the `keyplan.commands` entry point. They parse flags, call the keystore
(`providers.software.keystore`) and render."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli.options import NoColorOpt, VarFileOpt, VarOpt, emit, load
from keyplan.diagnostics import DiagnosticsError
from keyplan.provider import SourceError

keystore_app = typer.Typer(help="Manage a software keystore.", no_args_is_help=True)

DEFAULT_NEW_PASSPHRASE_ENV = "KEYPLAN_KEYSTORE_NEW_PASSPHRASE"


def register(app: typer.Typer) -> None:
    """Add `keyplan keystore …` to the app."""
    app.add_typer(keystore_app, name="keystore")


@keystore_app.command("re-protect")
def re_protect(
    source: Annotated[
        str | None,
        typer.Argument(metavar="SOURCE", help="The software source, KIND.NAME (e.g. software.local); needed when there are several."),
    ] = None,
    new_passphrase_env: Annotated[
        str,
        typer.Option(
            "-new-passphrase-env",
            "--new-passphrase-env",
            help="Variable holding the new passphrase. When it is unset and the keystore is on its development key "
            "file, the source's own passphrase variable (KEYPLAN_KEYSTORE_PASSPHRASE) is the new passphrase.",
        ),
    ] = DEFAULT_NEW_PASSPHRASE_ENV,
    var: VarOpt = [],  # noqa: B006 - typer reads defaults
    var_file: VarFileOpt = [],  # noqa: B006
    no_color: NoColorOpt = False,
) -> None:
    """Protect a software keystore with a (new) passphrase, in one atomic write: from the development key file
    to a passphrase, or from one passphrase to another. Every key's material stays the same."""
    from keyplan.registry import source_plugin
    from providers.software.format import PassphraseProtection
    from providers.software.keystore import Keystore
    from providers.software.plugin import SoftwareSourcePlugin
    from providers.software.unlock import WarnOnce

    config = load(var, var_file, no_color=no_color)
    software = {address: block for address, block in config.sources.items() if block.kind == SoftwareSourcePlugin.kind}
    address = _chosen(source, sorted(software))
    plugin = source_plugin(SoftwareSourcePlugin.kind)
    assert isinstance(plugin, SoftwareSourcePlugin)
    settings = plugin.settings_model.model_validate(software[address].attributes)
    keystore = Keystore(settings.keystore_path(Path(config.directory)), settings.passphrase_env, WarnOnce(_quiet()))
    current = keystore.read()
    on_passphrase = current is not None and isinstance(current.protection, PassphraseProtection)
    new = os.environ.get(new_passphrase_env) or (None if on_passphrase else os.environ.get(settings.passphrase_env))
    if not new:
        raise DiagnosticsError.single(
            "No new passphrase",
            f"Set {new_passphrase_env} to the new passphrase"
            + (f" ({settings.passphrase_env} holds the current one)." if on_passphrase else
               f", or {settings.passphrase_env}, which keyplan reads from now on.")
            + " Nothing was changed.",
        )
    try:
        done = keystore.reprotect(os.environ.get(settings.passphrase_env), new)
    except SourceError as error:
        raise DiagnosticsError.single(f"Source {address}: {error.summary}", error.detail) from None
    finally:
        keystore.close()
    emit(
        f"Re-protected {keystore.path}: {done.entries} key material entr{'y' if done.entries == 1 else 'ies'} sealed "
        f"again under the new passphrase (each opened again and compared before the keystore was replaced).\n"
        f"From now on set {settings.passphrase_env} to the new passphrase when running keyplan.\n"
    )
    if done.key_file is not None:
        emit(
            f"The development key file {done.key_file} no longer protects it: delete it once no older copy of the "
            "keystore needs it.\n"
        )
    emit("Copies of the keystore made before still open with the old protection: replace your backups.\n")


def _chosen(source: str | None, software: list[str]) -> str:
    if source is None and len(software) == 1:
        return software[0]
    if source in software:
        return source
    named = ", ".join(software) or "none"
    raise DiagnosticsError.single(
        "Name the software source to re-protect" if source is None else f"No software source {source}",
        f"Give one of the configuration's software sources as KIND.NAME: {named}.",
    )


def _quiet() -> logging.Logger:
    """The development key file warning is moot while moving away from the key file."""
    quiet = logging.getLogger("keyplan.keystore.re-protect")
    quiet.disabled = True
    return quiet
