"""The emulated KMS's core: dispatch of `X-Amz-Target` operations to `_op_<Name>` methods, the
signed region, key lookup by id, ARN or alias, and the clock-driven state of a key (material
expiry, deletion) with the KeyMetadata KMS answers."""

from __future__ import annotations

import base64
import threading
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from providers.aws.emulator.bodies import Body, parse_body
from providers.aws.emulator.errors import KmsError, validation
from providers.aws.emulator.material import (
    forget_material,
    generate_material,
)
from providers.aws.emulator.wire import (
    ACCOUNT_ID,
    CREDENTIAL_SCOPE,
    DEFAULT_REGION,
    JSON_CONTENT_TYPE,
    KEY_SPECS,
    UUID_PATTERN,
    epoch,
)
from providers.emulation.app import EmulatorApp, Request, Response
from providers.emulation.clock import Clock
from providers.emulation.store import DocumentStore


class KmsCore(EmulatorApp):
    """What every group of KMS operations uses; `KmsEmulator` combines the groups."""

    name = "aws"

    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        super().__init__(store, clock)
        self._wrapping_lock = threading.Lock()
        self._operations: dict[str, Callable[[str, Any], dict[str, Any]]] = {
            name.removeprefix("_op_"): getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }
        # The typed body each operation declares (a `Body` model), validated before it runs.
        self._bodies: dict[str, type[Body]] = {
            operation: hint
            for operation, handler in self._operations.items()
            if isinstance(hint := typing.get_type_hints(handler).get("body"), type) and issubclass(hint, Body)
        }

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
            model = self._bodies.get(operation)
            result = handler(self._region(request), parse_body(model, body) if model is not None else body)
        except KmsError as error:
            return error.response()
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
            material = generate_material(spec)
            try:
                record.update(
                    secret=base64.b64encode(material.reveal()).decode(),
                    fingerprint=fingerprint_material(spec.kind, material),
                )
            finally:
                material.wipe()
            self.store.put("keys", key_id, stored)
            return str(record["fingerprint"])

    def _region(self, request: Request) -> str:
        """The region is the one the client signed for (its credential scope)."""
        match = CREDENTIAL_SCOPE.search(request.headers.get("authorization", ""))
        if request.headers.get("authorization") is None:
            raise KmsError("MissingAuthenticationTokenException", "Request is missing Authentication Token")
        return match.group(1) if match else DEFAULT_REGION

    def _now(self) -> datetime:
        return self.clock.now()

    def _arn(self, region: str, key_id: str) -> str:
        return f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{key_id}"

    def _key_id_of(self, region: str, reference: Any) -> str:
        """Resolve a key id, key ARN, alias name or alias ARN to a key id."""
        if not isinstance(reference, str) or not reference:
            raise validation(
                "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
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
            if alias is None or self.visibility.hidden(alias["created"]):
                raise KmsError("NotFoundException", f"Alias '{self._alias_arn(region, text)}' is not found.")
            return str(alias["target"])
        if not UUID_PATTERN.match(text):
            raise KmsError("NotFoundException", f"Invalid keyId '{reference}'")
        return text

    def _load(self, region: str, reference: Any) -> dict[str, Any]:
        """The key record, with time-driven changes (material expiry, deletion) applied."""
        key_id = self._key_id_of(region, reference)
        key = self.store.get("keys", key_id)
        if key is None or key["region"] != region or self._sweep(key) or self.visibility.hidden(key["created"]):
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
                forget_material(material)
                changed = True
        if changed:
            self.store.put("keys", key["id"], key)
        return False

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
            "CreationDate": epoch(key["created"]),
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
            metadata["DeletionDate"] = epoch(key["deletion_date"])
            metadata["PendingDeletionWindowInDays"] = key["pending_window"]
        current = self._current(key)
        if key["origin"] == "EXTERNAL" and current is not None and current["secret"] is not None:
            metadata["ExpirationModel"] = current["expiration_model"]
        expiries = [m["valid_to"] for m in key["materials"] if m["secret"] is not None and m["valid_to"]]
        if key["origin"] == "EXTERNAL" and expiries:
            metadata["ValidTo"] = epoch(min(expiries))
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

    def _alias_arn(self, region: str, name: str) -> str:
        return f"arn:aws:kms:{region}:{ACCOUNT_ID}:{name}"

    def _require_external(self, key: dict[str, Any]) -> None:
        if key["origin"] != "EXTERNAL":
            raise KmsError(
                "UnsupportedOperationException",
                f"{key['arn']} origin is {key['origin']} which is not valid for this operation.",
            )

    def _refuse_pending_deletion(self, key: dict[str, Any]) -> None:
        if key.get("deletion_date"):
            raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending deletion.")

    def _require_usage(self, key: dict[str, Any], usage: str, kind: MaterialKind | None = None) -> None:
        spec = KEY_SPECS[key["spec"]]
        if key["usage"] != usage or (kind is not None and spec.kind is not kind):
            raise KmsError(
                "InvalidKeyUsageException",
                f"{key['arn']} key usage is {key['usage']} which is not valid for this operation.",
            )
