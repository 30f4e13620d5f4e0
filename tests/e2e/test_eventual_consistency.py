"""Eventual consistency as a user meets it: AWS KMS may list a new key's aliases only seconds
after CreateAlias answered. Within the provider's consistency window after a key's last import,
a plan must not take aliases keyplan has just created for an edit made outside keyplan, nor
create them again; an alias really removed outside keyplan is still drift once listings show
it."""

from __future__ import annotations

import json

from azure_support import embedded

from providers.aws import KmsEmulator
from providers.emulation.server import fetch_json
from tests.e2e.conftest import Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  ALIASES
}
"""


def aliases_held(workspace: Workspace) -> list[str]:
    with embedded(workspace.path, KmsEmulator, "aws.main") as server:
        return sorted(doc["name"] for _, doc in server.app.store.list("aliases"))


def test_aliases_not_listed_yet_right_after_an_apply_are_neither_drift_nor_work(workspace: Workspace) -> None:
    # The keys are listed (created before the listing lag was turned on); the aliases the next
    # apply adds are not, for longer than this test runs.
    workspace.write(CONFIG.replace("ALIASES", ""))
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    with workspace.aws() as (_, server):  # ten minutes later at the cloud: the keys are listed
        fetch_json(server.url + "/_emulator/clock", "POST", {"advance_seconds": 600})
    workspace.write(CONFIG.replace("ALIASES", 'aliases = ["alias/${each.key}", "alias/${each.key}-2"]'))
    lagging = {"KEYPLAN_EMULATOR_FAULTS": json.dumps({"aws-main": {"profile": "realistic", "listing_lag": 300}})}
    applied = workspace.keyplan("apply", "-auto-approve", env=lagging)
    assert applied.code == 0, applied.output
    held = aliases_held(workspace)
    assert held == ["alias/a", "alias/a-2", "alias/b", "alias/b-2"]

    replanned = workspace.keyplan("plan", "-detailed-exitcode", env=lagging)
    assert replanned.code == 0, replanned.output
    assert "edited outside keyplan" not in replanned.output
    drift = workspace.keyplan("drift", env=lagging)
    assert drift.code == 0, drift.output
    again = workspace.keyplan("apply", "-auto-approve", env=lagging)
    assert again.code == 0, again.output
    assert aliases_held(workspace) == held

    # Past the window (none here), an alias deleted outside keyplan is drift as before.
    with workspace.aws() as (kms, _):
        kms.delete_alias(AliasName="alias/a-2")
    workspace.write(
        CONFIG.replace("ALIASES", 'aliases = ["alias/${each.key}", "alias/${each.key}-2"]').replace(
            'endpoint = "embedded"', 'endpoint = "embedded"\n  consistency_window_seconds = 0'
        )
    )
    replanned = workspace.keyplan("plan", "-detailed-exitcode")
    assert replanned.code == 2, replanned.output
    assert 'key.data["a"] @ aws.main: edited outside keyplan: aliases' in replanned.output
