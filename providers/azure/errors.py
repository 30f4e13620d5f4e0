"""Azure SDK failures as `ProviderError`s; messages quote the service, never request bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyplan.provider import ErrorKind, ProviderError
from providers.azure.mapping import az_cli_vault_arguments
from providers.common.errors import sentence
from providers.common.limited import retry_after_seconds

if TYPE_CHECKING:
    from azure.keyvault.keys import DeletedKey

DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"


@dataclass(frozen=True)
class ErrorContext:
    action: str  # "importing material into key x", used in summaries
    vault_url: str
    client_url: str
    remote_id: str | None = None


# 403 answers about the key, not the caller: Key Vault's inner error codes for a key that is
# disabled, expired or not yet valid, or whose key_ops do not include the operation.
KEY_STATE_REFUSALS = {
    "KeyDisabled": "it is disabled",
    "KeyExpired": "it is past its expiry date",
    "KeyNotYetValid": "it is before its activation date",
    "KeyOperationForbidden": "its key_ops do not include the operation",
}


def classify(exc: Exception, where: ErrorContext) -> ProviderError:
    """Map an SDK exception to a ProviderError; messages quote the service, never request bodies."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    def error(kind: ErrorKind, summary: str, detail: str, code: str | None = None) -> ProviderError:
        return ProviderError(kind, summary, detail, code=code, remote_id=where.remote_id)

    if isinstance(exc, ServiceRequestError):
        return error(
            ErrorKind.UNREACHABLE,
            f"Azure Key Vault could not be reached while {where.action}",
            f"No connection could be made to {where.client_url}"
            + (f" (the endpoint standing in for {where.vault_url})" if where.client_url != where.vault_url else "")
            + ". Check the provider's endpoint (or vault_url), "
            "the network path to it and, for a local endpoint, ca_bundle; then run keyplan again.",
        )
    if isinstance(exc, ServiceResponseError):
        return error(
            ErrorKind.RETRYABLE,
            f"Azure Key Vault did not answer in time while {where.action}",
            f"The connection to {where.client_url} broke or timed out. keyplan retries this; if it persists, "
            "raise timeout_seconds or check the network.",
        )
    if isinstance(exc, ClientAuthenticationError) and exc.status_code in (None, 401):
        return error(
            ErrorKind.AUTH,
            f"Azure rejected keyplan's credentials while {where.action}",
            f"{service_message(exc)} Sign in (az login) or set AZURE_CLIENT_ID, AZURE_TENANT_ID and "
            "AZURE_CLIENT_SECRET (or use a managed or workload identity) for DefaultAzureCredential; for a local "
            'endpoint set credentials = "local".',
        )
    if not isinstance(exc, HttpResponseError):
        return error(
            ErrorKind.FATAL,
            f"Azure Key Vault call failed while {where.action}",
            f"{type(exc).__name__}. This looks like a keyplan bug; please report it.",
        )
    status = exc.status_code or 0
    code, inner = _error_codes(exc)
    message = service_message(exc)
    if status == 429:
        return ProviderError(
            ErrorKind.RETRYABLE,
            f"Azure Key Vault is throttling while {where.action}",
            f"{message} keyplan waits and sends the call again.",
            code=code,
            remote_id=where.remote_id,
            throttled=True,
            retry_after=retry_after_seconds(getattr(getattr(exc, "response", None), "headers", None)),
        )
    if status >= 500:
        return error(
            ErrorKind.RETRYABLE,
            f"Azure Key Vault is throttling or unavailable while {where.action}",
            f"{message} keyplan retries with backoff; if it persists, lower max_concurrency.",
            code,
        )
    if status == 403 and inner in KEY_STATE_REFUSALS:
        return error(
            ErrorKind.CONFLICT,
            f"The key refused {where.action}: {KEY_STATE_REFUSALS[inner]} ({inner})",
            f"{message} The key itself does not allow the operation now; this is not about permissions.",
            inner,
        )
    if status in (401, 403):
        return error(
            ErrorKind.AUTH,
            f"Azure Key Vault denied access while {where.action}",
            f"{message} Grant the identity keyplan uses the Key Vault Crypto Officer role (or keys get, list, "
            "create, import, update, delete and recover permissions) on the vault, and check its firewall.",
            code,
        )
    if status == 404:
        return error(
            ErrorKind.NOT_FOUND,
            f"Azure Key Vault has no such key ({where.action})",
            f"{message} Run keyplan plan to see what the vault holds now.",
            code,
        )
    if status == 409 and inner == DELETED_BUT_RECOVERABLE:
        return error(
            ErrorKind.CONFLICT,
            f"The key name is held by a soft-deleted key ({where.action})",
            f"{message} Recover the deleted key (keyplan cancels its deletion when the configuration still "
            "declares it, or run az keyvault key recover) or purge it (az keyvault key purge) if its material "
            "may be lost; keyplan never does either silently.",
            inner,
        )
    if status == 409:
        return error(
            ErrorKind.CONFLICT,
            f"Azure Key Vault reported a conflict while {where.action}",
            f"{message} Another operation on this key may be in progress; run keyplan plan and apply again.",
            inner or code,
        )
    return error(
        ErrorKind.FATAL,
        f"Azure Key Vault refused the request while {where.action}",
        f"{message} Fix the cause named by Azure and run keyplan again.",
        code,
    )


