"""The state-backend conformance suite: what every `StateBackend` must do, checked against a
real store with the same test code for every backend.

Subclass `StateBackendConformance` and provide a `harness` fixture returning a
`BackendHarness` for a fresh, empty store (its own bucket, database, directory). Each
`harness.open()` is a new backend instance with its own connections, as another keyplan process
would have; the kill test runs a real child process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyplan.apply.audit import AuditLog, read_audit, verify_chain
from keyplan.apply.committer import StateCommitter
from keyplan.state.backend import AuditTrail, LockInfo, StateBackend, StateError, StateErrorKind
from keyplan.state.model import KeyRecord, MaterialVersion, State
from keyplan.state.store import StateStore
from keyplan.state.workspaces import open_backend


def _no_tampering(change: Callable[[AuditTrail], AuditTrail]) -> None:
    pytest.skip("this backend's harness cannot rewrite its stored audit trail")


def _cannot_lose(workspace: str) -> None:
    pytest.skip("this backend's harness cannot delete a state document behind keyplan's back")


@dataclass
class BackendHarness:
    kind: str
    attributes: dict[str, object]
    working_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # what a process needs in its environment
    # Rewrites the stored audit trail behind keyplan's back (entries in order, head record), as
    # someone with write access to the store could: how the suite checks tampering is found.
    rewrite_audit: Callable[[Callable[[AuditTrail], AuditTrail]], None] = _no_tampering
    # Deletes a workspace's state document behind keyplan's back (a mistaken delete of the file,
    # object or row): how the suite checks a lost state is told from a new one.
    lose_state: Callable[[str], None] = _cannot_lose
    _opened: list[StateBackend] = field(default_factory=list)

    def open(self) -> StateBackend:
        saved = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        try:
            backend = open_backend(self.kind, self.attributes, self.working_dir)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self._opened.append(backend)
        return backend

    def close(self) -> None:
        while self._opened:
            self._opened.pop().close()


def record(address: str, fingerprint: str = "kcv:00") -> KeyRecord:
    return KeyRecord(
        address=address,
        algorithm="AES_256",
        usage="encrypt",
        source="software.s",
        materials=[MaterialVersion(version=1, handle="h", fingerprint=fingerprint, created_at=datetime.now(UTC))],
    )


# A keyplan-like process: takes the lock, commits mutations one by one through the journal, says
# how far it got after each, and waits to be killed.
_CHILD = """
import json, sys, time
from keyplan.apply.committer import StateCommitter
from keyplan.state.store import StateStore
from keyplan.state.workspaces import open_backend
from keyplan.testing.state_suite import record
kind, attributes, working_dir, count = json.loads(sys.argv[1])
store = StateStore(open_backend(kind, attributes, __import__("pathlib").Path(working_dir)), "default")
info = store.acquire("apply", timeout=30)
state = store.read()
committer = StateCommitter(store, state)
for n in range(count):
    address = f"key.k{n}"
    committer.commit(lambda s, a=address: s.keys.__setitem__(a, record(a)), key=address)
    print(json.dumps({"lock": info.id, "done": n + 1}), flush=True)
