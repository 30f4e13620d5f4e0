"""The static half of Google Cloud KMS support: checks, wrap offers and prerequisites, without
a network call or the Google SDK."""

from __future__ import annotations

from keyplan.algorithms import Algorithm, MaterialKind
from keyplan.diagnostics import Diagnostics
from keyplan.provider import (
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
from providers.gcp.mapping import (
    IMPORT_METHODS,
    KIND_IMPORT_JOB,
    KIND_KEY_RING,
    gcp_key_type,
    import_job_prerequisite_id,
    import_method_name,
    key_ring_prerequisite_id,
    label_problems,
)
from providers.gcp.provider import GcpProvider
from providers.gcp.settings import MAX_LABELS, GcpSettings


class GcpPlugin(ProviderPlugin[GcpSettings]):
    kind = "gcp"
    emulator_variants = ("kms",)
    settings_model = GcpSettings

    def check_key(self, settings: GcpSettings, address: str, key: KeySpec) -> Diagnostics:
        diags = Diagnostics()
        key_type = gcp_key_type(key.algorithm, key.usage, settings.symmetric_algorithm)
        if key_type is None:
            diags.error(
                f"Google Cloud KMS cannot import {key.algorithm.name} keys for {key.usage.value}",
                f"The target {address} imports AES_256 for encrypt, HMAC_SHA224 to HMAC_SHA512 for mac, RSA_2048 to "
                "RSA_4096 for sign or decrypt, and EC_P256 or EC_P384 for sign. Choose one of these, or remove "
                f"{address} from this key's targets.",
                range=key.range,
                address=key.address,
            )
        elif not self.wrap_offers(settings, key.algorithm):
            diags.error(
                f"import method {settings.import_method} cannot carry {key.algorithm.name} keys",
                f"Direct RSA-OAEP import methods cannot wrap RSA private keys. Set import_method on {address} to an "
                "RSA_OAEP_*_AES_256 method, or remove it to let keyplan choose.",
                range=key.range,
                address=key.address,
            )
        user_labels = dict(key.labels)
        for reserved in RESERVED_TAGS:
            if reserved in user_labels:
                diags.error(
                    f"label {reserved!r} is reserved by keyplan",
                    f"keyplan sets {reserved!r} on every key it manages. Rename or remove this label.",
                    range=key.range,
                    address=key.address,
                )
        if len(user_labels) + len(RESERVED_TAGS) > MAX_LABELS:
            diags.error(
                f"too many labels for Google Cloud KMS ({len(user_labels)})",
                f"A Cloud KMS key carries at most {MAX_LABELS} labels, and keyplan adds {len(RESERVED_TAGS)} of its "
                f"own. Keep at most {MAX_LABELS - len(RESERVED_TAGS)} labels on this key.",
                range=key.range,
                address=key.address,
            )
        for label, value in user_labels.items():
            problems = label_problems(label, value)
            if problems:
                diags.error(
                    f"label {label!r} is not allowed by Google Cloud KMS",
                    f"At {address}, the {'; the '.join(problems)}. Rename the label or change its value to follow "
                    "these rules.",
                    range=key.range,
                    address=key.address,
                )
        if key.expiry is not None:
            diags.warning(
                "expiry is ignored by Google Cloud KMS",
                f"Cloud KMS has no expiry for imported material, so keys at {address} keep their material until "
                "keyplan rotates or destroys it. Remove expiry, or use rotation to replace material on a schedule.",
                range=key.range,
                address=key.address,
            )
        if key.aliases:
            diags.error(
                "Google Cloud KMS keys have no aliases",
                f"Cloud KMS finds keys by their resource name only, so aliases cannot be set at {address}. Remove "
                "aliases from this key, or declare the key for the targets that have aliases separately from the "
                "one for Cloud KMS.",
                range=key.range,
                address=key.address,
            )
        if key.description is not None:
            diags.warning(
                "description is not kept by Google Cloud KMS",
                f"Cloud KMS keys have no description, so keys at {address} do not carry it and keyplan never "
                "compares it there. Put what it says in a label if Cloud KMS should show it, or remove "
                "description when no other target uses it.",
                range=key.range,
                address=key.address,
            )
        return diags

    def metadata_fields(self, settings: GcpSettings) -> frozenset[str]:
        """Cloud KMS keeps labels and (per version) enabled; it has no aliases or description."""
        return frozenset({"labels", "enabled"})

    def wrap_offers(self, settings: GcpSettings, algorithm: Algorithm) -> list[WrapOffer]:
        if not any(gcp_key_type(algorithm, usage) for usage in algorithm.usages):
            return []
        offers = []
        for (method, bits), name in IMPORT_METHODS.items():  # already strongest first, 4096 before 3072
            if not method.hybrid and algorithm.kind is MaterialKind.RSA:
                continue
            if settings.import_method is not None and name != settings.import_method:
                continue
            offers.append(WrapOffer(method=method, wrapping_key_bits=bits))
        return offers

    def prerequisites(self, settings: GcpSettings, key: KeySpec, offer: WrapOffer) -> list[PrerequisiteSpec]:
        ring = settings.key_ring_name
        method = import_method_name(offer.method, offer.wrapping_key_bits)
        return [
            PrerequisiteSpec(
                id=key_ring_prerequisite_id(ring),
                kind=KIND_KEY_RING,
                description=f"key ring {ring}",
                attributes={"name": ring},
            ),
            PrerequisiteSpec(
                id=import_job_prerequisite_id(ring, method, settings.protection_level),
                kind=KIND_IMPORT_JOB,
                description=f"{method} import job ({settings.protection_level}) in key ring {ring}",
                attributes={"key_ring": ring, "import_method": method, "protection_level": settings.protection_level},
            ),
        ]

    def lifecycle_support(self, settings: GcpSettings, key: KeySpec) -> KeyLifecycleSupport:
        # Cloud KMS keeps imported versions until they are destroyed: no expiry time exists.
        return KeyLifecycleSupport(
            rotation=True, expiry=False, rotation_mechanism="Google: new key version imported, then made primary"
        )

    def protection_note(self, settings: GcpSettings) -> str | None:
        return (
            "Google Cloud KMS destroys versions only after the scheduled-destruction period; an IAM deny policy "
            "on cloudkms.cryptoKeyVersions.destroy guards the key itself"
        )

    def deletion_note(self, settings: GcpSettings) -> str:
        return (
            "every version scheduled for destruction (Cloud KMS cannot delete a key holding imported versions; "
            "the key and its name remain, empty, after the destroy window)"
        )

    def serve_emulator(self, options: EmulatorOptions) -> int:
        from providers.gcp.emulator import main

        return main(options.serve_args())

    def open(self, settings: GcpSettings, context: RuntimeContext) -> Provider:
        return GcpProvider(settings, context)
