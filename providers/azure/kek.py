"""The vault's key-exchange key (KEK): an RSA-HSM key whose only operation is "import", one per
vault, that every import's material is wrapped for. Modelled as the prerequisite
`kek:<vault_url>`; a KEK version's public key is read once per run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyplan.provider import ErrorKind, PrerequisiteRecord, ProviderError
from providers.azure.client import VaultCalls
from providers.azure.mapping import (
    KEK_KIND,
    KEK_ROLE_TAG,
    jwk_member,
    kek_prerequisite_id,
    logical_kid,
    modulus_bits,
    remote_id_for,
)
from providers.azure.settings import AzureSettings

if TYPE_CHECKING:
    from azure.keyvault.keys import KeyClient, KeyVaultKey

ACTION = "reading the key-exchange key"


def kek_version(kid: str) -> tuple[str, str | None]:
    """The name and version (None: the latest) a KEK id names."""
    parts = urlsplit(kid).path.strip("/").split("/")
    return parts[1], (parts[2] if len(parts) > 2 else None)


def public_key_der(kek: KeyVaultKey) -> tuple[bytes, int]:
    """The KEK's public key as DER SubjectPublicKeyInfo, and its size in bits."""
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(jwk_member(kek.key, "e") or b"", "big"),
        int.from_bytes(jwk_member(kek.key, "n") or b"", "big"),
    )
    public_key = numbers.public_key()
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki, public_key.key_size


class KeyExchangeKeys:
    """The KEK of one vault: read, checked, created when missing or unusable."""

    def __init__(self, settings: AzureSettings, client: KeyClient, calls: VaultCalls) -> None:
        self.settings = settings
        self.vault_url = settings.vault_url
        self._client = client
        self._calls = calls
        self._versions: dict[tuple[str, str | None], KeyVaultKey] = {}  # (lower name, version) -> KEK version

    def record_for(self, kek: KeyVaultKey) -> PrerequisiteRecord:
        bits = modulus_bits(jwk_member(kek.key, "n"))
        return PrerequisiteRecord(
            id=kek_prerequisite_id(self.vault_url),
            kind=KEK_KIND,
            remote_id=remote_id_for(self.vault_url, kek.name),
            attributes={"kid": logical_kid(self.vault_url, kek.id), "name": kek.name, "bits": str(bits)},
            expires_at=kek.properties.expires_on,
        )

    def current_record(self) -> PrerequisiteRecord | None:
        kek = self._calls.optional(ACTION, lambda: self._client.get_key(self.settings.kek_name))
        return self.record_for(kek) if kek is not None else None

    def usable(self, kek: KeyVaultKey) -> bool:
        props = kek.properties
        now = datetime.now(UTC)
        bits = modulus_bits(jwk_member(kek.key, "n"))
        return (
            kek.key_type == "RSA-HSM"
            and list(kek.key_operations or []) == ["import"]
            and bool(props.enabled)
            and (props.expires_on is None or props.expires_on > now)
            and (props.not_before is None or props.not_before <= now)
            and bits == self.settings.kek_size
        )

    def ensure(self) -> PrerequisiteRecord:
        """The usable KEK, creating a new version when there is none."""
        name = self.settings.kek_name
        current = self._calls.optional(ACTION, lambda: self._client.get_key(name))
        if current is not None and self.usable(current):
            return self.record_for(current)
        created = self._calls(
            f"creating the key-exchange key {name}",
            lambda: self._client.create_rsa_key(
                name,
                size=self.settings.kek_size,
                hardware_protected=True,
                key_operations=["import"],
                tags={KEK_ROLE_TAG: "key-exchange-key"},
            ),
            remote_id=remote_id_for(self.vault_url, name),
        )
        return self.record_for(created)

    def for_import(self, prerequisites: dict[str, PrerequisiteRecord], remote_id: str) -> KeyVaultKey:
        """The KEK version the plan's prerequisite names (the latest when it names none)."""
        record = prerequisites.get(kek_prerequisite_id(self.vault_url))
        name, version = self.settings.kek_name, None
        if record is not None and "kid" in record.attributes:
            name, version = kek_version(record.attributes["kid"])
        kek = self._versions.get((name.lower(), version)) if version else None
        if kek is None:
            kek = self._calls.optional(ACTION, lambda: self._client.get_key(name, version), remote_id=remote_id)
        if kek is not None and version and self.usable(kek):
            # a KEK version's public key never changes: read it once per run, not once per import
            self._versions[(name.lower(), version)] = kek
        if kek is None or not self.usable(kek):
            raise ProviderError(
                ErrorKind.CONFLICT,
                f"The key-exchange key {name} is missing or no longer usable",
                f"Imports into {self.vault_url} are wrapped for the key-exchange key {name}, which was deleted, "
                "disabled, expired or changed outside keyplan. Run keyplan apply again: it creates a fresh "
                "key-exchange key version first.",
                remote_id=remote_id,
            )
        return kek

    def still_usable(self, kid: str) -> bool:
        """Read the KEK version `kid` afresh (an import under it was refused): is it still usable?"""
        name, version = kek_version(kid)
        self._versions.pop((name.lower(), version), None)
        kek = self._calls.optional(ACTION, lambda: self._client.get_key(name, version))
        return kek is not None and self.usable(kek)
