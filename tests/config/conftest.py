"""Helpers for configuration tests: write `*.kp.hcl` files into a temporary directory and load
them with the real loader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from keyplan.config import Config, load_config
from keyplan.diagnostics import Diagnostics


class ConfigDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, files: Mapping[str, str]) -> ConfigDir:
        for name, text in files.items():
            (self.path / name).write_text(text, encoding="utf-8")
        return self

    def load(
        self,
        *,
        var_args: list[str] | None = None,
        var_files: list[Path] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> tuple[Config | None, Diagnostics]:
        return load_config(self.path, var_args=var_args or [], var_files=var_files or [], environ=environ or {})

    def ok(self, **kwargs: object) -> Config:
        config, diagnostics = self.load(**kwargs)  # type: ignore[arg-type]
        assert not diagnostics.has_errors(), "\n".join(str(d) for d in diagnostics)
        assert config is not None
        return config

    def errors(self, **kwargs: object) -> list[tuple[str, str]]:
        """(location, summary) of every error, in the order reported."""
        config, diagnostics = self.load(**kwargs)  # type: ignore[arg-type]
        assert config is None
        return [(str(d.range) if d.range else "", d.summary) for d in diagnostics.errors]


@pytest.fixture
def config_dir(tmp_path: Path) -> ConfigDir:
    directory = tmp_path / "config"
    directory.mkdir()
    return ConfigDir(directory)


PLUGINS = """
source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
"""
