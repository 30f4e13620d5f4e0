"""A local Google Cloud KMS: the `cloudkms.googleapis.com/v1` REST API that the official
`google-cloud-kms` client speaks with `transport="rest"`, enforcing the import rules of BYOK.md §4.

It keeps key rings, crypto keys, versions and import jobs in a `DocumentStore`, takes every time
decision from its `Clock`, and really unwraps imported material with the private half of the
import job's RSA key. Choices where Google's behaviour is not documented, made so that clients
must handle the general case:

- An import job answers `PENDING_GENERATION` to its creation and turns `ACTIVE` on the first
  read after it (its RSA key is generated then); it is `EXPIRED` three days after creation.
- `ImportCryptoKeyVersion` checks the request synchronously (missing or double wrapped-key
  fields, unknown algorithm, inactive job, protection-level mismatch, direct OAEP for an RSA
  target, ineligible re-import): `400 INVALID_ARGUMENT` for a malformed request,
  `400 FAILED_PRECONDITION` for a resource in the wrong state. Material that does not unwrap,
  has the wrong length or format, or differs from what a re-imported version held, is accepted
  as a version in `PENDING_IMPORT` that turns `IMPORT_FAILED` with `importFailureReason` on the
  next read; good material turns `ENABLED` on the next read.
- An imported version never becomes primary on its own: `updatePrimaryVersion` sets it.
- A version in `DESTROY_SCHEDULED` becomes `DESTROYED` once the clock passes `destroyTime`;
  its material is dropped then (a digest is kept so re-import can demand identical bytes).

Enums are accepted as names or numbers; answers use numbers when the request asks for
`enum-encoding=int` (the client always does) and names otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import UnwrapError, WrapMethod, unwrap
from providers.emulation.app import EmulatorApp, Request, Response
from providers.emulation.clock import Clock
from providers.emulation.store import DocumentStore

# ---------------------------------------------------------------------------------------------
# Enums of google/cloud/kms/v1/resources.proto (name <-> number)
# ---------------------------------------------------------------------------------------------


class ProtoEnum:
    def __init__(self, field: str, members: dict[str, int]) -> None:
        self.field = field
        self.by_name = members
        self.by_number = {v: k for k, v in members.items()}

    def parse(self, value: Any) -> str | None:
        """A member name from a JSON value (name, number or numeric string); None if unknown."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return self.by_number.get(int(value))
        if isinstance(value, str) and value in self.by_name:
            return value
        return None

    def render(self, name: str, as_int: bool) -> str | int:
        return self.by_name[name] if as_int else name


PURPOSE = ProtoEnum(
    "purpose",
    {
        "CRYPTO_KEY_PURPOSE_UNSPECIFIED": 0,
        "ENCRYPT_DECRYPT": 1,
        "ASYMMETRIC_SIGN": 5,
        "ASYMMETRIC_DECRYPT": 6,
        "RAW_ENCRYPT_DECRYPT": 7,
        "MAC": 9,
        "KEY_ENCAPSULATION": 10,
        "AES_WRAPPING": 11,
    },
)
PROTECTION_LEVEL = ProtoEnum(
    "protectionLevel",
    {
        "PROTECTION_LEVEL_UNSPECIFIED": 0,
        "SOFTWARE": 1,
        "HSM": 2,
        "EXTERNAL": 3,
        "EXTERNAL_VPC": 4,
        "HSM_SINGLE_TENANT": 5,
    },
)
ALGORITHM = ProtoEnum(
    "algorithm",
    {
        "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED": 0,
        "GOOGLE_SYMMETRIC_ENCRYPTION": 1,
        "AES_128_GCM": 41,
        "AES_256_GCM": 19,
        "AES_128_CBC": 42,
        "AES_256_CBC": 43,
        "AES_128_CTR": 44,
        "AES_256_CTR": 45,
        "RSA_SIGN_PSS_2048_SHA256": 2,
        "RSA_SIGN_PSS_3072_SHA256": 3,
        "RSA_SIGN_PSS_4096_SHA256": 4,
        "RSA_SIGN_PSS_4096_SHA512": 15,
        "RSA_SIGN_PKCS1_2048_SHA256": 5,
        "RSA_SIGN_PKCS1_3072_SHA256": 6,
        "RSA_SIGN_PKCS1_4096_SHA256": 7,
        "RSA_SIGN_PKCS1_4096_SHA512": 16,
        "RSA_SIGN_RAW_PKCS1_2048": 28,
        "RSA_SIGN_RAW_PKCS1_3072": 29,
        "RSA_SIGN_RAW_PKCS1_4096": 30,
        "RSA_DECRYPT_OAEP_2048_SHA256": 8,
        "RSA_DECRYPT_OAEP_3072_SHA256": 9,
        "RSA_DECRYPT_OAEP_4096_SHA256": 10,
        "RSA_DECRYPT_OAEP_4096_SHA512": 17,
        "RSA_DECRYPT_OAEP_2048_SHA1": 37,
        "RSA_DECRYPT_OAEP_3072_SHA1": 38,
        "RSA_DECRYPT_OAEP_4096_SHA1": 39,
        "EC_SIGN_P256_SHA256": 12,
        "EC_SIGN_P384_SHA384": 13,
        "EC_SIGN_SECP256K1_SHA256": 31,
        "EC_SIGN_ED25519": 40,
        "HMAC_SHA256": 32,
        "HMAC_SHA1": 33,
        "HMAC_SHA384": 34,
        "HMAC_SHA512": 35,
        "HMAC_SHA224": 36,
        "EXTERNAL_SYMMETRIC_ENCRYPTION": 18,
    },
)
VERSION_STATE = ProtoEnum(
    "state",
    {
        "CRYPTO_KEY_VERSION_STATE_UNSPECIFIED": 0,
        "PENDING_GENERATION": 5,
        "ENABLED": 1,
        "DISABLED": 2,
        "DESTROYED": 3,
        "DESTROY_SCHEDULED": 4,
        "PENDING_IMPORT": 6,
        "IMPORT_FAILED": 7,
        "GENERATION_FAILED": 8,
    },
)
IMPORT_METHOD = ProtoEnum(
    "importMethod",
    {
        "IMPORT_METHOD_UNSPECIFIED": 0,
        "RSA_OAEP_3072_SHA1_AES_256": 1,
        "RSA_OAEP_4096_SHA1_AES_256": 2,
        "RSA_OAEP_3072_SHA256_AES_256": 3,
        "RSA_OAEP_4096_SHA256_AES_256": 4,
        "RSA_OAEP_3072_SHA256": 5,
        "RSA_OAEP_4096_SHA256": 6,
        "HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM": 8,
        "HPKE_KEM_ML_KEM_1024_HKDF_SHA256_AES_256_GCM": 9,
        "HPKE_KEM_XWING_HKDF_SHA256_AES_256_GCM": 10,
    },
)
IMPORT_JOB_STATE = ProtoEnum(
    "state", {"IMPORT_JOB_STATE_UNSPECIFIED": 0, "PENDING_GENERATION": 1, "ACTIVE": 2, "EXPIRED": 3}
)

