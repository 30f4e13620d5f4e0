"""`keyplan emulator KIND` serves the very data `endpoint = "embedded"` keeps
(`.keyplan/emulators/KIND-NAME.sqlite`), which is how the README removes material behind
keyplan's back: between runs, the cloud's own CLI (here boto3) talks to it, and the next plan
sees the change."""

from __future__ import annotations

import json
import subprocess

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from providers.emulation.server import fetch_json
from tests.e2e.conftest import CLOUD_CONFIGS, KEYPLAN_BIN, ForkedKeyplan, Workspace, keyplan_in_fork


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


def test_the_emulator_command_serves_the_realistic_profile(workspace: Workspace) -> None:
    # AWS's documented 5 CreateKey calls per second, scaled to 1: the second call in the same
    # second answers ThrottlingException, as AWS KMS does.
    process = ForkedKeyplan(workspace.path, "emulator", "aws", "--profile", "realistic", "--quota-scale", "0.2")
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        kms = boto3.client(
            "kms", region_name="eu-west-1", endpoint_url=url, aws_access_key_id="x", aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}),
        )  # fmt: skip
        with pytest.raises(ClientError) as throttled:
            for _ in range(3):
                kms.create_key(Origin="EXTERNAL")
        assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
        stats = fetch_json(url + "/_emulator/stats")
        assert stats["quotas"]["CreateKey"]["per_second"] == 1.0 and stats["throttled"]["CreateKey"] >= 1
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--port", "99999"], "--port"),
        (["--latency-ms", "nan"], "--latency-ms"),
        (["--latency-ms", "-5"], "--latency-ms"),
        (["--quota-scale", "0"], "--quota-scale"),
        (["--quota-scale", "inf"], "--quota-scale"),
        (["--profile", "brutal"], "--profile"),
        (["--data-dir", "main.kp.hcl/emulators"], "main.kp.hcl"),
        (["--name", "../../../elsewhere"], "--name"),  # it makes the database's file name
        (["--name", "a/b"], "--name"),
    ],
)
def test_bad_emulator_options_are_diagnostics(workspace: Workspace, flags: list[str], named: str) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    done = keyplan_in_fork(workspace.path, "emulator", "aws", *flags, timeout=60)
    assert done.code != 0 and done.code in (1, 2), done.stderr
    assert "Traceback" not in done.stderr and "crashed" not in done.stderr
    assert named in done.stderr
    assert not done.stdout.startswith("http"), "nothing was served"
