"""Apply: walk a plan's action graph in parallel and make it so.

`Walker` puts the pieces together: the generic `Scheduler` runs each action as soon as
everything it depends on has succeeded (up to `parallelism` at once) and skips only what depends
on a failure; `handlers.run_action` runs one action through its kind's handler; every plugin
call goes through `PluginCalls` (admission per provider, retries, answer checks); every completed
mutation is in state before the action counts as done (`committer`). The walker never prints:
it reports through `ApplyHooks`, and failures come back as diagnostics in the `ApplyResult`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

from keyplan.apply.calls import PluginCalls
from keyplan.apply.committer import StateCommitter
from keyplan.apply.context import ActionFailed, ApplyContext
from keyplan.apply.handlers import run_action
from keyplan.apply.hooks import ApplyHooks, CompositeHooks, SilentHooks
from keyplan.apply.retry import RetryPolicy
from keyplan.apply.scheduler import Interruption, NotStarted, Scheduler
from keyplan.diagnostics import Diagnostic, Diagnostics, DiagnosticsError, Severity
from keyplan.limits import NotSent, begin_step
from keyplan.plan.graph import ActionGraph
from keyplan.plan.model import Action, Plan
from keyplan.provider import PluginAnswerError, ProviderError, RemoteKey, SourceError
from keyplan.runtime import Session
from keyplan.state.model import State

__all__ = [
    "ApplyHooks", "ApplyResult", "CompositeHooks", "Interruption", "RetryPolicy", "SilentHooks", "Walker", "accept_live",
]

log = logging.getLogger("keyplan.apply")


@dataclass
class ApplyResult:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    state_writes: int = 0
    not_started: list[str] = field(default_factory=list)  # interrupted: never handed out
    in_flight: list[str] = field(default_factory=list)  # abandoned by a second interrupt while running
    interrupted: bool = False
    abandoned: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.diagnostics.has_errors()


class Walker:
    def __init__(
        self,
        plan: Plan,
        session: Session,
        committer: StateCommitter,
        *,
        hooks: ApplyHooks | None = None,
        parallelism: int = 10,
        retry: RetryPolicy | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        interruption: Interruption | None = None,
    ) -> None:
        self.hooks: ApplyHooks = hooks or SilentHooks()
        self.interruption = interruption
        self.graph = ActionGraph(plan.actions)
        self.scheduler = Scheduler(self.graph.graph, parallelism=parallelism)
        self.committer = committer
        self.session = session
        self.context = ApplyContext(
            plan=plan,
            committer=committer,
            calls=PluginCalls(session, self.hooks, retry or RetryPolicy()),
            hooks=self.hooks,
            now=now,
        )
        self._diagnostics = Diagnostics()

    def run(self) -> ApplyResult:
        # Workers go on to other actions while a finished one's state write becomes durable; its
        # dependents start only once it is (see committer).
        self.committer.defer_durability()
        # A first interrupt also ends the waits of calls queued for their quota: they give up
        # unsent (NotSent) and their actions count as not started, instead of holding the stop
        # until their turn or the throttle timeout.
        outcome = self.scheduler.run(self._run_one, self, self.interruption, on_stopping=self.session.limits.stop)
        result = ApplyResult(
            succeeded=outcome.succeeded,
            failed=outcome.failed,
            skipped=outcome.skipped,
            diagnostics=self._diagnostics,
            state_writes=self.committer.writes,
            not_started=outcome.not_started,
            in_flight=outcome.in_flight,
            interrupted=outcome.interrupted,
            abandoned=outcome.abandoned,
        )
        log.debug(
            "apply: %d done, %d failed, %d skipped, %d not started, %d abandoned in flight, %d state writes",
            len(result.succeeded), len(result.failed), len(result.skipped), len(result.not_started),
            len(result.in_flight), result.state_writes,
        )
        return result

    def _run_one(self, action_id: str) -> Future[None] | None:
        action = self.graph.actions[action_id]
        log.debug("start %s", action.id)
        self.hooks.started(action)
        started = time.monotonic()
        self.committer.durability()  # nothing left over from this worker's previous action
        begin_step()
        try:
            run_action(self.context, action)
        except NotSent:
            self.hooks.not_sent(action, "the apply was interrupted while the call waited for its quota")
            raise NotStarted(action.id) from None
        finally:
            durable = self.committer.durability()
        if durable is None:
            self._finished(action, started)
        else:
            # "done" only once the action's state mutation is durable: a line printed before
            # would claim a step a crash could still lose. Registered before the scheduler's own
            # callback, so it is printed before any dependent starts; a failed append is
            # reported by the scheduler as the action's failure instead.
            durable.add_done_callback(lambda f: None if f.cancelled() or f.exception() else self._finished(action, started))
        return durable

    def _finished(self, action: Action, started: float) -> None:
        log.debug("done %s in %.2fs", action.id, time.monotonic() - started)
        self.hooks.finished(action, time.monotonic() - started)

    # -- scheduler listener ------------------------------------------------------------------

    def failed(self, node: str, error: BaseException) -> None:
        action = self.graph.actions[node]
        diagnostic = _diagnostic(action, error)
        self._diagnostics.add(diagnostic)
        self.hooks.failed(action, diagnostic)

    def skipped(self, node: str, because: str) -> None:
        self.hooks.skipped(self.graph.actions[node], because)


def _diagnostic(action: Action, error: BaseException) -> Diagnostic:
    if isinstance(error, ActionFailed | ProviderError | SourceError | PluginAnswerError):
        summary, detail = error.summary, error.detail
    elif isinstance(error, DiagnosticsError):
        first = next(iter(error.diagnostics))
        summary, detail = first.summary, first.detail
    else:
        raise error  # a bug: let the CLI show it with a request to report it
    return Diagnostic(
        severity=Severity.ERROR,
        summary=f"{action.label}: {summary}",
        detail=detail,
        address=action.address,
    )


def accept_live(plan: Plan, committer: StateCommitter) -> int:
    """`apply -refresh-only`: take the cloud's current values into state. Returns how many
    target records changed."""
    changed = 0

    def accept(state: State) -> None:
        nonlocal changed
        for drift in plan.drift:
            key = state.keys.get(drift.address)
            record = key.targets.get(drift.target) if key else None
            if key is None or record is None:
                continue
            live_raw = plan.live.get(drift.target, {}).get(record.remote_id)
            if drift.kind.value == "deleted":
                del key.targets[drift.target]
                changed += 1
            elif live_raw is not None:
                live = RemoteKey.model_validate(live_raw)
                record.labels = dict(live.labels)
                record.aliases = sorted(live.aliases)
                record.description = live.description
                record.enabled = live.enabled
                if live.deletion_date is not None:
                    record.deletion_date = live.deletion_date
                changed += 1

    committer.commit(accept)
    return changed
