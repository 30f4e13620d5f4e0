"""The audit trail is a hash chain: each kind of tampering is found, and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyplan.apply.audit import AuditLog, head_path, read_audit, verify_chain


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / ".keyplan" / "audit.jsonl"
    log = AuditLog(path, plan_digest="sha256:plan", approvers=["alice", "bob"])
    for n in range(1, 6):
        log.record({"action": "update_key", "address": f"key.k{n}", "target": "cloud.main", "outcome": "ok"})
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_an_untouched_trail_verifies_and_carries_plan_and_approvers(trail: Path) -> None:
    read, problems = verify_chain(trail)
    assert (read, problems) == (5, [])
    entries = read_audit(trail)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(e["plan"] == "sha256:plan" and e["approvers"] == ["alice", "bob"] for e in entries)


def test_a_second_writer_continues_the_chain(trail: Path) -> None:
    AuditLog(trail, plan_digest="sha256:other").record({"action": "export_byok", "outcome": "ok"})
    assert verify_chain(trail) == (6, [])


def test_an_edited_entry_is_found(trail: Path) -> None:
    content = lines(trail)
    entry = json.loads(content[1])
    entry["address"] = "key.someone-else"
    content[1] = json.dumps(entry, sort_keys=True)
    trail.write_text("\n".join(content) + "\n")
    _, problems = verify_chain(trail)
    assert [p.line for p in problems] == [3]
    assert "edited" in problems[0].problem


def test_an_edited_last_entry_is_found(trail: Path) -> None:
    content = lines(trail)
    content[-1] = content[-1].replace('"ok"', '"failed"')
    trail.write_text("\n".join(content) + "\n")
    _, problems = verify_chain(trail)
    assert len(problems) == 1 and "last entry was edited" in problems[0].problem


def test_a_removed_entry_is_found(trail: Path) -> None:
    content = lines(trail)
    del content[2]
    trail.write_text("\n".join(content) + "\n")
    _, problems = verify_chain(trail)
    assert problems and problems[0].line == 3 and "entry 4 where entry 3 was due" in problems[0].problem


def test_reordered_entries_are_found(trail: Path) -> None:
    content = lines(trail)
    content[1], content[2] = content[2], content[1]
    trail.write_text("\n".join(content) + "\n")
    _, problems = verify_chain(trail)
    assert [p.line for p in problems][:2] == [2, 3]
    assert "reordered" in problems[1].problem


def test_a_truncated_trail_is_found(trail: Path) -> None:
    content = lines(trail)
    trail.write_text("\n".join(content[:3]) + "\n")
    _, problems = verify_chain(trail)
    assert len(problems) == 1 and "cut off the end" in problems[0].problem and "entry 5" in problems[0].problem


def test_a_missing_head_is_reported(trail: Path) -> None:
    head_path(trail).unlink()
    _, problems = verify_chain(trail)
    assert len(problems) == 1 and "truncation cannot be ruled out" in problems[0].problem
