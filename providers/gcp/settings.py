"""Attributes of a `provider "gcp"` block: one key ring of one project."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from keyplan.limits import RateClass
from keyplan.provider import ProviderSettings
from providers.gcp.quotas import QUOTA_COSTS, RATE_CLASSES

ImportMethodName = Literal[
    "RSA_OAEP_4096_SHA256_AES_256",
    "RSA_OAEP_3072_SHA256_AES_256",
    "RSA_OAEP_4096_SHA256",
    "RSA_OAEP_3072_SHA256",
    "RSA_OAEP_4096_SHA1_AES_256",
    "RSA_OAEP_3072_SHA1_AES_256",
]

MAX_LABELS = 64


class GcpSettings(ProviderSettings):
    """Attributes of a `provider "gcp"` block."""

    identity_settings: ClassVar[tuple[str, ...]] = ("project", "location", "key_ring")  # they make every remote id
    project: str = Field(min_length=1, description="Google Cloud project id that holds the key ring.")
    location: str = Field(
        default="global", description='Cloud KMS location of the key ring, e.g. "global" or "europe-west1".'
    )
    key_ring: str = Field(
        pattern=r"^[a-zA-Z0-9_-]{1,63}$",
        description="Key ring holding keyplan's keys; created when missing (key rings cannot be deleted).",
    )
    protection_level: Literal["HSM", "SOFTWARE"] = Field(
        default="HSM", description="Protection level of the keys and of the import jobs that wrap their material."
    )
    credentials: Literal["default", "local"] = Field(
        default="default",
        description='"default": Application Default Credentials (gcloud auth, GOOGLE_APPLICATION_CREDENTIALS, '
        'metadata server). "local": anonymous credentials and no call to an identity service, for a local '
        'endpoint such as the emulator (implied by endpoint = "embedded").',
    )
    symmetric_algorithm: Literal["GOOGLE_SYMMETRIC_ENCRYPTION", "AES_256_GCM"] = Field(
        default="GOOGLE_SYMMETRIC_ENCRYPTION",
        description="What AES_256 keys are at Cloud KMS, chosen when keyplan creates a key (Cloud KMS cannot change "
        'it afterwards). "GOOGLE_SYMMETRIC_ENCRYPTION": Encrypt/Decrypt with Google\'s own ciphertext format, '
        "usable as a customer-managed key by Google services; `keyplan verify` cannot prove its material. "
        '"AES_256_GCM": raw encryption (RawEncrypt/RawDecrypt, standard AES-GCM ciphertexts that the key source '
        "can open too), which `keyplan verify` proves; not usable by Google services as a customer-managed key.",
    )
    import_method: ImportMethodName | None = Field(
        default=None,
        description="Use only this import method instead of negotiating the strongest one both sides support.",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="Deadline of each Cloud KMS call.")
    import_wait_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long to wait for an import job to become ACTIVE or an imported version to settle.",
    )

    @classmethod
    def default_rate_classes(cls) -> tuple[RateClass, ...]:
        return RATE_CLASSES

    def quota_cost(self, operation: str, *, aliases_added: int = 0) -> dict[str, float]:
        return QUOTA_COSTS.get(operation, {})

    @property
    def key_ring_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/keyRings/{self.key_ring}"