def _error_codes(exc: Any) -> tuple[str | None, str | None]:
    error = getattr(exc, "error", None)
    if error is None:
        return None, None
    inner = getattr(error, "innererror", None) or {}
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    return getattr(error, "code", None), inner_code


def service_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    text = getattr(error, "message", None) or getattr(exc, "reason", None) or type(exc).__name__
    return sentence(str(text))


def name_held_by_deleted_key(
    name: str, vault_url: str, purge_protection: bool, deleted: DeletedKey | None, error: ProviderError
) -> ProviderError:
    """An import refused because a soft-deleted key holds the name: say which, until when, and
    both ways out; keyplan never recovers or purges a key it was not told to."""
    when = ""
    if deleted is not None and deleted.deleted_date and deleted.scheduled_purge_date:
        when = (
            f" (deleted {deleted.deleted_date.isoformat(timespec='seconds')}, purged by Azure on "
            f"{deleted.scheduled_purge_date.isoformat(timespec='seconds')})"
        )
    vault = " ".join(az_cli_vault_arguments(vault_url))
    purge = (
        "The vault has purge protection, so the name stays held until Azure purges the key."
        if purge_protection
        else f"If no ciphertext depends on it, purge it: az keyvault key purge {vault} --name {name}."
    )
    return ProviderError(
        ErrorKind.CONFLICT,
        f"The key name {name} is held by a soft-deleted key in {vault_url}",
        f"A deleted but recoverable key of this name{when} blocks the import: Azure adds nothing under a "
        "name in that state, and keyplan never recovers or purges a key on its own. If its material is "
        f"still needed, recover it: az keyvault key recover {vault} --name {name}. {purge} Then run keyplan "
        "apply again.",
        code=error.code,
        remote_id=error.remote_id,
    )


def import_refused(error: ProviderError, kek_kid: str, remote_id: str, *, kek_usable: bool) -> ProviderError:
    """A refused import (FATAL, NOT_FOUND, AUTH or a key refusing): the material's fault while the KEK it was
    wrapped for is usable, else stale parameters to fetch afresh."""
    if kek_usable:
        if error.kind is not ErrorKind.FATAL:
            return error
        return ProviderError(
            ErrorKind.FATAL,
            "Azure refused the wrapped key material",
            f"{service_message(error.__cause__)} The material must be wrapped with the key-exchange key named "
            "in the import parameters and be a key of the declared algorithm. Check the key source, then run "
            "keyplan apply again.",
            code=error.code,
            remote_id=remote_id,
        )
    return ProviderError(
        ErrorKind.PARAMETERS_EXPIRED,
        "The key-exchange key these import parameters name is no longer usable",
        f"{kek_kid} was deleted, disabled or has expired, so Azure cannot unwrap material "
        "wrapped for it. keyplan fetches fresh import parameters and wraps the material again.",
        code=error.code,
        remote_id=remote_id,
    )
