"""What the client sends: a typed body per KMS operation, validated before its handler runs.

KMS answers a member of the wrong JSON type with a SerializationException and a missing required
member with a ValidationException naming it in camelCase ("Value null at 'keyId' failed to satisfy
constraint: Member must not be null"); the emulator does the same, and never echoes a value. The
handlers check what KMS checks beyond types (lengths, ranges, names, states).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_pascal

from providers.aws.emulator.errors import KmsError, validation


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_pascal, populate_by_name=True, strict=True, frozen=True)


def parse_body(model: type[Body], body: dict[str, Any]) -> Body:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        member = ".".join(_camel(part) for part in problem["loc"])
        if problem["type"] == "missing":
            raise validation(
                f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ) from None
        raise KmsError("SerializationException", f"The value of '{member}' has the wrong JSON type") from None


def _camel(part: str | int) -> str:
    return "member" if isinstance(part, int) else part[0].lower() + part[1:]


class Paged(Body):
    limit: int | None = None
    marker: str | None = None


class KeyReference(Body):
    key_id: str


class Tag(Body):
    tag_key: str
    tag_value: str


class CreateKeyBody(Body):
    key_spec: str | None = None
    customer_master_key_spec: str | None = None
    key_usage: str | None = None
    origin: str | None = None
    multi_region: bool | None = None
    description: str | None = None
    tags: list[Tag] = []


class DescribeKeyBody(KeyReference):
    pass


class ListKeysBody(Paged):
    pass


class UpdateKeyDescriptionBody(KeyReference):
    description: str


class ScheduleKeyDeletionBody(KeyReference):
    pending_window_in_days: int = 30


class TagResourceBody(KeyReference):
    tags: list[Tag]


class UntagResourceBody(KeyReference):
    tag_keys: list[str]


class ListResourceTagsBody(KeyReference, Paged):
    pass


class AliasBody(Body):
    alias_name: str


class AliasTargetBody(AliasBody):
    target_key_id: str


class ListAliasesBody(Paged):
    key_id: str | None = None
