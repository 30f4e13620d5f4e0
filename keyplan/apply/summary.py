"""What an apply did, per key: the walker reports steps (actions), people read keys.

A key is done when every step of it succeeded, failed when one of its steps failed or was
skipped because of a failure, not started when an interrupt came before any of its steps, and
partly done when an interrupt stopped it between steps (the next apply finishes it). After a
second interrupt, a key whose step was still running is cut short: its remote change may or may
not have happened, and the next plan finds out (keys carry keyplan's tags).

`KeyTracker` follows the same thing live, for progress output: it says when a key is finished
and how far the walk is (counts, rate, time left).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from keyplan.apply.walker import ApplyResult
from keyplan.plan.model import Action, ActionKind, Plan, key_changes


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
    each key whose every step that changes it succeeded counts once per kind of change it had
    (`key_changes`). A proof (`apply -verify`) changes nothing: a key made and imported whose
    proof then failed was still created, and is also among the failed keys."""
    changes = key_changes(plan)
    succeeded = set(result.succeeded)
    changing: dict[str, list[str]] = {}
    for action in plan.actions:
        if action.address is not None and action.kind is not ActionKind.VERIFY_MATERIAL:
            changing.setdefault(action.address, []).append(action.id)
    done = [address for address, ids in changing.items() if succeeded.issuperset(ids)]
    return Counter(kind for address in done for kind in changes.get(address, []))


@dataclass(frozen=True)
class KeyFinished:
    """A key whose every step has now succeeded (or, `failed`, whose first step failed)."""

    address: str
    kinds: list[str]  # what it counts as: create, adopt, import, update, rotate, delete, forget
    targets: list[str]
    failed: bool = False


@dataclass(frozen=True)
class ProgressSnapshot:
    keys_total: int
    keys_done: int
    keys_failed: int
    steps_total: int
    steps_finished: int  # succeeded, failed or skipped
    steps_running: int
    elapsed_seconds: float
    quota_floor_seconds: float | None = None  # the least the plan's bounding quota allows for what is left


    @property
    def keys_per_second(self) -> float:
        return self.keys_done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the rate steps finished so far, but never less than the bounding quota
        allows for the steps left at its target (steps that need no call, such as generating
        material, finish at once and would promise an end the quota cannot give). None before
        the first step finished when no quota bounds the apply."""
        floor = self.quota_floor_seconds
        if not self.steps_finished or self.elapsed_seconds <= 0:
            return floor
        at_this_rate = (self.steps_total - self.steps_finished) * self.elapsed_seconds / self.steps_finished
        return at_this_rate if floor is None else max(at_this_rate, floor)


class KeyTracker:
    """Follows a walk step by step and says when a key is finished: what progress output shows
    and counts. Safe to call from the walk's worker threads."""

    def __init__(self, plan: Plan, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._left: dict[str, set[str]] = {}
        self._targets: dict[str, list[str]] = {}
        for action in plan.actions:
            if action.address is not None:
                self._left.setdefault(action.address, set()).add(action.id)
                targets = self._targets.setdefault(action.address, [])
                if action.target is not None and action.target not in targets:
                    targets.append(action.target)
        self._kinds = key_changes(plan)
        # The quota that bounds the apply (the plan's estimate): its time, spread over the steps at
        # its target, is the least the steps left there can take.
        self._bound = plan.estimate
        self._bound_steps = sum(1 for a in plan.actions if plan.estimate and a.target == plan.estimate.target)
        self._bound_finished = 0
        self._failed: set[str] = set()
        self.keys_total = len(self._left)
        self.steps_total = len(plan.actions)
        self._keys_done = 0
        self._steps_finished = 0
        self._running = 0

    def started(self, action: Action) -> None:
        with self._lock:
            self._running += 1

    def succeeded(self, action: Action) -> KeyFinished | None:
        with self._lock:
            self._running -= 1
            self._step_finished(action)
            if action.address is None or action.address in self._failed:
                return None
            left = self._left[action.address]
            left.discard(action.id)
            if left:
                return None
            self._keys_done += 1
            return self._finished(action.address, failed=False)

    def failed(self, action: Action) -> KeyFinished | None:
        with self._lock:
            self._running -= 1
            self._step_finished(action)
            return self._first_failure(action)

    def skipped(self, action: Action) -> KeyFinished | None:
        with self._lock:
            self._step_finished(action)
            return self._first_failure(action)

    def _step_finished(self, action: Action) -> None:
        self._steps_finished += 1
        if self._bound is not None and action.target == self._bound.target:
            self._bound_finished += 1

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return ProgressSnapshot(
                keys_total=self.keys_total,
                keys_done=self._keys_done,
                keys_failed=len(self._failed),
                steps_total=self.steps_total,
                steps_finished=self._steps_finished,
                steps_running=self._running,
                elapsed_seconds=self._clock() - self._started,
                quota_floor_seconds=self._quota_floor(),
            )

    def _quota_floor(self) -> float | None:
        if self._bound is None or not self._bound_steps:
            return None
        return self._bound.seconds * (self._bound_steps - self._bound_finished) / self._bound_steps

    def _first_failure(self, action: Action) -> KeyFinished | None:
        if action.address is None or action.address in self._failed:
            return None
        self._failed.add(action.address)
        return self._finished(action.address, failed=True)

    def _finished(self, address: str, *, failed: bool) -> KeyFinished:
        return KeyFinished(address, self._kinds.get(address, []), self._targets.get(address, []), failed)
