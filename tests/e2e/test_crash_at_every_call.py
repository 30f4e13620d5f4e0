"""The crash suite: a small apply (two keys, one step at a time) is killed with SIGKILL at every
remote call it makes, on each cloud's emulator, before the call's work or right after it (the
work done and stored, the answer never sent); then the next `keyplan apply` must converge with no
duplicate key, no orphan, and each material imported once. The kill comes from the embedded
emulator itself (a `crash` point of KEYPLAN_EMULATOR_FAULTS), so it lands at an exact call, not
at a random moment.

Which calls there are comes from one clean apply per cloud, recorded once per test process. A
crash right after a read leaves the same cloud and state as a crash before the next call, so
"after" is run for the calls that change something, and for the last call. MAX_CALLS bounds the
parametrization: the recording fails if an apply grows past it, so no call goes untested.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from providers.emulation.server import EmulatorServer
from tests.e2e.conftest import (
    CLOUD_CONFIGS,
    Workspace,
    apply_killed_at,
    assert_each_key_once,
    in_fork,
    resume_after_kill,
    run_keyplan,
)

MAX_CALLS = {"aws": 18, "gcp": 24, "azure": 12}
READS = ("List", "Get", "Describe", "Challenge")
_recorded: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def _warm_test_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every apply here runs in a fork of this process. One clean apply per cloud, run here first,
    loads the SDKs and the configuration parser and makes the emulators' RSA keys (the pool of
    tests/conftest.py, which forks then reuse) once, instead of once per fork. Each fork then
    starts from this same process, so the recorded apply and the killed ones make the same calls."""
    for cloud, configuration in CLOUD_CONFIGS.items():
        scratch = tmp_path_factory.mktemp(f"warm-{cloud}")
        (scratch / "main.kp.hcl").write_text(configuration)
        assert run_keyplan(scratch, "apply", "-auto-approve").code == 0


def calls_of_a_clean_apply(cloud: str, scratch: Path) -> list[str]:
    """The API operations a clean apply makes at the cloud's emulator, in order. It runs in a
    forked copy of this process, as the killed applies and their resumptions do, so each starts
    from the same loaded modules and caches and makes the same calls."""
    if cloud not in _recorded:
        (scratch / "main.kp.hcl").write_text(CLOUD_CONFIGS[cloud])

        def recorded_apply() -> tuple[list[str], str, int]:
            seen: list[str] = []
            dispatch = EmulatorServer.dispatch

            def recording(self: EmulatorServer, request):  # type: ignore[no-untyped-def]
                if not request.path.startswith("/_emulator/"):
                    seen.append(self.app.operation(request))
                return dispatch(self, request)

            EmulatorServer.dispatch = recording  # type: ignore[method-assign]
            result = run_keyplan(scratch, "apply", "-auto-approve", "-parallelism", "1")
            return seen, result.output, result.code

        seen, output, code = in_fork(recorded_apply)
        assert code == 0, output
        assert len(seen) <= MAX_CALLS[cloud], f"a clean apply now makes {len(seen)} calls: raise MAX_CALLS[{cloud!r}]"
        _recorded[cloud] = seen
    return _recorded[cloud]


def cases() -> Iterator[tuple[str, int, str]]:
    for cloud, most in sorted(MAX_CALLS.items()):
        for call in range(1, most + 1):
            for when in ("before", "after"):
                yield cloud, call, when


@pytest.mark.parametrize(("cloud", "call", "when"), list(cases()))
def test_an_apply_killed_at_a_remote_call_converges_on_the_next_apply(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory, cloud: str, call: int, when: str
) -> None:
    calls = calls_of_a_clean_apply(cloud, tmp_path_factory.mktemp(f"record-{cloud}"))
    if call > len(calls):
        pytest.skip(f"a clean apply makes {len(calls)} calls")
    operation = calls[call - 1]
    if when == "after" and operation.startswith(READS) and call < len(calls):
        pytest.skip(f"{operation} changes nothing: the same as a kill before call {call + 1}")
    workspace.write(CLOUD_CONFIGS[cloud])

    assert apply_killed_at(workspace, cloud, call, when), f"the apply finished before call {call} ({operation})"

    resumed = resume_after_kill(workspace)
    assert resumed.code == 0, f"killed {when} {operation} (call {call}):\n{resumed.output}"
    settled = in_fork(lambda: workspace.keyplan("plan", "-detailed-exitcode"))
    assert settled.code == 0, f"killed {when} {operation} (call {call}):\n{settled.output}"
    assert_each_key_once(workspace, cloud)
