"""keyplan's AWS KMS emulator: the KMS JSON 1.1 API (`POST /`, `X-Amz-Target: TrentService.<Op>`)
as far as bring-your-own-key needs it, so the unmodified boto3 client works against it.

It keeps every key, alias, import token and wrapping key in the `DocumentStore`, decides every
time question with the emulator `Clock`, and really unwraps what ImportKeyMaterial receives with
the private half of the wrapping key it handed out. Imported material is then used for
Encrypt/Decrypt (AES-GCM), GenerateMac/VerifyMac and Sign/GetPublicKey, so a test can prove the
cloud holds what keyplan wrapped. The rules enforced are AWS KMS's documented BYOK rules:
PendingImport keys, 24-hour import tokens bound to key, algorithm and wrapping key, ValidTo at
most 365 days ahead, expiry of material, re-import of the same bytes only, one pending NEW
material per key, RotateKeyOnDemand, deletion windows of 7-30 days, tag and alias rules.

Errors are HTTP 400 with `{"__type": <Code>, "message": ...}`; an injected 5xx is
`KMSInternalException` (HTTP 500) and an injected 429 is `ThrottlingException` (HTTP 400).
The emulator stores imported material in its own database, as the cloud does; it reports only
fingerprints through the control API.

Modules: `core` (dispatch, key lookup and state), `keys`, `imports`, `aliases`, `crypto` (the
operations, by resource), `material`, `wire` (specs, limits, body members), `errors`.
"""

from __future__ import annotations

from keyplan.limits import RateClass
from providers.aws.emulator.aliases import AliasRoutes
from providers.aws.emulator.crypto import CryptoRoutes
from providers.aws.emulator.imports import ImportRoutes
from providers.aws.emulator.keys import KeyRoutes
from providers.aws.quotas import RATE_CLASSES
from providers.emulation.main import serve_main


class KmsEmulator(KeyRoutes, ImportRoutes, AliasRoutes, CryptoRoutes):
    """AWS KMS over the JSON 1.1 protocol, backed by a DocumentStore."""

    def quota_classes(self) -> tuple[RateClass, ...]:
        return RATE_CLASSES  # per operation, per second (realistic profile)


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until killed; the first line of stdout is its URL."""
    return serve_main(
        argv,
        prog="python -m providers.aws.emulator",
        description="keyplan's AWS KMS emulator",
        kind="aws",
        app=lambda args: KmsEmulator,
    )


__all__ = ["KmsEmulator", "main"]
