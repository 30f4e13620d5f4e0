"""Configuration and variables files that are not plain readable files: each is an error, never
skipped (a skipped file leaves its keys out of the plan, which then schedules their deletion),
never a hang (a pipe) and never unbounded memory (a device)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.config.conftest import PLUGINS, ConfigDir

KEY = """
key "data" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
"""


def test_a_readable_configuration_loads_and_a_directory_named_like_one_is_ignored(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": PLUGINS, "keys.kp.hcl": KEY})
    (config_dir.path / "old.kp.hcl").mkdir()
    assert list(config_dir.ok().keys) == ["key.data"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda path: path.symlink_to(path.parent / "missing.txt"), id="dangling symbolic link"),
        pytest.param(lambda path: path.symlink_to(path), id="symbolic link to itself"),
        pytest.param(lambda path: os.mkfifo(path), id="named pipe"),
        pytest.param(lambda path: path.symlink_to("/dev/zero"), id="device"),
    ],
)
def test_a_configuration_file_that_is_not_a_regular_file_is_an_error(config_dir: ConfigDir, make: object) -> None:
    config_dir.write({"main.kp.hcl": PLUGINS})
    make(config_dir.path / "keys.kp.hcl")  # type: ignore[operator]
    config, diagnostics = config_dir.load()
    assert config is None, "the keys of keys.kp.hcl would be missing from the plan"
    (error,) = diagnostics.errors
    assert error.summary == "Cannot read a configuration file"
    assert "keys.kp.hcl" in error.detail and "not a regular file" in error.detail


def test_a_variables_file_without_end_is_refused_at_a_bound(config_dir: ConfigDir) -> None:
    config_dir.write({"main.kp.hcl": PLUGINS + KEY})
    config, diagnostics = config_dir.load(var_files=[Path("/dev/zero")])
    assert config is None
    assert [e.summary for e in diagnostics.errors] == ["Cannot read variables file"]
    assert "larger than 64 MiB" in diagnostics.errors[0].detail
