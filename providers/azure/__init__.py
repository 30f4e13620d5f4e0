"""keyplan's Azure Key Vault / Managed HSM provider and the emulator it is tested against.

`PLUGIN` is the entry point `keyplan.providers: azure`. Modules: `settings`, `plugin` (static
checks, wrap offers, the KEK prerequisite), `mapping` (key types, names, transfer blobs),
`errors`, `client` (credentials, transport, classified calls), `kek` (the key-exchange key),
`views` (SDK objects as RemoteKeys), `provider`, `emulator`. Importing this package loads neither
the Azure SDK nor the emulator; both load when a provider is opened or an emulator is named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from providers.azure.mapping import build_transfer_blob, key_name_for
from providers.azure.plugin import AzurePlugin
from providers.azure.settings import AzureSettings

if TYPE_CHECKING:
    from providers.azure.emulator import AzureKeyVaultEmulator, ManagedHsmEmulator

PLUGIN = AzurePlugin()

__all__ = [
    "PLUGIN",
    "AzureKeyVaultEmulator",
    "AzurePlugin",
    "AzureSettings",
    "ManagedHsmEmulator",
    "build_transfer_blob",
    "key_name_for",
]


def __getattr__(name: str) -> Any:
    if name in ("AzureKeyVaultEmulator", "ManagedHsmEmulator"):
        from providers.azure import emulator

        return getattr(emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
