"""A cloud that throttles forever: `keyplan apply -throttle-timeout` ends the run with a clear
message, the state records what finished, and the next apply resumes with no key missing or
created twice. Each emulator's realistic profile with its quotas scaled far down plays the cloud
(the first calls use up the burst, every later one is throttled). The applies run as
processes of their own (forked) so that a run which outlived its timeout fails the test instead of
hanging it."""

from __future__ import annotations

import json
import os
import re

from azure_support import azure_vault, embedded, key_name, materials

from providers.aws import KmsEmulator
from tests.e2e.conftest import Result, Workspace, keyplan_in_fork

AWS = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  for_each  = toset(["a", "b", "c", "d"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""

VAULT_URL = "https://throttled.vault.azure.net"
AZURE = f"""
source "software" "local" {{}}

provider "azure" "main" {{
  endpoint  = "embedded"
  vault_url = "{VAULT_URL}"
}}

key "sig" {{
  for_each  = toset(["a", "b", "c"])
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.azure.main]
}}
"""


def run(workspace: Workspace, *args: str, faults: dict[str, object] | None = None) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "KEYPLAN_EMULATOR_FAULTS"}
    if faults is not None:
        env["KEYPLAN_EMULATOR_FAULTS"] = json.dumps(faults)
    return keyplan_in_fork(workspace.path, *args, env=env, timeout=180)


def assert_stopped_on_throttling(result: Result, rate_class: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output
    # the time is said in a unit that fits it ("for 0 min" said nothing)
    assert re.search(f"kept throttling {rate_class} calls for [1-9][0-9]* s without progress", result.output)
    assert "resumes where this run stopped" in result.output


def test_aws_throttling_forever_ends_the_apply_and_the_next_one_resumes(workspace: Workspace) -> None:
    workspace.write(AWS)
    forever = {"aws-main": {"profile": "realistic", "quota_scale": 0.0001}}
    stopped = run(workspace, "apply", "-auto-approve", "-throttle-timeout=3s", faults=forever)
    assert_stopped_on_throttling(stopped, "CreateKey")
    finished = {address for address, record in workspace.state().get("keys", {}).items() if record.get("targets")}
    assert len(finished) < 4

    resumed = run(workspace, "apply", "-auto-approve")
    assert resumed.code == 0, resumed.output
    state = workspace.state()["keys"]
    assert sorted(state) == [f'key.data["{k}"]' for k in "abcd"]
    remote_ids = sorted(record["targets"]["aws.main"]["remote_id"] for record in state.values())
    with embedded(workspace.path, KmsEmulator, "aws.main") as server:
        held = sorted(m["key"] for m in materials(server))
        stored = [doc for _, doc in server.app.store.list("keys")]
    assert held == remote_ids, "every key holds its material once"
    assert len(stored) == 4, "no key was created twice"


def test_a_retry_after_longer_than_the_throttle_timeout_does_not_outlive_it(workspace: Workspace) -> None:
    # Key Vault answers 429 with Retry-After: with its quotas scaled down 100,000 times it asks
    # for a wait of more than a day, which must not hold the apply past -throttle-timeout.
    workspace.write(AZURE)
    forever = {"azure-main": {"profile": "realistic", "quota_scale": 0.00001}}
    stopped = run(workspace, "apply", "-auto-approve", "-throttle-timeout=3s", faults=forever)
    assert_stopped_on_throttling(stopped, "(create|other)")

    resumed = run(workspace, "apply", "-auto-approve")
    assert resumed.code == 0, resumed.output
    state = workspace.state()["keys"]
    assert sorted(state) == [f'key.sig["{k}"]' for k in "abc"]
    with azure_vault(workspace.path, "azure.main", VAULT_URL) as vault:
        names = sorted(p.name for p in vault.client.list_properties_of_keys())
        held = vault.fingerprints()
    expected = sorted(key_name(record["targets"]["azure.main"]["remote_id"]) for record in state.values())
    assert [n for n in names if n != "keyplan-kek"] == expected, "every key once, none missing"
    assert all(len(held[name]) == 1 for name in expected), "each key's material imported once"


def test_a_plan_against_a_cloud_that_throttles_forever_stops_at_its_throttle_timeout(workspace: Workspace) -> None:
    workspace.write(AWS)
    assert run(workspace, "apply", "-auto-approve").code == 0
    before = workspace.state_path.read_bytes()
    forever = {"aws-main": {"profile": "realistic", "quota_scale": 0.00001, "listing_lag": 0}}
    for command in (("plan",), ("drift",)):
        stopped = run(workspace, *command, "-throttle-timeout=2s", faults=forever)
        assert_stopped_on_throttling(stopped, "(DescribeKey|ListResourceTags|ListKeys|ListAliases)")
    assert workspace.state_path.read_bytes() == before
