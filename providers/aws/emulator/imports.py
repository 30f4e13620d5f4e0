"""Bring your own key: GetParametersForImport (24-hour tokens bound to key, algorithm and wrapping
key), ImportKeyMaterial (really unwrapped with the wrapping key's private half), DeleteImportedKeyMaterial,
RotateKeyOnDemand and ListKeyRotations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import UnwrapError, unwrap
from providers.aws.emulator.bodies import (
    DeleteImportedKeyMaterialBody,
    GetParametersForImportBody,
    ImportKeyMaterialBody,
    KeyReference,
    ListKeyRotationsBody,
)
from providers.aws.emulator.core import KmsCore
from providers.aws.emulator.errors import KmsError, validation
from providers.aws.emulator.material import (
    check_material,
    derive_material_id,
    forget_material,
    generate_material,
    load_rsa,
    material_record,
)
from providers.aws.emulator.wire import (
    IMPORT_PARAMETERS_LIFETIME,
    KEY_SPECS,
    MATERIAL_DESCRIPTION,
    MAX_VALID_TO,
    ON_DEMAND_ROTATION_LIMIT,
    WRAPPING_ALGORITHMS,
    WRAPPING_KEY_RENEWAL,
    WRAPPING_KEY_SPECS,
    KeySpecInfo,
    epoch,
    marker_page,
)

TOKEN_SWEEP_INTERVAL = timedelta(hours=1)


class ImportRoutes(KmsCore):
    _tokens_swept: datetime | None = None  # when expired tokens were last dropped (emulator clock)

    def _op_GetParametersForImport(self, region: str, body: GetParametersForImportBody) -> dict[str, Any]:
        algorithm, spec_name = body.wrapping_algorithm, body.wrapping_key_spec
        if algorithm not in WRAPPING_ALGORITHMS:
            raise validation(f"WrappingAlgorithm {algorithm} is not supported by this emulator")
        if spec_name not in WRAPPING_KEY_SPECS:
            raise validation(f"WrappingKeySpec {spec_name} is not supported by this emulator")
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._require_external(key)
            self._refuse_pending_deletion(key)
        kind = KEY_SPECS[key["spec"]].kind
        method = WRAPPING_ALGORITHMS[algorithm]
        if method.hybrid and kind in (MaterialKind.SYMMETRIC, MaterialKind.HMAC):
            raise validation(
                f"{algorithm} is supported for RSA and ECC key material only; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
            )
        if not method.hybrid and kind is MaterialKind.RSA:
            raise validation(
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
        private_key = load_rsa(wrapping_key)
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
        expiry they are dropped (a stale token then reads as invalid) so the store stays small.
        The store is swept at most once an hour (emulator clock): a sweep reads every token, and
        an import of thousands of keys would otherwise read them all for each key."""
        now = self._now()
        if self._tokens_swept is not None and timedelta(0) <= now - self._tokens_swept < TOKEN_SWEEP_INTERVAL:
            return
        self._tokens_swept = now
        horizon = now - timedelta(days=1)
        for token_id, record in self.store.list("tokens"):
            if datetime.fromisoformat(record["valid_to"]) < horizon:
                self.store.delete("tokens", token_id)

    def prepare(self) -> None:
        for spec_name in sorted(WRAPPING_KEY_SPECS, key=lambda name: -WRAPPING_KEY_SPECS[name]):
            self._wrapping_key(spec_name)

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

    def _op_ImportKeyMaterial(self, region: str, body: ImportKeyMaterialBody) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._require_external(key)
            self._refuse_pending_deletion(key)
            record = self.store.get("tokens", hashlib.sha256(body.import_token).hexdigest())
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
            material = self._unwrap(record, body.encrypted_key_material)
            try:
                check_material(spec, material)
                material_id = derive_material_id(key["id"], material)
                record = self._place_material(key, spec, material, material_id, body)
                record.update(
                    secret=base64.b64encode(material.reveal()).decode(),
                    fingerprint=fingerprint_material(spec.kind, material),
                    expiration_model=expiration_model,
                    valid_to=valid_to.isoformat() if valid_to else None,
                )
                if body.key_material_description is not None:
                    record["description"] = self._material_description(body.key_material_description)
            finally:
                material.wipe()
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["arn"], "KeyMaterialId": material_id}

    @staticmethod
    def _material_description(value: str) -> str:
        if not MATERIAL_DESCRIPTION.match(value):
            raise validation(
                "KeyMaterialDescription must be at most 256 characters of letters, digits, spaces and :/_.-"
            )
        return value

    def _expiry(self, body: ImportKeyMaterialBody) -> tuple[str, datetime | None]:
        model = body.expiration_model or "KEY_MATERIAL_EXPIRES"
        if model == "KEY_MATERIAL_DOES_NOT_EXPIRE":
            if body.valid_to is not None:
                raise validation(
                    "A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE"
                )
            return model, None
        if body.valid_to is None:
            raise validation("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
        try:
            valid_to = datetime.fromtimestamp(body.valid_to, UTC)
        except (OverflowError, OSError, ValueError):
            raise validation("The validTo date must be at most 365 days in the future") from None
        now = self._now()
        if valid_to <= now:
            raise validation("The validTo date must be in the future")
        if valid_to > now + MAX_VALID_TO:
            raise validation("The validTo date must be at most 365 days in the future")
        return model, valid_to

    @staticmethod
    def _unwrap(record: dict[str, Any], wrapped: bytes) -> SecretBytes:
        try:
            return unwrap(WRAPPING_ALGORITHMS[record["algorithm"]], load_rsa(record["private_key"]), wrapped)
        except UnwrapError:
            raise KmsError(
                "InvalidCiphertextException",
                "KMS cannot decrypt the encrypted key material with the wrapping key and algorithm of this import token.",
            ) from None

    def _place_material(
        self,
        key: dict[str, Any],
        spec: KeySpecInfo,
        material: SecretBytes,
        material_id: str,
        body: ImportKeyMaterialBody,
    ) -> dict[str, Any]:
        """Decide NEW or EXISTING import and return the material record that now holds the bytes."""
        materials = key["materials"]
        import_type = body.import_type or ("EXISTING_KEY_MATERIAL" if materials else "NEW_KEY_MATERIAL")
        if (
            body.import_type
            and spec.kind is not MaterialKind.SYMMETRIC
            and materials
            and import_type == "NEW_KEY_MATERIAL"
        ):
            raise KmsError(
                "UnsupportedOperationException", "You cannot import new key material into asymmetric or HMAC KMS keys."
            )
        if import_type == "EXISTING_KEY_MATERIAL":
            return self._reimport(key, material_id, material, body.key_material_id)
        if body.key_material_id:
            raise validation("KeyMaterialId can only be specified for EXISTING_KEY_MATERIAL imports")
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
        record = material_record(key["id"], spec, material, self._now(), state, None)
        materials.append(record)
        if state == "CURRENT":
            key["current_material_id"] = material_id
        return record

    @staticmethod
    def _reimport(
        key: dict[str, Any], material_id: str, material: SecretBytes, requested_id: str | None
    ) -> dict[str, Any]:
        materials: list[dict[str, Any]] = key["materials"]
        if not materials:
            raise validation("There is no key material to reimport; import with ImportType NEW_KEY_MATERIAL first")
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

    def _op_DeleteImportedKeyMaterial(self, region: str, body: DeleteImportedKeyMaterialBody) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
            self._require_external(key)
            requested = body.key_material_id
            if requested:
                target = next((m for m in key["materials"] if m["id"] == requested), None)
            else:
                target = self._current(key)
            if target is None:
                raise KmsError("NotFoundException", f"No key material to delete for {key['arn']}")
            if target["secret"] is None:
                raise KmsError("KMSInvalidStateException", f"{key['arn']} is pending import.")
            forget_material(target)
            self.store.put("keys", key["id"], key)
        return {"KeyId": key["arn"], "KeyMaterialId": target["id"]}

    def _op_RotateKeyOnDemand(self, region: str, body: KeyReference) -> dict[str, Any]:
        with self.store.transaction():
            key = self._load(region, body.key_id)
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
                pending = material_record(
                    key["id"], spec, generate_material(spec), now, "PENDING_ROTATION", None
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

    def _op_ListKeyRotations(self, region: str, body: ListKeyRotationsBody) -> dict[str, Any]:
        include = body.include_key_material or "ROTATIONS_ONLY"
        with self.store.transaction():
            key = self._load(region, body.key_id)
        if KEY_SPECS[key["spec"]].kind is not MaterialKind.SYMMETRIC:
            raise KmsError(
                "UnsupportedOperationException", f"{key['arn']} key spec {key['spec']} has no key rotations."
            )
        materials = [m for m in key["materials"] if include == "ALL_KEY_MATERIAL" or m["rotation_date"]]
        page, extra = marker_page(materials, body, 100, 1000)
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
                entry["ValidTo"] = epoch(material["valid_to"])
        if material["rotation_date"]:
            entry["RotationDate"] = epoch(material["rotation_date"])
            entry["RotationType"] = material["rotation_type"]
        return entry
