"""The enums of google/cloud/kms/v1/resources.proto (name <-> number), the import methods' RSA
key sizes, what each algorithm's imported material must look like, and Cloud KMS's limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from keyplan.algorithms import MaterialKind
from keyplan.crypto.wrap import WrapMethod


class ProtoEnum:
    def __init__(self, field: str, members: dict[str, int]) -> None:
        self.field = field
        self.by_name = members
        self.by_number = {v: k for k, v in members.items()}

    def parse(self, value: Any) -> str | None:
        """A member name from a JSON value (name, number or numeric string); None if unknown."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return self.by_number.get(int(value))
        if isinstance(value, str) and value in self.by_name:
            return value
        return None

    def render(self, name: str, as_int: bool) -> str | int:
        return self.by_name[name] if as_int else name


PURPOSE = ProtoEnum(
    "purpose",
    {
        "CRYPTO_KEY_PURPOSE_UNSPECIFIED": 0,
        "ENCRYPT_DECRYPT": 1,
        "ASYMMETRIC_SIGN": 5,
        "ASYMMETRIC_DECRYPT": 6,
        "RAW_ENCRYPT_DECRYPT": 7,
        "MAC": 9,
        "KEY_ENCAPSULATION": 10,
        "AES_WRAPPING": 11,
    },
)
PROTECTION_LEVEL = ProtoEnum(
    "protectionLevel",
    {
        "PROTECTION_LEVEL_UNSPECIFIED": 0,
        "SOFTWARE": 1,
        "HSM": 2,
        "EXTERNAL": 3,
        "EXTERNAL_VPC": 4,
        "HSM_SINGLE_TENANT": 5,
    },
)
ALGORITHM = ProtoEnum(
    "algorithm",
    {
        "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED": 0,
        "GOOGLE_SYMMETRIC_ENCRYPTION": 1,
        "AES_128_GCM": 41,
        "AES_256_GCM": 19,
        "AES_128_CBC": 42,
        "AES_256_CBC": 43,
        "AES_128_CTR": 44,
        "AES_256_CTR": 45,
        "RSA_SIGN_PSS_2048_SHA256": 2,
        "RSA_SIGN_PSS_3072_SHA256": 3,
        "RSA_SIGN_PSS_4096_SHA256": 4,
        "RSA_SIGN_PSS_4096_SHA512": 15,
        "RSA_SIGN_PKCS1_2048_SHA256": 5,
        "RSA_SIGN_PKCS1_3072_SHA256": 6,
        "RSA_SIGN_PKCS1_4096_SHA256": 7,
        "RSA_SIGN_PKCS1_4096_SHA512": 16,
        "RSA_SIGN_RAW_PKCS1_2048": 28,
        "RSA_SIGN_RAW_PKCS1_3072": 29,
        "RSA_SIGN_RAW_PKCS1_4096": 30,
        "RSA_DECRYPT_OAEP_2048_SHA256": 8,
        "RSA_DECRYPT_OAEP_3072_SHA256": 9,
        "RSA_DECRYPT_OAEP_4096_SHA256": 10,
        "RSA_DECRYPT_OAEP_4096_SHA512": 17,
        "RSA_DECRYPT_OAEP_2048_SHA1": 37,
        "RSA_DECRYPT_OAEP_3072_SHA1": 38,
        "RSA_DECRYPT_OAEP_4096_SHA1": 39,
        "EC_SIGN_P256_SHA256": 12,
        "EC_SIGN_P384_SHA384": 13,
        "EC_SIGN_SECP256K1_SHA256": 31,
        "EC_SIGN_ED25519": 40,
        "HMAC_SHA256": 32,
        "HMAC_SHA1": 33,
        "HMAC_SHA384": 34,
        "HMAC_SHA512": 35,
        "HMAC_SHA224": 36,
        "EXTERNAL_SYMMETRIC_ENCRYPTION": 18,
    },
)
VERSION_STATE = ProtoEnum(
    "state",
    {
        "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED": 0,
        "PENDING_GENERATION": 5,
        "ENABLED": 1,
        "DISABLED": 2,
        "DESTROYED": 3,
        "DESTROY_SCHEDULED": 4,
        "PENDING_IMPORT": 6,
        "IMPORT_FAILED": 7,
        "GENERATION_FAILED": 8,
    },
)
IMPORT_METHOD = ProtoEnum(
    "importMethod",
    {
        "IMPORT_METHOD_UNSPECIFIED": 0,
        "RSA_OAEP_3072_SHA1_AES_256": 1,
        "RSA_OAEP_4096_SHA1_AES_256": 2,
        "RSA_OAEP_3072_SHA256_AES_256": 3,
        "RSA_OAEP_4096_SHA256_AES_256": 4,
        "RSA_OAEP_3072_SHA256": 5,
        "RSA_OAEP_4096_SHA256": 6,
        "HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM": 8,
        "HPKE_KEM_ML_KEM_1024_HKDF_SHA256_AES_256_GCM": 9,
        "HPKE_KEM_XWING_HKDF_SHA256_AES_256_GCM": 10,
    },
)
IMPORT_JOB_STATE = ProtoEnum(
    "state", {"IMPORT_JOB_STATE_UNSPECIFIED": 0, "PENDING_GENERATION": 1, "ACTIVE": 2, "EXPIRED": 3}
)

