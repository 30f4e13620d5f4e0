"""Using imported material, so tests can prove what KMS holds: Encrypt/Decrypt (AES-GCM),
GenerateMac/VerifyMac, Sign/Verify and GetPublicKey."""

from __future__ import annotations

import base64
import hmac
import os
import uuid
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyplan.algorithms import MaterialKind
from providers.aws.emulator.bodies import (
    DecryptBody,
    EncryptBody,
    GenerateMacBody,
    KeyReference,
    SignBody,
    VerifyBody,
    VerifyMacBody,
)
from providers.aws.emulator.core import KmsCore
from providers.aws.emulator.errors import KmsError, validation
from providers.aws.emulator.wire import (
    CIPHERTEXT_MAGIC,
    HASHES,
    KEY_SPECS,
    context_bytes,
)


class CryptoRoutes(KmsCore):
    def _op_Encrypt(self, region: str, body: EncryptBody) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC)
            if (body.encryption_algorithm or "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
                raise KmsError(
                    "InvalidKeyUsageException",
                    f"{body.encryption_algorithm} is not valid for {key['arn']} ({key['spec']}).",
                )
            material = self._usable(key)
        nonce = os.urandom(12)
        header = CIPHERTEXT_MAGIC + uuid.UUID(key["id"]).bytes + bytes.fromhex(material["id"])
        aad = header + context_bytes(body.encryption_context)
        sealed = AESGCM(base64.b64decode(material["secret"])).encrypt(nonce, body.plaintext, aad)
        return {
            "CiphertextBlob": base64.b64encode(header + nonce + sealed).decode(),
            "KeyId": key["arn"],
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }

    def _op_Decrypt(self, region: str, body: DecryptBody) -> dict[str, Any]:
        blob = body.ciphertext_blob
        if (body.encryption_algorithm or "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
            return self._decrypt_asymmetric(region, body)
        invalid = KmsError("InvalidCiphertextException", "The ciphertext is invalid or was not produced by this KMS.")
        prefix = len(CIPHERTEXT_MAGIC)
        if len(blob) < prefix + 16 + 32 + 12 + 16 or not blob.startswith(CIPHERTEXT_MAGIC):
            raise invalid
        key_id = str(uuid.UUID(bytes=blob[prefix : prefix + 16]))
        material_id = blob[prefix + 16 : prefix + 48].hex()
        with self.store.transaction():
            key = self._load(region, key_id)
            if body.key_id and self._key_id_of(region, body.key_id) != key_id:
                raise KmsError(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify the key that encrypted the ciphertext.",
                )
            self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC)
            self._usable(key)
            material = next((m for m in key["materials"] if m["id"] == material_id), None)
        if material is None:
            raise invalid
        if material["secret"] is None:
            raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending import.")
        header, nonce, sealed = blob[: prefix + 48], blob[prefix + 48 : prefix + 60], blob[prefix + 60 :]
        try:
            plaintext = AESGCM(base64.b64decode(material["secret"])).decrypt(
                nonce, sealed, header + context_bytes(body.encryption_context)
            )
        except InvalidTag:
            raise invalid from None
        return {
            "Plaintext": base64.b64encode(plaintext).decode(),
            "KeyId": key["arn"],
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "KeyMaterialId": material_id,
        }

    def _decrypt_asymmetric(self, region: str, body: DecryptBody) -> dict[str, Any]:
        """RSAES_OAEP_SHA_1/_256 with an RSA ENCRYPT_DECRYPT key, which the request must name."""
        algorithm = body.encryption_algorithm
        if algorithm not in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"):
            raise validation(f"EncryptionAlgorithm {algorithm} is not supported by this emulator")
        if not body.key_id:
            raise validation("KeyId is required to decrypt with an asymmetric KMS key")
        key, private_key = self._private_key(region, body.key_id)
        self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.RSA)
        digest = HASHES[algorithm.removeprefix("RSAES_OAEP_")]()
        try:
            oaep = padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
            plaintext = private_key.decrypt(body.ciphertext_blob, oaep)
        except ValueError:
            raise KmsError("InvalidCiphertextException", "The ciphertext is invalid for this KMS key.") from None
        return {"Plaintext": base64.b64encode(plaintext).decode(), "KeyId": key["arn"], "EncryptionAlgorithm": algorithm}

    def _mac(self, region: str, body: GenerateMacBody) -> tuple[dict[str, Any], bytes]:
        algorithm = body.mac_algorithm
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._require_usage(key, "GENERATE_VERIFY_MAC")
            material = self._usable(key)
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        digest = HASHES[algorithm.removeprefix("HMAC_")]().name
        return key, hmac.new(base64.b64decode(material["secret"]), body.message, digest).digest()

    def _op_GenerateMac(self, region: str, body: GenerateMacBody) -> dict[str, Any]:
        key, mac = self._mac(region, body)
        return {"Mac": base64.b64encode(mac).decode(), "MacAlgorithm": body.mac_algorithm, "KeyId": key["arn"]}

    def _op_VerifyMac(self, region: str, body: VerifyMacBody) -> dict[str, Any]:
        key, mac = self._mac(region, body)
        if not hmac.compare_digest(mac, body.mac):
            raise KmsError("KMSInvalidMacException", "The MAC does not verify.")
        return {"KeyId": key["arn"], "MacValid": True, "MacAlgorithm": body.mac_algorithm}

    def _private_key(self, region: str, reference: str) -> tuple[dict[str, Any], Any]:
        with self.store.transaction():
            key = self._load(region, reference)
            if KEY_SPECS[key["spec"]].kind not in (MaterialKind.RSA, MaterialKind.EC):
                raise KmsError(
                    "UnsupportedOperationException", f"{key['arn']} key spec {key['spec']} is not asymmetric."
                )
            material = self._usable(key)
        return key, serialization.load_der_private_key(base64.b64decode(material["secret"]), password=None)

    def _op_GetPublicKey(self, region: str, body: KeyReference) -> dict[str, Any]:
        key, private_key = self._private_key(region, body.key_id)
        spki = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        metadata = self._metadata(key)
        result = {
            "KeyId": key["arn"],
            "PublicKey": base64.b64encode(spki).decode(),
            "KeySpec": key["spec"],
            "KeyUsage": key["usage"],
        }
        for field in ("SigningAlgorithms", "EncryptionAlgorithms"):
            if field in metadata:
                result[field] = metadata[field]
        return result

    def _op_Sign(self, region: str, body: SignBody) -> dict[str, Any]:
        key, private_key, scheme = self._signing(region, body)
        signature = private_key.sign(body.message, *scheme)
        return {
            "KeyId": key["arn"],
            "Signature": base64.b64encode(signature).decode(),
            "SigningAlgorithm": body.signing_algorithm,
        }

    def _op_Verify(self, region: str, body: VerifyBody) -> dict[str, Any]:
        """With the key's public half, as KMS does: KMSInvalidSignatureException when the signature
        does not verify."""
        key, private_key, scheme = self._signing(region, body)
        try:
            private_key.public_key().verify(body.signature, body.message, *scheme)
        except (InvalidSignature, ValueError):
            raise KmsError("KMSInvalidSignatureException", "The signature does not verify.") from None
        return {"KeyId": key["arn"], "SignatureValid": True, "SigningAlgorithm": body.signing_algorithm}

    def _signing(self, region: str, body: SignBody) -> tuple[dict[str, Any], Any, tuple[Any, ...]]:
        """The key, its private half and what follows the message in a sign or verify call: the
        message type says whether Message is hashed here or already a digest."""
        key, private_key = self._private_key(region, body.key_id)
        self._require_usage(key, "SIGN_VERIFY")
        algorithm, message_type = body.signing_algorithm, body.message_type or "RAW"
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        if message_type == "EXTERNAL_MU":
            raise validation("MessageType EXTERNAL_MU is valid with ML_DSA key specs only.")
        hash_algorithm = HASHES[algorithm[-7:]]()  # every algorithm a key spec here allows ends in SHA_nnn
        if message_type == "DIGEST" and len(body.message) != hash_algorithm.digest_size:
            raise validation(f"The digest is not {hash_algorithm.digest_size} bytes long.")
        chosen: Any = utils.Prehashed(hash_algorithm) if message_type == "DIGEST" else hash_algorithm
        if algorithm.startswith("ECDSA"):
            return key, private_key, (ec.ECDSA(chosen),)
        if algorithm.startswith("RSASSA_PSS"):
            pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
            return key, private_key, (pss, chosen)
        return key, private_key, (padding.PKCS1v15(), chosen)
