"""Soft delete: delete, get deleted keys, purge (refused under purge protection), recover."""

from __future__ import annotations

from datetime import timedelta

from providers.azure.emulator.core import VaultCore
from providers.azure.emulator.documents import DeletionRecord, StoredKey
from providers.azure.emulator.errors import KeyVaultError
from providers.azure.emulator.limits import (
    PURGE_PROTECTED_MESSAGE,
)
from providers.emulation import Response


class DeletionRoutes(VaultCore):
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
