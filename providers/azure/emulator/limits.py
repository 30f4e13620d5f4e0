"""Key Vault's limits and vocabulary as the emulator enforces them."""

from __future__ import annotations

from typing import Literal, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel

VaultKind = Literal["vault", "managedhsm"]
BodyModel = TypeVar("BodyModel", bound=BaseModel)

KEY_NAME_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
MAX_KEY_NAME = 127
MAX_TAGS = 15
MAX_TAG_LENGTH = 256
MAX_PAGE = 25
RSA_SIZES = (2048, 3072, 4096)
AES_SIZES = (16, 24, 32)
# JWA signature algorithms: the digest each takes, and the curve of the ES ones (RFC 7518 §3.1)
SIGN_HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
ES_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "P-256K": ec.SECP256K1(),
}
KEY_OPERATIONS = frozenset(["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"])
DEFAULT_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
TRANSFER_ENC = "CKM_RSA_AES_KEY_WRAP"
PURGE_PROTECTED_MESSAGE = (
    'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault service '
    "will automatically purge it after the retention period has passed."
)
