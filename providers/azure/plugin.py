"""The static half of Azure Key Vault / Managed HSM support: what can be imported where,
checked without a network call or the Azure SDK."""

from __future__ import annotations

from keyplan.algorithms import Algorithm, MaterialKind
from keyplan.diagnostics import Diagnostics
from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAGS,
    EmulatorOptions,
    KeyLifecycleSupport,
    KeySpec,
    PrerequisiteSpec,
    Provider,
    ProviderPlugin,
    RuntimeContext,
    WrapOffer,
)
from providers.azure.mapping import KEK_KIND, WRAP_METHOD, azure_key_type, kek_prerequisite_id
from providers.azure.provider import AzureProvider
from providers.azure.settings import MAX_TAG_LENGTH, MAX_TAGS, AzureSettings


class AzurePlugin(ProviderPlugin[AzureSettings]):
    kind = "azure"
    emulator_variants = ("vault", "managedhsm")
    settings_model = AzureSettings

    def check_key(self, settings: AzureSettings, address: str, key: KeySpec) -> Diagnostics:
        diagnostics = Diagnostics()
        self._check_algorithm(settings, address, key, diagnostics)
        self._check_tags(key, diagnostics)
        if key.aliases:
            diagnostics.error(
                "Azure keys have no aliases",
                f"This key declares aliases ({', '.join(key.aliases)}) and targets {address}, but Azure Key Vault "
                "and Managed HSM address keys by name only, so the aliases would not exist there. Remove the "
                "aliases, or move them to a key whose targets all support aliases (AWS).",
                range=key.range,
                address=key.address,
            )
        if key.description:
            diagnostics.warning(
                "Azure keys have no description",
                f"Azure Key Vault and Managed HSM keep no description, so this key's description is not stored at "
                f"{address} (other targets still receive it). Put what it says in a label if Azure should carry it.",
                range=key.range,
                address=key.address,
            )
        return diagnostics

    def _check_algorithm(self, settings: AzureSettings, address: str, key: KeySpec, diagnostics: Diagnostics) -> None:
        algorithm = key.algorithm
        key_type = azure_key_type(algorithm)
        if key_type is None:
            if algorithm.kind is MaterialKind.HMAC:
                detail = (
                    f"Azure has no HMAC key type that accepts imported material, so {algorithm.name} cannot be "
                    f"imported at {address}. Use AES_256 on a Managed HSM, or import HMAC keys into another cloud."
                )
            else:
                detail = (
                    f"Azure imports RSA_2048, RSA_3072, RSA_4096, EC_P256, EC_P384 and, on a Managed HSM, AES_256. "
                    f"Choose one of those for this key, or remove the {address} target."
                )
            diagnostics.error(
                f"Azure cannot import {algorithm.name} keys", detail, range=key.range, address=key.address
            )
            return
        if key_type.managed_hsm_only and settings.vault_kind != "managedhsm":
            diagnostics.error(
                "AES keys can be imported only into an Azure Managed HSM",
                f"{address} is a Key Vault ({settings.vault_url}); Key Vault accepts imported RSA and EC keys but "
                "not symmetric (oct-HSM) ones. Point vault_url at a Managed HSM "
                "(https://<name>.managedhsm.azure.net), or use an RSA or EC algorithm for this key.",
                range=key.range,
                address=key.address,
            )
        if key.usage not in algorithm.usages:
            allowed = ", ".join(u.value for u in algorithm.usages)
            diagnostics.error(
                f"{algorithm.name} keys cannot be used to {key.usage.value}",
                f"An {key_type.kty} key of this algorithm supports: {allowed}. Set usage to one of those.",
                range=key.range,
                address=key.address,
            )

    def _check_tags(self, key: KeySpec, diagnostics: Diagnostics) -> None:
        reserved = sorted(set(key.labels) & set(RESERVED_TAGS))
        if reserved:
            diagnostics.error(
                "Labels use names keyplan reserves",
                f"The labels {', '.join(reserved)} are set by keyplan itself on every key. Rename these labels.",
                range=key.range,
                address=key.address,
            )
        if len(key.labels) + len(RESERVED_TAGS) > MAX_TAGS:
            diagnostics.error(
                "Too many labels for an Azure key",
                f"An Azure key holds at most {MAX_TAGS} tags and keyplan uses {len(RESERVED_TAGS)} of them, so at "
                f"most {MAX_TAGS - len(RESERVED_TAGS)} labels fit; this key has {len(key.labels)}. Remove some labels.",
                range=key.range,
                address=key.address,
            )
        too_long = [
            name
            for name, value in key.labels.items()
            if not name or len(name) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH
        ]
        if too_long:
            diagnostics.error(
                "Labels exceed Azure's tag limits",
                f"Azure tag names must be 1-{MAX_TAG_LENGTH} characters and values at most {MAX_TAG_LENGTH}; the "
                f"labels {', '.join(repr(n[:40]) for n in too_long)} do not fit. Shorten them.",
                range=key.range,
                address=key.address,
            )
        if len(key.address) > MAX_TAG_LENGTH:
            diagnostics.error(
                "The key address is too long for an Azure tag",
                f"keyplan records the key address in the {RESERVED_TAG_ADDRESS} tag, whose value Azure limits to "
                f"{MAX_TAG_LENGTH} characters. Use a shorter key name or index.",
                range=key.range,
                address=key.address,
            )

    def wrap_offers(self, settings: AzureSettings, algorithm: Algorithm) -> list[WrapOffer]:
        key_type = azure_key_type(algorithm)
        if key_type is None or (key_type.managed_hsm_only and settings.vault_kind != "managedhsm"):
            return []
        return [WrapOffer(method=WRAP_METHOD, wrapping_key_bits=settings.kek_size)]

    def prerequisites(self, settings: AzureSettings, key: KeySpec, offer: WrapOffer) -> list[PrerequisiteSpec]:
        return [
            PrerequisiteSpec(
                id=kek_prerequisite_id(settings.vault_url),
                kind=KEK_KIND,
                description=(
                    f"key-exchange key {settings.kek_name} (RSA-HSM {settings.kek_size}, import only) in {settings.vault_url}"
                ),
                attributes={"name": settings.kek_name, "bits": str(settings.kek_size)},
            )
        ]

    def metadata_fields(self, settings: AzureSettings) -> frozenset[str]:
        """Azure keeps tags (keyplan's labels) and the enabled attribute; it has no aliases and no
        description, so the planner must not compare those."""
        return frozenset({"labels", "enabled"})

    def lifecycle_support(self, settings: AzureSettings, key: KeySpec) -> KeyLifecycleSupport:
        return KeyLifecycleSupport(rotation_mechanism="Azure: new key version (the latest version is the current one)")

    def protection_note(self, settings: AzureSettings) -> str | None:
        if settings.purge_protection:
            return (
                f"Azure purge protection is on for this vault: a deleted key stays recoverable for "
                f"{settings.retention_days} days and cannot be purged earlier"
            )
        return "Azure purge protection is off for this vault: turn it on so a deleted key cannot be purged early"

    def deletion_note(self, settings: AzureSettings) -> str:
        note = f"soft-deleted: recoverable for {settings.retention_days} days, then purged by Azure"
        if settings.purge_protection:
            note += " (purge protection: it cannot be purged earlier)"
        return note

    def serve_emulator(self, options: EmulatorOptions) -> int:
        from providers.azure.emulator import main

        args = options.serve_args()
        if options.variant is not None:
            args += ["--kind", options.variant]
        return main(args)

    def open(self, settings: AzureSettings, context: RuntimeContext) -> Provider:
        return AzureProvider(settings, context)
