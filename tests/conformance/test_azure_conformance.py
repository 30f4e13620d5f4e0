"""The provider conformance suite against the Azure emulator, as a Key Vault (Premium) and as a
Managed HSM (which also imports AES keys), through azure-keyvault-keys over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.testing.providers import ProviderConformance, ProviderHarness, conformance_context
from providers.azure import PLUGIN, AzureSettings
from providers.azure.emulator import AzureKeyVaultEmulator, ManagedHsmEmulator
from providers.emulation import Clock, DocumentStore, EmulatorServer

ASYMMETRIC = ("EC_P256", "EC_P384", "RSA_2048", "RSA_3072", "RSA_4096")


def open_harness(tmp_path: Path, app_class: type[AzureKeyVaultEmulator], vault_url: str) -> Iterator[ProviderHarness]:
    store = DocumentStore(tmp_path / "x.sqlite")
    server = EmulatorServer(app_class(store, Clock()), cert_dir=tmp_path).start()
    settings = AzureSettings(
        vault_url=vault_url, endpoint=server.url, credentials="local", ca_bundle=str(server.ca_cert)
    )
    context = conformance_context("azure.test", tmp_path)
    provider = PLUGIN.open(settings, context)
    try:
        yield ProviderHarness(
            plugin=PLUGIN, settings=settings, provider=provider, control_url=server.url, ca_cert=server.ca_cert
        )
    finally:
        provider.close()
        server.stop()
        store.close()


class TestAzureKeyVaultConformance(ProviderConformance):
    algorithms = ASYMMETRIC
    rotates = ASYMMETRIC

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ProviderHarness]:
        yield from open_harness(tmp_path, AzureKeyVaultEmulator, "https://conformance.vault.azure.net")


class TestAzureManagedHsmConformance(ProviderConformance):
    algorithms = ("AES_256", *ASYMMETRIC)
    rotates = ("AES_256", *ASYMMETRIC)

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ProviderHarness]:
        yield from open_harness(tmp_path, ManagedHsmEmulator, "https://conformance.managedhsm.azure.net")
