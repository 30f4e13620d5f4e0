"""Durations on the command line (-lock-timeout, -throttle-timeout): a bare number is refused
with the option's own examples (seconds or minutes), not a key's lifetime; 0 needs no unit."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import CLOUD_CONFIGS, Workspace


@pytest.mark.parametrize("option", ["lock-timeout", "throttle-timeout"])
def test_a_duration_without_its_unit_is_refused_with_this_options_examples(workspace: Workspace, option: str) -> None:
    workspace.write(CLOUD_CONFIGS["aws"])
    refused = workspace.keyplan("plan", f"-{option}=10")
    assert refused.code == 1 and "Traceback" not in refused.output
    assert f"Invalid value for -{option}" in refused.stderr
    assert f"-{option}=10s or -{option}=10m" in refused.stderr
    assert workspace.keyplan("plan", f"-{option}=0").code == 0
    assert workspace.keyplan("plan", f"-{option}=10s").code == 0
