"""The PKCS#11 key source at run time: keys are generated in the token as persistent,
sensitive objects, fingerprinted inside it, and leave it only wrapped under a cloud's key.

Every call into the library holds the library's lock (see `providers.pkcs11.library`), so one
shared logged-in session serves all of the apply walker's threads.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from pkcs11 import (
    Attribute,
    KeyType,
    MechanismFlag,
    ObjectClass,
    PrivateKey,
    PublicKey,
    SecretKey,
    Session,
    Token,
)
from pkcs11 import exceptions as p11

from keyplan.algorithms import Algorithm, MaterialKind
from keyplan.crypto.fingerprint import spki_fingerprint
from keyplan.crypto.wrap import direct_oaep_limit, load_wrapping_key
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
from providers.pkcs11 import proofs
from providers.pkcs11.errors import token_error
from providers.pkcs11.library import LoadedLibrary, detach, logout
from providers.pkcs11.objects import (
    CURVE_PARAMS,
    TokenHandle,
    find_object,
    find_target,
    public_fingerprint,
    public_key_spki,
    secret_fingerprint,
)
from providers.pkcs11.probe import TokenFeatures, probe_token
from providers.pkcs11.settings import Pkcs11SourceSettings
from providers.pkcs11.wrapping import find_trusted_wrapping_key, import_wrapping_key, wrap_in_token

# Debug lines name handles, fingerprints, mechanisms and sizes: never material, never a PIN.
log = logging.getLogger("keyplan.pkcs11")

T = TypeVar("T")

class Pkcs11Source(KeySource):
    def __init__(
        self, address: str, settings: Pkcs11SourceSettings, library: LoadedLibrary, token: Token, session: Session
    ) -> None:
        self.address = address
        self._settings = settings
        self._library = library
        self._token = token
        self._session: Session | None = session
        self._features: TokenFeatures | None = None

    def __repr__(self) -> str:
        return f"Pkcs11Source(address={self.address!r}, token={self._settings.token_label!r})"

    # ---- capabilities -------------------------------------------------------------------------

    def capabilities(self) -> SourceCapabilities:
        return self._probed().capabilities

    def _probed(self) -> TokenFeatures:
        with self._library.lock:
            if self._features is None:
                try:
                    self._features = probe_token(
                        self._open_session(), self._token.slot, trusted_only=self._settings.wrap_with_trusted
                    )
                except p11.PKCS11Error as exc:
                    raise token_error("probing its mechanisms", exc, token=self._settings.token_label) from None
                log.debug(
                    "%s: token %r probed: %s", self.address, self._settings.token_label, "; ".join(self._features.capabilities.notes)
                )
            return self._features

    # ---- generate -----------------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> GeneratedMaterial:
        algorithm = request.algorithm
        if algorithm.name not in self.capabilities().algorithms:
            raise SourceError(
                f"The PKCS#11 token cannot generate {algorithm.name}",
                f"The token {self._settings.token_label!r} lacks the mechanisms for {algorithm.name}. "
                "Choose another algorithm or another key source.",
            )
        handle = TokenHandle.new(self._settings.key_label_prefix, request.address, request.version)
        with self._library.lock:
            session = self._open_session()
            try:
                fingerprint = self._generate_in_token(session, algorithm, handle)
            except p11.PKCS11Error as exc:
                self._destroy_quietly(session, handle)
                raise token_error(f"generating {algorithm.name} for {request.address}", exc, token=self._settings.token_label) from None
        log.debug("%s: generated %s in token %r as %s (%s)", self.address, algorithm.name, self._settings.token_label, handle, fingerprint)
        return GeneratedMaterial(handle=str(handle), fingerprint=fingerprint, created_at=datetime.now(UTC))

    def _generate_in_token(self, session: Session, algorithm: Algorithm, handle: TokenHandle) -> str:
        # SENSITIVE: the value can never be read; EXTRACTABLE: it can still leave the token wrapped.
        protection = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: True,
            Attribute.PRIVATE: True,
            Attribute.WRAP_WITH_TRUSTED: self._settings.wrap_with_trusted,
        }
        if algorithm.kind in (MaterialKind.SYMMETRIC, MaterialKind.HMAC):
            # ENCRYPT / SIGN only so the token can compute the key check value / fingerprint MAC.
            key_type, usage = (
                (KeyType.AES, MechanismFlag.ENCRYPT)
                if algorithm.kind is MaterialKind.SYMMETRIC
                else (KeyType.GENERIC_SECRET, MechanismFlag.SIGN)
            )
            key = session.generate_key(
                key_type,
                algorithm.bits,
                label=handle.label,
                id=handle.object_id,
                store=True,
                capabilities=usage,
                template=protection,
            )
            return secret_fingerprint(key)
        capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
        if algorithm.kind is MaterialKind.RSA:
            public, _ = session.generate_keypair(
                KeyType.RSA,
                algorithm.bits,
                label=handle.label,
                id=handle.object_id,
                store=True,
                capabilities=capabilities,
                private_template=protection,
            )
        else:
            assert algorithm.curve is not None
            parameters = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: CURVE_PARAMS[algorithm.curve]}, local=True
            )
            public, _ = parameters.generate_keypair(
                label=handle.label,
                id=handle.object_id,
                store=True,
                capabilities=capabilities,
                private_template=protection,
            )
        return public_fingerprint(public)

    def _destroy_quietly(self, session: Session, handle: TokenHandle) -> None:
        """Removes what a failed generate left behind, so no unrecorded key stays in the token."""
        for object_class in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
            try:
                found = find_object(session, handle, object_class)
                if found is not None:
                    found.destroy()
            except p11.PKCS11Error:
                pass  # best effort: the original error is the one to report

    # ---- wrap ---------------------------------------------------------------------------------

    def wrap(self, request: WrapRequest) -> WrappedMaterial:
        features = self._probed()
        method = request.method
        if method not in features.capabilities.wrap_methods:
            advertised = ", ".join(sorted(m.value for m in features.capabilities.wrap_methods)) or "none"
            raise SourceError(
                f"The PKCS#11 token cannot wrap with {method.value}",
                f"The token {self._settings.token_label!r} supports: {advertised}. Choose a method "
                "both the token and the target accept.",
            )
        self._check_size(request, _wrapping_key_bits(request.wrapping_public_key))
        handle = self._parse(request.handle)
        with self._library.lock:
            session = self._open_session()
            try:
                target = self._target(session, handle, request.algorithm)
                blob = self._wrap_under_cloud_key(session, target, request, method in features.native_hybrid)
            except p11.PKCS11Error as exc:
                raise token_error(f"wrapping {handle.label}", exc, token=self._settings.token_label) from None
        log.debug(
            "%s: wrapped %s in the token with %s under %s (%d bytes out)",
            self.address,
            handle,
            method.value,
            spki_fingerprint(request.wrapping_public_key),
            len(blob),
        )
        return WrappedMaterial(method=method, blob=blob)

    def _wrap_under_cloud_key(
        self, session: Session, target: SecretKey | PrivateKey, request: WrapRequest, native_hybrid: bool
    ) -> bytes:
        if self._settings.wrap_with_trusted:
            trusted = find_trusted_wrapping_key(session, request.wrapping_public_key)
            if trusted is None:
                address = _address_of(TokenHandle.parse(request.handle), self._settings.key_label_prefix)
                raise SourceError(
                    "The cloud's wrapping key is not trusted by the token",
                    f"Keys in {self._settings.token_label!r} are created with CKA_WRAP_WITH_TRUSTED, so "
                    f"they can only be wrapped under a key the security officer imported as TRUSTED "
                    f"(wrapping key {spki_fingerprint(request.wrapping_public_key)}). The security officer "
                    f"runs `keyplan hsm trust '{address}'` with the SO PIN in KEYPLAN_HSM_SO_PIN; then run "
                    "`keyplan apply` again.",
                )
            return wrap_in_token(session, trusted, target, request.method, native_hybrid=native_hybrid)
        wrapping_key = import_wrapping_key(session, request.wrapping_public_key)
        try:
            return wrap_in_token(session, wrapping_key, target, request.method, native_hybrid=native_hybrid)
        finally:
            wrapping_key.destroy()

    def _check_size(self, request: WrapRequest, wrapping_key_bits: int) -> None:
        method = request.method
        if method.hybrid:
            return
        if request.algorithm.kind.asymmetric:
            raise SourceError(
                f"{method.value} cannot carry a private key from a PKCS#11 token",
                "PKCS#11 RSA-OAEP wraps secret keys only. Choose an RSA_AES_KEY_WRAP method for "
                f"{request.algorithm.name}.",
            )
        if request.algorithm.bits // 8 > direct_oaep_limit(wrapping_key_bits, method):
            raise SourceError(
                f"{request.algorithm.name} is too large for {method.value} under RSA-{wrapping_key_bits}",
                "Choose an RSA_AES_KEY_WRAP method, which carries any size.",
            )

    def _parse(self, handle: str) -> TokenHandle:
        parsed = TokenHandle.parse(handle)
        if parsed is None:
            raise SourceError(
                "Not a PKCS#11 material handle",
                f"{handle!r} does not name an object in a token (expected <label>#<id>). The state "
                "was written by another key source; check the key's `source`.",
            )
        return parsed

    def _target(self, session: Session, handle: TokenHandle, algorithm: Algorithm) -> SecretKey | PrivateKey:
        target = find_target(session, handle)
        if target is None:
            raise SourceError(
                "Key material not found in the PKCS#11 token",
                f"The token {self._settings.token_label!r} holds no key labelled {handle.label!r} with "
                f"id {handle.object_id.hex()}: it was deleted from the token or the token was "
                "re-initialised. Restore the token from its backup, or generate new material for this key.",
            )
        expected = {
            MaterialKind.SYMMETRIC: KeyType.AES,
            MaterialKind.HMAC: KeyType.GENERIC_SECRET,
            MaterialKind.RSA: KeyType.RSA,
            MaterialKind.EC: KeyType.EC,
        }[algorithm.kind]
        if target.key_type != expected:
            raise SourceError(
                "Key material has a different algorithm",
                f"{handle.label!r} in the token is not {algorithm.name} material. The state and the "
                "token disagree; generate new material for this key.",
            )
        return target

    # ---- proofs: computed inside the token; the key never leaves it --------------------------

    def public_key(self, request: PublicKeyRequest) -> PublicKeyResponse:
        """SubjectPublicKeyInfo built from the public key object's CKA_MODULUS / CKA_EC_POINT."""
        handle = self._parse(request.handle)

        def read(session: Session) -> bytes:
            self._target(session, handle, request.algorithm)  # the private half is still there
            public = find_object(session, handle, ObjectClass.PUBLIC_KEY)
            if not isinstance(public, PublicKey):
                raise SourceError(
                    "The public key object is missing from the PKCS#11 token",
                    f"{handle.label!r} has a private key but no public key object, so the token cannot show "
                    "its public half. Restore the token from its backup.",
                )
            try:
                return public_key_spki(public)
            except ValueError as exc:
                raise SourceError("Cannot read the public key in the PKCS#11 token", str(exc)) from None

        return PublicKeyResponse(spki=self._in_token(handle, "reading the public key of", read))

    def mac(self, request: MacRequest) -> MacResponse:
        """C_Sign with the HMAC mechanism of the algorithm (keyplan creates HMAC keys with CKA_SIGN)."""
        handle = self._parse(request.handle)
        mechanism = proofs.HMAC_MECHANISMS.get(request.algorithm.name)
        if mechanism is None:
            raise SourceError(f"No MAC proof for {request.algorithm.name} material", "MAC proofs apply to HMAC keys.")
        mac = self._with_key(handle, request.algorithm, "computing a MAC with", lambda key: proofs.mac(key, mechanism, request.message))
        return MacResponse(mac=mac)

    def aes_gcm_encrypt(self, request: AesGcmRequest) -> AesGcmResponse:
        """C_Encrypt with CKM_AES_GCM and the given IV (keyplan creates AES keys with CKA_ENCRYPT)."""
        handle = self._parse(request.handle)
        if request.algorithm.kind is not MaterialKind.SYMMETRIC:
            raise SourceError(f"No encryption proof for {request.algorithm.name} material", "It applies to AES keys.")
        sealed = self._with_key(
            handle, request.algorithm, "encrypting with", lambda key: proofs.aes_gcm_encrypt(key, request.iv, request.aad, request.plaintext)
        )
        return AesGcmResponse(ciphertext=sealed[:-16], tag=sealed[-16:])

    def sign(self, request: SignRequest) -> SignResponse:
        """C_Sign over the message's digest (hashed outside: a digest is not secret) with CKM_ECDSA
        or CKM_RSA_PKCS_PSS / CKM_RSA_PKCS (keyplan creates private keys with CKA_SIGN)."""
        handle = self._parse(request.handle)
        scheme = request.scheme
        ecdsa = scheme.value.startswith("ecdsa")
        if request.algorithm.kind is not (MaterialKind.EC if ecdsa else MaterialKind.RSA):
            raise SourceError(f"Cannot sign {request.algorithm.name} material with {scheme.value}", "Choose the key's own scheme.")
        digest = hashlib.new(scheme.hash.name, request.message).digest()
        signature = self._with_key(handle, request.algorithm, "signing with", lambda key: proofs.sign_digest(key, scheme, digest))
        return SignResponse(signature=signature)

    def aes_key_wrap(self, request: AesKeyWrapRequest) -> AesKeyWrapResponse:
        """C_Encrypt with CKM_AES_KEY_WRAP, or where the token offers that mechanism only to
        C_WrapKey, RFC 3394 over CKM_AES_ECB blocks (providers/pkcs11/keywrap.py)."""
        handle = self._parse(request.handle)
        if request.algorithm.kind is not MaterialKind.SYMMETRIC:
            raise SourceError(f"No key-wrap proof for {request.algorithm.name} material", "It applies to AES keys.")
        if len(request.plaintext) < 16 or len(request.plaintext) % 8:
            raise SourceError("AES key wrap takes at least 16 bytes, a multiple of 8", "This is a bug in the proof asking.")
        wrapped = self._with_key(handle, request.algorithm, "wrapping with", lambda key: proofs.aes_key_wrap(key, request.plaintext))
        return AesKeyWrapResponse(wrapped=wrapped)

    def _with_key(
        self, handle: TokenHandle, algorithm: Algorithm, doing: str, work: Callable[[SecretKey | PrivateKey], T]
    ) -> T:
        """`work` on the key object of `handle`, found in the token as `algorithm` material."""
        return self._in_token(handle, doing, lambda session: work(self._target(session, handle, algorithm)))

    def _in_token(self, handle: TokenHandle, doing: str, work: Callable[[Session], T]) -> T:
        with self._library.lock:
            session = self._open_session()
            try:
                return work(session)
            except p11.PKCS11Error as exc:
                raise token_error(f"{doing} {handle.label}", exc, token=self._settings.token_label) from None

    # ---- describe and close -------------------------------------------------------------------

    def describe(self, handle: str) -> MaterialInfo:
        parsed = TokenHandle.parse(handle)
        if parsed is None:
            return MaterialInfo(handle=handle, present=False)
        with self._library.lock:
            session = self._open_session()
            try:
                target = find_target(session, parsed)
                if target is None:
                    return MaterialInfo(handle=handle, present=False)
                if isinstance(target, SecretKey):
                    return MaterialInfo(handle=handle, fingerprint=secret_fingerprint(target))
                public = find_object(session, parsed, ObjectClass.PUBLIC_KEY)
                fingerprint = public_fingerprint(public) if isinstance(public, PublicKey) else None
                return MaterialInfo(handle=handle, fingerprint=fingerprint)
            except p11.PKCS11Error as exc:
                raise token_error(f"looking up {parsed.label}", exc, token=self._settings.token_label) from None

    def holding(self, request: HoldingRequest) -> Holding:
        """One pass over the token's secret and private keys (label and id, no operation on
        them), however many handles state records; the session is logged in already, so a wrong
        PIN failed at open."""
        if not request.handles:
            return Holding()
        present: set[tuple[str, bytes]] = set()
        with self._library.lock:
            session = self._open_session()
            try:
                for object_class in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
                    for found in session.get_objects({Attribute.CLASS: object_class}):
                        present.add((str(found[Attribute.LABEL]), bytes(found[Attribute.ID])))
            except p11.PKCS11Error as exc:
                raise token_error("listing the token's keys", exc, token=self._settings.token_label) from None
        missing = tuple(
            handle
            for handle in request.handles
            if (parsed := TokenHandle.parse(handle)) is None or (parsed.label, parsed.object_id) not in present
        )
        reason = f"The token {self._settings.token_label} has no object under these handles." if missing else ""
        return Holding(missing=missing, reason=reason)

    def close(self) -> None:
        with self._library.lock:
            if self._session is None:
                return
            self._session = None
            logout(self._library, self._token)
        detach(self._library)

    def _open_session(self) -> Session:
        if self._session is None:
            raise SourceError("The PKCS#11 source is closed", "Open the source again (a bug if seen during a run).")
        return self._session


def _address_of(handle: TokenHandle | None, prefix: str) -> str:
    """The key address inside a handle's label (`<prefix>:<address>:v<version>`)."""
    if handle is None:
        return "ADDR"
    inner = handle.label.removeprefix(prefix + ":")
    address, sep, _ = inner.rpartition(":v")
    return address if sep and address else "ADDR"


def _wrapping_key_bits(spki_der: bytes) -> int:
    try:
        return load_wrapping_key(spki_der).key_size
    except ValueError:
        raise SourceError(
            "The wrapping key is not an RSA public key",
            "The target handed out a wrapping key that is not a DER SubjectPublicKeyInfo of an RSA "
            "key. Fetch fresh import parameters from the target.",
        ) from None
