"""The Azure Key Vault / Managed HSM emulator: the keys data plane over HTTPS, as the real
`azure-keyvault-keys` client speaks it.

One emulator serves one vault. Its kind is fixed at construction: a Key Vault (Premium) or a
Managed HSM (`ManagedHsmEmulator`), which decides the bearer challenge's resource, the recovery
level and whether oct-HSM keys may be imported. What it honours (BYOK.md §3):

- the 401 bearer challenge on requests without `Authorization`; any bearer token is accepted;
- key-exchange keys: RSA-HSM 2048/3072/4096 whose `key_ops` are exactly `["import"]`;
- BYOK import (`PUT /keys/{name}`): the `key_hsm` transfer blob (base64 or base64url of the
  .byok JSON) names a KEK of this vault in `header.kid`, `enc` CKM_RSA_AES_KEY_WRAP; the
  ciphertext is really unwrapped (RSA-OAEP-SHA1 + AES-KWP) and the material checked against
  `kty`/`crv`; importing onto an existing name adds a version;
- soft delete (`/deletedkeys`), recover, purge (403 under purge protection), 409
  ObjectIsDeletedButRecoverable for names held by deleted keys, automatic purge when the
  retention period has passed on the emulator's clock;
- `maxresults` <= 25 and `nextLink` pagination; tag limits (15 per key, 256 characters);
- encrypt/decrypt: A256GCM for oct keys, RSA-OAEP / RSA-OAEP-256 for RSA keys;
- Key Vault error bodies `{"error": {"code", "message", "innererror"}}`.

Names are case-insensitive as in Azure; the name's first spelling is kept. Object ids are built
from the `Host` the client used, so they match what the SDK believes the vault URL is.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import functools
import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import quote, urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, unwrap
from keyplan.crypto.wrap import UnwrapError
from providers.emulation import Clock, DocumentStore, EmulatorApp, EmulatorServer, Request, Response

VaultKind = Literal["vault", "managedhsm"]
BodyModel = TypeVar("BodyModel", bound=BaseModel)

KEY_NAME_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
MAX_KEY_NAME = 127
MAX_TAGS = 15
MAX_TAG_LENGTH = 256
MAX_PAGE = 25
RSA_SIZES = (2048, 3072, 4096)
AES_SIZES = (16, 24, 32)
# JWA signature algorithms: the digest each takes, and the curve of the ES ones (RFC 7518 §3.1)
_SIGN_HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
_ES_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "P-256K": ec.SECP256K1(),
}
KEY_OPERATIONS = frozenset(["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"])
DEFAULT_OPS = {
    "RSA": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
    "EC": ["sign", "verify"],
    "oct": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
}
TRANSFER_ENC = "CKM_RSA_AES_KEY_WRAP"
PURGE_PROTECTED_MESSAGE = (
    'Operation "purge" is not allowed because purge protection is enabled for this vault. Key Vault service '
    "will automatically purge it after the retention period has passed."
)


class KeyVaultError(Exception):
    """An error answered in Key Vault's shape; messages never quote request bodies."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return Response.json({"error": error}, status=self.status)


def bad_parameter(message: str) -> KeyVaultError:
    return KeyVaultError(400, "BadParameter", message)


def key_not_found(name: str) -> KeyVaultError:
    return KeyVaultError(
        404,
        "KeyNotFound",
        f"A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be "
        "able to recover it using the correct recovery command.",
    )


# ---------------------------------------------------------------------------------------------
# Wire bodies (what the client sends)
# ---------------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class WireAttributes(_Body):
    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None
    exportable: bool | None = None


class CreateKeyBody(_Body):
    kty: str
    key_size: int | None = None
    public_exponent: int | None = None
    key_ops: list[str] | None = None
    crv: str | None = None
    attributes: WireAttributes = WireAttributes()
    tags: dict[str, str] | None = None


class ImportedJwk(_Body):
    kty: str
    key_ops: list[str] | None = None
    crv: str | None = None
    key_hsm: str | None = Field(default=None, repr=False)


class ImportKeyBody(_Body):
    key: ImportedJwk
    hsm: bool | None = Field(default=None, alias="Hsm")
    attributes: WireAttributes = WireAttributes()
    tags: dict[str, str] | None = None


