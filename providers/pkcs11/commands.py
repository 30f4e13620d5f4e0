"""`keyplan hsm`: the PKCS#11 key source's own commands, contributed to the `keyplan` command
line through the `keyplan.commands` entry point. They parse flags, call the set-up operations
of `providers.pkcs11.setup` (and keyplan's `planned_wrapping_keys`), and render."""

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
    workspace,
)
from providers.pkcs11.setup import DEFAULT_PIN_ENV, DEFAULT_SO_PIN_ENV

hsm_app = typer.Typer(help="Set up a PKCS#11 HSM key source.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `keyplan hsm …` to the app."""
    app.add_typer(hsm_app, name="hsm")


@hsm_app.command("init-dev")
def init_dev(
    directory: Annotated[
        Path, typer.Option("--dir", "-dir", help="Directory of the token (created); relative to -chdir.")
    ] = Path(".keyplan/softhsm"),
    label: Annotated[str, typer.Option("--label", "-label", help="Token label.")] = "keyplan",
    pin_env: Annotated[
        str, typer.Option("--pin-env", "-pin-env", help="Variable that holds (or will hold) the user PIN.")
    ] = DEFAULT_PIN_ENV,
    so_pin_env: Annotated[
        str,
        typer.Option(
            "--so-pin-env", "-so-pin-env", help="Variable that holds (or will hold) the security officer PIN."
        ),
    ] = DEFAULT_SO_PIN_ENV,
    pin_file: Annotated[
        Path | None,
        typer.Option(
            "--pin-file",
            "-pin-file",
            help="Write both PINs to this new file (mode 0600, shell `export` lines); PINs not set in the "
            "environment are generated. Without it, both PIN variables must be set.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", "-name", help="Name of the source block to print.")] = "hsm",
) -> None:
    """Create a SoftHSM2 development token and print the `source "pkcs11"` block that uses it."""
    from providers.pkcs11.setup import init_dev as create

    created = create(workspace().directory, directory, label, pin_env, so_pin_env, pin_file, name)
    emit(
        f"Created the SoftHSM2 development token {label!r} in {created.directory}.\n"
        "It is for development and tests only: SoftHSM keeps keys in files on this machine.\n\n"
        "Add this block to a *.kp.hcl file and use it as `source = source.pkcs11."
        f"{name}`:\n\n" + created.block + "\n"
    )
    if created.pin_file is not None:
        emit(
            f"The PINs are in {created.pin_file} (mode 0600"
            + (f"; generated: {', '.join(created.generated)}" if created.generated else "")
            + f"). Load them before running keyplan:\n\n  . {created.pin_file}\n"
        )
    else:
        emit(
            f"The user PIN is the value of {pin_env}, the security officer PIN that of {so_pin_env}. "
            "keyplan stored neither.\n"
        )


@hsm_app.command("trust")
def trust(
    address: Annotated[str, typer.Argument(metavar="ADDR", help='A key address, e.g. key.data or key.data["a"].')],
    target: Annotated[
        list[str], typer.Option("--target", "-target", help="Only this provider, e.g. aws.main. Repeatable.")
    ] = [],  # noqa: B006 - typer reads defaults
    so_pin_env: Annotated[
        str, typer.Option("--so-pin-env", "-so-pin-env", help="Variable that holds the security officer PIN.")
    ] = DEFAULT_SO_PIN_ENV,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Security officer: trust the wrapping keys that ADDR's planned imports will use."""
    from keyplan.operations.wrapping import planned_wrapping_keys, selected_keys
    from providers.pkcs11.setup import so_pin_from, trusted_sources
    from providers.pkcs11.setup import trust as trust_key

    config = load(var, var_file, no_color=no_color)
    trusted_sources(config, selected_keys(config, address, target))
    so_pin = so_pin_from(so_pin_env)
    wrapping_keys = planned_wrapping_keys(
        config, address, target, lock=lock_options(lock, lock_timeout), operation="hsm trust"
    )
    if not wrapping_keys:
        emit(f"Nothing to trust: no import of {address} is planned (every target holds its material).\n")
        return
    trusted = 0
    for wrapping_key in wrapping_keys:
        result = trust_key(config, so_pin, wrapping_key)
        trusted += int(result.created)
        verb = "Trusted" if result.created else "Already trusted"
        parameters = wrapping_key.parameters
        emit(
            f"{verb}: the wrapping key of {wrapping_key.target} for {wrapping_key.address} "
            f"(RSA-{parameters.wrapping_key_bits}, {parameters.method.value}, {result.fingerprint}), "
            f"token object {result.label!r}.\n"
        )
    emit(f"\n{trusted} wrapping key(s) newly trusted. Run `keyplan apply` to import.\n")


@hsm_app.command("signer-key")
def signer_key(
    label: Annotated[str, typer.Argument(metavar="LABEL", help="CKA_LABEL of the new Ed25519 key pair, e.g. alice-approvals.")],
    token: Annotated[str, typer.Option("--token", "-token", help="Label of the token that will hold the key.")],
    module: Annotated[Path, typer.Option("--module", "-module", help="Path of the token's PKCS#11 library (.so).")],
    pin_env: Annotated[
        str, typer.Option("--pin-env", "-pin-env", help="Variable that holds the token's user PIN.")
    ] = DEFAULT_PIN_ENV,
    slot: Annotated[int | None, typer.Option("--slot", "-slot", help="Slot id, when several tokens carry the label.")] = None,
    name: Annotated[str, typer.Option("--name", "-name", help="The approver's name, for the printed signer line.")] = "NAME",
) -> None:
    """Create an Ed25519 approval-signing key pair in a token and print its signer line and URI."""
    from keyplan.approvals import public_key_text
    from keyplan.escaping import for_terminal
    from providers.pkcs11.signer import SignerUri, create_signer_key

    uri = SignerUri(token=token, label=label, module=workspace().path(module).resolve(), pin_env=pin_env, slot=slot)
    public = create_signer_key(uri)
    emit(
        f"Created the Ed25519 signing key {for_terminal(label)!r} in token {for_terminal(token)!r} (its private half "
        "cannot leave the token). Add this signer to the approvals block:\n\n"
        f'  {{ name = "{for_terminal(name)}", public_key = "{public_key_text(public)}" }}\n\n'
        f"and approve plans with:\n\n  keyplan approve PLANFILE -name {for_terminal(name)} -signer '{for_terminal(str(uri))}'\n"
    )
