"""Proofs that each target holds exactly the material its key source holds (`keyplan verify`).

For every key in state, every target and every material version keyplan imported there, the
target's provider proves the remote version holds that material (`Provider.prove_material`),
computing its side through a `MaterialWitness` bound to the source (the material never leaves
it). The core only orchestrates: which versions, a fresh random challenge per run, retries of
transient errors, and the report. Which proof a cloud allows is the provider's to say.

Verdicts: `proven`, `mismatch` (the target holds other material), `cannot_prove` (with the
reason: the cloud offers no proof for this key type, `by_design`, or refused an operation it
needs). Errors that stop a proof from being tried at all (credentials, an unreachable endpoint)
are reported as diagnostics beside the results.

A verification is complete when every version is proven or unprovable by design; the CLI exits 0
then, 2 when any version mismatched, and 1 when it is incomplete (`unproven_diagnostics` says
which proofs were refused and how to let them run).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from keyplan import __version__
from keyplan.algorithms import KeyUsage, get_algorithm
from keyplan.config import key_spec
from keyplan.config.model import Config
from keyplan.diagnostics import Diagnostic, DiagnosticsError, Severity
from keyplan.escaping import for_terminal
from keyplan.limits import DEFAULT_THROTTLE_TIMEOUT
from keyplan.plan.model import Drift, DriftKind
from keyplan.plan.negotiate import negotiate
from keyplan.provider import (
    ErrorKind,
    KeySpec,
    MaterialProof,
    MaterialProofRequest,
    MaterialWitness,
    ProofMethod,
    ProviderError,
    SourceError,
    Verdict,
    WrapOffer,
)
from keyplan.runtime import Session
from keyplan.state.model import ImportedVersion, KeyRecord, State

T = TypeVar("T")

REPORT_FORMAT_VERSION = 1
CHALLENGE_BYTES = 32
_ATTEMPTS = 4


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VerificationResult(_Model):
    """One proof: one material version of one key at one target."""

    address: str
    target: str
    remote_id: str
    remote_version_id: str | None
    material_version: int
    fingerprint: str
    method: ProofMethod
    verdict: Verdict
    detail: str
    by_design: bool = False  # cannot_prove because the cloud offers no proof for this kind of key


class VerificationSummary(_Model):
    proven: int
    mismatch: int
    cannot_prove: int
    cannot_prove_by_design: int  # of cannot_prove: no proof exists for the kind of key (nothing to fix)
    errors: int


class VerificationReport(_Model):
    """The document `keyplan verify -json` prints (schemas/verify.schema.json)."""

    format_version: int = REPORT_FORMAT_VERSION
    keyplan_version: str = __version__
    verified_at: datetime
    results: list[VerificationResult]
    errors: list[Diagnostic] = []
    summary: VerificationSummary

    @property
    def mismatches(self) -> list[VerificationResult]:
        return [r for r in self.results if r.verdict is Verdict.MISMATCH]

    @property
    def unproven(self) -> list[VerificationResult]:
        """Versions that could have been proven but were not: an operation refused, a key unusable
        now, a configuration block missing."""
        return [r for r in self.results if r.verdict is Verdict.CANNOT_PROVE and not r.by_design]

    @property
    def complete(self) -> bool:
        """Every version proven, or unprovable by design, and every proof tried."""
        return not self.errors and all(
            r.verdict is Verdict.PROVEN or (r.verdict is Verdict.CANNOT_PROVE and r.by_design) for r in self.results
        )


def summarize(results: list[VerificationResult], errors: list[Diagnostic]) -> VerificationSummary:
    def count(verdict: Verdict) -> int:
        return sum(1 for r in results if r.verdict is verdict)

    return VerificationSummary(
        proven=count(Verdict.PROVEN),
        mismatch=count(Verdict.MISMATCH),
        cannot_prove=count(Verdict.CANNOT_PROVE),
        cannot_prove_by_design=sum(1 for r in results if r.verdict is Verdict.CANNOT_PROVE and r.by_design),
        errors=len(errors),
    )


class ProofTask(_Model):
    """One proof to run."""

    address: str
    target: str
    remote_id: str
    material_version: int
    remote_version_id: str | None
    expires_at: datetime | None = None


def tasks_for(state: State, addresses: Iterable[str] = ()) -> list[ProofTask]:
    """Every imported version of every key (or of `addresses`) at every target still in use."""
    wanted = list(addresses)
    unknown = [a for a in wanted if a not in state.keys]
    if unknown:
        known = ", ".join(sorted(state.keys)[:5]) or "none"
        raise DiagnosticsError.single(
            f"No key {unknown[0]} in state",
            f"keyplan verify proves keys keyplan imported. Keys in state include: {known}. Quote addresses for "
            "your shell, e.g. 'key.app[\"payments\"]'.",
        )
    tasks = []
    for address in sorted(wanted or state.keys):
        record = state.keys[address]
        for target, target_record in sorted(record.targets.items()):
            if not target_record.exists_remotely or target_record.deletion_date is not None:
                continue
            for imported in _latest_per_material(target_record.imports):
                tasks.append(
                    ProofTask(
                        address=address,
                        target=target,
                        remote_id=target_record.remote_id,
                        material_version=imported.material_version,
                        remote_version_id=imported.remote_version_id or None,
                        expires_at=imported.expires_at,
                    )
                )
    return tasks


def _latest_per_material(imports: list[ImportedVersion]) -> list[ImportedVersion]:
    latest: dict[int, ImportedVersion] = {}
    for entry in imports:
        latest[entry.material_version] = entry
    return [latest[v] for v in sorted(latest)]


class Verifier:
    """Runs proofs in one session; one random challenge per run."""

    def __init__(self, session: Session, state: State, *, now: datetime | None = None) -> None:
        self.session = session
        self.state = state
        self.now = now or datetime.now(UTC)
        self.challenge = secrets.token_bytes(CHALLENGE_BYTES)

    def run(self, tasks: list[ProofTask], parallelism: int = 10) -> VerificationReport:
        results: list[VerificationResult] = []
        errors: list[Diagnostic] = []
        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            for outcome in pool.map(self._attempt, tasks):
                if isinstance(outcome, VerificationResult):
                    results.append(outcome)
                else:
                    errors.append(outcome)
        return VerificationReport(
            verified_at=self.now, results=results, errors=errors, summary=summarize(results, errors)
        )

    def _attempt(self, task: ProofTask) -> VerificationResult | Diagnostic:
        try:
            return self.prove(task)
        except DiagnosticsError as error:
            return error.diagnostics.errors[0]
        except ProviderError as error:
            return Diagnostic(
                severity=Severity.ERROR,
                summary=f"Cannot verify {task.address} at {task.target}: {error.summary}",
                detail=error.detail,
                address=task.address,
            )

    def prove(self, task: ProofTask, *, valid_to: datetime | None = None) -> VerificationResult:
        """One proof. Raises ProviderError when it could not be tried (no credentials,
        unreachable, still throttled after retries); anything the cloud or source refuses is a
        CANNOT_PROVE result."""
        record = self.state.keys[task.address]
        material = record.material(task.material_version)
        if material is None:
            return self._result(task, "", _cannot(f"state has no material v{task.material_version} for this key"))
        if material.fingerprint is None:
            return self._result(
                task,
                "",
                _cannot(
                    f"state holds no fingerprint of material v{task.material_version} yet (a state format upgrade "
                    "dropped it); the next `keyplan apply` recomputes it"
                ),
            )
        missing = _unconfigured(self.session, record.source, task.target)
        if missing:
            return self._result(task, material.fingerprint or "", _cannot(missing))
        spec = self._spec(record)
        source = self.session.source(record.source)
        witness = MaterialWitness(source, material.handle, spec.algorithm, material.fingerprint)
        request = MaterialProofRequest(
            remote_id=task.remote_id,
            address=task.address,
            managed_by=self.state.managed_by,
            key=spec,
            material_version=material.version,
            fingerprint=material.fingerprint,
            remote_version_id=task.remote_version_id,
            challenge=self.challenge,
            offer=self._offer(record, spec, task.target),
            valid_to=valid_to if valid_to is not None else _future(task.expires_at, self.now),
        )
        provider = self.session.provider(task.target)
        proof = self._retrying(lambda: provider.prove_material(request, witness), task)
        return self._result(task, material.fingerprint, proof)

    def _retrying(self, work: Callable[[], MaterialProof], task: ProofTask) -> MaterialProof:
        for attempt in range(_ATTEMPTS):
            try:
                return work()
            except ProviderError as error:
                if error.retryable and attempt + 1 < _ATTEMPTS:
                    time.sleep(min(2.0, 0.1 * 2**attempt) * secrets.SystemRandom().random())
                    continue
                if error.kind in (ErrorKind.AUTH, ErrorKind.UNREACHABLE, ErrorKind.RETRYABLE):
                    raise
                return _cannot(f"{task.target} refused: {error.summary}")
            except SourceError as error:
                if error.retryable and attempt + 1 < _ATTEMPTS:
                    continue
                return _cannot(f"the key source refused: {error.summary}")
        raise AssertionError("unreachable")

    def _spec(self, record: KeyRecord) -> KeySpec:
        configured = self.session.config.keys.get(record.address)
        if configured is not None:
            return key_spec(configured)
        algorithm = get_algorithm(record.algorithm)
        if algorithm is None:
            raise DiagnosticsError.single(
                f"State names an unknown algorithm {record.algorithm!r}", address=record.address
            )
        return KeySpec(address=record.address, algorithm=algorithm, usage=KeyUsage(record.usage))

    def _offer(self, record: KeyRecord, spec: KeySpec, target: str) -> WrapOffer | None:
        plugin, settings = self.session.provider_plugin(target)
        try:
            capabilities = self.session.source(record.source).capabilities()
        except SourceError:
            return None
        chosen = negotiate(
            spec.algorithm, plugin.wrap_offers(settings, spec.algorithm), capabilities, source=record.source, target=target
        )
        return chosen.offer

    @staticmethod
    def _result(task: ProofTask, fingerprint: str, proof: MaterialProof) -> VerificationResult:
        return VerificationResult(
            address=task.address,
            target=task.target,
            remote_id=task.remote_id,
            remote_version_id=proof.remote_version_id or task.remote_version_id,
            material_version=task.material_version,
            fingerprint=fingerprint,
            method=proof.method,
            verdict=proof.verdict,
            detail=proof.detail,
            by_design=proof.verdict is Verdict.CANNOT_PROVE and proof.by_design,
        )


def _unconfigured(session: Session, source: str, target: str) -> str | None:
    """Why a proof needs a block the configuration no longer has, or None."""
    if target not in session.config.providers:
        return f"the configuration has no provider block {target} any more"
    if source not in session.config.sources:
        return f"the configuration has no source block {source} any more"
    return None


def _cannot(reason: str) -> MaterialProof:
    return MaterialProof(verdict=Verdict.CANNOT_PROVE, method=ProofMethod.NONE, detail=reason)


def _future(moment: datetime | None, now: datetime) -> datetime | None:
    return moment if moment is not None and moment > now else None


def verify_state(
    session: Session, state: State, addresses: Iterable[str] = (), *, parallelism: int = 10
) -> VerificationReport:
    """Every proof for `addresses` (all keys without), each recorded in the audit log."""
    report = Verifier(session, state).run(tasks_for(state, addresses), parallelism)
    record_in_audit_log(session.config, report)
    return report


def run_verify(
    config: Config,
    state: State,
    addresses: Iterable[str] = (),
    *,
    parallelism: int = 10,
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT,
) -> VerificationReport:
    """The `keyplan verify` operation: a session over the configuration's plugins, every proof."""
    tasks_for(state, addresses)  # unknown addresses are refused before any plugin opens
    with Session(config, throttle_timeout=throttle_timeout) as session:
        return verify_state(session, state, addresses, parallelism=parallelism)


