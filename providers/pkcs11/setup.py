"""Setting up a PKCS#11 key source, behind the `keyplan hsm` commands (`providers.pkcs11.commands`):

- `init_dev` creates a SoftHSM2 development token in a local directory. PINs come from the
  environment or are generated; a PIN is never printed: generated PINs exist only in a file
  created with mode 0600, and only when a PIN file is asked for.
- `trust` is the security officer's step for `wrap_with_trusted = true`: it takes the wrapping
  keys keyplan's operations fetched for the planned imports
  (`keyplan.operations.wrapping.planned_wrapping_keys`) and imports each into the token as a
  CKA_TRUSTED object with the SO PIN.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keyplan.crypto.fingerprint import spki_fingerprint
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.provider import SourceError
from providers.pkcs11.devtoken import find_softhsm_module, init_dev_token
from providers.pkcs11.settings import Pkcs11SourceSettings
from providers.pkcs11.trust import TrustedWrappingKey, trust_wrapping_key

if TYPE_CHECKING:  # `keyplan -help` lists these commands without loading the planner
    from keyplan.config.model import Config
    from keyplan.operations.wrapping import PlannedWrappingKey

DEFAULT_PIN_ENV = "KEYPLAN_HSM_PIN"
DEFAULT_SO_PIN_ENV = "KEYPLAN_HSM_SO_PIN"
_PIN_LENGTH = (4, 255)  # SoftHSM2's limits


@dataclass
class _Pin:
    variable: str
    value: str
    generated: bool


def _pin_from(variable: str, role: str) -> _Pin | None:
    value = os.environ.get(variable)
    if not value:
        return None
    low, high = _PIN_LENGTH
    if not low <= len(value) <= high:
        raise DiagnosticsError.single(
            f"The {role} PIN in {variable} has the wrong length",
            f"SoftHSM2 accepts PINs of {low} to {high} characters; {variable} holds {len(value)}. Set it to "
            "another value, or unset it and pass --pin-file FILE to have keyplan generate one.",
        )
    return _Pin(variable, value, generated=False)


def _create_pin_file(path: Path) -> int:
    """The file, created new with mode 0600 (never an existing file: it may be shared or linked)."""
    if path.exists() or path.is_symlink():
        raise DiagnosticsError.single(
            "The PIN file exists",
            f"{path} already exists, and keyplan never overwrites a file with PINs in it. Choose another "
            "--pin-file, or delete the old one if its token is gone.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise DiagnosticsError.single(
            "Cannot create the PIN file", f"{path}: {exc.strerror}. Choose a --pin-file in a writable directory."
        ) from None


def _pin_file_text(label: str, directory: Path, pins: list[_Pin]) -> str:
    lines = [
        f"# PINs of the keyplan development token {label!r} in {directory}.",
        "# Keep this file private (mode 0600) and out of version control. Load it with: . <this file>",
    ]
    lines += [f"export {pin.variable}='{pin.value}'" for pin in pins]
    return "\n".join(lines) + "\n"


def _hcl_path(conf: Path, working_dir: Path) -> str:
    """`./…` when the configuration lies under the working directory (a relative path keyplan
    resolves against the configuration directory), the absolute path otherwise."""
    try:
        return "./" + conf.relative_to(working_dir).as_posix()
    except ValueError:
        return str(conf)


def source_block(name: str, module: Path, label: str, pin_env: str, conf: str) -> str:
    return (
        f'source "pkcs11" "{name}" {{\n'
        f'  module      = "{module}"\n'
        f'  token_label = "{label}"\n'
        f'  pin_env     = "{pin_env}" # the user PIN is read from this variable\n'
        "  module_env = {\n"
        f'    SOFTHSM2_CONF = "{conf}"\n'
        "  }\n"
        "}\n"
    )


@dataclass(frozen=True)
class DevTokenCreated:
    label: str
    directory: str  # as it goes into HCL: ./relative or absolute
    block: str  # the `source "pkcs11"` block that uses it
    pin_file: Path | None
    generated: list[str]  # PIN variables whose values keyplan generated (into the PIN file)


def init_dev(
    working_dir: Path, directory: Path, label: str, pin_env: str, so_pin_env: str, pin_file: Path | None, name: str
) -> DevTokenCreated:
    """Create a SoftHSM2 development token; PINs from the environment, or generated into a new
    0600 file when `pin_file` is given."""
    target_dir = directory if directory.is_absolute() else working_dir / directory
    pins = [_pin_from(pin_env, "user"), _pin_from(so_pin_env, "security officer")]
    if pin_file is None and any(pin is None for pin in pins):
        unset = " and ".join(v for v, pin in ((pin_env, pins[0]), (so_pin_env, pins[1])) if pin is None)
        raise DiagnosticsError.single(
            "No PIN for the development token",
            f"{unset} {'is' if ' and ' not in unset else 'are'} unset, and keyplan never prints a PIN. Set "
            f"{pin_env} (user PIN) and {so_pin_env} (security officer PIN), or pass --pin-file FILE to have keyplan "
            "generate them and write them to a new file readable only by you.",
        )
    user_pin = pins[0] or _Pin(pin_env, secrets.token_hex(12), generated=True)
    so_pin = pins[1] or _Pin(so_pin_env, secrets.token_hex(12), generated=True)
    try:
        find_softhsm_module()
    except SourceError as exc:
        raise DiagnosticsError.single(exc.summary, exc.detail) from None
    pin_path = None if pin_file is None else (pin_file if pin_file.is_absolute() else working_dir / pin_file)
    target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # first: the PIN file may go inside it
    descriptor = _create_pin_file(pin_path) if pin_path is not None else None
    try:
        token = init_dev_token(target_dir, label, pin=user_pin.value, so_pin=so_pin.value)
    except SourceError as exc:
        if descriptor is not None and pin_path is not None:
            os.close(descriptor)
            pin_path.unlink(missing_ok=True)
        raise DiagnosticsError.single(exc.summary, exc.detail) from None
    if descriptor is not None:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(_pin_file_text(label, token.conf_path.parent, [user_pin, so_pin]))
    return DevTokenCreated(
        label=label,
        directory=_hcl_path(token.conf_path.parent, working_dir),
        block=source_block(name, token.module_path, label, pin_env, _hcl_path(token.conf_path, working_dir)),
        pin_file=pin_path,
        generated=[p.variable for p in (user_pin, so_pin) if p.generated],
    )


def trusted_sources(config: Config, addresses: list[str]) -> dict[str, str]:
    """address -> source address, for keys whose source wraps only under trusted keys."""
    diagnostics = Diagnostics()
    sources: dict[str, str] = {}
    for address in addresses:
        key = config.keys[address]
        block = config.sources.get(key.source)
        if block is None or block.kind != "pkcs11":
            diagnostics.error(
                "Not a key of a PKCS#11 source",
                f'{address} takes its material from {key.source}; only a `source "pkcs11"` with '
                "`wrap_with_trusted = true` needs the security officer's trust step.",
                range=key.range_of("source"),
                address=address,
            )
            continue
        settings = Pkcs11SourceSettings.model_validate(block.attributes)
        if not settings.wrap_with_trusted:
            diagnostics.error(
                "The source does not wrap with trusted keys only",
                f"{key.source} creates keys without CKA_WRAP_WITH_TRUSTED, so any wrapping key can wrap them "
                "and there is nothing to trust. Set `wrap_with_trusted = true` in the source block for new "
                "material, or skip this step.",
                range=block.range,
                address=key.source,
            )
            continue
        sources[address] = key.source
    if diagnostics.has_errors():
        raise DiagnosticsError(diagnostics)
    return sources


def so_pin_from(variable: str) -> str:
    so_pin = os.environ.get(variable)
    if not so_pin:
        raise DiagnosticsError.single(
            "The security officer PIN is not set",
            f"The environment variable {variable} is unset or empty. Set it to the token's SO PIN (or name "
            "another variable with --so-pin-env) and run again.",
        )
    return so_pin


def trust(config: Config, so_pin: str, wrapping_key: PlannedWrappingKey) -> TrustedWrappingKey:
    """Import one planned wrapping key into the token of its key's source, as trusted."""
    source = wrapping_key.source
    settings = Pkcs11SourceSettings.model_validate(config.sources[source].attributes)
    parameters = wrapping_key.parameters
    fingerprint = spki_fingerprint(parameters.wrapping_public_key)
    label = f"{settings.key_label_prefix}-trusted:{wrapping_key.target}:{fingerprint.removeprefix('spki:')[:16]}"
    try:
        return trust_wrapping_key(
            settings, so_pin, parameters.wrapping_public_key, label, working_dir=Path(config.directory)
        )
    except SourceError as exc:
        raise DiagnosticsError.single(
            f"Source {source}: {exc.summary}", exc.detail, range=config.sources[source].range, address=source
        ) from None
