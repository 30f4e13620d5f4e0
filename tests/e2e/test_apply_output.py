"""What plan and apply say about the work: the plan's summary counts keys (not key x target)
with adoptions apart, apply ends with keys created, adopted, imported, updated, rotated,
deleted; -json carries the same counts."""

from __future__ import annotations

import json

from conftest import Workspace

CONFIG = """
variable "apps" {
  type    = set(string)
  default = ["a", "b"]
}

source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

provider "aws" "backup" {
  region   = "eu-central-1"
  endpoint = "embedded"
}

key "app" {
  for_each    = var.apps
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main, provider.aws.backup]
  description = "app ${each.key}"
}
"""


def test_counts_are_keys_not_key_targets_and_adoptions_are_apart(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    plan = workspace.keyplan("plan")
    assert plan.code == 0, plan.output
    assert "Plan: 2 to create, 0 to import, 0 to update, 0 to rotate, 0 to delete." in plan.stdout
    assert "4 changes across their targets" in plan.stdout
    document = json.loads(workspace.keyplan("plan", "-json").stdout)
    assert document["summary"] == {"create": 2} and document["summary_targets"] == {"create": 4}

    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert "Apply complete! Keys: 2 created, 0 imported, 0 updated, 0 rotated, 0 deleted." in applied.stdout
    assert "step(s)" not in applied.stdout

    # A key created by an apply that was killed before recording it is adopted, not created;
    # a changed description is one update per key, whatever the number of targets.
    state = workspace.state()
    del state["keys"]['key.app["a"]']["targets"]["aws.backup"]
    workspace.state_path.write_text(json.dumps(state))
    renamed = CONFIG.replace('description = "app ${each.key}"', 'description = "service ${each.key}"')
    workspace.write(renamed)
    plan = workspace.keyplan("plan")
    assert "Plan: 0 to create, 1 to adopt, 0 to import, 2 to update, 0 to rotate, 0 to delete." in plan.stdout, (
        plan.output
    )
    document = json.loads(workspace.keyplan("plan", "-json").stdout)
    assert document["summary"] == {"adopt": 1, "update": 2}
    assert document["summary_targets"] == {"adopt": 1, "update": 3}
    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert "Apply complete! Keys: 0 created, 1 adopted, 0 imported, 2 updated, 0 rotated, 0 deleted." in applied.stdout

    workspace.write(renamed.replace('default = ["a", "b"]', 'default = ["a"]'))
    removed = workspace.keyplan("apply", "-auto-approve")
    assert "Keys: 0 created, 0 imported, 0 updated, 0 rotated, 1 deleted." in removed.stdout, removed.output
