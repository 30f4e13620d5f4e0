"""`keyplan approve`: sign a saved plan's digest as one of the configured approvers (with a key
file, a key in the SSH agent, or a plugin signer such as a hardware token), or make a new
passphrase-protected signing key (see `keyplan.approvals` for the trust model)."""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyplan.cli.options import emit, from_working_dir, workspace
from keyplan.diagnostics import DiagnosticsError

if TYPE_CHECKING:
    from keyplan.signers import ApprovalSigner

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


def _signer(key: Path | None, ssh_agent: bool, ssh_key: str | None, signer_uri: str | None) -> ApprovalSigner:
    from keyplan.approvals import load_signing_key
    from keyplan.signers import SshAgentSigner, open_plugin_signer

    if key is not None:
        return load_signing_key(from_working_dir(key), _passphrase())
    if ssh_agent:
        return SshAgentSigner(ssh_key)
    assert signer_uri is not None
    return open_plugin_signer(signer_uri, workspace().directory)


def approve(
    planfile: Annotated[Path | None, typer.Argument(help="The saved plan to approve.")] = None,
    key: Annotated[
        Path | None, typer.Option("-key", "--key", help="Your Ed25519 signing key (passphrase-protected PEM).")
    ] = None,
    ssh_agent: Annotated[
        bool, typer.Option("-ssh-agent", "--ssh-agent", help="Sign with an ssh-ed25519 key held by your SSH agent.")
    ] = False,
    ssh_key: Annotated[
        str | None,
        typer.Option(
            "-ssh-key", "--ssh-key", help="With -ssh-agent: the key's SHA256 fingerprint (as ssh-add -l shows it) or comment."
        ),
    ] = None,
    signer_uri: Annotated[
        str | None,
        typer.Option(
            "-signer",
            "--signer",
            help="Sign with the key a signer plugin reaches (a hardware token, say), named by a URI whose scheme names the plugin.",
        ),
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
    from keyplan.approvals import add_approval, new_signing_key, public_key_text, sign
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
    chosen = [flag for flag, given in (("-key", key is not None), ("-ssh-agent", ssh_agent), ("-signer", signer_uri)) if given]
    if planfile is None or len(chosen) != 1:
        raise DiagnosticsError.single(
            "Nothing to approve" if planfile is None or not chosen else f"Choose one signer, not {' and '.join(chosen)}",
            "Run `keyplan approve PLANFILE -name NAME` with one of -key FILE (a signing key file), -ssh-agent "
            "(a key in your SSH agent) or -signer URI (a signer plugin's key); -new-key FILE makes a key file.",
        )
    if ssh_key is not None and not ssh_agent:
        raise DiagnosticsError.single("-ssh-key needs -ssh-agent", "-ssh-key chooses among the SSH agent's keys.")
    try:
        validity = parse_duration(valid_for)
    except DurationError as exc:
        raise DiagnosticsError.single("Invalid -valid-for", str(exc)) from None
    path = from_working_dir(planfile)
    plan = load_plan(path)  # the digest and the agreement of actions and changes are checked first
    signing = _signer(key, ssh_agent, ssh_key, signer_uri)
    try:
        approval = sign(plan, signing, signer, validity, datetime.now(UTC))
    finally:
        signing.close()
    approvals = add_approval(path, approval)
    emit(
        f"Approved {for_terminal(str(path))} (plan {plan.digest[:19]}…) as {for_terminal(signer)} "
        f"({approval.public_key}), valid until {approval.expires_at.isoformat()}.\n"
        f"The plan has {len(approvals)} approval(s) in {for_terminal(path.name)}.approvals.json; "
        "`keyplan apply` counts those of the approvals block's signers.\n"
    )
