"""What plan and apply say about the work: the plan's summary counts keys (not key x target)
with adoptions apart, apply ends with keys created, adopted, imported, updated, rotated,
deleted; -json carries the same counts."""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import Workspace

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


def test_without_a_terminal_apply_prints_at_most_a_line_per_key(workspace: Workspace) -> None:
    workspace.write(CONFIG.replace('default = ["a", "b"]', 'default = ["a", "b", "c", "d", "e"]'))
    applied = workspace.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    walk = applied.stdout.split("Plan: ", 1)[1].split("Apply complete!", 1)[0].strip().splitlines()[1:]
    lines = [line for line in walk if line.strip()]
    finished = [re.fullmatch(r'key\.app\["(\w)"\]: created at aws\.main, aws\.backup \((\d)/5 keys\)', line) for line in lines]
    assert all(finished), applied.stdout
    assert sorted(m.group(1) for m in finished if m) == ["a", "b", "c", "d", "e"]
    assert [m.group(2) for m in finished if m] == ["1", "2", "3", "4", "5"], "one line per key, as each finishes"
    assert "create_key" not in applied.output and "import_material" not in applied.output, "per-step detail is DEBUG"

    debug = workspace.keyplan("apply", "-auto-approve", "-replace", 'key.app["a"]', env={"KEYPLAN_LOG": "DEBUG"})
    assert debug.code == 0 and "DEBUG: done import_material key.app[\"a\"] @ aws.main" in debug.stderr, debug.output
    assert 'key.app["a"]: rotated at aws.main, aws.backup (1/1 keys)' in debug.stdout


def test_apply_json_prints_well_formed_events(workspace: Workspace) -> None:
    import jsonschema

    from keyplan.apply.events import apply_events_schema

    workspace.write(CONFIG)
    refused = workspace.keyplan("apply", "-json")
    assert refused.code == 1 and refused.stderr == "", refused.output
    diagnostic, end = (json.loads(line) for line in refused.stdout.splitlines())
    assert diagnostic["type"] == "diagnostic" and "-auto-approve" in diagnostic["summary"]
    assert end == {"type": "apply_end", "outcome": "failed", **{k: end[k] for k in end if k not in ("type", "outcome")}}
    applied = workspace.keyplan("apply", "-json", "-auto-approve")
    assert applied.code == 0, applied.output
    validator = jsonschema.Draft202012Validator(apply_events_schema())
    events = [json.loads(line) for line in applied.stdout.splitlines()]
    for event in events:
        validator.validate(event)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "apply_end" and kinds[-2] == "progress"
    assert events[0]["summary"] == {"create": 2} and events[0]["keys"] == 2 and events[0]["steps"] == len(
        [e for e in events if e["type"] == "step" and e["status"] == "done"]
    )
    finished = [e for e in events if e["type"] == "key"]
    assert sorted(e["address"] for e in finished) == ['key.app["a"]', 'key.app["b"]']
    assert all(e["status"] == "done" and e["changes"] == ["create"] for e in finished)
    assert all(e["targets"] == ["aws.main", "aws.backup"] for e in finished)
    last_progress = events[-2]
    assert (last_progress["keys_done"], last_progress["keys_total"]) == (2, 2)
    assert last_progress["steps_finished"] == last_progress["steps_total"] == events[0]["steps"]
    assert events[-1]["outcome"] == "complete" and events[-1]["keys"] == {"create": 2}
    started = {e["step"] for e in events if e["type"] == "step" and e["status"] == "started"}
    assert started == {e["step"] for e in events if e["type"] == "step" and e["status"] == "done"}

    again = workspace.keyplan("apply", "-json", "-auto-approve")
    assert [json.loads(line)["type"] for line in again.stdout.splitlines()] == ["apply_end"]
    assert json.loads(again.stdout)["outcome"] == "no_changes"


def test_apply_json_reports_errors_before_the_walk_as_events(workspace: Workspace) -> None:
    """With -json, standard output carries JSON events only, also when the apply stops before its
    walk: each diagnostic is an event (with where in the configuration), then apply_end "failed"."""
    import jsonschema

    from keyplan.apply.events import apply_events_schema

    workspace.write(CONFIG.replace('description = "app ${each.key}"', 'descripton = "app ${each.key}"'))
    before = sorted(p.name for p in workspace.path.iterdir())
    result = workspace.keyplan("apply", "-json", "-auto-approve")
    assert result.code == 1 and result.stderr == "", result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    validator = jsonschema.Draft202012Validator(apply_events_schema())
    for event in events:
        validator.validate(event)
    assert [e["type"] for e in events][-1] == "apply_end" and events[-1]["outcome"] == "failed"
    errors = [e for e in events if e["type"] == "diagnostic" and e["severity"] == "error"]
    assert errors and all(e["range"]["filename"].endswith("main.kp.hcl") for e in errors), events
    assert any("descripton" in e["summary"] + e["detail"] for e in errors), errors
    assert sorted(p.name for p in workspace.path.iterdir()) == before  # no state, no lock left behind
