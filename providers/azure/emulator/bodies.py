"""What the client sends: a typed body per Key Vault operation, validated before its handler runs.

Key Vault reads a body strictly: a member of the wrong JSON type (a number sent as text, text
sent as a boolean) is not converted but refused, and so is a base64url member that does not
decode. Every problem is answered at once as 400 BadParameter, one line each, in the service's
words: "Property key_size has invalid value.", "Property 'kty' is required.", "Content of 'value'
is not base64url." (a required member that does not decode is also reported as missing, as the
service does). Members are named as on the wire, nested ones with dots. No answer quotes a value,
since a member may carry a transfer blob, a plaintext or a ciphertext. What Key Vault checks
beyond types (key types, sizes, curves, operations, names, tag limits) stays with the handlers.
"""

from __future__ import annotations

import binascii
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from providers.azure.emulator.errors import bad_parameter
from providers.azure.emulator.jwk import decode_b64_any


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True, frozen=True)


B = TypeVar("B", bound=BaseModel)


def parse_body(model: type[B], document: Any) -> B:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False, include_context=False)
    raise bad_parameter("".join(f"{line}\r\n" for problem in problems for line in _lines(problem)))


def _lines(problem: ErrorDetails) -> list[str]:
    member = _member(problem)
    if problem["type"] == "missing":
        return [f"Property '{member}' is required."]
    if problem["type"] == "base64url":
        return [f"Content of '{member}' is not base64url."]
    if problem["type"] == "required_base64url":
        return [f"Content of '{member}' is not base64url.", f"Property '{member}' is required."]
    return [f"Property {member} has invalid value."]


def _member(problem: ErrorDetails) -> str:
    member = ""
    for part in problem["loc"]:
        member += f"[{part}]" if isinstance(part, int) else f"{'.' if member else ''}{part}"
    return member


def _decoded(value: object) -> bytes:
    """Base64url text, as Key Vault's bytes members are (base64 and padding accepted too)."""
    if not isinstance(value, str):
        raise PydanticCustomError("bytes_type", "bytes are base64url text")
    try:
        return decode_b64_any(value)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64url", "bytes are base64url text") from None


def _required(value: object) -> bytes:
    try:
        return _decoded(value)
    except PydanticCustomError as error:
        if error.type != "base64url":
            raise
        raise PydanticCustomError("required_base64url", "bytes are base64url text") from None


def _optional(value: object) -> bytes | None:
    return None if value is None else _decoded(value)


# A required and an optional bytes member (reprs hidden: they may carry material, a plaintext or
# a ciphertext).
Base64Url = Annotated[bytes, BeforeValidator(_required), Field(repr=False)]
MaybeBase64Url = Annotated[bytes | None, BeforeValidator(_optional), Field(repr=False)]


class WireAttributes(Body):
    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None
    exportable: bool | None = None


class CreateKeyBody(Body):
    kty: str
    key_size: int | None = None
    public_exponent: int | None = None
    key_ops: list[str] | None = None
    crv: str | None = None
    attributes: WireAttributes = WireAttributes()
    tags: dict[str, str] | None = None


class ImportedJwk(Body):
    kty: str
    key_ops: list[str] | None = None
    crv: str | None = None
    key_hsm: MaybeBase64Url = None  # the emulator serves BYOK imports only: the handler asks for it


class ImportKeyBody(Body):
    key: ImportedJwk
    hsm: bool | None = Field(default=None, alias="Hsm")
    attributes: WireAttributes = WireAttributes()
    tags: dict[str, str] | None = None


class UpdateKeyBody(Body):
    key_ops: list[str] | None = None
    attributes: WireAttributes | None = None
    tags: dict[str, str] | None = None


class KeyOperationBody(Body):
    alg: str
    value: Base64Url
    iv: MaybeBase64Url = None
    aad: MaybeBase64Url = None
    tag: MaybeBase64Url = None


class TransferHeader(Body):
    kid: str
    alg: str
    enc: str


class TransferBlob(Body):
    """The .byok JSON a BYOK tool produces (BYOK.md §3.1 step 3), carried in `key_hsm`."""

    schema_version: str
    header: TransferHeader
    ciphertext: Base64Url
    generator: str | None = None
