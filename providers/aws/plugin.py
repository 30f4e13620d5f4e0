"""The static half of AWS KMS support: what it can import, checked without a network call."""

from __future__ import annotations

import re
from collections.abc import Callable

from keyplan.algorithms import Algorithm, MaterialKind
from keyplan.crypto.wrap import WrapMethod, direct_oaep_limit, strongest_first
from keyplan.diagnostics import Diagnostics
from keyplan.provider import (
    RESERVED_TAGS,
    EmulatorOptions,
    KeyLifecycleSupport,
    KeySpec,
    Provider,
    ProviderPlugin,
    RuntimeContext,
    WrapOffer,
)
from providers.aws.mapping import KEY_SPECS, PKCS8_SIZES
from providers.aws.provider import AwsKmsProvider
from providers.aws.settings import MAX_EXPIRY_DAYS, MAX_TAGS, AwsSettings


class AwsKmsPlugin(ProviderPlugin[AwsSettings]):
    """The static half: what AWS KMS can import, checked without a network call."""

    kind = "aws"
    emulator_variants = ("kms",)
    settings_model = AwsSettings

    def wrap_offers(self, settings: AwsSettings, algorithm: Algorithm) -> list[WrapOffer]:
        if algorithm.name not in KEY_SPECS:
            return []
        bits = settings.wrapping_bits
        methods: set[WrapMethod] = set()
        if algorithm.kind in (MaterialKind.RSA, MaterialKind.EC):
            # AWS accepts RSA_AES_KEY_WRAP_* for RSA and ECC material only (see providers/aws/emulator.py).
            methods |= {WrapMethod.RSA_AES_KEY_WRAP_SHA_256, WrapMethod.RSA_AES_KEY_WRAP_SHA_1}
        if algorithm.kind is not MaterialKind.RSA:
            size = algorithm.material_length or PKCS8_SIZES.get(algorithm.curve or "", 10**6)
            for method in (WrapMethod.RSAES_OAEP_SHA_256, WrapMethod.RSAES_OAEP_SHA_1):
                if size <= direct_oaep_limit(bits, method):
                    methods.add(method)
        return [WrapOffer(method=m, wrapping_key_bits=bits) for m in strongest_first(methods)]

    def check_key(self, settings: AwsSettings, address: str, key: KeySpec) -> Diagnostics:
        diags = Diagnostics()

        def error(summary: str, detail: str) -> None:
            diags.error(summary, detail, range=key.range, address=key.address)

        mapping = KEY_SPECS.get(key.algorithm.name)
        if mapping is None:
            error(
                f"AWS KMS ({address}) cannot import {key.algorithm.name} keys",
                f"AWS KMS imports {', '.join(KEY_SPECS)}. Choose one of these algorithms or remove {address} from "
                "this key's targets.",
            )
            return diags
        if key.usage not in mapping[1]:
            usages = ", ".join(u.value for u in mapping[1])
            error(
                f"AWS KMS cannot use {key.algorithm.name} keys for {key.usage.value}",
                f"An imported {key.algorithm.name} key in AWS KMS can be used for: {usages}. Set usage to one of these.",
            )
        if key.rotation is not None and key.algorithm.kind is not MaterialKind.SYMMETRIC:
            error(
                f"AWS KMS cannot rotate imported {key.algorithm.name} keys",
                "AWS KMS keeps the one imported material of an asymmetric or HMAC key for the key's whole life; "
                "only symmetric (AES_256) keys rotate, by importing new material and RotateKeyOnDemand. Remove the "
                "rotation block, or replace the key with a new one when its material must change.",
            )
        if key.expiry is not None and not 0 < key.expiry.total_seconds() <= MAX_EXPIRY_DAYS * 86400:
            error(
                "AWS KMS material expiry must be between a moment and 365 days",
                f"AWS KMS accepts a ValidTo at most 365 days after the import; this key asks for {key.expiry}. "
                "Set expiry to 365 days or less, or declare that the material never expires.",
            )
        self._check_tags(key, error)
        self._check_aliases(key, error)
        if key.description is not None and len(key.description) > 8192:
            error("AWS KMS key descriptions are at most 8192 characters", "Shorten the description.")
        return diags

    @staticmethod
    def _check_tags(key: KeySpec, error: Callable[[str, str], None]) -> None:
        for name, value in key.labels.items():
            if name in RESERVED_TAGS:
                error(f"The label {name} is reserved for keyplan", f"keyplan sets {name} itself. Rename this label.")
            elif name.lower().startswith("aws:"):
                error(
                    f"AWS reserves tag keys beginning with aws: ({name})",
                    "Rename the label so it does not start with aws:.",
                )
            if not 1 <= len(name) <= 128:
                error(f"AWS KMS tag keys are 1 to 128 characters ({name[:40]!r})", "Shorten or rename the label.")
            if len(value) > 256:
                error(f"AWS KMS tag values are at most 256 characters (label {name})", "Shorten the label's value.")
        if len(key.labels) + len(RESERVED_TAGS) > MAX_TAGS:
            error(
                f"AWS KMS keys carry at most {MAX_TAGS} tags",
                f"This key has {len(key.labels)} labels and keyplan adds {len(RESERVED_TAGS)} of its own; "
                f"keep at most {MAX_TAGS - len(RESERVED_TAGS)} labels.",
            )

    @staticmethod
    def _check_aliases(key: KeySpec, error: Callable[[str, str], None]) -> None:
        for alias in key.aliases:
            if not alias.startswith("alias/") or alias == "alias/":
                error(
                    f"AWS KMS alias names start with alias/ ({alias})",
                    f"Write it as alias/{alias.removeprefix('alias/')}.",
                )
            elif alias.startswith("alias/aws/"):
                error(
                    f"alias/aws/ names are reserved for AWS managed keys ({alias})", "Choose a name outside alias/aws/."
                )
            elif len(alias) > 256 or not re.fullmatch(r"[a-zA-Z0-9:/_-]+", alias):
                error(
                    f"AWS KMS alias names use letters, digits and :/_- only, up to 256 characters ({alias})",
                    "Rename the alias.",
                )
        if len(set(key.aliases)) != len(key.aliases):
            error("An alias is listed twice", "List each alias once.")

    def lifecycle_support(self, settings: AwsSettings, key: KeySpec) -> KeyLifecycleSupport:
        # Only symmetric imported keys take new material (RotateKeyOnDemand); every import takes a ValidTo.
        return KeyLifecycleSupport(
            rotation=key.algorithm.kind is MaterialKind.SYMMETRIC,
            expiry=True,
            rotation_mechanism="AWS: new key material + RotateKeyOnDemand",
            # An import into a key holding material re-imports that same material (KMS refuses
            # any other with IncorrectKeyMaterialException), so a lost answer is safely repeated.
            import_adds_version=False,
            rotation_instead=(
                f"AWS KMS keeps the one material of an imported {key.algorithm.name} key for its whole life. To "
                "change the material, declare a new key under another name, move aliases and applications to it, "
                "then remove the old key."
            ),
        )

    def protection_note(self, settings: AwsSettings) -> str | None:
        return (
            "AWS KMS can guard the key itself: a key policy statement denying kms:ScheduleKeyDeletion "
            "(keyplan does not manage key policies)"
        )

    def deletion_note(self, settings: AwsSettings) -> str:
        return (
            f"scheduled for deletion after a {settings.deletion_window_days}-day waiting period "
            "(cancelling restores it disabled)"
        )

    def serve_emulator(self, options: EmulatorOptions) -> int:
        from providers.aws.emulator import main

        return main(options.serve_args())

    def open(self, settings: AwsSettings, context: RuntimeContext) -> Provider:
        return AwsKmsProvider(settings, context)


PLUGIN = AwsKmsPlugin()
