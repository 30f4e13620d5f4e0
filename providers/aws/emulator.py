"""keyplan's AWS KMS emulator: the KMS JSON 1.1 API (`POST /`, `X-Amz-Target: TrentService.<Op>`)
as far as bring-your-own-key needs it, so the unmodified boto3 client works against it.

It keeps every key, alias, import token and wrapping key in the `DocumentStore`, decides every
time question with the emulator `Clock`, and really unwraps what ImportKeyMaterial receives with
the private half of the wrapping key it handed out. Imported material is then used for
Encrypt/Decrypt (AES-GCM), GenerateMac/VerifyMac and Sign/GetPublicKey, so a test can prove the
cloud holds what keyplan wrapped. The rules enforced are AWS KMS's documented BYOK rules:
PendingImport keys, 24-hour import tokens bound to key, algorithm and wrapping key, ValidTo at
most 365 days ahead, expiry of material, re-import of the same bytes only, one pending NEW
material per key, RotateKeyOnDemand, deletion windows of 7-30 days, tag and alias rules.

Errors are HTTP 400 with `{"__type": <Code>, "message": ...}`; an injected 5xx is
`KMSInternalException` (HTTP 500) and an injected 429 is `ThrottlingException` (HTTP 400).
The emulator stores imported material in its own database, as the cloud does; it reports only
fingerprints through the control API.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import UnwrapError, WrapMethod, unwrap
from providers.emulation.app import EmulatorApp, Request, Response
from providers.emulation.clock import Clock
from providers.emulation.server import EmulatorServer
from providers.emulation.store import DocumentStore

ACCOUNT_ID = "111122223333"
DEFAULT_REGION = "us-east-1"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
IMPORT_PARAMETERS_LIFETIME = timedelta(hours=24)
MAX_VALID_TO = timedelta(days=365)
ON_DEMAND_ROTATION_LIMIT = 25
MAX_TAGS = 50
# Generating an RSA-4096 pair takes most of a second. AWS does not document how often it renews
# wrapping pairs; the emulator renews them hourly (emulator clock) and still binds each token to
# exactly one pair, key and algorithm.
WRAPPING_KEY_RENEWAL = timedelta(hours=1)
CIPHERTEXT_MAGIC = b"kpkms1"

# AWS's API reference for GetParametersForImport lists RSA_AES_KEY_WRAP_SHA_1/_256 as "Supported
# for wrapping RSA and ECC key material" and RSAES_OAEP_SHA_1/_256 as "Supported for all types of
# key material, except RSA key material (private key)". So symmetric and HMAC material is
# refused with the RSA_AES algorithms here (ValidationException at GetParametersForImport), and RSA
# private keys are refused with the direct RSAES_OAEP algorithms.
WRAPPING_ALGORITHMS = {m.value: m for m in WrapMethod}
WRAPPING_KEY_SPECS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}


class KeySpecInfo:
    """What one KMS key spec is: its material kind and what it may be used for."""

    def __init__(
        self,
        kind: MaterialKind,
        usages: tuple[str, ...],
        *,
        length: int | None = None,
        bits: int | None = None,
        curve: type[ec.EllipticCurve] | None = None,
        algorithms: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.usages = usages
        self.length = length  # raw secret length in bytes
        self.bits = bits  # RSA modulus size
        self.curve = curve
        self.algorithms = algorithms  # MAC or signing algorithms


_RSA_SIGNING = tuple(f"{p}_{h}" for p in ("RSASSA_PSS", "RSASSA_PKCS1_V1_5") for h in ("SHA_256", "SHA_384", "SHA_512"))
KEY_SPECS: dict[str, KeySpecInfo] = {
    "SYMMETRIC_DEFAULT": KeySpecInfo(MaterialKind.SYMMETRIC, ("ENCRYPT_DECRYPT",), length=32),
    "HMAC_224": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=28, algorithms=("HMAC_SHA_224",)),
    "HMAC_256": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=32, algorithms=("HMAC_SHA_256",)),
    "HMAC_384": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=48, algorithms=("HMAC_SHA_384",)),
    "HMAC_512": KeySpecInfo(MaterialKind.HMAC, ("GENERATE_VERIFY_MAC",), length=64, algorithms=("HMAC_SHA_512",)),
    "RSA_2048": KeySpecInfo(MaterialKind.RSA, ("ENCRYPT_DECRYPT", "SIGN_VERIFY"), bits=2048, algorithms=_RSA_SIGNING),
    "RSA_3072": KeySpecInfo(MaterialKind.RSA, ("ENCRYPT_DECRYPT", "SIGN_VERIFY"), bits=3072, algorithms=_RSA_SIGNING),
    "RSA_4096": KeySpecInfo(MaterialKind.RSA, ("ENCRYPT_DECRYPT", "SIGN_VERIFY"), bits=4096, algorithms=_RSA_SIGNING),
    "ECC_NIST_P256": KeySpecInfo(MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP256R1, algorithms=("ECDSA_SHA_256",)),
    "ECC_NIST_P384": KeySpecInfo(MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP384R1, algorithms=("ECDSA_SHA_384",)),
    "ECC_NIST_P521": KeySpecInfo(MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP521R1, algorithms=("ECDSA_SHA_512",)),
    "ECC_SECG_P256K1": KeySpecInfo(
        MaterialKind.EC, ("SIGN_VERIFY",), curve=ec.SECP256K1, algorithms=("ECDSA_SHA_256",)
    ),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA_224": hashes.SHA224,
    "SHA_256": hashes.SHA256,
    "SHA_384": hashes.SHA384,
    "SHA_512": hashes.SHA512,
}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ALIAS_NAME = re.compile(r"^alias/[a-zA-Z0-9:/_-]+$")
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/kms/aws4_request")
_MATERIAL_DESCRIPTION = re.compile(r"^[a-zA-Z0-9:/_\s.-]*$")


class KmsError(Exception):
    """An error answered in KMS's wire format."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _validation(message: str) -> KmsError:
    return KmsError("ValidationException", message)


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _parse_time(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise _validation("timestamps must be epoch seconds or ISO 8601")


def _blob(body: dict[str, Any], name: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _validation(
            f"1 validation error detected: Value at '{name[0].lower() + name[1:]}' failed to satisfy constraint: Member must not be null"
        )
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise KmsError("SerializationException", f"{name} is not valid base64") from None


def _required(body: dict[str, Any], name: str) -> Any:
    value = body.get(name)
    if value is None or value == "":
        member = name[0].lower() + name[1:]
        raise _validation(
            f"1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must not be null"
        )
    return value


def _limit(body: dict[str, Any], default: int, maximum: int) -> int:
    limit = body.get("Limit", default)
    if not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise _validation(f"Limit must be between 1 and {maximum}")
    return limit


def _page(items: list[Any], body: dict[str, Any], default: int, maximum: int) -> tuple[list[Any], dict[str, Any]]:
    """Marker/NextMarker/Truncated pagination over a stable list."""
    limit = _limit(body, default, maximum)
    start = 0
    if body.get("Marker"):
        try:
            start = int(base64.urlsafe_b64decode(str(body["Marker"]).encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise KmsError("InvalidMarkerException", "The marker is invalid.") from None
    page = items[start : start + limit]
    truncated = start + limit < len(items)
    extra: dict[str, Any] = {"Truncated": truncated}
    if truncated:
        extra["NextMarker"] = base64.urlsafe_b64encode(f"offset:{start + limit}".encode()).decode()
    return page, extra


class KmsEmulator(EmulatorApp):
    """AWS KMS over the JSON 1.1 protocol, backed by a DocumentStore."""

    name = "aws"

    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        super().__init__(store, clock)
        self._wrapping_lock = threading.Lock()
        self._operations: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            name.removeprefix("_op_"): getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }

    # -- EmulatorApp ------------------------------------------------------------------------------

    def operation(self, request: Request) -> str:
        target = request.headers.get("x-amz-target", "")
        return target.split(".", 1)[1] if "." in target else "Unknown"

    def handle(self, request: Request) -> Response:
        operation = self.operation(request)
        try:
            if request.method != "POST" or request.path != "/":
                raise KmsError("UnknownOperationException", "KMS answers POST / only", 404)
            handler = self._operations.get(operation)
            if handler is None:
                raise KmsError("UnknownOperationException", f"Operation {operation} is not supported by this emulator")
            try:
                body = request.json()
            except ValueError:
                raise KmsError("SerializationException", "The request body is not JSON") from None
            if not isinstance(body, dict):
                raise KmsError("SerializationException", "The request body is not a JSON object")
            result = handler(self._region(request), body)
        except KmsError as error:
            return Response.json(
                {"__type": error.code, "message": error.message}, status=error.status, content_type=JSON_CONTENT_TYPE
            )
        return Response.json(result, content_type=JSON_CONTENT_TYPE)

    def fault_response(self, request: Request, status: int) -> Response:
        if status == 429:
            payload = {"__type": "ThrottlingException", "message": "Rate exceeded"}
            return Response.json(payload, status=400, content_type=JSON_CONTENT_TYPE)
        payload = {"__type": "KMSInternalException", "message": "An internal error occurred. Try again."}
        return Response.json(payload, status=500, content_type=JSON_CONTENT_TYPE)

    def material_fingerprints(self) -> list[dict[str, Any]]:
        result = []
        for key_id, key in self.store.list("keys"):
            if key["origin"] != "EXTERNAL":
                continue
            for material in key["materials"]:
                if material.get("fingerprint") and material["secret"] is not None:
                    result.append(
                        {
                            "key": key["arn"],
                            "key_id": key_id,
                            "version": material["id"],
                            "fingerprint": material["fingerprint"],
                            "imported": material["secret"] is not None,
                        }
                    )
        return result

    def swap_material(self, key: str, version: str | None) -> str | None:
        key_id = key.rsplit("/", 1)[-1]
        with self.store.transaction():
            stored = self.store.get("keys", key_id)
            if stored is None:
                return None
            wanted = version or stored.get("current_material_id")
            record = next((m for m in stored["materials"] if m["id"] == wanted and m["secret"]), None)
            if record is None:
                return None
            spec = KEY_SPECS[stored["spec"]]
            material = _generate_material(spec)
            try:
                record.update(
                    secret=base64.b64encode(material.reveal()).decode(),
                    fingerprint=fingerprint_material(spec.kind, material),
                )
            finally:
                material.wipe()
            self.store.put("keys", key_id, stored)
            return str(record["fingerprint"])

    # -- request context --------------------------------------------------------------------------

    def _region(self, request: Request) -> str:
        """The region is the one the client signed for (its credential scope)."""
        match = _CREDENTIAL_SCOPE.search(request.headers.get("authorization", ""))
        if request.headers.get("authorization") is None:
            raise KmsError("MissingAuthenticationTokenException", "Request is missing Authentication Token")
        return match.group(1) if match else DEFAULT_REGION

    def _now(self) -> datetime:
        return self.clock.now()

    # -- key records ------------------------------------------------------------------------------

    def _arn(self, region: str, key_id: str) -> str:
        return f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{key_id}"

    def _key_id_of(self, region: str, reference: Any) -> str:
        """Resolve a key id, key ARN, alias name or alias ARN to a key id."""
        if not isinstance(reference, str) or not reference:
            raise _validation(
                "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must not be null"
            )
        text = reference
        if text.startswith("arn:"):
            parts = text.split(":", 5)
            if len(parts) != 6 or parts[2] != "kms":
                raise KmsError("NotFoundException", f"Invalid keyId '{reference}'")
            if parts[3] != region or parts[4] != ACCOUNT_ID:
                raise KmsError("NotFoundException", f"Key '{reference}' does not exist")
            text = parts[5].removeprefix("key/")
        if text.startswith("alias/"):
            alias = self.store.get("aliases", f"{region}:{text}")
            if alias is None:
                raise KmsError("NotFoundException", f"Alias '{self._alias_arn(region, text)}' is not found.")
            return str(alias["target"])
        if not _UUID.match(text):
            raise KmsError("NotFoundException", f"Invalid keyId '{reference}'")
        return text

    def _load(self, region: str, reference: Any) -> dict[str, Any]:
        """The key record, with time-driven changes (material expiry, deletion) applied."""
        key_id = self._key_id_of(region, reference)
        key = self.store.get("keys", key_id)
        if key is None or key["region"] != region or self._sweep(key):
            raise KmsError("NotFoundException", f"Key '{self._arn(region, key_id)}' does not exist")
        return key

    def _sweep(self, key: dict[str, Any]) -> bool:
        """Apply what the clock decided since the last look; True when the key is now deleted."""
        now = self._now()
        if key.get("deletion_date") and datetime.fromisoformat(key["deletion_date"]) <= now:
            self.store.delete("keys", key["id"])
            for alias_id, alias in self.store.list("aliases", f"{key['region']}:"):
                if alias["target"] == key["id"]:
                    self.store.delete("aliases", alias_id)
            return True
        changed = False
        for material in key["materials"]:
            if (
                material["secret"] is not None
                and material["valid_to"]
                and datetime.fromisoformat(material["valid_to"]) <= now
            ):
                # KMS deletes expired material exactly as DeleteImportedKeyMaterial would.
                self._forget_material(material)
                changed = True
        if changed:
            self.store.put("keys", key["id"], key)
        return False

    @staticmethod
    def _forget_material(material: dict[str, Any]) -> None:
        material.update(secret=None, expiration_model=None, valid_to=None)

    def _state(self, key: dict[str, Any]) -> str:
        if key.get("deletion_date"):
            return "PendingDeletion"
        materials = key["materials"]
        if not materials or any(m["secret"] is None for m in materials):
            return "PendingImport"
        return "Enabled" if key["enabled"] else "Disabled"

    def _current(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return next((m for m in key["materials"] if m["state"] == "CURRENT"), None)

    def _metadata(self, key: dict[str, Any]) -> dict[str, Any]:
        spec = KEY_SPECS[key["spec"]]
        state = self._state(key)
        metadata: dict[str, Any] = {
            "AWSAccountId": ACCOUNT_ID,
            "KeyId": key["id"],
            "Arn": key["arn"],
            "CreationDate": _epoch(key["created"]),
            "Enabled": state == "Enabled",
            "Description": key["description"],
            "KeyUsage": key["usage"],
            "KeyState": state,
            "Origin": key["origin"],
            "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": key["spec"],
            "KeySpec": key["spec"],
            "MultiRegion": False,
        }
        if spec.kind is MaterialKind.SYMMETRIC:
            metadata["EncryptionAlgorithms"] = ["SYMMETRIC_DEFAULT"]
        elif spec.kind is MaterialKind.HMAC:
            metadata["MacAlgorithms"] = list(spec.algorithms)
        elif key["usage"] == "SIGN_VERIFY":
            metadata["SigningAlgorithms"] = list(spec.algorithms)
        else:
            metadata["EncryptionAlgorithms"] = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
        if key.get("deletion_date"):
            metadata["DeletionDate"] = _epoch(key["deletion_date"])
            metadata["PendingDeletionWindowInDays"] = key["pending_window"]
        current = self._current(key)
        if key["origin"] == "EXTERNAL" and current is not None and current["secret"] is not None:
            metadata["ExpirationModel"] = current["expiration_model"]
        expiries = [m["valid_to"] for m in key["materials"] if m["secret"] is not None and m["valid_to"]]
        if key["origin"] == "EXTERNAL" and expiries:
            metadata["ValidTo"] = _epoch(min(expiries))
        if spec.kind is MaterialKind.SYMMETRIC and key.get("current_material_id"):
            metadata["CurrentKeyMaterialId"] = key["current_material_id"]
        return metadata

    def _usable(self, key: dict[str, Any]) -> dict[str, Any]:
        """The current material of a key cryptographic operations may use, or the KMS error."""
        state = self._state(key)
        if state == "Disabled":
            raise KmsError("DisabledException", f"{key['arn']} is disabled.")
        if state == "PendingImport":
            raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending import.")
        if state == "PendingDeletion":
            raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending deletion.")
        current = self._current(key)
        assert current is not None and current["secret"] is not None
        return current

    # -- tags -------------------------------------------------------------------------------------

    @staticmethod
    def _validate_tags(tags: Any) -> list[tuple[str, str]]:
        if not isinstance(tags, list):
            raise _validation("Tags must be a list")
        result: list[tuple[str, str]] = []
        seen: set[str] = set()
        for tag in tags:
            if (
                not isinstance(tag, dict)
                or not isinstance(tag.get("TagKey"), str)
                or not isinstance(tag.get("TagValue"), str)
            ):
                raise _validation("Each tag needs a TagKey and a TagValue")
            key, value = tag["TagKey"], tag["TagValue"]
            if not 1 <= len(key) <= 128:
                raise _validation(
                    "1 validation error detected: Value at 'tags.member.tagKey' failed to satisfy constraint: Member must have length less than or equal to 128"
                )
            if len(value) > 256:
                raise _validation(
                    "1 validation error detected: Value at 'tags.member.tagValue' failed to satisfy constraint: Member must have length less than or equal to 256"
                )
            if key.lower().startswith("aws:"):
                raise KmsError("TagException", "Tags beginning with aws: are reserved")
            if key in seen:
                raise KmsError("TagException", "Duplicate tag keys")
            seen.add(key)
            result.append((key, value))
        return result

    @staticmethod
    def _merge_tags(existing: list[list[str]], new: list[tuple[str, str]]) -> list[list[str]]:
        merged = {k: v for k, v in existing}
        for key, value in new:
            merged[key] = value
        if len(merged) > MAX_TAGS:
            raise KmsError("TagException", "Too many tags")
        return [[k, v] for k, v in merged.items()]

    # -- operations: keys -------------------------------------------------------------------------

    def _op_CreateKey(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        spec_name = body.get("KeySpec") or body.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
        spec = KEY_SPECS.get(spec_name)
        if spec is None:
            raise _validation(f"KeySpec {spec_name} is not supported by this emulator")
        usage = body.get("KeyUsage") or spec.usages[0]
        if usage not in spec.usages:
            raise _validation(f"KeyUsage {usage} is not compatible with KeySpec {spec_name}")
        origin = body.get("Origin") or "AWS_KMS"
        if origin not in ("AWS_KMS", "EXTERNAL"):
            raise KmsError("UnsupportedOperationException", f"Origin {origin} is not supported by this emulator")
        if body.get("MultiRegion"):
            raise KmsError("UnsupportedOperationException", "Multi-Region keys are not supported by this emulator")
        description = body.get("Description") or ""
        if len(description) > 8192:
            raise _validation("Description must be at most 8192 characters")
        tags = self._merge_tags([], self._validate_tags(body.get("Tags") or []))
        key_id = str(uuid.uuid4())
        now = self._now()
        key: dict[str, Any] = {
            "id": key_id,
            "arn": self._arn(region, key_id),
            "region": region,
            "created": now.isoformat(),
            "description": description,
            "spec": spec_name,
            "usage": usage,
            "origin": origin,
            "enabled": True,
            "deletion_date": None,
            "pending_window": None,
            "tags": tags,
            "materials": [],
            "rotations": 0,
            "current_material_id": None,
        }
        if origin == "AWS_KMS":
            key["materials"].append(self._material_record(key_id, spec, _generate_material(spec), now, "CURRENT", None))
            key["current_material_id"] = key["materials"][0]["id"]
        with self.store.transaction():
            self.store.put("keys", key_id, key)
        return {"KeyMetadata": self._metadata(key)}

    def _op_DescribeKey(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            return {"KeyMetadata": self._metadata(self._load(region, body.get("KeyId")))}

    def _op_ListKeys(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            keys = [key for _, key in self.store.list("keys") if key["region"] == region and not self._sweep(key)]
        page, extra = _page(keys, body, 100, 1000)
        return {"Keys": [{"KeyId": k["id"], "KeyArn": k["arn"]} for k in page], **extra}

    def _op_UpdateKeyDescription(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        description = body.get("Description")
        if not isinstance(description, str) or len(description) > 8192:
            raise _validation("Description must be a string of at most 8192 characters")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._refuse_pending_deletion(key)
            key["description"] = description
            self.store.put("keys", key["id"], key)
        return {}

    def _refuse_pending_deletion(self, key: dict[str, Any]) -> None:
        if key.get("deletion_date"):
            raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending deletion.")

    def _op_EnableKey(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_enabled(region, body, True)

    def _op_DisableKey(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._set_enabled(region, body, False)

    def _set_enabled(self, region: str, body: dict[str, Any], enabled: bool) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            state = self._state(key)
            if state == "PendingImport":
                raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending import.")
            self._refuse_pending_deletion(key)
            key["enabled"] = enabled
            self.store.put("keys", key["id"], key)
        return {}

    def _op_ScheduleKeyDeletion(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        window = body.get("PendingWindowInDays", 30)
        if not isinstance(window, int) or not 7 <= window <= 30:
            raise _validation("PendingWindowInDays must be between 7 and 30")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._refuse_pending_deletion(key)
            deletion_date = self._now() + timedelta(days=window)
            key.update(deletion_date=deletion_date.isoformat(), pending_window=window)
            self.store.put("keys", key["id"], key)
        return {
            "KeyId": key["arn"],
            "DeletionDate": deletion_date.timestamp(),
            "KeyState": "PendingDeletion",
            "PendingWindowInDays": window,
        }

    def _op_CancelKeyDeletion(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            if not key.get("deletion_date"):
                raise KmsError("KMSInvalidStateException", f"{key['arn']} is not pending deletion.")
            # A cancelled deletion leaves the key Disabled, never Enabled.
            key.update(deletion_date=None, pending_window=None, enabled=False)
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["arn"]}

    # -- operations: import -----------------------------------------------------------------------

    def _op_GetParametersForImport(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        algorithm = _required(body, "WrappingAlgorithm")
        spec_name = _required(body, "WrappingKeySpec")
        if algorithm not in WRAPPING_ALGORITHMS:
            raise _validation(f"WrappingAlgorithm {algorithm} is not supported")
        if spec_name not in WRAPPING_KEY_SPECS:
            raise _validation(f"WrappingKeySpec {spec_name} is not supported")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_external(key)
            self._refuse_pending_deletion(key)
        kind = KEY_SPECS[key["spec"]].kind
        method = WRAPPING_ALGORITHMS[algorithm]
        if method.hybrid and kind in (MaterialKind.SYMMETRIC, MaterialKind.HMAC):
            raise _validation(
                f"{algorithm} is supported for RSA and ECC key material only; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
            )
        if not method.hybrid and kind is MaterialKind.RSA:
            raise _validation(
                f"{algorithm} cannot wrap RSA key material; use RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1"
            )
        wrapping_key = self._wrapping_key(spec_name)
        token = b"kpimport" + os.urandom(56)
        valid_to = self._now() + IMPORT_PARAMETERS_LIFETIME
        with self.store.transaction():
            self._forget_expired_tokens()
            self.store.put(
                "tokens",
                hashlib.sha256(token).hexdigest(),
                {
                    "key": key["id"],
                    "algorithm": algorithm,
                    "wrapping_key_spec": spec_name,
                    "private_key": wrapping_key,
                    "valid_to": valid_to.isoformat(),
                },
            )
        private_key = _load_rsa(wrapping_key)
        public = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "KeyId": key["arn"],
            "ImportToken": base64.b64encode(token).decode(),
            "PublicKey": base64.b64encode(public).decode(),
            "ParametersValidTo": valid_to.timestamp(),
        }

    def _forget_expired_tokens(self) -> None:
        """Expired tokens can only ever be answered with ExpiredImportTokenException; a day after
        expiry they are dropped (a stale token then reads as invalid) so the store stays small."""
        horizon = self._now() - timedelta(days=1)
        for token_id, record in self.store.list("tokens"):
            if datetime.fromisoformat(record["valid_to"]) < horizon:
                self.store.delete("tokens", token_id)

    def _wrapping_key(self, spec_name: str) -> str:
        with self._wrapping_lock:  # concurrent first imports share one (slow) key generation
            return self._current_wrapping_key(spec_name)

    def _current_wrapping_key(self, spec_name: str) -> str:
        now = self._now()
        record = self.store.get("wrapping_keys", spec_name)
        if record and datetime.fromisoformat(record["created"]) + WRAPPING_KEY_RENEWAL > now:
            return str(record["private_key"])
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=WRAPPING_KEY_SPECS[spec_name])
        pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.store.put("wrapping_keys", spec_name, {"private_key": pem, "created": now.isoformat()})
        return pem

    def _require_external(self, key: dict[str, Any]) -> None:
        if key["origin"] != "EXTERNAL":
            raise KmsError(
                "UnsupportedOperationException",
                f"{key['arn']} origin is {key['origin']} which is not valid for this operation.",
            )

    def _op_ImportKeyMaterial(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        token = _blob(body, "ImportToken")
        wrapped = _blob(body, "EncryptedKeyMaterial")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_external(key)
            self._refuse_pending_deletion(key)
            record = self.store.get("tokens", hashlib.sha256(token).hexdigest())
            if record is None or record["key"] != key["id"]:
                raise KmsError(
                    "InvalidImportTokenException", "The import token is invalid or belongs to another KMS key."
                )
            if datetime.fromisoformat(record["valid_to"]) <= self._now():
                raise KmsError(
                    "ExpiredImportTokenException", "The import token has expired. Call GetParametersForImport again."
                )
            expiration_model, valid_to = self._expiry(body)
            spec = KEY_SPECS[key["spec"]]
            material = self._unwrap(record, wrapped)
            try:
                _check_material(spec, material)
                material_id = _material_id(key["id"], material)
                record = self._place_material(key, spec, material, material_id, body)
                record.update(
                    secret=base64.b64encode(material.reveal()).decode(),
                    fingerprint=fingerprint_material(spec.kind, material),
                    expiration_model=expiration_model,
                    valid_to=valid_to.isoformat() if valid_to else None,
                )
                if "KeyMaterialDescription" in body:
                    record["description"] = self._material_description(body["KeyMaterialDescription"])
            finally:
                material.wipe()
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["arn"], "KeyMaterialId": material_id}

    @staticmethod
    def _material_description(value: Any) -> str:
        if not isinstance(value, str) or len(value) > 256 or not _MATERIAL_DESCRIPTION.match(value):
            raise _validation(
                "KeyMaterialDescription must be at most 256 characters of letters, digits, spaces and :/_.-"
            )
        return value

    def _expiry(self, body: dict[str, Any]) -> tuple[str, datetime | None]:
        model = body.get("ExpirationModel") or "KEY_MATERIAL_EXPIRES"
        if model not in ("KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"):
            raise _validation(f"ExpirationModel {model} is not valid")
        if model == "KEY_MATERIAL_DOES_NOT_EXPIRE":
            if body.get("ValidTo") is not None:
                raise _validation(
                    "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE"
                )
            return model, None
        if body.get("ValidTo") is None:
            raise _validation("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
        valid_to = _parse_time(body["ValidTo"])
        now = self._now()
        if valid_to <= now:
            raise _validation("The validTo date must be in the future")
        if valid_to > now + MAX_VALID_TO:
            raise _validation("The validTo date must be at most 365 days in the future")
        return model, valid_to

    @staticmethod
    def _unwrap(record: dict[str, Any], wrapped: bytes) -> SecretBytes:
        try:
            return unwrap(WRAPPING_ALGORITHMS[record["algorithm"]], _load_rsa(record["private_key"]), wrapped)
        except UnwrapError:
            raise KmsError(
                "InvalidCiphertextException",
                "KMS cannot decrypt the encrypted key material with the wrapping key and algorithm of this import token.",
            ) from None

    def _place_material(
        self, key: dict[str, Any], spec: KeySpecInfo, material: SecretBytes, material_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Decide NEW or EXISTING import and return the material record that now holds the bytes."""
        materials = key["materials"]
        import_type = body.get("ImportType") or ("EXISTING_KEY_MATERIAL" if materials else "NEW_KEY_MATERIAL")
        if import_type not in ("NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"):
            raise _validation(f"ImportType {import_type} is not valid")
        if (
            body.get("ImportType")
            and spec.kind is not MaterialKind.SYMMETRIC
            and materials
            and import_type == "NEW_KEY_MATERIAL"
        ):
            raise KmsError(
                "UnsupportedOperationException", "You cannot import new key material into asymmetric or HMAC KMS keys."
            )
        if import_type == "EXISTING_KEY_MATERIAL":
            return self._reimport(key, material_id, material, body.get("KeyMaterialId"))
        if body.get("KeyMaterialId"):
            raise _validation("KeyMaterialId can only be specified for EXISTING_KEY_MATERIAL imports")
        if any(m["id"] == material_id for m in materials):
            raise KmsError("IncorrectKeyMaterialException", "This key material is already associated with the KMS key.")
        pending = next((m for m in materials if m["state"] == "PENDING_ROTATION"), None)
        if pending is not None:
            raise KmsError(
                "KMSInvalidStateException",
                f"New key material (id: {material_id}) cannot be imported into KMS key {key['arn']}, because another "
                f"key material (id: {pending['id']}) is pending rotation.",
            )
        state = "PENDING_ROTATION" if materials else "CURRENT"
        record = self._material_record(key["id"], spec, material, self._now(), state, None)
        materials.append(record)
        if state == "CURRENT":
            key["current_material_id"] = material_id
        return record

    @staticmethod
    def _reimport(key: dict[str, Any], material_id: str, material: SecretBytes, requested_id: Any) -> dict[str, Any]:
        materials: list[dict[str, Any]] = key["materials"]
        if not materials:
            raise _validation("There is no key material to reimport; import with ImportType NEW_KEY_MATERIAL first")
        if requested_id is not None:
            target = next((m for m in materials if m["id"] == requested_id), None)
            if target is None:
                raise KmsError("NotFoundException", f"Key material {requested_id} does not exist for {key['arn']}")
        else:
            target = next((m for m in materials if m["id"] == material_id), None)
        # KMS compares the bytes with the material the key holds (or held, once expired or deleted).
        if target is None:
            same = False
        elif target["secret"]:
            same = hmac.compare_digest(base64.b64decode(target["secret"]), material.reveal())
        else:
            same = target["id"] == material_id
        if target is None or not same:
            raise KmsError(
                "IncorrectKeyMaterialException",
                "The key material in the request is not the same key material that was previously imported into this KMS key.",
            )
        return target

    @staticmethod
    def _material_record(
        key_id: str, spec: KeySpecInfo, material: SecretBytes, now: datetime, state: str, valid_to: datetime | None
    ) -> dict[str, Any]:
        return {
            "id": _material_id(key_id, material),
            "state": state,
            "secret": base64.b64encode(material.reveal()).decode(),
            "fingerprint": fingerprint_material(spec.kind, material),
            "expiration_model": None if valid_to is None else "KEY_MATERIAL_EXPIRES",
            "valid_to": valid_to.isoformat() if valid_to else None,
            "description": "",
            "created": now.isoformat(),
            "rotation_date": None,
            "rotation_type": None,
        }

    def _op_DeleteImportedKeyMaterial(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_external(key)
            requested = body.get("KeyMaterialId")
            if requested:
                target = next((m for m in key["materials"] if m["id"] == requested), None)
            else:
                target = self._current(key)
            if target is None:
                raise KmsError("NotFoundException", f"No key material to delete for {key['arn']}")
            if target["secret"] is None:
                raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending import.")
            self._forget_material(target)
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["arn"], "KeyMaterialId": target["id"]}

    # -- operations: rotation ---------------------------------------------------------------------

    def _op_RotateKeyOnDemand(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            spec = KEY_SPECS[key["spec"]]
            if spec.kind is not MaterialKind.SYMMETRIC:
                raise KmsError(
                    "UnsupportedOperationException", f"{key['arn']} key spec {key['spec']} cannot be rotated on demand."
                )
            self._usable(key)
            if key["rotations"] >= ON_DEMAND_ROTATION_LIMIT:
                raise KmsError(
                    "LimitExceededException", f"The on-demand rotations limit has been reached for {key['arn']}."
                )
            now = self._now()
            if key["origin"] == "EXTERNAL":
                pending = next((m for m in key["materials"] if m["state"] == "PENDING_ROTATION"), None)
                if pending is None:
                    raise KmsError(
                        "KMSInvalidStateException",
                        f"No available key material pending rotation for the key: {key['arn']}.",
                    )
            else:
                pending = self._material_record(
                    key["id"], spec, _generate_material(spec), now, "PENDING_ROTATION", None
                )
                key["materials"].append(pending)
            for material in key["materials"]:
                if material["state"] == "CURRENT":
                    material["state"] = "NON_CURRENT"
            pending.update(state="CURRENT", rotation_date=now.isoformat(), rotation_type="ON_DEMAND")
            key["current_material_id"] = pending["id"]
            key["rotations"] += 1
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["id"]}

    def _op_ListKeyRotations(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        include = body.get("IncludeKeyMaterial") or "ROTATIONS_ONLY"
        if include not in ("ROTATIONS_ONLY", "ALL_KEY_MATERIAL"):
            raise _validation(f"IncludeKeyMaterial {include} is not valid")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
        if KEY_SPECS[key["spec"]].kind is not MaterialKind.SYMMETRIC:
            raise KmsError(
                "UnsupportedOperationException", f"{key['arn']} key spec {key['spec']} has no key rotations."
            )
        materials = [m for m in key["materials"] if include == "ALL_KEY_MATERIAL" or m["rotation_date"]]
        page, extra = _page(materials, body, 100, 1000)
        return {"Rotations": [self._rotation_entry(key, m) for m in page], **extra}

    @staticmethod
    def _rotation_entry(key: dict[str, Any], material: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "KeyId": key["id"],
            "KeyMaterialId": material["id"],
            "KeyMaterialState": material["state"],
        }
        if key["origin"] == "EXTERNAL":
            entry["ImportState"] = "IMPORTED" if material["secret"] is not None else "PENDING_IMPORT"
            entry["KeyMaterialDescription"] = material["description"]
            if material["expiration_model"]:
                entry["ExpirationModel"] = material["expiration_model"]
            if material["valid_to"]:
                entry["ValidTo"] = _epoch(material["valid_to"])
        if material["rotation_date"]:
            entry["RotationDate"] = _epoch(material["rotation_date"])
            entry["RotationType"] = material["rotation_type"]
        return entry

    # -- operations: tags -------------------------------------------------------------------------

    def _op_TagResource(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        tags = self._validate_tags(_required(body, "Tags"))
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._refuse_pending_deletion(key)
            key["tags"] = self._merge_tags(key["tags"], tags)
            self.store.put("keys", key["id"], key)
        return {}

    def _op_UntagResource(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        names = _required(body, "TagKeys")
        if not isinstance(names, list):
            raise _validation("TagKeys must be a list")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._refuse_pending_deletion(key)
            key["tags"] = [[k, v] for k, v in key["tags"] if k not in names]
            self.store.put("keys", key["id"], key)
        return {}

    def _op_ListResourceTags(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
        page, extra = _page(key["tags"], body, 50, 50)
        return {"Tags": [{"TagKey": k, "TagValue": v} for k, v in page], **extra}

    # -- operations: aliases ----------------------------------------------------------------------

    def _alias_arn(self, region: str, name: str) -> str:
        return f"arn:aws:kms:{region}:{ACCOUNT_ID}:{name}"

    @staticmethod
    def _validate_alias_name(name: Any) -> str:
        if not isinstance(name, str) or not name.startswith("alias/"):
            raise _validation(
                'Alias must start with the prefix "alias/". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html'
            )
        if name.startswith("alias/aws/"):
            raise KmsError(
                "NotAuthorizedException",
                f"{name} is a reserved alias name; alias/aws/ names belong to AWS managed keys.",
            )
        if len(name) > 256 or not _ALIAS_NAME.match(name):
            raise _validation(
                "Alias names may contain only alphanumeric characters, forward slashes (/), underscores (_) and dashes (-)"
            )
        return name

    def _alias_target(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        target = body.get("TargetKeyId")
        if isinstance(target, str) and "alias/" in target:
            raise _validation("TargetKeyId must name a key, not an alias")
        key = self._load(region, target)
        self._refuse_pending_deletion(key)
        return key

    def _op_CreateAlias(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = self._validate_alias_name(body.get("AliasName"))
        with self.store.transaction():
            key = self._alias_target(region, body)
            if self.store.get("aliases", f"{region}:{name}") is not None:
                raise KmsError(
                    "AlreadyExistsException", f"An alias with the name {self._alias_arn(region, name)} already exists"
                )
            now = self._now().isoformat()
            self.store.put(
                "aliases", f"{region}:{name}", {"name": name, "target": key["id"], "created": now, "updated": now}
            )
        return {}

    def _op_UpdateAlias(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = self._validate_alias_name(body.get("AliasName"))
        with self.store.transaction():
            alias = self.store.get("aliases", f"{region}:{name}")
            if alias is None:
                raise KmsError("NotFoundException", f"Alias {self._alias_arn(region, name)} is not found.")
            key = self._alias_target(region, body)
            alias.update(target=key["id"], updated=self._now().isoformat())
            self.store.put("aliases", f"{region}:{name}", alias)
        return {}

    def _op_DeleteAlias(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        name = self._validate_alias_name(body.get("AliasName"))
        with self.store.transaction():
            if not self.store.delete("aliases", f"{region}:{name}"):
                raise KmsError("NotFoundException", f"Alias {self._alias_arn(region, name)} is not found.")
        return {}

    def _op_ListAliases(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            key_id = self._load(region, body["KeyId"])["id"] if body.get("KeyId") else None
            aliases = [
                alias
                for _, alias in self.store.list("aliases", f"{region}:")
                if key_id is None or alias["target"] == key_id
            ]
        page, extra = _page(aliases, body, 50, 100)
        entries = [
            {
                "AliasName": a["name"],
                "AliasArn": self._alias_arn(region, a["name"]),
                "TargetKeyId": a["target"],
                "CreationDate": _epoch(a["created"]),
                "LastUpdatedDate": _epoch(a["updated"]),
            }
            for a in page
        ]
        return {"Aliases": entries, **extra}

    # -- operations: cryptography -----------------------------------------------------------------

    def _op_Encrypt(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        plaintext = _blob(body, "Plaintext")
        if len(plaintext) > 4096:
            raise _validation("Plaintext must be at most 4096 bytes")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC)
            material = self._usable(key)
        nonce = os.urandom(12)
        header = CIPHERTEXT_MAGIC + uuid.UUID(key["id"]).bytes + bytes.fromhex(material["id"])
        aad = header + _context_bytes(body.get("EncryptionContext"))
        sealed = AESGCM(base64.b64decode(material["secret"])).encrypt(nonce, plaintext, aad)
        return {
            "CiphertextBlob": base64.b64encode(header + nonce + sealed).decode(),
            "KeyId": key["arn"],
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        }

    def _op_Decrypt(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        blob = _blob(body, "CiphertextBlob")
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
                nonce, sealed, header + _context_bytes(body.get("EncryptionContext"))
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
            raise _validation(f"EncryptionAlgorithm {algorithm} is not valid")
        if not body.get("KeyId"):
            raise _validation("KeyId is required to decrypt with an asymmetric KMS key")
        key, private_key = self._private_key(region, body)
        self._require_usage(key, "ENCRYPT_DECRYPT", MaterialKind.RSA)
        digest = _HASHES[algorithm.removeprefix("RSAES_OAEP_")]()
        try:
            plaintext = private_key.decrypt(blob, padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None))
        except ValueError:
            raise KmsError("InvalidCiphertextException", "The ciphertext is invalid for this KMS key.") from None
        return {"Plaintext": base64.b64encode(plaintext).decode(), "KeyId": key["arn"], "EncryptionAlgorithm": algorithm}

    def _require_usage(self, key: dict[str, Any], usage: str, kind: MaterialKind | None = None) -> None:
        spec = KEY_SPECS[key["spec"]]
        if key["usage"] != usage or (kind is not None and spec.kind is not kind):
            raise KmsError(
                "InvalidKeyUsageException",
                f"{key['arn']} key usage is {key['usage']} which is not valid for this operation.",
            )

    def _mac(self, region: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        message = _blob(body, "Message")
        algorithm = _required(body, "MacAlgorithm")
        with self.store.transaction():
            key = self._load(region, body.get("KeyId"))
            self._require_usage(key, "GENERATE_VERIFY_MAC")
            material = self._usable(key)
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        digest = _HASHES[algorithm.removeprefix("HMAC_")]().name
        return key, hmac.new(base64.b64decode(material["secret"]), message, digest).digest()

    def _op_GenerateMac(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        key, mac = self._mac(region, body)
        return {"Mac": base64.b64encode(mac).decode(), "MacAlgorithm": body["MacAlgorithm"], "KeyId": key["arn"]}

    def _op_VerifyMac(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        presented = _blob(body, "Mac")
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
        message = _blob(body, "Message")
        algorithm = _required(body, "SigningAlgorithm")
        message_type = body.get("MessageType") or "RAW"
        key, private_key = self._private_key(region, body)
        self._require_usage(key, "SIGN_VERIFY")
        if algorithm not in KEY_SPECS[key["spec"]].algorithms:
            raise KmsError("InvalidKeyUsageException", f"{algorithm} is not valid for {key['arn']} ({key['spec']}).")
        hash_algorithm = _HASHES[algorithm[-7:]]()  # every supported algorithm ends in SHA_nnn
        chosen: Any = utils.Prehashed(hash_algorithm) if message_type == "DIGEST" else hash_algorithm
        if algorithm.startswith("ECDSA"):
            signature = private_key.sign(message, ec.ECDSA(chosen))
        elif algorithm.startswith("RSASSA_PSS"):
            pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
            signature = private_key.sign(message, pss, chosen)
        else:
            signature = private_key.sign(message, padding.PKCS1v15(), chosen)
        return {"KeyId": key["arn"], "Signature": base64.b64encode(signature).decode(), "SigningAlgorithm": algorithm}


# -- material -------------------------------------------------------------------------------------


def _material_id(key_id: str, material: SecretBytes) -> str:
    """KMS derives a 64-hex KeyMaterialId; deriving it from the bytes makes re-imports checkable."""
    return hashlib.sha256(b"keyplan-kms-material\0" + key_id.encode() + b"\0" + material.reveal()).hexdigest()


def _check_material(spec: KeySpecInfo, material: SecretBytes) -> None:
    """Material must fit the key spec: raw bytes of the right length, or a matching PKCS#8 key."""
    wrong = KmsError("IncorrectKeyMaterialException", "The key material is not valid for the key spec of this KMS key.")
    if spec.length is not None:
        if len(material) != spec.length:
            raise wrong
        return
    try:
        private_key = serialization.load_der_private_key(material.reveal(), password=None)
    except (ValueError, TypeError):
        raise wrong from None
    if spec.kind is MaterialKind.RSA:
        if not isinstance(private_key, rsa.RSAPrivateKey) or private_key.key_size != spec.bits:
            raise wrong
    elif (
        not isinstance(private_key, ec.EllipticCurvePrivateKey)
        or spec.curve is None
        or not isinstance(private_key.curve, spec.curve)
    ):
        raise wrong


def _generate_material(spec: KeySpecInfo) -> SecretBytes:
    if spec.length is not None:
        return SecretBytes(os.urandom(spec.length))
    private_key: Any
    if spec.kind is MaterialKind.RSA:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=spec.bits or 2048)
    else:
        assert spec.curve is not None
        private_key = ec.generate_private_key(spec.curve())
    return SecretBytes(
        private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


@functools.lru_cache(maxsize=64)
def _load_rsa(pem: str) -> rsa.RSAPrivateKey:
    # Wrapping keys are few and the emulator made them itself: parse each once, and skip the
    # (costly, for RSA-4096) consistency check of a key we generated.
    key = serialization.load_pem_private_key(pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _context_bytes(context: Any) -> bytes:
    if not context:
        return b""
    if not isinstance(context, dict):
        raise _validation("EncryptionContext must be a map of strings")
    return json.dumps(context, sort_keys=True, separators=(",", ":")).encode()


# -- standalone -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until killed; the first line of stdout is its URL."""
    parser = argparse.ArgumentParser(prog="python -m providers.aws.emulator", description="keyplan's AWS KMS emulator")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--data-dir", required=True, help="directory for the emulator's database")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every API call")
    args = parser.parse_args(argv)
    from pathlib import Path

    data_dir = Path(args.data_dir)
    store = DocumentStore(data_dir / "aws.sqlite")
    clock = Clock(float(store.get_meta("clock_offset") or 0.0))
    server = EmulatorServer(KmsEmulator(store, clock), port=args.port, cert_dir=data_dir)
    if args.latency_ms:
        server.faults.configure({"latency_ms": args.latency_ms})
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
