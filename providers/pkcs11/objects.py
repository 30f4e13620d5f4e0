"""keyplan's objects in a token: how a handle names them, how they are found again, and the
fingerprints computed inside the token.

A handle is `<label>#<id hex>`: the label (`<prefix>:<address>:v<version>`) makes the object
recognisable in any token browser; the random CKA_ID makes a re-generate for the same address
and version (say after a crash before the state was written) a new object instead of a second
object with the same name. Nothing here reads CKA_VALUE: secret keys are SENSITIVE, and their
fingerprints come from operations inside the token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, PrivateKey, PublicKey, SecretKey, Session
from pkcs11.types import EncryptMixin, SignMixin

from keyplan.crypto.fingerprint import (
    CHECK_BLOCK,
    FINGERPRINT_MESSAGE,
    hmac_fingerprint,
    kcv_fingerprint,
    spki_fingerprint,
)

_CURVE_OIDS: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
}
CURVE_PARAMS: dict[str, bytes] = {"P-256": bytes.fromhex("06082a8648ce3d030107"), "P-384": bytes.fromhex("06052b81040022")}


@dataclass(frozen=True)
class TokenHandle:
    label: str
    object_id: bytes

    @classmethod
    def new(cls, prefix: str, address: str, version: int) -> TokenHandle:
        return cls(label=f"{prefix}:{address}:v{version}", object_id=secrets.token_bytes(8))

    @classmethod
    def parse(cls, handle: str) -> TokenHandle | None:
        label, sep, id_hex = handle.rpartition("#")
        if not sep or not label:
            return None
        try:
            return cls(label=label, object_id=bytes.fromhex(id_hex))
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.label}#{self.object_id.hex()}"


def session_aes_key(session: Session, capabilities: MechanismFlag) -> SecretKey:
    """An AES-256 key that lives only in this session (a probe's test key, a wrap's transport
    key): sensitive, and extractable only wrapped."""
    return session.generate_key(
        KeyType.AES,
        256,
        store=False,
        capabilities=capabilities,
        template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True},
    )


def find_object(session: Session, handle: TokenHandle, object_class: ObjectClass) -> SecretKey | PrivateKey | PublicKey | None:
    template = {Attribute.LABEL: handle.label, Attribute.ID: handle.object_id, Attribute.CLASS: object_class}
    for found in session.get_objects(template):
        if isinstance(found, (SecretKey, PrivateKey, PublicKey)):
            return found
    return None


def find_target(session: Session, handle: TokenHandle) -> SecretKey | PrivateKey | None:
    """The secret or private key a handle names, or None when it is not (or no longer) in the token."""
    secret = find_object(session, handle, ObjectClass.SECRET_KEY)
    if isinstance(secret, SecretKey):
        return secret
    private = find_object(session, handle, ObjectClass.PRIVATE_KEY)
    return private if isinstance(private, PrivateKey) else None


def public_key_spki(public_key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER built from the public key object's attributes."""
    if public_key.key_type == KeyType.RSA:
        modulus = int.from_bytes(public_key[Attribute.MODULUS], "big")
        exponent = int.from_bytes(public_key[Attribute.PUBLIC_EXPONENT], "big")
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    elif public_key.key_type == KeyType.EC:
        curve = _CURVE_OIDS.get(bytes(public_key[Attribute.EC_PARAMS]))
        if curve is None:
            raise ValueError("the token's EC key is on a curve keyplan does not know")
        key = ec.EllipticCurvePublicKey.from_encoded_point(curve, _ec_point(bytes(public_key[Attribute.EC_POINT])))
    else:
        raise ValueError(f"keyplan does not fingerprint {public_key.key_type!r} keys")
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _ec_point(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point; some tokens store the bare point."""
    if len(value) >= 2 and value[0] == 0x04 and value[1] < 0x80 and value[1] == len(value) - 2:
        return value[2:]
    if len(value) >= 3 and value[0] == 0x04 and value[1] == 0x81 and value[2] == len(value) - 3:
        return value[3:]
    return value


def secret_fingerprint(key: SecretKey) -> str:
    """AES: the key check value (ECB over the X9.24 check block, truncated); generic secrets:
    HMAC-SHA256 of the fingerprint message, truncated. Both run inside the token; the key never
    leaves it (see keyplan.crypto.fingerprint)."""
    if key.key_type == KeyType.AES:
        # keyplan creates AES keys with ENCRYPT and generic secrets with SIGN for exactly this.
        check_value = cast(EncryptMixin, key).encrypt(CHECK_BLOCK, mechanism=Mechanism.AES_ECB)
        assert isinstance(check_value, bytes)  # one block in, one block out (no streaming)
        return kcv_fingerprint(check_value)
    return hmac_fingerprint(cast(SignMixin, key).sign(FINGERPRINT_MESSAGE, mechanism=Mechanism.SHA256_HMAC))


def public_fingerprint(public_key: PublicKey) -> str:
    return spki_fingerprint(public_key_spki(public_key))
