"""The token's side of proofs of possession: each runs inside the token on the key object the
source found, and the key never leaves it. A MAC (C_Sign with the algorithm's HMAC mechanism),
AES-GCM (C_Encrypt with CKM_AES_GCM), a signature over a digest (CKM_ECDSA, CKM_RSA_PKCS_PSS, or
CKM_RSA_PKCS over a DigestInfo) and AES key wrap (CKM_AES_KEY_WRAP, or RFC 3394 over
CKM_AES_ECB blocks where the token offers that mechanism only to C_WrapKey)."""

from __future__ import annotations

from typing import cast

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import MGF, Mechanism, PrivateKey, SecretKey
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams
from pkcs11.types import EncryptMixin, SignMixin

from keyplan.crypto.proofs import SignatureScheme
from providers.pkcs11.keywrap import key_wrap_from_blocks

HMAC_MECHANISMS = {
    "HMAC_SHA224": Mechanism.SHA224_HMAC,
    "HMAC_SHA256": Mechanism.SHA256_HMAC,
    "HMAC_SHA384": Mechanism.SHA384_HMAC,
    "HMAC_SHA512": Mechanism.SHA512_HMAC,
}
_PSS = {
    "sha256": (MGF.SHA256, Mechanism.SHA256),
    "sha384": (MGF.SHA384, Mechanism.SHA384),
    "sha512": (MGF.SHA512, Mechanism.SHA512),
}
# DER DigestInfo prefixes (RFC 8017 §9.2 note 1): CKM_RSA_PKCS signs DigestInfo || digest.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def mac(key: SecretKey | PrivateKey, mechanism: Mechanism, message: bytes) -> bytes:
    return bytes(cast(SignMixin, key).sign(message, mechanism=mechanism))


def aes_gcm_encrypt(key: SecretKey | PrivateKey, iv: bytes, aad: bytes, plaintext: bytes) -> bytes:
    """The ciphertext followed by its 16-byte tag."""
    parameters = GCMParams(iv, aad or None, 128)
    return _one_shot(cast(EncryptMixin, key).encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=parameters))


def sign_digest(key: SecretKey | PrivateKey, scheme: SignatureScheme, digest: bytes) -> bytes:
    """A signature as the scheme's verifiers read it (ECDSA in DER, as r || s is what the token gives)."""
    signer = cast(SignMixin, key)
    if scheme.value.startswith("ecdsa"):
        raw = _one_shot(signer.sign(digest, mechanism=Mechanism.ECDSA))
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    if scheme.value.startswith("rsa-pss"):
        mgf, hash_mechanism = _PSS[scheme.hash.name]
        parameters = (hash_mechanism, mgf, len(digest))
        return _one_shot(signer.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=parameters))
    return _one_shot(signer.sign(_DIGEST_INFO[scheme.hash.name] + digest, mechanism=Mechanism.RSA_PKCS))


def aes_key_wrap(key: SecretKey | PrivateKey, plaintext: bytes) -> bytes:
    wrapper = cast(EncryptMixin, key)
    try:
        wrapped = wrapper.encrypt(plaintext, mechanism=Mechanism.AES_KEY_WRAP)
    except (p11.MechanismInvalid, p11.FunctionNotSupported):
        return key_wrap_from_blocks(lambda block: _one_shot(wrapper.encrypt(block, mechanism=Mechanism.AES_ECB)), plaintext)
    return _one_shot(wrapped)


def _one_shot(answer: object) -> bytes:
    """What a single-part C_Encrypt or C_Sign answered (python-pkcs11 types it as bytes or an iterator)."""
    assert isinstance(answer, bytes)
    return answer
