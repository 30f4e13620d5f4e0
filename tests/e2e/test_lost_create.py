"""A CreateKey whose answer a crash lost, at a cloud that lists new keys only after a delay (AWS
KMS: eventual consistency): the next plan cannot see the key yet. It must not create a second key
for the address: while the interrupted apply's `started` audit entry is younger than the target's
consistency window, `plan` plans nothing for that key and says why, and `apply` waits the window
out, then finds the key and adopts it."""

from __future__ import annotations

import json
import os

from providers.aws import KmsEmulator
from providers.emulation.server import EmulatorServer
from tests.e2e.conftest import CLOUD_CONFIGS, EMULATOR_NAMES, Workspace, run_keyplan


def killed_after_first_create(workspace: Workspace, profile: dict[str, object]) -> None:
    """`keyplan apply` in a fork, SIGKILLed right after the emulator made its first key (the
    answer never sent)."""
    import signal

    calls: list[str] = []
    dispatch = EmulatorServer.dispatch

    def crash_after_create(self: EmulatorServer, request):  # type: ignore[no-untyped-def]
        operation = "" if request.path.startswith("/_emulator/") else self.app.operation(request)
        answer = dispatch(self, request)
        calls.append(operation)
        if operation == "CreateKey":
            os.kill(os.getpid(), signal.SIGKILL)
        return answer

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            EmulatorServer.dispatch = crash_after_create  # type: ignore[method-assign]
            env = {"KEYPLAN_EMULATOR_FAULTS": json.dumps({EMULATOR_NAMES["aws"]: profile})}
            code = run_keyplan(workspace.path, "apply", "-auto-approve", "-parallelism", "1", env=env).code
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), f"the apply was not killed (status {status})"


def stored_keys(workspace: Workspace) -> list[str]:
    from providers.emulation.clock import Clock
    from providers.emulation.store import DocumentStore

    store = DocumentStore(workspace.path / ".keyplan" / "emulators" / f"{EMULATOR_NAMES['aws']}.sqlite")
    try:
        KmsEmulator(store, Clock())
        return [doc_id for doc_id, _ in store.list("keys")]
    finally:
        store.close()


def test_a_key_created_moments_before_a_crash_and_not_listed_yet_is_waited_for_not_created_again(
    workspace: Workspace,
) -> None:
    # the cloud lists a new key 2 s after making it; the provider block allows it 4 s
    workspace.write(CLOUD_CONFIGS["aws"].replace("consistency_window_seconds = 0", "consistency_window_seconds = 4"))
    lagging = {"profile": "realistic", "quota_scale": 50, "listing_lag": 2}
    env = {"KEYPLAN_EMULATOR_FAULTS": json.dumps({EMULATOR_NAMES["aws"]: lagging})}
    killed_after_first_create(workspace, lagging)
    [first] = stored_keys(workspace)

    # at once, the plan cannot see the key yet: it plans nothing for it and says why
    planned = workspace.keyplan("plan", env=env)
    assert planned.code == 0, planned.output
    assert "A key an interrupted apply was creating may not be listed yet" in planned.output, planned.output
    assert "Plan: 1 to create" in planned.output, planned.output

    # the apply waits the window out, then finds the key (adopted) and creates only the other
    resumed = workspace.keyplan("apply", "-auto-approve", env=env)
    assert resumed.code == 0, resumed.output
    assert "for keys an interrupted apply was creating" in resumed.output, resumed.output
    keys = stored_keys(workspace)
    assert len(keys) == 2 and first in keys, f"a key was created twice: {resumed.output}"
    recorded = {r["targets"]["aws.main"]["remote_id"].rsplit("/", 1)[-1] for r in workspace.state()["keys"].values()}
    assert recorded == set(keys)
    assert workspace.keyplan("plan", "-detailed-exitcode", env=env).code == 0
