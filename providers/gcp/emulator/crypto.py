"""Using imported material, so tests can prove what Cloud KMS holds: encrypt/decrypt, rawEncrypt/
rawDecrypt, macSign/macVerify, asymmetricSign, asymmetricDecrypt and getPublicKey.

Raw encryption (RAW_ENCRYPT_DECRYPT keys) produces standard ciphertexts, as Google documents: for
AES-GCM the service picks a 12-byte IV and appends the 16-byte tag to the ciphertext, and an IV
from the caller is refused; for AES-CBC (no padding: the plaintext must be whole blocks) and
AES-CTR the caller may give a 16-byte IV, else the service picks one. Additional authenticated
data is accepted with AES-GCM only. Plaintext is at most 64 KiB, and at most 8 KiB together with
the AAD for HSM keys."""

from __future__ import annotations

import base64
import hmac
import os
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyplan.algorithms import MaterialKind
from providers.emulation.app import Request, Response
from providers.gcp.emulator.bodies import (
    AsymmetricDecryptBody,
    AsymmetricSignBody,
    DecryptBody,
    EncryptBody,
    MacSignBody,
    MacVerifyBody,
    RawDecryptBody,
    RawEncryptBody,
    parse_body,
)
from providers.gcp.emulator.core import GcpCore
from providers.gcp.emulator.errors import invalid, precondition
from providers.gcp.emulator.protos import (
    ALGORITHM,
    ALGORITHM_RULES,
    PROTECTION_LEVEL,
)
from providers.gcp.emulator.wire import VERSIONS, b64


