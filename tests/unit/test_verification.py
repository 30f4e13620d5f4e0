"""The verification engine's choices that need no cloud: which versions are proven, the
challenge, and how results are shown."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyplan.diagnostics import DiagnosticsError
from keyplan.provider import ProofMethod, Verdict
from keyplan.state.model import ImportedVersion, KeyRecord, MaterialVersion, State, TargetRecord
from keyplan.verification import (
    VerificationReport,
    VerificationResult,
    Verifier,
    material_drift,
    render_text,
    summarize,
    tasks_for,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def imported(version: int, remote: str) -> ImportedVersion:
    return ImportedVersion(material_version=version, remote_version_id=remote, imported_at=NOW)


def state() -> State:
    materials = [MaterialVersion(version=v, handle=f"h{v}", fingerprint=f"kcv:{v}", created_at=NOW) for v in (1, 2)]
    return State(
        keys={
            "key.a": KeyRecord(
                address="key.a",
                algorithm="AES_256",
                usage="encrypt",
                source="software.local",
                materials=materials,
                targets={
                    # v1 imported twice (a re-import): proven once, as its latest import
                    "gcp.main": TargetRecord(remote_id="k1", imports=[imported(1, "1"), imported(2, "2"), imported(1, "1b")]),
                    "aws.main": TargetRecord(remote_id="k2", imports=[imported(1, "m1")], deletion_date=NOW),
                    "azure.hsm": TargetRecord(remote_id="k3", exists_remotely=False),
                },
            )
        }
    )


def test_every_imported_version_of_live_targets_is_a_task() -> None:
    tasks = tasks_for(state())
    assert [(t.target, t.material_version, t.remote_version_id) for t in tasks] == [
        ("gcp.main", 1, "1b"),
        ("gcp.main", 2, "2"),
    ]


def test_unknown_addresses_are_a_diagnostic() -> None:
    with pytest.raises(DiagnosticsError) as raised:
        tasks_for(state(), ["key.b"])
    assert "No key key.b in state" in raised.value.diagnostics.errors[0].summary


def result(verdict: Verdict, detail: str = "why") -> VerificationResult:
    return VerificationResult(
        address="key.a",
        target="gcp.main",
        remote_id="k1\x1b[31m",
        remote_version_id="1",
        material_version=1,
        fingerprint="kcv:1",
        method=ProofMethod.MAC,
        verdict=verdict,
        detail=detail,
    )


def test_text_escapes_cloud_values_and_counts_verdicts() -> None:
    results = [result(Verdict.PROVEN), result(Verdict.MISMATCH), result(Verdict.CANNOT_PROVE, "refused\n")]
    report = VerificationReport(verified_at=NOW, results=results, summary=summarize(results, []))
    text = render_text(report)
    assert "\x1b" not in text
    assert "1 proven, 1 mismatch, 1 cannot prove" in text
    assert [d.kind.value for d in material_drift(report)] == ["material_mismatch"]


def test_each_run_has_its_own_challenge() -> None:
    first = Verifier(None, state())  # type: ignore[arg-type] # no session is opened to make one
    second = Verifier(None, state())  # type: ignore[arg-type]
    assert len(first.challenge) == 32 and first.challenge != second.challenge
