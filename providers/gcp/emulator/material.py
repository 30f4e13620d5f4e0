"""Key material in the emulated Cloud KMS: whether unwrapped material can be a key of an
algorithm, and fresh material of an algorithm (service-generated versions, tests' swaps)."""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keyplan.crypto.secret import SecretBytes
from providers.emulation.material import pkcs8_material, private_material
from providers.gcp.emulator.protos import AlgorithmRule


def format_problem(rule: AlgorithmRule, algorithm: str, material: SecretBytes) -> str | None:
    """Why unwrapped material cannot be a key of this algorithm, or None when it can."""
    if rule.raw_length is not None:
        if len(material) != rule.raw_length:
            return f"{algorithm} key material must be exactly {rule.raw_length} bytes; got {len(material)} bytes."
        return None
    parsed = private_material(material)
    if not parsed.valid:
        return f"{algorithm} key material must be a DER-encoded PKCS#8 PrivateKeyInfo."
    if rule.rsa_bits is not None:
        if not parsed.is_rsa(rule.rsa_bits):
            return f"{algorithm} key material must be an RSA-{rule.rsa_bits} private key."
    elif rule.ed25519:
        if not parsed.is_ed25519():
            return f"{algorithm} key material must be an Ed25519 private key."
    elif not parsed.is_ec(rule.curve):
        return f"{algorithm} key material must be an EC private key on the algorithm's curve."
    return None


def fresh_material(rule: AlgorithmRule) -> bytes:
    """New material of an algorithm: raw bytes, or a PKCS#8 private key."""
    if rule.raw_length is not None:
        return os.urandom(rule.raw_length)
    private: Any
    if rule.rsa_bits:
        private = rsa.generate_private_key(public_exponent=65537, key_size=rule.rsa_bits)
    elif rule.ed25519:
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        assert rule.curve is not None
        private = ec.generate_private_key(rule.curve())
    return pkcs8_material(private).reveal()
