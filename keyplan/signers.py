"""Who signs an approval, and with what: the signer contract and the signers keyplan ships.

An approval is an Ed25519 signature over the approval message (the plan's digest, who, the
validity window; see `keyplan.approvals`). Where the private key lives is the signer's business:

- `FileSigner`: a passphrase-protected PKCS#8 file (`keyplan approve -key FILE`);
- `SshAgentSigner`: an `ssh-ed25519` key held by the user's SSH agent (`keyplan approve
  -ssh-agent`), reached over `$SSH_AUTH_SOCK` through paramiko's agent client. An ssh-ed25519
  signature is a plain Ed25519 signature over the data, so the approval verifies with the
  signer's public key like any other;
- plugin signers, found through the `keyplan.signers` entry-point group by the scheme of a
  signer URI (`keyplan approve -signer SCHEME:...`): a hardware token, for example, whose plugin
  knows how to reach it. The core names none of them.

Every signature is checked against the signer's public key before it is recorded, so a signer
that answers with something else is refused at once rather than at apply time.
"""

from __future__ import annotations

import base64
import hashlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keyplan.diagnostics import DiagnosticsError
from keyplan.escaping import for_terminal

if TYPE_CHECKING:
    from paramiko import AgentKey

SSH_ED25519 = "ssh-ed25519"


class ApprovalSigner(ABC):
    """Holds one Ed25519 private key somewhere and signs with it; never hands it out."""

    @abstractmethod
    def public_key(self) -> Ed25519PublicKey: ...

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""

    @abstractmethod
    def describe(self) -> str:
        """Where the key is, for messages (never a secret)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions or connections."""

    def signed(self, message: bytes) -> bytes:
        """`sign`, checked against `public_key`: a wrong answer is refused here, not at apply."""
        signature = self.sign(message)
        try:
            self.public_key().verify(signature, message)
        except InvalidSignature:
            raise DiagnosticsError.single(
                "The signer's signature does not verify",
                f"{self.describe()} answered with a signature its own public key does not verify, so no approval "
                "was recorded. Check that the key is an Ed25519 key and the signer is working.",
            ) from None
        return signature


class SignerPlugin(ABC):
    """A `keyplan.signers` entry point: opens the signer a URI of its scheme names."""

    scheme: ClassVar[str]

    @abstractmethod
    def open(self, uri: str, working_dir: Path) -> ApprovalSigner:
        """The signer `uri` names; a user error is a DiagnosticsError saying how to fix it."""

    def usage(self) -> str:
        """An example URI, for messages."""
        return f"{self.scheme}:..."


class FileSigner(ApprovalSigner):
    def __init__(self, key: Ed25519PrivateKey, path: Path) -> None:
        self._key = key
        self._path = path

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def describe(self) -> str:
        return f"the signing key file {self._path}"


