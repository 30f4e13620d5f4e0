"""Reaching a workspace's embedded Google Cloud KMS emulator out of band: the same
`.keyplan/emulators/gcp-<name>.sqlite` served again, spoken to by the official
`google-cloud-kms` client over REST, plus the emulator's control API (clock, materials)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.kms_v1 import KeyManagementServiceClient

from providers.emulation.server import EmulatorServer, fetch_json, start_embedded
from providers.emulation.store import DocumentStore
from providers.gcp.emulator import VERSIONS, GcpKmsEmulator


@dataclass
class GcpCloud:
    """One embedded GCP emulator, reopened for a test between keyplan runs."""

    client: KeyManagementServiceClient
    server: EmulatorServer

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock; the offset is persisted, so later keyplan runs see it too."""
        fetch_json(self.server.url + "/_emulator/clock", "POST", {"advance_seconds": seconds})

    def fingerprints(self) -> dict[str, dict[str, str]]:
        """key name -> version id -> fingerprint of the material the emulator unwrapped and holds."""
        held: dict[str, dict[str, str]] = {}
        for m in fetch_json(self.server.url + "/_emulator/materials")["materials"]:
            held.setdefault(m["key"], {})[m["version"]] = m["fingerprint"]
        return held

    def version_states(self, key_name: str) -> dict[str, str]:
        listed = self.client.list_crypto_key_versions(request={"parent": key_name})
        return {v.name.rsplit("/", 1)[-1]: v.state.name for v in listed}

    def primary(self, key_name: str) -> str:
        return str(self.client.get_crypto_key(name=key_name).primary.name.rsplit("/", 1)[-1])

    def version_name(self, key_name: str, version_id: str) -> str:
        return f"{key_name}/cryptoKeyVersions/{version_id}"

    def set_version_state(self, key_name: str, version_id: str, state: str) -> None:
        self.client.update_crypto_key_version(
            request={
                "crypto_key_version": {"name": self.version_name(key_name, version_id), "state": state},
                "update_mask": {"paths": ["state"]},
            }
        )

    def encrypt(self, key_name: str, plaintext: bytes) -> bytes:
        return bytes(self.client.encrypt(request={"name": key_name, "plaintext": plaintext}).ciphertext)

    def decrypt(self, key_name: str, ciphertext: bytes) -> bytes:
        return bytes(self.client.decrypt(request={"name": key_name, "ciphertext": ciphertext}).plaintext)


@contextlib.contextmanager
def gcp_cloud(workspace_path: Path, name: str = "gcp-main") -> Iterator[GcpCloud]:
    """The workspace's embedded GCP emulator, served again for out-of-band changes."""
    server = start_embedded(GcpKmsEmulator, workspace_path / ".keyplan", name)
    client = KeyManagementServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=server.url),
    )
    try:
        yield GcpCloud(client, server)
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
        server.stop()
        server.app.store.close()


def materials_held(workspace_path: Path, name: str = "gcp-main") -> list[bytes]:
    """Every key material the emulator unwrapped and still holds, read from its store."""
    store = DocumentStore(workspace_path / ".keyplan" / "emulators" / f"{name}.sqlite")
    try:
        return [base64.b64decode(doc["_material"]) for _, doc in store.list(VERSIONS) if doc.get("_material")]
    finally:
        store.close()


def live_labels(cloud: GcpCloud, key_name: str) -> dict[str, Any]:
    return dict(cloud.client.get_crypto_key(name=key_name).labels)
