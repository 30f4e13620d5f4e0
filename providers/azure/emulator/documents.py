"""What the emulator stores: keys, versions (with their private material) and deletions."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
