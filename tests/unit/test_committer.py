"""Group-committed state writes: every mutation is on disk when commit returns, and concurrent
mutations share writes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from keyplan.apply.committer import StateCommitter
from keyplan.state import KeyRecord, LocalBackend, MaterialVersion, State


def test_every_commit_is_durable_when_it_returns(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "s.json")
    committer = StateCommitter(backend, State())
    seen_on_disk: list[bool] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        address = f"key.k{n}"

        def add(state: State) -> None:
            state.keys[address] = KeyRecord(
                address=address,
                algorithm="AES_256",
                usage="encrypt",
                source="software.s",
                materials=[MaterialVersion(version=1, handle="h", fingerprint="kcv:00", created_at=datetime.now(UTC))],
            )

        committer.commit(add)
        on_disk = backend.read()
        with lock:
            seen_on_disk.append(on_disk is not None and address in on_disk.keys)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen_on_disk == [True] * 64
    final = backend.read()
    assert final is not None and len(final.keys) == 64
    assert final.serial == committer.writes
    assert 1 <= committer.writes <= 64
