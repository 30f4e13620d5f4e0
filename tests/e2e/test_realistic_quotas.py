"""keyplan against the AWS KMS emulator's realistic profile: AWS's documented request quotas
(CreateKey, GetParametersForImport, ImportKeyMaterial 5 per second...) enforced with
ThrottlingException. Every key lands exactly once, no error or throttling answer is shown, and
the summary says what was waited out."""

from __future__ import annotations

import json

from azure_support import azure_vault, embedded, key_name, materials

from providers.aws import KmsEmulator
from tests.e2e.conftest import Workspace

KEYS = 14
CONFIG = f"""
source "software" "local" {{
  keystore = ".keyplan/keystore.json"
}}

provider "aws" "main" {{
  region   = "eu-west-1"
  endpoint = "embedded"
}}

key "data" {{
  for_each  = toset([for i in range({KEYS}) : "k${{i}}"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}}
"""


def test_apply_under_aws_documented_quotas_waits_instead_of_failing(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    realistic = {"aws-main": {"profile": "realistic", "quota_scale": 1}}
    applied = workspace.keyplan("apply", "-auto-approve", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(realistic)})
    assert applied.code == 0, applied.output
    assert "Throttl" not in applied.output and "retry" not in applied.output
    assert "Time spent within request quotas" in applied.stdout
    assert "throttled answer(s) waited out" in applied.stdout  # the quotas really were enforced

    state = workspace.state()
    assert len(state["keys"]) == KEYS
    remote_ids = {record["targets"]["aws.main"]["remote_id"] for record in state["keys"].values()}
    with embedded(workspace.path, KmsEmulator, "aws.main") as server:
        held = [m["key"] for m in materials(server)]
        stored = [doc for _, doc in server.app.store.list("keys")]
    assert sorted(held) == sorted(remote_ids), "every key holds its material once"
    assert len(stored) == KEYS, "no key was created twice"
    refreshed = workspace.keyplan("plan", "-detailed-exitcode", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(realistic)})
    assert refreshed.code == 0, refreshed.output


def test_keys_the_cloud_shows_only_after_a_delay_are_waited_for_and_never_taken_for_deleted(
    workspace: Workspace,
) -> None:
    # AWS KMS documents eventual consistency: GetParametersForImport right after CreateKey may
    # answer NotFoundException, and a new key may be missing from ListKeys for a while.
    workspace.write(CONFIG)
    lagging = {"aws-main": {"profile": "realistic", "quota_scale": 4, "visibility_lag": 1, "listing_lag": 60}}
    env = {"KEYPLAN_EMULATOR_FAULTS": json.dumps(lagging)}
    applied = workspace.keyplan("apply", "-auto-approve", env=env)
    assert applied.code == 0, applied.output
    assert "NotFound" not in applied.output and "not found" not in applied.output.lower()

    # At once: the last keys are not listed yet; the plan says so and plans nothing for them.
    replanned = workspace.keyplan("plan", "-detailed-exitcode", env=env)
    assert replanned.code == 0, replanned.output
    assert "deleted outside keyplan" not in replanned.output
    assert "not listed by its cloud yet" in replanned.output

    with embedded(workspace.path, KmsEmulator, "aws.main") as server:
        stored = [doc for _, doc in server.app.store.list("keys")]
        held = [m["key"] for m in materials(server)]
    assert len(stored) == KEYS, "no key was created twice"
    assert sorted(held) == sorted(r["targets"]["aws.main"]["remote_id"] for r in workspace.state()["keys"].values())


VAULT_URL = "https://paced.vault.azure.net"
VAULT_KEYS = 12
AZURE = f"""
source "software" "local" {{}}

provider "azure" "main" {{
  endpoint    = "embedded"
  vault_url   = "{VAULT_URL}"
  rate_limits = {{ create = 5 }}
}}

key "sig" {{
  for_each  = toset([for i in range({VAULT_KEYS}) : "k${{i}}"])
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.azure.main]
}}
"""


def test_apply_under_a_vaults_weighted_budget_waits_out_its_429s(workspace: Workspace) -> None:
    """A Key Vault allows 10 HSM-key creations per 10 s (each 2 of its 20 units); this apply
    paces creations at 5/s, so the vault answers 429 with Retry-After once its burst is spent:
    every key still lands once, and no error or throttling answer is shown."""
    workspace.write(AZURE)
    realistic = {"azure-main": {"profile": "realistic", "quota_scale": 1}}
    applied = workspace.keyplan("apply", "-auto-approve", env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(realistic)})
    assert applied.code == 0, applied.output
    assert "Throttl" not in applied.output and "429" not in applied.output
    assert "throttled answer(s) waited out" in applied.stdout  # the vault's budget really was spent

    state = workspace.state()
    assert len(state["keys"]) == VAULT_KEYS
    with azure_vault(workspace.path, "azure.main", VAULT_URL) as vault:
        held = vault.fingerprints()
        names = [key.name for key in vault.client.list_properties_of_keys()]
    recorded = {key_name(r["targets"]["azure.main"]["remote_id"]): r for r in state["keys"].values()}
    assert sorted(held) == sorted(recorded), "every key imported, none twice"
    assert all(len(fingerprints) == 1 for fingerprints in held.values())
    assert len([n for n in names if n in recorded]) == VAULT_KEYS
