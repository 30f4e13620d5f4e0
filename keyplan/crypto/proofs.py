"""Public-key arithmetic for proofs of possession: comparing two public keys, checking a cloud's
signature under the source's public key, encrypting a challenge to it. Nothing here sees
private material; providers use these on what a cloud and a source answered."""

from __future__ import annotations

import hmac
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384,
    "SHA-512": hashes.SHA512,
}


class SignatureScheme(StrEnum):
    RSA_PSS_SHA256 = "rsa-pss-sha256"  # salt length = digest length
    RSA_PSS_SHA384 = "rsa-pss-sha384"
    RSA_PSS_SHA512 = "rsa-pss-sha512"
    RSA_PKCS1_SHA256 = "rsa-pkcs1-sha256"
    ECDSA_SHA256 = "ecdsa-sha256"  # DER-encoded (r, s)
    ECDSA_SHA384 = "ecdsa-sha384"

    @property
    def hash(self) -> hashes.HashAlgorithm:
        return _HASHES["SHA-" + self.value[-3:]]()


def canonical_spki(der_or_pem: bytes) -> bytes:
    """DER SubjectPublicKeyInfo of a public key given as DER or PEM; ValueError if it is none."""
    key = (
        serialization.load_pem_public_key(der_or_pem)
        if der_or_pem.lstrip().startswith(b"-----BEGIN")
        else serialization.load_der_public_key(der_or_pem)
    )
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public_key(cloud: bytes, source: bytes) -> bool:
    """Whether two encodings name the same public key (ValueError when the cloud's is not one)."""
    return hmac.compare_digest(canonical_spki(cloud), canonical_spki(source))


def signature_verifies(spki: bytes, scheme: SignatureScheme, message: bytes, signature: bytes, *, prehashed: bool = False) -> bool:
    """Whether `signature` over `message` (or over the digest `message`, when `prehashed`)
    verifies under the public key `spki`."""
    key = serialization.load_der_public_key(spki)
    chosen: hashes.HashAlgorithm | utils.Prehashed = utils.Prehashed(scheme.hash) if prehashed else scheme.hash
    try:
        if scheme.value.startswith("ecdsa"):
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            key.verify(signature, message, ec.ECDSA(chosen))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(scheme.hash), salt_length=scheme.hash.digest_size)
                if "pss" in scheme.value
                else padding.PKCS1v15()
            )
            key.verify(signature, message, pad, chosen)
    except InvalidSignature:
        return False
    return True


def oaep_encrypt(spki: bytes, plaintext: bytes, hash_name: str = "SHA-256") -> bytes:
    """RSA-OAEP (MGF1 with the same hash, no label) of `plaintext` to the public key `spki`."""
    key = serialization.load_der_public_key(spki)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    digest = _HASHES[hash_name]()
    return key.encrypt(plaintext, padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None))


def sign_message(private_key: Any, scheme: SignatureScheme, message: bytes) -> bytes:
    """`message` signed under `scheme` by a `cryptography` RSA or EC private key (ECDSA: DER).
    For key sources that hold material in memory; a token signs inside itself."""
    chosen = scheme.hash
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and scheme.value.startswith("ecdsa"):
        return bytes(private_key.sign(message, ec.ECDSA(chosen)))
    if isinstance(private_key, rsa.RSAPrivateKey) and scheme.value.startswith("rsa-pss"):
        return bytes(private_key.sign(message, padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size), chosen))
    if isinstance(private_key, rsa.RSAPrivateKey) and scheme.value.startswith("rsa-pkcs1"):
        return bytes(private_key.sign(message, padding.PKCS1v15(), chosen))
    raise ValueError(f"{scheme.value} does not sign with this kind of key")
