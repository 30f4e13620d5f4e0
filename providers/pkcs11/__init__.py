"""The PKCS#11 key source: keys generated inside an HSM (or SoftHSM for development), fingerprinted
inside it, and wrapped inside it for each cloud, through python-pkcs11.

Public surface: `PLUGIN` (entry point `keyplan.sources:pkcs11`), its settings model, the
security officer's `trust_wrapping_key` step, and the development-token helpers.
"""

from providers.pkcs11.devtoken import DevToken, find_softhsm_module, init_dev_token
from providers.pkcs11.plugin import PLUGIN, Pkcs11SourcePlugin, open_source
from providers.pkcs11.settings import Pkcs11SourceSettings
from providers.pkcs11.source import Pkcs11Source
from providers.pkcs11.trust import TrustedWrappingKey, trust_wrapping_key

__all__ = [
    "PLUGIN",
    "DevToken",
    "Pkcs11Source",
    "Pkcs11SourcePlugin",
    "Pkcs11SourceSettings",
    "TrustedWrappingKey",
    "find_softhsm_module",
    "init_dev_token",
    "open_source",
    "trust_wrapping_key",
]
