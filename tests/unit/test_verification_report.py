"""What `keyplan verify` concludes from its results: when a verification is complete (exit 0),
which results make it incomplete (exit 1) and which diagnostics say why, and a fresh challenge
for every run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from keyplan.provider import ProofMethod, Verdict
from keyplan.verification import (
    CHALLENGE_BYTES,
    VerificationReport,
    VerificationResult,
    Verifier,
    render_text,
    summarize,
    unproven_diagnostics,
)


def result(verdict: Verdict, *, by_design: bool = False, address: str = "key.a", detail: str = "why") -> VerificationResult:
    return VerificationResult(
        address=address,
        target="cloud.main",
        remote_id="remote/1",
        remote_version_id="1",
        material_version=1,
        fingerprint="aes:0011223344",
        method=ProofMethod.NONE if verdict is Verdict.CANNOT_PROVE else ProofMethod.MAC,
        verdict=verdict,
        detail=detail,
        by_design=by_design,
    )


def report(*results: VerificationResult, errors: Any = ()) -> VerificationReport:
    return VerificationReport(
        verified_at=datetime.now(UTC), results=list(results), errors=list(errors), summary=summarize(list(results), list(errors))
    )


def test_proven_and_unprovable_by_design_is_complete() -> None:
    done = report(result(Verdict.PROVEN), result(Verdict.CANNOT_PROVE, by_design=True, address="key.b"))
    assert done.complete and not done.mismatches and not done.unproven
    assert done.summary.cannot_prove == 1 and done.summary.cannot_prove_by_design == 1
    assert unproven_diagnostics(done) == []
    assert "(no proof exists for this kind of key)" in render_text(done)
    assert "1 cannot prove (1 by design)" in render_text(done)


def test_a_refused_proof_makes_it_incomplete_with_a_diagnostic_saying_why() -> None:
    refused = report(result(Verdict.PROVEN), result(Verdict.CANNOT_PROVE, address="key.b", detail="the key is disabled"))
    assert not refused.complete
    assert [r.address for r in refused.unproven] == ["key.b"]
    (diagnostic,) = unproven_diagnostics(refused)
    assert diagnostic.summary == "Cannot prove material v1 of key.b at cloud.main"
    assert diagnostic.detail.startswith("the key is disabled. Nothing was changed.")


def test_a_mismatch_is_not_complete_and_is_listed() -> None:
    mixed = report(result(Verdict.MISMATCH), result(Verdict.CANNOT_PROVE, by_design=True, address="key.b"))
    assert not mixed.complete and [r.address for r in mixed.mismatches] == ["key.a"]


def test_a_proof_not_tried_makes_it_incomplete() -> None:
    from keyplan.diagnostics import Diagnostic, Severity

    error = Diagnostic(severity=Severity.ERROR, summary="Cannot verify key.a at cloud.main: unreachable")
    assert not report(result(Verdict.PROVEN), errors=[error]).complete


def test_every_run_has_a_fresh_random_challenge() -> None:
    from keyplan.state.model import State

    challenges = {Verifier(None, State()).challenge for _ in range(20)}  # type: ignore[arg-type]  # no session needed
    assert len(challenges) == 20
    assert all(len(c) == CHALLENGE_BYTES for c in challenges)
