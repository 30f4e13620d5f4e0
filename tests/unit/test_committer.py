"""State as apply goes: every commit is durable when it returns (journal lines, group-committed),
the journal is folded into the state file at the end, and an interrupted apply's journal is
replayed by the next read."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyplan.apply.committer import StateCommitter
from keyplan.diagnostics import DiagnosticsError
from keyplan.state import KeyRecord, LocalBackend, MaterialVersion, State, StateError, StateErrorKind


def _record(address: str) -> KeyRecord:
    return KeyRecord(
        address=address,
        algorithm="AES_256",
        usage="encrypt",
        source="software.s",
        materials=[MaterialVersion(version=1, handle="h", fingerprint="kcv:00", created_at=datetime.now(UTC))],
    )


def test_every_commit_is_durable_when_it_returns(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    committer = StateCommitter(backend, State())
    seen_on_disk: list[bool] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        address = f"key.k{n}"
        committer.commit(lambda state: state.keys.__setitem__(address, _record(address)), key=address)
        on_disk = backend.read()  # a fresh reader: state file plus journal
        with lock:
            seen_on_disk.append(on_disk is not None and address in on_disk.keys)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen_on_disk == [True] * 64
    assert (tmp_path / "s.json.journal").exists() and not (tmp_path / "s.json").exists()
    assert 1 <= committer.writes <= 64, "appends are shared between concurrent commits"
    committer.finish()
    assert not (tmp_path / "s.json.journal").exists()
    final = backend.read()
    assert final is not None and len(final.keys) == 64 and final.serial == 64


def test_an_interrupted_apply_is_replayed_and_a_torn_last_line_ignored(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    state = State()
    backend.write(state)  # serial 1 on disk
    committer = StateCommitter(backend, state)
    committer.commit(lambda s: s.keys.__setitem__("key.a", _record("key.a")), key="key.a")
    committer.commit(lambda s: s.keys.__setitem__("key.b", _record("key.b")), key="key.b")
    committer.commit(lambda s: s.keys.pop("key.a"), key="key.a")
    with open(tmp_path / "s.json.journal", "ab") as journal:
        journal.write(b'{"serial": 5, "lineage": "')  # a crash in the middle of an append
    replayed = backend.read()
    assert replayed is not None and sorted(replayed.keys) == ["key.b"] and replayed.serial == 4
    backend.write(replayed)
    assert not (tmp_path / "s.json.journal").exists()
    assert backend.read().serial == 5  # type: ignore[union-attr]


def test_a_journal_of_another_state_is_refused(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    other = StateCommitter(backend, State(lineage="other"))
    other.commit(lambda s: s.keys.__setitem__("key.a", _record("key.a")), key="key.a")
    (tmp_path / "s.json").write_text(State(lineage="mine").model_dump_json())
    with pytest.raises(DiagnosticsError, match="another state"):
        backend.read()


def test_finishing_an_apply_that_changed_nothing_writes_nothing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json").store()
    StateCommitter(backend, State()).finish()
    assert not (tmp_path / "s.json").exists()


def test_deferred_commits_free_the_thread_and_complete_once_durable(tmp_path: Path) -> None:
    store = LocalBackend(tmp_path / "s.json").store()
    committer = StateCommitter(store, State())
    committer.defer_durability()
    futures = []
    for n in range(20):
        committer.commit(lambda s, a=f"key.k{n}": s.keys.__setitem__(a, _record(a)), key=f"key.k{n}")
        future = committer.durability()
        assert future is not None
        futures.append(future)
    assert committer.durability() is None, "each future is handed out once"
    for future in futures:
        future.result(timeout=10)
    durable = LocalBackend(tmp_path / "s.json").store().read()
    assert durable is not None and len(durable.keys) == 20, "a completed future means the line is in the journal"
    committer.finish()
    assert not (tmp_path / "s.json.journal").exists()


def test_a_failed_journal_append_fails_the_actions_waiting_on_it(tmp_path: Path) -> None:
    store = LocalBackend(tmp_path / "s.json").store()

    def unreachable(*append: object) -> None:
        raise StateError(StateErrorKind.UNREACHABLE, "Cannot reach the state store", "connection dropped")

    store.backend.append_journal = unreachable  # type: ignore[method-assign,assignment]  # the store itself fails
    committer = StateCommitter(store, State())
    committer.defer_durability()
    committer.commit(lambda s: s.keys.__setitem__("key.a", _record("key.a")), key="key.a")
    future = committer.durability()
    assert future is not None
    with pytest.raises(StateError, match="Cannot reach"):
        future.result(timeout=10)
    committer.commit(lambda s: s.keys.__setitem__("key.b", _record("key.b")), key="key.b")
    later = committer.durability()
    assert later is not None and isinstance(later.exception(timeout=10), StateError)
