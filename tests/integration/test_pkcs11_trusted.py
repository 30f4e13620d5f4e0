"""`wrap_with_trusted = true` against SoftHSM2: keys are created CKA_WRAP_WITH_TRUSTED, a wrap
fails with the security officer's step spelled out until the cloud's key is trusted, and then
succeeds, with the cloud recovering exactly the material the token fingerprinted."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from keyplan.algorithms import ALGORITHMS, MaterialKind
from keyplan.crypto import fingerprint_material
from keyplan.crypto.wrap import WrapMethod, unwrap
from keyplan.provider import GenerateRequest, SourceError, WrapRequest
from providers.pkcs11 import DevToken, init_dev_token, open_source, trust_wrapping_key

pytestmark = pytest.mark.hsm

PIN = "112233"
SO_PIN = "99887766"
AES = ALGORITHMS["AES_256"]


@pytest.fixture
def token(tmp_path_factory: pytest.TempPathFactory) -> DevToken:
    return init_dev_token(tmp_path_factory.mktemp("softhsm-trusted"), "trusted", pin=PIN, so_pin=SO_PIN)


@pytest.fixture
def pin_env() -> Iterator[str]:
    name = f"KEYPLAN_TEST_PIN_{uuid.uuid4().hex.upper()}"
    os.environ[name] = PIN
    yield name
    os.environ.pop(name, None)


def cloud_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return private_key, private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_wrap_needs_the_security_officer_then_succeeds(token: DevToken, pin_env: str) -> None:
    settings = token.source_settings(pin_env, wrap_with_trusted=True)
    private_key, spki = cloud_key()
    source = open_source(settings, "pkcs11.trusted")
    try:
        # SoftHSM has no CKM_RSA_AES_KEY_WRAP, and a session AES key cannot be trusted.
        assert source.capabilities().wrap_methods == {WrapMethod.RSAES_OAEP_SHA_1}
        material = source.generate(GenerateRequest(address="key.trusted", version=1, algorithm=AES))
        request = WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki)
        with pytest.raises(SourceError) as raised:
            source.wrap(request)
        assert "security officer" in raised.value.detail
        with pytest.raises(SourceError) as in_use:
            trust_wrapping_key(settings, SO_PIN, spki, "cloud wrapping key")
        assert "outside `apply`" in in_use.value.detail
    finally:
        source.close()

    with pytest.raises(SourceError) as wrong:
        trust_wrapping_key(settings, "00000000", spki, "cloud wrapping key")
    assert wrong.value.summary == "Wrong PIN for the PKCS#11 token"
    trusted = trust_wrapping_key(settings, SO_PIN, spki, "cloud wrapping key")
    assert trusted.created is True and trusted.fingerprint.startswith("spki:")
    assert trust_wrapping_key(settings, SO_PIN, spki, "cloud wrapping key").created is False

    source = open_source(settings, "pkcs11.trusted")
    try:
        blob = source.wrap(request).blob
    finally:
        source.close()
    recovered = unwrap(WrapMethod.RSAES_OAEP_SHA_1, private_key, blob)
    assert fingerprint_material(MaterialKind.SYMMETRIC, recovered) == material.fingerprint


def test_a_trusted_only_key_refuses_untrusted_wrapping_with_advice(token: DevToken, pin_env: str) -> None:
    """A key generated with wrap_with_trusted, wrapped after the setting was switched off."""
    trusted_source = open_source(token.source_settings(pin_env, wrap_with_trusted=True), "pkcs11.trusted")
    try:
        material = trusted_source.generate(GenerateRequest(address="key.switched", version=1, algorithm=AES))
    finally:
        trusted_source.close()
    _, spki = cloud_key()
    plain_source = open_source(token.source_settings(pin_env), "pkcs11.plain")
    try:
        with pytest.raises(SourceError) as raised:
            plain_source.wrap(
                WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSA_AES_KEY_WRAP_SHA_1, wrapping_public_key=spki)
            )
    finally:
        plain_source.close()
    assert raised.value.summary == "The PKCS#11 token refused to wrap this key"
    assert "trusted" in raised.value.detail
