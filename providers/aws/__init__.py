"""keyplan's AWS KMS support: the provider plugin (on boto3) and the local KMS emulator.

Modules: `settings` (the provider block), `plugin` (static checks and wrap offers), `mapping`
(keyplan keys <-> KMS keys), `errors` (boto3 failures classified), `client` (the boto3 client
and paging), `provider` (the runtime provider), `emulator` (the local KMS).

Importing this package loads neither boto3 nor the emulator: boto3 loads when a provider is
opened, the emulator when it is named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from providers.aws.plugin import PLUGIN, AwsKmsPlugin
from providers.aws.provider import AwsKmsProvider
from providers.aws.settings import AwsSettings

if TYPE_CHECKING:
    from providers.aws.emulator import KmsEmulator

__all__ = ["PLUGIN", "AwsKmsPlugin", "AwsKmsProvider", "AwsSettings", "KmsEmulator"]


def __getattr__(name: str) -> Any:
    if name == "KmsEmulator":
        from providers.aws.emulator import KmsEmulator

        return KmsEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
