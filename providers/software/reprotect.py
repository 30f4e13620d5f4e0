"""`keyplan keystore re-protect`'s work on the keystore file: every entry sealed again under a
new passphrase's master key, checked, and written in one atomic write."""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keyplan.crypto.secret import SecretBytes
from keyplan.provider import SourceError
from providers.software.format import (
    _VERIFIER_AAD,
    _VERIFIER_PLAINTEXT,
    FORMAT_VERSION,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    KeyFileProtection,
    KeystoreDocument,
    KeystoreEntry,
    MasterKey,
    PassphraseProtection,
    _b64,
    _entry_aad,
)

if TYPE_CHECKING:
    from providers.software.keystore import Keystore
    from providers.software.unlock import Unlocking


@dataclass(frozen=True)
class Reprotected:
    """What `Keystore.reprotect` did: how many entries it sealed again, the protection it
    replaced, and the development key file that no longer protects it (if it was one)."""

    entries: int
    previous: str
    key_file: Path | None


@dataclass(frozen=True)
class Resealed:
    """A keystore document sealed under a new master key, ready to be written."""

    document: KeystoreDocument
    master: MasterKey
    outcome: Reprotected


def reseal(
    keystore: Keystore,
    unlocking: Unlocking,
    document: KeystoreDocument | None,
    current_passphrase: str | None,
    new_passphrase: str,
) -> Resealed:
    """Every entry of `document` sealed again under a master key derived from `new_passphrase`
    (fresh salt). The current protection is opened with `current_passphrase` or the development
    key file, whichever the document records; a wrong one changes nothing. Each entry is opened
    again under the new key and compared with the material it held."""
    if document is None:
        raise SourceError(
            "There is no software keystore to re-protect",
            f"{keystore.path} does not exist. A new keystore takes its protection when it is first written: set "
            f"{keystore.passphrase_env} before the first apply.",
        )
    previous = document.protection
    if isinstance(previous, PassphraseProtection):
        if not current_passphrase:
            raise SourceError(
                "The software keystore needs its current passphrase",
                f"{keystore.path} is protected by a passphrase: set {keystore.passphrase_env} to it (the new one goes in "
                "the other variable). Nothing was changed.",
            )
        old_master = MasterKey(unlocking.scrypt(previous, current_passphrase))
    else:
        old_master = MasterKey(unlocking.key_file_bytes(previous))
    try:
        unlocking.check_verifier(old_master, document)
        if isinstance(previous, PassphraseProtection) and current_passphrase == new_passphrase:
            raise SourceError(
                "The new passphrase is the current one",
                f"{keystore.path} is already protected by that passphrase. Nothing was changed.",
            )
        protection = PassphraseProtection(salt=_b64(os.urandom(16)), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        new_master = MasterKey(unlocking.scrypt(protection, new_passphrase))
        entries = {
            handle: _sealed_again(keystore, handle, entry, old_master, new_master)
            for handle, entry in document.entries.items()
        }
    finally:
        old_master.wipe()
    verifier = new_master.seal(SecretBytes(_VERIFIER_PLAINTEXT), _VERIFIER_AAD)
    updated = document.model_copy(
        update={"format_version": FORMAT_VERSION, "protection": protection, "verifier": verifier, "entries": entries}
    )
    key_file = keystore.path.parent / previous.key_file if isinstance(previous, KeyFileProtection) else None
    return Resealed(updated, new_master, Reprotected(entries=len(entries), previous=previous.kind, key_file=key_file))


def _sealed_again(keystore: Keystore, handle: str, entry: KeystoreEntry, old: MasterKey, new: MasterKey) -> KeystoreEntry:
    aad = _entry_aad(handle, entry.algorithm, entry.fingerprint)
    material = keystore.open_entry(handle, entry, old)
    try:
        sealed = new.seal(material, aad)
        reopened = new.open(sealed, aad)
        try:
            if not hmac.compare_digest(reopened.reveal(), material.reveal()):
                raise SourceError(
                    "Re-protecting the keystore failed",
                    f"The entry {handle!r} did not seal again intact. Nothing was changed.",
                )
        finally:
            reopened.wipe()
    finally:
        material.wipe()
    return entry.model_copy(update={"sealed": sealed})
