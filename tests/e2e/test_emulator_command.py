"""`keyplan emulator KIND` serves the very data `endpoint = "embedded"` keeps
(`.keyplan/emulators/KIND-NAME.sqlite`), which is how the README removes material behind
keyplan's back: between runs, the cloud's own CLI (here boto3) talks to it, and the next plan
sees the change."""

from __future__ import annotations

import json
import subprocess

import boto3
from conftest import CLOUD_CONFIGS, KEYPLAN_BIN, Workspace


def test_the_emulator_command_serves_the_embedded_data_to_change_it_behind_keyplans_back(workspace: Workspace) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    arn = workspace.state()["keys"]['key.app["a"]']["targets"]["aws.main"]["remote_id"]
    process = subprocess.Popen(
        [str(KEYPLAN_BIN), "-chdir", str(workspace.path), "emulator", "aws"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        kms = boto3.client(
            "kms", region_name="eu-west-1", endpoint_url=url, aws_access_key_id="x", aws_secret_access_key="x"
        )
        assert arn in [k["KeyArn"] for k in kms.list_keys()["Keys"]], "the embedded emulator's keys"
        kms.delete_imported_key_material(KeyId=arn)
    finally:
        process.terminate()
        process.wait(timeout=30)
    emulators = workspace.path / ".keyplan" / "emulators"
    assert sorted(p.name for p in emulators.glob("*.sqlite")) == ["aws-main.sqlite"], "one database, shared"
    planned = workspace.keyplan("plan", "-json")
    assert planned.code == 0, planned.output
    actions = {c["address"]: c["actions"] for c in json.loads(planned.stdout)["changes"]}
    assert actions['key.app["a"]'] == ["reimport"], actions
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0
