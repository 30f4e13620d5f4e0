"""A state written by an older keyplan published E_K(0^128), GCM's hash subkey, as each AES
key's fingerprint. Reading it drops those values (state format 2), the next apply recomputes
them through the key source, and no copy keyplan writes afterwards (state, its backup, plan
files, the keystore, output) holds the old values."""

from __future__ import annotations

import base64
import json
import logging

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from providers.emulation.store import DocumentStore
from providers.software.format import _entry_aad
from providers.software.keystore import Keystore
from providers.software.unlock import WarnOnce
from tests.e2e.conftest import Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def _hash_subkey(workspace: Workspace) -> str:
    store = DocumentStore(workspace.path / ".keyplan" / "emulators" / "aws-main.sqlite")
    try:
        secrets = [base64.b64decode(m["secret"]) for _, key in store.list("keys") for m in key["materials"] if m.get("secret")]
    finally:
        store.close()
    (secret,) = secrets
    encryptor = Cipher(algorithms.AES(secret), modes.ECB()).encryptor()
    return (encryptor.update(bytes(16)) + encryptor.finalize()).hex()


def _make_old(workspace: Workspace, hash_subkey: str) -> None:
    """Write the state, its backup and the keystore as keyplan 0.1 format 1 did."""
    state = workspace.state()
    state["format_version"] = 1
    for record in state["keys"].values():
        for material in record["materials"]:
            material["fingerprint"] = "kcv:" + hash_subkey
    old = json.dumps(state, indent=2).encode()
    workspace.state_path.write_bytes(old)
    (workspace.path / "keyplan.kpstate.json.backup").write_bytes(old)
    keystore = Keystore(workspace.path / ".keyplan" / "keystore.json", "KEYPLAN_KEYSTORE_PASSPHRASE", WarnOnce(logging.getLogger("test")))
    document = keystore.read()
    assert document is not None
    master = keystore.unlock(document)
    entries = {}
    for handle, entry in document.entries.items():
        material = keystore.open_entry(handle, entry, master)
        old_fingerprint = "kcv:" + hash_subkey
        sealed = master.seal(material, _entry_aad(handle, entry.algorithm, old_fingerprint))
        entries[handle] = entry.model_copy(update={"fingerprint": old_fingerprint, "sealed": sealed})
    keystore._write(document.model_copy(update={"entries": entries}))
    assert hash_subkey.encode() in keystore.path.read_bytes()


def test_old_fingerprints_are_dropped_recomputed_and_scrubbed_from_every_copy(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    current = workspace.state()["keys"]["key.data"]["materials"][0]["fingerprint"]
    hash_subkey = _hash_subkey(workspace)
    assert hash_subkey[:10] not in current
    _make_old(workspace, hash_subkey)

    outputs = [workspace.keyplan(*args) for args in (("state", "show", "key.data"), ("show", "-json"), ("plan", "-json"))]
    for result in outputs:
        assert result.code == 0, result.output
        assert hash_subkey not in result.output
    planfile = workspace.path / "after.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    assert workspace.keyplan("apply", str(planfile)).code == 0

    state = workspace.state()
    assert state["format_version"] == 2
    assert state["keys"]["key.data"]["materials"][0]["fingerprint"] == current, "recomputed through the source"
    assert workspace.emulator_fingerprints() and current in sum(workspace.emulator_fingerprints().values(), [])
    for path in workspace.path.rglob("*"):
        if path.is_file() and "emulators" not in path.parts:
            assert hash_subkey.encode() not in path.read_bytes(), path


def test_an_apply_with_no_changes_still_recomputes_dropped_fingerprints(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    current = workspace.state()["keys"]["key.data"]["materials"][0]["fingerprint"]
    _make_old(workspace, _hash_subkey(workspace))

    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert "No changes" in applied.stdout
    state = workspace.state()
    assert state["format_version"] == 2
    assert state["keys"]["key.data"]["materials"][0]["fingerprint"] == current, "recomputed through the source"
    verified = workspace.keyplan("verify", "-json")
    assert verified.code == 0, verified.output
    assert [r["verdict"] for r in json.loads(verified.stdout)["results"]] == ["proven"]
