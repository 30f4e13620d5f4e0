"""The PKCS#11 source against a SoftHSM2 development token: the shared key-source conformance
suite, plus what a token adds to it (the probed capabilities SoftHSM 2.6.1 really has)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from keyplan.crypto.wrap import WrapMethod
from keyplan.provider import KeySource
from keyplan.testing.sources import KeySourceConformance
from providers.pkcs11 import init_dev_token, open_source

pytestmark = pytest.mark.hsm


class TestPkcs11SourceConformance(KeySourceConformance):
    @pytest.fixture(scope="class")
    def source(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySource]:
        token = init_dev_token(tmp_path_factory.mktemp("softhsm"), "conformance", pin="4321", so_pin="87654321")
        pin_env = f"KEYPLAN_TEST_PIN_{uuid.uuid4().hex.upper()}"
        os.environ[pin_env] = "4321"
        source = open_source(token.source_settings(pin_env), "pkcs11.conformance")
        yield source
        source.close()
        os.environ.pop(pin_env, None)

    def test_softhsm_capabilities_are_what_the_token_can_do(self, source: KeySource) -> None:
        capabilities = source.capabilities()
        # SoftHSM 2.6.1: RSA-OAEP with SHA-1 only, no CKM_RSA_AES_KEY_WRAP (the two-step form is used).
        assert capabilities.wrap_methods == {WrapMethod.RSAES_OAEP_SHA_1, WrapMethod.RSA_AES_KEY_WRAP_SHA_1}
        assert capabilities.exact_pkcs8 is False  # SoftHSM zero-pads PKCS#8 before AES key wrap
        assert capabilities.wraps_in_hardware is True
        assert "HMAC_SHA224" not in capabilities.algorithms
        assert {"AES_256", "HMAC_SHA256", "RSA_2048", "EC_P256", "EC_P384"} <= capabilities.algorithms
