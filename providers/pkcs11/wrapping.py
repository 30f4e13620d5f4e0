"""Wrapping inside the token: the cloud's RSA public key enters the token as a session object
(or is found as a TRUSTED token object), and the target key leaves it only as ciphertext.

Hybrid methods use the token's CKM_RSA_AES_KEY_WRAP when it has one. Otherwise the same bytes
are produced in two steps: a fresh AES-256 session key wraps the target with
CKM_AES_KEY_WRAP_PAD (RFC 5649), RSA-OAEP wraps that AES key under the cloud's key, and the two
are concatenated RSA part first, which is what CKM_RSA_AES_KEY_WRAP itself outputs.
"""

from __future__ import annotations

from typing import Any, cast

from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass, PrivateKey, PublicKey, SecretKey, Session
from pkcs11.types import Key, WrapMixin
from pkcs11.util import biginteger
from pkcs11.util.rsa import decode_rsa_public_key

from keyplan.crypto.wrap import WrapMethod, load_wrapping_key
from providers.pkcs11.mechanisms import RSA_AES_KEY_WRAP, RsaAesKeyWrapParameter, oaep_parameters
from providers.pkcs11.objects import session_aes_key


def import_wrapping_key(session: Session, spki_der: bytes) -> PublicKey:
    """The cloud's RSA public key as a session object that can wrap; destroy it after use.
    Raises ValueError when `spki_der` is not an RSA SubjectPublicKeyInfo."""
    public_key = load_wrapping_key(spki_der)
    # decode_rsa_public_key wants PKCS#1 RSAPublicKey, not the SubjectPublicKeyInfo clouds hand out.
    attributes = decode_rsa_public_key(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    )
    attributes.update(
        {
            Attribute.TOKEN: False,
            Attribute.WRAP: True,
            Attribute.ENCRYPT: False,
            Attribute.VERIFY: False,
            Attribute.LABEL: "keyplan cloud wrapping key (session)",
        }
    )
    created = session.create_object(attributes)
    assert isinstance(created, PublicKey)
    return created


def find_trusted_wrapping_key(session: Session, spki_der: bytes) -> PublicKey | None:
    """The token object the security officer created and marked TRUSTED for this public key."""
    numbers = load_wrapping_key(spki_der).public_numbers()
    template = {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: KeyType.RSA,
        Attribute.TRUSTED: True,
        Attribute.MODULUS: biginteger(numbers.n),
        Attribute.PUBLIC_EXPONENT: biginteger(numbers.e),
    }
    for found in session.get_objects(template):
        if isinstance(found, PublicKey):
            return found
    return None


def wrap_in_token(
    session: Session,
    wrapping_key: PublicKey,
    target: SecretKey | PrivateKey,
    method: WrapMethod,
    *,
    native_hybrid: bool,
) -> bytes:
    if not method.hybrid:
        return _wrap_key(wrapping_key, target, Mechanism.RSA_PKCS_OAEP, oaep_parameters(method))
    if native_hybrid:
        parameter = RsaAesKeyWrapParameter.for_method(method)
        return _wrap_key(wrapping_key, target, RSA_AES_KEY_WRAP, parameter.raw)
    transport = session_aes_key(session, MechanismFlag.WRAP)
    try:
        wrapped_target = _wrap_key(transport, target, Mechanism.AES_KEY_WRAP_PAD, None)
        wrapped_transport = _wrap_key(wrapping_key, transport, Mechanism.RSA_PKCS_OAEP, oaep_parameters(method))
    finally:
        transport.destroy()
    return wrapped_transport + wrapped_target


def _wrap_key(wrapping_key: Key, target: Key, mechanism: Mechanism, parameter: Any) -> bytes:
    # Every wrapping key here is created with WRAP=True, which gives it python-pkcs11's wrap_key.
    # `parameter` is python-pkcs11's per-mechanism form: a tuple for OAEP, raw bytes otherwise.
    return bytes(cast(WrapMixin, wrapping_key).wrap_key(target, mechanism=mechanism, mechanism_param=parameter))