class UpdateKeyBody(_Body):
    key_ops: list[str] | None = None
    attributes: WireAttributes | None = None
    tags: dict[str, str] | None = None


class KeyOperationBody(_Body):
    alg: str
    value: str = Field(repr=False)
    iv: str | None = None
    aad: str | None = None
    tag: str | None = None


class TransferHeader(_Body):
    kid: str
    alg: str
    enc: str


class TransferBlob(_Body):
    """The .byok JSON a BYOK tool produces (BYOK.md §3.1 step 3)."""

    schema_version: str
    header: TransferHeader
    ciphertext: str = Field(repr=False)
    generator: str | None = None


# ---------------------------------------------------------------------------------------------
# Stored documents
# ---------------------------------------------------------------------------------------------


class StoredAttributes(BaseModel):
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    exportable: bool = False
    created: int
    updated: int


class StoredVersion(BaseModel):
    """One key version. `private` is the emulated HSM's copy of the key (PKCS#8 DER or raw
    secret, base64); it never leaves the emulator."""

    name: str
    version: str
    kty: str
    key_ops: list[str]
    public: dict[str, str] = {}  # JWK public members, base64url: n/e or crv/x/y
    private: str = Field(repr=False)
    imported: bool = False
    fingerprint: str | None = None
    attributes: StoredAttributes
    tags: dict[str, str] = {}


class DeletionRecord(BaseModel):
    deleted_date: int
    scheduled_purge_date: int