# The RSA-based import methods: how the blob is built and the size of the job's key.
IMPORT_METHOD_WRAPS: dict[str, tuple[WrapMethod, int]] = {
    "RSA_OAEP_3072_SHA1_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 3072),
    "RSA_OAEP_4096_SHA1_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 4096),
    "RSA_OAEP_3072_SHA256_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 3072),
    "RSA_OAEP_4096_SHA256_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 4096),
    "RSA_OAEP_3072_SHA256": (WrapMethod.RSAES_OAEP_SHA_256, 3072),
    "RSA_OAEP_4096_SHA256": (WrapMethod.RSAES_OAEP_SHA_256, 4096),
}

IMPORT_JOB_LIFETIME = timedelta(days=3)
DEFAULT_DESTROY_DURATION = timedelta(days=30)
MIN_DESTROY_DURATION = timedelta(hours=24)
MAX_DESTROY_DURATION = timedelta(days=120)
RESOURCE_ID = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class AlgorithmRule:
    """What an algorithm's imported material must look like, and what it can do."""

    purpose: str
    kind: MaterialKind
    raw_length: int | None = None  # secret keys: exact byte length
    rsa_bits: int | None = None  # RSA private keys: modulus size
    curve: type[ec.EllipticCurve] | None = None
    ed25519: bool = False
    hsm_only: bool = False


def _algorithm_rules() -> dict[str, AlgorithmRule]:
    rules: dict[str, AlgorithmRule] = {
        "GOOGLE_SYMMETRIC_ENCRYPTION": AlgorithmRule("ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC, raw_length=32),
        "EC_SIGN_P256_SHA256": AlgorithmRule("ASYMMETRIC_SIGN", MaterialKind.EC, curve=ec.SECP256R1),
        "EC_SIGN_P384_SHA384": AlgorithmRule("ASYMMETRIC_SIGN", MaterialKind.EC, curve=ec.SECP384R1),
        "EC_SIGN_SECP256K1_SHA256": AlgorithmRule(
            "ASYMMETRIC_SIGN", MaterialKind.EC, curve=ec.SECP256K1, hsm_only=True
        ),
        "EC_SIGN_ED25519": AlgorithmRule("ASYMMETRIC_SIGN", MaterialKind.EC, ed25519=True),
    }
    for mode in ("GCM", "CBC", "CTR"):
        rules[f"AES_128_{mode}"] = AlgorithmRule("RAW_ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC, raw_length=16)
        rules[f"AES_256_{mode}"] = AlgorithmRule("RAW_ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC, raw_length=32)
    for digest, length in (("SHA1", 20), ("SHA224", 28), ("SHA256", 32), ("SHA384", 48), ("SHA512", 64)):
        rules[f"HMAC_{digest}"] = AlgorithmRule("MAC", MaterialKind.HMAC, raw_length=length)
    for name in ALGORITHM.by_name:
        match = re.match(r"^RSA_(SIGN|DECRYPT)_\w*?(2048|3072|4096)", name)
        if match:
            purpose = "ASYMMETRIC_SIGN" if match.group(1) == "SIGN" else "ASYMMETRIC_DECRYPT"
            rules[name] = AlgorithmRule(purpose, MaterialKind.RSA, rsa_bits=int(match.group(2)))
    return rules


ALGORITHM_RULES = _algorithm_rules()
