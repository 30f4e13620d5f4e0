"""The wrap formats every cloud's BYOK import accepts.

Direct methods encrypt the material with RSAES-OAEP under the cloud's wrapping key. Hybrid
methods are PKCS#11's CKM_RSA_AES_KEY_WRAP: a fresh AES-256 key wraps the material with
AES Key Wrap with Padding (RFC 5649), the AES key is encrypted with RSAES-OAEP, and the two are
concatenated RSA part first. OAEP always uses an empty label and the same hash for MGF1.
"""

from __future__ import annotations

import os
from enum import StrEnum

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from keyplan.crypto.secret import SecretBytes


class WrapMethod(StrEnum):
    RSAES_OAEP_SHA_1 = "RSAES_OAEP_SHA_1"
    RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"
    RSA_AES_KEY_WRAP_SHA_1 = "RSA_AES_KEY_WRAP_SHA_1"
    RSA_AES_KEY_WRAP_SHA_256 = "RSA_AES_KEY_WRAP_SHA_256"

    @property
    def hybrid(self) -> bool:
        return self.value.startswith("RSA_AES_KEY_WRAP")

    @property
    def oaep_hash(self) -> str:
        return "SHA-256" if self.value.endswith("SHA_256") else "SHA-1"

    @property
    def strength(self) -> int:
        """Higher is stronger: SHA-256 over SHA-1, then the hybrid form (no size limit) over direct."""
        return (2 if self.oaep_hash == "SHA-256" else 0) + (1 if self.hybrid else 0)


def strongest_first(methods: set[WrapMethod] | list[WrapMethod]) -> list[WrapMethod]:
    return sorted(methods, key=lambda m: m.strength, reverse=True)


class UnwrapError(ValueError):
    """The blob does not decrypt under this key with this method (emulators map it to the cloud's error)."""


def _oaep(method: WrapMethod) -> padding.OAEP:
    algorithm: hashes.HashAlgorithm = hashes.SHA256() if method.oaep_hash == "SHA-256" else hashes.SHA1()
    return padding.OAEP(mgf=padding.MGF1(algorithm=algorithm), algorithm=algorithm, label=None)


def direct_oaep_limit(modulus_bits: int, method: WrapMethod) -> int:
    """The largest plaintext direct RSAES-OAEP can carry under a key of this size."""
    hash_len = 32 if method.oaep_hash == "SHA-256" else 20
    return modulus_bits // 8 - 2 * hash_len - 2


def load_wrapping_key(public_key_der: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_der_public_key(public_key_der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the wrapping key is not an RSA public key")
    return key


def wrap(method: WrapMethod, wrapping_public_key_der: bytes, material: SecretBytes) -> bytes:
    """Wrap `material` for a cloud; the result is safe to send and to hold in memory."""
    public_key = load_wrapping_key(wrapping_public_key_der)
    if not method.hybrid:
        limit = direct_oaep_limit(public_key.key_size, method)
        if len(material) > limit:
            raise ValueError(
                f"{method.value} under RSA-{public_key.key_size} carries at most {limit} bytes; "
                f"this material is {len(material)} bytes"
            )
        return public_key.encrypt(material.reveal(), _oaep(method))
    aes_key = SecretBytes(os.urandom(32))
    try:
        wrapped_target = aes_key_wrap_with_padding(aes_key.reveal(), material.reveal())
        wrapped_aes = public_key.encrypt(aes_key.reveal(), _oaep(method))
    finally:
        aes_key.wipe()
    return wrapped_aes + wrapped_target


def unwrap(method: WrapMethod, private_key: rsa.RSAPrivateKey, blob: bytes) -> SecretBytes:
    """The inverse of `wrap`, as a cloud performs it; raises UnwrapError on any mismatch."""
    k = private_key.key_size // 8
    try:
        if not method.hybrid:
            return SecretBytes(private_key.decrypt(blob, _oaep(method)))
        if len(blob) <= k:
            raise UnwrapError("the blob is shorter than one RSA block plus a wrapped key")
        aes_key = private_key.decrypt(blob[:k], _oaep(method))
        if len(aes_key) != 32:
            raise UnwrapError("the RSA part does not hold a 256-bit AES key")
        return SecretBytes(aes_key_unwrap_with_padding(aes_key, blob[k:]))
    except (ValueError, InvalidUnwrap) as exc:
        if isinstance(exc, UnwrapError):
            raise
        raise UnwrapError("the wrapped material does not decrypt with this wrapping key and method") from None