# -- the SSH agent ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentIdentity:
    """One key the agent offers: its type, public blob and comment."""

    key_type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """As `ssh-add -l` prints it: SHA256:<unpadded base64 of the blob's SHA-256>."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    def describe(self) -> str:
        return f"{self.key_type} {self.fingerprint} {for_terminal(self.comment) or '(no comment)'}"


class SshAgentSigner(ApprovalSigner):
    """An ssh-ed25519 key in the SSH agent at `$SSH_AUTH_SOCK`; `select` picks it by its SHA256
    fingerprint or its comment when the agent holds more than one."""

    def __init__(self, select: str | None = None) -> None:
        import paramiko

        socket_path = os.environ.get("SSH_AUTH_SOCK", "")
        if not socket_path:
            raise DiagnosticsError.single(
                "No SSH agent",
                "SSH_AUTH_SOCK is not set, so there is no agent to sign with. Start one (`eval $(ssh-agent)`), "
                "add your key (`ssh-add ~/.ssh/id_ed25519`), or sign with `-key FILE` instead.",
            )
        self._agent = paramiko.Agent()
        keys = self._agent.get_keys()
        if not keys and not os.path.exists(socket_path):
            self._agent.close()
            raise DiagnosticsError.single(
                "Cannot reach the SSH agent",
                f"SSH_AUTH_SOCK names {for_terminal(socket_path)}, which does not exist: the agent has stopped or "
                "belongs to another session. Start one (`eval $(ssh-agent)`) and add your key with `ssh-add`.",
            )
        identities = [(key, AgentIdentity(key.get_name(), key.asbytes(), key.comment)) for key in keys]
        self._key, self.identity = self._choose(identities, select)
        self._public = _ed25519_from_blob(self.identity.blob)

    def _choose(
        self, identities: list[tuple[AgentKey, AgentIdentity]], select: str | None
    ) -> tuple[AgentKey, AgentIdentity]:
        usable = [(key, found) for key, found in identities if found.key_type == SSH_ED25519]
        if select is not None:
            usable = [(key, found) for key, found in usable if select in (found.fingerprint, found.comment)]
        if len(usable) == 1:
            return usable[0]
        self._agent.close()
        listing = "".join(f"\n  {found.describe()}" for _, found in identities) or "\n  (none)"
        if not usable:
            wanted = f"an {SSH_ED25519} key {for_terminal(select)!r}" if select is not None else f"an {SSH_ED25519} key"
            raise DiagnosticsError.single(
                "No matching key in the SSH agent",
                f"The agent holds no {wanted[3:]}. Keys it holds:{listing}\nAdd an Ed25519 key with "
                "`ssh-add ~/.ssh/id_ed25519` (approvals are Ed25519 signatures; RSA and ECDSA keys cannot sign them).",
            )
        raise DiagnosticsError.single(
            "Several keys in the SSH agent could sign",
            f"The agent holds {len(usable)} {SSH_ED25519} keys:"
            + "".join(f"\n  {found.describe()}" for _, found in usable)
            + "\nChoose one with -ssh-key FINGERPRINT (or its comment).",
        )

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        import paramiko

        try:
            answer = self._key.sign_ssh_data(message)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise DiagnosticsError.single(
                "The SSH agent refused to sign",
                f"The agent did not sign with {self.identity.describe()} ({type(exc).__name__}); it may ask for "
                "confirmation (`ssh-add -c`) or have been locked (`ssh-add -X` unlocks it).",
            ) from None
        reply = paramiko.Message(bytes(answer))
        if reply.get_text() != SSH_ED25519:
            raise DiagnosticsError.single(
                "The SSH agent signed with another algorithm",
                f"{self.identity.describe()} was asked for an {SSH_ED25519} signature and answered otherwise.",
            )
        return bytes(reply.get_binary())

    def describe(self) -> str:
        return f"the SSH agent key {self.identity.describe()}"

    def close(self) -> None:
        self._agent.close()


def _ed25519_from_blob(blob: bytes) -> Ed25519PublicKey:
    import paramiko

    message = paramiko.Message(blob)
    if message.get_text() != SSH_ED25519:
        raise ValueError("not an ssh-ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(bytes(message.get_binary()))


# -- plugin signers -------------------------------------------------------------------------------


def open_plugin_signer(uri: str, working_dir: Path) -> ApprovalSigner:
    """The signer a `SCHEME:...` URI names, through the plugin registered for SCHEME."""
    from keyplan.registry import signer_plugin, signer_schemes

    scheme, separator, _ = uri.partition(":")
    plugin = signer_plugin(scheme) if separator else None
    if plugin is None:
        known = ", ".join(f"{name}:..." for name in signer_schemes()) or "none installed"
        raise DiagnosticsError.single(
            "Unknown signer",
            f"{for_terminal(uri)!r} names no signer keyplan knows. A signer is a URI whose scheme names a signer "
            f"plugin ({known}); or sign with -key FILE or -ssh-agent.",
        )
    return plugin.open(uri, working_dir)
