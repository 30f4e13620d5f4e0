"""Reaching a workspace's embedded Azure vaults (and any other embedded emulator) out of band,
through the real azure-keyvault-keys client, while no keyplan command runs.

An embedded vault is persisted in `<workspace>/.keyplan/emulators/<provider address with "-">.sqlite`;
serving it again needs the same vault kind and vault URL the provider used, so transfer blobs that
name the vault's own host are accepted as they are during a keyplan run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient

from providers.azure.client import LocalTokenCredential
from providers.azure.emulator import emulator_class
from providers.azure.settings import MANAGED_HSM_SUFFIXES
from providers.emulation import EmulatorApp, EmulatorServer, start_embedded
from providers.emulation.server import fetch_json


@dataclass
class AzureVault:
    """One embedded vault served again: the SDK client, and the server for control calls."""

    client: KeyClient
    server: EmulatorServer
    vault_url: str

    def crypto(self, kid: str) -> CryptographyClient:
        return CryptographyClient(
            kid,
            LocalTokenCredential(),
            verify_challenge_resource=False,
            connection_verify=str(self.server.ca_cert),
        )

    def fingerprints(self) -> dict[str, list[str]]:
        """Key name -> fingerprints of the material the vault unwrapped, in import order."""
        found: dict[str, list[str]] = {}
        for material in materials(self.server):
            found.setdefault(material["key"], []).append(material["fingerprint"])
        return found


def materials(server: EmulatorServer) -> list[dict[str, Any]]:
    document = fetch_json(server.url + "/_emulator/materials", ca=server.ca_cert)
    return list(document["materials"])


def key_name(remote_id: str) -> str:
    """The Azure key name in a versionless key id (https://<vault>/keys/<name>)."""
    return urlsplit(remote_id).path.strip("/").split("/")[1]


@contextlib.contextmanager
def azure_vault(workdir: Path, provider: str, vault_url: str) -> Iterator[AzureVault]:
    """Serve the embedded vault of `provider` (e.g. "azure.hsm") again and open a client on it."""
    host = urlsplit(vault_url).hostname or ""
    kind = "managedhsm" if host.endswith(MANAGED_HSM_SUFFIXES) else "vault"
    with embedded(workdir, emulator_class(kind, vault_url=vault_url), provider) as server:
        client = KeyClient(
            vault_url=server.url,
            credential=LocalTokenCredential(),
            verify_challenge_resource=False,
            connection_verify=str(server.ca_cert),
        )
        try:
            yield AzureVault(client=client, server=server, vault_url=vault_url)
        finally:
            client.close()


@contextlib.contextmanager
def embedded(workdir: Path, app: type[EmulatorApp], provider: str) -> Iterator[EmulatorServer]:
    """Any embedded emulator of `provider`, served again on its persisted data."""
    server = start_embedded(app, workdir / ".keyplan", provider.replace(".", "-"))
    try:
        yield server
    finally:
        server.stop()
        server.app.store.close()
