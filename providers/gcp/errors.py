"""SDK and transport failures as `ProviderError`s (the SDK's own retries are off: keyplan's
apply walker retries what is classified RETRYABLE)."""

from __future__ import annotations

from keyplan.provider import ErrorKind, ProviderError
from providers.common.limited import retry_after_seconds


def google_status(exc: BaseException) -> str | None:
    """The canonical code (`FAILED_PRECONDITION`, …) of a REST error body: over REST the SDK picks
    its exception class from the HTTP status alone, and 400 covers several codes."""
    response = getattr(exc, "response", None)
    try:
        status = response.json()["error"]["status"] if response is not None else None
    except Exception:
        return None
    return status if isinstance(status, str) else None


def service_message(exc: BaseException | None) -> str:
    """Cloud KMS's own sentence for a failure (its first line)."""
    if exc is None:
        return ""
    return str(getattr(exc, "message", None) or str(exc).split("\n")[0])


def classify(exc: BaseException, action: str, remote_id: str | None = None) -> ProviderError:
    """A `ProviderError` for an SDK or transport failure while trying to `action`."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, ProviderError):
        return exc
    message = service_message(exc)
    code = google_status(exc)

    throttled = isinstance(exc, api.TooManyRequests) or code == "RESOURCE_EXHAUSTED"
    retry_after = retry_after_seconds(getattr(getattr(exc, "response", None), "headers", None))

    def error(kind: ErrorKind, summary: str, detail: str) -> ProviderError:
        return ProviderError(
            kind,
            summary,
            detail,
            code=code or type(exc).__name__,
            remote_id=remote_id,
            throttled=throttled and kind is ErrorKind.RETRYABLE,
            retry_after=retry_after if throttled else None,
        )

    if isinstance(exc, requests.exceptions.ConnectionError):
        return error(
            ErrorKind.UNREACHABLE,
            f"Google Cloud KMS could not be reached to {action}",
            "The connection failed before Cloud KMS answered. Check the provider's endpoint setting (or remove it "
            "to use cloudkms.googleapis.com), and the network and proxy settings of this machine.",
        )
    if isinstance(exc, requests.exceptions.Timeout | api.DeadlineExceeded):
        return error(
            ErrorKind.RETRYABLE,
            f"Google Cloud KMS did not answer in time to {action}",
            "The call timed out. keyplan retries it; if it keeps failing, raise timeout_seconds or try again later.",
        )
    if isinstance(
        exc, auth.GoogleAuthError | api.Unauthenticated | api.PermissionDenied | api.Forbidden | api.Unauthorized
    ):
        return error(
            ErrorKind.AUTH,
            f"Google Cloud KMS refused the credentials used to {action}",
            f"{message} Sign in with `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service account key, and grant it roles/cloudkms.admin and roles/cloudkms.importer on the key "
            'ring; for a local endpoint set credentials = "local".',
        )
    if isinstance(exc, api.NotFound):
        return error(
            ErrorKind.NOT_FOUND,
            f"Google Cloud KMS has no such resource ({action})",
            f"{message} Check project, location and key_ring, or refresh keyplan's view with `keyplan plan`.",
        )
    if isinstance(
        exc,
        api.TooManyRequests | api.InternalServerError | api.BadGateway | api.ServiceUnavailable | api.GatewayTimeout,
    ):
        return error(
            ErrorKind.RETRYABLE,
            f"Google Cloud KMS is throttling or temporarily failing ({action})",
            f"{message} keyplan retries with backoff; if it persists, lower max_concurrency or try again later.",
        )
    if isinstance(exc, api.Conflict) or code == "FAILED_PRECONDITION":
        return error(
            ErrorKind.CONFLICT,
            f"Google Cloud KMS refused to {action} in the current state",
            f"{message} Another change may have happened at the same time; run `keyplan plan` to see the current "
            "state and apply again.",
        )
    return error(
        ErrorKind.FATAL,
        f"Google Cloud KMS rejected the request to {action}",
        f"{message} Check the key's configuration against Cloud KMS's rules, fix it, and apply again.",
    )
