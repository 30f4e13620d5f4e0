"""The encrypted keystore file of the software source.

One JSON document (format version 2) holds the entries, each sealed on its own with
AES-256-GCM under a master key; the authenticated data binds an entry to its handle, algorithm
and fingerprint, so an entry copied under another handle, or a fingerprint edited in place, no
longer decrypts. The master key comes from one of two protections recorded in the file:

- `passphrase`: scrypt over the passphrase read from an environment variable (salt and n/r/p
  recorded in the file);
- `key-file`: a generated 256-bit key in a file next to the keystore, mode 0600, for
  development only.

A `verifier` (a constant sealed under the master key) tells a wrong passphrase from a damaged
entry.

A new entry is appended to the keystore's journal (`<keystore>.journal`, one JSON line per entry,
sealed the same way) and fsynced before `add` returns, so its material is durable before it is
ever wrapped and sent, at a cost that does not grow with the number of entries. The fsync is
shared (group commit): an add writes its line under the locks, then waits outside them for an
fsync begun after its write, which one of the waiting adds makes for all of them; so generates
running at once do not queue one fsync each behind the keystore's locks. Readers fold the
journal into the document (reading only what was appended since their last look); `close`
writes the whole document once, journal included, and removes the journal. A line cut short by a
crash during its append was never acknowledged (its material never left keyplan): it is ignored,
and cut off by the next append. Whole-document writes (the fold, re-protection, a fingerprint
upgrade, the migration of a format 1 keystore, which had no journal) go to a temporary file that
is fsynced and renamed over the keystore before the journal is removed, so a crash between the
two leaves entries in both, which read as one. Every write happens under a thread lock and an
advisory file lock, so concurrent generates, in one process or several, never lose an entry.

The file format (document, journal lines, sealing) is in `format.py`; unlocking the master key
(passphrase or development key file) in `unlock.py`; sealing every entry again under a new
passphrase (`keyplan keystore re-protect`) in `reprotect.py`. What stays here (over 500 lines,
on purpose) is what shares the keystore's two locks: reading, appending, the shared fsync and
the whole-document writes, each relying on the others' view of the journal.
"""

from __future__ import annotations

import binascii
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from pydantic import ValidationError

from keyplan.crypto.fingerprint import is_current_fingerprint
from keyplan.crypto.secret import SecretBytes
from keyplan.files import fsync_directory, write_atomically
from keyplan.provider import SourceError
from providers.software.format import (
    _VERIFIER_AAD,
    _VERIFIER_PLAINTEXT,
    FORMAT_VERSION,
    JOURNAL_SUFFIX,
    MAX_SCRYPT_P,
    MAX_SCRYPT_R,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    JournalLine,
    KeyFileProtection,
    KeystoreDocument,
    KeystoreEntry,
    MasterKey,
    PassphraseProtection,
    Sealed,
    _b64,
    _entry_aad,
)
from providers.software.unlock import Unlocking, WarnOnce

if TYPE_CHECKING:
    from providers.software.reprotect import Reprotected


@dataclass
class _View:
    """The keystore as this process last read it: the document, with every journal line read
    so far folded into `entries` (owned by the keystore: callers get copies)."""

    identity: tuple[int, int, int]  # of the document file
    document: KeystoreDocument
    entries: dict[str, KeystoreEntry]
    journal_inode: int | None = None
    journal_offset: int = 0  # bytes of the journal read: the end of its last complete line
    stale_fingerprints: bool = False


