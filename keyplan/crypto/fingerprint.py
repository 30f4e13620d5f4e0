"""Fingerprints prove two parties hold the same material without revealing it.

The same definition is computed by the software keystore, inside a PKCS#11 token, and by each
cloud emulator over what it unwrapped, so tests can compare them:

- AES keys: `kcv:` + hex of AES-ECB(key, 16 zero bytes), the classic key check value in full.
- HMAC keys: `hmac:` + hex of HMAC-SHA256(key, FINGERPRINT_MESSAGE).
- Private keys (PKCS#8 DER): `spki:` + hex of SHA-256 over the public key's SubjectPublicKeyInfo DER.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keyplan.algorithms import MaterialKind
from keyplan.crypto.secret import SecretBytes

FINGERPRINT_MESSAGE = b"keyplan material fingerprint v1"


def kcv_fingerprint(cipher_output: bytes) -> str:
    return "kcv:" + cipher_output.hex()


def hmac_fingerprint(mac: bytes) -> str:
    return "hmac:" + mac.hex()


def spki_fingerprint(spki_der: bytes) -> str:
    return "spki:" + hashlib.sha256(spki_der).hexdigest()


def fingerprint_material(kind: MaterialKind, material: SecretBytes) -> str:
    raw = material.reveal()
    if kind is MaterialKind.SYMMETRIC:
        encryptor = Cipher(algorithms.AES(raw), modes.ECB()).encryptor()
        return kcv_fingerprint(encryptor.update(bytes(16)) + encryptor.finalize())
    if kind is MaterialKind.HMAC:
        return hmac_fingerprint(hmac.new(raw, FINGERPRINT_MESSAGE, hashlib.sha256).digest())
    private_key = serialization.load_der_private_key(raw, password=None)
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki_fingerprint(spki)
