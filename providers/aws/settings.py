"""The attributes of a `provider "aws"` block, and the limits of AWS KMS they are checked against."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from keyplan.limits import RateClass
from keyplan.provider import ProviderSettings
from providers.aws.quotas import CONSISTENCY_WINDOW, QUOTA_COSTS, RATE_CLASSES

MAX_TAGS = 50
MAX_EXPIRY_DAYS = 365
LOCAL_ACCESS_KEY = "keyplan-local"  # any key pair signs requests a local endpoint accepts
_REGION = re.compile(r"[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}")  # eu-west-1, us-gov-west-1, cn-north-1, eusc-de-east-1


class AwsSettings(ProviderSettings):
    """The attributes of a `provider "aws" "NAME"` block."""

    identity_settings: ClassVar[tuple[str, ...]] = ("region",)  # they make every remote id
    region: str = Field(description="The AWS region whose KMS holds the keys, e.g. eu-west-1.")

    @field_validator("region")
    @classmethod
    def _region_name(cls, region: str) -> str:
        # Checked offline, so `validate` refuses what the SDK would later fail on.
        if not _REGION.fullmatch(region):
            raise ValueError('it is not an AWS region name; write one like "eu-west-1" or "us-east-2"')
        return region
    profile: str | None = Field(
        default=None, description="A named profile from the AWS config files; default: the standard credential chain."
    )
    assume_role_arn: str | None = Field(
        default=None, description="An IAM role to assume (STS AssumeRole) before calling KMS."
    )
    credentials: Literal["default", "local"] = Field(
        default="default",
        description='"default" uses the AWS SDK credential chain; "local" signs with fixed dummy keys and calls no '
        'identity service, for emulators and other local KMS peers (implied by endpoint = "embedded").',
    )
    deletion_window_days: int = Field(
        default=30, ge=7, le=30, description="Waiting period of ScheduleKeyDeletion, 7 to 30 days."
    )
    wrapping_key_spec: Literal["RSA_2048", "RSA_3072", "RSA_4096"] = Field(
        default="RSA_4096", description="Size of the RSA wrapping key KMS hands out for each import."
    )
    consistency_window_seconds: float = Field(
        default=CONSISTENCY_WINDOW,
        ge=0,
        le=3600,
        description="Seconds a key just created may be missing from KMS's listings (AWS documents eventual "
        "consistency: usually a few seconds). Within it keyplan never takes a missing key for deleted, and an apply "
        "after one interrupted while creating a key waits it out before creating that key again. Lower it only for "
        "an endpoint that lists new keys at once.",
    )


    @classmethod
    def default_rate_classes(cls) -> tuple[RateClass, ...]:
        return RATE_CLASSES

    def quota_cost(self, operation: str, *, aliases_added: int = 0) -> dict[str, float]:
        cost = QUOTA_COSTS.get(operation, {})
        return {**cost, "CreateAlias": aliases_added} if "CreateAlias" in cost else cost

    def consistency_window(self) -> float:
        return self.consistency_window_seconds

    @property
    def wrapping_bits(self) -> int:
        return int(self.wrapping_key_spec.removeprefix("RSA_"))
