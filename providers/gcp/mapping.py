"""Translations between keyplan's vocabulary and Google Cloud KMS's: algorithms and purposes,
wrap methods and import methods, label encoding, key ids and key states.

Pure functions over names and strings; nothing here imports the Google SDK, so the static half
of the provider (validation, planning) stays cheap to load.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from keyplan.algorithms import Algorithm, KeyUsage, MaterialKind
from keyplan.crypto.wrap import WrapMethod
from keyplan.provider import KeyState, VersionState

KIND_KEY_RING = "gcp_key_ring"
KIND_IMPORT_JOB = "gcp_import_job"

# ---------------------------------------------------------------------------------------------
# Algorithms
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcpKeyType:
    purpose: str  # CryptoKey.purpose
    algorithm: str  # CryptoKeyVersion.algorithm


SYMMETRIC_ENCRYPTION = "GOOGLE_SYMMETRIC_ENCRYPTION"  # Encrypt/Decrypt; Google's own ciphertext format
RAW_AES_GCM = "AES_256_GCM"  # RawEncrypt/RawDecrypt; standard AES-GCM ciphertexts


def gcp_key_type(algorithm: Algorithm, usage: KeyUsage, symmetric: str = SYMMETRIC_ENCRYPTION) -> GcpKeyType | None:
    """The purpose and algorithm keyplan creates for one of its algorithms, or None if GCP has none.
    `symmetric` chooses what an AES key is: GOOGLE_SYMMETRIC_ENCRYPTION (purpose ENCRYPT_DECRYPT)
    or raw AES_256_GCM (purpose RAW_ENCRYPT_DECRYPT)."""
    if algorithm.name == "AES_256" and usage is KeyUsage.ENCRYPT:
        if symmetric == RAW_AES_GCM:
            return GcpKeyType("RAW_ENCRYPT_DECRYPT", RAW_AES_GCM)
        return GcpKeyType("ENCRYPT_DECRYPT", SYMMETRIC_ENCRYPTION)
    if algorithm.kind is MaterialKind.HMAC and usage is KeyUsage.MAC:
        return GcpKeyType("MAC", algorithm.name)  # HMAC_SHA224 … HMAC_SHA512 share keyplan's names
    if algorithm.kind is MaterialKind.RSA and algorithm.bits in (2048, 3072, 4096):
        if usage is KeyUsage.SIGN:
            return GcpKeyType("ASYMMETRIC_SIGN", f"RSA_SIGN_PSS_{algorithm.bits}_SHA256")
        if usage is KeyUsage.DECRYPT:
            return GcpKeyType("ASYMMETRIC_DECRYPT", f"RSA_DECRYPT_OAEP_{algorithm.bits}_SHA256")
    if algorithm.kind is MaterialKind.EC and usage is KeyUsage.SIGN:
        return {
            "P-256": GcpKeyType("ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256"),
            "P-384": GcpKeyType("ASYMMETRIC_SIGN", "EC_SIGN_P384_SHA384"),
        }.get(algorithm.curve or "")
    return None


def keyplan_algorithm_name(gcp_algorithm: str) -> str | None:
    """keyplan's name for a GCP version algorithm, when keyplan manages that kind of key."""
    if gcp_algorithm in (SYMMETRIC_ENCRYPTION, RAW_AES_GCM):
        return "AES_256"
    if gcp_algorithm in ("HMAC_SHA224", "HMAC_SHA256", "HMAC_SHA384", "HMAC_SHA512"):
        return gcp_algorithm
    match = re.fullmatch(r"RSA_(?:SIGN_PSS|DECRYPT_OAEP)_(2048|3072|4096)_SHA256", gcp_algorithm)
    if match:
        return f"RSA_{match.group(1)}"
    return {"EC_SIGN_P256_SHA256": "EC_P256", "EC_SIGN_P384_SHA384": "EC_P384"}.get(gcp_algorithm)


# ---------------------------------------------------------------------------------------------
# Import methods
# ---------------------------------------------------------------------------------------------

IMPORT_METHODS: dict[tuple[WrapMethod, int], str] = {
    (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 4096): "RSA_OAEP_4096_SHA256_AES_256",
    (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 3072): "RSA_OAEP_3072_SHA256_AES_256",
    (WrapMethod.RSAES_OAEP_SHA_256, 4096): "RSA_OAEP_4096_SHA256",
    (WrapMethod.RSAES_OAEP_SHA_256, 3072): "RSA_OAEP_3072_SHA256",
    (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 4096): "RSA_OAEP_4096_SHA1_AES_256",
    (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 3072): "RSA_OAEP_3072_SHA1_AES_256",
}
WRAPS_BY_IMPORT_METHOD = {name: pair for pair, name in IMPORT_METHODS.items()}


