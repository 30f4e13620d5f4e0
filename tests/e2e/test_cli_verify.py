"""`keyplan verify` end to end: keys applied to the embedded emulators, proven through the
clouds' own operations, and a key whose material was swapped at the emulator (out of band,
through its test-only route) reported as a mismatch with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from conftest import Workspace

from providers.emulation.server import fetch_json

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

AWS_CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  expiry {
    after = "90d"
  }
}
key "mac" {
  algorithm = "HMAC_SHA384"
  source    = source.software.local
  targets   = [provider.aws.main]
}
key "signer" {
  algorithm = "EC_P384"
  source    = source.software.local
  targets   = [provider.aws.main]
}
key "decrypter" {
  algorithm = "RSA_2048"
  usage     = "decrypt"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def verify_json(workspace: Workspace, *args: str) -> tuple[int, dict[str, object]]:
    result = workspace.keyplan("verify", "-json", *args)
    assert result.code in (0, 2), result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads((SCHEMAS / "verify.schema.json").read_text()))
    return result.code, report


def by_address(report: dict[str, object]) -> dict[str, dict[str, str]]:
    results = report["results"]
    assert isinstance(results, list)
    return {r["address"]: r for r in results}


def test_every_aws_proof_succeeds_after_apply_and_leaves_the_keys_as_they_were(workspace: Workspace) -> None:
    workspace.write(AWS_CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    before = workspace.emulator_fingerprints()
    with workspace.aws() as (client, _):
        expiry_before = {
            a: client.describe_key(KeyId=t["targets"]["aws.main"]["remote_id"])["KeyMetadata"].get("ValidTo")
            for a, t in workspace.state()["keys"].items()
        }
    code, report = verify_json(workspace)
    assert code == 0
    results = by_address(report)
    assert {a: (r["verdict"], r["method"]) for a, r in results.items()} == {
        "key.data": ("proven", "reimport"),
        "key.mac": ("proven", "mac"),
        "key.signer": ("proven", "signature"),
        "key.decrypter": ("proven", "encryption"),
    }
    state = workspace.state()
    for address, result in results.items():
        assert result["fingerprint"] == state["keys"][address]["materials"][0]["fingerprint"]
    # the proofs went through the cloud's operations, and changed nothing there
    with workspace.aws() as (client, _):
        expiry_after = {
            a: client.describe_key(KeyId=t["targets"]["aws.main"]["remote_id"])["KeyMetadata"].get("ValidTo")
            for a, t in workspace.state()["keys"].items()
        }
    assert expiry_after == expiry_before
    assert workspace.emulator_fingerprints() == before
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0
    audit = [json.loads(line) for line in (workspace.path / ".keyplan" / "audit.jsonl").read_text().splitlines()]
    verified = [e for e in audit if e["action"] == "verify_material"]
    assert sorted(e["address"] for e in verified) == sorted(results)
    assert {e["outcome"] for e in verified} == {"proven"}


def test_material_swapped_at_aws_is_a_mismatch_with_exit_2(workspace: Workspace) -> None:
    workspace.write(AWS_CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    state = workspace.state()
    with workspace.aws() as (_, server):
        for address in ("key.data", "key.mac", "key.signer"):
            remote_id = state["keys"][address]["targets"]["aws.main"]["remote_id"]
            fetch_json(server.url + "/_emulator/swap-material", "POST", {"key": remote_id})
    code, report = verify_json(workspace)
    assert code == 2
    verdicts = {a: (r["verdict"], r["method"]) for a, r in by_address(report).items()}
    assert verdicts == {
        "key.data": ("mismatch", "reimport"),
        "key.mac": ("mismatch", "mac"),
        "key.signer": ("mismatch", "public_key"),
        "key.decrypter": ("proven", "encryption"),
    }
    text = workspace.keyplan("verify", "key.mac")
    assert text.code == 2
    assert "MISMATCH" in text.stdout and "does not hold material v1" in text.stderr
    # only the key named was verified
    assert "key.data" not in text.stdout


def test_verify_of_an_unknown_address_is_a_diagnostic(workspace: Workspace) -> None:
    workspace.write(AWS_CONFIG)
    result = workspace.keyplan("verify", "key.nothing")
    assert result.code == 1
    assert "No key key.nothing in state" in result.stderr
    assert "Traceback" not in result.output


def test_a_disabled_key_cannot_be_proven_and_is_not_changed(workspace: Workspace) -> None:
    workspace.write(AWS_CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    remote_id = workspace.state()["keys"]["key.mac"]["targets"]["aws.main"]["remote_id"]
    with workspace.aws() as (client, _):
        client.disable_key(KeyId=remote_id)
    code, report = verify_json(workspace, "key.mac")
    assert code == 0
    (result,) = report["results"]
    assert result["verdict"] == "cannot_prove"
    assert "DisabledException" in result["detail"]
    with workspace.aws() as (client, _):
        assert client.describe_key(KeyId=remote_id)["KeyMetadata"]["KeyState"] == "Disabled"
