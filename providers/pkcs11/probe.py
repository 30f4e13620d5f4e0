"""What a token can really do, found by doing it.

The mechanism list says which algorithms a token can generate, but not which OAEP hashes it
accepts (SoftHSM 2.6.1 lists RSA-OAEP yet refuses SHA-256 with it) nor how it encodes a
private key before wrapping (SoftHSM zero-pads PKCS#8 to a multiple of 8 bytes). So each wrap
method is tried once, inside the token, on a throwaway session AES key under a throwaway RSA
key whose private half keyplan holds; a method counts only if the result unwraps with keyplan's
own `unwrap` to a key with the same check value. The same is done with a throwaway EC key to
see whether the token's PKCS#8 comes out exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, PublicKey, SecretKey, Session, Slot
from pkcs11 import exceptions as p11

from keyplan.algorithms import ALGORITHMS, MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import UnwrapError, WrapMethod, strongest_first, unwrap
from keyplan.provider import SourceCapabilities
from providers.pkcs11.mechanisms import CKM_RSA_AES_KEY_WRAP
from providers.pkcs11.objects import CURVE_PARAMS, public_fingerprint, secret_fingerprint, session_aes_key
from providers.pkcs11.wrapping import import_wrapping_key, wrap_in_token

_PROBE_RSA_BITS = 2048


@dataclass(frozen=True)
class TokenFeatures:
    capabilities: SourceCapabilities
    native_hybrid: frozenset[WrapMethod]  # hybrid methods done with the token's CKM_RSA_AES_KEY_WRAP


def supported_algorithms(slot: Slot, mechanisms: set[int]) -> frozenset[str]:
    names: set[str] = set()
    if {Mechanism.AES_KEY_GEN, Mechanism.AES_ECB} <= mechanisms:
        names.add("AES_256")
    if {Mechanism.GENERIC_SECRET_KEY_GEN, Mechanism.SHA256_HMAC} <= mechanisms:
        names |= {name for name, a in ALGORITHMS.items() if a.kind is MaterialKind.HMAC}
    if Mechanism.RSA_PKCS_KEY_PAIR_GEN in mechanisms:
        info = slot.get_mechanism_info(Mechanism.RSA_PKCS_KEY_PAIR_GEN)
        low, high = info.min_key_length or 0, info.max_key_length or 1 << 20
        names |= {name for name, a in ALGORITHMS.items() if a.kind is MaterialKind.RSA and low <= a.bits <= high}
    if Mechanism.EC_KEY_PAIR_GEN in mechanisms:
        names |= {name for name, a in ALGORITHMS.items() if a.kind is MaterialKind.EC and a.curve in CURVE_PARAMS}
    return frozenset(names)


def probe_token(session: Session, slot: Slot, *, trusted_only: bool) -> TokenFeatures:
    mechanisms = {int(m) for m in slot.get_mechanisms()}
    algorithms, hmac_note = _fingerprintable(session, supported_algorithms(slot, mechanisms))
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=_PROBE_RSA_BITS)
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    wrapping_key = import_wrapping_key(session, spki)
    try:
        methods, native = _working_methods(session, wrapping_key, private_key, mechanisms, trusted_only)
        exact, pkcs8_note = _pkcs8_exactness(session, wrapping_key, private_key, methods, native, algorithms)
    finally:
        wrapping_key.destroy()
    notes = [f"wraps inside the token; probed methods: {', '.join(sorted(m.value for m in methods)) or 'none'}"]
    notes += [note for note in (hmac_note, pkcs8_note) if note]
    if trusted_only and CKM_RSA_AES_KEY_WRAP not in mechanisms:
        notes.append(
            "wrap_with_trusted: hybrid methods need CKM_RSA_AES_KEY_WRAP, which this token lacks "
            "(a session AES key cannot be trusted)"
        )
    capabilities = SourceCapabilities(
        algorithms=algorithms,
        wrap_methods=frozenset(methods),
        exact_pkcs8=exact,
        wraps_in_hardware=True,
        trusted_wrapping_only=trusted_only,
        trust_command="keyplan hsm trust" if trusted_only else None,
        notes=tuple(notes),
    )
    return TokenFeatures(capabilities=capabilities, native_hybrid=frozenset(native))


def _fingerprintable(session: Session, algorithms: frozenset[str]) -> tuple[frozenset[str], str | None]:
    """Drops HMAC sizes the token cannot fingerprint: the fingerprint is HMAC-SHA256 computed
    inside the token, and some tokens (SoftHSM) refuse HMAC keys shorter than the digest."""
    refused: list[str] = []
    for name in sorted(n for n in algorithms if ALGORITHMS[n].kind is MaterialKind.HMAC):
        bits = ALGORITHMS[name].bits
        key = session.generate_key(KeyType.GENERIC_SECRET, bits, store=False, capabilities=MechanismFlag.SIGN)
        try:
            secret_fingerprint(key)
        except p11.PKCS11Error:
            refused.append(name)
        finally:
            key.destroy()
    if not refused:
        return algorithms, None
    note = f"{', '.join(refused)}: the token refuses HMAC-SHA256 with keys this short, so their fingerprint cannot be computed in it"
    return algorithms - set(refused), note


def _working_methods(
    session: Session,
    wrapping_key: PublicKey,
    private_key: rsa.RSAPrivateKey,
    mechanisms: set[int],
    trusted_only: bool,
) -> tuple[set[WrapMethod], set[WrapMethod]]:
    if not {Mechanism.AES_KEY_GEN, Mechanism.AES_ECB} <= mechanisms:
        return set(), set()
    test_key = session_aes_key(session, MechanismFlag.ENCRYPT)
    try:
        expected = secret_fingerprint(test_key)

        def round_trips(method: WrapMethod, native_hybrid: bool) -> bool:
            return _round_trips(session, wrapping_key, test_key, method, native_hybrid, private_key, expected)

        methods: set[WrapMethod] = set()
        native: set[WrapMethod] = set()
        for method in WrapMethod:
            if not method.hybrid:
                if Mechanism.RSA_PKCS_OAEP in mechanisms and round_trips(method, False):
                    methods.add(method)
            elif CKM_RSA_AES_KEY_WRAP in mechanisms and round_trips(method, True):
                methods.add(method)
                native.add(method)
            elif not trusted_only and Mechanism.AES_KEY_WRAP_PAD in mechanisms and round_trips(method, False):
                methods.add(method)
        return methods, native
    finally:
        test_key.destroy()


def _round_trips(
    session: Session,
    wrapping_key: PublicKey,
    test_key: SecretKey,
    method: WrapMethod,
    native_hybrid: bool,
    private_key: rsa.RSAPrivateKey,
    expected: str,
) -> bool:
    try:
        blob = wrap_in_token(session, wrapping_key, test_key, method, native_hybrid=native_hybrid)
        return fingerprint_material(MaterialKind.SYMMETRIC, unwrap(method, private_key, blob)) == expected
    except (p11.PKCS11Error, UnwrapError):
        return False


def _pkcs8_exactness(
    session: Session,
    wrapping_key: PublicKey,
    private_key: rsa.RSAPrivateKey,
    methods: set[WrapMethod],
    native: set[WrapMethod],
    algorithms: frozenset[str],
) -> tuple[bool, str | None]:
    hybrid = [m for m in strongest_first(methods) if m.hybrid]
    if not hybrid or "EC_P256" not in algorithms:
        return False, None
    method = hybrid[0]
    parameters = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: CURVE_PARAMS["P-256"]}, local=True)
    public, private = parameters.generate_keypair(
        store=False, private_template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True}
    )
    try:
        blob = wrap_in_token(session, wrapping_key, private, method, native_hybrid=method in native)
        raw = unwrap(method, private_key, blob).reveal()
        length = _der_length(raw)
        padded = raw[length:]
        exact = not padded
        expected = public_fingerprint(public)
        matches = fingerprint_material(MaterialKind.EC, SecretBytes(raw[:length])) == expected
    except (p11.PKCS11Error, UnwrapError, ValueError):
        return False, "private keys: the token's PKCS#8 output could not be checked"
    finally:
        private.destroy()
        public.destroy()
    if not matches:
        return False, "private keys: the token's PKCS#8 output does not match its public key"
    if exact:
        return True, None
    return False, (
        f"private keys: the token zero-pads PKCS#8 to a multiple of 8 bytes before wrapping "
        f"({len(padded)} extra bytes for P-256); clouds may refuse it, so treat asymmetric imports from this token as test-only"
    )


def _der_length(data: bytes) -> int:
    if len(data) < 2 or data[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    if data[1] < 0x80:
        return 2 + data[1]
    count = data[1] & 0x7F
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")
