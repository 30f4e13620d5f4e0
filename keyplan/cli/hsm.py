"""`keyplan hsm`: setting up a PKCS#11 key source.

- `keyplan hsm init-dev` creates a SoftHSM2 development token in a local directory and prints
  the `source "pkcs11"` block that uses it. PINs come from the environment or are generated;
  a PIN is never printed: generated PINs exist only in a file keyplan creates with mode 0600,
  and only when `--pin-file` asks for one.
- `keyplan hsm trust ADDR` is the security officer's step for `wrap_with_trusted = true`: it
  plans ADDR as `keyplan plan` would, fetches the wrapping key of every target an import is
  planned for (the cloud's import parameters, through the provider), and imports it into the
  token as a CKA_TRUSTED object with the SO PIN, which it reads from an environment variable.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from keyplan.cli.main import (
    LockOpt,
    LockTimeoutOpt,
    NoColorOpt,
    VarFileOpt,
    VarOpt,
    backend_for,
    emit,
    load,
    read_state,
    run_plan,
    state_lock,
    working_dir,
)
from keyplan.config.model import Config
from keyplan.crypto.fingerprint import spki_fingerprint
from keyplan.diagnostics import Diagnostics, DiagnosticsError
from keyplan.plan.diff import PlanOptions
from keyplan.plan.model import ActionKind, Plan
from keyplan.provider import ImportParametersRequest, ProviderError, SourceError, WrapOffer
from keyplan.state.model import State

hsm_app = typer.Typer(help="Set up a PKCS#11 HSM key source.", no_args_is_help=True)

DEFAULT_PIN_ENV = "KEYPLAN_HSM_PIN"
DEFAULT_SO_PIN_ENV = "KEYPLAN_HSM_SO_PIN"
_PIN_LENGTH = (4, 255)  # SoftHSM2's limits


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    """Add `keyplan hsm …` to the app."""
    app.add_typer(hsm_app, name="hsm")


def _working_dir() -> Path:
    return working_dir()


# ---------------------------------------------------------------------------------------------
# init-dev
# ---------------------------------------------------------------------------------------------


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


@hsm_app.command("init-dev")
def init_dev(
    directory: Annotated[
        Path, typer.Option("--dir", "-dir", help="Directory of the token (created); relative to -chdir.")
    ] = Path(".keyplan/softhsm"),
    label: Annotated[str, typer.Option("--label", "-label", help="Token label.")] = "keyplan",
    pin_env: Annotated[
        str, typer.Option("--pin-env", "-pin-env", help="Variable that holds (or will hold) the user PIN.")
    ] = DEFAULT_PIN_ENV,
    so_pin_env: Annotated[
        str,
        typer.Option(
            "--so-pin-env", "-so-pin-env", help="Variable that holds (or will hold) the security officer PIN."
        ),
    ] = DEFAULT_SO_PIN_ENV,
    pin_file: Annotated[
        Path | None,
        typer.Option(
            "--pin-file",
            "-pin-file",
            help="Write both PINs to this new file (mode 0600, shell `export` lines); PINs not set in the "
            "environment are generated. Without it, both PIN variables must be set.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", "-name", help="Name of the source block to print.")] = "hsm",
) -> None:
    """Create a SoftHSM2 development token and print the `source "pkcs11"` block that uses it."""
    from providers.pkcs11 import find_softhsm_module, init_dev_token

    working_dir = _working_dir()
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

    shown_dir = _hcl_path(token.conf_path.parent, working_dir)
    emit(
        f"Created the SoftHSM2 development token {label!r} in {shown_dir}.\n"
        "It is for development and tests only: SoftHSM keeps keys in files on this machine.\n\n"
        "Add this block to a *.kp.hcl file and use it as `source = source.pkcs11."
        f"{name}`:\n\n"
        + source_block(name, token.module_path, label, pin_env, _hcl_path(token.conf_path, working_dir))
        + "\n"
    )
    if pin_path is not None:
        made = [p.variable for p in (user_pin, so_pin) if p.generated]
        emit(
            f"The PINs are in {pin_path} (mode 0600"
            + (f"; generated: {', '.join(made)}" if made else "")
            + f"). Load them before running keyplan:\n\n  . {pin_path}\n"
        )
    else:
        emit(
            f"The user PIN is the value of {pin_env}, the security officer PIN that of {so_pin_env}. "
            "keyplan stored neither.\n"
        )


# ---------------------------------------------------------------------------------------------
# trust
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Import:
    address: str
    target: str
    offer: WrapOffer


def _planned_imports(plan: Plan, addresses: list[str], targets: list[str]) -> list[_Import]:
    found: dict[tuple[str, str], _Import] = {}
    for action in plan.actions:
        if (
            action.kind is not ActionKind.GET_IMPORT_PARAMETERS
            or action.address not in addresses
            or action.target is None
        ):
            continue
        if targets and action.target not in targets:
            continue
        found[(action.address, action.target)] = _Import(
            action.address, action.target, action.args.offer
        )
    return [found[k] for k in sorted(found)]


def _trusted_sources(config: Config, addresses: list[str]) -> dict[str, str]:
    """address -> source address, for keys whose source wraps only under trusted keys."""
    from providers.pkcs11 import Pkcs11SourceSettings

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


def _remote_id(state: State, item: _Import) -> str:
    record = state.keys.get(item.address)
    target_record = record.targets.get(item.target) if record is not None else None
    if target_record is None:
        raise DiagnosticsError.single(
            f"{item.address} does not exist at {item.target} yet",
            f"{item.target} hands out its wrapping key for an existing key, so there is nothing to trust yet. "
            f"Run `keyplan apply`: it creates the key and stops before the wrap step; then run "
            f"`keyplan hsm trust '{item.address}' --target {item.target}` and `keyplan apply` again.",
            address=item.address,
        )
    return target_record.remote_id


@hsm_app.command("trust")
def trust(
    address: Annotated[str, typer.Argument(metavar="ADDR", help='A key address, e.g. key.data or key.data["a"].')],
    target: Annotated[
        list[str], typer.Option("--target", "-target", help="Only this provider, e.g. aws.main. Repeatable.")
    ] = [],  # noqa: B006 - typer reads defaults
    so_pin_env: Annotated[
        str, typer.Option("--so-pin-env", "-so-pin-env", help="Variable that holds the security officer PIN.")
    ] = DEFAULT_SO_PIN_ENV,
    var: VarOpt = [],  # noqa: B006
    var_file: VarFileOpt = [],  # noqa: B006
    lock: LockOpt = "true",
    lock_timeout: LockTimeoutOpt = "0s",
    no_color: NoColorOpt = False,
) -> None:
    """Security officer: trust the wrapping keys that ADDR's planned imports will use."""
    from keyplan.runtime import Session
    from providers.pkcs11 import Pkcs11SourceSettings, trust_wrapping_key

    config = load(var, var_file, no_color=no_color)
    options = PlanOptions(targets=(address,))
    addresses = sorted(a for a in config.keys if options.selects(a))
    if not addresses:
        known = ", ".join(sorted(config.keys)[:5])
        raise DiagnosticsError.single(
            f"No key {address} in the configuration",
            'Name a key as the configuration declares it, e.g. key.NAME or key.NAME["KEY"].'
            + (f" Some are: {known}." if known else ""),
        )
    for wanted in target:
        if not any(wanted in config.keys[a].targets for a in addresses):
            raise DiagnosticsError.single(
                f"{address} is not imported into {wanted}",
                f"Its targets are: {', '.join(sorted({t for a in addresses for t in config.keys[a].targets}))}. "
                "Pass one of them to --target, or leave --target out for all of them.",
            )
    sources = _trusted_sources(config, addresses)
    so_pin = os.environ.get(so_pin_env)
    if not so_pin:
        raise DiagnosticsError.single(
            "The security officer PIN is not set",
            f"The environment variable {so_pin_env} is unset or empty. Set it to the token's SO PIN (or name "
            "another variable with --so-pin-env) and run again.",
        )
    backend = backend_for(config)
    with state_lock(backend, "hsm trust", lock, lock_timeout):
        state, exists = read_state(backend)
        # Planned as `keyplan plan` plans it (the token probed with the user PIN), so the wrap
        # method and wrapping key size are exactly those apply will ask the target for.
        plan = run_plan(config, state, exists, options, 10)
        imports = _planned_imports(plan, addresses, target)
        if not imports:
            emit(f"Nothing to trust: no import of {address} is planned (every target holds its material).\n")
            return
        remote_ids = {(i.address, i.target): _remote_id(state, i) for i in imports}
        trusted = 0
        with Session(config) as session:
            for item in imports:
                try:
                    parameters = session.provider(item.target).get_import_parameters(
                        ImportParametersRequest(
                            remote_id=remote_ids[(item.address, item.target)],
                            key=plan.keys[item.address].spec,
                            offer=item.offer,
                            prerequisites=dict(state.prerequisites.get(item.target, {})),
                        )
                    )
                except ProviderError as exc:
                    raise DiagnosticsError.single(
                        f"Cannot fetch the wrapping key of {item.target}: {exc.summary}",
                        exc.detail,
                        address=item.address,
                    ) from None
                source = sources[item.address]
                settings = Pkcs11SourceSettings.model_validate(config.sources[source].attributes)
                fingerprint = spki_fingerprint(parameters.wrapping_public_key)
                label = f"{settings.key_label_prefix}-trusted:{item.target}:{fingerprint.removeprefix('spki:')[:16]}"
                try:
                    result = trust_wrapping_key(
                        settings, so_pin, parameters.wrapping_public_key, label, working_dir=Path(config.directory)
                    )
                except SourceError as exc:
                    raise DiagnosticsError.single(
                        f"Source {source}: {exc.summary}",
                        exc.detail,
                        range=config.sources[source].range,
                        address=source,
                    ) from None
                trusted += int(result.created)
                verb = "Trusted" if result.created else "Already trusted"
                emit(
                    f"{verb}: the wrapping key of {item.target} for {item.address} "
                    f"(RSA-{parameters.wrapping_key_bits}, {parameters.method.value}, {result.fingerprint}), "
                    f"token object {result.label!r}.\n"
                )
    emit(f"\n{trusted} wrapping key(s) newly trusted. Run `keyplan apply` to import.\n")
