"""New key material from the operating system's CSPRNG, in the encoding the clouds import:
raw bytes for AES and HMAC keys, PKCS#8 `PrivateKeyInfo` DER for RSA and EC private keys."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyplan.algorithms import Algorithm, MaterialKind
from keyplan.crypto.secret import SecretBytes

_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


def generate_material(algorithm: Algorithm) -> SecretBytes:
    if algorithm.kind in (MaterialKind.SYMMETRIC, MaterialKind.HMAC):
        return SecretBytes(secrets.token_bytes(algorithm.bits // 8))
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm.kind is MaterialKind.RSA:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=algorithm.bits)
    else:
        if algorithm.curve not in _CURVES:
            raise ValueError(f"unsupported curve {algorithm.curve!r}")
        private_key = ec.generate_private_key(_CURVES[algorithm.curve])
    return SecretBytes(
        private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
