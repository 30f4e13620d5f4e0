"""The software keystore's journal: a generate appends one sealed line (the document is not
written again), a line a crash cut short is ignored and cut off by the next append, the journal
is folded into the document when the source closes, and a keystore of format 1 (no journal) is
migrated on its first write."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keyplan.algorithms import ALGORITHMS
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import WrapMethod, unwrap
from keyplan.provider import GenerateRequest, KeySource, RuntimeContext, SourceError, WrapRequest
from keyplan.testing.sources import wrapping_key_pair
from providers.software import PLUGIN, SoftwareSourceSettings
from providers.software.format import KeystoreDocument, MasterKey, _entry_aad
from providers.software.keystore import Keystore
from providers.software.unlock import WarnOnce

AES = ALGORITHMS["AES_256"]


@pytest.fixture
def passphrase_env() -> Iterator[str]:
    name = f"KEYPLAN_TEST_PASSPHRASE_{uuid.uuid4().hex.upper()}"
    os.environ[name] = "journal passphrase"
    yield name
    os.environ.pop(name, None)


def open_source(working_dir: Path, passphrase_env: str) -> KeySource:
    context = RuntimeContext(
        address="software.main", working_dir=working_dir, data_dir=working_dir / ".keyplan", log=logging.getLogger("keyplan.test")
    )
    return PLUGIN.open(SoftwareSourceSettings(passphrase_env=passphrase_env), context)


def keystore_file(working_dir: Path) -> Path:
    return working_dir / ".keyplan" / "keystore.json"


def journal_file(working_dir: Path) -> Path:
    return working_dir / ".keyplan" / "keystore.json.journal"


def generate(source: KeySource, name: str) -> str:
    return source.generate(GenerateRequest(address=f"key.{name}", version=1, algorithm=AES)).handle


def recovered(source: KeySource, handle: str) -> bytes:
    private_key, spki = wrapping_key_pair()
    method = WrapMethod.RSA_AES_KEY_WRAP_SHA_256
    blob = source.wrap(WrapRequest(handle=handle, algorithm=AES, method=method, wrapping_public_key=spki)).blob
    return unwrap(method, private_key, blob).reveal()


def journal_handles(working_dir: Path) -> list[str]:
    return [json.loads(line)["handle"] for line in journal_file(working_dir).read_bytes().splitlines()]


def test_a_generate_appends_one_line_and_leaves_the_document_as_it_was(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    first = generate(source, "a")
    document = keystore_file(tmp_path).read_bytes()
    identity = keystore_file(tmp_path).stat().st_ino
    later = [generate(source, name) for name in ("b", "c", "d")]

    assert keystore_file(tmp_path).read_bytes() == document
    assert keystore_file(tmp_path).stat().st_ino == identity
    assert json.loads(document)["entries"] == {}
    assert json.loads(document)["format_version"] == 2
    assert journal_handles(tmp_path) == [first, *later]
    assert oct(journal_file(tmp_path).stat().st_mode & 0o777) == "0o600"

    other = open_source(tmp_path, passphrase_env)  # another run reads the journal too
    assert recovered(other, later[-1]) == recovered(source, later[-1])
    other.close()


def test_close_folds_the_journal_into_the_document(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handles = [generate(source, name) for name in ("a", "b")]
    material = recovered(source, handles[1])
    source.close()

    assert not journal_file(tmp_path).exists()
    assert set(json.loads(keystore_file(tmp_path).read_text())["entries"]) == set(handles)
    reopened = open_source(tmp_path, passphrase_env)
    assert recovered(reopened, handles[1]) == material
    reopened.close()


def test_a_line_cut_short_by_a_crash_is_ignored_and_cut_off_by_the_next_append(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    kept = generate(source, "kept")
    cut = generate(source, "cut")
    data = journal_file(tmp_path).read_bytes()
    journal_file(tmp_path).write_bytes(data[: len(data) - 40])  # the second append never finished

    after_crash = open_source(tmp_path, passphrase_env)
    assert after_crash.describe(kept).present
    assert not after_crash.describe(cut).present
    added = generate(after_crash, "after")
    assert journal_handles(tmp_path) == [kept, added]
    assert recovered(after_crash, added)
    after_crash.close()
    assert set(json.loads(keystore_file(tmp_path).read_text())["entries"]) == {kept, added}


def test_a_crash_between_the_fold_and_the_journal_removal_reads_each_entry_once(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handles = [generate(source, name) for name in ("a", "b")]
    journal = journal_file(tmp_path).read_bytes()
    source.close()
    journal_file(tmp_path).write_bytes(journal)  # the document holds both entries, and so does the journal

    reopened = open_source(tmp_path, passphrase_env)
    assert all(reopened.describe(handle).present for handle in handles)
    assert recovered(reopened, handles[0])
    third = generate(reopened, "c")
    reopened.close()
    assert set(json.loads(keystore_file(tmp_path).read_text())["entries"]) == {*handles, third}


def test_a_journal_line_that_contradicts_the_document_is_corruption(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handle = generate(source, "a")
    journal = journal_file(tmp_path).read_bytes()
    source.close()
    line = json.loads(journal)
    line["fingerprint"] = "kcv:" + "00" * 16
    journal_file(tmp_path).write_text(json.dumps(line) + "\n")

    with pytest.raises(SourceError) as raised:
        open_source(tmp_path, passphrase_env).describe(handle)
    assert raised.value.summary == "The software keystore is corrupt"
    assert "journal" in raised.value.detail


def test_a_damaged_complete_journal_line_is_corruption(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handle = generate(source, "a")
    with journal_file(tmp_path).open("ab") as journal:
        journal.write(b'{"handle": "key.b/v1/0", "algorithm": "AES_256"}\n')
    with pytest.raises(SourceError) as raised:
        open_source(tmp_path, passphrase_env).describe(handle)
    assert raised.value.summary == "The software keystore is corrupt"


def _format_1_keystore(working_dir: Path, passphrase_env: str) -> tuple[str, bytes]:
    """A keystore as keyplan wrote it before the journal: format 1, every entry in the document."""
    source = open_source(working_dir, passphrase_env)
    handle = generate(source, "old")
    material = recovered(source, handle)
    source.close()
    document = json.loads(keystore_file(working_dir).read_text())
    document["format_version"] = 1
    keystore_file(working_dir).write_text(json.dumps(document, indent=2))
    return handle, material


def test_a_format_1_keystore_is_read_and_written_as_format_2_before_its_first_journal_line(
    tmp_path: Path, passphrase_env: str
) -> None:
    old, material = _format_1_keystore(tmp_path, passphrase_env)
    source = open_source(tmp_path, passphrase_env)
    assert recovered(source, old) == material
    assert json.loads(keystore_file(tmp_path).read_text())["format_version"] == 1  # reading changes nothing

    new = generate(source, "new")
    document = json.loads(keystore_file(tmp_path).read_text())
    assert document["format_version"] == 2
    assert set(document["entries"]) == {old}
    assert journal_handles(tmp_path) == [new]
    source.close()
    assert set(json.loads(keystore_file(tmp_path).read_text())["entries"]) == {old, new}


def test_an_entry_sealed_into_the_journal_is_bound_to_its_handle(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    first, second = generate(source, "a"), generate(source, "b")
    lines = [json.loads(line) for line in journal_file(tmp_path).read_bytes().splitlines()]
    lines[0]["sealed"], lines[1]["sealed"] = lines[1]["sealed"], lines[0]["sealed"]
    journal_file(tmp_path).write_text("".join(json.dumps(line) + "\n" for line in lines))

    tampered = open_source(tmp_path, passphrase_env)
    with pytest.raises(SourceError) as raised:
        recovered(tampered, first)
    assert raised.value.summary == "A software keystore entry is corrupt"
    assert second


def test_two_keystores_on_one_file_see_each_others_appends(tmp_path: Path, passphrase_env: str) -> None:
    path = keystore_file(tmp_path)
    one = Keystore(path, passphrase_env, WarnOnce(logging.getLogger("keyplan.test")))
    two = Keystore(path, passphrase_env, WarnOnce(logging.getLogger("keyplan.test")))
    material = SecretBytes(os.urandom(32))
    one.add("key.a/v1/1", "AES_256", "kcv:x", datetime.now(UTC), material)
    two.add("key.b/v1/2", "AES_256", "kcv:y", datetime.now(UTC), material)
    one.add("key.c/v1/3", "AES_256", "kcv:z", datetime.now(UTC), material)
    document = two.read()
    assert isinstance(document, KeystoreDocument)
    assert set(document.entries) == {"key.a/v1/1", "key.b/v1/2", "key.c/v1/3"}
    found = two.find("key.c/v1/3")
    assert found is not None
    entry, master = found
    assert isinstance(master, MasterKey)
    assert two.open_entry("key.c/v1/3", entry, master).reveal() == material.reveal()
    assert master.open(entry.sealed, _entry_aad("key.c/v1/3", "AES_256", "kcv:z")).reveal() == material.reveal()
    one.close()
    two.close()


def test_a_run_that_generates_nothing_writes_nothing(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    assert not source.describe("key.a/v1/000000000000").present
    source.close()
    assert not (tmp_path / ".keyplan").exists()


def test_a_fold_that_fails_leaves_the_journal_as_it_is(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handle = generate(source, "a")
    with journal_file(tmp_path).open("ab") as journal:  # damaged after this run read it
        journal.write(b'{"handle": "key.b/v1/0"}\n')
    damaged = journal_file(tmp_path).read_bytes()
    document = keystore_file(tmp_path).read_bytes()
    source.close()  # the fold refuses the damaged line; closing does not fail over it

    assert journal_file(tmp_path).read_bytes() == damaged
    assert keystore_file(tmp_path).read_bytes() == document
    with pytest.raises(SourceError) as raised:
        open_source(tmp_path, passphrase_env).describe(handle)
    assert raised.value.summary == "The software keystore is corrupt"


def test_concurrent_generates_share_appends_and_each_is_durable_when_it_returns(tmp_path: Path, passphrase_env: str) -> None:
    """Generates from many threads at once (an apply's workers) share journal appends; each
    returns only when its line is in the journal, readable by another run before any close."""
    from concurrent.futures import ThreadPoolExecutor

    source = open_source(tmp_path, passphrase_env)
    seen_on_return: list[bool] = []

    def complete_lines() -> list[str]:  # other threads may be appending: only lines ended so far
        data = journal_file(tmp_path).read_bytes()
        return [json.loads(line)["handle"] for line in data[: data.rfind(b"\n") + 1].splitlines()]

    def one(n: int) -> str:
        handle = generate(source, f"k{n}")
        seen_on_return.append(handle in complete_lines())
        return handle

    with ThreadPoolExecutor(max_workers=16) as pool:
        handles = list(pool.map(one, range(48)))
    assert all(seen_on_return) and len(seen_on_return) == 48
    assert sorted(journal_handles(tmp_path)) == sorted(handles)
    other = open_source(tmp_path, passphrase_env)  # another run, before this one closes
    assert all(recovered(other, handle) == recovered(source, handle) for handle in handles[::7])
    other.close()
    source.close()


def test_generates_at_once_share_fsyncs_and_none_returns_before_one_after_its_write(
    tmp_path: Path, passphrase_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: adds waiting at the same time are made durable by one fsync begun after
    all their writes, so 48 generates from 16 threads take fewer fsyncs than generates; and
    none returns before an fsync that began after its line was written."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    source = open_source(tmp_path, passphrase_env)
    generate(source, "first")  # the journal's first line is made durable with its directory entry
    real_fsync = os.fsync
    lock = threading.Lock()
    syncs: list[tuple[float, int]] = []  # (when the fsync began, the journal's length then)

    def slow_fsync(fd: int) -> None:
        with lock:
            syncs.append((time.monotonic(), os.fstat(fd).st_size))
        time.sleep(0.02)  # a disk that takes its time: adds pile up behind the fsync in progress
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    returned: list[tuple[str, float]] = []

    def one(n: int) -> None:
        handle = generate(source, f"k{n}")
        with lock:
            returned.append((handle, time.monotonic()))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(48)))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert len(returned) == 48
    assert 0 < len(syncs) < 48, f"{len(syncs)} fsyncs for 48 generates"
    offsets = _line_ends(journal_file(tmp_path))
    for handle, when in returned:
        end = offsets[handle]
        assert any(began <= when and size >= end for began, size in syncs), f"{handle} returned before its fsync"
    source.close()


def test_a_failed_fsync_fails_every_generate_it_was_made_for(
    tmp_path: Path, passphrase_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed fsync the kernel may have dropped the written pages: no generate whose line
    was written before it may return (nor be covered by a later fsync); later ones may."""
    import errno
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    source = open_source(tmp_path, passphrase_env)
    generate(source, "first")
    real_fsync = os.fsync
    failed_at: list[int] = []
    lock = threading.Lock()

    def fsync_failing_once(fd: int) -> None:
        with lock:
            first = not failed_at
            if first:
                failed_at.append(os.fstat(fd).st_size)
        if first:
            time.sleep(0.05)  # the others write their lines and wait on this fsync meanwhile
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_once)

    def one(n: int) -> tuple[str, bool]:
        try:
            generate(source, f"k{n}")
        except SourceError as error:
            assert error.summary == "Cannot use the software keystore"
            return f"key.k{n}", False
        return f"key.k{n}", True

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(one, range(24)))
    offsets = _line_ends(journal_file(tmp_path))
    assert failed_at and any(not ok for _, ok in outcomes)
    for address, ok in outcomes:
        end = next(end for handle, end in offsets.items() if handle.startswith(f"{address}/v"))
        if end <= failed_at[0]:
            assert not ok, f"{address} returned although the fsync that covered it failed"


def _line_ends(journal: Path) -> dict[str, int]:
    """Each journal line's handle and the file offset just past its end."""
    ends: dict[str, int] = {}
    offset = 0
    for line in journal.read_bytes().splitlines(keepends=True):
        offset += len(line)
        ends[json.loads(line)["handle"]] = offset
    return ends
