"""The local state backend: atomic writes with a backup, the lock and its diagnostics, reading
corrupt or future states, and upgrades from older formats."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from keyplan.diagnostics import DiagnosticsError
from keyplan.state import FORMAT_VERSION, LocalBackend, State
from keyplan.state.local import parse_state


def test_writes_are_atomic_and_keep_the_previous_copy(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    state = State()
    backend.write(state)
    first = (tmp_path / "s.json").read_bytes()
    backend.write(state)
    assert json.loads((tmp_path / "s.json.backup").read_bytes()) == json.loads(first)
    assert backend.read().serial == 2  # type: ignore[union-attr]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.json.backup"], "no temp files left"
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600


def test_a_held_lock_names_its_holder_and_how_to_remove_it(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    held = backend.acquire("apply")
    with pytest.raises(DiagnosticsError) as caught:
        backend.acquire("plan")
    text = str(next(iter(caught.value.diagnostics)))
    assert held.id in text and "apply" in text and f"keyplan force-unlock {held.id}" in text
    backend.release(held)
    backend.release(backend.acquire("plan"))


def test_lock_timeout_waits_for_the_holder(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    held = backend.acquire("apply")
    releaser = threading.Timer(0.3, backend.release, args=(held,))
    releaser.start()
    got = backend.acquire("plan", timeout=10)
    releaser.join()
    assert got.operation == "plan"
    assert backend.current_lock() == got


def test_force_unlock_checks_the_id(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    held = backend.acquire("apply")
    with pytest.raises(DiagnosticsError, match="Lock ID does not match"):
        backend.force_unlock("not-the-id")
    assert backend.force_unlock(held.id).id == held.id
    assert backend.current_lock() is None
    with pytest.raises(DiagnosticsError, match="not locked"):
        backend.force_unlock(held.id)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{truncated", "not valid JSON"),
        (b"[]", "not a keyplan state"),
        (b'{"serial": 1}', "no format version"),
        (b'{"format_version": 99}', "newer keyplan"),
        (b'{"format_version": 1, "serial": "x", "lineage": "l", "keys": {}}', "corrupt"),
    ],
)
def test_unreadable_states_are_diagnostics_that_point_at_the_backup(content: bytes, message: str) -> None:
    with pytest.raises(DiagnosticsError) as caught:
        parse_state(content, "s.json")
    diagnostic = next(iter(caught.value.diagnostics))
    assert message in f"{diagnostic.summary} {diagnostic.detail}"


def test_format_0_is_upgraded_one_version_at_a_time() -> None:
    old = {"format_version": 0, "serial": 4, "lineage": "abc", "keyplan_version": "0.0.1", "resources": {}}
    state = parse_state(json.dumps(old).encode(), "s.json")
    assert state.format_version == FORMAT_VERSION and state.serial == 4 and state.lineage == "abc"
    assert state.keys == {} and state.prerequisites == {}


def test_a_lock_timeout_gives_up_and_says_how_long_it_waited(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    backend.acquire("apply")
    with pytest.raises(DiagnosticsError) as caught:
        backend.acquire("plan", timeout=0.2)
    assert "after waiting 0.2s" in next(iter(caught.value.diagnostics)).detail


def test_a_lock_file_nobody_holds_is_no_lock(tmp_path: Path) -> None:
    """What a killed keyplan leaves: the lock file with its holder's record, but no OS lock."""
    from keyplan.state.backend import LockInfo

    left = LockInfo.for_this_process("apply").model_copy(update={"pid": 999_999_999, "id": "left-by-a-crash"})
    (tmp_path / "s.json.lock").write_text(left.model_dump_json())
    backend = LocalBackend(tmp_path / "s.json").store()
    assert backend.current_lock() is None
    with pytest.raises(DiagnosticsError, match="not locked"):
        backend.force_unlock("left-by-a-crash")
    held = backend.acquire("plan")
    assert backend.current_lock() == held and LocalBackend(tmp_path / "s.json").store().current_lock() == held
    backend.release(held)
    assert not (tmp_path / "s.json.lock").exists()
