"""Every boto3 failure turned into a `ProviderError` whose kind tells the apply walker what to do
(boto3's own retries are off: the walker retries RETRYABLE errors itself)."""

from __future__ import annotations

from keyplan.provider import ErrorKind, ProviderError
from providers.aws.settings import AwsSettings
from providers.common.errors import RETRY_ADVICE, sentence

RETRYABLE_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "KMSInternalException",
    "DependencyTimeoutException",
    "ServiceUnavailable",
    "InternalFailure",
}
THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
    "NotAuthorizedException",
    "SignatureDoesNotMatch",
}
CONFLICT_CODES = {"AlreadyExistsException", "KMSInvalidStateException", "DisabledException", "ConflictException"}
PARAMETERS_CODES = {"ExpiredImportTokenException", "InvalidImportTokenException"}


def classify(exc: Exception, operation: str, remote_id: str | None, settings: AwsSettings) -> ProviderError:
    """Turn a boto3/botocore exception into a ProviderError (never including request bodies)."""
    from botocore import exceptions as bx

    where = f"AWS KMS {operation}" + (f" on {remote_id}" if remote_id else "")
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip()
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        said = f"AWS said: {code}: {message}" if message else f"AWS said: {code}."
        said = sentence(said)
        if code in RETRYABLE_CODES or status >= 500:
            kind, fix = ErrorKind.RETRYABLE, RETRY_ADVICE
        elif code in AUTH_CODES or status == 403:
            kind, fix = ErrorKind.AUTH, _credentials_fix(settings)
        elif code in PARAMETERS_CODES:
            kind, fix = ErrorKind.PARAMETERS_EXPIRED, "Fetch fresh import parameters and wrap the material again."
        elif code == "NotFoundException" or status == 404:
            kind, fix = ErrorKind.NOT_FOUND, "Run `keyplan plan` again; the key may have been deleted outside keyplan."
        elif code in CONFLICT_CODES:
            kind, fix = ErrorKind.CONFLICT, "Check the key's state in AWS KMS and run `keyplan plan` again."
        else:
            kind, fix = ErrorKind.FATAL, "Correct the configuration or the key in AWS KMS and run keyplan again."
        throttled = code in THROTTLING_CODES
        return ProviderError(
            kind, f"{where} failed: {code}", f"{said} {fix}", code=code, remote_id=remote_id, throttled=throttled
        )
    if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectionClosedError)):
        return ProviderError(
            ErrorKind.RETRYABLE,
            f"{where} did not answer in time",
            "The connection was closed or timed out. keyplan retries this with backoff; if it persists, check the "
            "network path to AWS KMS.",
            remote_id=remote_id,
        )
    if isinstance(exc, bx.ConnectionError):
        target = settings.shown("endpoint") if settings.endpoint else f"the AWS KMS endpoint of region {settings.shown('region')}"
        return ProviderError(
            ErrorKind.UNREACHABLE,
            f"{where} could not connect to {target}",
            f"{type(exc).__name__}: the endpoint refused the connection or its name did not resolve. Check the "
            "`endpoint` and `region` settings of this provider block and the network path to it.",
            remote_id=remote_id,
        )
    if isinstance(
        exc,
        (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound, bx.CredentialRetrievalError),
    ) or type(exc).__name__ in ("TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"):
        return ProviderError(
            ErrorKind.AUTH, f"{where}: no usable AWS credentials", f"{type(exc).__name__}. {_credentials_fix(settings)}"
        )
    return ProviderError(
        ErrorKind.FATAL,
        f"{where} failed: {type(exc).__name__}",
        "An unexpected error came from the AWS SDK. Check the provider settings; if they are right, report this.",
        remote_id=remote_id,
    )


def _credentials_fix(settings: AwsSettings) -> str:
    if settings.credentials == "local":
        return 'The endpoint rejected keyplan\'s local dummy credentials; use credentials = "default" for a real KMS.'
    return (
        "Configure AWS credentials (environment variables, `aws configure`, `aws sso login`, or the `profile` setting) "
        "for an identity allowed to use KMS in this region, or set `assume_role_arn` to a role that is."
    )

