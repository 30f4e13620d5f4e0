"""How keyplan's keys map onto KMS keys: key specs and usages, key and material states, the
`keyplan-address` tag's encoding, and KMS answers turned into `RemoteKey`s.

Asymmetric and HMAC keys keep their one material for life, so their only version id is
`SINGLE_MATERIAL_VERSION`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from keyplan.algorithms import KeyUsage
from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAG_MANAGED_BY,
    RESERVED_TAGS,
    KeyState,
    RemoteKey,
    RemoteVersion,
    VersionState,
)

SINGLE_MATERIAL_VERSION = "1"

# keyplan algorithm -> (KMS KeySpec, {keyplan usage: KMS KeyUsage})
KEY_SPECS: dict[str, tuple[str, dict[KeyUsage, str]]] = {
    "AES_256": ("SYMMETRIC_DEFAULT", {KeyUsage.ENCRYPT: "ENCRYPT_DECRYPT"}),
    "HMAC_SHA224": ("HMAC_224", {KeyUsage.MAC: "GENERATE_VERIFY_MAC"}),
    "HMAC_SHA256": ("HMAC_256", {KeyUsage.MAC: "GENERATE_VERIFY_MAC"}),
    "HMAC_SHA384": ("HMAC_384", {KeyUsage.MAC: "GENERATE_VERIFY_MAC"}),
    "HMAC_SHA512": ("HMAC_512", {KeyUsage.MAC: "GENERATE_VERIFY_MAC"}),
    "RSA_2048": ("RSA_2048", {KeyUsage.SIGN: "SIGN_VERIFY", KeyUsage.DECRYPT: "ENCRYPT_DECRYPT"}),
    "RSA_3072": ("RSA_3072", {KeyUsage.SIGN: "SIGN_VERIFY", KeyUsage.DECRYPT: "ENCRYPT_DECRYPT"}),
    "RSA_4096": ("RSA_4096", {KeyUsage.SIGN: "SIGN_VERIFY", KeyUsage.DECRYPT: "ENCRYPT_DECRYPT"}),
    "EC_P256": ("ECC_NIST_P256", {KeyUsage.SIGN: "SIGN_VERIFY"}),
    "EC_P384": ("ECC_NIST_P384", {KeyUsage.SIGN: "SIGN_VERIFY"}),
}
ALGORITHM_OF_SPEC = {spec: name for name, (spec, _) in KEY_SPECS.items()}
# PKCS#8 DER sizes of EC private keys with their public key (BYOK.md §1), for the direct-OAEP limit.
PKCS8_SIZES = {"P-256": 138, "P-384": 185}

KEY_STATES = {
    "Creating": KeyState.CREATING,
    "Enabled": KeyState.ENABLED,
    "Disabled": KeyState.DISABLED,
    "PendingDeletion": KeyState.PENDING_DELETION,
    "PendingReplicaDeletion": KeyState.PENDING_DELETION,
    "PendingImport": KeyState.PENDING_IMPORT,
    "Unavailable": KeyState.UNAVAILABLE,
    "Updating": KeyState.UNAVAILABLE,
}

# Tag values keep to the characters every AWS tagging surface accepts; anything else is written
# as @xx (hex), so `key.app["prod"]` becomes `key.app@5b@22prod@22@5d` and decodes without a table.
_TAG_SAFE = re.compile(r"[A-Za-z0-9 _.:/=+\-]")
_HASHED_PREFIX = "sha256:"


def encode_address(address: str) -> str:
    encoded = "".join(c if _TAG_SAFE.fullmatch(c) else "".join(f"@{b:02x}" for b in c.encode()) for c in address)
    if len(encoded) <= 256:
        return encoded
    # Too long for a tag value: store a digest and recognise it among the addresses the core lists.
    return _HASHED_PREFIX + hashlib.sha256(address.encode()).hexdigest()


def decode_address(value: str, addresses: Iterable[str] = ()) -> str | None:
    if value.startswith(_HASHED_PREFIX):
        return next((a for a in addresses if encode_address(a) == value), None)
    try:
        return re.sub(rb"@([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), value.encode()).decode()
    except UnicodeDecodeError:
        return None



def reserved_tags(address: str, managed_by: str) -> dict[str, str]:
    return {RESERVED_TAG_ADDRESS: encode_address(address), RESERVED_TAG_MANAGED_BY: managed_by}


def utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


_MATERIAL_STATES = {
    "CURRENT": VersionState.ENABLED,
    "NON_CURRENT": VersionState.ENABLED,
    "PENDING_ROTATION": VersionState.PENDING_ROTATION,
    "PENDING_MULTI_REGION_IMPORT_AND_ROTATION": VersionState.PENDING_ROTATION,
}


def rotation_version(rotation: dict[str, Any]) -> RemoteVersion:
    """One entry of ListKeyRotations (IncludeKeyMaterial=ALL_KEY_MATERIAL) as a version."""
    imported = rotation.get("ImportState", "IMPORTED") == "IMPORTED"
    state = _MATERIAL_STATES.get(rotation.get("KeyMaterialState", ""), VersionState.ENABLED)
    return RemoteVersion(
        version_id=rotation["KeyMaterialId"],
        state=state if imported else VersionState.PENDING_IMPORT,
        current=rotation.get("KeyMaterialState") == "CURRENT",
        imported=imported,
        expires_at=utc(rotation.get("ValidTo")),
        created_at=utc(rotation.get("RotationDate")),
    )


def single_material_version(metadata: dict[str, Any]) -> tuple[RemoteVersion, ...]:
    """The one version of an asymmetric or HMAC key."""
    if metadata.get("KeyState") == "PendingImport":
        return (RemoteVersion(version_id=SINGLE_MATERIAL_VERSION, state=VersionState.PENDING_IMPORT),)
    return (
        RemoteVersion(
            version_id=SINGLE_MATERIAL_VERSION,
            state=VersionState.ENABLED,
            current=True,
            expires_at=utc(metadata.get("ValidTo")),
        ),
    )


def remote_key(
    metadata: dict[str, Any],
    tags: dict[str, str],
    aliases: list[str],
    addresses: Iterable[str],
    versions: tuple[RemoteVersion, ...] | None = None,
) -> RemoteKey:
    """A KMS key (DescribeKey's KeyMetadata, its tags and aliases) as keyplan sees it."""
    symmetric = metadata.get("KeySpec") == "SYMMETRIC_DEFAULT"
    state = KEY_STATES.get(metadata.get("KeyState", ""), KeyState.UNAVAILABLE)
    current = metadata.get("CurrentKeyMaterialId") if symmetric else None
    if not symmetric and state is not KeyState.PENDING_IMPORT:
        current = SINGLE_MATERIAL_VERSION
    address_tag = tags.get(RESERVED_TAG_ADDRESS)
    return RemoteKey(
        remote_id=metadata["Arn"],
        address=decode_address(address_tag, addresses) if address_tag else None,
        managed_by=tags.get(RESERVED_TAG_MANAGED_BY),
        algorithm=ALGORITHM_OF_SPEC.get(metadata.get("KeySpec", "")),
        external=metadata.get("Origin") == "EXTERNAL",
        state=state,
        enabled=bool(metadata.get("Enabled")),
        labels={k: v for k, v in tags.items() if k not in RESERVED_TAGS},
        aliases=tuple(sorted(aliases)),
        description=metadata.get("Description") or None,
        expires_at=utc(metadata.get("ValidTo")),
        current_version=current,
        versions=versions,
        deletion_date=utc(metadata.get("DeletionDate")),
    )
