"""keyplan's own names for the kinds of key it manages, independent of any cloud.

Each provider maps these to its cloud's own key specs and says which it can import.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class MaterialKind(StrEnum):
    SYMMETRIC = "symmetric"
    HMAC = "hmac"
    RSA = "rsa"
    EC = "ec"

    @property
    def asymmetric(self) -> bool:
        return self in (MaterialKind.RSA, MaterialKind.EC)


class KeyUsage(StrEnum):
    ENCRYPT = "encrypt"  # symmetric encrypt/decrypt
    SIGN = "sign"  # asymmetric sign/verify
    DECRYPT = "decrypt"  # asymmetric decrypt (RSA-OAEP)
    MAC = "mac"  # HMAC generate/verify


class Algorithm(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: MaterialKind
    bits: int  # key length for secret keys, modulus size for RSA, curve size for EC
    curve: str | None = None  # "P-256" / "P-384" for EC
    usages: tuple[KeyUsage, ...]

    @property
    def default_usage(self) -> KeyUsage:
        return self.usages[0]

    @property
    def material_length(self) -> int | None:
        """Length in bytes of raw secret material; None for PKCS#8-encoded private keys."""
        return self.bits // 8 if self.kind in (MaterialKind.SYMMETRIC, MaterialKind.HMAC) else None


def _hmac(name: str, bits: int) -> Algorithm:
    return Algorithm(name=name, kind=MaterialKind.HMAC, bits=bits, usages=(KeyUsage.MAC,))


def _rsa(bits: int) -> Algorithm:
    return Algorithm(name=f"RSA_{bits}", kind=MaterialKind.RSA, bits=bits, usages=(KeyUsage.SIGN, KeyUsage.DECRYPT))


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in [
        Algorithm(name="AES_256", kind=MaterialKind.SYMMETRIC, bits=256, usages=(KeyUsage.ENCRYPT,)),
        _hmac("HMAC_SHA224", 224),
        _hmac("HMAC_SHA256", 256),
        _hmac("HMAC_SHA384", 384),
        _hmac("HMAC_SHA512", 512),
        _rsa(2048),
        _rsa(3072),
        _rsa(4096),
        Algorithm(name="EC_P256", kind=MaterialKind.EC, bits=256, curve="P-256", usages=(KeyUsage.SIGN,)),
        Algorithm(name="EC_P384", kind=MaterialKind.EC, bits=384, curve="P-384", usages=(KeyUsage.SIGN,)),
    ]
}


def get_algorithm(name: str) -> Algorithm | None:
    return ALGORITHMS.get(name)
