"""Signed approvals of saved plans, M of N.

Configuration says who may approve and how many approvals a plan needs:

    keyplan {
      approvals {
        signers = [
          { name = "alice", public_key = "ed25519:..." },   # or an OpenSSH "ssh-ed25519 AAAA... alice"
          { name = "bob",   public_key = "ed25519:..." },
        ]
        required     = 1                                   # every plan
        required_for = { delete = 2, rotate = 2 }          # plans holding these kinds of change
        valid_for    = "72h"                               # how long an approval stays valid
      }
    }

`keyplan approve PLANFILE -key FILE` signs the plan's content digest with Ed25519 and appends the
approval to `PLANFILE.approvals.json`. The signer's private key is in a passphrase-protected
PKCS#8 file (`-key FILE`), in the user's SSH agent (`-ssh-agent`), or wherever a signer plugin
reaches it (`-signer SCHEME:...`, e.g. a hardware token); see `keyplan.signers`. `keyplan apply PLANFILE` counts only approvals that verify: a known
signer's key, the plan's own digest, not expired, each signer once; it refuses and says what is
missing otherwise. Signing needs nothing of the managed keys: only the plan's digest.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.files import read_file
from keyplan.signers import ApprovalSigner, FileSigner

if TYPE_CHECKING:  # the configuration holds an ApprovalPolicy: loading it needs no plan machinery
    from keyplan.plan.model import Plan

APPROVALS_SUFFIX = ".approvals.json"
# Kinds of change `required_for` may name; "disable" is an update that turns a key off, "replace"
# a rotation asked for with -replace.
CHANGE_KINDS = ("create", "import", "update", "disable", "rotate", "replace", "delete", "forget")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Signer(_Model):
    name: str
    public_key: str  # "ed25519:<base64 of the 32 raw bytes>" or "ssh-ed25519 AAAA... comment"

    def key(self) -> Ed25519PublicKey:
        return parse_public_key(self.public_key)


class ApprovalPolicy(_Model):
    signers: tuple[Signer, ...]
    required: int = 1
    required_for: dict[str, int] = {}
    valid_for: timedelta = timedelta(hours=72)

    def needed_for(self, plan: Plan) -> tuple[int, list[str]]:
        """How many approvals the plan needs, and the kinds of change that ask for more than `required`."""
        needed, why = self.required, []
        for kind in sorted(change_kinds(plan)):
            count = self.required_for.get(kind, 0)
            if count > self.required:
                why.append(f"{kind} needs {count}")
            needed = max(needed, count)
        return needed, why


class Approval(_Model):
    signer: str
    public_key: str  # "ed25519:..." of the key that signed
    plan_digest: str
    signed_at: datetime
    expires_at: datetime
    signature: str  # base64 Ed25519 signature of `message()`

    def message(self) -> bytes:
        """What is signed: the plan's digest, who, and the validity window, as canonical JSON."""
        body = {
            "keyplan-approval": 1,
            "plan": self.plan_digest,
            "signer": self.signer,
            "public_key": self.public_key,
            "signed_at": self.signed_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    text = text.strip()
    try:
        if text.startswith("ed25519:"):
            return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.removeprefix("ed25519:"), validate=True))
        if text.startswith("ssh-ed25519 "):
            key = serialization.load_ssh_public_key(text.encode())
            if isinstance(key, Ed25519PublicKey):
                return key
    except (ValueError, TypeError):
        pass
    raise ValueError('a public key is "ed25519:<base64 of 32 bytes>" or an OpenSSH "ssh-ed25519 AAAA..." line')


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + base64.b64encode(raw).decode()


def change_kinds(plan: Plan) -> set[str]:
    from keyplan.plan.model import ChangeAction

    kinds: set[str] = set()
    for change in plan.changes:
        for action in change.actions:
            if action in (ChangeAction.CREATE, ChangeAction.ADOPT):
                kinds.add("create")
            elif action in (ChangeAction.IMPORT, ChangeAction.REIMPORT):
                kinds.add("import")
            elif action in (ChangeAction.UPDATE, ChangeAction.RESTORE):
                kinds.add("update")
                if change.after is not None and not change.after.enabled and (change.before is None or change.before.enabled):
                    kinds.add("disable")
            elif action is ChangeAction.ROTATE:
                kinds.add("rotate")
                if plan.options.get("replace"):
                    kinds.add("replace")
            elif action is ChangeAction.DELETE:
                kinds.add("delete")
            elif action is ChangeAction.FORGET:
                kinds.add("forget")
    return kinds


# -- signing ------------------------------------------------------------------------------------


