"""What unwrapped key material is, for the emulators' checks that it fits the declared key.

Every cloud accepts secret keys as raw bytes of an exact length and private keys as DER
PKCS#8 PrivateKeyInfo; each emulator asks this module what the bytes are and answers a
mismatch in its own words.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from keyplan.crypto.secret import SecretBytes

CURVE_NAMES: dict[type[ec.EllipticCurve], str] = {
    ec.SECP256R1: "P-256",
    ec.SECP384R1: "P-384",
    ec.SECP521R1: "P-521",
    ec.SECP256K1: "P-256K",
}


@dataclass(frozen=True)
class PrivateMaterial:
    """A private key parsed from PKCS#8 material (None when the bytes are not one)."""

    key: PrivateKeyTypes | None

    @property
    def valid(self) -> bool:
        return self.key is not None

    def is_rsa(self, *bits: int) -> bool:
        return isinstance(self.key, rsa.RSAPrivateKey) and self.key.key_size in bits

    def is_ec(self, curve: type[ec.EllipticCurve] | None) -> bool:
        return curve is not None and isinstance(self.key, ec.EllipticCurvePrivateKey) and isinstance(
            self.key.curve, curve
        )

    def is_ed25519(self) -> bool:
        return isinstance(self.key, ed25519.Ed25519PrivateKey)

    @property
    def curve_name(self) -> str | None:
        """The JOSE curve name (P-256, …) of an EC key."""
        if not isinstance(self.key, ec.EllipticCurvePrivateKey):
            return None
        return curve_name(self.key.curve)


def curve_name(curve: ec.EllipticCurve) -> str | None:
    """The JOSE name (P-256, P-384, P-521, P-256K) of a curve."""
    return next((name for known, name in CURVE_NAMES.items() if isinstance(curve, known)), None)


def private_material(material: SecretBytes) -> PrivateMaterial:
    """Parse PKCS#8 DER material; never raises, never copies the bytes elsewhere."""
    try:
        key = serialization.load_der_private_key(material.reveal(), password=None)
    except (ValueError, TypeError):
        return PrivateMaterial(None)
    return PrivateMaterial(key)


def pkcs8_material(private_key: PrivateKeyTypes) -> SecretBytes:
    """A private key as the clouds import it: DER PKCS#8 PrivateKeyInfo, unencrypted."""
    return SecretBytes(
        private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def raw_length_fits(material: SecretBytes, *lengths: int) -> bool:
    return len(material) in lengths
