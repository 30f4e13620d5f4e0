"""A rotation is planned only where every target can take new material, and the plan names
each target's mechanism."""

from __future__ import annotations

from tests.e2e.conftest import Workspace

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "mac" {
  algorithm = "HMAC_SHA256"
  source    = source.software.local
  targets   = [provider.aws.main]
}

key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def test_replace_of_a_key_the_cloud_cannot_rotate_is_refused_at_plan_time(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    state_before = workspace.state_path.read_bytes()

    refused = workspace.keyplan("plan", "-replace", "key.mac")
    assert refused.code == 1, refused.output
    assert "aws.main cannot rotate key.mac" in refused.stderr
    assert "declare a new key under another name" in refused.stderr
    assert "Traceback" not in refused.output

    applied = workspace.keyplan("apply", "-auto-approve", "-replace", "key.mac")
    assert applied.code == 1
    assert workspace.state_path.read_bytes() == state_before
    assert [m["version"] for m in workspace.state()["keys"]["key.mac"]["materials"]] == [1]
    again = workspace.keyplan("plan", "-detailed-exitcode")
    assert again.code == 0, again.output  # no half rotation left behind


def test_a_rotation_names_the_cloud_mechanism(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    planned = workspace.keyplan("plan", "-replace", "key.data")
    assert planned.code == 0, planned.output
    assert "rotation: AWS: new key material + RotateKeyOnDemand" in planned.stdout
    assert workspace.keyplan("apply", "-auto-approve", "-replace", "key.data").code == 0
    assert [m["version"] for m in workspace.state()["keys"]["key.data"]["materials"]] == [1, 2]
