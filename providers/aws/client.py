"""The boto3 KMS client keyplan drives: one per provider, shared by all threads, its own retries
off, every failure classified; and KMS's Marker/NextMarker paging."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from keyplan.limits import TargetLimits
from keyplan.provider import ErrorKind, ProviderError
from providers.aws.errors import classify
from providers.aws.quotas import CONSISTENCY_WINDOW, READS
from providers.aws.settings import LOCAL_ACCESS_KEY, AwsSettings
from providers.common.boto_sessions import new_session
from providers.common.limited import admitted


@functools.cache
def _method_name(operation: str) -> str:
    """boto3's method for a KMS operation: CreateKey -> create_key."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class KmsClient:
    """`call("DescribeKey", remote_id, KeyId=...)` on one region's KMS endpoint."""

    def __init__(self, settings: AwsSettings, endpoint: str | None, *, local: bool, limits: TargetLimits) -> None:
        self.settings = settings
        self.limits = limits
        self._created: dict[str, float] = {}  # remote id -> when this run created it
        self._created_lock = threading.Lock()
        try:
            self._client = self._make_client(endpoint, local)
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a classified ProviderError
            raise classify(exc, "client setup", None, settings) from None

    def _make_client(self, endpoint: str | None, local: bool) -> Any:
        from botocore.config import Config

        config = Config(
            region_name=self.settings.region,
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, self.settings.max_concurrency * 2),
        )
        if local:
            session = new_session(
                aws_access_key_id=LOCAL_ACCESS_KEY,
                aws_secret_access_key=LOCAL_ACCESS_KEY,
                region_name=self.settings.region,
            )
        else:
            session = new_session(profile_name=self.settings.profile, region_name=self.settings.region)
            if self.settings.assume_role_arn:
                session = self._assumed_session(session)
        return session.client("kms", endpoint_url=endpoint, config=config)

    def _assumed_session(self, session: Any) -> Any:
        role = session.client("sts").assume_role(RoleArn=self.settings.assume_role_arn, RoleSessionName="keyplan")
        creds = role["Credentials"]
        return new_session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=self.settings.region,
        )

    def call(self, operation: str, remote_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """One KMS call, admitted through the limiter of its operation class."""
        method = getattr(self._client, _method_name(operation))

        def send() -> dict[str, Any]:
            try:
                result: dict[str, Any] = method(**kwargs)
            except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a classified ProviderError
                raise classify(exc, operation, remote_id, self.settings) from None
            return result

        attempt = 0
        while True:
            try:
                return admitted(self.limits, operation, send, read=operation in READS)
            except ProviderError as error:
                # KMS is eventually consistent: a key this run just created may answer NotFound
                # for a while. Retried within a bounded window, never taken for a deleted key.
                if error.kind is not ErrorKind.NOT_FOUND or not self._just_created(remote_id):
                    raise
                attempt += 1
                time.sleep(min(2.0, 0.125 * 2**attempt))  # 0.25 s, 0.5 s, 1 s, then every 2 s

    def created(self, remote_id: str) -> None:
        """Note a key this run created: NotFound about it is the cloud catching up for a while."""
        with self._created_lock:
            self._created[remote_id] = time.monotonic()

    def _just_created(self, remote_id: str | None) -> bool:
        with self._created_lock:
            when = self._created.get(remote_id or "")
        return when is not None and time.monotonic() - when < CONSISTENCY_WINDOW

    def pages(self, operation: str, field: str, remote_id: str | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        marker: str | None = None
        while True:
            page = self.call(operation, remote_id, **kwargs, **({"Marker": marker} if marker else {}))
            yield from page.get(field, [])
            marker = page.get("NextMarker")
            if not page.get("Truncated") or not marker:
                return

    def close(self) -> None:
        self._client.close()
