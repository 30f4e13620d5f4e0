"""The emulated vault's core: the bearer challenge, operation names, error and fault answers,
store access, soft-delete bookkeeping, the key bundles Key Vault answers, and reading a key."""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, fingerprint_material
from providers.azure.emulator.bodies import WireAttributes, parse_body
from providers.azure.emulator.documents import StoredAttributes, StoredKey, StoredVersion
from providers.azure.emulator.errors import KeyVaultError, bad_parameter, key_not_found
from providers.azure.emulator.jwk import public_members
from providers.azure.emulator.limits import (
    DEFAULT_OPS,
    KEY_NAME_ALPHABET,
    KEY_OPERATIONS,
    MAX_KEY_NAME,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    BodyModel,
    VaultKind,
)
from providers.emulation import Clock, DocumentStore, EmulatorApp, Request, Response
from providers.emulation.material import pkcs8_material


class VaultCore(EmulatorApp):
    """What every group of Key Vault operations uses; `AzureKeyVaultEmulator` combines the
    groups and routes requests to them."""
    """One Key Vault (or, in the subclass, one Managed HSM) over a DocumentStore."""

    name = "azure"
    tls = True
    vault_kind: ClassVar[VaultKind] = "vault"
    default_purge_protection: ClassVar[bool] = False
    default_retention_days: ClassVar[int] = 90
    # The vault's public host name (e.g. "payments.vault.azure.net") when the emulator stands in
    # for a named vault: transfer blobs may name its KEK under that host as well as under the
    # address the client reached, as a file made for the vault itself does.
    vault_host: ClassVar[str | None] = None

    def __init__(
        self,
        store: DocumentStore,
        clock: Clock,
        *,
        purge_protection: bool | None = None,
        retention_days: int | None = None,
    ) -> None:
        super().__init__(store, clock)
        self.purge_protection = self.default_purge_protection if purge_protection is None else purge_protection
        self.retention_days = retention_days or self.default_retention_days
        if not 7 <= self.retention_days <= 90:
            raise ValueError("soft-delete retention is 7 to 90 days")

    @property
    def challenge_resource(self) -> str:
        return "https://managedhsm.azure.net" if self.vault_kind == "managedhsm" else "https://vault.azure.net"

    def operation(self, request: Request) -> str:
        if "authorization" not in request.headers:
            return "Challenge"
        method, parts = request.method, self._parts(request)
        if parts[:1] == ["deletedkeys"]:
            if len(parts) == 1:
                return "GetDeletedKeys"
            if len(parts) == 3 and parts[2] == "recover":
                return "RecoverDeletedKey"
            return {"GET": "GetDeletedKey", "DELETE": "PurgeDeletedKey"}.get(method, "Unknown")
        if parts[:1] != ["keys"]:
            return "Unknown"
        if len(parts) == 1:
            return "GetKeys"
        if len(parts) == 2:
            return {"PUT": "ImportKey", "DELETE": "DeleteKey", "GET": "GetKey", "PATCH": "UpdateKey"}.get(
                method, "Unknown"
            )
        if len(parts) == 3 and parts[2] == "create" and method == "POST":
            return "CreateKey"
        if len(parts) == 3 and parts[2] == "versions" and method == "GET":
            return "GetKeyVersions"
        if len(parts) == 3:
            return {"GET": "GetKey", "PATCH": "UpdateKey"}.get(method, "Unknown")
        if len(parts) == 4 and method == "POST":
            return {
                "encrypt": "Encrypt",
                "decrypt": "Decrypt",
                "sign": "Sign",
                "wrapkey": "WrapKey",
                "unwrapkey": "UnwrapKey",
            }.get(parts[3].lower(), "Unknown")
        return "Unknown"

    def handle(self, request: Request) -> Response:
        if "authorization" not in request.headers:
            return self._challenge()
        try:
            self._purge_expired()
            return self._route(request)
        except KeyVaultError as error:
            return error.response()

    def fault_response(self, request: Request, status: int) -> Response:
        if status == 429:
            error = KeyVaultError(
                429,
                "Throttled",
                "Request was not processed because too many requests were received. "
                "Reason: VaultRequestTypeLimitReached",
            )
            response = error.response()
            response.headers["Retry-After"] = "1"
            return response
        if status == 401:
            return self._challenge()
        if status == 403:
            return KeyVaultError(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource. Inner error: ForbiddenByRbac.",
                "ForbiddenByRbac",
            ).response()
        if status < 500:
            return bad_parameter("The request was refused (injected fault).").response()
        return KeyVaultError(status, "ServiceUnavailable", "The service is temporarily unavailable.").response()

    def material_fingerprints(self) -> list[dict[str, Any]]:
        found = []
        for _, doc in self.store.list("versions"):
            version = StoredVersion.model_validate(doc)
            if version.imported:
                found.append({"key": version.name, "version": version.version, "fingerprint": version.fingerprint})
        return found

    def swap_material(self, key: str, version: str | None) -> str | None:
        parts = urlsplit(key).path.strip("/").split("/")
        name = parts[1] if len(parts) >= 2 and parts[0] == "keys" else key
        with self.store.transaction():
            stored_key = self._key(name)
            if stored_key is None or not stored_key.versions:
                return None
            try:
                stored = self._version(stored_key, version or "")
            except KeyVaultError:
                return None
            if not stored.imported:
                return None
            old = base64.b64decode(stored.private)
            fresh: SecretBytes
            if stored.kty.startswith("oct"):
                fresh, public, kind = SecretBytes(os.urandom(len(old))), {}, MaterialKind.SYMMETRIC
            else:
                current = serialization.load_der_private_key(old, password=None)
                private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                if isinstance(current, rsa.RSAPrivateKey):
                    private, kind = rsa.generate_private_key(65537, current.key_size), MaterialKind.RSA
                else:
                    assert isinstance(current, ec.EllipticCurvePrivateKey)
                    private, kind = ec.generate_private_key(current.curve), MaterialKind.EC
                fresh = pkcs8_material(private)
                public = public_members(private, stored.public.get("crv"))
            swapped = stored.model_copy(
                update={
                    "private": base64.b64encode(fresh.reveal()).decode(),
                    "public": public,
                    "fingerprint": fingerprint_material(kind, fresh),
                }
            )
            self._save_version(swapped)
            return swapped.fingerprint

    def _challenge(self) -> Response:
        response = KeyVaultError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.").response()
        response.headers["WWW-Authenticate"] = (
            'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
            f'resource="{self.challenge_resource}"'
        )
        return response

    @staticmethod
    def _parts(request: Request) -> list[str]:
        # "/keys/name/" (the SDK's "latest version" form) and "/keys/name" are the same key;
        # "/keys/name//encrypt" keeps its empty version segment (latest version)
        return request.path.strip("/").split("/")

    @staticmethod
    def _base(request: Request) -> str:
        host = request.headers.get("host", "127.0.0.1").lower()
        return f"https://{host.removesuffix(':443')}"

    @staticmethod
    def _body(request: Request, model: type[BodyModel]) -> BodyModel:
        try:
            document = request.json()
        except json.JSONDecodeError:
            raise bad_parameter("The request body is not valid JSON.") from None
        return parse_body(model, document)

    def _key(self, name: str) -> StoredKey | None:
        doc = self.store.get("keys", name.lower())
        return StoredKey.model_validate(doc) if doc else None

    def _live_key(self, name: str) -> StoredKey:
        key = self._key(name)
        if key is None or key.deleted is not None or not key.versions:
            raise key_not_found(name)
        return key

    def _version(self, key: StoredKey, version: str) -> StoredVersion:
        chosen = version or key.versions[-1]
        doc = self.store.get("versions", f"{key.name.lower()}/{chosen.lower()}")
        if doc is None:
            raise key_not_found(f"{key.name}/{version}")
        return StoredVersion.model_validate(doc)

    def _save_version(self, version: StoredVersion) -> None:
        self.store.put("versions", f"{version.name.lower()}/{version.version}", version.model_dump())

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    def _purge_expired(self) -> None:
        """Azure purges soft-deleted keys once their retention has passed; the "deletions"
        index keeps this sweep proportional to the deleted keys, not to the whole vault."""
        now = self._now()
        for doc_id, doc in self.store.list("deletions"):
            if int(doc["scheduled_purge_date"]) <= now:
                key = self._key(doc_id)
                if key is not None and key.deleted is not None:
                    self._purge(key)
                self.store.delete("deletions", doc_id)

    def _purge(self, key: StoredKey) -> None:
        with self.store.transaction():
            for version in key.versions:
                self.store.delete("versions", f"{key.name.lower()}/{version}")
            self.store.delete("keys", key.name.lower())
            self.store.delete("deletions", key.name.lower())

    def _check_name_free(self, name: str) -> StoredKey | None:
        """The live key of that name (a new version goes onto it), or None; 409 if it is soft-deleted."""
        if not name or len(name) > MAX_KEY_NAME or not set(name) <= KEY_NAME_ALPHABET:
            raise bad_parameter(
                f"The key name {name!r} is invalid: names are 1-127 characters of 0-9, a-z, A-Z and '-'."
            )
        key = self._key(name)
        if key is not None and key.deleted is not None:
            raise KeyVaultError(
                409,
                "Conflict",
                f"Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in "
                "this state, the key can only be recovered or purged.",
                inner="ObjectIsDeletedButRecoverable",
            )
        return key

    def _recovery(self) -> dict[str, Any]:
        if self.vault_kind == "managedhsm" or self.retention_days != 90:
            level = "CustomizedRecoverable" if self.purge_protection else "CustomizedRecoverable+Purgeable"
        else:
            level = "Recoverable" if self.purge_protection else "Recoverable+Purgeable"
        return {"recoverableDays": self.retention_days, "recoveryLevel": level}

    def _attributes(self, version: StoredVersion) -> dict[str, Any]:
        attrs = version.attributes.model_dump(exclude_none=True)
        return {**attrs, **self._recovery()}

    def _bundle(self, version: StoredVersion, base: str) -> dict[str, Any]:
        jwk: dict[str, Any] = {
            "kid": f"{base}/keys/{version.name}/{version.version}",
            "kty": version.kty,
            "key_ops": version.key_ops,
            **version.public,
        }
        return {"key": jwk, "attributes": self._attributes(version), "tags": version.tags}

    def _item(self, version: StoredVersion, base: str, *, versioned: bool) -> dict[str, Any]:
        kid = f"{base}/keys/{version.name}" + (f"/{version.version}" if versioned else "")
        return {"kid": kid, "attributes": self._attributes(version), "tags": version.tags}

    def _deleted_fields(self, key: StoredKey, base: str) -> dict[str, Any]:
        assert key.deleted is not None
        return {
            "recoveryId": f"{base}/deletedkeys/{key.name}",
            "deletedDate": key.deleted.deleted_date,
            "scheduledPurgeDate": key.deleted.scheduled_purge_date,
        }

    def _check_tags(self, tags: dict[str, str] | None) -> dict[str, str]:
        tags = tags or {}
        if len(tags) > MAX_TAGS:
            raise bad_parameter(f"A key can have at most {MAX_TAGS} tags; {len(tags)} were given.")
        for tag, value in tags.items():
            if not tag or len(tag) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH:
                raise bad_parameter(
                    f"Tag names must be 1-{MAX_TAG_LENGTH} characters and values at most {MAX_TAG_LENGTH} characters."
                )
        return tags

    def _check_kty(self, kty: str, *, imported: bool) -> str:
        family = kty.removesuffix("-HSM")
        if family not in ("RSA", "EC", "oct") or (family == "oct" and kty != "oct-HSM"):
            raise bad_parameter(f"The key type {kty!r} is not supported.")
        if self.vault_kind == "managedhsm" and not kty.endswith("-HSM"):
            raise bad_parameter(f"Managed HSM keys are hardware keys: use {family}-HSM instead of {kty}.")
        if family == "oct" and self.vault_kind == "vault":
            what = "Import" if imported else "Creation"
            raise bad_parameter(f"{what} of oct-HSM keys is not supported in a Key Vault; use a Managed HSM.")
        return family

    def _check_ops(self, ops: list[str] | None, family: str) -> list[str]:
        chosen = list(ops) if ops is not None else list(DEFAULT_OPS[family])
        unknown = [op for op in chosen if op not in KEY_OPERATIONS]
        if unknown:
            raise bad_parameter(f"Unknown key operations: {', '.join(unknown)}.")
        if "import" in chosen and chosen != ["import"]:
            raise bad_parameter("The key operation 'import' cannot be combined with other operations.")
        if "import" in chosen and family != "RSA":
            raise bad_parameter("Only RSA-HSM keys can be key-exchange keys (key operation 'import').")
        return chosen

    def _new_attributes(self, wire: WireAttributes) -> StoredAttributes:
        now = self._now()
        return StoredAttributes(
            enabled=True if wire.enabled is None else wire.enabled,
            nbf=wire.nbf,
            exp=wire.exp,
            exportable=bool(wire.exportable),
            created=now,
            updated=now,
        )

    def _add_version(
        self,
        existing: StoredKey | None,
        *,
        name: str,
        kty: str,
        key_ops: list[str],
        public: dict[str, str],
        secret: bytes,
        attributes: WireAttributes,
        tags: dict[str, str] | None,
        fingerprint: str | None = None,
    ) -> str:
        """A new version of the key `name` (made anew, if `existing` is None) holding `secret`:
        made by the vault, or imported when it comes with its material's fingerprint."""
        version = StoredVersion(
            name=name,
            version=uuid.uuid4().hex,
            kty=kty,
            key_ops=key_ops,
            public=public,
            private=base64.b64encode(secret).decode(),
            imported=fingerprint is not None,
            fingerprint=fingerprint,
            attributes=self._new_attributes(attributes),
            tags=self._check_tags(tags),
        )
        with self.store.transaction():
            key = existing or StoredKey(name=version.name)
            if self.vault_kind == "managedhsm" and len(key.versions) >= 100:
                raise bad_parameter("A Managed HSM key can have at most 100 versions.")
            key.versions.append(version.version)
            self.store.put("keys", key.name.lower(), key.model_dump())
            self._save_version(version.model_copy(update={"name": key.name}))
        return version.version

    def _check_usable(self, version: StoredVersion, operation: str) -> None:
        now = self._now()
        attributes = version.attributes
        if not attributes.enabled:
            raise KeyVaultError(
                403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled"
            )
        if attributes.exp is not None and attributes.exp <= now:
            raise KeyVaultError(
                403, "Forbidden", f"Operation {operation} is not allowed on an expired key.", "KeyExpired"
            )
        if attributes.nbf is not None and attributes.nbf > now:
            raise KeyVaultError(
                403,
                "Forbidden",
                f"Operation {operation} is not allowed on a key that is not yet valid.",
                "KeyNotYetValid",
            )

    def get_key(self, name: str, version: str, base: str) -> Response:
        key = self._live_key(name)
        return Response.json(self._bundle(self._version(key, version), base))

    def _route(self, request: Request) -> Response:
        raise NotImplementedError
