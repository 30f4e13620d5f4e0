"""The `google-cloud-kms` REST client keyplan drives, and the three ways it is called: one
call, a listing, and a wait until a long-running state settles. The SDK loads only here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from keyplan.limits import TargetLimits
from keyplan.provider import ErrorKind, ProviderError
from providers.common.limited import admitted
from providers.gcp.errors import classify
from providers.gcp.quotas import is_read, operation_of
from providers.gcp.settings import GcpSettings

if TYPE_CHECKING:
    from google.cloud.kms_v1 import KeyManagementServiceClient

T = TypeVar("T")


def make_client(endpoint: str | None, local: bool) -> KeyManagementServiceClient:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.kms_v1 import KeyManagementServiceClient

    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    # None: Application Default Credentials
    credentials = AnonymousCredentials() if local else None  # type: ignore[no-untyped-call]
    return KeyManagementServiceClient(transport="rest", credentials=credentials, client_options=options)


class KmsCalls:
    """Calls with the SDK's retries off, the provider's deadline, and failures classified."""

    def __init__(self, settings: GcpSettings, limits: TargetLimits) -> None:
        self.settings = settings
        self.limits = limits

    def call(self, action: str, method: Callable[..., T], remote_id: str | None = None, **kwargs: Any) -> T:
        """One call, admitted through the limiter of its class (read or write)."""

        def send() -> T:
            try:
                return method(retry=None, timeout=self.settings.timeout_seconds, **kwargs)
            except Exception as exc:
                raise classify(exc, action, remote_id) from exc

        operation = operation_of(method)
        return admitted(self.limits, operation, send, read=is_read(operation))

    def list(self, action: str, method: Callable[..., Iterable[T]], request: dict[str, Any]) -> list[T]:
        """A whole listing (every page), admitted as one read."""

        def send() -> list[T]:
            try:
                return list(method(request=request, retry=None, timeout=self.settings.timeout_seconds))
            except Exception as exc:
                raise classify(exc, action) from exc

        return admitted(self.limits, operation_of(method), send, read=True)

    def wait(self, what: str, poll: Callable[[], T], settled: Callable[[T], bool], first: T) -> T:
        """Poll with short sleeps and backoff until `settled`, bounded by import_wait_seconds."""
        deadline = time.monotonic() + self.settings.import_wait_seconds
        delay, current = 0.05, first
        while not settled(current):
            if time.monotonic() > deadline:
                raise ProviderError(
                    ErrorKind.RETRYABLE,
                    f"Google Cloud KMS did not finish {what} in time",
                    f"It was still in progress after {self.settings.import_wait_seconds:.0f} seconds. keyplan "
                    "retries; raise import_wait_seconds if this keeps happening.",
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            current = poll()
        return current
