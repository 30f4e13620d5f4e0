"""Fingerprints prove two parties hold the same material without revealing it, nor anything
usable against it.

The same definition is computed by the software keystore, inside a PKCS#11 token, and by each
cloud emulator over what it unwrapped, so tests can compare them:

- AES keys: `aeskcv:` + hex of the leftmost 40 bits of AES-ECB(key, sixteen 0x01 bytes), the
  AES key check value of ANSI X9.24-1:2017. Never the encryption of the zero block: that is
  GCM's hash subkey H, and H with one valid GCM ciphertext lets anyone forge others.
- HMAC keys: `hmackcv:` + hex of the leftmost 40 bits of HMAC-SHA256(key, FINGERPRINT_MESSAGE),
  so no whole tag over any message is published.
- Private keys (PKCS#8 DER): `spki:` + hex of SHA-256 over the public key's SubjectPublicKeyInfo DER.

Both check values are one operation a PKCS#11 token performs on a key it never exports
(CKM_AES_ECB encrypt, CKM_SHA256_HMAC sign). Earlier keyplan versions wrote `kcv:` (the zero
block, in full) and `hmac:` (the whole tag); state format 2 drops them (`state/upgrade.py`)
and apply recomputes them through the key source.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keyplan.algorithms import MaterialKind
from keyplan.crypto.secret import SecretBytes

FINGERPRINT_MESSAGE = b"keyplan material fingerprint v1"
CHECK_BLOCK = b"\x01" * 16  # X9.24-1:2017: the AES KCV encrypts a block of 0x01 bytes
CHECK_VALUE_BYTES = 5  # leftmost 40 bits, as X9.24-1 prescribes
CURRENT_PREFIXES = ("aeskcv:", "hmackcv:", "spki:")


def kcv_fingerprint(encrypted_check_block: bytes) -> str:
    """From AES-ECB(key, CHECK_BLOCK), however computed (in memory or inside a token)."""
    return "aeskcv:" + encrypted_check_block[:CHECK_VALUE_BYTES].hex()


def hmac_fingerprint(mac: bytes) -> str:
    """From HMAC-SHA256(key, FINGERPRINT_MESSAGE), however computed."""
    return "hmackcv:" + mac[:CHECK_VALUE_BYTES].hex()


def spki_fingerprint(spki_der: bytes) -> str:
    return "spki:" + hashlib.sha256(spki_der).hexdigest()


def is_current_fingerprint(fingerprint: str) -> bool:
    """False for definitions this keyplan no longer writes (they may publish usable values)."""
    return fingerprint.startswith(CURRENT_PREFIXES)


def fingerprint_material(kind: MaterialKind, material: SecretBytes, *, own: bool = False) -> str:
    """`own`: keyplan generated the material, or read it from its own authenticated storage, so
    an RSA private key's structure is not checked again (0.3 s at 4,096 bits); material from
    anywhere else is checked when loaded."""
    raw = material.reveal()
    if kind is MaterialKind.SYMMETRIC:
        encryptor = Cipher(algorithms.AES(raw), modes.ECB()).encryptor()
        return kcv_fingerprint(encryptor.update(CHECK_BLOCK) + encryptor.finalize())
    if kind is MaterialKind.HMAC:
        return hmac_fingerprint(hmac.new(raw, FINGERPRINT_MESSAGE, hashlib.sha256).digest())
    private_key = serialization.load_der_private_key(raw, password=None, unsafe_skip_rsa_key_validation=own)
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki_fingerprint(spki)
