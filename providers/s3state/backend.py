"""The S3 state backend: one object per workspace, written with conditional requests.

Layout, for `key = "keys/prod.kpstate.json"` and the default `workspace_key_prefix = "env:"`:

    keys/prod.kpstate.json                      state of the default workspace
    keys/prod.kpstate.json.lock                 its lock (holder info as JSON)
    keys/prod.kpstate.json.journal/000000000042 one journal group of an apply in progress
    env:/dev/keys/prod.kpstate.json             state of workspace "dev" (and .lock, .journal/)
    keys/prod.kpstate.json.audit/000000000007   entries 7, 8, ... of the audit trail (one append; all workspaces)
    keys/prod.kpstate.json.audit.head           the trail's head record: last entry's number and hash

Concurrency is optimistic and enforced by S3 itself, the way Terraform's S3 backend does it
with `use_lockfile`: the lock object is created with `If-None-Match: *` (exactly one creator
wins), the state is replaced with `If-Match: <ETag it was read at>` (a write based on an older
copy fails with 412 and the user is told to plan again), and the lock is deleted with
`If-Match` on its own ETag. The audit trail cannot fork either: the object of an append starting at entry N is created
with `If-None-Match: *` (of two writers only one creates it; the other chains after it), and the head
record moves with `If-Match` on the ETag it was read at. A writer that finds entry N already
there but the head still at N-1 (its writer was killed in between) moves the head over it first.
With `kms_key_id`, every object is written with SSE-KMS under that
key. In a versioned bucket every state write is a new version and nothing here deletes
versions, so the bucket keeps the state's history.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import botocore.exceptions
import botocore.utils
from botocore.config import Config as BotoConfig
from pydantic import Field

from keyplan.state.backend import (
    DEFAULT_WORKSPACE,
    AuditHead,
    AuditTrail,
    BackendContext,
    LockInfo,
    PreviousCopy,
    StateBackend,
    StateBackendPlugin,
    StateBackendSettings,
    StateError,
    StateErrorKind,
    StoredState,
    audit_entry_hash,
    parse_audit_head,
    valid_workspace_name,
)
from providers.common.boto_sessions import new_session


class S3Settings(StateBackendSettings):
    """The attributes of `state "s3" { ... }`."""

    bucket: str = Field(min_length=3, max_length=63, description="The bucket that holds the state (it must exist).")
    key: str = Field(min_length=1, description="The object key of the default workspace's state, e.g. keyplan/prod.kpstate.json.")
    region: str | None = Field(default=None, description="The bucket's region; default: from the AWS configuration.")
    endpoint: str | None = Field(default=None, description="A URL of an S3-compatible endpoint (MinIO, a local peer).")
    credentials: Literal["default", "local"] = Field(
        default="default",
        description='"default" uses the AWS SDK credential chain; "local" signs with fixed dummy keys, for local peers.',
    )
    profile: str | None = Field(default=None, description="A named profile from the AWS config files.")
    kms_key_id: str | None = Field(
        default=None, description="Encrypt every state object with SSE-KMS under this KMS key (id, ARN or alias)."
    )
    workspace_key_prefix: str = Field(
        default="env:", min_length=1, description="Prefix of the other workspaces' keys: <prefix>/<workspace>/<key>."
    )


class S3Backend(StateBackend):
    # Each PutObject is signed, checksummed and billed, and costs the client and the server more
    # than its round trip: during an apply, journal groups are gathered for 100 ms (the walk frees
    # workers at once, so this delays chains of steps a little, not the apply).
    journal_interval = 0.1

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._audit_lock = threading.Lock()
        self._audit_head_seen: tuple[AuditHead | None, str | None] | None = None  # (head, ETag) last read or written

    # -- the client ----------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        s = self.settings
        config = BotoConfig(
            connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 4}, max_pool_connections=32
        )
        if s.credentials == "local":
            session = new_session(
                aws_access_key_id="keyplan-local", aws_secret_access_key="keyplan-local", region_name=s.region or "us-east-1"
            )
        else:
            session = new_session(profile_name=s.profile, region_name=s.region)
        client = session.client("s3", endpoint_url=s.endpoint, config=config)
        client.meta.events.register_last("before-call.s3", _send_small_bodies_at_once)
        return client

    # -- where things are --------------------------------------------------------------------------

    def state_key(self, workspace: str) -> str:
        if workspace == DEFAULT_WORKSPACE:
            return self.settings.key
        return f"{self.settings.workspace_key_prefix}/{workspace}/{self.settings.key}"

    def lock_key(self, workspace: str) -> str:
        return self.state_key(workspace) + ".lock"

    def journal_prefix(self, workspace: str) -> str:
        return self.state_key(workspace) + ".journal/"

    def describe(self, workspace: str) -> str:
        return f"s3://{self.bucket}/{self.state_key(workspace)}"

    def workspaces(self) -> list[str]:
        found = {DEFAULT_WORKSPACE}
        prefix = self.settings.workspace_key_prefix + "/"
        for key in self._keys(prefix, "list the workspaces in"):
            name, _, rest = key[len(prefix) :].partition("/")
            if valid_workspace_name(name) and (
                rest == self.settings.key or rest.startswith(self.settings.key + ".journal/")
            ):
                found.add(name)
        return sorted(found)

    # -- documents --------------------------------------------------------------------------------

    def read(self, workspace: str) -> StoredState:
        key = self.state_key(workspace)
        data, etag = self._get(key, "read the state from")
        journal = tuple(
            part
            for journal_key in sorted(self._keys(self.journal_prefix(workspace), "read the state journal from"))
            if (part := self._get(journal_key, "read the state journal from")[0]) is not None
        )
        return StoredState(data=data, version=etag, journal=journal, origin=f"s3://{self.bucket}/{key}")

    def write(self, workspace: str, data: bytes, expected_version: str | None) -> str:
        key = self.state_key(workspace)
        condition = {"IfMatch": expected_version} if expected_version is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/json", **condition, **self._sse()
            )
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"):
                raise StateError(
                    StateErrorKind.CONFLICT,
                    "The state changed while this command ran",
                    f"s3://{self.bucket}/{key} was written by someone else since it was read (its ETag no longer "
                    "matches), so this write was refused to keep their changes. Run `keyplan plan` again to see the "
                    "current state.",
                ) from None
            raise self._error(error, "write the state to") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, "write the state to") from None
        self._delete_keys(self._keys(self.journal_prefix(workspace), "clear the state journal in"))
        return str(response["ETag"])

    def previous_copy(self, workspace: str) -> PreviousCopy | None:
        """In a versioned bucket, a deleted state object leaves its versions behind a delete
        marker: the newest is the state as last written. An unversioned bucket (or a user not
        allowed s3:ListBucketVersions) keeps none that keyplan can see."""
        key = self.state_key(workspace)
        try:
            listed = self.client.list_object_versions(Bucket=self.bucket, Prefix=key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return None
        versions = [
            v for v in listed.get("Versions", []) if v.get("Key") == key and v.get("VersionId") not in (None, "null")
        ]
        if not versions:
            return None
        newest = max(versions, key=lambda v: v["LastModified"])
        version_id = str(newest["VersionId"])
        return PreviousCopy(
            f"s3://{self.bucket}/{key} (version {version_id})",
            f"aws s3api copy-object --bucket {shlex.quote(self.bucket)} --key {shlex.quote(key)} "
            f"--copy-source {shlex.quote(f'{self.bucket}/{key}?versionId={version_id}')}",
        )

    def append_journal(self, workspace: str, sequence: int, data: bytes) -> None:
        key = f"{self.journal_prefix(workspace)}{sequence:012d}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", **self._sse())
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise self._error(error, "append to the state journal in") from None

    def delete_workspace(self, workspace: str) -> None:
        keys = [self.state_key(workspace), self.lock_key(workspace)]
        self._delete_keys(keys + self._keys(self.journal_prefix(workspace), "delete the workspace from"))

    # -- locking ----------------------------------------------------------------------------------

    def try_lock(self, info: LockInfo) -> LockInfo | None:
        key = self.lock_key(info.workspace)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=info.model_dump_json(indent=2).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
                **self._sse(),
            )
            return None
        except botocore.exceptions.ClientError as error:
            if _code(error) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise self._error(error, "lock the state in") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, "lock the state in") from None
        holder = self.lock_holder(info.workspace)
        return holder if holder is not None else self.try_lock(info)

    def lock_holder(self, workspace: str) -> LockInfo | None:
        return self._holder(workspace)[0]

    def _holder(self, workspace: str) -> tuple[LockInfo | None, str | None]:
        data, etag = self._get(self.lock_key(workspace), "read the state lock in")
        if data is None:
            return None, None
        try:
            return LockInfo.model_validate_json(data), etag
        except ValueError:
            return LockInfo.for_this_process("unknown").model_copy(
                update={"id": "unreadable", "who": "unknown", "host": "unknown", "pid": 0, "workspace": workspace}
            ), etag

    def unlock(self, workspace: str, lock_id: str) -> None:
        holder, etag = self._holder(workspace)
        if holder is None or holder.id != lock_id or etag is None:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.lock_key(workspace), IfMatch=etag)
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("PreconditionFailed", "NoSuchKey", "412"):
                return  # replaced or removed meanwhile: not ours to delete
            raise self._error(error, "unlock the state in") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, "unlock the state in") from None

    # -- the audit trail -----------------------------------------------------------------------------

    def audit_prefix(self) -> str:
        return self.settings.key + ".audit/"

    def audit_head_key(self) -> str:
        return self.settings.key + ".audit.head"

    def read_audit(self) -> AuditTrail:
        keys = sorted(self._keys(self.audit_prefix(), "read the audit trail from"))
        head, _ = self._get(self.audit_head_key(), "read the audit trail from")
        return AuditTrail(entries=self._audit_entries(keys), head=head, origin=f"s3://{self.bucket}/{self.audit_prefix()}")

    def _audit_entries(self, keys: list[str]) -> tuple[bytes, ...]:
        """The entries of these append objects, in order (each object holds an append's lines)."""
        return tuple(
            line
            for key in keys
            if (data := self._get(key, "read the audit trail from")[0]) is not None
            for line in data.split(b"\n")
            if line.strip()
        )

    def read_audit_tail(self, appends: int) -> AuditTrail:
        """The last `appends` append objects only: one listing, then a GET each, instead of a GET
        for every append the trail ever had."""
        keys = sorted(self._keys(self.audit_prefix(), "read the audit trail from"))[-appends:]
        return AuditTrail(entries=self._audit_entries(keys), head=None, origin=f"s3://{self.bucket}/{self.audit_prefix()}")

    def append_audit(self, make_entries: Callable[[AuditHead | None], Sequence[bytes]]) -> AuditHead:
        """One object per append, named by the number of its first entry, holding its entries as
        lines. The head this process last wrote (and its ETag) is remembered, so an append with
        no other writer in between is two PUTs: the entries, then the head."""
        origin = f"s3://{self.bucket}/{self.audit_prefix()}"
        with self._audit_lock:
            while True:
                if self._audit_head_seen is None:
                    data, etag = self._get(self.audit_head_key(), "read the audit trail from")
                    self._audit_head_seen = (parse_audit_head(data, origin), etag)
                head, etag = self._audit_head_seen
                first = (head.seq if head else 0) + 1
                entries = [entry.rstrip(b"\n") for entry in make_entries(head)]
                key = f"{self.audit_prefix()}{first:012d}"
                if not self._create(key, b"\n".join(entries) + b"\n", "append to the audit trail in"):
                    # Another writer appended from the same head (and may not have moved the
                    # head yet, or was killed before it did): move the head over its entries.
                    self._audit_head_seen = None
                    taken, _ = self._get(key, "read the audit trail from")
                    lines = [line for line in (taken or b"").split(b"\n") if line.strip()]
                    if lines:
                        self._move_audit_head(AuditHead(seq=first + len(lines) - 1, hash=audit_entry_hash(lines[-1])), etag)
                    continue
                new_head = AuditHead(seq=first + len(entries) - 1, hash=audit_entry_hash(entries[-1]))
                moved = self._move_audit_head(new_head, etag)
                # If someone moved the head over these entries first, so much the better; re-read it next time.
                self._audit_head_seen = (new_head, moved) if moved is not None else None
                return new_head

    def _move_audit_head(self, head: AuditHead, expected_etag: str | None) -> str | None:
        """Replace the head if it is still the one read (its ETag); the new ETag, or None if not."""
        condition = {"IfMatch": expected_etag} if expected_etag is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=self.audit_head_key(), Body=head.encode(), ContentType="application/json",
                **condition, **self._sse(),
            )
            return str(response["ETag"])
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return None
            raise self._error(error, "append to the audit trail in") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, "append to the audit trail in") from None

    def _create(self, key: str, data: bytes, doing: str) -> bool:
        """Create `key` if it does not exist; False when it does."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", **self._sse())
            return True
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise self._error(error, doing) from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, doing) from None

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- S3 calls -----------------------------------------------------------------------------------

    def _sse(self) -> dict[str, str]:
        if self.settings.kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.settings.kms_key_id}

    def _get(self, key: str, doing: str) -> tuple[bytes | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read(), str(response["ETag"])
        except botocore.exceptions.ClientError as error:
            if _code(error) in ("NoSuchKey", "404"):
                return None, None
            raise self._error(error, doing) from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, doing) from None

    def _keys(self, prefix: str, doing: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(str(item["Key"]) for item in page.get("Contents", []))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise self._error(error, doing) from None
        return keys

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                raise self._error(error, "delete state objects in") from None

    def _error(self, error: Exception, doing: str) -> StateError:
        where = f"s3://{self.bucket}"
        endpoint = f" at {self.settings.shown('endpoint')}" if self.settings.endpoint else ""
        if isinstance(error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
            return StateError(
                StateErrorKind.AUTH,
                f"No credentials to {doing} {where}",
                "The AWS SDK found no credentials. Set them up (environment, profile, instance role), or name a "
                "profile with `profile` in the state block.",
            )
        if isinstance(error, botocore.exceptions.ClientError):
            code = _code(error)
            if code == "NoSuchBucket":
                return StateError(
                    StateErrorKind.NOT_FOUND,
                    f"The state bucket {self.bucket} does not exist",
                    f"Could not {doing} {where}{endpoint}: no such bucket. Create it (keyplan does not create "
                    "buckets), or correct `bucket` in the state block.",
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "403",
                        "InvalidToken", "KMS.AccessDeniedException", "KMS.NotFoundException"):
                return StateError(
                    StateErrorKind.AUTH,
                    f"Access denied: cannot {doing} {where}",
                    f"S3 refused the request ({code}). Check the credentials keyplan uses (profile, environment) "
                    "and that they may read and write the state objects"
                    + (" and use the KMS key in `kms_key_id`." if self.settings.kms_key_id else "."),
                )
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            kind = StateErrorKind.UNREACHABLE if isinstance(status, int) and status >= 500 else StateErrorKind.FATAL
            return StateError(
                kind, f"Cannot {doing} {where}", f"S3 answered {code} (HTTP {status}). Run the command again; nothing was lost."
            )
        return StateError(
            StateErrorKind.UNREACHABLE,
            f"Cannot reach S3 to {doing} {where}",
            f"{type(error).__name__}{endpoint}: the endpoint did not answer. Check the network, `endpoint` and "
            "`region`, then run the command again; state already written is kept, and an apply's finished steps are "
            "in the journal.",
        )


# Bodies up to this size go with their headers: botocore asks for `Expect: 100-continue` on every
# PutObject, so the client sends the headers, waits a round trip for "100 Continue" and only then
# the body. For a journal group, a lock or an audit entry (a few KiB) that second round trip
# doubles the cost of each write; a large state document keeps it (a refused write then sends no body).
_SEND_AT_ONCE = 1 << 20


def _send_small_bodies_at_once(params: dict[str, Any], **_: Any) -> None:
    """Runs after botocore's own `before-call.s3` handlers, which add the Expect header."""
    length = botocore.utils.determine_content_length(params.get("body"))
    if length is not None and length <= _SEND_AT_ONCE:
        params.get("headers", {}).pop("Expect", None)


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Plugin(StateBackendPlugin[S3Settings]):
    kind = "s3"
    settings_model = S3Settings

    def open(self, settings: S3Settings, context: BackendContext) -> S3Backend:
        return S3Backend(settings)


PLUGIN = S3Plugin()
