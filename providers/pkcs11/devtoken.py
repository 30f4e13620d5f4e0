"""Development tokens: a SoftHSM2 token in a local directory, for `keyplan hsm init-dev`, the
HSM example and the tests. Not for production keys: SoftHSM keeps them in files.

`init_dev_token` writes `softhsm2.conf` (its own token directory, file object store) into the
directory and runs `softhsm2-util --init-token --free`. The tool takes PINs only as arguments,
which other local users can see in the process list, so it is given throwaway PINs; the real
ones are then set through PKCS#11 inside this process (C_SetPIN for the security officer,
C_InitPIN for the user) and never appear on a command line. SoftHSM reads `SOFTHSM2_CONF` once, when
the library initialises; a DevToken's `module_env` carries it, and the PKCS#11 source applies
it (re-initialising the library when no other source is using it), so several dev tokens can be
used one after the other in one process.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sysconfig
from pathlib import Path

from pkcs11 import exceptions as p11
from pydantic import BaseModel, ConfigDict

from keyplan.provider import SourceError
from providers.pkcs11.errors import token_error
from providers.pkcs11.library import attach, detach, find_token
from providers.pkcs11.settings import Pkcs11SourceSettings

_LIBRARY = "libsofthsm2.so"


def softhsm_module_candidates() -> list[Path]:
    """Where distributions install SoftHSM2's PKCS#11 library, most likely first."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = [Path("/usr/lib/softhsm") / _LIBRARY]
    if multiarch:
        candidates.append(Path("/usr/lib") / multiarch / "softhsm" / _LIBRARY)
    candidates += [
        Path("/usr/lib64/softhsm") / _LIBRARY,  # Fedora, RHEL
        Path("/usr/lib64/pkcs11") / _LIBRARY,
        Path("/usr/local/lib/softhsm") / _LIBRARY,  # built from source
        Path("/opt/homebrew/lib/softhsm/libsofthsm2.so"),  # macOS, Homebrew
    ]
    return candidates


def find_softhsm_module() -> Path:
    for candidate in softhsm_module_candidates():
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(c) for c in softhsm_module_candidates())
    raise SourceError(
        "SoftHSM2 is not installed",
        f"No {_LIBRARY} in {searched}. Install SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2).",
    )


class DevToken(BaseModel):
    model_config = ConfigDict(frozen=True)

    conf_path: Path
    module_path: Path
    label: str

    @property
    def module_env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf_path)}

    def source_settings(self, pin_env: str, **overrides: object) -> Pkcs11SourceSettings:
        """Settings of a `source "pkcs11"` block for this token; the PIN stays in `pin_env`."""
        values: dict[str, object] = {
            "module": self.module_path,
            "token_label": self.label,
            "pin_env": pin_env,
            "module_env": self.module_env,
        }
        values.update(overrides)
        return Pkcs11SourceSettings.model_validate(values)


def write_softhsm_conf(directory: Path) -> Path:
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens.resolve()}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
        encoding="utf-8",
    )
    return conf


def token_labels(conf_path: Path) -> list[str]:
    """Labels of the initialised tokens in a SoftHSM configuration."""
    shown = _softhsm_util(conf_path, ["--show-slots"])
    return [m.group(1).strip() for m in re.finditer(r"^\s*Label:\s*(.*)$", shown, re.MULTILINE) if m.group(1).strip()]


def init_dev_token(directory: Path, label: str, pin: str, so_pin: str) -> DevToken:
    """Create a SoftHSM2 token labelled `label` under `directory` (created if missing)."""
    module = find_softhsm_module()
    directory = directory.resolve()
    conf = directory / "softhsm2.conf"
    if not conf.exists():
        conf = write_softhsm_conf(directory)
    if label in token_labels(conf):
        raise SourceError(
            "A development token with this label exists",
            f"{directory} already holds a token labelled {label!r}. Use it, pick another label, or "
            "delete the directory to start over.",
        )
    # Throwaway PINs on the command line; the real ones are set below, inside this process.
    initial_so_pin, initial_pin = secrets.token_hex(16), secrets.token_hex(16)
    _softhsm_util(conf, ["--init-token", "--free", "--label", label, "--so-pin", initial_so_pin, "--pin", initial_pin])
    _set_pins(module, conf, label, initial_so_pin, so_pin=so_pin, pin=pin)
    return DevToken(conf_path=conf, module_path=module, label=label)


def _set_pins(module: Path, conf: Path, label: str, initial_so_pin: str, *, so_pin: str, pin: str) -> None:
    """Replace the throwaway PINs: the SO's with C_SetPIN, the user's with C_InitPIN."""
    try:
        library = attach(module, {"SOFTHSM2_CONF": str(conf)})
    except SourceError as exc:
        raise SourceError(
            "Cannot set the development token's PINs",
            f"The token {label!r} was initialised, but {exc.detail} Close the PKCS#11 sources open in this "
            f"process, delete {conf.parent}, and create the token again.",
        ) from None
    try:
        token = find_token(library, label, None)
        with library.lock:
            try:
                session = token.open(rw=True, so_pin=initial_so_pin)
            except p11.PKCS11Error as exc:
                raise token_error("logging in as security officer to set the PINs", exc, token=label) from None
            try:
                session.set_pin(initial_so_pin, so_pin)
                session.init_pin(pin)
            except p11.PKCS11Error as exc:
                raise token_error("setting the PINs", exc, token=label) from None
            finally:
                session.close()
    finally:
        detach(library)


def _softhsm_util(conf_path: Path, arguments: list[str]) -> str:
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise SourceError(
            "softhsm2-util is not installed",
            "The SoftHSM2 command-line tool is needed to create a development token. Install "
            "SoftHSM2 (Debian/Ubuntu: apt-get install softhsm2).",
        )
    environment = {**os.environ, "SOFTHSM2_CONF": str(conf_path)}
    completed = subprocess.run([tool, *arguments], env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        # The tool's own message never repeats the PINs; the arguments (which hold them) are not shown.
        message = (completed.stderr or completed.stdout).strip().splitlines()
        raise SourceError(
            "softhsm2-util failed",
            f"softhsm2-util {arguments[0]} exited with {completed.returncode}: "
            f"{message[-1] if message else 'no message'}. Check {conf_path}.",
        )
    return completed.stdout


__all__ = ["DevToken", "find_softhsm_module", "init_dev_token", "softhsm_module_candidates", "token_labels"]