def _identity(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class Keystore:
    """One keystore file (and its journal), opened for a run. Thread-safe."""

    def __init__(self, path: Path, passphrase_env: str, warn: WarnOnce) -> None:
        self.path = path
        self.passphrase_env = passphrase_env
        self._warn = warn
        self._unlocking = Unlocking(path, passphrase_env, warn)
        self._lock = threading.Lock()
        # Group commit of journal appends: `_appended` counts the lines written (under `_lock`),
        # `_synced` those known durable; one waiting add at a time fsyncs for all written before.
        self._sync = threading.Condition()
        self._appended = self._synced = 0
        self._syncing = False
        self._sync_failure: tuple[int, OSError] | None = None
        self._master: MasterKey | None = None
        self._master_for: Sealed | None = None  # the verifier the master key was checked against
        # The document and journal as last read: while the document is unchanged on disk, a read
        # parses only the journal lines appended since, instead of the whole keystore again.
        self._view: _View | None = None

    @property
    def key_file_path(self) -> Path:
        return self.path.with_suffix(".key")

    @property
    def journal_path(self) -> Path:
        return self.path.with_name(self.path.name + JOURNAL_SUFFIX)

    # ---- reading ------------------------------------------------------------------------------

    def read(self) -> KeystoreDocument | None:
        """The keystore as it is on disk now, its journal folded in, or None when no keystore
        exists yet."""
        with self._lock:
            return self._document()

    def find(self, handle: str) -> tuple[KeystoreEntry, MasterKey] | None:
        """The entry under `handle` and the unlocked master key, or None when the keystore or the
        entry does not exist. Unlocking proves the passphrase right even when the entry is missing."""
        with self._lock:
            # An entry never changes once written (a journal line contradicting it is corruption),
            # so a known entry needs no journal read while the document is unchanged.
            view = self._refresh(journal=False)
            if view is not None and handle not in view.entries:
                self._read_journal(view)
            if view is None:
                return None
            master = self._unlocked(view.document)
            entry = view.entries.get(handle)
            return None if entry is None else (entry, master)

    def has_stale_fingerprints(self) -> bool:
        """Whether some entry carries a fingerprint keyplan no longer writes (see
        `upgrade_fingerprints`)."""
        with self._lock:
            # Stale fingerprints come from a document written by an older keyplan (which knew no
            # journal): the journal lines read so far count, unread ones cannot add any.
            view = self._refresh(journal=False)
            return view is not None and view.stale_fingerprints

    def _document(self) -> KeystoreDocument | None:
        view = self._refresh()
        if view is None:
            return None
        return view.document.model_copy(update={"entries": dict(view.entries)})

    def _refresh(self, *, journal: bool = True) -> _View | None:
        """Bring the view up to date with the files (the thread lock held). `journal=False` reads
        the journal only when the document changed (a new view), not to look for new lines."""
        try:
            identity = _identity(self.path)
        except FileNotFoundError:
            self._view = None
            return None
        except OSError as exc:
            raise self._unusable(exc) from None
        view = self._view
        if view is None or view.identity != identity:
            document = self._parse(identity)
            if document is None:
                self._view = None
                return None
            view = _View(identity=identity, document=document, entries=dict(document.entries))
            view.stale_fingerprints = not all(is_current_fingerprint(e.fingerprint) for e in view.entries.values())
            self._view = view
        elif not journal:
            return view
        self._read_journal(view)
        return view

    def _parse(self, identity: tuple[int, int, int]) -> KeystoreDocument | None:
        if self.path.exists() and not self.path.is_file():  # a device would fill the memory, a pipe hang
            raise self._corrupt(self.path)
        try:
            text = self.path.read_bytes()  # pydantic refuses bytes that are not UTF-8 like any other damage
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(
                "Cannot read the software keystore",
                f"Reading {self.path} failed ({exc.strerror}). Check the file's permissions.",
            ) from None
        try:
            return KeystoreDocument.model_validate_json(text)
        except ValidationError:
            raise self._corrupt(self.path) from None

    def _corrupt(self, path: Path) -> SourceError:
        return SourceError(
            "The software keystore is corrupt",
            f"{path} is not a valid keyplan keystore (format version {FORMAT_VERSION}, scrypt n a power of "
            f"two up to 2^20, r up to {MAX_SCRYPT_R}, p up to {MAX_SCRYPT_P}). Restore it from a backup; keys "
            "whose only copy it held cannot be recovered.",
        )

    def _read_journal(self, view: _View) -> None:
        """Fold in the journal lines appended since the view last looked. A line without its end
        is an append still under way, or one a crash cut short: it is left for later."""
        try:
            # never blocks on a pipe put in the journal's place; anything but a regular file is refused below
            fd = os.open(self.journal_path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._unusable(exc) from None
        try:
            stat = os.fstat(fd)
            if not S_ISREG(stat.st_mode):
                raise self._unusable(OSError(errno.EINVAL, "not a regular file (a directory, a pipe or a device)"))
            if stat.st_ino != view.journal_inode or stat.st_size < view.journal_offset:
                view.journal_inode, view.journal_offset = stat.st_ino, 0  # another journal than the one read
            if stat.st_size == view.journal_offset:
                return
            appended = os.pread(fd, stat.st_size - view.journal_offset, view.journal_offset)
        finally:
            os.close(fd)
        complete = appended[: appended.rfind(b"\n") + 1]
        for raw in complete.splitlines():
            try:
                line = JournalLine.model_validate_json(raw)
            except ValidationError:
                raise self._corrupt(self.journal_path) from None
            entry = line.entry()
            known = view.entries.get(line.handle)
            if known is not None and known != entry:  # the same entry in the document and the journal is one entry
                raise self._corrupt(self.journal_path)
            view.entries[line.handle] = entry
            view.stale_fingerprints = view.stale_fingerprints or not is_current_fingerprint(entry.fingerprint)
        view.journal_offset += len(complete)

    def unlock(self, document: KeystoreDocument) -> MasterKey:
        """The master key for this document, derived once per run and checked against the verifier."""
        with self._lock:
            return self._unlocked(document)

    def _unlocked(self, document: KeystoreDocument) -> MasterKey:
        # Re-derived when the keystore was re-protected since (another verifier): an entry sealed
        # under the old master key into the new document would never open again.
        if self._master is None or self._master_for != document.verifier:
            master = self._unlocking.derive(document.protection)
            self._unlocking.check_verifier(master, document)
            self._master, self._master_for = master, document.verifier
        return self._master

    def open_entry(self, handle: str, entry: KeystoreEntry, master: MasterKey) -> SecretBytes:
        try:
            return master.open(entry.sealed, _entry_aad(handle, entry.algorithm, entry.fingerprint))
        except (InvalidTag, ValueError, binascii.Error):
            raise SourceError(
                "A software keystore entry is corrupt",
                f"The entry {handle!r} in {self.path} does not decrypt although the passphrase is "
                "right: it was altered or damaged. Restore the keystore from a backup, or generate "
                "new material for this key.",
            ) from None

    # ---- writing ------------------------------------------------------------------------------

    def _unusable(self, exc: OSError) -> SourceError:
        return SourceError(
            "Cannot use the software keystore",
            f"{self.path} cannot be read or written ({exc.strerror}). Make the keystore and its directory readable "
            "and writable by keyplan, or point `keystore` at another file; no key was changed remotely.",
        )

    def add(self, handle: str, algorithm: str, fingerprint: str, created_at: datetime, material: SecretBytes) -> None:
        """Seal `material` under `handle` and append it to the journal; durable when it returns."""
        try:
            self._add(handle, algorithm, fingerprint, created_at, material)
        except OSError as exc:
            raise self._unusable(exc) from None

    def _add(self, handle: str, algorithm: str, fingerprint: str, created_at: datetime, material: SecretBytes) -> None:
        fd, ticket = self._add_unsynced(handle, algorithm, fingerprint, created_at, material)
        try:
            self._make_durable(fd, ticket)
        finally:
            os.close(fd)

    def _add_unsynced(
        self, handle: str, algorithm: str, fingerprint: str, created_at: datetime, material: SecretBytes
    ) -> tuple[int, int]:
        """Write the entry's journal line under the locks; returns the journal's descriptor and
        the line's ticket for `_make_durable`."""
        with self._lock, self._file_lock():
            view = self._refresh()
            if view is None:
                self._write(self._create_document())
                view = self._refresh()
            elif view.document.format_version != FORMAT_VERSION:
                # A keystore written before the journal existed: written again in this format first,
                # so a keyplan that knows nothing of the journal refuses it rather than miss entries.
                self._write(
                    view.document.model_copy(update={"format_version": FORMAT_VERSION, "entries": dict(view.entries)})
                )
                view = self._refresh()
            assert view is not None
            if handle in view.entries:
                raise SourceError("Keystore handle collision", f"The handle {handle!r} already exists in {self.path}.")
            master = self._unlocked(view.document)
            sealed = master.seal(material, _entry_aad(handle, algorithm, fingerprint))
            line = JournalLine(
                handle=handle, algorithm=algorithm, fingerprint=fingerprint, created_at=created_at, sealed=sealed
            )
            fd = self._append(view, line.model_dump_json().encode("utf-8") + b"\n")
            view.entries[handle] = line.entry()
            self._appended += 1
            return fd, self._appended

    def _append(self, view: _View, line: bytes) -> int:
        """Append one line to the journal (the thread and file locks held); returns the open
        descriptor, for `_make_durable`. A line a crash cut short is cut off first: nobody was
        told it was written. The journal's first line is made durable at once, with the directory
        entry that names the journal."""
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            stat = os.fstat(fd)
            created = stat.st_size == 0
            if stat.st_ino != view.journal_inode:
                view.journal_inode, view.journal_offset = stat.st_ino, 0
            if stat.st_size > view.journal_offset:
                os.ftruncate(fd, view.journal_offset)
            os.fchmod(fd, 0o600)
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.EIO, "the journal line was written in part")
            if created:
                os.fsync(fd)
                fsync_directory(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        view.journal_offset += len(line)
        return fd

    def _make_durable(self, fd: int, ticket: int) -> None:
        """Return once the journal line `ticket` is durable: after an fsync begun once it was
        written, made by this add or by another one waiting at the same time (fsync covers the
        file, whichever descriptor asks). A failed fsync fails every add it was made for."""
        with self._sync:
            while self._synced < ticket:
                if self._sync_failure is not None and ticket <= self._sync_failure[0]:
                    failed = self._sync_failure[1]
                    raise OSError(failed.errno, failed.strerror)
                if self._syncing:
                    self._sync.wait()
                    continue
                self._syncing = True
                upto = self._appended  # counted after its write: every line up to it is written
                failure: OSError | None = None
                self._sync.release()
                try:
                    os.fsync(fd)
                except OSError as error:  # not tried again: after a failed fsync the written pages may be lost
                    failure = error
                finally:
                    self._sync.acquire()
                    self._syncing = False
                    self._sync.notify_all()
                if failure is not None:
                    # Every line written before the failure was reported may sit on a page it dropped.
                    self._sync_failure = (self._appended, failure)
                    raise failure
                self._synced = max(self._synced, upto)

    def _all_durable(self) -> None:
        """After a whole-document write (which holds every entry, fsynced): every line written
        so far is durable (`_lock` held)."""
        with self._sync:
            self._synced = max(self._synced, self._appended)
            self._sync.notify_all()

    def fold_journal(self) -> None:
        """Write the whole keystore once with every journal line in it, and remove the journal."""
        if not self.journal_path.exists():
            return  # nothing appended: no lock taken, no file created (a plan writes nothing)
        try:
            with self._lock, self._file_lock():
                view = self._refresh()
                if view is not None and view.journal_inode is not None:
                    self._write(
                        view.document.model_copy(
                            update={"format_version": FORMAT_VERSION, "entries": dict(view.entries)}
                        )
                    )
        except OSError as exc:
            raise self._unusable(exc) from None

    def upgrade_fingerprints(self, fingerprint: Callable[[str, SecretBytes], str]) -> KeystoreDocument:
        """Seal again every entry whose fingerprint follows a definition keyplan no longer writes
        (see keyplan.crypto.fingerprint), under `fingerprint(algorithm, material)`, and write the
        keystore atomically so no copy of the old values stays in it. Returns the document."""
        try:
            return self._upgrade_fingerprints(fingerprint)
        except OSError as exc:
            raise self._unusable(exc) from None

    def _upgrade_fingerprints(self, fingerprint: Callable[[str, SecretBytes], str]) -> KeystoreDocument:
        with self._lock, self._file_lock():
            document = self._document()
            if document is None:
                raise SourceError("The software keystore is missing", f"{self.path} does not exist.")
            master = self._unlocked(document)
            entries = dict(document.entries)
            for handle, entry in document.entries.items():
                if is_current_fingerprint(entry.fingerprint):
                    continue
                material = self.open_entry(handle, entry, master)
                try:
                    current = fingerprint(entry.algorithm, material)
                    sealed = master.seal(material, _entry_aad(handle, entry.algorithm, current))
                finally:
                    material.wipe()
                entries[handle] = entry.model_copy(update={"fingerprint": current, "sealed": sealed})
            upgraded = document.model_copy(update={"format_version": FORMAT_VERSION, "entries": entries})
            self._write(upgraded)
            return upgraded

    def reprotect(self, current_passphrase: str | None, new_passphrase: str) -> Reprotected:
        """Seal every entry again under a master key derived from `new_passphrase` (fresh salt),
        and replace the keystore in one atomic write. The current protection is opened with
        `current_passphrase` or the development key file, whichever the keystore records; a wrong
        one changes nothing. Each entry is opened again under the new key and compared with the
        material it held before anything is written (`providers.software.reprotect`)."""
        from providers.software.reprotect import reseal

        try:
            with self._lock, self._file_lock():
                resealed = reseal(self, self._unlocking, self._document(), current_passphrase, new_passphrase)
                self._write(resealed.document)
                self._master, self._master_for = resealed.master, resealed.document.verifier
                return resealed.outcome
        except OSError as exc:
            raise self._unusable(exc) from None

    def close(self) -> None:
        """Fold the journal into the document and forget the master key. A fold that fails
        leaves the journal as it is: every line in it stays readable, and the next run folds it."""
        try:
            self.fold_journal()
        except SourceError:
            pass
        finally:
            with self._lock:
                if self._master is not None:
                    self._master.wipe()
                    self._master = None

    def _create_document(self) -> KeystoreDocument:
        protection: PassphraseProtection | KeyFileProtection
        if os.environ.get(self.passphrase_env):
            protection = PassphraseProtection(salt=_b64(os.urandom(16)), n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
        else:
            self._unlocking.ensure_key_file()
            protection = KeyFileProtection(key_file=self.key_file_path.name)
        master = self._unlocking.derive(protection)
        verifier = master.seal(SecretBytes(_VERIFIER_PLAINTEXT), _VERIFIER_AAD)
        self._master, self._master_for = master, verifier
        return KeystoreDocument(protection=protection, verifier=verifier)

    def _write(self, document: KeystoreDocument) -> None:
        """Replace the keystore with `document`, which holds every entry, then drop the journal."""
        write_atomically(self.path, document.model_dump_json(indent=2).encode("utf-8"), mode=0o600)
        try:
            self.journal_path.unlink()
        except FileNotFoundError:
            pass
        else:
            fsync_directory(self.path.parent)
        self._all_durable()
        self._view = _View(identity=_identity(self.path), document=document, entries=dict(document.entries))
        self._view.stale_fingerprints = not all(
            is_current_fingerprint(e.fingerprint) for e in document.entries.values()
        )

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """An advisory lock that serialises writers in other processes (two `apply` runs)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the keystore's directory does not exist yet
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
