"""A saved plan edited and resealed (its digest is a checksum anyone can recompute): the remote
key a deletion names is swapped for a key the state gives to another address. The plan still
agrees with itself, so only the state can tell; apply must refuse it and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from keyplan.plan.model import Plan
from keyplan.plan.planfile import plan_digest
from tests.e2e.conftest import Workspace

CONFIG = """
variable "apps" {
  type    = list(string)
  default = ["kept", "removed"]
}

source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  for_each  = toset(var.apps)
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def reseal(path: Path, swap: dict[str, str]) -> None:
    document = json.loads(path.read_text())
    text = json.dumps(document)
    for old, new in swap.items():
        text = text.replace(old, new)
    document = json.loads(text)
    document["digest"] = plan_digest(Plan.model_validate(document))
    path.write_text(json.dumps(document))


def test_a_resealed_plan_deleting_another_addresses_key_is_refused(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    ids = {a: r["targets"]["aws.main"]["remote_id"] for a, r in workspace.state()["keys"].items()}
    kept, removed = ids['key.data["kept"]'], ids['key.data["removed"]']
    workspace.write(CONFIG.replace('["kept", "removed"]', '["kept"]'))
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    reseal(planfile, {removed: kept})  # in the change and its action alike: the plan agrees with itself
    assert workspace.keyplan("show", str(planfile)).code == 0
    before = workspace.state_path.read_bytes()

    result = workspace.keyplan("apply", str(planfile))
    assert result.code == 1, result.output
    assert "Plan file was altered" in result.output and kept in result.output
    assert workspace.state_path.read_bytes() == before
    with workspace.aws() as (kms, _):
        assert kms.describe_key(KeyId=kept)["KeyMetadata"]["KeyState"] == "Enabled", "the kept key was not touched"
        assert kms.describe_key(KeyId=removed)["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_resealed_plan_that_promotes_a_version_before_importing_it_is_refused(workspace: Workspace) -> None:
    # Found by the hostile plan-file fuzzing: a rotation whose promotion no longer waits for the
    # import, resealed, passed every check; apply generated the new material (state and
    # keystore changed) and then failed at the promotion. It is refused before anything runs.
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    planfile = workspace.path / "rotate.kpplan"
    assert workspace.keyplan("plan", "-replace", 'key.data["kept"]', f"-out={planfile}").code == 0
    document = json.loads(planfile.read_text())
    promotions = [a for a in document["actions"] if a["kind"] == "promote_version"]
    assert promotions and all(a["depends_on"] for a in promotions)
    for action in promotions:
        action["depends_on"] = []
    document["digest"] = plan_digest(Plan.model_validate(document))
    planfile.write_text(json.dumps(document))
    guarded = [workspace.state_path, workspace.path / ".keyplan" / "keystore.json"]
    before = [path.read_bytes() for path in guarded]

    refused = workspace.keyplan("apply", str(planfile))
    assert refused.code == 1 and "Plan file was altered" in refused.stderr, refused.output
    assert "would not wait for step 'import_material" in refused.stderr
    assert [path.read_bytes() for path in guarded] == before
