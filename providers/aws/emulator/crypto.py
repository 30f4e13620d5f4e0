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
from providers.aws.emulator.core import KmsCore
from providers.aws.emulator.errors import KmsError, validation
from providers.aws.emulator.wire import (
    CIPHERTEXT_MAGIC,
    HASHES,
    KEY_SPECS,
    blob_member,
    context_bytes,
    required,
)


class CryptoRoutes(KmsCore):
    def _op_Encrypt(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        plaintext = blob_member(body, "Plaintext")
        if len(plaintext) > 4096:
            raise validation("Plaintext must be at most 4096 bytes")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC)
            material = self._usable(key)
        nonce = os.urandom(12)
        header = CIPHERTEXT_MAGIC + uuid.UUID(key["id"]).bytes + bytes.fromhex(material["id"])
        aad = header + context_bytes(body.get("EncryptionContext"))
        sealed = AESGCM(base64.b64decode(material["secret"])).encrypt(nonce, plaintext, aad)
        return {
            "CiphertextBlob": base64.b64encode(header + nonce + sealed).decode(),
            "KeyId": key["arn"],
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }

    def _op_Decrypt(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        blob = blob_member(body, "CiphertextBlob")
        if body.get("EncryptionAlgorithm", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
            return self._decrypt_asymmetric(region, body, blob)
        invalid = KmsError("InvalidCiphertextException", "The ciphertext is invalid or was not produced by this KMS.")
        prefix = len(CIPHERTEXT_MAGIC)
        if len(blob) < prefix + 16 + 32 + 12 + 16 or not blob.startswith(CIPHERTEXT_MAGIC):
            raise invalid
        key_id = str(uuid.UUID(bytes=blob[prefix : prefix + 16]))
        material_id = blob[prefix + 16 : prefix + 48].hex()
        with self.store.transaction():
            key = self._load(region, key_id)
            if body.get("KeyId") and self._key_id_of(region, body["KeyId"]) != key_id:
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
                nonce, sealed, header + context_bytes(body.get("EncryptionContext"))
            )
        except InvalidTag:
            raise invalid from None
        return {
            "Plaintext": base64.b64encode(plaintext).decode(),
            "KeyId": key["arn"],
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "KeyMaterialId": material_id,
        }

    def _decrypt_asymmetric(self, region: str, body: dict[str, Any], blob: bytes) -> dict[str, Any]:
        """RSAES_OAEP_SHA_1/_256 with an RSA ENCRYPT_DECRYPT key, which the request must name."""
        algorithm = body["EncryptionAlgorithm"]
        if algorithm not in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"):
            raise validation(f"EncryptionAlgorithm {algorithm} is not valid")
        if not body.get("KeyId"):
            raise validation("KeyId is required to decrypt with an asymmetric KMS key")
        key, private_key = self._private_key(region, body)
        self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.RSA)
        digest = HASHES[algorithm.removeprefix("RSAES_OAEP_")]()
        try:
            plaintext = private_key.decrypt(blob, padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None))
        except ValueError:
            raise KmsError("InvalidCiphertextException", "The ciphertext is invalid for this KMS key.") from None
        return {"Plaintext": base64.b64encode(plaintext).decode(), "KeyId": key["arn"], "EncryptionAlgorithm": algorithm}

    def _mac(self, region: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        message = blob_member(body, "Message")
        algorithm = required(body, "MacAlgorithm")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_usage(key, "GENERATE_VERIFY_MAC")
            material = self._usable(key)
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        digest = HASHES[algorithm.removeprefix("HMAC_")]().name
        return key, hmac.new(base64.b64decode(material["secret"]), message, digest).digest()

    def _op_GenerateMac(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        key, mac = self._mac(region, body)
        return {"Mac": base64.b64encode(mac).decode(), "MacAlgorithm": body["MacAlgorithm"], "KeyId": key["arn"]}

    def _op_VerifyMac(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        presented = blob_member(body, "Mac")
        key, mac = self._mac(region, body)
        if not hmac.compare_digest(mac, presented):
            raise KmsError("KMSInvalidMacException", "The MAC does not verify.")
        return {"KeyId": key["arn"], "MacValid": True, "MacAlgorithm": body["MacAlgorithm"]}

    def _private_key(self, region: str, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            if KEY_SPECS[key["spec"]].kind not in (MaterialKind.RSA, MaterialKind.EC):
                raise KmsError(
                    "UnsupportedOperationException", f"{key['arn']} key spec {key['spec']} is not asymmetric."
                )
            material = self._usable(key)
        return key, serialization.load_der_private_key(base64.b64decode(material["secret"]), password=None)

    def _op_GetPublicKey(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        key, private_key = self._private_key(region, body)
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

    def _op_Sign(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        message = blob_member(body, "Message")
        algorithm = required(body, "SigningAlgorithm")
        message_type = body.get("MessageType") or "RAW"
        key, private_key = self._private_key(region, body)
        self._require_usage(key, "SIGN_VERIFY")
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        hash_algorithm = HASHES[algorithm[-7:]]()  # every supported algorithm ends in SHA_nnn
        chosen: Any = utils.Prehashed(hash_algorithm) if message_type == "DIGEST" else hash_algorithm
        if algorithm.startswith("ECDSA"):
            signature = private_key.sign(message, ec.ECDSA(chosen))
        elif algorithm.startswith("RSASSA_PSS"):
            pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
            signature = private_key.sign(message, pss, chosen)
        else:
            signature = private_key.sign(message, padding.PKCS1v15(), chosen)
        return {"KeyId": key["arn"], "Signature": base64.b64encode(signature).decode(), "SigningAlgorithm": algorithm}

    def _op_Verify(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        """With the key's public half, as KMS does: KMSInvalidSignatureException when the signature
        does not verify; the message type says whether Message is hashed here or already a digest."""
        message = blob_member(body, "Message")
        signature = blob_member(body, "Signature")
        algorithm = required(body, "SigningAlgorithm")
        message_type = body.get("MessageType") or "RAW"
        if message_type not in ("RAW", "DIGEST"):
            raise KmsError("ValidationException", f"MessageType {message_type} is not RAW or DIGEST.")
        key, private_key = self._private_key(region, body)
        self._require_usage(key, "SIGN_VERIFY")
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        hash_algorithm = HASHES[algorithm[-7:]]()
        if message_type == "DIGEST" and len(message) != hash_algorithm.digest_size:
            raise KmsError("ValidationException", f"The digest is not {hash_algorithm.digest_size} bytes long.")
        if message_type == "RAW" and len(message) > 4096:
            raise KmsError("ValidationException", "Message must be at most 4096 bytes; send a digest instead.")
        chosen: Any = utils.Prehashed(hash_algorithm) if message_type == "DIGEST" else hash_algorithm
        public = private_key.public_key()
        try:
            if algorithm.startswith("ECDSA"):
                public.verify(signature, message, ec.ECDSA(chosen))
            elif algorithm.startswith("RSASSA_PSS"):
                pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
                public.verify(signature, message, pss, chosen)
            else:
                public.verify(signature, message, padding.PKCS1v15(), chosen)
        except (InvalidSignature, ValueError):
            raise KmsError("KMSInvalidSignatureException", "The signature does not verify.") from None
        return {"KeyId": key["arn"], "SignatureValid": True, "SigningAlgorithm": algorithm}
