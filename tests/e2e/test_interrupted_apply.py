"""An apply interrupted by Ctrl-C, SIGTERM or SIGHUP: no step starts after the first signal, the
steps in flight finish and are recorded, the lock is released, and the summary says per key what
was done and what was not (exit 130); a second Ctrl-C abandons the steps in flight at once. The
next apply converges with no key created twice, checked against what the emulator holds."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from keyplan.state.local import LocalBackend
from providers.aws.mapping import decode_address
from tests.e2e.conftest import ForkedKeyplan, Workspace

APPS = [f"k{n}" for n in range(8)]

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "app" {
  for_each  = toset([%s])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
""" % ", ".join(f'"{app}"' for app in APPS)

ADDRESSES = {f'key.app["{app}"]' for app in APPS}
_SUMMARY = re.compile(r"(\d+) keys? (done|partly done|cut short in flight|failed|not started)(?: \(([^)]*)\))?")


def start_apply(workspace: Workspace, latency_ms: int, **env: str) -> ForkedKeyplan:
    """The apply as a process of its own (forked), its output (standard error included) on a pipe."""
    return ForkedKeyplan(
        workspace.path, "apply", "-auto-approve", "-parallelism", "2",
        env=dict(os.environ, KEYPLAN_EMULATOR_LATENCY_MS=str(latency_ms), **env),
    )  # fmt: skip


def read_until(process: ForkedKeyplan, seen: list[str], *words: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if all(word in line for word in words):
            return
    raise AssertionError("the apply ended before printing " + repr(words) + ":\n" + "".join(seen))


def finish(process: ForkedKeyplan, seen: list[str]) -> str:
    assert process.stdout is not None
    seen.extend(process.stdout)
    process.wait(timeout=120)
    return "".join(seen)


def summary(output: str) -> dict[str, set[str]]:
    """The interrupted apply's per-key summary: `3 keys done (key.app["k0"], ...), 5 keys not started (...)`,
    each kind with every key it names (a kind of more than eight keys names eight `and N more`)."""
    return {kind: named for kind, (_, named) in counted_summary(output).items()}


def counted_summary(output: str) -> dict[str, tuple[int, set[str]]]:
    lines = output.splitlines()
    line = next(lines[n + 1] for n, line in enumerate(lines) if line.startswith("Interrupted"))
    found: dict[str, tuple[int, set[str]]] = {}
    for count, kind, listed in _SUMMARY.findall(line):
        listed, more = re.fullmatch(r"(.*?)(?: and (\d+) more)?", listed).groups()  # type: ignore[union-attr]
        keys = {address.strip() for address in listed.split(", ")} if listed else set()
        assert len(keys) + int(more or 0) == int(count), line
        found[kind] = (int(count), keys)
    return found


def remote_keys(workspace: Workspace) -> dict[str, list[dict[str, Any]]]:
    """Every key the emulator holds, by its keyplan-address tag."""
    found: dict[str, list[dict[str, Any]]] = {}
    with workspace.aws() as (kms, _):
        for entry in kms.list_keys()["Keys"]:
            tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=entry["KeyId"])["Tags"]}
            metadata = kms.describe_key(KeyId=entry["KeyId"])["KeyMetadata"]
            address = decode_address(tags["keyplan-address"])
            assert address is not None, tags
            found.setdefault(address, []).append(metadata)
    return found


def assert_converges(workspace: Workspace, addresses: set[str] = ADDRESSES) -> None:
    again = workspace.keyplan("apply", "-auto-approve")
    assert again.code == 0 and "Apply complete!" in again.stdout, again.output
    held = remote_keys(workspace)
    assert set(held) == addresses and all(len(keys) == 1 for keys in held.values()), "every key exactly once"
    assert all(keys[0]["KeyState"] == "Enabled" for keys in held.values())
    recorded = {a: k["targets"]["aws.main"]["remote_id"] for a, k in workspace.state()["keys"].items()}
    assert recorded == {address: keys[0]["Arn"] for address, keys in held.items()}
    assert workspace.keyplan("plan", "-detailed-exitcode").code == 0


def assert_unlocked_and_folded(state_path: Path) -> None:
    assert LocalBackend(state_path).store().current_lock() is None, "the lock is released"
    assert not state_path.with_name(state_path.name + ".journal").exists(), "the journal is folded into the state"


