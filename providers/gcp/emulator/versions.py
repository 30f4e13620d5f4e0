"""Crypto key versions: list, get, enable/disable, destroy (scheduled) and restore."""

from __future__ import annotations

from providers.emulation.app import Request, Response
from providers.gcp.emulator.bodies import VersionUpdateBody, parse_body
from providers.gcp.emulator.core import GcpCore
from providers.gcp.emulator.errors import invalid, precondition
from providers.gcp.emulator.protos import (
    VERSION_STATE,
)
from providers.gcp.emulator.wire import (
    VERSIONS,
    compile_filter,
    list_page,
    parse_duration,
    timestamp,
)


class VersionRoutes(GcpCore):
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
        return self._ok(request, list_page(request, versions, "cryptoKeyVersions", bool(text)))

    def _get_version(self, request: Request, name: str) -> Response:
        return self._ok(request, self._render_version(self._version(name), self._ints(request)))

    def _update_version(self, request: Request, name: str) -> Response:
        mask = request.query_one("updateMask") or request.query_one("update_mask") or ""
        fields = [f.strip() for f in mask.split(",") if f.strip()]
        if fields != ["state"]:
            raise invalid("update_mask must be exactly 'state' for a CryptoKeyVersion.")
        desired = VERSION_STATE.parse(parse_body(VersionUpdateBody, self._body(request)).state)
        if desired not in ("ENABLED", "DISABLED"):
            raise invalid("A CryptoKeyVersion's state can only be updated to ENABLED or DISABLED.")
        with self.store.transaction():
            doc = self._version(name)
            if doc["state"] not in ("ENABLED", "DISABLED"):
                raise precondition(f"{name} is not enabled or disabled, current state is: {doc['state']}.")
            doc["state"] = desired
            self.store.put(VERSIONS, name, doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    def _destroy_version(self, request: Request, name: str) -> Response:
        key = self._key(name.rpartition("/cryptoKeyVersions/")[0])
        with self.store.transaction():
            doc = self._version(name)
            if doc["state"] not in ("ENABLED", "DISABLED"):
                raise precondition(f"{name} cannot be destroyed, current state is: {doc['state']}.")
            doc["state"] = "DESTROY_SCHEDULED"
            doc["destroyTime"] = timestamp(self.clock.now() + parse_duration(key["destroyScheduledDuration"]))
            self.store.put(VERSIONS, name, doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))

    def _restore_version(self, request: Request, name: str) -> Response:
        with self.store.transaction():
            doc = self._version(name)
            if doc["state"] != "DESTROY_SCHEDULED":
                raise precondition(f"{name} is not scheduled for destruction, current state is: {doc['state']}.")
            doc["state"] = "DISABLED"
            doc.pop("destroyTime", None)
            self.store.put(VERSIONS, name, doc)
        return self._ok(request, self._render_version(doc, self._ints(request)))
