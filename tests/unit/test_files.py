"""The one atomic file writer: content, mode, backup, and no temporary file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keyplan.files import write_atomically


def test_writes_content_with_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    write_atomically(target, b"one", mode=0o600)
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_backup_keeps_the_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, b"first", keep_backup=True)
    assert not (tmp_path / "state.json.backup").exists()
    write_atomically(target, b"second", keep_backup=True)
    assert target.read_bytes() == b"second"
    assert (tmp_path / "state.json.backup").read_bytes() == b"first"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, b"old")

    def refuse(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
