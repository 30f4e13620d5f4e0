"""Listing keys, versions and deleted keys: `maxresults` <= 25 and `nextLink` pagination."""

from __future__ import annotations

from urllib.parse import quote

from providers.azure.emulator.core import VaultCore
from providers.azure.emulator.documents import StoredKey
from providers.azure.emulator.errors import bad_parameter
from providers.azure.emulator.jwk import b64url, decode_b64_any
from providers.azure.emulator.limits import (
    MAX_PAGE,
)
from providers.emulation import Request, Response


class ListingRoutes(VaultCore):
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
