"""Material imported into a Cloud KMS key: each import is a new CryptoKeyVersion, made from an
import job, waited for until it leaves PENDING_IMPORT, and made primary where the key has one.
An import is made once: when its answer is lost (a 5xx or a timeout after Cloud KMS did the
work), or a later step of it failed and it is tried again, the version it made is found and
settled instead of adding a second version holding the same material."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from keyplan.algorithms import MaterialKind
from keyplan.provider import ErrorKind, ImportMaterialRequest, ImportMaterialResponse, ImportPurpose, ProviderError
from providers.gcp.mapping import GcpKeyType, gcp_key_type
from providers.gcp.views import version_id, when

if TYPE_CHECKING:
    from google.cloud.kms_v1 import CryptoKeyVersion

    from providers.gcp.provider import GcpProvider

LOST_ANSWER_SKEW = timedelta(seconds=30)  # clock difference tolerated between keyplan and Cloud KMS


def import_material(provider: GcpProvider, request: ImportMaterialRequest) -> ImportMaterialResponse:
    key_type = gcp_key_type(request.key.algorithm, request.key.usage, provider.settings.symmetric_algorithm)
    job_name = request.parameters.reference
    if key_type is None or not job_name:
        raise ProviderError(
            ErrorKind.FATAL,
            f"no Cloud KMS import possible for {request.address}",
            "The import parameters do not name an import job, or the algorithm is not importable. Run "
            "`keyplan plan` again.",
            remote_id=request.remote_id,
        )
    key_type = _existing_key_type(provider, request, key_type)
    body: dict[str, Any] = {
        "parent": request.remote_id,
        "algorithm": key_type.algorithm,
        "import_job": job_name,
        "wrapped_key": request.wrapped,
    }
    if request.purpose is ImportPurpose.REIMPORT:
        if not request.reimport_version_id:
            raise ProviderError(
                ErrorKind.FATAL,
                "a re-import needs the version to restore",
                "Cloud KMS re-imports material into the version that lost it. Run `keyplan plan` again.",
                remote_id=request.remote_id,
            )
        body["crypto_key_version"] = f"{request.remote_id}/cryptoKeyVersions/{request.reimport_version_id}"
    attempt = (request.remote_id, hashlib.sha256(request.wrapped).digest())
    with provider._imported_lock:
        made = provider._imported.get(attempt)
    if made is not None:
        return _settled_import(provider, request, made, job_name, key_type)
    started = datetime.now(UTC)
    try:
        version = provider._kms.call(
            "import key material", provider._client.import_crypto_key_version, request.remote_id, request=body
        )
    except ProviderError as error:
        landed = _landed_import(provider, request, job_name, started) if error.retryable else None
        if landed is not None:
            with provider._imported_lock:
                provider._imported[attempt] = landed
            return _settled_import(provider, request, landed, job_name, key_type)
        if error.code == "FAILED_PRECONDITION" and provider._jobs.expired(job_name):
            raise ProviderError(
                ErrorKind.PARAMETERS_EXPIRED,
                f"import job {job_name} expired before the material was imported",
                "Cloud KMS import jobs last three days. keyplan fetches a fresh import job and wraps the "
                "material again; run apply again if it stopped here.",
                code=error.code,
                remote_id=request.remote_id,
            ) from error
        raise
    with provider._imported_lock:
        provider._imported[attempt] = version
    return _settled_import(provider, request, version, job_name, key_type)

def _existing_key_type(provider: GcpProvider, request: ImportMaterialRequest, configured: GcpKeyType) -> GcpKeyType:
    """An AES key takes new material as what it was created as: `symmetric_algorithm` only
    decides for keys keyplan creates, and Cloud KMS cannot change a key's purpose."""
    if request.purpose is ImportPurpose.INITIAL or request.key.algorithm.kind is not MaterialKind.SYMMETRIC:
        return configured
    key = provider._get_key(request.remote_id)
    if key is None or not key.version_template.algorithm.name:
        return configured
    return GcpKeyType(key.purpose.name, key.version_template.algorithm.name)

def _landed_import(provider: GcpProvider, request: ImportMaterialRequest, job_name: str, started: datetime) -> CryptoKeyVersion | None:
    """The version an import created although its answer was lost (a 5xx or a timeout after
    Cloud KMS did the work): made from this import job since this import started. Sending
    the import again would add a second version holding the same material."""
    if request.purpose is ImportPurpose.REIMPORT:
        return None  # a re-import targets its version: sending it again is harmless
    landed = [
        v
        for v in provider._versions(request.remote_id)
        if v.import_job == job_name and (when(v.create_time) or started) >= started - LOST_ANSWER_SKEW
    ]
    return max(landed, key=lambda v: int(version_id(v.name)), default=None)

def _settled_import(
    provider: GcpProvider, request: ImportMaterialRequest, version: CryptoKeyVersion, job_name: str, key_type: GcpKeyType
) -> ImportMaterialResponse:
    version = provider._kms.wait(
        f"importing into {request.remote_id}",
        lambda: provider._kms.call(
            "read the imported version", provider._client.get_crypto_key_version, version.name, name=version.name
        ),
        lambda v: v.state.name != "PENDING_IMPORT",
        version,
    )
    if version.state.name != "ENABLED":
        raise ProviderError(
            ErrorKind.FATAL,
            f"Google Cloud KMS could not import the material of {request.address}",
            f"The import ended in {version.state.name}: {version.import_failure_reason or 'no reason given.'} "
            f"Check that the key source wrapped it for import job {job_name} with "
            f"{request.parameters.method.value}, and that its format fits {key_type.algorithm}; then apply again.",
            code=version.state.name,
            remote_id=request.remote_id,
        )
    number = version_id(version.name)
    if key_type.purpose == "ENCRYPT_DECRYPT" and _needs_primary(provider, request, number):
        provider._make_primary(request.remote_id, number)
    return ImportMaterialResponse(remote_id=request.remote_id, version_id=number)

def _needs_primary(provider: GcpProvider, request: ImportMaterialRequest, version_id: str) -> bool:
    """The first material becomes primary at once; a rotation waits for promote_version; a
    re-import takes over when the key has no usable primary left."""
    if request.purpose is ImportPurpose.INITIAL:
        return True
    if request.purpose is ImportPurpose.NEW_VERSION:
        return False
    key = provider._get_key(request.remote_id)
    return key is not None and (not key.primary.name or key.primary.state.name != "ENABLED")
