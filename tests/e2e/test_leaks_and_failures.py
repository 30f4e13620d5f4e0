"""Material never leaks; failures stay isolated and retries happen.

The leak test runs a full life cycle with debug logging, saves a plan, prints JSON, rotates,
and then scans every artifact keyplan wrote or printed for each material it handled, in raw,
hex and base64 forms. The material itself is taken from the emulator's store (what the cloud
unwrapped), so the test knows exactly what to look for.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from providers.emulation.store import DocumentStore
from tests.e2e.conftest import Workspace, lifecycle_commands, secret_forms

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "hmac" {
  algorithm = "HMAC_SHA256"
  source    = source.software.local
  targets   = [provider.aws.main]
}

key "data" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  labels    = { app = each.key }
}

key "signing" {
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def materials_held_by_emulator(workspace: Workspace) -> list[bytes]:
    store = DocumentStore(workspace.path / ".keyplan" / "emulators" / "aws-main.sqlite")
    try:
        found = [
            base64.b64decode(material["secret"])
            for _, key in store.list("keys")
            for material in key["materials"]
            if material.get("secret")
        ]
    finally:
        store.close()
    return found



def test_no_artifact_or_output_contains_material(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    env = {"KEYPLAN_LOG": "DEBUG"}
    outputs = []
    planfile = workspace.path / "first.kpplan"
    for args in lifecycle_commands(planfile, rotate='key.data["a"]', show='key.hmac'):
        result = workspace.keyplan(*args, env=env)
        assert result.code in (0, 2), (args, result.output)
        outputs.append(result.output.encode())
    materials = materials_held_by_emulator(workspace)
    assert len(materials) == 5, "4 keys imported, one rotated once"
    artifacts = [p for p in workspace.path.rglob("*") if p.is_file() and ".keyplan/emulators" not in str(p)]
    names = {p.name for p in artifacts}
    assert {"keyplan.kpstate.json", "keyplan.kpstate.json.backup", "first.kpplan", "keystore.json"} <= names
    blobs = [(str(p.relative_to(workspace.path)), p.read_bytes()) for p in artifacts]
    blobs += [(f"output {i}", out) for i, out in enumerate(outputs)]
    for material in materials:
        for needle in secret_forms(material):
            for name, blob in blobs:
                assert needle not in blob, f"material found in {name}"


def test_a_failing_target_does_not_stop_independent_keys(workspace: Workspace) -> None:
    workspace.write(
        CONFIG.replace('provider "aws" "main"', 'provider "aws" "broken" {\n  region = "eu-west-1"\n  endpoint = "embedded"\n}\n\nprovider "aws" "main"')
        .replace('key "signing" {\n  algorithm = "EC_P256"\n  source    = source.software.local\n  targets   = [provider.aws.main]',
                 'key "signing" {\n  algorithm = "EC_P256"\n  source    = source.software.local\n  targets   = [provider.aws.broken]')
    )
    faults = {"aws-broken": {"errors": [{"operation": "CreateKey", "status": 500, "count": 1000}]}}
    env = {"KEYPLAN_EMULATOR_FAULTS": json.dumps(faults), "KEYPLAN_LOG": "DEBUG"}
    result = workspace.keyplan("apply", "-auto-approve", env=env)
    assert result.code == 1, result.output
    assert "create_key key.signing @ aws.broken: attempt 1 failed" in result.stderr, "retried before giving up"
    assert "retry" not in result.stdout and "attempt" not in result.stdout, "retries are debug detail"
    assert "key.signing: failed at aws.broken" in result.stdout
    assert "create_key key.signing @ aws.broken" in result.stderr
    state = workspace.state()
    assert sorted(state["keys"]) == ['key.data["a"]', 'key.data["b"]', "key.hmac", "key.signing"]
    for address in ('key.data["a"]', 'key.data["b"]', "key.hmac"):
        assert state["keys"][address]["targets"]["aws.main"]["imports"], address
    assert state["keys"]["key.signing"]["targets"] == {}, "material was generated, nothing was created"
    healed = workspace.keyplan("apply", "-auto-approve")
    assert healed.code == 0, healed.output
    assert "1 to create" in healed.stdout
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def test_throttling_is_retried_transparently(workspace: Workspace) -> None:
    # Each throttling answer halves the class's rate; from AWS's 5/s the three would leave
    # ImportKeyMaterial at 0.6/s and this test waiting 15 s for nothing it checks.
    workspace.write(CONFIG.replace('endpoint = "embedded"', 'endpoint = "embedded"\n  rate_limits = { ImportKeyMaterial = 100 }', 1))
    faults = {"aws-main": {"errors": [{"operation": "ImportKeyMaterial", "status": 429, "count": 3}]}}
    result = workspace.keyplan("apply", "-auto-approve", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(faults)})
    assert result.code == 0, result.output
    # throttling answers are waited out below the walker: no retry line, no error, only the summary
    assert "retry" not in result.output and "ThrottlingException" not in result.output
    assert "aws.main ImportKeyMaterial" in result.stdout and "3 throttled answer(s) waited out" in result.stdout
    assert all(record["targets"]["aws.main"]["imports"] for record in workspace.state()["keys"].values())


def test_unreachable_endpoint_is_a_diagnostic(workspace: Workspace, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workspace.write(CONFIG.replace('endpoint = "embedded"', f'endpoint = "http://127.0.0.1:{port}"\n  credentials = "local"'))
    result = workspace.keyplan("plan")
    assert result.code == 1 and "Traceback" not in result.output
    assert "aws.main" in result.stderr and "endpoint" in result.stderr
