"""What an apply did, per key: the walker reports steps (actions), people read keys.

A key is done when every step of it succeeded, failed when one of its steps failed or was
skipped because of a failure, not started when an interrupt came before any of its steps, and
partly done when an interrupt stopped it between steps (the next apply finishes it). After a
second interrupt, a key whose step was still running is cut short: its remote change may or may
not have happened, and the next plan finds out (keys carry keyplan's tags).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from keyplan.apply.walker import ApplyResult
from keyplan.plan.model import Plan, key_changes


class KeyProgress(StrEnum):
    DONE = "done"
    PARTLY_DONE = "partly done"
    CUT_SHORT = "cut short"
    NOT_STARTED = "not started"
    FAILED = "failed"


@dataclass
class KeysProgress:
    """The keys of a walked plan by how far they got, each list in plan order."""

    keys: dict[KeyProgress, list[str]] = field(default_factory=dict)

    def of(self, progress: KeyProgress) -> list[str]:
        return self.keys.get(progress, [])

    def count(self, progress: KeyProgress) -> int:
        return len(self.of(progress))


def keys_progress(plan: Plan, result: ApplyResult) -> KeysProgress:
    """Each key with steps in `plan`, by how far `result` got with them. Steps that belong to no
    key (shared prerequisites) only matter through the keys that wait on them."""
    steps: dict[str, list[str]] = {}
    for action in plan.actions:
        if action.address is not None:
            steps.setdefault(action.address, []).append(action.id)
    succeeded = set(result.succeeded)
    broken = set(result.failed) | set(result.skipped)
    running = set(result.in_flight)
    not_started = set(result.not_started)
    progress = KeysProgress()
    for address, ids in steps.items():
        if broken.intersection(ids):
            kind = KeyProgress.FAILED
        elif succeeded.issuperset(ids):
            kind = KeyProgress.DONE
        elif running.intersection(ids):
            kind = KeyProgress.CUT_SHORT
        elif not_started.issuperset(ids):
            kind = KeyProgress.NOT_STARTED
        else:
            kind = KeyProgress.PARTLY_DONE
        progress.keys.setdefault(kind, []).append(address)
    return progress


def keys_done_by_change(plan: Plan, result: ApplyResult) -> Counter[str]:
    """How many keys the apply created, adopted, imported, updated, rotated, deleted, forgot:
    each key whose every step succeeded counts once per kind of change it had (`key_changes`)."""
    changes = key_changes(plan)
    done = keys_progress(plan, result).of(KeyProgress.DONE)
    return Counter(kind for address in done for kind in changes.get(address, []))
