"""What the client sends: a typed body per KMS operation, validated before its handler runs.

KMS reads a request in two passes, and so does the emulator. A member of the wrong JSON type (or
a blob that is not base64) fails the first: a SerializationException. Then every constraint of
the API model is checked and all failures are answered at once as a ValidationException, in
KMS's words with members in camelCase: "2 validation errors detected: Value null at 'keyId'
failed to satisfy constraint: Member must not be null; Value at 'plaintext' failed to satisfy
constraint: Member must have length greater than or equal to 1". KMS quotes the offending value
in some of these; the emulator never does, since a member may carry key material, a wrapped key
or a ciphertext. The handlers check what KMS checks beyond the model (names, states, what a key
spec allows).
"""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_pascal
from pydantic_core import ErrorDetails, PydanticCustomError

from providers.aws.emulator.errors import KmsError, validation


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_pascal, populate_by_name=True, strict=True, frozen=True)


def parse_body(model: type[Body], body: dict[str, Any]) -> Body:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = error.errors(include_url=False)  # each input is read here, never quoted
    wrong_type = next((p for p in problems if _wrong_type(p)), None)
    if wrong_type is not None:
        raise KmsError(
            "SerializationException", f"The value of '{_member(wrong_type)}' has the wrong JSON type"
        )
    count = len(problems)
    raise validation(
        f"{count} validation error{'s' if count > 1 else ''} detected: "
        + "; ".join(_constraint(problem) for problem in problems)
    )


_CONSTRAINTS = ("missing", "too_short", "too_long", "string_too_short", "string_too_long", "literal_error")


def _wrong_type(problem: ErrorDetails) -> bool:
    if problem["type"] == "literal_error":  # an enum member: text outside the value set is a constraint
        return not isinstance(problem["input"], str)
    return problem["type"] not in _CONSTRAINTS


def _constraint(problem: ErrorDetails) -> str:
    member, kind, context = _member(problem), problem["type"], problem.get("ctx", {})
    if kind == "missing":
        return f"Value null at '{member}' failed to satisfy constraint: Member must not be null"
    if kind.endswith("too_short"):
        rule = f"Member must have length greater than or equal to {context['min_length']}"
    elif kind.endswith("too_long"):
        rule = f"Member must have length less than or equal to {context['max_length']}"
    else:  # pydantic lists a Literal's values as "'A', 'B' or 'C'"
        values = re.findall(r"'([^']*)'", context["expected"])
        rule = f"Member must satisfy enum value set: [{', '.join(values)}]"
    return f"Value at '{member}' failed to satisfy constraint: {rule}"


def _member(problem: ErrorDetails) -> str:
    return ".".join("member" if isinstance(part, int) else part[0].lower() + part[1:] for part in problem["loc"])


def _base64(value: object) -> bytes:
    """A blob member: base64 text on the wire."""
    if not isinstance(value, str):
        raise PydanticCustomError("blob_type", "a blob is base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise PydanticCustomError("blob_encoding", "a blob is base64 text") from None


# KMS's two blob shapes (repr hidden: a blob may be material, a wrapped key or a ciphertext).
PlaintextType = Annotated[bytes, BeforeValidator(_base64), Field(min_length=1, max_length=4096, repr=False)]
CiphertextType = Annotated[bytes, BeforeValidator(_base64), Field(min_length=1, max_length=6144, repr=False)]

class Paged(Body):
    limit: int | None = None
    marker: str | None = None


KeyIdType = Annotated[str, Field(min_length=1, max_length=2048)]


class KeyReference(Body):
    key_id: KeyIdType


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


# The enum value sets of KMS's API model (the handlers refuse those the emulator does not serve).
WrappingAlgorithmSpec = Literal[
    "RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256", "SM2PKE",
]  # fmt: skip
WrappingKeySpec = Literal["RSA_2048", "RSA_3072", "RSA_4096", "SM2"]
EncryptionAlgorithmSpec = Literal["SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"]
SigningAlgorithmSpec = Literal[
    "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256", "ECDSA_SHA_384", "ECDSA_SHA_512", "SM2DSA", "ML_DSA_SHAKE_256",
]  # fmt: skip
MacAlgorithmSpec = Literal["HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512"]
MessageType = Literal["RAW", "DIGEST", "EXTERNAL_MU"]
EncryptionContext = dict[str, str]


class GetParametersForImportBody(KeyReference):
    wrapping_algorithm: WrappingAlgorithmSpec
    wrapping_key_spec: WrappingKeySpec


class ImportKeyMaterialBody(KeyReference):
    import_token: CiphertextType
    encrypted_key_material: CiphertextType
    valid_to: float | None = None  # a timestamp: epoch seconds on KMS's JSON wire
    expiration_model: Literal["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"] | None = None
    import_type: Literal["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"] | None = None
    key_material_description: str | None = Field(default=None, max_length=256)
    key_material_id: str | None = Field(default=None, min_length=64, max_length=64)


class DeleteImportedKeyMaterialBody(KeyReference):
    key_material_id: str | None = Field(default=None, min_length=64, max_length=64)


class ListKeyRotationsBody(KeyReference, Paged):
    include_key_material: Literal["ALL_KEY_MATERIAL", "ROTATIONS_ONLY"] | None = None


class EncryptBody(KeyReference):
    plaintext: PlaintextType
    encryption_context: EncryptionContext | None = None
    encryption_algorithm: EncryptionAlgorithmSpec | None = None


class DecryptBody(Body):
    ciphertext_blob: CiphertextType
    key_id: KeyIdType | None = None
    encryption_context: EncryptionContext | None = None
    encryption_algorithm: EncryptionAlgorithmSpec | None = None


class GenerateMacBody(KeyReference):
    message: PlaintextType
    mac_algorithm: MacAlgorithmSpec


class VerifyMacBody(GenerateMacBody):
    mac: CiphertextType


class SignBody(KeyReference):
    message: PlaintextType
    signing_algorithm: SigningAlgorithmSpec
    message_type: MessageType | None = None


class VerifyBody(SignBody):
    signature: CiphertextType
