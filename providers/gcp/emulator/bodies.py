"""What the client sends: typed request bodies, validated before a handler reads them.

Proto JSON names members in lowerCamelCase and accepts their proto (snake_case) names too, and
an enum as its name or its number; a member of the wrong JSON type is INVALID_ARGUMENT naming
the member (Cloud KMS quotes the value too; the emulator does not, since a body may carry
wrapped material). What Cloud KMS checks beyond types (required members, enum members, ranges,
label syntax) stays with the handlers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from providers.gcp.emulator.errors import invalid

Enum = str | int  # a proto enum in JSON: its name, or its number


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True, strict=True, frozen=True)


def parse_body(model: type[Body], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        member = ".".join(str(part) for part in problem["loc"])
        raise invalid(f"Invalid value at '{member}': the JSON type does not fit the field.") from None


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
    wrapped_key: str | None = None
    rsa_aes_wrapped_key: str | None = None
    crypto_key_version: str | None = None


class ImportJobBody(Body):
    import_method: Enum | None = None
    protection_level: Enum | None = None


class VersionUpdateBody(Body):
    state: Enum | None = None