def record_in_audit_log(config: Config, report: VerificationReport) -> None:
    from keyplan.operations.audit import audit_log

    log = audit_log(config)
    for entry in audit_entries(report):
        log.record(entry)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

_VERDICT_TEXT = {Verdict.PROVEN: "proven", Verdict.MISMATCH: "MISMATCH", Verdict.CANNOT_PROVE: "cannot prove"}


def render_text(report: VerificationReport, *, colour: bool = False) -> str:
    lines = []
    for r in report.results:
        version = f" version {r.remote_version_id}" if r.remote_version_id else ""
        mark = _mark(r.verdict)
        if colour:
            mark = {Verdict.PROVEN: "\x1b[32m", Verdict.MISMATCH: "\x1b[1;31m"}.get(r.verdict, "\x1b[33m") + mark + "\x1b[0m"
        lines.append(
            f"{mark} {_printable(r.address)} @ {r.target}: material v{r.material_version} ({r.fingerprint or 'unknown'})"
        )
        lines.append(f"    {_printable(r.remote_id)}{_printable(version)}")
        verdict = _VERDICT_TEXT[r.verdict] + (" (no proof exists for this kind of key)" if r.by_design else "")
        lines.append(f"    {verdict} by {r.method.value.replace('_', ' ')}: {_printable(r.detail)}")
    s = report.summary
    lines.append("")
    lines.append(
        f"Verified {len(report.results)} imported version(s): {s.proven} proven, {s.mismatch} mismatch, "
        f"{s.cannot_prove} cannot prove"
        + (f" ({s.cannot_prove_by_design} by design)" if s.cannot_prove_by_design else "")
        + (f", {s.errors} not tried (errors below)" if s.errors else "")
        + "."
    )
    return "\n".join(lines) + "\n"


