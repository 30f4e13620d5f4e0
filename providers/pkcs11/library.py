"""PKCS#11 libraries ("modules") loaded once per process and shared by every source using them.

Three facts of PKCS#11 shape this module:

- python-pkcs11 initialises a library with `C_Initialize(NULL)`, which tells the library that
  no two threads call it at once; SoftHSM then runs without locks of its own. Every call into a
  library therefore goes through that library's `lock`.
- Login state belongs to the application, not to a session, and closing the session that
  logged in logs everybody out. So one logged-in session per token is shared by every source on
  that token in this process, and closed when the last of them closes.
- Some libraries read their configuration from the environment at initialisation (SoftHSM:
  `SOFTHSM2_CONF`) and only list the tokens that existed then. A library is re-initialised
  with the environment a source asks for, or to pick up a token created since, but only while
  no other open source uses it: re-initialising closes every session.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pkcs11
from pkcs11 import Session, Token
from pkcs11 import exceptions as p11

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library

from keyplan.provider import SourceError
from providers.pkcs11.errors import token_error


@dataclass
class _SharedLogin:
    session: Session
    users: int


@dataclass
class LoadedLibrary:
    path: str
    lib: Library
    environment: dict[str, str]
    users: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    logins: dict[tuple[int, bytes], _SharedLogin] = field(default_factory=dict)


_REGISTRY_LOCK = threading.Lock()
_LIBRARIES: dict[str, LoadedLibrary] = {}


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ while the library initialises; the previous values afterwards."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def attach(path: Path, environment: Mapping[str, str]) -> LoadedLibrary:
    """The library at `path`, loaded and initialised with `environment`; call `detach` when done."""
    if not path.is_file():
        raise SourceError(
            "PKCS#11 library not found",
            f"There is no file at {path}. Set `module` to the token vendor's PKCS#11 library; for "
            "SoftHSM on Debian or Ubuntu that is /usr/lib/softhsm/libsofthsm2.so (package softhsm2).",
        )
    key = str(path.resolve())
    wanted = dict(environment)
    with _REGISTRY_LOCK:
        loaded = _LIBRARIES.get(key)
        if loaded is None:
            loaded = LoadedLibrary(path=key, lib=_load(key, wanted), environment=wanted)
            _LIBRARIES[key] = loaded
        elif loaded.environment != wanted:
            if loaded.users > 0:
                raise SourceError(
                    "PKCS#11 library already in use with another configuration",
                    f"{key} is open in this run with a different `module_env`. Give every source "
                    "that uses this library the same `module_env`.",
                )
            with loaded.lock, _environment(wanted):
                loaded.lib.reinitialize()
            loaded.environment = wanted
        loaded.users += 1
        return loaded


def _load(path: str, environment: Mapping[str, str]) -> Library:
    try:
        with _environment(environment):
            lib = pkcs11.lib(path)
            if not lib.initialized:
                lib.initialize()
            return lib
    except (RuntimeError, OSError) as exc:
        raise SourceError(
            "Cannot load the PKCS#11 library",
            f"{path} could not be loaded or initialised ({type(exc).__name__}). Check that it is a "
            "PKCS#11 library for this platform and that its configuration (see `module_env`) is valid.",
        ) from None


def detach(library: LoadedLibrary) -> None:
    with _REGISTRY_LOCK:
        library.users = max(0, library.users - 1)


def find_token(library: LoadedLibrary, label: str, slot: int | None) -> Token:
    """The token labelled `label` (in `slot`, when given), re-initialising once to find a token
    created after the library was loaded."""
    with _REGISTRY_LOCK, library.lock:
        tokens = _matching_tokens(library, label, slot)
        if not tokens and library.users <= 1 and not library.logins:
            with _environment(library.environment):
                library.lib.reinitialize()
            tokens = _matching_tokens(library, label, slot)
        if len(tokens) == 1:
            return tokens[0]
        if len(tokens) > 1:
            slots = ", ".join(str(t.slot.slot_id) for t in tokens)
            raise SourceError(
                "Several PKCS#11 tokens carry this label",
                f"Tokens labelled {label!r} sit in slots {slots}. Set `slot` to the one keyplan should use.",
            )
        found = sorted({t.label for t in library.lib.get_tokens() if t.label})
        where = f" in slot {slot}" if slot is not None else ""
        listing = ", ".join(repr(name) for name in found) if found else "none"
        raise SourceError(
            "PKCS#11 token not found",
            f"No token labelled {label!r}{where} is visible through {library.path}. Tokens found: "
            f"{listing}. Set `token_label` to one of them, or initialise the token first.",
        )


def _matching_tokens(library: LoadedLibrary, label: str, slot: int | None) -> list[Token]:
    tokens = list(library.lib.get_tokens(token_label=label))
    return [t for t in tokens if slot is None or t.slot.slot_id == slot]


def login(library: LoadedLibrary, token: Token, pin: str) -> Session:
    """A read-write session on `token`, logged in as the user; shared by sources on the same token."""
    key = (token.slot.slot_id, token.serial)
    with library.lock:
        shared = library.logins.get(key)
        if shared is None:
            try:
                session = token.open(rw=True, user_pin=pin)
            except p11.UserAlreadyLoggedIn:
                # Logged in by code outside keyplan's registry; the login is the application's.
                session = token.open(rw=True)
            except p11.PKCS11Error as exc:
                raise token_error("logging in", exc, token=token.label) from None
            shared = _SharedLogin(session=session, users=0)
            library.logins[key] = shared
        shared.users += 1
        return shared.session


def logout(library: LoadedLibrary, token: Token) -> None:
    key = (token.slot.slot_id, token.serial)
    with library.lock:
        shared = library.logins.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del library.logins[key]
            try:
                shared.session.close()
            except p11.PKCS11Error:
                pass  # the token went away; nothing is left to close
