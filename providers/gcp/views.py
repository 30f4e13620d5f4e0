"""Cloud KMS objects (SDK messages) as keyplan's `RemoteKey` and `RemoteVersion`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAG_MANAGED_BY,
    KeyState,
    RemoteKey,
    RemoteVersion,
)
from providers.gcp.mapping import (
    VERSION_STATES,
    VersionView,
    current_version,
    decode_label_value,
    encode_label_value,
    key_state,
    keyplan_algorithm_name,
)

if TYPE_CHECKING:
    from google.cloud.kms_v1 import CryptoKey, CryptoKeyVersion


def when(value: Any) -> datetime | None:
    """A proto timestamp from the SDK as an aware datetime (None when unset)."""
    if not value or not isinstance(value, datetime) or value.timestamp() <= 0:
        return None
    return datetime.fromtimestamp(value.timestamp(), UTC)


def version_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def primary_settles(key: CryptoKey, *, known: bool = True) -> bool:
    """Whether the listing alone tells the key's state: the primary stands for the key (see
    `mapping.current_version`), except that a destruction date is the latest of all versions'
    and a key state does not know needs its versions to tell whether all were destroyed."""
    if not key.primary.name:
        return False
    state = key.primary.state.name
    return state in ("ENABLED", "DISABLED") or (known and state != "DESTROY_SCHEDULED")


def version_views(versions: list[CryptoKeyVersion] | None) -> list[VersionView]:
    return [VersionView(version_id(v.name), v.state.name) for v in versions or []]


def remote_key(
    key: CryptoKey,
    versions: list[CryptoKeyVersion] | None,
    lookup: dict[str, str],
    managed_by: str | None,
    *,
    with_versions: bool,
) -> RemoteKey:
    labels = dict(key.labels)
    address = decode_label_value(labels.pop(RESERVED_TAG_ADDRESS, None), lookup)
    managed_value = labels.pop(RESERVED_TAG_MANAGED_BY, None)
    if managed_by is not None and managed_value == encode_label_value(managed_by):
        owner: str | None = managed_by
    else:
        owner = decode_label_value(managed_value) or managed_value
    primary = VersionView(version_id(key.primary.name), key.primary.state.name) if key.primary.name else None
    current = current_version(primary, version_views(versions))
    state = key_state(current)
    current_id = current.version_id if current else None
    scheduled = [when(v.destroy_time) for v in versions or [] if v.state.name == "DESTROY_SCHEDULED"]
    if primary is not None and primary.state == "DESTROY_SCHEDULED":
        scheduled.append(when(key.primary.destroy_time))
    deletion = max((d for d in scheduled if d), default=None) if state is KeyState.PENDING_DELETION else None
    return RemoteKey(
        remote_id=key.name,
        address=address,
        managed_by=owner,
        algorithm=keyplan_algorithm_name(key.version_template.algorithm.name),
        external=bool(key.import_only) or any(v.import_job for v in versions or []),
        state=state,
        enabled=state is KeyState.ENABLED,
        labels=labels,
        current_version=current_id,
        versions=tuple(remote_version(v, current_id) for v in versions)
        if with_versions and versions is not None
        else None,
        deletion_date=deletion,
    )


def remote_version(version: CryptoKeyVersion, current_id: str | None) -> RemoteVersion:
    number = version_id(version.name)
    return RemoteVersion(
        version_id=number,
        state=VERSION_STATES.get(version.state.name, VERSION_STATES["IMPORT_FAILED"]),
        current=number == current_id,
        imported=bool(version.import_job),
        created_at=when(version.create_time),
    )