def import_method_name(method: WrapMethod, wrapping_key_bits: int) -> str:
    try:
        return IMPORT_METHODS[(method, wrapping_key_bits)]
    except KeyError:
        raise ValueError(
            f"Google Cloud KMS has no import method for {method.value} with RSA-{wrapping_key_bits}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

_PLAIN_VALUE = re.compile(r"^[a-z0-9-]{0,63}$")
_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HASHED_MARK = "_z"  # never produced by the escaping below ("_" is always followed by two hex digits)


def _escape(text: str) -> str:
    return "".join(chr(b) if chr(b) in _LITERAL else f"_{b:02x}" for b in text.encode())


def encode_label_value(text: str) -> str:
    """A label value standing for `text`. GCP label values allow only `[a-z0-9_-]{0,63}`, so
    other bytes are escaped as `_xx` (reversible); text too long for that becomes a readable slug
    plus a hash (matchable against known addresses)."""
    if _PLAIN_VALUE.match(text):
        return text
    escaped = _escape(text)
    if len(escaped) <= 63:
        return escaped
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:45]
    return f"{slug}{_HASHED_MARK}{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def decode_label_value(value: str | None, candidates: dict[str, str] | None = None) -> str | None:
    """The text a label value stands for: unescaped, or looked up in `candidates`
    (encoded -> text) when it is the hashed form; None when it cannot be recovered."""
    if value is None:
        return None
    if candidates and value in candidates:
        return candidates[value]
    if _HASHED_MARK in value:
        return None
    raw = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "_":
            try:
                raw.append(int(value[i + 1 : i + 3], 16))
            except ValueError:
                return None
            i += 3
        else:
            raw.extend(value[i].encode())
            i += 1
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


_LABEL_KEY_FIRST = re.compile(r"^[a-z]")


def label_problems(key: str, value: str) -> list[str]:
    """Why a user label breaks Google's rules (empty when it is fine)."""
    problems = []
    if not 1 <= len(key) <= 63:
        problems.append(f"label key {key!r} must be 1 to 63 characters long")
    if not _LABEL_KEY_FIRST.match(key) or not all(c.islower() or c.isdigit() or c in "_-" for c in key):
        problems.append(
            f"label key {key!r} must start with a lowercase letter and hold only lowercase letters, digits, '_' and '-'"
        )
    if len(value) > 63:
        problems.append(f"label value of {key!r} must be at most 63 characters long")
    if not all(c.islower() or c.isdigit() or c in "_-" for c in value):
        problems.append(f"label value of {key!r} may hold only lowercase letters, digits, '_' and '-'")
    return problems


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


def crypto_key_id(address: str, attempt: int = 0) -> str:
    """A CryptoKey id for a keyplan address: readable, stable, `[a-zA-Z0-9_-]{1,63}`.

    Keys cannot be deleted at GCP, so a name whose key was destroyed stays taken; `attempt`
    numbers the alternatives tried after it."""
    slug = re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-").removeprefix("key-")[:40].strip("-")
    digest = hashlib.sha256(address.encode()).hexdigest()[:8]
    base = f"{slug}-{digest}" if slug else f"keyplan-{digest}"
    return base if attempt == 0 else f"{base}-{attempt + 1}"


def import_job_prerequisite_id(ring: str, import_method: str, protection_level: str) -> str:
    return f"import_job:{ring}:{import_method}:{protection_level}"


def key_ring_prerequisite_id(ring: str) -> str:
    return f"key_ring:{ring}"


# ---------------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------------

VERSION_STATES = {
    "ENABLED": VersionState.ENABLED,
    "DISABLED": VersionState.DISABLED,
    "DESTROYED": VersionState.DESTROYED,
    "DESTROY_SCHEDULED": VersionState.DESTROY_SCHEDULED,
    "PENDING_IMPORT": VersionState.PENDING_IMPORT,
    "PENDING_GENERATION": VersionState.PENDING_IMPORT,
    "IMPORT_FAILED": VersionState.IMPORT_FAILED,
    "GENERATION_FAILED": VersionState.IMPORT_FAILED,
}

# Versions that hold material, or held it and can get it back (re-import into a DESTROYED one).
MATERIAL_VERSION_STATES = ("ENABLED", "DISABLED", "DESTROY_SCHEDULED", "DESTROYED")


@dataclass(frozen=True)
class VersionView:
    """The parts of a CryptoKeyVersion the key state depends on."""

    version_id: str
    state: str


def _number(version: VersionView) -> int:
    return int(version.version_id) if version.version_id.isdigit() else 0


def current_version(primary: VersionView | None, versions: list[VersionView]) -> VersionView | None:
    """The version that stands for the key.

    For a key with a primary that is the primary, whatever its state: Cloud KMS keeps a version
    primary when it is disabled, scheduled for destruction or destroyed, and encryption fails
    until it is usable again, so another enabled version does not make the key whole. Keys
    without a primary (asymmetric and MAC keys, whose callers name versions) are represented by
    their newest version that holds or held material."""
    if primary is not None:
        return primary
    held = [v for v in versions if v.state in MATERIAL_VERSION_STATES]
    return max(held, key=_number, default=None)


def key_state(current: VersionView | None) -> KeyState:
    """keyplan's state of a key from the version that stands for it.

    A DESTROYED version is `PENDING_IMPORT`, not `DELETED`: nothing can cancel a destruction
    that happened, but importing the same material into that version again restores it, which
    is what keyplan plans for a key waiting for its material. `DESTROY_SCHEDULED` is
    `PENDING_DELETION`: restoring the version cancels it (the version comes back DISABLED)."""
    if current is None:
        return KeyState.PENDING_IMPORT
    return {
        "ENABLED": KeyState.ENABLED,
        "DISABLED": KeyState.DISABLED,
        "DESTROY_SCHEDULED": KeyState.PENDING_DELETION,
    }.get(current.state, KeyState.PENDING_IMPORT)


def spent(versions: list[VersionView]) -> bool:
    """Whether every version was destroyed (or failed): the key holds nothing, and only someone
    who still has the material of a destroyed version can bring it back."""
    return (
        bool(versions)
        and all(v.state in ("DESTROYED", "IMPORT_FAILED", "GENERATION_FAILED") for v in versions)
        and any(v.state == "DESTROYED" for v in versions)
    )