class StoredKey(BaseModel):
    name: str  # first spelling of the name
    versions: list[str] = []  # creation order; the last is the current version
    deleted: DeletionRecord | None = None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_b64_any(text: str) -> bytes:
    """Base64 or base64url, padded or not (the spec says base64, the SDK sends base64url)."""
    cleaned = "".join(text.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    alphabet = padded.replace("-", "+").replace("_", "/")
    return base64.b64decode(alphabet, validate=True)


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def public_members(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, crv: str | None) -> dict[str, str]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        numbers = private_key.public_key().public_numbers()
        return {"n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
    point = private_key.public_key().public_numbers()
    size = (private_key.curve.key_size + 7) // 8
    return {"crv": crv or "", "x": b64url(point.x.to_bytes(size, "big")), "y": b64url(point.y.to_bytes(size, "big"))}


@functools.lru_cache(maxsize=256)
def stored_rsa_key(private: str) -> rsa.RSAPrivateKey:
    """A stored RSA key (base64 PKCS#8), parsed once: parsing checks the key, which costs about
    a quarter of a second for RSA-3072, and every import under a KEK would pay it again. Keys in
    the store were made or checked by this emulator, so the check is skipped."""
    der = base64.b64decode(private)
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _curve_name(curve: ec.EllipticCurve) -> str | None:
    for name, known in CURVES.items():
        if known.name == curve.name:
            return name
    return None


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


class AzureKeyVaultEmulator(EmulatorApp):
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

    # -- dispatch ---------------------------------------------------------------------------

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
            return {"encrypt": "Encrypt", "decrypt": "Decrypt", "sign": "Sign"}.get(parts[3], "Unknown")
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

    def _route(self, request: Request) -> Response:
        operation = self.operation(request)
        parts = self._parts(request)
        base = self._base(request)
        if request.query_one("api-version") is None:
            raise bad_parameter("The request URI must contain an api-version parameter.")
        if operation == "GetKeys":
            return self.list_keys(request, base)
        if operation == "GetDeletedKeys":
            return self.list_deleted_keys(request, base)
        if operation == "Unknown":
            raise bad_parameter(f"The operation {request.method} {request.path} is not supported by this vault.")
        name = parts[1]
        handlers = {
            "CreateKey": lambda: self.create_key(name, self._body(request, CreateKeyBody), base),
            "ImportKey": lambda: self.import_key(name, self._body(request, ImportKeyBody), request, base),
            "GetKey": lambda: self.get_key(name, parts[2] if len(parts) > 2 else "", base),
            "UpdateKey": lambda: self.update_key(
                name, parts[2] if len(parts) > 2 else "", self._body(request, UpdateKeyBody), base
            ),
            "GetKeyVersions": lambda: self.list_versions(name, request, base),
            "DeleteKey": lambda: self.delete_key(name, base),
            "GetDeletedKey": lambda: self.get_deleted_key(name, base),
            "PurgeDeletedKey": lambda: self.purge_deleted_key(name),
            "RecoverDeletedKey": lambda: self.recover_deleted_key(name, base),
            "Encrypt": lambda: self.encrypt(name, parts[2], self._body(request, KeyOperationBody), base),
            "Decrypt": lambda: self.decrypt(name, parts[2], self._body(request, KeyOperationBody), base),
            "Sign": lambda: self.sign(name, parts[2], self._body(request, KeyOperationBody), base),
        }
        return handlers[operation]()

    @staticmethod
    def _base(request: Request) -> str:
        host = request.headers.get("host", "127.0.0.1").lower()
        return f"https://{host.removesuffix(':443')}"

    @staticmethod
    def _body(request: Request, model: type[BodyModel]) -> BodyModel:
        try:
            return model.model_validate(request.json())
        except json.JSONDecodeError:
            raise bad_parameter("The request body is not valid JSON.") from None
        except ValidationError as exc:
            # name the fields, never echo their values (they may hold wrapped material)
            fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in exc.errors())
            raise bad_parameter(f"The request body is invalid: check the properties {fields}.") from None

    # -- store access -----------------------------------------------------------------------

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

    # -- bundles ------------------------------------------------------------------------------

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

    # -- validation shared by create and import -----------------------------------------------

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

    def _add_version(self, existing: StoredKey | None, version: StoredVersion) -> None:
        with self.store.transaction():
            key = existing or StoredKey(name=version.name)
            if self.vault_kind == "managedhsm" and len(key.versions) >= 100:
                raise bad_parameter("A Managed HSM key can have at most 100 versions.")
            key.versions.append(version.version)
            self.store.put("keys", key.name.lower(), key.model_dump())
            self._save_version(version.model_copy(update={"name": key.name}))

    # -- operations ---------------------------------------------------------------------------

    def create_key(self, name: str, body: CreateKeyBody, base: str) -> Response:
        with self.store.transaction():
            existing = self._check_name_free(name)
            family = self._check_kty(body.kty, imported=False)
            ops = self._check_ops(body.key_ops, family)
            private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
            crv = (body.crv or "P-256") if family == "EC" else None
            if family == "RSA":
                size = body.key_size or 2048
                if size not in RSA_SIZES:
                    raise bad_parameter(f"RSA key size {size} is not supported; use 2048, 3072 or 4096.")
                private_key = rsa.generate_private_key(public_exponent=body.public_exponent or 65537, key_size=size)
            elif family == "EC":
                assert crv is not None
                if crv not in CURVES:
                    raise bad_parameter(f"The curve {crv!r} is not supported.")
                private_key = ec.generate_private_key(CURVES[crv])
            if private_key is not None:
                secret = private_key.private_bytes(
                    serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                public = public_members(private_key, crv)
            else:
                size = (body.key_size or 256) // 8
                if size not in AES_SIZES:
                    raise bad_parameter("oct-HSM key size must be 128, 192 or 256 bits.")
                secret, public = os.urandom(size), {}
            version = StoredVersion(
                name=name,
                version=uuid.uuid4().hex,
                kty=body.kty,
                key_ops=ops,
                public=public,
                private=base64.b64encode(secret).decode(),
                attributes=self._new_attributes(body.attributes),
                tags=self._check_tags(body.tags),
            )
            self._add_version(existing, version)
        return self.get_key(name, version.version, base)

    def import_key(self, name: str, body: ImportKeyBody, request: Request, base: str) -> Response:
        with self.store.transaction():
            existing = self._check_name_free(name)
            jwk = body.key
            family = self._check_kty(jwk.kty, imported=True)
            if not jwk.kty.endswith("-HSM") or not jwk.key_hsm:
                raise bad_parameter(
                    "This vault accepts only BYOK imports: kty must be RSA-HSM, EC-HSM or oct-HSM with key_hsm set."
                )
            ops = self._check_ops(jwk.key_ops, family)
            if "import" in ops:
                raise bad_parameter("An imported key cannot be a key-exchange key.")
            blob = self._transfer_blob(jwk.key_hsm)
            kek_private = self._transfer_kek(blob, request)
            try:
                material = unwrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_1, kek_private, decode_b64_any(blob.ciphertext))
            except (UnwrapError, binascii.Error, ValueError):
                raise bad_parameter(
                    "The key_hsm ciphertext could not be decrypted with the key-exchange key named in its header."
                ) from None
            public, kind = self._check_material(family, jwk.crv, material)
            version = StoredVersion(
                name=name,
                version=uuid.uuid4().hex,
                kty=jwk.kty,
                key_ops=ops,
                public=public,
                private=base64.b64encode(material.reveal()).decode(),
                imported=True,
                fingerprint=fingerprint_material(kind, material),
                attributes=self._new_attributes(body.attributes),
                tags=self._check_tags(body.tags),
            )
            material.wipe()
            self._add_version(existing, version)
        return self.get_key(name, version.version, base)

    def _transfer_blob(self, key_hsm: str) -> TransferBlob:
        try:
            document = json.loads(decode_b64_any(key_hsm))
            blob = TransferBlob.model_validate(document)
        except (binascii.Error, ValueError, ValidationError):
            raise bad_parameter("The property key_hsm must be an encoded BYOK transfer blob (.byok JSON).") from None
        if blob.schema_version != "1.0.0":
            raise bad_parameter(f"The transfer blob schema_version {blob.schema_version!r} is not supported.")
        if blob.header.alg != "dir" or blob.header.enc != TRANSFER_ENC:
            raise bad_parameter(f"The transfer blob header must have alg 'dir' and enc '{TRANSFER_ENC}'.")
        return blob

    def _transfer_kek(self, blob: TransferBlob, request: Request) -> rsa.RSAPrivateKey:
        """The private half of the KEK the blob's header names: it must be a key of this vault
        whose key_ops are exactly ["import"], enabled and within its validity period."""
        kid = urlsplit(blob.header.kid)
        parts = kid.path.strip("/").split("/")
        own_hosts = {self._base(request).removeprefix("https://"), self.vault_host}
        if kid.scheme != "https" or kid.netloc.lower().removesuffix(":443") not in own_hosts or len(parts) != 3:
            raise bad_parameter("The transfer blob's header.kid must be the versioned id of a key in this vault.")
        if parts[0] != "keys":
            raise bad_parameter("The transfer blob's header.kid must be the versioned id of a key in this vault.")
        kek_key = self._key(parts[1])
        if kek_key is None or kek_key.deleted is not None or parts[2].lower() not in kek_key.versions:
            raise bad_parameter(f"The key-exchange key {blob.header.kid} was not found in this vault.")
        kek = self._version(kek_key, parts[2].lower())
        if kek.key_ops != ["import"] or kek.kty != "RSA-HSM":
            raise bad_parameter("The key-exchange key must be an RSA-HSM key whose only key operation is 'import'.")
        self._check_usable(kek, "import")
        return stored_rsa_key(kek.private)

    def _check_material(
        self, family: str, crv: str | None, material: SecretBytes
    ) -> tuple[dict[str, str], MaterialKind]:
        if family == "oct":
            if len(material) not in AES_SIZES:
                raise bad_parameter("The imported oct-HSM key must be 128, 192 or 256 bits long.")
            return {}, MaterialKind.SYMMETRIC
        try:
            private = serialization.load_der_private_key(material.reveal(), password=None)
        except (ValueError, TypeError):
            raise bad_parameter("The imported key is not a valid PKCS#8 private key.") from None
        if family == "RSA":
            if not isinstance(private, rsa.RSAPrivateKey) or private.key_size not in RSA_SIZES:
                raise bad_parameter("The imported key must be an RSA private key of 2048, 3072 or 4096 bits.")
            return public_members(private, None), MaterialKind.RSA
        if crv is None:
            raise bad_parameter("EC-HSM imports must name the curve (crv).")
        if not isinstance(private, ec.EllipticCurvePrivateKey) or _curve_name(private.curve) != crv:
            raise bad_parameter(f"The imported key is not an EC private key on curve {crv}.")
        return public_members(private, crv), MaterialKind.EC

    def get_key(self, name: str, version: str, base: str) -> Response:
        key = self._live_key(name)
        return Response.json(self._bundle(self._version(key, version), base))

    def update_key(self, name: str, version: str, body: UpdateKeyBody, base: str) -> Response:
        with self.store.transaction():
            key = self._live_key(name)
            stored = self._version(key, version)
            family = stored.kty.removesuffix("-HSM")
            updates: dict[str, Any] = {}
            if body.key_ops is not None:
                updates["key_ops"] = self._check_ops(body.key_ops, family)
            if body.tags is not None:
                updates["tags"] = self._check_tags(body.tags)
            attributes = stored.attributes.model_copy(update={"updated": self._now()})
            if body.attributes is not None:
                changed = body.attributes.model_dump(exclude_none=True, exclude={"exportable"})
                attributes = attributes.model_copy(update=changed)
            updates["attributes"] = attributes
            stored = stored.model_copy(update=updates)
            self._save_version(stored)
        return Response.json(self._bundle(stored, base))

    def list_keys(self, request: Request, base: str) -> Response:
        live = [k for k in self._sorted_keys() if k.deleted is None and k.versions]
        page, next_link = self._page(request, base, "/keys", [k.name for k in live])
        items = [self._item(self._version(k, ""), base, versioned=False) for k in live if k.name in page]
        return Response.json({"value": items, "nextLink": next_link})

    def list_versions(self, name: str, request: Request, base: str) -> Response:
        key = self._live_key(name)
        page, next_link = self._page(request, base, f"/keys/{key.name}/versions", key.versions, ordered=False)
        items = [self._item(self._version(key, v), base, versioned=True) for v in page]
        return Response.json({"value": items, "nextLink": next_link})

    def list_deleted_keys(self, request: Request, base: str) -> Response:
        deleted = [k for k in self._sorted_keys() if k.deleted is not None]
        page, next_link = self._page(request, base, "/deletedkeys", [k.name for k in deleted])
        items = [
            {**self._item(self._version(k, ""), base, versioned=False), **self._deleted_fields(k, base)}
            for k in deleted
            if k.name in page
        ]
        return Response.json({"value": items, "nextLink": next_link})

    def _sorted_keys(self) -> list[StoredKey]:
        keys = [StoredKey.model_validate(doc) for _, doc in self.store.list("keys")]
        return sorted(keys, key=lambda k: k.name.lower())

    def _page(
        self, request: Request, base: str, path: str, names: list[str], *, ordered: bool = True
    ) -> tuple[list[str], str | None]:
        """One page of `names` after the `$skiptoken` marker, and the next link if more remain."""
        raw_size = request.query_one("maxresults")
        try:
            size = int(raw_size) if raw_size else MAX_PAGE
        except ValueError:
            raise bad_parameter("maxresults must be an integer from 1 to 25.") from None
        if not 1 <= size <= MAX_PAGE:
            raise bad_parameter("maxresults must be an integer from 1 to 25.")
        marker = request.query_one("$skiptoken")
        start = 0
        if marker:
            after = decode_b64_any(marker).decode()
            if ordered:
                start = next((i for i, n in enumerate(names) if n.lower() > after.lower()), len(names))
            else:
                start = names.index(after) + 1 if after in names else len(names)
        page = names[start : start + size]
        if start + size >= len(names):
            return page, None
        token = b64url(page[-1].encode())
        api_version = request.query_one("api-version") or ""
        return page, f"{base}{path}?api-version={quote(api_version)}&$skiptoken={token}&maxresults={size}"

    def delete_key(self, name: str, base: str) -> Response:
        with self.store.transaction():
            key = self._live_key(name)
            now = self._now()
            retention = int(timedelta(days=self.retention_days).total_seconds())
            key.deleted = DeletionRecord(deleted_date=now, scheduled_purge_date=now + retention)
            self.store.put("deletions", key.name.lower(), {"scheduled_purge_date": now + retention})
            self.store.put("keys", key.name.lower(), key.model_dump())
            bundle = self._bundle(self._version(key, ""), base)
        return Response.json({**bundle, **self._deleted_fields(key, base)})

    def _deleted_key(self, name: str) -> StoredKey:
        key = self._key(name)
        if key is None or key.deleted is None:
            raise KeyVaultError(404, "KeyNotFound", f"Deleted Key not found: {name}")
        return key

    def get_deleted_key(self, name: str, base: str) -> Response:
        key = self._deleted_key(name)
        bundle = self._bundle(self._version(key, ""), base)
        return Response.json({**bundle, **self._deleted_fields(key, base)})

    def purge_deleted_key(self, name: str) -> Response:
        key = self._deleted_key(name)
        if self.purge_protection:
            raise KeyVaultError(403, "Forbidden", PURGE_PROTECTED_MESSAGE)
        self._purge(key)
        return Response(status=204)

    def recover_deleted_key(self, name: str, base: str) -> Response:
        with self.store.transaction():
            key = self._deleted_key(name)
            key.deleted = None
            self.store.delete("deletions", key.name.lower())
            self.store.put("keys", key.name.lower(), key.model_dump())
        return self.get_key(name, "", base)

    # -- cryptographic operations -------------------------------------------------------------

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
        chosen = _SIGN_HASHES.get(alg[2:])
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
        elif alg[:2] == "ES" and isinstance(private, ec.EllipticCurvePrivateKey) and _ES_CURVES.get(alg) == _curve_name(private.curve):
            r, s = utils.decode_dss_signature(private.sign(digest, ec.ECDSA(prehashed)))
            size = (private.curve.key_size + 7) // 8
            signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        else:
            raise bad_parameter(f"The algorithm {alg} is not supported for a {stored.kty} key.")
        return Response.json({"kid": kid, "value": b64url(signature)})

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
                fresh = SecretBytes(
                    private.private_bytes(
                        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
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

    @staticmethod
    def _check_gcm_size(alg: str, secret: bytes) -> None:
        if len(secret) * 8 != int(alg[1:4]):
            raise bad_parameter(f"The algorithm {alg} does not match this key's size.")

    @staticmethod
    def _oaep(alg: str) -> padding.OAEP:
        digest: hashes.HashAlgorithm = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()
        return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


class ManagedHsmEmulator(AzureKeyVaultEmulator):
    """A Managed HSM: hardware keys only, oct-HSM imports allowed, soft delete always on."""

    vault_kind: ClassVar[VaultKind] = "managedhsm"


def emulator_class(
    kind: VaultKind, *, purge_protection: bool = False, retention_days: int = 90, vault_url: str | None = None
) -> type[AzureKeyVaultEmulator]:
    """The app class `start_embedded` should build for a vault of this kind and these properties
    (it constructs apps from `(store, clock)` alone, so the properties travel as class defaults).
    `vault_url` names the vault the emulator stands in for."""
    parent = ManagedHsmEmulator if kind == "managedhsm" else AzureKeyVaultEmulator
    vault_host = urlsplit(vault_url).hostname if vault_url else None
    if not purge_protection and retention_days == 90 and vault_host is None:
        return parent
    return type(
        f"{parent.__name__}WithOptions",
        (parent,),
        {
            "default_purge_protection": purge_protection,
            "default_retention_days": retention_days,
            "vault_host": vault_host,
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Serve one emulated vault until killed; the URL is the first line of stdout, the CA
    certificate's path the second."""
    parser = argparse.ArgumentParser(prog="python -m providers.azure.emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--kind", choices=["vault", "managedhsm"], default="vault")
    parser.add_argument("--purge-protection", action="store_true")
    parser.add_argument("--retention-days", type=int, default=90)
    parser.add_argument("--vault-url", help="The vault this emulator stands in for, e.g. https://x.vault.azure.net.")
    args = parser.parse_args(argv)
    store = DocumentStore(args.data_dir / "azure.sqlite")
    clock = Clock(float(store.get_meta("clock_offset") or 0.0))
    app_class = emulator_class(
        args.kind, purge_protection=args.purge_protection, retention_days=args.retention_days, vault_url=args.vault_url
    )
    server = EmulatorServer(app_class(store, clock), port=args.port, cert_dir=args.data_dir)
    server.faults.configure({"latency_ms": args.latency_ms})
    print(server.url, flush=True)
    print(f"ca-cert: {server.ca_cert}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
