"""The emulated Cloud KMS's core: routing `/v1/...` paths to handlers, rendering resources
(enums as names or numbers), the lazy state transitions time and pending imports decide, and
loading resources by name."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from providers.emulation.app import EmulatorApp, Request, Response
from providers.emulation.clock import Clock
from providers.emulation.store import DocumentStore
from providers.gcp.emulator.errors import FAULT_STATUSES, ApiError, invalid, not_found
from providers.gcp.emulator.material import fresh_material
from providers.gcp.emulator.protos import (
    ALGORITHM,
    ALGORITHM_RULES,
    IMPORT_JOB_STATE,
    IMPORT_METHOD,
    IMPORT_METHOD_WRAPS,
    PROTECTION_LEVEL,
    PURPOSE,
    RESOURCE_ID,
    VERSION_STATE,
)
from providers.gcp.emulator.wire import (
    JOBS,
    KEYS,
    RINGS,
    VERSIONS,
    Handler,
    b64,
    parse_timestamp,
    timestamp,
)


class GcpCore(EmulatorApp):
    """What every group of Cloud KMS methods uses; `GcpKmsEmulator` combines the groups and
    supplies the route table."""

    name = "gcp"

    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        super().__init__(store, clock)
        self._routes = self._route_table()

    def _route_table(self) -> list[tuple[str, re.Pattern[str], str, Handler]]:
        """(HTTP method, path pattern with the resource name as group 1, operation, handler)."""
        raise NotImplementedError

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
            material = fresh_material(rule)
            doc["_material"] = b64(material)
            doc["_fingerprint"] = fingerprint_material(rule.kind, SecretBytes(material))
            self.store.put(VERSIONS, name, doc)
            return str(doc["_fingerprint"])

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
        if doc["state"] == "DESTROY_SCHEDULED" and now >= parse_timestamp(doc["destroyTime"]):
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
                    current["generateTime"] = timestamp(now)
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
        if doc["state"] == "ACTIVE" and now >= parse_timestamp(doc["expireTime"]):
            doc["state"] = "EXPIRED"
            doc["expireEventTime"] = doc["expireTime"]
            doc.pop("publicKey", None)
            self.store.put(JOBS, doc["name"], doc)
        return doc

    def _ring(self, name: str) -> dict[str, Any]:
        doc = self.store.get(RINGS, name)
        if doc is None:
            raise not_found(f"KeyRing {name}")
        return doc

    def _key(self, name: str) -> dict[str, Any]:
        doc = self.store.get(KEYS, name)
        if doc is None:
            raise not_found(f"CryptoKey {name}")
        return doc

    def _version(self, name: str) -> dict[str, Any]:
        doc = self.store.get(VERSIONS, name)
        if doc is None:
            raise not_found(f"CryptoKeyVersion {name}")
        return self._settle_version(doc)

    def _job(self, name: str) -> dict[str, Any]:
        doc = self.store.get(JOBS, name)
        if doc is None:
            raise not_found(f"ImportJob {name}")
        return self._settle_job(doc)

    def _versions_of(self, key_name: str) -> list[dict[str, Any]]:
        return [self._settle_version(doc) for _, doc in self.store.list(VERSIONS, key_name + "/cryptoKeyVersions/")]

    @staticmethod
    def _new_id(request: Request, parameter: str, kind: str) -> str:
        resource_id = request.query_one(parameter) or ""
        if not RESOURCE_ID.match(resource_id):
            raise invalid(f"{kind} id {resource_id!r} is invalid: it must match [a-zA-Z0-9_-]{{1,63}}.")
        return resource_id

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            raise invalid("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        return body
