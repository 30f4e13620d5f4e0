"""SoftHSM2 development tokens: created in a local directory, found by label, and usable one
after another in one process although SoftHSM reads SOFTHSM2_CONF only at initialisation."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.algorithms import ALGORITHMS
from keyplan.provider import GenerateRequest, SourceError
from providers.pkcs11 import find_softhsm_module, init_dev_token, open_source
from providers.pkcs11.devtoken import softhsm_module_candidates, token_labels

pytestmark = pytest.mark.hsm

AES = ALGORITHMS["AES_256"]


@pytest.fixture
def pin_env() -> Iterator[str]:
    name = f"KEYPLAN_TEST_PIN_{uuid.uuid4().hex.upper()}"
    os.environ[name] = "1111"
    yield name
    os.environ.pop(name, None)


def test_module_discovery_finds_the_debian_library() -> None:
    assert Path("/usr/lib/softhsm/libsofthsm2.so") in softhsm_module_candidates()
    assert find_softhsm_module().is_file()


def test_init_dev_token_writes_a_private_configuration(tmp_path: Path) -> None:
    token = init_dev_token(tmp_path / "hsm", "dev", pin="1111", so_pin="22222222")
    assert token.conf_path == (tmp_path / "hsm" / "softhsm2.conf").resolve()
    conf = token.conf_path.read_text()
    assert f"directories.tokendir = {(tmp_path / 'hsm' / 'tokens').resolve()}" in conf
    assert "objectstore.backend = file" in conf
    assert token.module_env == {"SOFTHSM2_CONF": str(token.conf_path)}
    assert token_labels(token.conf_path) == ["dev"]
    assert any(stat.S_ISDIR(p.stat().st_mode) for p in (tmp_path / "hsm" / "tokens").iterdir())


def test_a_label_is_initialised_once(tmp_path: Path) -> None:
    init_dev_token(tmp_path, "dev", pin="1111", so_pin="22222222")
    with pytest.raises(SourceError) as raised:
        init_dev_token(tmp_path, "dev", pin="1111", so_pin="22222222")
    assert "already holds a token labelled 'dev'" in raised.value.detail


def test_tokens_in_separate_directories_in_one_process(tmp_path: Path, pin_env: str) -> None:
    first = init_dev_token(tmp_path / "a", "first", pin="1111", so_pin="22222222")
    second = init_dev_token(tmp_path / "b", "second", pin="1111", so_pin="22222222")

    source = open_source(first.source_settings(pin_env), "pkcs11.first")
    handle = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES)).handle
    with pytest.raises(SourceError) as raised:
        open_source(second.source_settings(pin_env), "pkcs11.second")  # first still holds the library
    assert "module_env" in raised.value.detail
    source.close()

    source = open_source(second.source_settings(pin_env), "pkcs11.second")
    assert source.describe(handle).present is False  # another token entirely
    source.generate(GenerateRequest(address="key.b", version=1, algorithm=AES))
    source.close()

    source = open_source(first.source_settings(pin_env), "pkcs11.first")
    assert source.describe(handle).present is True
    source.close()


def test_a_token_created_after_the_library_loaded_is_found(tmp_path: Path, pin_env: str) -> None:
    early = init_dev_token(tmp_path, "early", pin="1111", so_pin="22222222")
    source = open_source(early.source_settings(pin_env), "pkcs11.early")
    source.close()

    late = init_dev_token(tmp_path, "late", pin="1111", so_pin="22222222")
    source = open_source(late.source_settings(pin_env), "pkcs11.late")
    try:
        assert source.generate(GenerateRequest(address="key.late", version=1, algorithm=AES)).handle
    finally:
        source.close()


def test_two_sources_share_one_login_on_one_token(tmp_path: Path, pin_env: str) -> None:
    token = init_dev_token(tmp_path, "shared", pin="1111", so_pin="22222222")
    first = open_source(token.source_settings(pin_env), "pkcs11.one")
    second = open_source(token.source_settings(pin_env), "pkcs11.two")
    handle = first.generate(GenerateRequest(address="key.s", version=1, algorithm=AES)).handle
    first.close()  # must not log the second source out
    try:
        assert second.describe(handle).present is True
        assert second.generate(GenerateRequest(address="key.t", version=1, algorithm=AES)).handle
    finally:
        second.close()


def test_pins_never_reach_a_command_line(tmp_path: Path, pin_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """softhsm2-util takes PINs as arguments, visible in the process list: it only ever sees
    throwaway PINs, and the real ones are set through PKCS#11 afterwards."""
    seen: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(list(args))
        return real_run(args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", recording_run)
    token = init_dev_token(tmp_path, "quiet", pin="1111", so_pin="22222222")
    assert any("--init-token" in args for args in seen)
    assert not any(pin in arg for args in seen for arg in args for pin in ("1111", "22222222"))
    source = open_source(token.source_settings(pin_env), "pkcs11.quiet")  # the user PIN is the real one
    try:
        assert source.generate(GenerateRequest(address="key.q", version=1, algorithm=AES)).handle
    finally:
        source.close()


def test_relative_module_env_resolves_against_the_configuration_directory(tmp_path: Path, pin_env: str) -> None:
    token = init_dev_token(tmp_path / "workspace" / "hsm", "relative", pin="1111", so_pin="22222222")
    settings = token.source_settings(pin_env, module_env={"SOFTHSM2_CONF": "./hsm/softhsm2.conf", "OTHER": "as-is"})
    workspace = tmp_path / "workspace"
    assert settings.environment(workspace) == {"SOFTHSM2_CONF": str(token.conf_path), "OTHER": "as-is"}
    assert settings.environment(None)["SOFTHSM2_CONF"] == "./hsm/softhsm2.conf"
    assert Path.cwd() != workspace
    source = open_source(settings, "pkcs11.relative", workspace)
    try:
        assert source.generate(GenerateRequest(address="key.r", version=1, algorithm=AES)).handle
    finally:
        source.close()
