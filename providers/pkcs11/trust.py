"""The security officer's step for `wrap_with_trusted = true`: import a cloud's RSA wrapping
key into the token as a persistent object marked CKA_TRUSTED. Only the SO may set TRUSTED, so
this runs with the SO PIN, outside any `apply`, and is idempotent."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute
from pkcs11 import exceptions as p11
from pkcs11.util.rsa import decode_rsa_public_key
from pydantic import BaseModel, ConfigDict

from keyplan.crypto.fingerprint import spki_fingerprint
from keyplan.crypto.wrap import load_wrapping_key
from keyplan.provider import SourceError
from providers.pkcs11.errors import token_error
from providers.pkcs11.library import attach, detach, find_token
from providers.pkcs11.settings import Pkcs11SourceSettings
from providers.pkcs11.wrapping import find_trusted_wrapping_key


class TrustedWrappingKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    fingerprint: str  # spki: fingerprint of the wrapping key
    created: bool  # False when the token already trusted this key


def trust_wrapping_key(
    settings: Pkcs11SourceSettings, so_pin: str, spki_der: bytes, label: str, *, working_dir: Path | None = None
) -> TrustedWrappingKey:
    try:
        public_key = load_wrapping_key(spki_der)
    except ValueError:
        raise SourceError("Not an RSA wrapping key", "Pass the DER SubjectPublicKeyInfo of the cloud's RSA wrapping key.") from None
    fingerprint = spki_fingerprint(spki_der)
    library = attach(settings.module_path(working_dir), settings.environment(working_dir))
    try:
        token = find_token(library, settings.token_label, settings.slot)
        with library.lock:
            try:
                session = token.open(rw=True, so_pin=so_pin)
            except (p11.UserAlreadyLoggedIn, p11.AnotherUserAlreadyLoggedIn):
                raise SourceError(
                    "The PKCS#11 token is in use by a keyplan source",
                    "The security officer cannot log in while a user session is open in this process. "
                    "Run the trust step on its own, outside `apply`.",
                ) from None
            except p11.PKCS11Error as exc:
                raise token_error("logging in as security officer", exc, token=settings.token_label) from None
            try:
                existing = find_trusted_wrapping_key(session, spki_der)
                if existing is not None:
                    return TrustedWrappingKey(label=existing.label or label, fingerprint=fingerprint, created=False)
                attributes = decode_rsa_public_key(
                    public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
                )
                attributes.update(
                    {
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: False,  # the SO may create public objects only
                        Attribute.TRUSTED: True,
                        Attribute.WRAP: True,
                        Attribute.ENCRYPT: False,
                        Attribute.VERIFY: False,
                        Attribute.LABEL: label,
                        Attribute.ID: hashlib.sha256(spki_der).digest()[:16],
                    }
                )
                session.create_object(attributes)
            except p11.PKCS11Error as exc:
                raise token_error("importing a trusted wrapping key", exc, token=settings.token_label) from None
            finally:
                session.close()
        return TrustedWrappingKey(label=label, fingerprint=fingerprint, created=True)
    finally:
        detach(library)
