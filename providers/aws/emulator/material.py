"""Key material in the emulated KMS: checking imported bytes fit the key spec, generating
material for AWS_KMS-origin keys, the material records keys hold, and the wrapping keys' PEM."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from providers.aws.emulator.errors import KmsError
from providers.aws.emulator.wire import (
    KeySpecInfo,
)
from providers.emulation.material import pkcs8_material, private_material


def derive_material_id(key_id: str, material: SecretBytes) -> str:
    """KMS derives a 64-hex KeyMaterialId; deriving it from the bytes makes re-imports checkable."""
    return hashlib.sha256(b"keyplan-kms-material\0" + key_id.encode() + b"\0" + material.reveal()).hexdigest()


def check_material(spec: KeySpecInfo, material: SecretBytes) -> None:
    """Material must fit the key spec: raw bytes of the right length, or a matching PKCS#8 key."""
    wrong = KmsError("IncorrectKeyMaterialException", "The key material is not valid for the key spec of this KMS key.")
    if spec.length is not None:
        if len(material) != spec.length:
            raise wrong
        return
    parsed = private_material(material)
    fits = parsed.is_rsa(spec.bits or 0) if spec.kind is MaterialKind.RSA else parsed.is_ec(spec.curve)
    if not fits:
        raise wrong


def generate_material(spec: KeySpecInfo) -> SecretBytes:
    if spec.length is not None:
        return SecretBytes(os.urandom(spec.length))
    private_key: Any
    if spec.kind is MaterialKind.RSA:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=spec.bits or 2048)
    else:
        assert spec.curve is not None
        private_key = ec.generate_private_key(spec.curve())
    return pkcs8_material(private_key)


def material_record(
    key_id: str, spec: KeySpecInfo, material: SecretBytes, now: datetime, state: str, valid_to: datetime | None
) -> dict[str, Any]:
    return {
        "id": derive_material_id(key_id, material),
        "state": state,
        "secret": base64.b64encode(material.reveal()).decode(),
        "fingerprint": fingerprint_material(spec.kind, material),
        "expiration_model": None if valid_to is None else "KEY_MATERIAL_EXPIRES",
        "valid_to": valid_to.isoformat() if valid_to else None,
        "description": "",
        "created": now.isoformat(),
        "rotation_date": None,
        "rotation_type": None,
    }


def forget_material(material: dict[str, Any]) -> None:
    material.update(secret=None, expiration_model=None, valid_to=None)


@functools.lru_cache(maxsize=64)
def load_rsa(pem: str) -> rsa.RSAPrivateKey:
    # Wrapping keys are few and the emulator made them itself: parse each once, and skip the
    # (costly, for RSA-4096) consistency check of a key we generated.
    key = serialization.load_pem_private_key(pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key
