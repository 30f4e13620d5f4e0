"""The time left an apply shows (terminal bar, CI lines, -json) is never less than the plan's
bounding quota allows for the steps left at its target: generating material needs no call and
finishes at once, and at the rate of steps alone an apply bound by CreateKey at 5/s said
"about 0 s left" in its first seconds."""

from __future__ import annotations

import pytest

from keyplan.apply.summary import KeyTracker
from keyplan.plan.model import ActionKind
from keyplan.plan.planfile import load_plan
from tests.e2e.conftest import Workspace

KEYS = """
source "software" "local" {}

provider "aws" "main" {
  region      = "eu-west-1"
  endpoint    = "embedded"
  rate_limits = { CreateKey = 5 }
}

key "k" {
  for_each  = toset([for i in range(200) : format("key-%03d", i)])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def test_the_time_left_is_never_less_than_the_bounding_quota_allows(workspace: Workspace) -> None:
    workspace.write(KEYS)
    assert workspace.keyplan("plan", "-out=p.kpplan").code == 0
    plan = load_plan(workspace.path / "p.kpplan")
    assert plan.estimate is not None and (plan.estimate.target, plan.estimate.rate_class) == ("aws.main", "CreateKey")
    assert plan.estimate.seconds == pytest.approx(200 / 5)
    now = [0.0]
    tracker = KeyTracker(plan, clock=lambda: now[0])
    assert tracker.snapshot().eta_seconds == pytest.approx(40.0), "the quota's time before any step finished"

    generates = [a for a in plan.actions if a.kind is ActionKind.GENERATE_MATERIAL]
    at_target = [a for a in plan.actions if a.target == "aws.main"]
    assert len(generates) == 200 and at_target
    for action in generates:  # no call: all done in the first second
        tracker.started(action)
        tracker.succeeded(action)
    now[0] = 1.0
    snapshot = tracker.snapshot()
    at_step_rate = (snapshot.steps_total - snapshot.steps_finished) * 1.0 / snapshot.steps_finished
    assert at_step_rate < 10, "the rate of steps alone promises the end within seconds"
    assert snapshot.eta_seconds == pytest.approx(40.0)

    for action in at_target[: len(at_target) // 2]:  # half the calls made, at the quota's pace
        tracker.started(action)
        tracker.succeeded(action)
    now[0] = 21.0
    assert tracker.snapshot().eta_seconds == pytest.approx(20.0)

    for action in at_target[len(at_target) // 2 :]:
        tracker.started(action)
        tracker.succeeded(action)
    now[0] = 41.0
    assert tracker.snapshot().eta_seconds == pytest.approx(0.0)
