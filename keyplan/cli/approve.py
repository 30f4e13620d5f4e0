"""`keyplan approve`: sign a saved plan's digest as one of the configured approvers, or make a
new passphrase-protected signing key (see `keyplan.approvals` for the trust model)."""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli.options import emit, from_working_dir
from keyplan.diagnostics import DiagnosticsError

PASSPHRASE_ENV = "KEYPLAN_SIGNING_PASSPHRASE"


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    app.command("approve")(approve)


def _passphrase(confirm: bool = False) -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        raise DiagnosticsError.single(
            "No passphrase for the signing key",
            f"Set {PASSPHRASE_ENV} to the signing key's passphrase, or run keyplan approve at a terminal.",
        )
    first = getpass.getpass("Signing key passphrase: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise DiagnosticsError.single("The passphrases differ", "Type the same passphrase twice.")
    if not first:
        raise DiagnosticsError.single("Empty passphrase", "A signing key is protected by a passphrase; give one.")
    return first.encode()


def approve(
    planfile: Annotated[Path | None, typer.Argument(help="The saved plan to approve.")] = None,
    key: Annotated[
        Path | None, typer.Option("-key", "--key", help="Your Ed25519 signing key (passphrase-protected PEM).")
    ] = None,
    name: Annotated[str | None, typer.Option("-name", "--name", help="Your name as the approvals block lists it.")] = None,
    valid_for: Annotated[
        str, typer.Option("-valid-for", "--valid-for", help="How long the approval stays valid (e.g. 24h, 3d).")
    ] = "72h",
    new_key: Annotated[
        Path | None,
        typer.Option("-new-key", "--new-key", help="Make a new signing key in this file and print its public key."),
    ] = None,
) -> None:
    """Approve a saved plan: sign its digest with your key (M of N approvers, see the approvals block)."""
    from keyplan.approvals import add_approval, load_signing_key, new_signing_key, public_key_text, sign
    from keyplan.config.durations import DurationError, parse_duration
    from keyplan.escaping import for_terminal
    from keyplan.plan.planfile import load_plan

    signer = name or getpass.getuser()
    if new_key is not None:
        path = from_working_dir(new_key)
        if path.exists():
            raise DiagnosticsError.single("The key file exists", f"{path} exists already; choose another path.")
        public = new_signing_key(path, _passphrase(confirm=True))
        emit(
            f"Wrote a new signing key to {for_terminal(str(path))} (keep it private). Add this signer to the "
            "approvals block:\n\n"
            f'  {{ name = "{for_terminal(signer)}", public_key = "{public_key_text(public)}" }}\n'
        )
        return
    if planfile is None or key is None:
        raise DiagnosticsError.single(
            "Nothing to approve", "Run `keyplan approve PLANFILE -key FILE -name NAME` (or -new-key FILE to make a key)."
        )
    try:
        validity = parse_duration(valid_for)
    except DurationError as exc:
        raise DiagnosticsError.single("Invalid -valid-for", str(exc)) from None
    path = from_working_dir(planfile)
    plan = load_plan(path)  # the digest and the agreement of actions and changes are checked first
    approval = sign(plan, load_signing_key(from_working_dir(key), _passphrase()), signer, validity, datetime.now(UTC))
    approvals = add_approval(path, approval)
    emit(
        f"Approved {for_terminal(str(path))} (plan {plan.digest[:19]}…) as {for_terminal(signer)} "
        f"({approval.public_key}), valid until {approval.expires_at.isoformat()}.\n"
        f"The plan has {len(approvals)} approval(s) in {for_terminal(path.name)}.approvals.json; "
        "`keyplan apply` counts those of the approvals block's signers.\n"
    )
