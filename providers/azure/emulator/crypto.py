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
from providers.azure.emulator.jwk import b64url, decode_b64_any, stored_rsa_key
from providers.azure.emulator.limits import ES_CURVES, SIGN_HASHES
from providers.emulation import Response
from providers.emulation.material import curve_name


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
        stored = self._operation_key(name, version, "encrypt")
        plaintext = decode_b64_any(body.value)
        kid = f"{base}/keys/{stored.name}/{stored.version}"
        secret = base64.b64decode(stored.private)
        if stored.kty == "oct-HSM" and body.alg in ("A128GCM", "A192GCM", "A256GCM"):
            self._check_gcm_size(body.alg, secret)
            iv = os.urandom(12)
            aad = decode_b64_any(body.aad) if body.aad else None
            sealed = AESGCM(secret).encrypt(iv, plaintext, aad)
            result = {"kid": kid, "value": b64url(sealed[:-16]), "iv": b64url(iv), "tag": b64url(sealed[-16:])}
            if body.aad:
                result["aad"] = body.aad
            return Response.json(result)
        if stored.kty.startswith("RSA") and body.alg in ("RSA-OAEP", "RSA-OAEP-256"):
            private = stored_rsa_key(stored.private)
            try:
                ciphertext = private.public_key().encrypt(plaintext, self._oaep(body.alg))
            except ValueError:
                raise bad_parameter("The plaintext is too long for this key and algorithm.") from None
            return Response.json({"kid": kid, "value": b64url(ciphertext)})
        raise bad_parameter(f"The algorithm {body.alg} is not supported for a {stored.kty} key.")

    def decrypt(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        stored = self._operation_key(name, version, "decrypt")
        ciphertext = decode_b64_any(body.value)
        kid = f"{base}/keys/{stored.name}/{stored.version}"
        secret = base64.b64decode(stored.private)
        if stored.kty == "oct-HSM" and body.alg in ("A128GCM", "A192GCM", "A256GCM"):
            self._check_gcm_size(body.alg, secret)
            if not body.iv or not body.tag:
                raise bad_parameter("AES-GCM decryption needs iv and tag.")
            aad = decode_b64_any(body.aad) if body.aad else None
            try:
                plaintext = AESGCM(secret).decrypt(decode_b64_any(body.iv), ciphertext + decode_b64_any(body.tag), aad)
            except InvalidTag:
                raise bad_parameter(
                    "The ciphertext could not be decrypted: the authentication tag is invalid."
                ) from None
            return Response.json({"kid": kid, "value": b64url(plaintext)})
        if stored.kty.startswith("RSA") and body.alg in ("RSA-OAEP", "RSA-OAEP-256"):
            private = stored_rsa_key(stored.private)
            try:
                plaintext = private.decrypt(ciphertext, self._oaep(body.alg))
            except ValueError:
                raise bad_parameter("The ciphertext could not be decrypted with this key.") from None
            return Response.json({"kid": kid, "value": b64url(plaintext)})
        raise bad_parameter(f"The algorithm {body.alg} is not supported for a {stored.kty} key.")

    def sign(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        """JWA RS*/PS* with RSA keys, ES256/ES384 with EC keys of the matching curve; the
        request carries the digest, and ES signatures are r || s."""
        stored = self._operation_key(name, version, "sign")
        digest = decode_b64_any(body.value)
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

    def wrap_key(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        stored = self._operation_key(name, version, "wrapKey")
        plaintext = decode_b64_any(body.value)
        kid = f"{base}/keys/{stored.name}/{stored.version}"
        if stored.kty.startswith("oct"):
            secret = base64.b64decode(stored.private)
            self._check_key_wrap(body.alg, secret)
            try:
                if body.alg == "CKM_AES_KEY_WRAP_PAD":
                    wrapped = keywrap.aes_key_wrap_with_padding(secret, plaintext)
                else:
                    wrapped = keywrap.aes_key_wrap(secret, plaintext)
            except ValueError:
                raise bad_parameter("The key to wrap must be at least 16 bytes long and a multiple of 8 bytes.") from None
            return Response.json({"kid": kid, "value": b64url(wrapped)})
        if stored.kty.startswith("RSA") and body.alg in ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"):
            public = stored_rsa_key(stored.private).public_key()
            pad = padding.PKCS1v15() if body.alg == "RSA1_5" else self._oaep(body.alg)
            try:
                wrapped = public.encrypt(plaintext, pad)
            except ValueError:
                raise bad_parameter("The key to wrap is too long for this key and algorithm.") from None
            return Response.json({"kid": kid, "value": b64url(wrapped)})
        raise bad_parameter(f"The algorithm {body.alg} is not supported for a {stored.kty} key.")

    def unwrap_key(self, name: str, version: str, body: KeyOperationBody, base: str) -> Response:
        stored = self._operation_key(name, version, "unwrapKey")
        wrapped = decode_b64_any(body.value)
        kid = f"{base}/keys/{stored.name}/{stored.version}"
        if stored.kty.startswith("oct"):
            secret = base64.b64decode(stored.private)
            self._check_key_wrap(body.alg, secret)
            try:
                if body.alg == "CKM_AES_KEY_WRAP_PAD":
                    plaintext = keywrap.aes_key_unwrap_with_padding(secret, wrapped)
                else:
                    plaintext = keywrap.aes_key_unwrap(secret, wrapped)
            except (keywrap.InvalidUnwrap, ValueError):
                raise bad_parameter("The wrapped key could not be unwrapped with this key.") from None
            return Response.json({"kid": kid, "value": b64url(plaintext)})
        if stored.kty.startswith("RSA") and body.alg in ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"):
            private = stored_rsa_key(stored.private)
            pad = padding.PKCS1v15() if body.alg == "RSA1_5" else self._oaep(body.alg)
            try:
                plaintext = private.decrypt(wrapped, pad)
            except ValueError:
                raise bad_parameter("The wrapped key could not be unwrapped with this key.") from None
            return Response.json({"kid": kid, "value": b64url(plaintext)})
        raise bad_parameter(f"The algorithm {body.alg} is not supported for a {stored.kty} key.")

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
