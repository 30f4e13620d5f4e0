"""Using imported material, so tests can prove what the vault holds: encrypt/decrypt with A256GCM
for oct keys and RSA-OAEP / RSA-OAEP-256 for RSA keys; wrapKey/unwrapKey with AES key wrap for oct
keys and RSA-OAEP / RSA-OAEP-256 / RSA1_5 for RSA keys; sign."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from providers.azure.emulator.bodies import (
    KeyOperationBody,
)
from providers.azure.emulator.core import VaultCore
from providers.azure.emulator.documents import StoredVersion
from providers.azure.emulator.errors import KeyVaultError, bad_parameter
from providers.azure.emulator.jwk import b64url, stored_rsa_key
from providers.azure.emulator.limits import ES_CURVES, SIGN_HASHES
from providers.emulation import Response
from providers.emulation.material import curve_name

_RSA_ALGORITHMS = {
    "encrypt": ("RSA-OAEP", "RSA-OAEP-256"),
    "decrypt": ("RSA-OAEP", "RSA-OAEP-256"),
    "wrapKey": ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"),
    "unwrapKey": ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"),
}
_REFUSALS = {
    ("encrypt", "RSA"): "The plaintext is too long for this key and algorithm.",
    ("decrypt", "RSA"): "The ciphertext could not be decrypted with this key.",
    ("wrapKey", "RSA"): "The key to wrap is too long for this key and algorithm.",
    ("unwrapKey", "RSA"): "The wrapped key could not be unwrapped with this key.",
    ("wrapKey", "oct"): "The key to wrap must be at least 16 bytes long and a multiple of 8 bytes.",
    ("unwrapKey", "oct"): "The wrapped key could not be unwrapped with this key.",
}


class CryptoRoutes(VaultCore):
    def _operation_key(self, name: str, version: str, operation: str) -> StoredVersion:
        stored = self._version(self._live_key(name), version)
        if operation not in stored.key_ops:
            raise KeyVaultError(
                403, "Forbidden", f"Operation {operation} is not permitted on this key.", "KeyOperationForbidden"
            )
        self._check_usable(stored, operation)
        return stored

    def encrypt(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        return self._transform(name, version, body, base, "encrypt")

    def decrypt(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        return self._transform(name, version, body, base, "decrypt")

    def wrap_key(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        return self._transform(name, version, body, base, "wrapKey")

    def unwrap_key(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        return self._transform(name, version, body, base, "unwrapKey")

    def _transform(self, name: str, version: str, body: KeyOperationBody, base: str, operation: str) -> Response:
        """encrypt, decrypt, wrapKey and unwrapKey: the same key checks and answer; with an oct key
        AES-GCM (encrypt, decrypt) or AES key wrap (wrapKey, unwrapKey), with an RSA key RSA-OAEP
        (and RSA1_5 for key wrapping), the public half one way and the private half the other."""
        stored = self._operation_key(name, version, operation)
        value = body.value
        if stored.kty.startswith("oct"):
            secret = base64.b64decode(stored.private)
            if operation in ("wrapKey", "unwrapKey"):
                result = {"value": b64url(self._aes_key_wrap(body.alg, secret, value, operation == "wrapKey"))}
            elif stored.kty == "oct-HSM" and body.alg in ("A128GCM", "A192GCM", "A256GCM"):
                result = self._aes_gcm(body, secret, value, operation == "encrypt")
            else:
                raise bad_parameter(f"The algorithm {body.alg} is not supported for a {stored.kty} key.")
        elif stored.kty.startswith("RSA") and body.alg in _RSA_ALGORITHMS[operation]:
            result = {"value": b64url(self._rsa(stored, body.alg, value, operation))}
        else:
            raise bad_parameter(f"The algorithm {body.alg} is not supported for a {stored.kty} key.")
        return Response.json({"kid": f"{base}/keys/{stored.name}/{stored.version}", **result})

    def _aes_gcm(self, body: KeyOperationBody, secret: bytes, value: bytes, seal: bool) -> dict[str, str]:
        self._check_gcm_size(body.alg, secret)
        aad = body.aad or None
        if seal:
            iv = os.urandom(12)
            sealed = AESGCM(secret).encrypt(iv, value, aad)
            result = {"value": b64url(sealed[:-16]), "iv": b64url(iv), "tag": b64url(sealed[-16:])}
            return {**result, "aad": b64url(body.aad)} if body.aad else result
        if not body.iv or not body.tag:
            raise bad_parameter("AES-GCM decryption needs iv and tag.")
        try:
            plaintext = AESGCM(secret).decrypt(body.iv, value + body.tag, aad)
        except InvalidTag:
            raise bad_parameter("The ciphertext could not be decrypted: the authentication tag is invalid.") from None
        return {"value": b64url(plaintext)}

    def _aes_key_wrap(self, alg: str, secret: bytes, value: bytes, wrap: bool) -> bytes:
        self._check_key_wrap(alg, secret)
        padded = alg == "CKM_AES_KEY_WRAP_PAD"
        try:
            if wrap:
                return keywrap.aes_key_wrap_with_padding(secret, value) if padded else keywrap.aes_key_wrap(secret, value)
            return keywrap.aes_key_unwrap_with_padding(secret, value) if padded else keywrap.aes_key_unwrap(secret, value)
        except (keywrap.InvalidUnwrap, ValueError):
            raise bad_parameter(_REFUSALS[("wrapKey" if wrap else "unwrapKey", "oct")]) from None

    def _rsa(self, stored: StoredVersion, alg: str, value: bytes, operation: str) -> bytes:
        private = stored_rsa_key(stored.private)
        pad = padding.PKCS1v15() if alg == "RSA1_5" else self._oaep(alg)
        try:
            if operation in ("encrypt", "wrapKey"):
                return private.public_key().encrypt(value, pad)
            return private.decrypt(value, pad)
        except ValueError:
            raise bad_parameter(_REFUSALS[(operation, "RSA")]) from None

    def sign(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        """JWA RS*/PS* with RSA keys, ES256/ES384 with EC keys of the matching curve; the
        request carries the digest, and ES signatures are r || s."""
        stored = self._operation_key(name, version, "sign")
        digest = body.value
        kid = f"{base}/keys/{stored.name}/{stored.version}"
        alg = body.alg
        chosen = SIGN_HASHES.get(alg[2:])
        private = serialization.load_der_private_key(base64.b64decode(stored.private), password=None)
        if chosen is None:
            raise bad_parameter(f"The algorithm {alg} is not supported for a {stored.kty} key.")
        if len(digest) != chosen.digest_size:
            raise bad_parameter(f"The digest is not a {chosen.name} digest, as {alg} needs.")
        prehashed = utils.Prehashed(chosen)
        if alg[:2] in ("RS", "PS") and isinstance(private, rsa.RSAPrivateKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size) if alg[:2] == "PS" else padding.PKCS1v15()
            )
            signature = private.sign(digest, pad, prehashed)
        elif alg[:2] == "ES" and isinstance(private, ec.EllipticCurvePrivateKey) and ES_CURVES.get(alg) == curve_name(private.curve):
            r, s = utils.decode_dss_signature(private.sign(digest, ec.ECDSA(prehashed)))
            size = (private.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            raise bad_parameter(f"The algorithm {alg} is not supported for a {stored.kty} key.")
        return Response.json({"kid": kid, "value": b64url(signature)})

    @staticmethod
    def _check_key_wrap(alg: str, secret: bytes) -> None:
        sizes = {"A128KW": 128, "A192KW": 192, "A256KW": 256}
        if alg in ("CKM_AES_KEY_WRAP", "CKM_AES_KEY_WRAP_PAD"):
            return
        if alg not in sizes:
            raise bad_parameter(f"The algorithm {alg} is not supported for an oct key.")
        if len(secret) * 8 != sizes[alg]:
            raise bad_parameter(f"The algorithm {alg} does not match this key's size.")

    @staticmethod
    def _check_gcm_size(alg: str, secret: bytes) -> None:
        if len(secret) * 8 != int(alg[1:4]):
            raise bad_parameter(f"The algorithm {alg} does not match this key's size.")

    @staticmethod
    def _oaep(alg: str) -> padding.OAEP:
        digest: hashes.HashAlgorithm = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()
        return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