def new_signing_key(path: Path, passphrase: bytes) -> Ed25519PublicKey:
    """Write a new Ed25519 private key, encrypted under `passphrase`, and return its public half."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    path.chmod(0o600)
    return key.public_key()


def load_signing_key(path: Path, passphrase: bytes) -> FileSigner:
    try:
        key = serialization.load_pem_private_key(read_file(path), password=passphrase)
    except FileNotFoundError:
        raise DiagnosticsError.single(
            "Signing key not found", f"{path} does not exist. Make one with `keyplan approve -new-key {path}`."
        ) from None
    except OSError as exc:
        raise DiagnosticsError.single(
            "Cannot read the signing key", f"{path} cannot be read: {exc.strerror}. Give the path of your key file."
        ) from None
    except (ValueError, TypeError):
        raise DiagnosticsError.single(
            "Cannot open the signing key",
            f"{path} is not a passphrase-protected Ed25519 private key, or the passphrase is wrong.",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DiagnosticsError.single("Not an Ed25519 signing key", f"{path} holds another kind of key; use Ed25519.")
    return FileSigner(key, path)


def sign(plan: Plan, key: ApprovalSigner, signer: str, valid_for: timedelta, now: datetime | None = None) -> Approval:
    signed_at = (now or datetime.now(UTC)).replace(microsecond=0)
    unsigned = Approval(
        signer=signer,
        public_key=public_key_text(key.public_key()),
        plan_digest=plan.digest,
        signed_at=signed_at,
        expires_at=signed_at + valid_for,
        signature="",
    )
    signature = base64.b64encode(key.signed(unsigned.message())).decode()
    return unsigned.model_copy(update={"signature": signature})


# -- storing beside the plan --------------------------------------------------------------------


def approvals_path(planfile: Path) -> Path:
    return planfile.with_name(planfile.name + APPROVALS_SUFFIX)


def read_approvals(planfile: Path) -> list[Approval]:
    path = approvals_path(planfile)
    if not path.exists():
        return []
    try:
        return [Approval.model_validate(item) for item in json.loads(read_file(path))]
    except (OSError, ValueError, ValidationError, TypeError):
        raise DiagnosticsError.single(
            "The approvals file is damaged",
            f"{path} is not a list of keyplan approvals. Remove it and have the plan approved again.",
        ) from None


def add_approval(planfile: Path, approval: Approval) -> list[Approval]:
    approvals = [a for a in read_approvals(planfile) if a.public_key != approval.public_key] + [approval]
    path = approvals_path(planfile)
    path.write_text(json.dumps([a.model_dump(mode="json") for a in approvals], indent=2) + "\n")
    return approvals


# -- verifying ----------------------------------------------------------------------------------


def valid_approvers(
    plan: Plan, policy: ApprovalPolicy, approvals: list[Approval], now: datetime
) -> tuple[list[Signer], list[str]]:
    """The distinct configured signers whose approval of this very plan verifies, and why each
    other approval does not count."""
    known = {public_key_text(s.key()): s for s in policy.signers}
    counted: dict[str, Signer] = {}
    rejected: list[str] = []
    for approval in approvals:
        who = f"the approval signed as {approval.signer!r}"
        signer = known.get(approval.public_key)
        if signer is None:
            rejected.append(f"{who} is by a key the approvals block does not list")
            continue
        if approval.plan_digest != plan.digest:
            rejected.append(f"{who} is for another plan ({approval.plan_digest[:19]}…), not this one")
            continue
        try:
            signer.key().verify(base64.b64decode(approval.signature), approval.message())
        except (InvalidSignature, ValueError):
            rejected.append(f"{who} does not verify: it was altered, or the plan was altered after signing")
            continue
        expires_at = min(approval.expires_at, approval.signed_at + policy.valid_for)
        if expires_at <= now:
            rejected.append(f"{who} expired at {expires_at.isoformat()}")
            continue
        if signer.name in counted:
            rejected.append(f"{signer.name} approved twice; one approval per signer counts")
            continue
        counted[signer.name] = signer
    return list(counted.values()), rejected


def check_approvals(plan: Plan, policy: ApprovalPolicy | None, approvals: list[Approval], now: datetime) -> Diagnostics:
    diagnostics = Diagnostics()
    if policy is None:
        return diagnostics
    needed, why = policy.needed_for(plan)
    approvers, rejected = valid_approvers(plan, policy, approvals, now)
    if len(approvers) < needed:
        names = ", ".join(s.name for s in approvers) or "nobody"
        others = ", ".join(s.name for s in policy.signers if s not in approvers)
        reasons = "".join(f"\n  - {reason}" for reason in rejected)
        diagnostics.error(
            "The plan does not have the approvals it needs",
            f"This plan needs {needed} approval{'s' if needed != 1 else ''}"
            f"{' (' + '; '.join(why) + ')' if why else ''} and has {len(approvers)} ({names}). "
            f"{needed - len(approvers)} more from: {others}. Each signer runs `keyplan approve PLANFILE -key FILE`."
            + (f"\nNot counted:{reasons}" if rejected else ""),
        )
    return diagnostics


def approvals_text(approvals: list[Approval], *, markdown: bool = False) -> str:
    """The approvals beside a plan, for `keyplan show` (what they claim; apply verifies them)."""
    from keyplan.escaping import for_markdown, for_terminal

    if not approvals:
        return "\nApprovals: none yet.\n" if not markdown else "\n**Approvals:** none yet.\n"
    escape = for_markdown if markdown else for_terminal
    lines = ["", "**Approvals:**" if markdown else "Approvals:"]
    for approval in approvals:
        lines.append(
            f"{'- ' if markdown else '  '}{escape(approval.signer)} ({approval.public_key[:20]}…) signed "
            f"{approval.signed_at.isoformat()}, valid until {approval.expires_at.isoformat()}"
        )
    return "\n".join(lines) + "\n"
