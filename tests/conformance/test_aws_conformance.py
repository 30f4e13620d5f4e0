"""The provider conformance suite against keyplan's AWS KMS emulator, through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.testing.providers import ProviderConformance, ProviderHarness, conformance_context
from providers.aws import PLUGIN, AwsSettings, KmsEmulator
from providers.emulation import Clock, DocumentStore, EmulatorServer


class TestAwsConformance(ProviderConformance):
    algorithms = (
        "AES_256",
        "HMAC_SHA224",
        "HMAC_SHA256",
        "HMAC_SHA384",
        "HMAC_SHA512",
        "RSA_2048",
        "RSA_3072",
        "RSA_4096",
        "EC_P256",
        "EC_P384",
    )
    rotates = ("AES_256",)

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ProviderHarness]:
        store = DocumentStore(tmp_path / "x.sqlite")
        server = EmulatorServer(KmsEmulator(store, Clock()), cert_dir=tmp_path).start()
        # RSA-2048 wrapping keys keep the suite fast; the provider tests cover RSA_4096, the default.
        settings = AwsSettings(
            region="eu-west-1", endpoint=server.url, credentials="local", wrapping_key_spec="RSA_2048"
        )
        context = conformance_context("aws.conformance", tmp_path)
        provider = PLUGIN.open(settings, context)
        try:
            yield ProviderHarness(
                plugin=PLUGIN, settings=settings, provider=provider, control_url=server.url, ca_cert=None
            )
        finally:
            provider.close()
            server.stop()
            store.close()
