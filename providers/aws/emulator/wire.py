"""KMS's JSON 1.1 wire format in the emulator: the key specs, limits and name patterns it checks
against, and reading members out of a request body the way KMS validates them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from keyplan.algorithms import MaterialKind
from keyplan.crypto.wrap import WrapMethod
from providers.aws.emulator.bodies import Paged
from providers.aws.emulator.errors import KmsError, validation
from providers.emulation.paging import offset_token, token_offset

ACCOUNT_ID = "111122223333"
DEFAULT_REGION = "us-east-1"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
IMPORT_PARAMETERS_LIFETIME = timedelta(hours=24)
MAX_VALID_TO = timedelta(days=365)
ON_DEMAND_ROTATION_LIMIT = 25
MAX_TAGS = 50
# Generating an RSA-4096 pair takes most of a second. AWS does not document how often it renews
# wrapping pairs; the emulator renews them hourly (emulator clock) and still binds each token to
# exactly one pair, key and algorithm.
WRAPPING_KEY_RENEWAL = timedelta(hours=1)
CIPHERTEXT_MAGIC = b"kpkms1"

# AWS's API reference for GetParametersForImport lists RSA_AES_KEY_WRAP_SHA_1/_256 as "Supported
# for wrapping RSA and ECC key material" and RSAES_OAEP_SHA_1/_256 as "Supported for all types of
# key material, except RSA key material (private key)". So symmetric and HMAC material is
# refused with the RSA_AES algorithms here (ValidationException at GetParametersForImport), and RSA
# private keys are refused with the direct RSAES_OAEP algorithms.
WRAPPING_ALGORITHMS = {m.value: m for m in WrapMethod}
WRAPPING_KEY_SPECS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}


class KeySpecInfo:
    """What one KMS key spec is: its material kind and what it may be used for."""

    def __init__(
        self,
        kind: MaterialKind,
        usages: tuple[str, ...],
        *,
        length: int | None = None,
        bits: int | None = None,
        curve: type[ec.EllipticCurve] | None = None,
        algorithms: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.usages = usages
        self.length = length  # raw secret length in bytes
        self.bits = bits  # RSA modulus size
        self.curve = curve
        self.algorithms = algorithms  # MAC or signing algorithms


_RSA_SIGNING = tuple(f"{p}_{h}" for p in ("RSASSA_PSS", "RSASSA_PKCS1_V1_5") for h in ("SHA_256", "SHA_384", "SHA_512"))
KEY_SPECS: dict[str, KeySpecInfo] = {
    "SYMMETRIC_DEFAULT": KeySpecInfo(MaterialKind.SYMMETRIC, ("ENCRYPT_DECRYPT",), length=32),
    "HMAC_224": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=28, algorithms=("HMAC_SHA_224",)),
    "HMAC_256": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=32, algorithms=("HMAC_SHA_256",)),
    "HMAC_384": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=48, algorithms=("HMAC_SHA_384",)),
    "HMAC_512": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=64, algorithms=("HMAC_SHA_512",)),
    "RSA_2048": KeySpecInfo(MaterialKind.RSA, ("ENCRYPT_DECRYPT", "SIGN_VERIFY"), bits=2048, algorithms=_RSA_SIGNING),
    "RSA_3072": KeySpecInfo(MaterialKind.RSA, ("ENCRYPT_DECRYPT", "SIGN_VERIFY"), bits=3072, algorithms=_RSA_SIGNING),
    "RSA_4096": KeySpecInfo(MaterialKind.RSA, ("ENCRYPT_DECRYPT", "SIGN_VERIFY"), bits=4096, algorithms=_RSA_SIGNING),
    "ECC_NIST_P256": KeySpecInfo(MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP256R1, algorithms=("ECDSA_SHA_256",)),
    "ECC_NIST_P384": KeySpecInfo(MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP384R1, algorithms=("ECDSA_SHA_384",)),
    "ECC_NIST_P521": KeySpecInfo(MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP521R1, algorithms=("ECDSA_SHA_512",)),
    "ECC_SECG_P256K1": KeySpecInfo(
        MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP256K1, algorithms=("ECDSA_SHA_256",)
    ),
}
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA_224": hashes.SHA224,
    "SHA_256": hashes.SHA256,
    "SHA_384": hashes.SHA384,
    "SHA_512": hashes.SHA512,
}
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ALIAS_NAME = re.compile(r"^alias/[a-zA-Z0-9:/_-]+$")
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/kms/aws4_request")
MATERIAL_DESCRIPTION = re.compile(r"^[a-zA-Z0-9:/_\s.-]*$")


def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _limit(limit: Any, maximum: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise validation(f"Limit must be between 1 and {maximum}")
    return limit


def marker_page(items: list[Any], body: Paged, default: int, maximum: int) -> tuple[list[Any], dict[str, Any]]:
    """Marker/NextMarker/Truncated pagination over a stable list."""
    limit, marker = _limit(default if body.limit is None else body.limit, maximum), body.marker
    start = 0
    if marker:
        try:
            start = token_offset(str(marker))
        except ValueError:
            raise KmsError("InvalidMarkerException", "The marker is invalid.") from None
    chunk = items[start : start + limit]
    truncated = start + limit < len(items)
    extra: dict[str, Any] = {"Truncated": truncated}
    if truncated:
        extra["NextMarker"] = offset_token(start + limit)
    return chunk, extra


def context_bytes(context: dict[str, str] | None) -> bytes:
    if not context:
        return b""
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()
