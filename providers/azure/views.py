"""Azure SDK objects (key properties, keys, deleted keys) as keyplan's `RemoteKey` and
`RemoteVersion`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAG_MANAGED_BY,
    RESERVED_TAGS,
    KeyState,
    RemoteKey,
    RemoteVersion,
    VersionState,
)
from providers.azure.mapping import algorithm_from_jwk, jwk_member

if TYPE_CHECKING:
    from azure.keyvault.keys import DeletedKey, KeyProperties, KeyVaultKey


def version_state(props: KeyProperties, now: datetime) -> VersionState:
    if props.expires_on is not None and props.expires_on <= now:
        return VersionState.EXPIRED
    return VersionState.ENABLED if props.enabled else VersionState.DISABLED


def remote_versions(listed: list[KeyProperties], current: str | None, now: datetime) -> tuple[RemoteVersion, ...]:
    """A key's versions, oldest first; `current` is the version its versionless id resolves to."""
    listed = sorted(listed, key=lambda p: p.created_on or datetime.min.replace(tzinfo=UTC))
    return tuple(
        RemoteVersion(
            version_id=p.version or "",
            state=version_state(p, now),
            current=p.version == current,
            imported=True,
            expires_at=p.expires_on,
            created_at=p.created_on,
        )
        for p in listed
    )


def remote_key(
    props: KeyProperties,
    remote_id: str,
    known: dict[str, str],
    *,
    key: KeyVaultKey | DeletedKey | None = None,
    versions: tuple[RemoteVersion, ...] | None = None,
) -> RemoteKey:
    tags = dict(props.tags or {})
    jwk = key.key if key is not None else None
    algorithm = algorithm_from_jwk(jwk_member(jwk, "kty"), jwk_member(jwk, "n"), jwk_member(jwk, "crv"))
    enabled = bool(props.enabled)
    return RemoteKey(
        remote_id=remote_id,
        address=tags.get(RESERVED_TAG_ADDRESS) or known.get(remote_id),
        managed_by=tags.get(RESERVED_TAG_MANAGED_BY),
        algorithm=algorithm,
        external=True,
        state=KeyState.ENABLED if enabled else KeyState.DISABLED,
        enabled=enabled,
        labels={k: v for k, v in tags.items() if k not in RESERVED_TAGS},
        expires_at=props.expires_on,
        current_version=props.version,
        versions=versions,
    )


def remote_deleted(deleted: DeletedKey, remote_id: str, known: dict[str, str]) -> RemoteKey:
    base = remote_key(deleted.properties, remote_id, known, key=deleted if deleted.key else None)
    return base.model_copy(update={"state": KeyState.DELETED, "deletion_date": deleted.scheduled_purge_date})
