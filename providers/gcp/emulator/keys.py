"""Key rings and crypto keys: create, get, list, update (labels), and the primary version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from providers.emulation.app import Request, Response
from providers.gcp.emulator.bodies import (
    CryptoKeyBody,
    CryptoKeyUpdateBody,
    UpdatePrimaryVersionBody,
    VersionTemplate,
    parse_body,
)
from providers.gcp.emulator.core import GcpCore
from providers.gcp.emulator.errors import ApiError, invalid, precondition
from providers.gcp.emulator.material import fresh_material
from providers.gcp.emulator.protos import (
    ALGORITHM,
    ALGORITHM_RULES,
    DEFAULT_DESTROY_DURATION,
    MAX_DESTROY_DURATION,
    MIN_DESTROY_DURATION,
    PROTECTION_LEVEL,
    PURPOSE,
)
from providers.gcp.emulator.wire import (
    KEYS,
    RINGS,
    VERSIONS,
    b64,
    compile_filter,
    list_page,
    parse_duration,
    timestamp,
    validate_labels,
)


class KeyRoutes(GcpCore):
    def _create_key_ring(self, request: Request, parent: str) -> Response:
        ring_id = self._new_id(request, "keyRingId", "KeyRing")
        name = f"{parent}/keyRings/{ring_id}"
        with self.store.transaction():
            if self.store.get(RINGS, name) is not None:
                raise ApiError(409, "ALREADY_EXISTS", f"KeyRing {name} already exists.")
            doc = {"name": name, "createTime": timestamp(self.clock.now())}
            self.store.put(RINGS, name, doc)
        return self._ok(request, doc)

    def _get_key_ring(self, request: Request, name: str) -> Response:
        return self._ok(request, self._ring(name))

    def _list_key_rings(self, request: Request, parent: str) -> Response:
        keep = compile_filter(request.query_one("filter"))
        rings = [doc for _, doc in self.store.list(RINGS, parent + "/keyRings/") if keep(doc)]
        return self._ok(request, list_page(request, rings, "keyRings", bool(request.query_one("filter"))))

    def _create_crypto_key(self, request: Request, ring: str) -> Response:
        key_id = self._new_id(request, "cryptoKeyId", "CryptoKey")
        self._ring(ring)
        body: CryptoKeyBody = parse_body(CryptoKeyBody, self._body(request))
        purpose = PURPOSE.parse(body.purpose)
        if purpose in (None, "CRYPTO_KEY_PURPOSE_UNSPECIFIED"):
            raise invalid("CryptoKey.purpose is required.")
        template = body.version_template or VersionTemplate()
        algorithm = ALGORITHM.parse(template.algorithm)
        if algorithm in (None, "CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED"):
            raise invalid("CryptoKey.version_template.algorithm is required.")
        rule = ALGORITHM_RULES.get(algorithm)
        if rule is None or rule.purpose != purpose:
            raise invalid(f"Algorithm {algorithm} is not compatible with purpose {purpose}.")
        level = PROTECTION_LEVEL.parse(template.protection_level or "SOFTWARE")
        if level in (None, "PROTECTION_LEVEL_UNSPECIFIED"):
            level = "SOFTWARE"
        if rule.hsm_only and level == "SOFTWARE":
            raise invalid(f"Algorithm {algorithm} requires protection level HSM.")
        import_only = bool(body.import_only)
        skip_initial = (request.query_one("skipInitialVersionCreation") or "false").lower() == "true"
        if import_only and not skip_initial:
            raise invalid("Keys with import_only=true must be created with skip_initial_version_creation=true.")
        duration_text = body.destroy_scheduled_duration
        duration = parse_duration(duration_text) if duration_text is not None else DEFAULT_DESTROY_DURATION
        if not MIN_DESTROY_DURATION <= duration <= MAX_DESTROY_DURATION:
            raise invalid("destroy_scheduled_duration must be between 24 hours and 120 days.")
        labels = validate_labels(body.labels)
        name = f"{ring}/cryptoKeys/{key_id}"
        now = self.clock.now()
        doc: dict[str, Any] = {
            "name": name,
            "purpose": purpose,
            "createTime": timestamp(now),
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
        material = fresh_material(rule)
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
                "createTime": timestamp(now),
                "generateTime": timestamp(now),
                "_material": b64(material),
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
        return self._ok(request, list_page(request, keys, "cryptoKeys", bool(text)))

    def _update_crypto_key(self, request: Request, name: str) -> Response:
        mask = request.query_one("updateMask") or request.query_one("update_mask") or ""
        fields = [f.strip() for f in mask.split(",") if f.strip()]
        if not fields:
            raise invalid("update_mask is required.")
        update: CryptoKeyUpdateBody = parse_body(CryptoKeyUpdateBody, self._body(request))
        with self.store.transaction():
            doc = self._key(name)
            for field in fields:
                if field != "labels":
                    raise invalid(f"Field {field!r} of a CryptoKey cannot be updated by this call.")
                labels = validate_labels(update.labels)
                if labels:
                    doc["labels"] = labels
                else:
                    doc.pop("labels", None)
            self.store.put(KEYS, name, doc)
        return self._ok(request, self._render_key(doc, self._ints(request)))

    def _update_primary_version(self, request: Request, name: str) -> Response:
        body: UpdatePrimaryVersionBody = parse_body(UpdatePrimaryVersionBody, self._body(request))
        version_id = body.crypto_key_version_id or ""
        with self.store.transaction():
            doc = self._key(name)
            if doc["purpose"] != "ENCRYPT_DECRYPT":
                raise precondition(
                    f"CryptoKey {name} has purpose {doc['purpose']}; only ENCRYPT_DECRYPT keys have a primary version."
                )
            version = self._version(f"{name}/cryptoKeyVersions/{version_id}")
            if version["state"] != "ENABLED":
                raise precondition(f"{version['name']} is not enabled, current state is: {version['state']}.")
            doc["_primary"] = version_id
            self.store.put(KEYS, name, doc)
        return self._ok(request, self._render_key(doc, self._ints(request)))
