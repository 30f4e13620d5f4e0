"""JSON Web Key members and the encodings Key Vault uses."""

from __future__ import annotations

import base64
import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_b64_any(text: str) -> bytes:
    """Base64 or base64url, padded or not (the spec says base64, the SDK sends base64url)."""
    cleaned = "".join(text.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    alphabet = padded.replace("-", "+").replace("_", "/")
    return base64.b64decode(alphabet, validate=True)


def int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def public_members(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, crv: str | None) -> dict[str, str]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        numbers = private_key.public_key().public_numbers()
        return {"n": b64url(int_bytes(numbers.n)), "e": b64url(int_bytes(numbers.e))}
    point = private_key.public_key().public_numbers()
    size = (private_key.curve.key_size + 7) // 8
    return {"crv": crv or "", "x": b64url(point.x.to_bytes(size, "big")), "y": b64url(point.y.to_bytes(size, "big"))}


@functools.lru_cache(maxsize=256)
def stored_rsa_key(private: str) -> rsa.RSAPrivateKey:
    """A stored RSA key (base64 PKCS#8), parsed once: parsing checks the key, which costs about
    a quarter of a second for RSA-3072, and every import under a KEK would pay it again. Keys in
    the store were made or checked by this emulator, so the check is skipped."""
    der = base64.b64decode(private)
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key
