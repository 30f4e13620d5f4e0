"""The static half of the PKCS#11 source: settings model, declared capabilities, and `open`,
which loads the library, finds the token and logs in once for the run."""

from __future__ import annotations

import os
from pathlib import Path

from keyplan.algorithms import ALGORITHMS
from keyplan.crypto.wrap import WrapMethod
from keyplan.provider import KeySource, RuntimeContext, SourceCapabilities, SourceError, SourcePlugin
from providers.pkcs11.library import attach, detach, find_token, login
from providers.pkcs11.settings import Pkcs11SourceSettings
from providers.pkcs11.source import Pkcs11Source


def read_pin(pin_env: str) -> str:
    pin = os.environ.get(pin_env)
    if not pin:
        raise SourceError(
            "The PKCS#11 user PIN is not set",
            f"The environment variable {pin_env} (named by `pin_env`) is unset or empty. Set it to "
            "the token's user PIN before running keyplan.",
        )
    return pin


class Pkcs11SourcePlugin(SourcePlugin[Pkcs11SourceSettings]):
    kind = "pkcs11"
    settings_model = Pkcs11SourceSettings

    def declared_capabilities(self, settings: Pkcs11SourceSettings) -> SourceCapabilities:
        """What any PKCS#11 v2.40 token with RSA-OAEP and AES key wrap can do; the open source
        probes the token for more (SHA-256 OAEP, a native CKM_RSA_AES_KEY_WRAP, exact PKCS#8)."""
        trusted = settings.wrap_with_trusted
        methods = {WrapMethod.RSAES_OAEP_SHA_1} if trusted else {WrapMethod.RSAES_OAEP_SHA_1, WrapMethod.RSA_AES_KEY_WRAP_SHA_1}
        return SourceCapabilities(
            # HMAC_SHA224 is left out: its fingerprint (HMAC-SHA256 inside the token) needs a key
            # at least as long as the digest on some tokens (SoftHSM).
            algorithms=frozenset(ALGORITHMS) - {"HMAC_SHA224"},
            wrap_methods=frozenset(methods),
            exact_pkcs8=False,
            wraps_in_hardware=True,
            notes=("declared without opening the token; the token is probed when the source opens",),
        )

    def open(self, settings: Pkcs11SourceSettings, context: RuntimeContext) -> KeySource:
        return open_source(settings, context.address, context.working_dir)


def open_source(settings: Pkcs11SourceSettings, address: str, working_dir: Path | None = None) -> Pkcs11Source:
    module = settings.module_path(working_dir)
    pin = read_pin(settings.pin_env)
    library = attach(module, settings.environment(working_dir))
    try:
        token = find_token(library, settings.token_label, settings.slot)
        session = login(library, token, pin)
    except BaseException:
        detach(library)
        raise
    return Pkcs11Source(address, settings, library, token, session)


PLUGIN = Pkcs11SourcePlugin()
