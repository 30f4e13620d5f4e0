"""How the software keystore's master key is unlocked: scrypt over a passphrase from the
environment, or a development key file beside the keystore, checked against the document's
verifier so a wrong passphrase is told from a damaged entry."""

from __future__ import annotations

import binascii
import os
import threading
from logging import Logger
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from keyplan.crypto.secret import SecretBytes
from keyplan.provider import SourceError
from providers.software.format import (
    _VERIFIER_AAD,
    _VERIFIER_PLAINTEXT,
    KeyFileProtection,
    KeystoreDocument,
    MasterKey,
    PassphraseProtection,
    _unb64,
)


class Unlocking:
    """The master key of the keystore at `path`, from the protection its document records."""

    def __init__(self, path: Path, passphrase_env: str, warn: WarnOnce) -> None:
        self.path = path
        self.passphrase_env = passphrase_env
        self._warn = warn

    def derive(self, protection: PassphraseProtection | KeyFileProtection) -> MasterKey:
        if isinstance(protection, PassphraseProtection):
            return MasterKey(self._from_passphrase(protection))
        return MasterKey(self._from_key_file(protection))

    def _from_passphrase(self, protection: PassphraseProtection) -> SecretBytes:
        passphrase = os.environ.get(self.passphrase_env)
        if not passphrase:
            raise SourceError(
                "The software keystore needs its passphrase",
                f"{self.path} is protected by a passphrase, and the environment variable "
                f"{self.passphrase_env} is not set. Set it to the keystore's passphrase.",
            )
        return self.scrypt(protection, passphrase)

    def scrypt(self, protection: PassphraseProtection, passphrase: str) -> SecretBytes:
        try:
            kdf = Scrypt(salt=_unb64(protection.salt), length=32, n=protection.n, r=protection.r, p=protection.p)
            return SecretBytes(kdf.derive(passphrase.encode("utf-8")))
        except (ValueError, binascii.Error):
            raise SourceError(
                "The software keystore is corrupt",
                f"The scrypt parameters recorded in {self.path} are not valid. Restore it from a backup.",
            ) from None

    def _from_key_file(self, protection: KeyFileProtection) -> SecretBytes:
        key_file = self.path.parent / protection.key_file
        if os.environ.get(self.passphrase_env):
            raise SourceError(
                "The software keystore is not protected by a passphrase yet",
                f"{self.path} is protected by the development key file {key_file}, but "
                f"{self.passphrase_env} is set. To protect this keystore with that passphrase from now on, run "
                f"`keyplan keystore re-protect` (it keeps every key's material). Otherwise unset "
                f"{self.passphrase_env} to use the key file.",
            )
        self._warn.warning(
            "development key file; for real use protect the software keystore %s with a passphrase: set %s "
            "and run `keyplan keystore re-protect` (it is protected by %s now)",
            self.path,
            self.passphrase_env,
            key_file,
        )
        return self.key_file_bytes(protection)

    def key_file_bytes(self, protection: KeyFileProtection) -> SecretBytes:
        key_file = self.path.parent / protection.key_file
        try:
            key = key_file.read_bytes()
        except FileNotFoundError:
            raise SourceError(
                "The software keystore's key file is missing",
                f"{self.path} is protected by the key file {key_file}, which does not exist. "
                "Restore it from a backup; without it the keystore cannot be opened.",
            ) from None
        except OSError as exc:
            raise SourceError(
                "Cannot read the software keystore's key file",
                f"{key_file} cannot be read ({exc.strerror}). Check that it is the key file next to {self.path}.",
            ) from None
        if len(key) != 32:
            raise SourceError(
                "The software keystore's key file is corrupt",
                f"{key_file} does not hold a 256-bit key. Restore it from a backup.",
            )
        return SecretBytes(key)

    def ensure_key_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path.with_suffix(".key"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # a key file left from an earlier keystore at this path: keep using it
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
            handle.flush()
            os.fsync(handle.fileno())

    def check_verifier(self, master: MasterKey, document: KeystoreDocument) -> None:
        try:
            opened = master.open(document.verifier, _VERIFIER_AAD)
        except (InvalidTag, ValueError, binascii.Error):
            raise self._wrong_master_key(document.protection) from None
        if opened.reveal() != _VERIFIER_PLAINTEXT:
            raise SourceError("The software keystore is corrupt", f"{self.path} has an invalid verifier.")

    def _wrong_master_key(self, protection: PassphraseProtection | KeyFileProtection) -> SourceError:
        if isinstance(protection, PassphraseProtection):
            return SourceError(
                "Wrong passphrase for the software keystore",
                f"The passphrase in {self.passphrase_env} does not open {self.path}. Set "
                f"{self.passphrase_env} to the passphrase the keystore was created with.",
            )
        return SourceError(
            "Wrong key file for the software keystore",
            f"The key in {self.path.parent / protection.key_file} does not open {self.path}. "
            "Restore the key file that belongs to this keystore.",
        )


class WarnOnce:
    """Logs a warning the first time only, so a run says it once, not once per key."""

    def __init__(self, log: Logger) -> None:
        self._log = log
        self._done = False
        self._lock = threading.Lock()

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._log.warning(message, *args)