# The RSA-based import methods: how the blob is built and the size of the job's key.
IMPORT_METHOD_WRAPS: dict[str, tuple[WrapMethod, int]] = {
    "RSA_OAEP_3072_SHA1_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 3072),
    "RSA_OAEP_4096_SHA1_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 4096),
    "RSA_OAEP_3072_SHA256_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 3072),
    "RSA_OAEP_4096_SHA256_AES_256": (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 4096),
    "RSA_OAEP_3072_SHA256": (WrapMethod.RSAES_OAEP_SHA_256, 3072),
    "RSA_OAEP_4096_SHA256": (WrapMethod.RSAES_OAEP_SHA_256, 4096),
}

IMPORT_JOB_LIFETIME = timedelta(days=3)
DEFAULT_DESTROY_DURATION = timedelta(days=30)
MIN_DESTROY_DURATION = timedelta(hours=24)
MAX_DESTROY_DURATION = timedelta(days=120)
RESOURCE_ID = re.compile(r"^[a-zA-Z0-9_-]{1,63}$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class AlgorithmRule:
    """What an algorithm's imported material must look like, and what it can do."""

    purpose: str
    kind: MaterialKind
    raw_length: int | None = None  # secret keys: exact byte length
    rsa_bits: int | None = None  # RSA private keys: modulus size
    curve: type[ec.EllipticCurve] | None = None
    ed25519: bool = False
    hsm_only: bool = False


def _algorithm_rules() -> dict[str, AlgorithmRule]:
    rules: dict[str, AlgorithmRule] = {
        "GOOGLE_SYMMETRIC_ENCRYPTION": AlgorithmRule("ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC, raw_length=32),
        "EC_SIGN_P256_SHA256": AlgorithmRule("ASYMMETRIC_SIGN", MaterialKind.EC, curve=ec.SECP256R1),
        "EC_SIGN_P384_SHA384": AlgorithmRule("ASYMMETRIC_SIGN", MaterialKind.EC, curve=ec.SECP384R1),
        "EC_SIGN_SECP256K1_SHA256": AlgorithmRule(
            "ASYMMETRIC_SIGN", MaterialKind.EC, curve=ec.SECP256K1, hsm_only=True
        ),
        "EC_SIGN_ED25519": AlgorithmRule("ASYMMETRIC_SIGN", MaterialKind.EC, ed25519=True),
    }
    for mode in ("GCM", "CBC", "CTR"):
        rules[f"AES_128_{mode}"] = AlgorithmRule("RAW_ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC, raw_length=16)
        rules[f"AES_256_{mode}"] = AlgorithmRule("RAW_ENCRYPT_DECRYPT", MaterialKind.SYMMETRIC, raw_length=32)
    for digest, length in (("SHA1", 20), ("SHA224", 28), ("SHA256", 32), ("SHA384", 48), ("SHA512", 64)):
        rules[f"HMAC_{digest}"] = AlgorithmRule("MAC", MaterialKind.HMAC, raw_length=length)
    for name in ALGORITHM.by_name:
        match = re.match(r"^RSA_(SIGN|DECRYPT)_\w*?(2048|3072|4096)", name)
        if match:
            purpose = "ASYMMETRIC_SIGN" if match.group(1) == "SIGN" else "ASYMMETRIC_DECRYPT"
            rules[name] = AlgorithmRule(purpose, MaterialKind.RSA, rsa_bits=int(match.group(2)))
    return rules


ALGORITHM_RULES = _algorithm_rules()


class ApiError(Exception):
    """A Google API error: HTTP status, canonical code and message (never a request body)."""

    def __init__(self, http: int, status: str, message: str) -> None:
        super().__init__(message)
        self.http = http
        self.status = status
        self.message = message

    def response(self) -> Response:
        return Response.json(
            {"error": {"code": self.http, "message": self.message, "status": self.status}},
            status=self.http,
            content_type="application/json; charset=UTF-8",
        )


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def _precondition(message: str) -> ApiError:
    return ApiError(400, "FAILED_PRECONDITION", message)


def _not_found(name: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{name} not found.")


FAULT_STATUSES = {
    429: ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests' of service 'cloudkms.googleapis.com'."),
    500: ("INTERNAL", "Internal error encountered."),
    502: ("UNAVAILABLE", "Bad gateway."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request deadline was exceeded."),
}


# ---------------------------------------------------------------------------------------------
# Small helpers over JSON (camelCase from the client; snake_case accepted too)
# ---------------------------------------------------------------------------------------------


def _field(body: dict[str, Any], camel: str) -> Any:
    if camel in body:
        return body[camel]
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
    return body.get(snake)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _parse_duration(value: Any) -> timedelta:
    if not isinstance(value, str) or not re.fullmatch(r"\d+(\.\d+)?s", value):
        raise _invalid(f'Invalid duration {value!r}: expected seconds such as "86400s".')
    return timedelta(seconds=float(value[:-1]))


def _b64decode(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid(f"{field} must be base64-encoded bytes.")
    try:
        padded = value + "=" * (-len(value) % 4)
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        raise _invalid(f"{field} is not valid base64.") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _label_char(char: str, first: bool) -> bool:
    if first:
        return char.isalpha() and char.islower()
    return (char.isalpha() and char.islower()) or char.isdigit() or char in "_-"


def validate_labels(labels: Any) -> dict[str, str]:
    """Google's label rules: at most 64; keys 1-63 chars starting with a lowercase letter; values
    0-63 chars; lowercase letters, digits, `_` and `-` only."""
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise _invalid("labels must map strings to strings.")
    if len(labels) > 64:
        raise _invalid(f"A resource may carry at most 64 labels; this request has {len(labels)}.")
    for key, value in labels.items():
        if not 1 <= len(key) <= 63 or not all(_label_char(c, i == 0) for i, c in enumerate(key)):
            raise _invalid(
                f"Label key {key!r} is invalid: keys are 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a lowercase letter."
            )
        if len(value) > 63 or not all(_label_char(c, False) for c in value):
            raise _invalid(
                f"Label value for key {key!r} is invalid: values are 0-63 lowercase letters, digits, '_' or '-'."
            )
    return dict(labels)


# ---------------------------------------------------------------------------------------------
# List filters (the subset of AIP-160 clients use on KMS: conjunctions of field comparisons)
# ---------------------------------------------------------------------------------------------

_TERM = re.compile(r'^\s*([A-Za-z_][\w.\-]*)\s*(!=|=|:)\s*("(?:[^"\\]|\\.)*"|[^\s"]+)\s*$')


def compile_filter(text: str | None) -> Callable[[dict[str, Any]], bool]:
    if not text:
        return lambda resource: True
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.match(part)
        if not match:
            raise _invalid(f"Invalid filter {text!r}: expected terms such as labels.env=prod joined by AND.")
        path, op, raw = match.groups()
        value = json.loads(raw) if raw.startswith('"') else raw
        terms.append((path.split("."), op, value))

    def matches(resource: dict[str, Any]) -> bool:
        for path, op, value in terms:
            found: Any = resource
            for step in path:
                found = found.get(step) if isinstance(found, dict) else None
            if op == ":" and value == "*":
                ok = found is not None
            elif op == "!=":
                ok = found is None or str(found) != value
            else:
                ok = found is not None and str(found) == value
            if not ok:
                return False
        return True

    return matches


def _page(request: Request, items: list[dict[str, Any]], field: str, filtered: bool) -> dict[str, Any]:
    size_text = request.query_one("pageSize") or request.query_one("page_size") or "0"
    token = request.query_one("pageToken") or request.query_one("page_token") or ""
    try:
        size = int(size_text)
    except ValueError:
        raise _invalid("pageSize must be an integer.") from None
    if size < 0:
        raise _invalid("pageSize must not be negative.")
    size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise _invalid("Invalid page token.") from None
    chunk = items[start : start + size]
    answer: dict[str, Any] = {}
    if chunk:
        answer[field] = chunk
    if start + size < len(items):
        answer["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
    if not filtered:
        answer["totalSize"] = len(items)
    return answer


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------

_LOC = r"projects/[^/]+/locations/[^/]+"
_RING = _LOC + r"/keyRings/[^/:]+"
_KEY = _RING + r"/cryptoKeys/[^/:]+"
_VERSION = _KEY + r"/cryptoKeyVersions/[^/:]+"
_JOB = _RING + r"/importJobs/[^/:]+"

RINGS, KEYS, VERSIONS, JOBS = "keyRings", "cryptoKeys", "cryptoKeyVersions", "importJobs"
Handler = Callable[[Request, str], Response]


class GcpKmsEmulator(EmulatorApp):
    """Google Cloud KMS v1 over REST, for the unmodified `google-cloud-kms` client."""

    name = "gcp"

    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        super().__init__(store, clock)
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = [
            ("GET", re.compile(rf"^/v1/({_LOC})/keyRings$"), "ListKeyRings", self._list_key_rings),
            ("POST", re.compile(rf"^/v1/({_LOC})/keyRings$"), "CreateKeyRing", self._create_key_ring),
            ("GET", re.compile(rf"^/v1/({_RING})$"), "GetKeyRing", self._get_key_ring),
            ("GET", re.compile(rf"^/v1/({_RING})/cryptoKeys$"), "ListCryptoKeys", self._list_crypto_keys),
            ("POST", re.compile(rf"^/v1/({_RING})/cryptoKeys$"), "CreateCryptoKey", self._create_crypto_key),
            ("GET", re.compile(rf"^/v1/({_KEY})$"), "GetCryptoKey", self._get_crypto_key),
            ("PATCH", re.compile(rf"^/v1/({_KEY})$"), "UpdateCryptoKey", self._update_crypto_key),
            ("POST", re.compile(rf"^/v1/({_KEY}(?:/cryptoKeyVersions/[^/:]+)?):encrypt$"), "Encrypt", self._encrypt),
            ("POST", re.compile(rf"^/v1/({_KEY}):decrypt$"), "Decrypt", self._decrypt),
            (
                "POST",
                re.compile(rf"^/v1/({_KEY}):updatePrimaryVersion$"),
                "UpdateCryptoKeyPrimaryVersion",
                self._update_primary_version,
            ),
            ("GET", re.compile(rf"^/v1/({_KEY})/cryptoKeyVersions$"), "ListCryptoKeyVersions", self._list_versions),
            (
                "POST",
                re.compile(rf"^/v1/({_KEY})/cryptoKeyVersions:import$"),
                "ImportCryptoKeyVersion",
                self._import_version,
            ),
            ("GET", re.compile(rf"^/v1/({_VERSION})$"), "GetCryptoKeyVersion", self._get_version),
            ("PATCH", re.compile(rf"^/v1/({_VERSION})$"), "UpdateCryptoKeyVersion", self._update_version),
            ("POST", re.compile(rf"^/v1/({_VERSION}):destroy$"), "DestroyCryptoKeyVersion", self._destroy_version),
            ("POST", re.compile(rf"^/v1/({_VERSION}):restore$"), "RestoreCryptoKeyVersion", self._restore_version),
            ("POST", re.compile(rf"^/v1/({_VERSION}):macSign$"), "MacSign", self._mac_sign),
            ("POST", re.compile(rf"^/v1/({_VERSION}):macVerify$"), "MacVerify", self._mac_verify),
            ("POST", re.compile(rf"^/v1/({_VERSION}):asymmetricSign$"), "AsymmetricSign", self._asymmetric_sign),
            ("GET", re.compile(rf"^/v1/({_VERSION})/publicKey$"), "GetPublicKey", self._get_public_key),
            ("GET", re.compile(rf"^/v1/({_RING})/importJobs$"), "ListImportJobs", self._list_import_jobs),
            ("POST", re.compile(rf"^/v1/({_RING})/importJobs$"), "CreateImportJob", self._create_import_job),
            ("GET", re.compile(rf"^/v1/({_JOB})$"), "GetImportJob", self._get_import_job),
        ]

    # -- EmulatorApp ------------------------------------------------------------------------------

    def _match(self, request: Request) -> tuple[str, Handler, str] | None:
        path = unquote(request.path)
        for method, pattern, operation, handler in self._routes:
            match = pattern.match(path)
            if match and request.method == method:
                return operation, handler, match.group(1)
        return None

    def operation(self, request: Request) -> str:
        found = self._match(request)
        return found[0] if found else "Unknown"

    def handle(self, request: Request) -> Response:
        found = self._match(request)
        if found is None:
            return ApiError(404, "NOT_FOUND", f"Method {request.method} {request.path} not found.").response()
        _, handler, name = found
        try:
            return handler(request, name)
        except ApiError as error:
            return error.response()

    def fault_response(self, request: Request, status: int) -> Response:
        code, message = FAULT_STATUSES.get(status, ("UNKNOWN", "Injected failure."))
        return ApiError(status, code, message).response()

    def material_fingerprints(self) -> list[dict[str, Any]]:
        held = []
        for name, doc in self.store.list(VERSIONS):
            doc = self._settle_version(doc)
            if doc.get("_material") and doc["state"] != "DESTROYED" and doc.get("importJob"):
                key, _, version = name.rpartition("/cryptoKeyVersions/")
                held.append({"key": key, "version": version, "fingerprint": doc["_fingerprint"]})
        return held

    def swap_material(self, key: str, version: str | None) -> str | None:
        with self.store.transaction():
            stored_key = self.store.get(KEYS, key)
            if stored_key is None:
                return None
            held = [
                (name, doc)
                for name, doc in self.store.list(VERSIONS)
                if name.startswith(key + "/cryptoKeyVersions/") and doc.get("_material")
            ]
            wanted = version or stored_key.get("_primary")
            chosen = [(n, d) for n, d in held if wanted is None or n.endswith("/" + str(wanted))]
            if not chosen:
                return None
            name, doc = max(chosen, key=lambda item: int(item[0].rsplit("/", 1)[-1]))
            rule = ALGORITHM_RULES[doc["algorithm"]]
            material = _fresh_material(rule)
            doc["_material"] = _b64(material)
            doc["_fingerprint"] = fingerprint_material(rule.kind, SecretBytes(material))
            self.store.put(VERSIONS, name, doc)
            return str(doc["_fingerprint"])

    # -- rendering --------------------------------------------------------------------------------

    @staticmethod
    def _ints(request: Request) -> bool:
        return "enum-encoding=int" in unquote(request.target)

    def _ok(self, request: Request, payload: dict[str, Any]) -> Response:
        return Response.json(payload, content_type="application/json; charset=UTF-8")

    @staticmethod
    def _public(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def _render_version(self, doc: dict[str, Any], ints: bool) -> dict[str, Any]:
        view = self._public(doc)
        view["state"] = VERSION_STATE.render(doc["state"], ints)
        view["algorithm"] = ALGORITHM.render(doc["algorithm"], ints)
        view["protectionLevel"] = PROTECTION_LEVEL.render(doc["protectionLevel"], ints)
        return view

    def _render_key(self, doc: dict[str, Any], ints: bool) -> dict[str, Any]:
        view = self._public(doc)
        view["purpose"] = PURPOSE.render(doc["purpose"], ints)
        template = dict(doc["versionTemplate"])
        template["algorithm"] = ALGORITHM.render(template["algorithm"], ints)
        template["protectionLevel"] = PROTECTION_LEVEL.render(template["protectionLevel"], ints)
        view["versionTemplate"] = template
        primary_id = doc.get("_primary")
        if primary_id:
            primary = self.store.get(VERSIONS, f"{doc['name']}/cryptoKeyVersions/{primary_id}")
            if primary is not None:
                view["primary"] = self._render_version(self._settle_version(primary), ints)
        return view

    def _render_job(self, doc: dict[str, Any], ints: bool) -> dict[str, Any]:
        view = self._public(doc)
        view["state"] = IMPORT_JOB_STATE.render(doc["state"], ints)
        view["importMethod"] = IMPORT_METHOD.render(doc["importMethod"], ints)
        view["protectionLevel"] = PROTECTION_LEVEL.render(doc["protectionLevel"], ints)
        return view

    # -- lazy state transitions -------------------------------------------------------------------

    def _settle_version(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Apply what time and the pending import outcome have decided since the last read."""
        now = self.clock.now()
        changed = False
        if doc["state"] == "PENDING_IMPORT" and "_outcome" in doc:
            outcome = doc.pop("_outcome")
            doc["state"] = outcome["state"]
            if outcome["state"] == "ENABLED":
                doc["importTime"] = outcome["importTime"]
                doc.pop("importFailureReason", None)
            else:
                doc["importFailureReason"] = outcome["reason"]
            changed = True
        if doc["state"] == "DESTROY_SCHEDULED" and now >= _parse_timestamp(doc["destroyTime"]):
            doc["state"] = "DESTROYED"
            doc["destroyEventTime"] = doc["destroyTime"]
            doc.pop("_material", None)
            changed = True
        if changed:
            self.store.put(VERSIONS, doc["name"], doc)
        return doc

    def _settle_job(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A job's key is generated on the first read after creation; it expires with the clock."""
        now = self.clock.now()
        if doc["state"] == "PENDING_GENERATION":
            _, bits = IMPORT_METHOD_WRAPS[doc["importMethod"]]
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            with self.store.transaction():
                current = self.store.get(JOBS, doc["name"]) or doc
                if current["state"] == "PENDING_GENERATION":
                    current["state"] = "ACTIVE"
                    current["generateTime"] = _timestamp(now)
                    current["_privateKey"] = private_key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    ).decode()
                    current["publicKey"] = {
                        "pem": private_key.public_key()
                        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                        .decode()
                    }
                    self.store.put(JOBS, current["name"], current)
                doc = current
        if doc["state"] == "ACTIVE" and now >= _parse_timestamp(doc["expireTime"]):
            doc["state"] = "EXPIRED"
            doc["expireEventTime"] = doc["expireTime"]
            doc.pop("publicKey", None)
            self.store.put(JOBS, doc["name"], doc)
        return doc

    # -- loading ----------------------------------------------------------------------------------

    def _ring(self, name: str) -> dict[str, Any]:
        doc = self.store.get(RINGS, name)
        if doc is None:
            raise _not_found(f"KeyRing {name}")
        return doc

    def _key(self, name: str) -> dict[str, Any]:
        doc = self.store.get(KEYS, name)
        if doc is None:
            raise _not_found(f"CryptoKey {name}")
        return doc

    def _version(self, name: str) -> dict[str, Any]:
        doc = self.store.get(VERSIONS, name)
        if doc is None:
            raise _not_found(f"CryptoKeyVersion {name}")
        return self._settle_version(doc)

    def _job(self, name: str) -> dict[str, Any]:
        doc = self.store.get(JOBS, name)
        if doc is None:
            raise _not_found(f"ImportJob {name}")
        return self._settle_job(doc)

    def _versions_of(self, key_name: str) -> list[dict[str, Any]]:
        return [self._settle_version(doc) for _, doc in self.store.list(VERSIONS, key_name + "/cryptoKeyVersions/")]

    @staticmethod
    def _new_id(request: Request, parameter: str, kind: str) -> str:
        resource_id = request.query_one(parameter) or ""
        if not RESOURCE_ID.match(resource_id):
            raise _invalid(f"{kind} id {resource_id!r} is invalid: it must match [a-zA-Z0-9_-]{{1,63}}.")
        return resource_id

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise _invalid("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object.")
        return body

    # -- key rings --------------------------------------------------------------------------------

    def _create_key_ring(self, request: Request, parent: str) -> Response:
        ring_id = self._new_id(request, "keyRingId", "KeyRing")
        name = f"{parent}/keyRings/{ring_id}"
        with self.store.transaction():
            if self.store.get(RINGS, name) is not None:
                raise ApiError(409, "ALREADY_EXISTS", f"KeyRing {name} already exists.")
            doc = {"name": name, "createTime": _timestamp(self.clock.now())}
            self.store.put(RINGS, name, doc)
        return self._ok(request, doc)

    def _get_key_ring(self, request: Request, name: str) -> Response:
        return self._ok(request, self._ring(name))

    def _list_key_rings(self, request: Request, parent: str) -> Response:
        keep = compile_filter(request.query_one("filter"))
        rings = [doc for _, doc in self.store.list(RINGS, parent + "/keyRings/") if keep(doc)]
        return self._ok(request, _page(request, rings, "keyRings", bool(request.query_one("filter"))))

    # -- crypto keys ------------------------------------------------------------------------------

    def _create_crypto_key(self, request: Request, ring: str) -> Response:
        key_id = self._new_id(request, "cryptoKeyId", "CryptoKey")
        self._ring(ring)
        body = self._body(request)
        purpose = PURPOSE.parse(_field(body, "purpose"))
        if purpose in (None, "CRYPTO_KEY_PURPOSE_UNSPECIFIED"):
            raise _invalid("CryptoKey.purpose is required.")
        template = _field(body, "versionTemplate") or {}
        algorithm = ALGORITHM.parse(_field(template, "algorithm"))
        if algorithm in (None, "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED"):
            raise _invalid("CryptoKey.version_template.algorithm is required.")
        rule = ALGORITHM_RULES.get(algorithm)
        if rule is None or rule.purpose != purpose:
            raise _invalid(f"Algorithm {algorithm} is not compatible with purpose {purpose}.")
        level = PROTECTION_LEVEL.parse(_field(template, "protectionLevel") or "SOFTWARE")
        if level in (None, "PROTECTION_LEVEL_UNSPECIFIED"):
            level = "SOFTWARE"
        if rule.hsm_only and level == "SOFTWARE":
            raise _invalid(f"Algorithm {algorithm} requires protection level HSM.")
        import_only = bool(_field(body, "importOnly"))
        skip_initial = (request.query_one("skipInitialVersionCreation") or "false").lower() == "true"
        if import_only and not skip_initial:
            raise _invalid("Keys with import_only=true must be created with skip_initial_version_creation=true.")
        duration_text = _field(body, "destroyScheduledDuration")
        duration = _parse_duration(duration_text) if duration_text is not None else DEFAULT_DESTROY_DURATION
        if not MIN_DESTROY_DURATION <= duration <= MAX_DESTROY_DURATION:
            raise _invalid("destroy_scheduled_duration must be between 24 hours and 120 days.")
        labels = validate_labels(_field(body, "labels"))
        name = f"{ring}/cryptoKeys/{key_id}"
        now = self.clock.now()
        doc: dict[str, Any] = {
            "name": name,
            "purpose": purpose,
            "createTime": _timestamp(now),
            "versionTemplate": {"algorithm": algorithm, "protectionLevel": level},
            "importOnly": import_only,
            "destroyScheduledDuration": f"{int(duration.total_seconds())}s",
            "_nextVersion": 1,
        }
        if labels:
            doc["labels"] = labels
        with self.store.transaction():
            if self.store.get(KEYS, name) is not None:
                raise ApiError(409, "ALREADY_EXISTS", f"CryptoKey {name} already exists.")
            self.store.put(KEYS, name, doc)
            if not skip_initial:
                self._generate_version(doc, now)
        return self._ok(request, self._render_key(self._key(name), self._ints(request)))

    def _generate_version(self, key: dict[str, Any], now: datetime) -> None:
        """A service-generated version 1 (keys created without skip_initial_version_creation)."""
        algorithm = key["versionTemplate"]["algorithm"]
        rule = ALGORITHM_RULES[algorithm]
        material = _fresh_material(rule)
        version_id = str(key["_nextVersion"])
        key["_nextVersion"] += 1
        name = f"{key['name']}/cryptoKeyVersions/{version_id}"
        self.store.put(
            VERSIONS,
            name,
            {
                "name": name,
                "state": "ENABLED",
                "protectionLevel": key["versionTemplate"]["protectionLevel"],
                "algorithm": algorithm,
                "createTime": _timestamp(now),
                "generateTime": _timestamp(now),
                "_material": _b64(material),
                "_fingerprint": fingerprint_material(rule.kind, SecretBytes(material)),
            },
        )
        if key["purpose"] == "ENCRYPT_DECRYPT":
            key["_primary"] = version_id
        self.store.put(KEYS, key["name"], key)

    def _get_crypto_key(self, request: Request, name: str) -> Response:
        return self._ok(request, self._render_key(self._key(name), self._ints(request)))

    def _list_crypto_keys(self, request: Request, ring: str) -> Response:
        self._ring(ring)
        text = request.query_one("filter")
        keep = compile_filter(text)
        ints = self._ints(request)
        keys = []
        for _, doc in self.store.list(KEYS, ring + "/cryptoKeys/"):
            if keep(self._render_key(doc, False)):
                keys.append(self._render_key(doc, ints))
        return self._ok(request, _page(request, keys, "cryptoKeys", bool(text)))

    def _update_crypto_key(self, request: Request, name: str) -> Response:
        mask = request.query_one("updateMask") or request.query_one("update_mask") or ""
        fields = [f.strip() for f in mask.split(",") if f.strip()]
        if not fields:
            raise _invalid("update_mask is required.")
        body = self._body(request)
        with self.store.transaction():
            doc = self._key(name)
            for field in fields:
                if field != "labels":
                    raise _invalid(f"Field {field!r} of a CryptoKey cannot be updated by this call.")
                labels = validate_labels(_field(body, "labels"))
                if labels:
                    doc["labels"] = labels
                else:
                    doc.pop("labels", None)
            self.store.put(KEYS, name, doc)
        return self._ok(request, self._render_key(doc, self._ints(request)))

    def _update_primary_version(self, request: Request, name: str) -> Response:
        body = self._body(request)
        version_id = str(_field(body, "cryptoKeyVersionId") or "")
        with self.store.transaction():
            doc = self._key(name)
            if doc["purpose"] != "ENCRYPT_DECRYPT":
                raise _precondition(
                    f"CryptoKey {name} has purpose {doc['purpose']}; only ENCRYPT_DECRYPT keys have a primary version."
                )
            version = self._version(f"{name}/cryptoKeyVersions/{version_id}")
            if version["state"] != "ENABLED":
                raise _precondition(f"{version['name']} is not enabled, current state is: {version['state']}.")
            doc["_primary"] = version_id
            self.store.put(KEYS, name, doc)
        return self._ok(request, self._render_key(doc, self._ints(request)))

    # -- versions ---------------------------------------------------------------------------------

    def _list_versions(self, request: Request, key_name: str) -> Response:
        self._key(key_name)
        text = request.query_one("filter")
        keep = compile_filter(text)
        ints = self._ints(request)
        versions = [
            self._render_version(doc, ints)
            for doc in self._versions_of(key_name)
            if keep(self._render_version(doc, False))
        ]
        return self._ok(request, _page(request, versions, "cryptoKeyVersions", bool(text)))

    def _get_version(self, request: Request, name: str) -> Response:
        return self._ok(request, self._render_version(self._version(name), self._ints(request)))

    def _update_version(self, request: Request, name: str) -> Response:
        mask = request.query_one("updateMask") or request.query_one("update_mask") or ""
        fields = [f.strip() for f in mask.split(",") if f.strip()]
        if fields != ["state"]:
            raise _invalid("update_mask must be exactly 'state' for a CryptoKeyVersion.")
        desired = VERSION_STATE.parse(_field(self._body(request), "state"))
        if desired not in ("ENABLED", "DISABLED"):
            raise _invalid("A CryptoKeyVersion's state can only be updated to ENABLED or DISABLED.")
        with self.store.transaction():
            doc = self._version(name)
            if doc["state"] not in ("ENABLED", "DISABLED"):
                raise _precondition(f"{name} is not enabled or disabled, current state is: {doc['state']}.")
            doc["state"] = desired
            self.store.put(VERSIONS, name, doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    def _destroy_version(self, request: Request, name: str) -> Response:
        key = self._key(name.rpartition("/cryptoKeyVersions/")[0])
        with self.store.transaction():
            doc = self._version(name)
            if doc["state"] not in ("ENABLED", "DISABLED"):
                raise _precondition(f"{name} cannot be destroyed, current state is: {doc['state']}.")
            doc["state"] = "DESTROY_SCHEDULED"
            doc["destroyTime"] = _timestamp(self.clock.now() + _parse_duration(key["destroyScheduledDuration"]))
            self.store.put(VERSIONS, name, doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    def _restore_version(self, request: Request, name: str) -> Response:
        with self.store.transaction():
            doc = self._version(name)
            if doc["state"] != "DESTROY_SCHEDULED":
                raise _precondition(f"{name} is not scheduled for destruction, current state is: {doc['state']}.")
            doc["state"] = "DISABLED"
            doc.pop("destroyTime", None)
            self.store.put(VERSIONS, name, doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    # -- import -----------------------------------------------------------------------------------

    def _import_version(self, request: Request, key_name: str) -> Response:
        body = self._body(request)
        key = self._key(key_name)
        algorithm = ALGORITHM.parse(_field(body, "algorithm"))
        rule = ALGORITHM_RULES.get(algorithm or "")
        if algorithm is None or rule is None:
            raise _invalid("ImportCryptoKeyVersionRequest.algorithm is required and must be an importable algorithm.")
        if rule.purpose != key["purpose"]:
            raise _invalid(f"Algorithm {algorithm} is not compatible with the purpose {key['purpose']} of {key_name}.")
        job_name = _field(body, "importJob")
        if not job_name:
            raise _invalid("ImportCryptoKeyVersionRequest.import_job is required.")
        wrapped_key, legacy = _field(body, "wrappedKey"), _field(body, "rsaAesWrappedKey")
        if (wrapped_key is None) == (legacy is None):
            raise _invalid("Exactly one of wrapped_key and rsa_aes_wrapped_key must be set.")
        job = self._job(str(job_name))
        if job["state"] != "ACTIVE":
            raise _precondition(f"ImportJob {job['name']} is not active, current state is: {job['state']}.")
        level = key["versionTemplate"]["protectionLevel"]
        if job["protectionLevel"] != level:
            raise _invalid(
                f"ImportJob {job['name']} has protection level {job['protectionLevel']}, but {key_name} "
                f"has protection level {level}; they must be equal."
            )
        method, _ = IMPORT_METHOD_WRAPS[job["importMethod"]]
        if legacy is not None and not method.hybrid:
            raise _invalid(f"rsa_aes_wrapped_key cannot be used with import method {job['importMethod']}.")
        if not method.hybrid and rule.kind is MaterialKind.RSA:
            raise _invalid(
                f"Import method {job['importMethod']} cannot import RSA keys; use an RSA_OAEP_*_AES_256 method."
            )
        blob = _b64decode(wrapped_key if wrapped_key is not None else legacy, "wrapped_key")
        outcome = self._unwrap_outcome(job, method, rule, algorithm, blob)
        with self.store.transaction():
            target = _field(body, "cryptoKeyVersion")
            if target:
                doc = self._reimport_target(key, str(target), algorithm)
                if outcome["state"] == "ENABLED" and doc.get("_digest") not in (None, outcome["digest"]):
                    outcome = {
                        "state": "IMPORT_FAILED",
                        "reason": "The key material does not match the material previously imported into this version.",
                    }
            else:
                key = self._key(key_name)
                version_id = str(key["_nextVersion"])
                key["_nextVersion"] += 1
                self.store.put(KEYS, key_name, key)
                doc = {
                    "name": f"{key_name}/cryptoKeyVersions/{version_id}",
                    "protectionLevel": level,
                    "algorithm": algorithm,
                    "createTime": _timestamp(self.clock.now()),
                }
            doc.update({"state": "PENDING_IMPORT", "importJob": job["name"], "reimportEligible": True})
            for stale in ("destroyTime", "destroyEventTime", "importFailureReason"):
                doc.pop(stale, None)
            if outcome["state"] == "ENABLED":
                doc["_material"], doc["_fingerprint"] = outcome.pop("material"), outcome.pop("fingerprint")
                doc["_digest"] = outcome.pop("digest")
            doc["_outcome"] = outcome
            self.store.put(VERSIONS, doc["name"], doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    def _reimport_target(self, key: dict[str, Any], name: str, algorithm: str) -> dict[str, Any]:
        if name.rpartition("/cryptoKeyVersions/")[0] != key["name"]:
            raise _invalid(f"crypto_key_version {name} does not belong to {key['name']}.")
        doc = self._version(name)
        if not doc.get("reimportEligible") or doc["state"] not in ("DESTROYED", "IMPORT_FAILED"):
            raise _precondition(
                f"{name} is not eligible for re-import, current state is: {doc['state']}; only imported versions "
                "in DESTROYED or IMPORT_FAILED can be re-imported."
            )
        if doc["algorithm"] != algorithm:
            raise _invalid(f"{name} has algorithm {doc['algorithm']}; a re-import must use the same algorithm.")
        return doc

    def _unwrap_outcome(
        self, job: dict[str, Any], method: WrapMethod, rule: AlgorithmRule, algorithm: str, blob: bytes
    ) -> dict[str, Any]:
        """Unwrap with the job's private key and check the format; the result never leaves the emulator."""
        # The emulator made this key itself: checking it again costs ~0.6 s for RSA-4096 per import.
        private_key = serialization.load_pem_private_key(
            job["_privateKey"].encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        assert isinstance(private_key, rsa.RSAPrivateKey)
        now = _timestamp(self.clock.now())
        try:
            material = unwrap(method, private_key, blob)
        except UnwrapError:
            return {
                "state": "IMPORT_FAILED",
                "reason": f"The wrapped key could not be unwrapped with ImportJob {job['name']}.",
            }
        problem = _format_problem(rule, algorithm, material)
        if problem:
            return {"state": "IMPORT_FAILED", "reason": problem}
        raw = material.reveal()
        return {
            "state": "ENABLED",
            "importTime": now,
            "material": _b64(raw),
            "fingerprint": fingerprint_material(rule.kind, material),
            "digest": hashlib.sha256(raw).hexdigest(),
        }

    # -- import jobs ------------------------------------------------------------------------------

    def _create_import_job(self, request: Request, ring: str) -> Response:
        job_id = self._new_id(request, "importJobId", "ImportJob")
        self._ring(ring)
        body = self._body(request)
        method = IMPORT_METHOD.parse(_field(body, "importMethod"))
        if method in (None, "IMPORT_METHOD_UNSPECIFIED"):
            raise _invalid("ImportJob.import_method is required.")
        if method not in IMPORT_METHOD_WRAPS:
            raise _invalid(f"Import method {method} is not supported.")
        level = PROTECTION_LEVEL.parse(_field(body, "protectionLevel"))
        if level not in ("SOFTWARE", "HSM", "HSM_SINGLE_TENANT"):
            raise _invalid("ImportJob.protection_level is required and must be SOFTWARE, HSM or HSM_SINGLE_TENANT.")
        name = f"{ring}/importJobs/{job_id}"
        now = self.clock.now()
        doc = {
            "name": name,
            "importMethod": method,
            "protectionLevel": level,
            "createTime": _timestamp(now),
            "expireTime": _timestamp(now + IMPORT_JOB_LIFETIME),
            "state": "PENDING_GENERATION",
        }
        with self.store.transaction():
            if self.store.get(JOBS, name) is not None:
                raise ApiError(409, "ALREADY_EXISTS", f"ImportJob {name} already exists.")
            self.store.put(JOBS, name, doc)
        return self._ok(request, self._render_job(doc, self._ints(request)))

    def _get_import_job(self, request: Request, name: str) -> Response:
        return self._ok(request, self._render_job(self._job(name), self._ints(request)))

    def _list_import_jobs(self, request: Request, ring: str) -> Response:
        self._ring(ring)
        text = request.query_one("filter")
        keep = compile_filter(text)
        ints = self._ints(request)
        jobs = [self._settle_job(doc) for _, doc in self.store.list(JOBS, ring + "/importJobs/")]
        views = [self._render_job(doc, ints) for doc in jobs if keep(self._render_job(doc, False))]
        return self._ok(request, _page(request, views, "importJobs", bool(text)))

    # -- cryptographic operations -----------------------------------------------------------------

    def _usable(self, name: str) -> tuple[dict[str, Any], bytes]:
        doc = self._version(name)
        if doc["state"] != "ENABLED" or not doc.get("_material"):
            raise _precondition(f"{name} is not enabled, current state is: {doc['state']}.")
        return doc, base64.b64decode(doc["_material"])

    def _encrypt(self, request: Request, name: str) -> Response:
        body = self._body(request)
        key_name, _, version_id = name.partition("/cryptoKeyVersions/")
        key = self._key(key_name)
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise _invalid(f"{key_name} has purpose {key['purpose']}; Encrypt needs ENCRYPT_DECRYPT.")
        version_id = version_id or key.get("_primary") or ""
        if not version_id:
            raise _precondition(f"{key_name} has no primary version.")
        version, material = self._usable(f"{key_name}/cryptoKeyVersions/{version_id}")
        plaintext = _b64decode(_field(body, "plaintext") or "", "plaintext")
        if len(plaintext) > 64 * 1024:
            raise _invalid("The plaintext must be at most 65536 bytes.")
        aad = _b64decode(_field(body, "additionalAuthenticatedData") or "", "additional_authenticated_data")
        nonce = os.urandom(12)
        sealed = AESGCM(material).encrypt(nonce, plaintext, aad)
        ciphertext = b"\x01" + int(version_id).to_bytes(4, "big") + nonce + sealed
        return self._ok(
            request,
            {
                "name": version["name"],
                "ciphertext": _b64(ciphertext),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _decrypt(self, request: Request, key_name: str) -> Response:
        body = self._body(request)
        key = self._key(key_name)
        if key["purpose"] != "ENCRYPT_DECRYPT":
            raise _invalid(f"{key_name} has purpose {key['purpose']}; Decrypt needs ENCRYPT_DECRYPT.")
        ciphertext = _b64decode(_field(body, "ciphertext") or "", "ciphertext")
        aad = _b64decode(_field(body, "additionalAuthenticatedData") or "", "additional_authenticated_data")
        if len(ciphertext) < 1 + 4 + 12 + 16 or ciphertext[0] != 1:
            raise _invalid("Decryption failed: the ciphertext is invalid.")
        version_id = str(int.from_bytes(ciphertext[1:5], "big"))
        version_name = f"{key_name}/cryptoKeyVersions/{version_id}"
        if self.store.get(VERSIONS, version_name) is None:
            raise _invalid("Decryption failed: the ciphertext is invalid.")
        version, material = self._usable(version_name)
        try:
            plaintext = AESGCM(material).decrypt(ciphertext[5:17], ciphertext[17:], aad)
        except Exception:
            raise _invalid("Decryption failed: the ciphertext is invalid.") from None
        return self._ok(
            request,
            {
                "plaintext": _b64(plaintext),
                "usedPrimary": version_id == key.get("_primary"),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _mac(self, name: str, data: bytes) -> tuple[dict[str, Any], bytes]:
        version, material = self._usable(name)
        if ALGORITHM_RULES[version["algorithm"]].kind is not MaterialKind.HMAC:
            raise _invalid(f"{name} is not a MAC key version.")
        digest = version["algorithm"].removeprefix("HMAC_").lower()
        return version, hmac.new(material, data, digest).digest()

    def _mac_sign(self, request: Request, name: str) -> Response:
        data = _b64decode(_field(self._body(request), "data") or "", "data")
        version, mac = self._mac(name, data)
        return self._ok(
            request,
            {
                "name": name,
                "mac": _b64(mac),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _mac_verify(self, request: Request, name: str) -> Response:
        body = self._body(request)
        version, mac = self._mac(name, _b64decode(_field(body, "data") or "", "data"))
        success = hmac.compare_digest(mac, _b64decode(_field(body, "mac") or "", "mac"))
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
            raise _invalid(f"{name} cannot sign digests (algorithm {algorithm}).")
        hash_name = "sha512" if algorithm.endswith("SHA512") else "sha384" if algorithm.endswith("SHA384") else "sha256"
        chosen: hashes.HashAlgorithm = {
            "sha256": hashes.SHA256(),
            "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512(),
        }[hash_name]
        digest_field = _field(body, "digest") or {}
        if isinstance(digest_field, dict) and digest_field.get(hash_name):
            digest = _b64decode(digest_field[hash_name], "digest")
        elif _field(body, "data") is not None:
            hasher = hashes.Hash(chosen)
            hasher.update(_b64decode(_field(body, "data"), "data"))
            digest = hasher.finalize()
        else:
            raise _invalid(f"AsymmetricSign of {algorithm} needs digest.{hash_name} or data.")
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
            raise _invalid(f"AsymmetricSign over a digest is not supported for {algorithm}.")
        return self._ok(
            request,
            {
                "name": name,
                "signature": _b64(signature),
                "protectionLevel": PROTECTION_LEVEL.render(version["protectionLevel"], self._ints(request)),
            },
        )

    def _get_public_key(self, request: Request, name: str) -> Response:
        version, material = self._usable(name)
        if ALGORITHM_RULES[version["algorithm"]].kind not in (MaterialKind.RSA, MaterialKind.EC):
            raise _precondition(f"{name} is not an asymmetric key version.")
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


def _fresh_material(rule: AlgorithmRule) -> bytes:
    """New material of an algorithm: raw bytes, or a PKCS#8 private key."""
    if rule.raw_length is not None:
        return os.urandom(rule.raw_length)
    private: Any
    if rule.rsa_bits:
        private = rsa.generate_private_key(public_exponent=65537, key_size=rule.rsa_bits)
    elif rule.ed25519:
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        assert rule.curve is not None
        private = ec.generate_private_key(rule.curve())
    return bytes(
        private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _format_problem(rule: AlgorithmRule, algorithm: str, material: SecretBytes) -> str | None:
    """Why unwrapped material cannot be a key of this algorithm, or None when it can."""
    if rule.raw_length is not None:
        if len(material) != rule.raw_length:
            return f"{algorithm} key material must be exactly {rule.raw_length} bytes; got {len(material)} bytes."
        return None
    try:
        private = serialization.load_der_private_key(material.reveal(), password=None)
    except (ValueError, TypeError):
        return f"{algorithm} key material must be a DER-encoded PKCS#8 PrivateKeyInfo."
    if rule.rsa_bits is not None:
        if not isinstance(private, rsa.RSAPrivateKey) or private.key_size != rule.rsa_bits:
            return f"{algorithm} key material must be an RSA-{rule.rsa_bits} private key."
    elif rule.ed25519:
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            return f"{algorithm} key material must be an Ed25519 private key."
    elif not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(private.curve, rule.curve or type(None)):
        return f"{algorithm} key material must be an EC private key on the algorithm's curve."
    return None


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until killed; the first line of stdout is its URL."""
    from providers.emulation.server import EmulatorServer

    parser = argparse.ArgumentParser(prog="python -m providers.gcp.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free port)")
    parser.add_argument("--data-dir", required=True, help="directory holding the emulator's SQLite state")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every call")
    args = parser.parse_args(argv)
    store = DocumentStore(os.path.join(args.data_dir, "gcp.sqlite"))
    clock = Clock(float(store.get_meta("clock_offset") or 0.0))
    server = EmulatorServer(GcpKmsEmulator(store, clock), port=args.port, cert_dir=None)
    if args.latency_ms:
        server.faults.configure({"latency_ms": args.latency_ms})
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
