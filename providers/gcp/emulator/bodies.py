"""What the client sends: typed request bodies, validated before a handler reads them.

Proto JSON names members in lowerCamelCase and accepts their proto (snake_case) names too, an
enum as its name or its number, bytes as base64 (standard or URL-safe alphabet, padding optional)
and a 32-bit integer as a number or a decimal string; a member of the wrong JSON type, or bytes
that are not base64, is INVALID_ARGUMENT naming the member (Cloud KMS quotes the value too; the
emulator does not, since a body may carry plaintext, wrapped material or a ciphertext). What Cloud
KMS checks beyond types (required members, enum members, ranges, sizes, label syntax) stays with
the handlers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from providers.gcp.emulator.errors import invalid

Enum = str | int  # a proto enum in JSON: its name, or its number


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, strict=True, frozen=True)


B = TypeVar("B", bound="Body")


def parse_body(model: type[B], body: dict[str, Any]) -> B:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        member = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "proto_bytes":
            raise invalid(f"Invalid value at '{member}' (TYPE_BYTES): Base64 decoding failed.") from None
        raise invalid(f"Invalid value at '{member}': the JSON type does not fit the field.") from None


def _bytes(value: object) -> bytes:
    if not isinstance(value, str):
        raise PydanticCustomError("bytes_type", "bytes are base64 text")
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except binascii.Error:
        raise PydanticCustomError("proto_bytes", "bytes are base64 text") from None


def _int32(value: object) -> object:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value  # a number, or what the strict int check refuses


# A proto `bytes` member, and an optional one (reprs hidden: it may be plaintext, material or a
# ciphertext).
_Base64 = Annotated[bytes, BeforeValidator(_bytes)]
ProtoBytes = Annotated[_Base64, Field(repr=False)]
MaybeBytes = Annotated[_Base64 | None, Field(repr=False)]
Int32 = Annotated[int, BeforeValidator(_int32)]


class VersionTemplate(Body):
    algorithm: Enum | None = None
    protection_level: Enum | None = None


class CryptoKeyBody(Body):
    purpose: Enum | None = None
    version_template: VersionTemplate | None = None
    import_only: bool | None = None
    destroy_scheduled_duration: str | None = None
    labels: dict[str, str] | None = None


class CryptoKeyUpdateBody(Body):
    labels: dict[str, str] | None = None


class UpdatePrimaryVersionBody(Body):
    crypto_key_version_id: str | None = None


class ImportVersionBody(Body):
    algorithm: Enum | None = None
    import_job: str | None = None
    wrapped_key: MaybeBytes = None
    rsa_aes_wrapped_key: MaybeBytes = None
    crypto_key_version: str | None = None


class ImportJobBody(Body):
    import_method: Enum | None = None
    protection_level: Enum | None = None


class VersionUpdateBody(Body):
    state: Enum | None = None


class EncryptBody(Body):
    plaintext: ProtoBytes = b""
    additional_authenticated_data: ProtoBytes = b""


class DecryptBody(Body):
    ciphertext: ProtoBytes = b""
    additional_authenticated_data: ProtoBytes = b""


class RawEncryptBody(EncryptBody):
    initialization_vector: ProtoBytes = b""


class RawDecryptBody(DecryptBody):
    initialization_vector: ProtoBytes = b""
    tag_length: Int32 = 0


class MacSignBody(Body):
    data: ProtoBytes = b""


class MacVerifyBody(MacSignBody):
    mac: ProtoBytes = b""


class Digest(Body):
    sha256: MaybeBytes = None
    sha384: MaybeBytes = None
    sha512: MaybeBytes = None


class AsymmetricSignBody(Body):
    digest: Digest | None = None
    data: MaybeBytes = None


class AsymmetricDecryptBody(Body):
    ciphertext: ProtoBytes = b""
