"""The software key source at run time: generates material, seals it into the keystore, and
wraps it for a cloud with keyplan's own wrap formats. The material is decrypted into
`SecretBytes` only for the duration of one wrap and wiped afterwards."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from keyplan.algorithms import ALGORITHMS, Algorithm, MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material, is_current_fingerprint
from keyplan.crypto.proofs import sign_message
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import WrapMethod, wrap
from keyplan.provider import (
    AesGcmRequest,
    AesGcmResponse,
    AesKeyWrapRequest,
    AesKeyWrapResponse,
    GeneratedMaterial,
    GenerateRequest,
    Holding,
    HoldingRequest,
    KeySource,
    MacRequest,
    MacResponse,
    MaterialInfo,
    PublicKeyRequest,
    PublicKeyResponse,
    SignRequest,
    SignResponse,
    SourceCapabilities,
    SourceError,
    WrappedMaterial,
    WrapRequest,
)
from providers.software.format import KeystoreEntry, MasterKey
from providers.software.keystore import Keystore
from providers.software.material import generate_material

T = TypeVar("T")

CAPABILITIES = SourceCapabilities(
    algorithms=frozenset(ALGORITHMS),
    wrap_methods=frozenset(WrapMethod),
    exact_pkcs8=True,
    wraps_in_hardware=False,
    notes=("material is generated in software and kept in an encrypted keystore file",),
)


def material_handle(address: str, version: int) -> str:
    """Readable from the address and version; the random suffix means a re-generate (say after
    a crash before the state was written) adds an entry instead of replacing one."""
    return f"{address}/v{version}/{secrets.token_hex(6)}"


def _fingerprint_of(algorithm: str, material: SecretBytes) -> str:
    return fingerprint_material(ALGORITHMS[algorithm].kind, material, own=True)  # from the keystore


def _own_private_key(material: SecretBytes) -> PrivateKeyTypes:
    """A private key read from the keystore, whose entries are authenticated (AES-GCM, bound to
    handle, algorithm and fingerprint): keyplan made it, so its RSA structure is not checked
    again on every proof (0.3 s at 4,096 bits)."""
    return serialization.load_der_private_key(material.reveal(), password=None, unsafe_skip_rsa_key_validation=True)


class SoftwareSource(KeySource):
    def __init__(self, address: str, keystore: Keystore) -> None:
        self.address = address
        self._keystore = keystore

    def capabilities(self) -> SourceCapabilities:
        return CAPABILITIES

    def generate(self, request: GenerateRequest) -> GeneratedMaterial:
        material = generate_material(request.algorithm)
        try:
            fingerprint = fingerprint_material(request.algorithm.kind, material, own=True)  # generated just now
            handle = material_handle(request.address, request.version)
            created_at = datetime.now(UTC)
            self._keystore.add(handle, request.algorithm.name, fingerprint, created_at, material)
        finally:
            material.wipe()
        return GeneratedMaterial(handle=handle, fingerprint=fingerprint, created_at=created_at)

    def wrap(self, request: WrapRequest) -> WrappedMaterial:
        def wrap_material(material: SecretBytes) -> bytes:
            try:
                return wrap(request.method, request.wrapping_public_key, material)
            except ValueError as exc:
                raise SourceError(
                    f"Cannot wrap {request.algorithm.name} material with {request.method.value}",
                    f"{exc}. Choose a method the target accepts that can carry this material "
                    "(an RSA_AES_KEY_WRAP method carries any size).",
                ) from None

        return WrappedMaterial(method=request.method, blob=self._with_material(request.handle, request.algorithm, wrap_material))

    # ---- proofs: computed in memory, the material wiped afterwards ----------------------------

    def public_key(self, request: PublicKeyRequest) -> PublicKeyResponse:
        self._require(request.algorithm, MaterialKind.RSA, MaterialKind.EC)

        def spki(material: SecretBytes) -> bytes:
            private_key = _own_private_key(material)
            return private_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )

        return PublicKeyResponse(spki=self._with_material(request.handle, request.algorithm, spki))

    def mac(self, request: MacRequest) -> MacResponse:
        self._require(request.algorithm, MaterialKind.HMAC)
        digest = getattr(hashlib, request.algorithm.name.removeprefix("HMAC_").lower())

        def compute(material: SecretBytes) -> bytes:
            return hmac.new(material.reveal(), request.message, digest).digest()

        return MacResponse(mac=self._with_material(request.handle, request.algorithm, compute))

    def aes_gcm_encrypt(self, request: AesGcmRequest) -> AesGcmResponse:
        self._require(request.algorithm, MaterialKind.SYMMETRIC)

        def encrypt(material: SecretBytes) -> bytes:
            return AESGCM(material.reveal()).encrypt(request.iv, request.plaintext, request.aad or None)

        sealed = self._with_material(request.handle, request.algorithm, encrypt)
        return AesGcmResponse(ciphertext=sealed[:-16], tag=sealed[-16:])

    def sign(self, request: SignRequest) -> SignResponse:
        self._require(request.algorithm, MaterialKind.RSA, MaterialKind.EC)

        def compute(material: SecretBytes) -> bytes:
            private_key = _own_private_key(material)
            try:
                return sign_message(private_key, request.scheme, request.message)
            except ValueError as exc:
                raise SourceError(f"Cannot sign {request.algorithm.name} material with {request.scheme.value}", str(exc)) from None

        return SignResponse(signature=self._with_material(request.handle, request.algorithm, compute))

    def aes_key_wrap(self, request: AesKeyWrapRequest) -> AesKeyWrapResponse:
        self._require(request.algorithm, MaterialKind.SYMMETRIC)
        if len(request.plaintext) < 16 or len(request.plaintext) % 8:
            raise SourceError("AES key wrap takes at least 16 bytes, a multiple of 8", "This is a bug in the proof asking.")

        def wrap_plaintext(material: SecretBytes) -> bytes:
            return aes_key_wrap(material.reveal(), request.plaintext)

        return AesKeyWrapResponse(wrapped=self._with_material(request.handle, request.algorithm, wrap_plaintext))

    @staticmethod
    def _require(algorithm: Algorithm, *kinds: MaterialKind) -> None:
        if algorithm.kind not in kinds:
            raise SourceError(
                f"No such proof for {algorithm.name} material",
                f"This proof applies to {' or '.join(k.value for k in kinds)} keys.",
            )

    def _with_material(self, handle: str, algorithm: Algorithm, work: Callable[[SecretBytes], T]) -> T:
        """`work` over the decrypted material of `handle`, wiped afterwards."""
        found = self._entry(handle)
        if found is None:
            raise SourceError(
                "Key material not found in the software keystore",
                f"The handle {handle!r} is not in {self._keystore.path}. The keystore was "
                "replaced or the entry removed; generate new material for this key.",
            )
        entry, master = found
        if entry.algorithm != algorithm.name:
            raise SourceError(
                "Key material has a different algorithm",
                f"The handle {handle!r} holds {entry.algorithm} material, not "
                f"{algorithm.name}. The state and the keystore disagree; generate new material.",
            )
        material = self._keystore.open_entry(handle, entry, master)
        try:
            return work(material)
        finally:
            material.wipe()

    def describe(self, handle: str) -> MaterialInfo:
        found = self._entry(handle)
        if found is None:
            return MaterialInfo(handle=handle, present=False)
        return MaterialInfo(handle=handle, fingerprint=found[0].fingerprint, present=True)

    def holding(self, request: HoldingRequest) -> Holding:
        """One read of the keystore; a missing file is reported as such, never started afresh
        while entries are expected. An existing keystore is unlocked now, so a wrong passphrase
        or key file is reported by `plan`."""
        document = self._keystore.read()
        if document is None:
            reason = f"The keystore file {self._keystore.path} does not exist (moved, deleted, or `keystore` points elsewhere)."
            return Holding(missing=request.handles, reason=reason if request.handles else "")
        master = self._keystore.unlock(document)
        # Entries an older keyplan wrote are sealed again at the first wrap, every one of them: one
        # that no longer decrypts would stop the apply there, after its first steps. Opened now, so
        # the plan (and the apply, before any step) says so instead.
        for handle, entry in document.entries.items():
            if not is_current_fingerprint(entry.fingerprint):
                self._keystore.open_entry(handle, entry, master).wipe()
        return Holding(missing=tuple(h for h in request.handles if h not in document.entries))

    def close(self) -> None:
        self._keystore.close()

    def _entry(self, handle: str) -> tuple[KeystoreEntry, MasterKey] | None:
        """The entry under `handle` and the unlocked master key; unlocking proves the passphrase
        is right, so a wrong one is reported on first use (a plan), not on the first wrap."""
        if self._keystore.has_stale_fingerprints():
            # Written by an older keyplan, whose AES fingerprint was GCM's hash subkey: every such
            # entry is sealed again under the current fingerprint, and the file rewritten.
            self._keystore.upgrade_fingerprints(_fingerprint_of)
        return self._keystore.find(handle)
