"""Approval signers in a PKCS#11 token: an Ed25519 key pair (CKK_EC_EDWARDS) whose private half
never leaves the token signs plan approvals with CKM_EDDSA.

The signer is named by a PKCS#11 URI (RFC 7512), the way p11-kit and OpenSSL name token objects:

    pkcs11:token=approvals;object=alice?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:KEYPLAN_HSM_PIN

`token` (and optionally `slot-id`) picks the token, `object` the key pair's CKA_LABEL,
`module-path` the vendor's library; the user PIN is read from the environment variable
`pin-source=env:NAME` names (default KEYPLAN_HSM_PIN), never from the URI itself. The library
reads its own configuration from the environment (SoftHSM: SOFTHSM2_CONF).

`keyplan hsm signer-key` creates such a key pair and prints the approvals block's signer line
and the URI. The signer touches no managed key: only its own key pair.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, quote, unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, Session, Token
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from keyplan.diagnostics import DiagnosticsError
from keyplan.escaping import for_terminal
from keyplan.provider import SourceError
from keyplan.signers import ApprovalSigner, SignerPlugin
from providers.pkcs11.errors import token_error
from providers.pkcs11.library import LoadedLibrary, attach, detach, find_token, login, logout
from providers.pkcs11.setup import DEFAULT_PIN_ENV

ED25519_OID = "1.3.101.112"
SCHEME = "pkcs11"


@dataclass(frozen=True)
class SignerUri:
    token: str
    label: str
    module: Path
    pin_env: str = DEFAULT_PIN_ENV
    slot: int | None = None

    def __str__(self) -> str:
        slot = f";slot-id={self.slot}" if self.slot is not None else ""
        return (
            f"{SCHEME}:token={_quote(self.token)};object={_quote(self.label)}{slot}"
            f"?module-path={_quote(str(self.module))}&pin-source=env:{self.pin_env}"
        )

    @classmethod
    def parse(cls, uri: str, working_dir: Path) -> SignerUri:
        if not uri.startswith(SCHEME + ":"):
            raise _usage(uri, "it does not start with pkcs11:")
        path, _, query = uri[len(SCHEME) + 1 :].partition("?")
        attributes: dict[str, str] = {}
        for part in filter(None, path.split(";")):
            name, equals, value = part.partition("=")
            if not equals:
                raise _usage(uri, f"{part!r} is not NAME=VALUE")
            attributes[name] = unquote(value)
        options = {name: value for name, value in parse_qsl(query, keep_blank_values=True)}
        unknown = sorted(set(attributes) - {"token", "object", "slot-id", "type"}) + sorted(
            set(options) - {"module-path", "pin-source"}
        )
        if unknown:
            raise _usage(uri, f"keyplan does not read {', '.join(unknown)}")
        if not attributes.get("token") or not attributes.get("object") or not options.get("module-path"):
            raise _usage(uri, "it needs token=, object= and ?module-path=")
        pin_source = options.get("pin-source", f"env:{DEFAULT_PIN_ENV}")
        if not pin_source.startswith("env:") or not pin_source[4:]:
            raise _usage(uri, "pin-source must be env:VARIABLE (the PIN is never written in the URI)")
        slot = attributes.get("slot-id")
        if slot is not None and not slot.isdigit():
            raise _usage(uri, "slot-id must be a number")
        module = Path(options["module-path"])
        return cls(
            token=attributes["token"],
            label=attributes["object"],
            module=module if module.is_absolute() else working_dir / module,
            pin_env=pin_source[4:],
            slot=int(slot) if slot is not None else None,
        )


class TokenSigner(ApprovalSigner):
    """An Ed25519 private key in a PKCS#11 token, used for CKM_EDDSA signatures only."""

    def __init__(self, uri: SignerUri) -> None:
        self.uri = uri
        self._library, self._token, self._session = _open(uri)
        try:
            with self._library.lock:
                self._private, self._public = _key_pair(self._session, uri)
        except BaseException:
            self.close()
            raise

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def sign(self, message: bytes) -> bytes:
        with self._library.lock:
            try:
                return bytes(self._private.sign(message, mechanism=Mechanism.EDDSA))
            except p11.PKCS11Error as exc:
                raise _diagnostic(token_error(f"signing with {self.uri.label!r}", exc, token=self.uri.token)) from None

    def describe(self) -> str:
        return f"the token key {for_terminal(self.uri.label)!r} in token {for_terminal(self.uri.token)!r}"

    def close(self) -> None:
        if getattr(self, "_session", None) is None:
            return
        self._session = None  # type: ignore[assignment]
        logout(self._library, self._token)
        detach(self._library)