# More keys than one interrupt could find all started: after the first key is done, the others
# start about one every 300 ms; with 24 keys a loaded machine (the signal sent seconds late) still
# interrupts before the last of them has started.
MANY = [f"k{n}" for n in range(24)]
MANY_CONFIG = CONFIG.replace(", ".join(f'"{app}"' for app in APPS), ", ".join(f'"{app}"' for app in MANY))
MANY_ADDRESSES = {f'key.app["{app}"]' for app in MANY}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_one_interrupt_finishes_the_steps_in_flight_and_says_what_is_left(
    workspace: Workspace, signum: int
) -> None:
    workspace.write(MANY_CONFIG)
    process = start_apply(workspace, latency_ms=300)
    seen: list[str] = []
    read_until(process, seen, ": created at aws.main")  # the first key finished
    process.send_signal(signum)
    output = finish(process, seen)

    assert process.returncode == 130, output
    assert "Traceback" not in output and "Apply complete!" not in output
    assert f"{signal.Signals(signum).name}: stopping after the steps in flight" in output
    assert "Run `keyplan apply` again to finish." in output
    counted = counted_summary(output)
    assert sum(count for count, _ in counted.values()) == len(MANY_ADDRESSES), output
    named = [address for _, keys in counted.values() for address in keys]
    assert len(named) == len(set(named)) and set(named) <= MANY_ADDRESSES, output
    keys = summary(output)
    assert keys.get("done") and counted.get("not started", (0, set()))[0] > 0, output
    assert "cut short in flight" not in keys, "one interrupt lets every step in flight finish"
    assert_unlocked_and_folded(workspace.state_path)

    # The state records every step that finished, and the cloud holds nothing the state lacks.
    recorded = workspace.state()["keys"]
    held = remote_keys(workspace)
    for address in keys["done"]:
        arn = recorded[address]["targets"]["aws.main"]["remote_id"]
        assert [k["Arn"] for k in held[address]] == [arn] and held[address][0]["KeyState"] == "Enabled"
    for address in keys["not started"]:
        assert address not in recorded and address not in held
    assert len(recorded) + counted["not started"][0] <= len(MANY_ADDRESSES)
    for address, found in held.items():
        assert [k["Arn"] for k in found] == [recorded[address]["targets"]["aws.main"]["remote_id"]]

    assert_converges(workspace, MANY_ADDRESSES)


def test_a_second_interrupt_abandons_the_steps_in_flight(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    # Every call to the emulator takes 3 s; the debug log says when one starts, so both signals
    # come while it is in flight.
    process = start_apply(workspace, latency_ms=3000, KEYPLAN_LOG="DEBUG")
    seen: list[str] = []
    read_until(process, seen, "DEBUG: start create_key")
    process.send_signal(signal.SIGINT)
    read_until(process, seen, "SIGINT: stopping after the steps in flight")
    process.send_signal(signal.SIGINT)
    output = finish(process, seen)

    assert process.returncode == 130, output
    assert "Traceback" not in output and "Apply complete!" not in output
    assert "Interrupted twice: the steps in flight were abandoned" in output
    keys = summary(output)
    assert keys.get("cut short in flight"), "the second interrupt ended the walk with steps in flight:\n" + output
    assert set().union(*keys.values()) == ADDRESSES
    assert_unlocked_and_folded(workspace.state_path)
    assert_converges(workspace)


def test_an_interrupt_ends_the_waits_for_a_quota_and_those_calls_are_never_sent(workspace: Workspace) -> None:
    # One CreateKey every 100 s: the first is sent at once, the next waits its turn in keyplan's
    # limiter. Without giving up on an interrupt, the apply would hold the stop for minutes.
    workspace.write(CONFIG.replace('endpoint = "embedded"', 'endpoint = "embedded"\n  rate_limits = { CreateKey = 0.01 }'))
    process = start_apply(workspace, latency_ms=0, KEYPLAN_LOG="DEBUG")
    seen: list[str] = []
    read_until(process, seen, "DEBUG: start create_key")
    read_until(process, seen, "DEBUG: start create_key")  # the second creation: it waits for its turn
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None
    seen.extend(process.stdout)
    process.wait(timeout=60)  # the wait ends at once (a hang here fails the test)
    output = "".join(seen)

    assert process.returncode == 130, output
    assert "Traceback" not in output
    keys = summary(output)
    assert "cut short in flight" not in keys, output
    held = remote_keys(workspace)
    assert len(held) == 1, "only the creation sent before the interrupt reached the cloud:\n" + output
    entries = [json.loads(line) for line in (workspace.path / ".keyplan" / "audit.jsonl").read_text().splitlines()]
    not_sent = [e for e in entries if e["outcome"] == "not sent"]
    assert not_sent and all(e["action"] == "create_key" and e["address"] not in held for e in not_sent)
    started = {e["address"] for e in entries if e["action"] == "create_key" and e["outcome"] == "started"}
    settled = {e["address"] for e in entries if e["action"] == "create_key" and e["outcome"] != "started"}
    assert started == settled, "every creation entered as started has its outcome"

    # Nothing is taken for a creation whose answer was lost: the next plan does not hold off.
    workspace.write(CONFIG)
    planned = workspace.keyplan("plan")
    assert "interrupted apply" not in planned.output, planned.output
    assert_converges(workspace)
