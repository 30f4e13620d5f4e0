"""Google Cloud KMS: the keyplan provider (`PLUGIN`, on the official `google-cloud-kms` client)
and a local emulator of the Cloud KMS REST API (`GcpKmsEmulator`).

Modules: `settings`, `plugin` (static checks, wrap offers, prerequisites), `mapping` (keyplan's
vocabulary <-> Cloud KMS's), `errors`, `client` (the SDK client and how it is called),
`importjobs`, `imports` (material imported as versions, once), `views` (SDK objects as RemoteKeys), `provider`, `emulator`.

Importing this package loads neither the Google SDK nor the emulator; both load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from providers.gcp.plugin import GcpPlugin
from providers.gcp.settings import GcpSettings

if TYPE_CHECKING:
    from providers.gcp.emulator import GcpKmsEmulator

PLUGIN = GcpPlugin()

__all__ = ["PLUGIN", "GcpKmsEmulator", "GcpPlugin", "GcpSettings"]


def __getattr__(name: str) -> Any:
    if name == "GcpKmsEmulator":
        from providers.gcp.emulator import GcpKmsEmulator

        return GcpKmsEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