def _mark(verdict: Verdict) -> str:
    return {Verdict.PROVEN: "✓", Verdict.MISMATCH: "✗", Verdict.CANNOT_PROVE: "?"}[verdict]


def _printable(text: str) -> str:
    """Values from the configuration or a cloud, with control characters escaped for a terminal."""
    return for_terminal(text)


def verify_schema() -> dict[str, Any]:
    from keyplan.schemas import with_meta

    return with_meta(
        VerificationReport.model_json_schema(mode="serialization"),
        "verify.schema.json",
        "keyplan verify",
        "The proofs `keyplan verify -json` ran: per key, target and imported version, the proof used and its verdict "
        "(proven, mismatch, cannot_prove with the reason). Nothing derived from material beyond its fingerprint.",
    )


def render_json(report: VerificationReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def audit_entries(report: VerificationReport) -> list[dict[str, object]]:
    """One audit line per proof: what was proven, how, and the verdict (never material)."""
    return [
        {
            "action": "verify_material",
            "address": r.address,
            "target": r.target,
            "remote_id": r.remote_id,
            "outcome": r.verdict.value,
            "detail": f"{r.method.value}: material v{r.material_version} ({r.fingerprint}) "
            f"as {r.remote_version_id or 'current'}",
        }
        for r in report.results
    ]


def warnings_for(report: VerificationReport) -> list[Diagnostic]:
    return [
        Diagnostic(
            severity=Severity.ERROR,
            summary=f"{r.address} at {r.target} does not hold material v{r.material_version}",
            detail=f"{r.detail}. The key at {r.target} ({r.remote_id}) holds other material than {r.fingerprint}: "
            "it was replaced outside keyplan or state is wrong. Do not rely on it; find out how it changed.",
            address=r.address,
        )
        for r in report.mismatches
    ]


def unproven_diagnostics(report: VerificationReport) -> list[Diagnostic]:
    """Why the verification is incomplete: one error per version that could have been proven but
    was not (the reason, and how to let the proof run)."""
    return [
        Diagnostic(
            severity=Severity.ERROR,
            summary=f"Cannot prove material v{r.material_version} of {r.address} at {r.target}",
            detail=f"{r.detail}. Nothing was changed. Once the key is usable for the operation its proof needs (enabled, "
            "with a usage or key operations that allow it) and the configuration has its source and provider blocks, run "
            "`keyplan verify` again.",
            address=r.address,
        )
        for r in report.unproven
    ]


def material_drift(report: VerificationReport) -> list[Drift]:
    """`keyplan drift -verify`: each mismatch as drift of its own kind (the deeper check)."""
    return [
        Drift(
            address=r.address,
            target=r.target,
            kind=DriftKind.MATERIAL_MISMATCH,
            summary=f"holds other material than v{r.material_version}: {r.detail}",
            remote_id=r.remote_id,
            recorded={"material_version": r.material_version, "fingerprint": r.fingerprint},
            live={"proof": r.method.value, "version": r.remote_version_id},
        )
        for r in report.mismatches
    ]
