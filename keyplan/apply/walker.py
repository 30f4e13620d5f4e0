"""Apply: walk a plan's action graph in parallel and make it so.

Actions run as soon as everything they depend on has succeeded, up to `parallelism` at once
and up to each provider's `max_concurrency`. Throttling and server errors are retried with
exponential backoff and full jitter. A failed action skips only what depends on it;
independent branches keep going. Every completed mutation is written to state before the action
counts as done (see `committer`). The walker never prints: it reports through `ApplyHooks`.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from keyplan.apply.committer import StateCommitter
from keyplan.diagnostics import Diagnostic, Diagnostics, DiagnosticsError, Severity
from keyplan.plan.graph import ActionGraph
from keyplan.plan.model import Action, Plan
from keyplan.provider import (
    CancelDeletionRequest,
    CreateKeyRequest,
    EnsurePrerequisiteRequest,
    ErrorKind,
    GenerateRequest,
    ImportMaterialRequest,
    ImportParameters,
    ImportParametersRequest,
    ImportPurpose,
    KeySpec,
    KeyState,
    PrerequisiteRecord,
    PrerequisiteSpec,
    PromoteVersionRequest,
    ProviderError,
    RemoteKey,
    ScheduleDeletionRequest,
    SourceError,
    UpdateKeyRequest,
    WrapOffer,
    WrappedMaterial,
    WrapRequest,
)
from keyplan.runtime import Session
from keyplan.state.model import ImportedVersion, KeyRecord, MaterialVersion, State, TargetRecord

log = logging.getLogger("keyplan.apply")


class ApplyHooks(Protocol):
    def started(self, action: Action) -> None: ...
    def finished(self, action: Action, seconds: float) -> None: ...
    def failed(self, action: Action, diagnostic: Diagnostic) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...
    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...
    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None: ...


class SilentHooks:
    def started(self, action: Action) -> None: ...
    def finished(self, action: Action, seconds: float) -> None: ...
    def failed(self, action: Action, diagnostic: Diagnostic) -> None: ...
    def skipped(self, action: Action, because: str) -> None: ...
    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None: ...
    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None: ...


class CompositeHooks:
    """Several listeners as one (the terminal, the audit log)."""

    def __init__(self, *listeners: ApplyHooks) -> None:
        self.listeners = listeners

    def started(self, action: Action) -> None:
        for listener in self.listeners:
            listener.started(action)

    def finished(self, action: Action, seconds: float) -> None:
        for listener in self.listeners:
            listener.finished(action, seconds)

    def failed(self, action: Action, diagnostic: Diagnostic) -> None:
        for listener in self.listeners:
            listener.failed(action, diagnostic)

    def skipped(self, action: Action, because: str) -> None:
        for listener in self.listeners:
            listener.skipped(action, because)

    def retrying(self, action: Action, attempt: int, delay: float, reason: str) -> None:
        for listener in self.listeners:
            listener.retrying(action, attempt, delay, reason)

    def mutated(self, action: Action, outcome: str, remote_id: str | None) -> None:
        for listener in self.listeners:
            listener.mutated(action, outcome, remote_id)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_seconds: float = 0.2
    cap_seconds: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * (2**attempt)))


@dataclass
class ApplyResult:
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    state_writes: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.diagnostics.has_errors()


class _ActionFailed(Exception):
    def __init__(self, summary: str, detail: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail


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
    ) -> None:
        self.plan = plan
        self.session = session
        self.committer = committer
        self.hooks: ApplyHooks = hooks or SilentHooks()
        self.parallelism = max(1, parallelism)
        self.retry = retry or RetryPolicy()
        self.now = now
        self.graph = ActionGraph(plan.actions)
        self._outputs: dict[str, Any] = {}
        self._outputs_lock = threading.Lock()
        self._limits: dict[str, threading.Semaphore] = {}
        self._limits_lock = threading.Lock()

    # -- the walk ----------------------------------------------------------------------------

    def run(self) -> ApplyResult:
        result = ApplyResult()
        waiting_on = {a.id: len(set(a.depends_on)) for a in self.plan.actions}
        dependents: dict[str, list[str]] = {a.id: [] for a in self.plan.actions}
        for action in self.plan.actions:
            for dependency in set(action.depends_on):
                dependents[dependency].append(action.id)
        ready = deque(sorted(i for i, n in waiting_on.items() if n == 0))
        finished: queue.SimpleQueue[tuple[Action, BaseException | None]] = queue.SimpleQueue()
        skipped: set[str] = set()
        in_flight = 0
        # Work is handed to the pool only as workers free up, and completions arrive on a queue:
        # each action costs O(its edges), so a walk grows linearly with the plan.
        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="keyplan-apply") as pool:
            while ready or in_flight:
                while ready and in_flight < self.parallelism:
                    action = self.graph.actions[ready.popleft()]
                    pool.submit(self._run_one, action).add_done_callback(self._reporter(finished, action))
                    in_flight += 1
                action, error = finished.get()
                in_flight -= 1
                if error is None:
                    result.succeeded.append(action.id)
                    for dependent in dependents[action.id]:
                        waiting_on[dependent] -= 1
                        if waiting_on[dependent] == 0 and dependent not in skipped:
                            ready.append(dependent)
                    continue
                result.failed.append(action.id)
                result.diagnostics.add(self._diagnostic(action, error))
                self.hooks.failed(action, result.diagnostics.errors[-1])
                # Everything downstream waits on this action forever; report it as skipped.
                for descendant in sorted(self.graph.descendants(action.id) - skipped):
                    skipped.add(descendant)
                    result.skipped.append(descendant)
                    self.hooks.skipped(self.graph.actions[descendant], action.id)
        result.state_writes = self.committer.writes
        log.debug(
            "apply: %d done, %d failed, %d skipped, %d state writes",
            len(result.succeeded), len(result.failed), len(result.skipped), result.state_writes,
        )
        return result

    @staticmethod
    def _reporter(
        finished: queue.SimpleQueue[tuple[Action, BaseException | None]], action: Action
    ) -> Callable[[Future[None]], None]:
        return lambda future: finished.put((action, future.exception()))

    def _diagnostic(self, action: Action, error: BaseException) -> Diagnostic:
        if isinstance(error, _ActionFailed):
            summary, detail = error.summary, error.detail
        elif isinstance(error, ProviderError):
            summary, detail = error.summary, error.detail
        elif isinstance(error, SourceError):
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

    def _limit(self, target: str | None) -> threading.Semaphore | None:
        if target is None:
            return None
        with self._limits_lock:
            if target not in self._limits:
                _, settings = self.session.provider_plugin(target)
                self._limits[target] = threading.Semaphore(settings.max_concurrency)
            return self._limits[target]

    def _run_one(self, action: Action) -> None:
        log.debug("start %s", action.id)
        self.hooks.started(action)
        started = time.monotonic()
        limit = self._limit(action.target) if action.kind.remote else None
        attempt = 0
        while True:
            try:
                if limit is not None:
                    with limit:
                        self._execute(action)
                else:
                    self._execute(action)
                break
            except (ProviderError, SourceError) as exc:
                retryable = exc.retryable
                if not retryable or attempt + 1 >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                attempt += 1
                self.hooks.retrying(action, attempt, delay, exc.summary)
                time.sleep(delay)
        log.debug("done %s in %.2fs", action.id, time.monotonic() - started)
        self.hooks.finished(action, time.monotonic() - started)

    # -- helpers -----------------------------------------------------------------------------

    def _output(self, action_id: str) -> Any:
        with self._outputs_lock:
            return self._outputs[action_id]

    def _set_output(self, action_id: str, value: Any) -> None:
        with self._outputs_lock:
            self._outputs[action_id] = value

    def _spec(self, address: str) -> KeySpec:
        planned = self.plan.keys.get(address)
        if planned is None:
            raise AssertionError(f"plan has no key spec for {address}")
        return planned.spec

    def _record(self, address: str) -> KeyRecord:
        record = self.committer.read(lambda s: s.keys.get(address))
        if not isinstance(record, KeyRecord):
            raise _ActionFailed(
                "the key is not in state",
                f"{address} is missing from state, so this step has nothing to act on. Run `keyplan plan` again.",
            )
        return record

    def _target_record(self, address: str, target: str) -> TargetRecord:
        record = self._record(address)
        target_record = record.targets.get(target)
        if target_record is None:
            raise _ActionFailed(
                "the key has no record at this target",
                f"{address} has no remote key at {target} in state. Run `keyplan plan` again.",
            )
        return target_record

    def _prerequisites(self, target: str) -> dict[str, PrerequisiteRecord]:
        found = self.committer.read(lambda s: dict(s.prerequisites.get(target, {})))
        assert isinstance(found, dict)
        return found

    # -- one action --------------------------------------------------------------------------

    def _execute(self, action: Action) -> None:
        handler = getattr(self, "_do_" + action.kind.value)
        handler(action)

    def _do_generate_material(self, action: Action) -> None:
        assert action.address and action.source
        spec = self._spec(action.address)
        version = int(action.args["version"])
        generated = self.session.source(action.source).generate(
            GenerateRequest(address=action.address, version=version, algorithm=spec.algorithm)
        )
        planned = self.plan.keys[action.address]

        def record(state: State) -> None:
            key = state.keys.get(action.address or "")
            if key is None:
                key = KeyRecord(
                    address=action.address or "",
                    algorithm=spec.algorithm.name,
                    usage=spec.usage.value,
                    source=action.source or "",
                    prevent_destroy=planned.prevent_destroy,
                )
                state.keys[key.address] = key
            key.prevent_destroy = planned.prevent_destroy
            key.materials = [m for m in key.materials if m.version != version]
            key.materials.append(
                MaterialVersion(
                    version=version,
                    handle=generated.handle,
                    fingerprint=generated.fingerprint,
                    created_at=generated.created_at,
                )
            )

        self.committer.commit(record, key=action.address)
        self.hooks.mutated(action, "generated", None)

    def _do_ensure_prerequisite(self, action: Action) -> None:
        assert action.target
        spec = PrerequisiteSpec.model_validate(action.args["spec"])
        known = self._prerequisites(action.target).get(spec.id)
        record = self.session.provider(action.target).ensure_prerequisite(
            EnsurePrerequisiteRequest(spec=spec, known=known)
        )
        if record.id != spec.id:
            raise AssertionError(f"provider answered prerequisite {record.id} for {spec.id}")
        self.committer.commit(lambda s: s.record_prerequisite(action.target or "", record), prerequisites_of=action.target)
        if known is None or known.remote_id != record.remote_id:
            self.hooks.mutated(action, "ensured", record.remote_id)

    def _ensure_key_record(self, state: State, address: str) -> KeyRecord:
        key = state.keys.get(address)
        if key is None:
            spec = self._spec(address)
            planned = self.plan.keys[address]
            key = KeyRecord(
                address=address,
                algorithm=spec.algorithm.name,
                usage=spec.usage.value,
                source=planned.source,
                prevent_destroy=planned.prevent_destroy,
            )
            state.keys[address] = key
        return key

    def _do_adopt_key(self, action: Action) -> None:
        assert action.address and action.target
        live = RemoteKey.model_validate(action.args["live"])
        address, target = action.address, action.target
        version = action.args.get("material_version")

        def adopt(state: State) -> None:
            # The key was created for the material state held at plan time; if the cloud shows it
            # holds material, that import finished before the interruption.
            key = self._ensure_key_record(state, address)
            imports: list[ImportedVersion] = []
            if version is not None and live.state is not KeyState.PENDING_IMPORT and live.current_version:
                imports.append(
                    ImportedVersion(
                        material_version=int(version),
                        remote_version_id=live.current_version,
                        imported_at=self.now(),
                        expires_at=live.expires_at,
                    )
                )
            key.targets[target] = TargetRecord(
                remote_id=live.remote_id,
                imports=imports,
                current_material_version=int(version) if imports and version is not None else None,
                labels=dict(live.labels),
                aliases=list(live.aliases),
                description=live.description,
                enabled=live.enabled,
            )

        self.committer.commit(adopt, key=address)

    def _do_cancel_deletion(self, action: Action) -> None:
        assert action.address and action.target
        remote_id = self._target_record(action.address, action.target).remote_id
        self.session.provider(action.target).cancel_deletion(CancelDeletionRequest(remote_id=remote_id))

        def restored(state: State) -> None:
            record = state.keys[action.address or ""].targets[action.target or ""]
            record.deletion_date = None
            record.enabled = False

        self.committer.commit(restored, key=action.address)
        self.hooks.mutated(action, "deletion cancelled", remote_id)

    def _do_create_key(self, action: Action) -> None:
        assert action.address and action.target
        spec = self._spec(action.address)
        managed_by = self.committer.read(lambda s: s.managed_by)
        assert isinstance(managed_by, str)
        response = self.session.provider(action.target).create_key(
            CreateKeyRequest(
                address=action.address,
                managed_by=managed_by,
                key=spec,
                prerequisites=self._prerequisites(action.target),
            )
        )

        def created(state: State) -> None:
            key = self._ensure_key_record(state, action.address or "")
            key.targets[action.target or ""] = TargetRecord(
                remote_id=response.remote_id,
                exists_remotely=response.exists_remotely,
                labels=dict(spec.labels),
                description=spec.description,
                enabled=response.state.value == "enabled",
            )

        self.committer.commit(created, key=action.address)
        if response.exists_remotely:
            self.hooks.mutated(action, "created", response.remote_id)

    def _parameters(self, action: Action, offer: WrapOffer) -> ImportParameters:
        assert action.address and action.target
        return self.session.provider(action.target).get_import_parameters(
            ImportParametersRequest(
                remote_id=self._target_record(action.address, action.target).remote_id,
                key=self._spec(action.address),
                offer=offer,
                prerequisites=self._prerequisites(action.target),
            )
        )

    def _do_get_import_parameters(self, action: Action) -> None:
        offer = WrapOffer.model_validate(action.args["offer"])
        self._set_output(action.id, self._parameters(action, offer))

    def _wrap(self, address: str, source: str, version: int, parameters: ImportParameters) -> WrappedMaterial:
        record = self._record(address)
        material = record.material(version)
        if material is None:
            raise _ActionFailed(
                f"material version {version} is not in state",
                f"{address} has no material version {version}, so there is nothing to wrap. Run `keyplan plan` again.",
            )
        wrapped = self.session.source(source).wrap(
            WrapRequest(
                handle=material.handle,
                algorithm=self._spec(address).algorithm,
                method=parameters.method,
                wrapping_public_key=parameters.wrapping_public_key,
            )
        )
        if wrapped.method is not parameters.method:
            raise AssertionError(f"source wrapped with {wrapped.method}, asked for {parameters.method}")
        return wrapped

    def _do_wrap_material(self, action: Action) -> None:
        assert action.address and action.source
        parameters = self._output(action.args["parameters_action"])
        self._set_output(action.id, self._wrap(action.address, action.source, int(action.args["version"]), parameters))

    def _do_import_material(self, action: Action) -> None:
        assert action.address and action.target
        address, target = action.address, action.target
        version = int(action.args["version"])
        purpose = ImportPurpose(action.args["purpose"])
        spec = self._spec(address)
        planned = self.plan.keys[address]
        parameters: ImportParameters = self._output(action.args["parameters_action"])
        wrapped: WrappedMaterial = self._output(action.args["wrap_action"])
        managed_by = self.committer.read(lambda s: s.managed_by)
        assert isinstance(managed_by, str)
        provider = self.session.provider(target)
        for refreshed in (False, True):
            target_record = self._target_record(address, target)
            valid_to = self.now() + spec.expiry if spec.expiry is not None else None
            try:
                response = provider.import_material(
                    ImportMaterialRequest(
                        remote_id=target_record.remote_id,
                        address=address,
                        managed_by=managed_by,
                        key=spec,
                        parameters=parameters,
                        wrapped=wrapped.blob,
                        purpose=purpose,
                        reimport_version_id=action.args.get("reimport_version_id"),
                        valid_to=valid_to,
                    )
                )
                break
            except ProviderError as exc:
                if exc.kind is not ErrorKind.PARAMETERS_EXPIRED or refreshed:
                    raise
                # The import token or job expired since it was fetched: fetch fresh ones and wrap again.
                parameters = self._parameters(action, WrapOffer.model_validate(action.args["offer"]))
                wrapped = self._wrap(address, planned.source, version, parameters)
                self.hooks.retrying(action, 1, 0.0, "import parameters expired; fetched fresh ones")

        def imported(state: State) -> None:
            record = state.keys[address].targets[target]
            record.exists_remotely = True
            record.imports.append(
                ImportedVersion(
                    material_version=version,
                    remote_version_id=response.version_id,
                    imported_at=self.now(),
                    expires_at=response.expires_at,
                )
            )
            if purpose is not ImportPurpose.NEW_VERSION:
                record.current_material_version = version
            if purpose is ImportPurpose.INITIAL:
                record.labels = dict(spec.labels)
                record.description = spec.description
                record.enabled = True

        self.committer.commit(imported, key=address)
        self.hooks.mutated(action, f"imported material v{version} ({purpose.value})", response.remote_id)

    def _do_promote_version(self, action: Action) -> None:
        assert action.address and action.target
        version = int(action.args["version"])
        target_record = self._target_record(action.address, action.target)
        imported = target_record.imported(version)
        if imported is None:
            raise _ActionFailed(
                f"material version {version} was not imported here",
                "The import step did not record a version to promote. Run `keyplan plan` again.",
            )
        self.session.provider(action.target).promote_version(
            PromoteVersionRequest(remote_id=target_record.remote_id, version_id=imported.remote_version_id)
        )

        def promoted(state: State) -> None:
            state.keys[action.address or ""].targets[action.target or ""].current_material_version = version

        self.committer.commit(promoted, key=action.address)
        self.hooks.mutated(action, f"made material v{version} current", target_record.remote_id)

    def _do_update_key(self, action: Action) -> None:
        assert action.address and action.target
        spec = self._spec(action.address)
        target_record = self._target_record(action.address, action.target)
        managed_by = self.committer.read(lambda s: s.managed_by)
        assert isinstance(managed_by, str)
        self.session.provider(action.target).update_key(
            UpdateKeyRequest(
                remote_id=target_record.remote_id, address=action.address, managed_by=managed_by, key=spec
            )
        )

        def updated(state: State) -> None:
            record = state.keys[action.address or ""].targets[action.target or ""]
            record.labels = dict(spec.labels)
            record.aliases = sorted(spec.aliases)
            record.description = spec.description
            record.enabled = spec.enabled

        self.committer.commit(updated, key=action.address)
        self.hooks.mutated(action, "updated", target_record.remote_id)

    def _do_schedule_deletion(self, action: Action) -> None:
        assert action.address and action.target
        remote_id = str(action.args["remote_id"])
        response = self.session.provider(action.target).schedule_deletion(ScheduleDeletionRequest(remote_id=remote_id))

        def scheduled(state: State) -> None:
            key = state.keys.get(action.address or "")
            if key and action.target in key.targets:
                key.targets[action.target or ""].deletion_date = response.deletion_date or self.now()

        self.committer.commit(scheduled, key=action.address)
        self.hooks.mutated(action, "deletion scheduled", remote_id)

    def _do_forget_key(self, action: Action) -> None:
        assert action.address

        def forget(state: State) -> None:
            if action.args.get("target_only"):
                key = state.keys.get(action.address or "")
                if key is not None:
                    key.targets.pop(action.target or "", None)
            else:
                state.keys.pop(action.address or "", None)

        self.committer.commit(forget, key=action.address)


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
