"""What an apply step's handler works with: the plan, the state as the walk has left it, the
outputs earlier steps handed on, the one door for plugin calls, the committer and the hooks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyplan.apply.calls import PluginCalls
from keyplan.apply.committer import StateCommitter
from keyplan.apply.hooks import ApplyHooks
from keyplan.plan.model import (
    Plan,
    PlannedKey,
)
from keyplan.provider import (
    KeySpec,
    PrerequisiteRecord,
)
from keyplan.state.model import ImportedVersion, KeyRecord, State, TargetRecord


class ActionFailed(Exception):
    """A step cannot go on for a reason keyplan itself found (the state moved under the plan)."""

    def __init__(self, summary: str, detail: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail


@dataclass
class ApplyContext:
    """What handlers share during one apply."""

    plan: Plan
    committer: StateCommitter
    calls: PluginCalls
    hooks: ApplyHooks
    now: Callable[[], datetime]
    _outputs: dict[str, Any] = field(default_factory=dict)
    _outputs_lock: threading.Lock = field(default_factory=threading.Lock)

    def output(self, action_id: str) -> Any:
        with self._outputs_lock:
            return self._outputs[action_id]

    def set_output(self, action_id: str, value: object) -> None:
        with self._outputs_lock:
            self._outputs[action_id] = value

    def planned(self, address: str) -> PlannedKey:
        planned = self.plan.keys.get(address)
        if planned is None:
            raise ActionFailed(
                "the plan has no key spec for this key",
                f"The plan's actions name {address}, but its keys do not. The plan is damaged; make a new one.",
            )
        return planned

    def spec(self, address: str) -> KeySpec:
        return self.planned(address).spec

    def managed_by(self) -> str:
        return self.committer.read(lambda state: state.managed_by)

    def record(self, address: str) -> KeyRecord:
        record = self.committer.read(lambda state: state.keys.get(address))
        if record is None:
            raise ActionFailed(
                "the key is not in state",
                f"{address} is missing from state, so this step has nothing to act on. Run `keyplan plan` again.",
            )
        return record

    def target_record(self, address: str, target: str) -> TargetRecord:
        target_record = self.record(address).targets.get(target)
        if target_record is None:
            raise ActionFailed(
                "the key has no record at this target",
                f"{address} has no remote key at {target} in state. Run `keyplan plan` again.",
            )
        return target_record

    def imported(self, address: str, target: str, version: int, step: str) -> tuple[TargetRecord, ImportedVersion]:
        """The key's record at `target` and its import of material `version`, which `step`
        ("promoting it", "proving it") follows."""
        target_record = self.target_record(address, target)
        imported = target_record.imported(version)
        if imported is None:
            raise ActionFailed(
                f"material v{version} was not imported at {target}",
                f"The import before {step} left no record in state. Run `keyplan plan` again.",
            )
        return target_record, imported

    def prerequisites(self, target: str) -> dict[str, PrerequisiteRecord]:
        return self.committer.read(lambda state: dict(state.prerequisites.get(target, {})))

    def key_record_in(self, state: State, address: str) -> KeyRecord:
        """The key's record in `state`, created from the plan's key spec if it is not there yet."""
        key = state.keys.get(address)
        if key is None:
            planned = self.planned(address)
            key = KeyRecord(
                address=address,
                algorithm=planned.spec.algorithm.name,
                usage=planned.spec.usage.value,
                source=planned.source,
                prevent_destroy=planned.prevent_destroy,
            )
            state.keys[address] = key
        return key


# -- the table ----------------------------------------------------------------------------------
