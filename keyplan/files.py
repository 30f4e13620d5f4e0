"""Writing a file so that readers see the old content or the new, never half of it; reading a
file a user names without waiting forever on a pipe or filling the memory from a device.

One writer for everything keyplan persists (state, plan files, the software keystore, transfer
files): the bytes go to a temporary file beside the target, created with the final mode, are
fsynced, renamed over the target, and the directory is fsynced so the rename survives a crash.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

BACKUP_SUFFIX = ".backup"


def read_file(path: Path) -> bytes:
    """The bytes of a regular file; `OSError` for anything else (a pipe would wait forever for a
    writer, a device such as /dev/zero never ends), as for a file that cannot be read."""
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file (a directory, a pipe or a device)", str(path))
    return path.read_bytes()


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600, keep_backup: bool = False) -> None:
    """Replace `path` with `data` atomically; the new file has exactly `mode`, whatever the umask.

    With `keep_backup`, the previous content stays readable as `<name>.backup`: it becomes the
    backup through a second name, so `path` itself is never missing.
    """
    path = path.absolute()
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(temporary, flags, mode)
    except FileNotFoundError:  # the directory is made on first write, not looked for each time
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, flags, mode)
    replaced = False
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if keep_backup and path.exists():
            _keep_backup(path)
        os.replace(temporary, path)
        replaced = True
        fsync_directory(path.parent)
    finally:
        if not replaced:
            temporary.unlink(missing_ok=True)


def _keep_backup(path: Path) -> None:
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    backup_temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.backup.tmp")
    try:
        os.link(path, backup_temporary)
    except OSError:
        shutil.copy2(path, backup_temporary)
    os.replace(backup_temporary, backup)