class Pkcs11SignerPlugin(SignerPlugin):
    scheme = SCHEME

    def open(self, uri: str, working_dir: Path) -> ApprovalSigner:
        return TokenSigner(SignerUri.parse(uri, working_dir))

    def usage(self) -> str:
        return f"{SCHEME}:token=LABEL;object=KEY-LABEL?module-path=/path/to/lib.so&pin-source=env:{DEFAULT_PIN_ENV}"


PLUGIN = Pkcs11SignerPlugin()


def create_signer_key(uri: SignerUri) -> Ed25519PublicKey:
    """Generate the Ed25519 key pair `uri` names inside its token (private half sensitive and not
    extractable); refuses a label already taken."""
    library, token, session = _open(uri)
    try:
        with library.lock:
            try:
                if list(session.get_objects({Attribute.LABEL: uri.label, Attribute.KEY_TYPE: KeyType.EC_EDWARDS})):
                    raise DiagnosticsError.single(
                        "The signer key exists",
                        f"Token {for_terminal(uri.token)!r} already holds an Ed25519 key labelled "
                        f"{for_terminal(uri.label)!r}. Choose another label, or use that key.",
                    )
                public, _ = session.generate_keypair(
                    KeyType.EC_EDWARDS,
                    mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    store=True,
                    public_template={
                        Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID),
                        Attribute.LABEL: uri.label,
                        Attribute.VERIFY: True,
                    },
                    private_template={
                        Attribute.LABEL: uri.label,
                        Attribute.SIGN: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.PRIVATE: True,
                    },
                )
                return _public_key(bytes(public[Attribute.EC_POINT]))
            except p11.PKCS11Error as exc:
                raise _diagnostic(
                    token_error(f"generating the Ed25519 signer key {uri.label!r}", exc, token=uri.token)
                ) from None
    finally:
        logout(library, token)
        detach(library)


def _open(uri: SignerUri) -> tuple[LoadedLibrary, Token, Session]:
    pin = os.environ.get(uri.pin_env, "")
    if not pin:
        raise DiagnosticsError.single(
            "No PIN for the signer's token",
            f"Set {uri.pin_env} to the user PIN of token {for_terminal(uri.token)!r} (the URI's pin-source=env:NAME "
            "names the variable).",
        )
    try:
        library = attach(uri.module, {})
    except SourceError as error:
        raise _diagnostic(error) from None
    try:
        token = find_token(library, uri.token, uri.slot)
        return library, token, login(library, token, pin)
    except SourceError as error:
        detach(library)
        raise _diagnostic(error) from None


def _key_pair(session: Session, uri: SignerUri) -> tuple[Any, Ed25519PublicKey]:
    try:
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC_EDWARDS, label=uri.label)
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC_EDWARDS, label=uri.label)
    except p11.NoSuchKey:
        raise DiagnosticsError.single(
            "No signer key in the token",
            f"Token {for_terminal(uri.token)!r} holds no Ed25519 key pair labelled {for_terminal(uri.label)!r}. "
            f"Create one with `keyplan hsm signer-key {for_terminal(uri.label)} -token {for_terminal(uri.token)} "
            f"-module {for_terminal(str(uri.module))}`.",
        ) from None
    except p11.MultipleObjectsReturned:
        raise DiagnosticsError.single(
            "Several signer keys carry this label",
            f"Token {for_terminal(uri.token)!r} holds more than one Ed25519 key labelled {for_terminal(uri.label)!r}; "
            "give each signer key its own label.",
        ) from None
    except p11.PKCS11Error as exc:
        raise _diagnostic(token_error(f"finding the signer key {uri.label!r}", exc, token=uri.token)) from None
    return private, _public_key(bytes(cast(Any, public)[Attribute.EC_POINT]))


def _public_key(ec_point: bytes) -> Ed25519PublicKey:
    """CKA_EC_POINT of an Ed25519 key: the 32 bytes, DER-wrapped in an OCTET STRING by most tokens."""
    raw = ec_point[2:] if len(ec_point) == 34 and ec_point[:2] == b"\x04\x20" else ec_point
    return Ed25519PublicKey.from_public_bytes(raw)


def _diagnostic(error: SourceError) -> DiagnosticsError:
    return DiagnosticsError.single(error.summary, error.detail)


def _usage(uri: str, problem: str) -> DiagnosticsError:
    return DiagnosticsError.single(
        "Invalid PKCS#11 signer URI",
        f"{for_terminal(uri)!r}: {problem}. Name the key like {PLUGIN.usage()}.",
    )


def _quote(value: str) -> str:
    return quote(value, safe="/-_.")
