"""What the client sends: typed request bodies, validated before any handler runs (a body that
does not fit is a BadParameter naming the fields, never echoing their values)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
