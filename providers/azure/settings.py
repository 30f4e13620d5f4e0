"""Attributes of a `provider "azure"` block: one Key Vault or Managed HSM."""

from __future__ import annotations

import re
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from keyplan.limits import RateClass
from keyplan.provider import ProviderSettings
from providers.azure.quotas import MANAGED_HSM_CLASSES, QUOTA_COSTS, VAULT_CLASSES

KEY_VAULT_SUFFIXES = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".vault.microsoftazure.de")
MANAGED_HSM_SUFFIXES = (".managedhsm.azure.net", ".managedhsm.azure.cn", ".managedhsm.usgovcloudapi.net")
EMBEDDED_VAULT_URL = "https://keyplan-embedded.vault.azure.net"
KEY_NAME_PATTERN = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
MAX_TAGS = 15
MAX_TAG_LENGTH = 256


class AzureSettings(ProviderSettings):
    """Attributes of a `provider "azure"` block."""

    identity_settings: ClassVar[tuple[str, ...]] = ("vault_url",)  # they make every remote id
    vault_url: str = Field(
        default=EMBEDDED_VAULT_URL,
        description=(
            "The vault keys are imported into: https://<name>.vault.azure.net for a Key Vault (Premium) or "
            "https://<name>.managedhsm.azure.net for a Managed HSM. The kind decides what may be imported: "
            'AES keys only into a Managed HSM. Required unless endpoint is "embedded"; with "embedded" it '
            "defaults to a Key Vault, and a .managedhsm.azure.net URL makes the embedded emulator a Managed HSM."
        ),
    )
    credentials: Literal["default", "local"] = Field(
        default="default",
        description=(
            '"default" authenticates with azure-identity\'s DefaultAzureCredential (environment, workload '
            'identity, managed identity, Azure CLI login …); "local" sends a fixed token and calls no identity '
            'service, for emulators and other local peers (implied by endpoint = "embedded").'
        ),
    )
    ca_bundle: str | None = Field(
        default=None, description="PEM file of the CA that signed a local endpoint's TLS certificate."
    )
    kek_name: str = Field(
        default="keyplan-kek",
        description="Name of the key-exchange key keyplan creates (or reuses) in the vault to wrap imports.",
    )
    kek_size: Literal[3072, 4096] = Field(default=3072, description="RSA modulus size of the key-exchange key.")
    purge_protection: bool = Field(
        default=False,
        description=(
            "Whether the vault has purge protection on: deleted keys then stay recoverable for the whole "
            "retention period and cannot be purged earlier."
        ),
    )
    retention_days: int = Field(
        default=90, ge=7, le=90, description="The vault's soft-delete retention period in days (set at vault creation)."
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=300, description="Connect and read timeout of each call.")

    @field_validator("vault_url")
    @classmethod
    def _vault_url_is_a_vault(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or parts.path.strip("/") or parts.query or parts.port not in (None, 443):
            raise ValueError("vault_url must be a bare https URL such as https://my-vault.vault.azure.net")
        if not host.endswith(KEY_VAULT_SUFFIXES + MANAGED_HSM_SUFFIXES):
            raise ValueError(
                "vault_url must name a Key Vault (https://<name>.vault.azure.net) or a Managed HSM "
                "(https://<name>.managedhsm.azure.net); to reach an emulator set endpoint as well"
            )
        return f"https://{host}"

    @field_validator("kek_name")
    @classmethod
    def _kek_name_is_legal(cls, value: str) -> str:
        if not KEY_NAME_PATTERN.match(value):
            raise ValueError("kek_name must be 1-127 characters of 0-9, a-z, A-Z and '-'")
        return value

    @model_validator(mode="after")
    def _embedded_implies_local_credentials(self) -> AzureSettings:
        if self.endpoint == "embedded":
            self.credentials = "local"
        elif "vault_url" not in self.model_fields_set:
            raise ValueError('vault_url is required unless endpoint is "embedded"')
        return self

    @classmethod
    def default_rate_classes(cls) -> tuple[RateClass, ...]:
        return VAULT_CLASSES

    def declared_rate_classes(self) -> tuple[RateClass, ...]:
        return MANAGED_HSM_CLASSES if self.vault_kind == "managedhsm" else VAULT_CLASSES

    def quota_cost(self, operation: str, *, aliases_added: int = 0) -> dict[str, float]:
        return QUOTA_COSTS.get(operation, {})

    @property
    def vault_kind(self) -> Literal["vault", "managedhsm"]:
        host = urlsplit(self.vault_url).hostname or ""
        return "managedhsm" if host.endswith(MANAGED_HSM_SUFFIXES) else "vault"