class CryptoRoutes(GcpCore):
    def _usable(self, name: str) -> tuple[dict[str, Any], bytes]:
        doc = self._version(name)
        if doc["state"] != "ENABLED" or not doc.get("_material"):
            raise precondition(f"{name} is not enabled, current state is: {doc['state']}.")
        return doc, base64.b64decode(doc["_material"])

    def _encrypt(self, request: Request, name: str) -> Response:
        body = parse_body(EncryptBody, self._body(request))
        key_name, _, version_id = name.partition("/cryptoKeyVersions/")
        key = self._key(key_name)
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise invalid(f"{key_name} has purpose {key['purpose']}; Encrypt needs ENCRYPT_DECRYPT.")
        version_id = version_id or key.get("_primary") or ""
        if not version_id:
            raise precondition(f"{key_name} has no primary version.")
        version, material = self._usable(f"{key_name}/cryptoKeyVersions/{version_id}")
        if len(body.plaintext) > 64 * 1024:
            raise invalid("The plaintext must be at most 65536 bytes.")
        nonce = os.urandom(12)
        sealed = AESGCM(material).encrypt(nonce, body.plaintext, body.additional_authenticated_data)
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
        body = parse_body(DecryptBody, self._body(request))
        key = self._key(key_name)
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise invalid(f"{key_name} has purpose {key['purpose']}; Decrypt needs ENCRYPT_DECRYPT.")
        ciphertext, aad = body.ciphertext, body.additional_authenticated_data
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

    def _raw_version(self, name: str, operation: str) -> tuple[dict[str, Any], bytes, str]:
        key_name = name.partition("/cryptoKeyVersions/")[0]
        key = self._key(key_name)
        if key["purpose"] != "RAW_ENCRYPT_DECRYPT":
            raise invalid(f"{key_name} has purpose {key['purpose']}; {operation} needs RAW_ENCRYPT_DECRYPT.")
        version, material = self._usable(name)
        return version, material, version["algorithm"].rsplit("_", 1)[-1]  # GCM, CBC or CTR

    @staticmethod
    def _raw_sizes(version: dict[str, Any], data: bytes, aad: bytes, mode: str) -> None:
        if len(data) > 64 * 1024:
            raise invalid("The plaintext must be at most 65536 bytes.")
        if aad and mode != "GCM":
            raise invalid(f"additional_authenticated_data is only accepted by AES-GCM, not {version['algorithm']}.")
        if version["protectionLevel"] == "HSM" and len(data) + len(aad) > 8 * 1024:
            raise invalid("For HSM keys, plaintext and additional_authenticated_data together must be at most 8192 bytes.")

    def _raw_encrypt(self, request: Request, name: str) -> Response:
        body = parse_body(RawEncryptBody, self._body(request))
        version, material, mode = self._raw_version(name, "RawEncrypt")
        plaintext, aad, iv = body.plaintext, body.additional_authenticated_data, body.initialization_vector
        self._raw_sizes(version, plaintext, aad, mode)
        tag_length = 0
        if mode == "GCM":
            if iv:
                raise invalid("initialization_vector is not accepted for AES-GCM: the service generates it.")
            iv = os.urandom(12)
            ciphertext = AESGCM(material).encrypt(iv, plaintext, aad)
            tag_length = 16
        else:
            if iv and len(iv) != 16:
                raise invalid("initialization_vector must be 16 bytes for AES-CBC and AES-CTR.")
            if mode == "CBC" and len(plaintext) % 16:
                raise invalid("AES-CBC plaintext must be a multiple of 16 bytes; pad it before encrypting.")
            iv = iv or os.urandom(16)
            encryptor = Cipher(algorithms.AES(material), modes.CBC(iv) if mode == "CBC" else modes.CTR(iv)).encryptor()
            ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return self._ok(
            request,
            {
                "ciphertext": b64(ciphertext),
                "initializationVector": b64(iv),
                "tagLength": tag_length,
                "verifiedPlaintextCrc32c": False,
                "verifiedAdditionalAuthenticatedDataCrc32c": False,
                "verifiedInitializationVectorCrc32c": False,
                "name": name,
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _raw_decrypt(self, request: Request, name: str) -> Response:
        body = parse_body(RawDecryptBody, self._body(request))
        version, material, mode = self._raw_version(name, "RawDecrypt")
        ciphertext, aad, iv = body.ciphertext, body.additional_authenticated_data, body.initialization_vector
        tag_length = body.tag_length
        if not ciphertext:
            raise invalid("ciphertext is required.")
        self._raw_sizes(version, ciphertext, aad, mode)
        if mode == "GCM":
            if len(iv) != 12:
                raise invalid("initialization_vector must be the 12 bytes RawEncrypt returned for AES-GCM.")
            if tag_length not in (0, 16):
                raise invalid("tag_length must be 16 for AES-GCM (or 0 for the default).")
            try:
                plaintext = AESGCM(material).decrypt(iv, ciphertext, aad)
            except Exception:
                raise invalid("Decryption failed: the ciphertext is invalid.") from None
        else:
            if len(iv) != 16:
                raise invalid("initialization_vector must be 16 bytes for AES-CBC and AES-CTR.")
            if tag_length:
                raise invalid(f"tag_length must be 0 for {version['algorithm']}.")
            if mode == "CBC" and len(ciphertext) % 16:
                raise invalid("AES-CBC ciphertext must be a multiple of 16 bytes.")
            decryptor = Cipher(algorithms.AES(material), modes.CBC(iv) if mode == "CBC" else modes.CTR(iv)).decryptor()
            plaintext = decryptor.update(ciphertext) + decryptor.finalize()
        return self._ok(
            request,
            {
                "plaintext": b64(plaintext),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
                "verifiedCiphertextCrc32c": False,
                "verifiedAdditionalAuthenticatedDataCrc32c": False,
                "verifiedInitializationVectorCrc32c": False,
            },
        )

    def _mac(self, name: str, data: bytes) -> tuple[dict[str, Any], bytes]:
        version, material = self._usable(name)
        if ALGORITHM_RULES[version["algorithm"]].kind is not MaterialKind.HMAC:
            raise invalid(f"{name} is not a MAC key version.")
        digest = version["algorithm"].removeprefix("HMAC_").lower()
        return version, hmac.new(material, data, digest).digest()

    def _mac_sign(self, request: Request, name: str) -> Response:
        version, mac = self._mac(name, parse_body(MacSignBody, self._body(request)).data)
        return self._ok(
            request,
            {
                "name": name,
                "mac": b64(mac),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _mac_verify(self, request: Request, name: str) -> Response:
        body = parse_body(MacVerifyBody, self._body(request))
        version, mac = self._mac(name, body.data)
        success = hmac.compare_digest(mac, body.mac)
        return self._ok(
            request,
            {
                "name": name,
                "success": success,
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _asymmetric_sign(self, request: Request, name: str) -> Response:
        body = parse_body(AsymmetricSignBody, self._body(request))
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
        given = getattr(body.digest, hash_name) if body.digest is not None else None
        if given:
            digest = given
        elif body.data is not None:
            hasher = hashes.Hash(chosen)
            hasher.update(body.data)
            digest = hasher.finalize()
        else:
            raise invalid(f"AsymmetricSign of {algorithm} needs digest.{hash_name} or data.")
        if len(digest) != chosen.digest_size:
            raise invalid(f"The digest must be {chosen.digest_size} bytes for {algorithm}.")
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

    def _asymmetric_decrypt(self, request: Request, name: str) -> Response:
        """RSA-OAEP with the hash the algorithm names (MGF1 with the same hash, no label)."""
        body = parse_body(AsymmetricDecryptBody, self._body(request))
        version, material = self._usable(name)
        algorithm = version["algorithm"]
        if ALGORITHM_RULES[algorithm].purpose != "ASYMMETRIC_DECRYPT":
            raise invalid(f"{name} cannot decrypt (algorithm {algorithm}); AsymmetricDecrypt needs ASYMMETRIC_DECRYPT.")
        ciphertext = body.ciphertext
        chosen: hashes.HashAlgorithm = (
            hashes.SHA512() if algorithm.endswith("SHA512") else hashes.SHA1() if algorithm.endswith("SHA1") else hashes.SHA256()
        )
        private = serialization.load_der_private_key(material, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        try:
            plaintext = private.decrypt(ciphertext, padding.OAEP(mgf=padding.MGF1(chosen), algorithm=chosen, label=None))
        except ValueError:
            raise invalid("Decryption failed: the ciphertext is invalid.") from None
        return self._ok(
            request,
            {
                "plaintext": b64(plaintext),
                "verifiedCiphertextCrc32c": False,
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
