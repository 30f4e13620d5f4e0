"""The Azure emulator's realistic profile weighs a vault's transactions as Key Vault documents
(service limits: "the throttling thresholds are weighted, and enforcement is on their sum"):
a call on an RSA 4,096-bit HSM key spends 8 times what one on an RSA 2,048-bit HSM key does, and
an HSM-key creation twice a software-key creation. Driven by the real azure-keyvault-keys client;
the units are read back from what the emulator admitted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import KeyClient

from providers.azure.client import LocalTokenCredential
from providers.azure.emulator import AzureKeyVaultEmulator
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[tuple[EmulatorServer, KeyClient]]:
    server = EmulatorServer(AzureKeyVaultEmulator(DocumentStore(tmp_path / "v.sqlite"), Clock()), cert_dir=tmp_path)
    server.start()
    client = KeyClient(
        vault_url=server.url,
        credential=LocalTokenCredential(),
        verify_challenge_resource=False,
        connection_verify=str(server.ca_cert),
        retry_total=0,  # a 429 reaches the test instead of being retried
    )
    try:
        yield server, client
    finally:
        client.close()
        server.stop()


def stats(server: EmulatorServer) -> dict[str, Any]:
    return dict(fetch_json(server.url + "/_emulator/stats", ca=server.ca_cert))


def until_throttled(call: Any, limit: int = 100) -> tuple[int, HttpResponseError]:
    """Calls until the vault answers 429: how many went through, and the 429."""
    for done in range(limit):
        try:
            call()
        except HttpResponseError as error:
            assert error.status_code == 429, error
            return done, error
    raise AssertionError(f"{limit} calls and no 429")


def test_other_transactions_cost_by_key_size(vault: tuple[EmulatorServer, KeyClient]) -> None:
    server, client = vault
    client.create_rsa_key("big", size=4096, hardware_protected=True)
    client.create_rsa_key("small", size=2048, hardware_protected=True)
    # 4,000 units per 10 s at scale 1; at 0.01 a full bucket holds 40 and refills 4 a second
    server.configure({"profile": "realistic", "quota_scale": 0.01})
    big, answer = until_throttled(lambda: client.get_key("big"))
    assert int(answer.response.headers["Retry-After"]) >= 1
    spent_big = stats(server)["spent"]["other"]
    assert spent_big == pytest.approx(16 * big)  # 4,000 / 250 per RSA 4,096-bit HSM transaction
    assert 2 <= big <= 4  # 40 units, then 4 more a second while the calls are made
    server.configure({"profile": "realistic", "quota_scale": 0.01})  # a fresh budget
    small, _ = until_throttled(lambda: client.get_key("small"))
    assert stats(server)["spent"]["other"] == pytest.approx(2 * small)  # 4,000 / 2,000
    assert 20 <= small <= 40  # the bucket refills 4 units a second while the calls are made
    assert stats(server)["throttled"]["other"] == 1  # the refused call spent nothing


def test_an_hsm_key_creation_costs_two_software_ones(vault: tuple[EmulatorServer, KeyClient]) -> None:
    server, client = vault
    server.configure({"profile": "realistic", "quota_scale": 1})  # 10 HSM or 20 software creations per 10 s
    hsm, _ = until_throttled(lambda: client.create_ec_key(f"h{stats(server)['total']}", hardware_protected=True))
    assert stats(server)["spent"]["create"] == pytest.approx(2 * hsm)
    assert 10 <= hsm <= 14  # the bucket refills 2 units a second while the calls are made
    server.configure({"profile": "realistic", "quota_scale": 1})
    software, _ = until_throttled(lambda: client.create_ec_key(f"s{stats(server)['total']}", hardware_protected=False))
    assert stats(server)["spent"]["create"] == pytest.approx(software)
    assert 20 <= software <= 28
