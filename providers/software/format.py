"""The software keystore's file format: the document, its journal lines, how the master key is
protected, and how entries are sealed (AES-256-GCM, the authenticated data binding an entry to
its handle, algorithm and fingerprint). `keystore.py` reads and writes files of this format."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from typing import Annotated, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, model_validator

from keyplan.crypto.secret import SecretBytes

FORMAT = "keyplan-keystore"
FORMAT_VERSION: Literal[2] = 2  # 2: entries may also be in the journal beside the document; 1 is read and migrated
JOURNAL_SUFFIX = ".journal"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_N = 2**20
MAX_SCRYPT_R = 16
MAX_SCRYPT_P = 16
_VERIFIER_PLAINTEXT = b"keyplan keystore verifier v1"
_VERIFIER_AAD = b"keyplan keystore verifier"
_ENTRY_AAD_PREFIX = b"keyplan keystore entry v1\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PassphraseProtection(_Model):
    kind: Literal["passphrase"] = "passphrase"
    kdf: Literal["scrypt"] = "scrypt"
    salt: str
    # Bounded so a keystore file cannot make unlocking take hours or all memory: scrypt costs
    # about 128 * n * r bytes and n * r * p time; keyplan writes n = 2^15, r = 8, p = 1.
    n: int = Field(ge=2, le=MAX_SCRYPT_N)
    r: int = Field(ge=1, le=MAX_SCRYPT_R)
    p: int = Field(ge=1, le=MAX_SCRYPT_P)

    @model_validator(mode="after")
    def _n_is_a_power_of_two(self) -> PassphraseProtection:
        if self.n & (self.n - 1):
            raise ValueError("scrypt's n is a power of two")
        return self


class KeyFileProtection(_Model):
    kind: Literal["key-file"] = "key-file"
    key_file: str = Field(pattern=r"^[^/\\]+$")  # a file name in the keystore's directory, never a path


Protection = Annotated[PassphraseProtection | KeyFileProtection, Field(discriminator="kind")]


class Sealed(_Model):
    nonce: str
    ciphertext: str


class KeystoreEntry(_Model):
    algorithm: str
    fingerprint: str
    created_at: datetime
    sealed: Sealed


class KeystoreDocument(_Model):
    format: Literal["keyplan-keystore"] = "keyplan-keystore"
    format_version: Literal[1, 2] = FORMAT_VERSION
    protection: Protection
    verifier: Sealed
    entries: dict[str, KeystoreEntry] = {}


class JournalLine(KeystoreEntry):
    """One entry appended to the journal: the entry and the handle it is sealed under."""

    handle: str

    def entry(self) -> KeystoreEntry:
        return KeystoreEntry(
            algorithm=self.algorithm, fingerprint=self.fingerprint, created_at=self.created_at, sealed=self.sealed
        )


def _entry_aad(handle: str, algorithm: str, fingerprint: str) -> bytes:
    return _ENTRY_AAD_PREFIX + json.dumps([handle, algorithm, fingerprint]).encode("utf-8")


class MasterKey:
    """The unlocked master key; seals and opens entries. Its bytes never leave this object."""

    __slots__ = ("_key",)

    def __init__(self, key: SecretBytes) -> None:
        self._key = key

    def seal(self, plaintext: SecretBytes, aad: bytes) -> Sealed:
        nonce = os.urandom(12)
        ciphertext = AESGCM(self._key.reveal()).encrypt(nonce, plaintext.reveal(), aad)
        return Sealed(nonce=_b64(nonce), ciphertext=_b64(ciphertext))

    def open(self, sealed: Sealed, aad: bytes) -> SecretBytes:
        """Raises InvalidTag when the key, the data or the authenticated data do not match."""
        return SecretBytes(AESGCM(self._key.reveal()).decrypt(_unb64(sealed.nonce), _unb64(sealed.ciphertext), aad))

    def wipe(self) -> None:
        self._key.wipe()

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"
