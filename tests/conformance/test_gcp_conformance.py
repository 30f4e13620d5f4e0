"""Google Cloud KMS passes the provider conformance suite against its emulator, through the
official client over REST."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.testing.providers import ProviderConformance, ProviderHarness, conformance_context
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.gcp import PLUGIN, GcpSettings
from providers.gcp.emulator import GcpKmsEmulator

GCP_ALGORITHMS = (
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


class TestGcpConformance(ProviderConformance):
    algorithms = GCP_ALGORITHMS
    rotates = GCP_ALGORITHMS

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ProviderHarness]:
        server = EmulatorServer(GcpKmsEmulator(DocumentStore(tmp_path / "x.sqlite"), Clock()), cert_dir=tmp_path)
        server.start()
        settings = GcpSettings(
            project="conformance", location="global", key_ring="keyplan", endpoint=server.url, credentials="local"
        )
        provider = PLUGIN.open(
            settings, conformance_context("gcp.conformance", tmp_path)
        )
        try:
            yield ProviderHarness(
                plugin=PLUGIN, settings=settings, provider=provider, control_url=server.url, ca_cert=None
            )
        finally:
            provider.close()
            server.stop()
