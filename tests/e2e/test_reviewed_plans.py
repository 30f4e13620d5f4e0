"""What was reviewed is what runs: a saved plan whose actions disagree with its changes is
refused by `show` and `apply`, even when its content digest was recomputed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_cli_aws import CONFIG, applied, remote_ids

from keyplan.plan.model import Plan
from keyplan.plan.planfile import plan_digest
from tests.e2e.conftest import Workspace


def resealed(document: dict[str, Any], path: Path) -> Path:
    """The plan document with its digest recomputed, as a forger would."""
    plan = Plan.model_validate(document)
    document["digest"] = plan_digest(plan)
    path.write_text(json.dumps(document))
    return path


def test_a_forged_deletion_is_refused_by_show_and_apply(workspace: Workspace) -> None:
    applied(workspace)
    workspace.write(CONFIG.replace('"core"', '"platform"'))  # a harmless label change to review
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    document = json.loads(planfile.read_text())
    victim, remote_id = sorted(remote_ids(workspace).items())[0]
    document["actions"].append(
        {
            "id": f"schedule_deletion {victim} @ aws.main",
            "kind": "schedule_deletion",
            "address": victim,
            "target": "aws.main",
            "source": None,
            "args": {"remote_id": remote_id},
            "depends_on": [],
        }
    )
    forged = resealed(document, workspace.path / "forged.kpplan")
    state_before = workspace.state_path.read_bytes()

    shown = workspace.keyplan("show", str(forged))
    assert shown.code == 1, shown.output
    assert "do not match its reviewed changes" in shown.stderr
    assert f"schedule_deletion {victim} @ aws.main" in shown.stderr

    refused = workspace.keyplan("apply", str(forged))
    assert refused.code == 1, refused.output
    assert "do not match its reviewed changes" in refused.stderr
    assert workspace.state_path.read_bytes() == state_before
    with workspace.aws() as (kms, _):
        assert kms.describe_key(KeyId=remote_id)["KeyMetadata"]["KeyState"] == "Enabled"

    # The reviewed plan itself applies.
    assert workspace.keyplan("apply", str(planfile)).code == 0


def test_a_forged_key_spec_or_dropped_action_is_refused(workspace: Workspace) -> None:
    applied(workspace)
    workspace.write(CONFIG.replace('"core"', '"platform"'))
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}").code == 0
    document = json.loads(planfile.read_text())

    spec_edited = json.loads(json.dumps(document))
    address = next(iter(spec_edited["keys"]))
    spec_edited["keys"][address]["spec"]["labels"]["team"] = "evil"
    refused = workspace.keyplan("apply", str(resealed(spec_edited, workspace.path / "spec.kpplan")))
    assert refused.code == 1 and "labels" in refused.stderr, refused.output

    dropped = json.loads(json.dumps(document))
    dropped["actions"] = [a for a in dropped["actions"] if a["kind"] != "update_key"]
    refused = workspace.keyplan("show", str(resealed(dropped, workspace.path / "dropped.kpplan")), "-json")
    assert refused.code == 1 and "has no update_key action" in refused.stderr, refused.output


def test_a_forged_order_of_steps_is_refused_before_any_step(workspace: Workspace) -> None:
    """A resealed plan whose steps no longer wait for the ones whose answers or material they use
    (a wrap before its import parameters, a creation before its material, steps in a circle) is
    refused before anything runs, instead of failing half-way or crashing."""
    applied(workspace)
    planfile = workspace.path / "rotate.kpplan"
    victim = sorted(remote_ids(workspace))[0]
    assert workspace.keyplan("plan", "-replace", victim, f"-out={planfile}").code == 0
    document = json.loads(planfile.read_text())
    state_before = workspace.state_path.read_bytes()

    def forged(name: str, change: Any) -> Path:
        copy = json.loads(json.dumps(document))
        for action in copy["actions"]:
            change(action)
        return resealed(copy, workspace.path / name)

    def unordered_wrap(action: dict[str, Any]) -> None:
        if action["kind"] == "wrap_material":
            action["depends_on"] = []

    def circle(action: dict[str, Any]) -> None:
        if action["kind"] == "generate_material":
            action["depends_on"] = [a["id"] for a in document["actions"] if a["kind"] == "import_material"]

    for name, change, said in (
        ("unordered.kpplan", unordered_wrap, "would not wait for step"),
        ("circle.kpplan", circle, "in a circle"),
    ):
        refused = workspace.keyplan("apply", str(forged(name, change)))
        assert refused.code == 1, refused.output
        assert "Traceback" not in refused.output and said in refused.stderr, refused.output
        assert workspace.state_path.read_bytes() == state_before

    assert workspace.keyplan("apply", str(planfile)).code == 0  # the plan as saved applies