time.sleep(600)
"""


class StateBackendConformance:
    @pytest.fixture
    def harness(self) -> Iterator[BackendHarness]:
        raise NotImplementedError("a backend's conformance test provides the harness fixture")

    # -- documents --------------------------------------------------------------------------------

    def test_a_workspace_never_written_reads_as_nothing(self, harness: BackendHarness) -> None:
        stored = harness.open().read("default")
        assert stored.data is None and stored.version is None and stored.journal == ()

    def test_a_state_deleted_behind_keyplans_back_leaves_a_previous_copy(self, harness: BackendHarness) -> None:
        """A missing state beside its previous copy is a lost state (keyplan plan refuses to start
        a new lineage over it); a workspace never written, or written once, has none to show."""
        backend = harness.open()
        assert backend.previous_copy("default") is None
        version = backend.write("default", b'{"n": 1}', None)
        backend.write("default", b'{"n": 2}', version)
        backend.write("other", b'{"n": 1}', None)
        harness.lose_state("default")
        reader = harness.open()
        assert reader.read("default").data is None
        copy = reader.previous_copy("default")
        assert copy is not None and copy.where and copy.restore
        assert reader.previous_copy("never-written") is None

    def test_writes_are_compare_and_swap_on_the_version_read(self, harness: BackendHarness) -> None:
        first, second = harness.open(), harness.open()
        v1 = first.write("default", b'{"n": 1}', None)
        assert second.read("default").version == v1
        v2 = first.write("default", b'{"n": 2}', v1)
        assert v2 != v1
        with pytest.raises(StateError) as caught:
            second.write("default", b'{"n": "lost"}', v1)
        assert caught.value.kind is StateErrorKind.CONFLICT
        assert "plan" in caught.value.detail
        stored = second.read("default")
        assert stored.data == b'{"n": 2}' and stored.version == v2

    def test_only_one_of_two_creators_wins(self, harness: BackendHarness) -> None:
        first, second = harness.open(), harness.open()
        first.write("default", b'{"who": "first"}', None)
        with pytest.raises(StateError) as caught:
            second.write("default", b'{"who": "second"}', None)
        assert caught.value.kind is StateErrorKind.CONFLICT
        assert first.read("default").data == b'{"who": "first"}'

    def test_journal_groups_come_back_in_order_and_a_write_drops_them(self, harness: BackendHarness) -> None:
        backend = harness.open()
        version = backend.write("default", b"{}", None)
        for sequence in (1, 2, 10, 11):
            backend.append_journal("default", sequence, f"group {sequence}\n".encode())
        assert b"".join(harness.open().read("default").journal) == b"group 1\ngroup 2\ngroup 10\ngroup 11\n"
        backend.write("default", b"{}", version)
        assert harness.open().read("default").journal == ()

    def test_every_commit_of_an_apply_is_readable_by_another_process_when_it_returns(
        self, harness: BackendHarness
    ) -> None:
        store = StateStore(harness.open())
        state = State()
        store.write(state)
        committer = StateCommitter(store, state)
        seen: list[bool] = []
        guard = threading.Lock()

        def worker(n: int) -> None:
            address = f"key.k{n}"
            committer.commit(lambda s: s.keys.__setitem__(address, record(address)), key=address)
            other = StateStore(harness.open()).read()
            with guard:
                seen.append(other is not None and address in other.keys)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == [True] * 24
        assert committer.writes < 24 + 1, "concurrent commits share journal appends"
        committer.finish()
        final_store = StateStore(harness.open())
        final = final_store.read()
        assert final is not None and len(final.keys) == 24 and final.serial == 25
        assert not final_store.has_journal, "the whole-state write folded the journal"

    # -- locks ------------------------------------------------------------------------------------

    def test_a_held_lock_is_refused_to_others_with_its_holder(self, harness: BackendHarness) -> None:
        holder, other = harness.open(), harness.open()
        info = LockInfo.for_this_process("apply")
        assert holder.try_lock(info) is None
        refused_by = other.try_lock(LockInfo.for_this_process("plan"))
        assert refused_by is not None
        assert (refused_by.id, refused_by.operation, refused_by.who, refused_by.host, refused_by.pid) == (
            info.id, "apply", info.who, info.host, info.pid,
        )
        assert abs((refused_by.created - info.created).total_seconds()) < 1
        assert other.lock_holder("default") == refused_by
        other.unlock("default", "not-the-holder")
        assert holder.lock_holder("default") is not None, "unlock with another id leaves the lock"
        holder.unlock("default", info.id)
        assert other.try_lock(LockInfo.for_this_process("plan")) is None

    def test_lock_timeout_waits_for_the_holder(self, harness: BackendHarness) -> None:
        holder, waiter = StateStore(harness.open()), StateStore(harness.open())
        held = holder.acquire("apply")
        releaser = threading.Timer(0.5, holder.release, args=(held,))
        releaser.start()
        try:
            got = waiter.acquire("plan", timeout=20)
        finally:
            releaser.join()
        assert got.operation == "plan" and waiter.current_lock() is not None
        assert waiter.current_lock().id == got.id  # type: ignore[union-attr]

    def test_a_refused_lock_says_who_holds_it_and_how_to_force_unlock(self, harness: BackendHarness) -> None:
        holder, other = StateStore(harness.open()), StateStore(harness.open())
        held = holder.acquire("apply")
        with pytest.raises(StateError) as caught:
            other.acquire("plan")
        assert caught.value.kind is StateErrorKind.LOCKED
        assert held.id in caught.value.detail and "apply" in caught.value.detail
        assert f"keyplan force-unlock {held.id}" in caught.value.detail
        assert held.who in caught.value.detail and held.created.isoformat(timespec="seconds") in caught.value.detail

    def test_locks_are_per_workspace(self, harness: BackendHarness) -> None:
        first, second = harness.open(), harness.open()
        assert first.try_lock(LockInfo.for_this_process("apply", "dev")) is None
        assert second.try_lock(LockInfo.for_this_process("apply", "prod")) is None
        assert second.try_lock(LockInfo.for_this_process("apply", "dev")) is not None

    def test_force_unlock_from_another_process(self, harness: BackendHarness) -> None:
        holder, other = StateStore(harness.open()), StateStore(harness.open())
        held = holder.acquire("apply")
        assert other.force_unlock(held.id).id == held.id
        got = other.acquire("plan", timeout=10)
        assert other.current_lock() is not None and other.current_lock().id == got.id  # type: ignore[union-attr]

    # -- workspaces ----------------------------------------------------------------------------------

    def test_workspaces_are_listed_kept_apart_and_deleted(self, harness: BackendHarness) -> None:
        backend = harness.open()
        assert backend.workspaces() == ["default"]
        backend.write("default", b'{"w": "default"}', None)
        backend.write("dev", b'{"w": "dev"}', None)
        backend.append_journal("staging", 1, b"line\n")
        assert harness.open().workspaces() == ["default", "dev", "staging"]
        assert backend.read("dev").data == b'{"w": "dev"}'
        assert backend.describe("dev") != backend.describe("default")
        backend.delete_workspace("dev")
        backend.delete_workspace("staging")
        assert harness.open().workspaces() == ["default"]
        assert backend.read("dev").data is None and backend.read("default").data == b'{"w": "default"}'

    # -- a killed apply --------------------------------------------------------------------------------

    def test_a_killed_apply_loses_no_finished_mutation_and_its_lock_can_be_cleared(
        self, harness: BackendHarness
    ) -> None:
        StateStore(harness.open()).write(State())
        arguments = json.dumps([harness.kind, harness.attributes, str(harness.working_dir), 5])
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, arguments],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **harness.env},
        )
        try:
            assert child.stdout is not None
            progress = {}
            for line in child.stdout:
                progress = json.loads(line)
                if progress["done"] == 5:
                    break
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
        store = StateStore(harness.open())
        recovered = store.read()
        assert recovered is not None and sorted(recovered.keys) == [f"key.k{n}" for n in range(5)]
        if type(store.backend).locks_outlive_their_holder:
            held = store.current_lock()
            assert held is not None and held.id == progress["lock"] and held.pid == child.pid
            with pytest.raises(StateError):
                store.acquire("apply")
            store.force_unlock(held.id)
        info = store.acquire("apply", timeout=10)
        try:
            store.write(recovered)
        finally:
            store.release(info)
        after = StateStore(harness.open())
        final = after.read()
        assert final is not None and len(final.keys) == 5 and not after.has_journal

    # -- the audit trail ----------------------------------------------------------------------------

    def _audited(self, harness: BackendHarness, entries: int = 5) -> StateBackend:
        backend = harness.open()
        log = AuditLog(backend, plan_digest="sha256:plan", approvers=["alice", "bob"], workspace="dev")
        for n in range(1, entries + 1):
            log.record({"action": "update_key", "address": f"key.k{n}", "target": "cloud.main", "outcome": "ok"})
        return backend

    def test_the_audit_tail_holds_the_last_appends_in_order(self, harness: BackendHarness) -> None:
        """`read_audit_tail(n)`: at least the entries of the last n appends, a suffix of the trail
        (what the plan after an interrupted apply reads to find its unfinished creations)."""
        backend = self._audited(harness, entries=6)  # one record per append
        whole = harness.open().read_audit().entries
        tail = harness.open().read_audit_tail(2).entries
        assert len(tail) >= 2 and tuple(whole[-len(tail):]) == tuple(tail)
        assert harness.open().read_audit_tail(100).entries == whole
        backend.close()

    def test_an_empty_audit_trail_reads_as_nothing(self, harness: BackendHarness) -> None:
        trail = harness.open().read_audit()
        assert (trail.entries, trail.head) == ((), None)
        assert verify_chain(trail) == (0, [])

    def test_audit_entries_chain_and_carry_plan_approvers_and_workspace(self, harness: BackendHarness) -> None:
        self._audited(harness)
        trail = harness.open().read_audit()
        assert verify_chain(trail) == (5, [])
        entries = read_audit(trail)
        assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
        assert [e["address"] for e in entries] == [f"key.k{n}" for n in range(1, 6)]
        assert all(e["plan"] == "sha256:plan" and e["approvers"] == ["alice", "bob"] for e in entries)
        assert {e["workspace"] for e in entries} == {"dev"}
        AuditLog(harness.open(), plan_digest="sha256:other").record({"action": "export", "outcome": "ok"})
        assert verify_chain(harness.open().read_audit()) == (6, []), "a second writer continues the chain"

    def test_concurrent_writers_never_fork_the_audit_chain(self, harness: BackendHarness) -> None:
        logs = [AuditLog(harness.open(), plan_digest=f"sha256:{n}") for n in range(3)]

        def write(log: AuditLog) -> None:
            for n in range(8):
                log.record({"action": "update_key", "address": f"key.k{n}", "outcome": "ok"})

        threads = [threading.Thread(target=write, args=(log,)) for log in logs for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        trail = harness.open().read_audit()
        assert verify_chain(trail) == (48, [])
        assert [e["seq"] for e in read_audit(trail)] == list(range(1, 49))

    @pytest.mark.parametrize(
        ("tampering", "where", "says"),
        [
            ("edit", [3], "edited"),
            ("edit-last", [5], "last entry was edited"),
            ("remove", [3], "entry 4 where entry 3 was due"),
            ("reorder", [2, 3], "reordered"),
            ("truncate", [3], "cut off the end"),
            ("drop-head", [0], "truncation cannot be ruled out"),
        ],
    )
    def test_tampering_with_the_audit_trail_is_found_and_where(
        self, harness: BackendHarness, tampering: str, where: list[int], says: str
    ) -> None:
        self._audited(harness)

        def tamper(trail: AuditTrail) -> AuditTrail:
            entries = list(trail.entries)
            if tampering.startswith("edit"):
                index = -1 if tampering == "edit-last" else 1
                entry = json.loads(entries[index])
                entry["address"] = "key.someone-else"
                entries[index] = json.dumps(entry, sort_keys=True).encode()
            elif tampering == "remove":
                del entries[2]
            elif tampering == "reorder":
                entries[1], entries[2] = entries[2], entries[1]
            elif tampering == "truncate":
                entries = entries[:3]
            else:
                return replace(trail, head=None)
            return replace(trail, entries=tuple(entries))

        harness.rewrite_audit(tamper)
        _, problems = verify_chain(harness.open().read_audit())
        assert [p.line for p in problems][: len(where)] == where, problems
        assert any(says in p.problem for p in problems), problems
