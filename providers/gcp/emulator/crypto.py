"""Using imported material, so tests can prove what Cloud KMS holds: encrypt/decrypt, macSign/
macVerify, asymmetricSign and getPublicKey."""

from __future__ import annotations

import base64
import hmac
import os
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyplan.algorithms import MaterialKind
from providers.emulation.app import Request, Response
from providers.gcp.emulator.core import GcpCore
from providers.gcp.emulator.errors import invalid, precondition
from providers.gcp.emulator.protos import (
    ALGORITHM,
    ALGORITHM_RULES,
    PROTECTION_LEVEL,
)
from providers.gcp.emulator.wire import (
    VERSIONS,
    b64,
    b64decode_field,
    body_member,
)


class CryptoRoutes(GcpCore):
    def _usable(self, name: str) -> tuple[dict[str, Any], bytes]:
        doc = self._version(name)
        if doc["state"] != "ENABLED" or not doc.get("_material"):
            raise precondition(f"{name} is not enabled, current state is: {doc['state']}.")
        return doc, base64.b64decode(doc["_material"])

    def _encrypt(self, request: Request, name: str) -> Response:
        body = self._body(request)
        key_name, _, version_id = name.partition("/cryptoKeyVersions/")
        key = self._key(key_name)
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise invalid(f"{key_name} has purpose {key['purpose']}; Encrypt needs ENCRYPT_DECRYPT.")
        version_id = version_id or key.get("_primary") or ""
        if not version_id:
            raise precondition(f"{key_name} has no primary version.")
        version, material = self._usable(f"{key_name}/cryptoKeyVersions/{version_id}")
        plaintext = b64decode_field(body_member(body, "plaintext") or "", "plaintext")
        if len(plaintext) > 64 * 1024:
            raise invalid("The plaintext must be at most 65536 bytes.")
        aad = b64decode_field(body_member(body, "additionalAuthenticatedData") or "", "additional_authenticated_data")
        nonce = os.urandom(12)
        sealed = AESGCM(material).encrypt(nonce, plaintext, aad)
        ciphertext = b"\x01" + int(version_id).to_bytes(4, "big") + nonce + sealed
        return self._ok(
            request,
            {
                "name": version["name"],
                "ciphertext": b64(ciphertext),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _decrypt(self, request: Request, key_name: str) -> Response:
        body = self._body(request)
        key = self._key(key_name)
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise invalid(f"{key_name} has purpose {key['purpose']}; Decrypt needs ENCRYPT_DECRYPT.")
        ciphertext = b64decode_field(body_member(body, "ciphertext") or "", "ciphertext")
        aad = b64decode_field(body_member(body, "additionalAuthenticatedData") or "", "additional_authenticated_data")
        if len(ciphertext) < 1 + 4 + 12 + 16 or ciphertext[0] != 1:
            raise invalid("Decryption failed: the ciphertext is invalid.")
        version_id = str(int.from_bytes(ciphertext[1:5], "big"))
        version_name = f"{key_name}/cryptoKeyVersions/{version_id}"
        if self.store.get(VERSIONS, version_name) is None:
            raise invalid("Decryption failed: the ciphertext is invalid.")
        version, material = self._usable(version_name)
        try:
            plaintext = AESGCM(material).decrypt(ciphertext[5:17], ciphertext[17:], aad)
        except Exception:
            raise invalid("Decryption failed: the ciphertext is invalid.") from None
        return self._ok(
            request,
            {
                "plaintext": b64(plaintext),
                "usedPrimary": version_id == key.get("_primary"),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _mac(self, name: str, data: bytes) -> tuple[dict[str, Any], bytes]:
        version, material = self._usable(name)
        if ALGORITHM_RULES[version["algorithm"]].kind is not MaterialKind.HMAC:
            raise invalid(f"{name} is not a MAC key version.")
        digest = version["algorithm"].removeprefix("HMAC_").lower()
        return version, hmac.new(material, data, digest).digest()

    def _mac_sign(self, request: Request, name: str) -> Response:
        data = b64decode_field(body_member(self._body(request), "data") or "", "data")
        version, mac = self._mac(name, data)
        return self._ok(
            request,
            {
                "name": name,
                "mac": b64(mac),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _mac_verify(self, request: Request, name: str) -> Response:
        body = self._body(request)
        version, mac = self._mac(name, b64decode_field(body_member(body, "data") or "", "data"))
        success = hmac.compare_digest(mac, b64decode_field(body_member(body, "mac") or "", "mac"))
        return self._ok(
            request,
            {
                "name": name,
                "success": success,
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _asymmetric_sign(self, request: Request, name: str) -> Response:
        body = self._body(request)
        version, material = self._usable(name)
        algorithm = version["algorithm"]
        if ALGORITHM_RULES[algorithm].purpose != "ASYMMETRIC_SIGN" or "RAW" in algorithm:
            raise invalid(f"{name} cannot sign digests (algorithm {algorithm}).")
        hash_name = "sha512" if algorithm.endswith("SHA512") else "sha384" if algorithm.endswith("SHA384") else "sha256"
        chosen: hashes.HashAlgorithm = {
            "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512(),
        }[hash_name]
        digest_field = body_member(body, "digest") or {}
        if isinstance(digest_field, dict) and digest_field.get(hash_name):
            digest = b64decode_field(digest_field[hash_name], "digest")
        elif body_member(body, "data") is not None:
            hasher = hashes.Hash(chosen)
            hasher.update(b64decode_field(body_member(body, "data"), "data"))
            digest = hasher.finalize()
        else:
            raise invalid(f"AsymmetricSign of {algorithm} needs digest.{hash_name} or data.")
        private = serialization.load_der_private_key(material, password=None)
        prehashed = utils.Prehashed(chosen)
        if isinstance(private, rsa.RSAPrivateKey):
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size)
                if "_PSS_" in algorithm
                else padding.PKCS1v15()
            )
            signature = private.sign(digest, pad, prehashed)
        elif isinstance(private, ec.EllipticCurvePrivateKey):
            signature = private.sign(digest, ec.ECDSA(prehashed))
        else:
            raise invalid(f"AsymmetricSign over a digest is not supported for {algorithm}.")
        return self._ok(
            request,
            {
                "name": name,
                "signature": b64(signature),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _get_public_key(self, request: Request, name: str) -> Response:
        version, material = self._usable(name)
        if ALGORITHM_RULES[version["algorithm"]].kind not in (MaterialKind.RSA, MaterialKind.EC):
            raise precondition(f"{name} is not an asymmetric key version.")
        private = serialization.load_der_private_key(material, password=None)
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ints = self._ints(request)
        return self._ok(
            request,
            {
                "name": name,
                "pem": pem.decode(),
                "algorithm": ALGORITHM.render(version["algorithm"], ints),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], ints),
            },
        )
