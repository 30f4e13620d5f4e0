"""keyplan's AWS KMS provider: the static plugin (settings, checks, wrap offers) and the runtime
provider that drives KMS through boto3.

Each keyplan key is one KMS key with Origin EXTERNAL. Symmetric keys rotate by importing NEW key
material and calling RotateKeyOnDemand; asymmetric and HMAC keys keep their one material for
life, so their only version id is `SINGLE_MATERIAL_VERSION`. Every KMS key keyplan creates
carries the tags `keyplan-address` (the key address, escaped into the characters AWS tagging
allows everywhere) and `keyplan-managed-by`.

Every boto3 failure is turned into a `ProviderError` whose kind tells the apply walker what to do;
boto3's own retries are switched off because the walker retries RETRYABLE errors itself.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field

from keyplan.algorithms import Algorithm, KeyUsage, MaterialKind
from keyplan.crypto.wrap import WrapMethod, direct_oaep_limit, strongest_first
from keyplan.diagnostics import Diagnostics
from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAG_MANAGED_BY,
    RESERVED_TAGS,
    CancelDeletionRequest,
    CreateKeyRequest,
    CreateKeyResponse,
    EnsurePrerequisiteRequest,
    ErrorKind,
    ImportMaterialRequest,
    ImportMaterialResponse,
    ImportParameters,
    ImportParametersRequest,
    ImportPurpose,
    Inventory,
    InventoryRequest,
    KeyLifecycleSupport,
    KeySpec,
    KeyState,
    MaterialProof,
    MaterialProofRequest,
    MaterialWitness,
    PrerequisiteRecord,
    PromoteVersionRequest,
    Provider,
    ProviderError,
    ProviderPlugin,
    ProviderSettings,
    RemoteKey,
    RemoteVersion,
    RuntimeContext,
    ScheduleDeletionRequest,
    ScheduleDeletionResponse,
    UpdateKeyRequest,
    VersionState,
    WrapOffer,
)

if TYPE_CHECKING:
    from providers.emulation.server import EmulatorServer

T = TypeVar("T")

SINGLE_MATERIAL_VERSION = "1"
MAX_TAGS = 50
MAX_EXPIRY_DAYS = 365
LOCAL_ACCESS_KEY = "keyplan-local"  # any key pair signs requests a local endpoint accepts

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


class AwsSettings(ProviderSettings):
    """The attributes of a `provider "aws" "NAME"` block."""

    region: str = Field(description="The AWS region whose KMS holds the keys, e.g. eu-west-1.")
    profile: str | None = Field(
        default=None, description="A named profile from the AWS config files; default: the standard credential chain."
    )
    assume_role_arn: str | None = Field(
        default=None, description="An IAM role to assume (STS AssumeRole) before calling KMS."
    )
    credentials: Literal["default", "local"] = Field(
        default="default",
        description='"default" uses the AWS SDK credential chain; "local" signs with fixed dummy keys and calls no '
        'identity service, for emulators and other local KMS peers (implied by endpoint = "embedded").',
    )
    deletion_window_days: int = Field(
        default=30, ge=7, le=30, description="Waiting period of ScheduleKeyDeletion, 7 to 30 days."
    )
    wrapping_key_spec: Literal["RSA_2048", "RSA_3072", "RSA_4096"] = Field(
        default="RSA_4096", description="Size of the RSA wrapping key KMS hands out for each import."
    )


def _wrapping_bits(settings: AwsSettings) -> int:
    return int(settings.wrapping_key_spec.removeprefix("RSA_"))


class AwsKmsPlugin(ProviderPlugin[AwsSettings]):
    """The static half: what AWS KMS can import, checked without a network call."""

    kind = "aws"
    settings_model = AwsSettings

    def wrap_offers(self, settings: AwsSettings, algorithm: Algorithm) -> list[WrapOffer]:
        if algorithm.name not in KEY_SPECS:
            return []
        bits = _wrapping_bits(settings)
        methods: set[WrapMethod] = set()
        if algorithm.kind in (MaterialKind.RSA, MaterialKind.EC):
            # AWS accepts RSA_AES_KEY_WRAP_* for RSA and ECC material only (see providers/aws/emulator.py).
            methods |= {WrapMethod.RSA_AES_KEY_WRAP_SHA_256, WrapMethod.RSA_AES_KEY_WRAP_SHA_1}
        if algorithm.kind is not MaterialKind.RSA:
            size = algorithm.material_length or PKCS8_SIZES.get(algorithm.curve or "", 10**6)
            for method in (WrapMethod.RSAES_OAEP_SHA_256, WrapMethod.RSAES_OAEP_SHA_1):
                if size <= direct_oaep_limit(bits, method):
                    methods.add(method)
        return [WrapOffer(method=m, wrapping_key_bits=bits) for m in strongest_first(methods)]

    def check_key(self, settings: AwsSettings, address: str, key: KeySpec) -> Diagnostics:
        diags = Diagnostics()

        def error(summary: str, detail: str) -> None:
            diags.error(summary, detail, range=key.range, address=key.address)

        mapping = KEY_SPECS.get(key.algorithm.name)
        if mapping is None:
            error(
                f"AWS KMS ({address}) cannot import {key.algorithm.name} keys",
                f"AWS KMS imports {', '.join(KEY_SPECS)}. Choose one of these algorithms or remove {address} from "
                "this key's targets.",
            )
            return diags
        if key.usage not in mapping[1]:
            usages = ", ".join(u.value for u in mapping[1])
            error(
                f"AWS KMS cannot use {key.algorithm.name} keys for {key.usage.value}",
                f"An imported {key.algorithm.name} key in AWS KMS can be used for: {usages}. Set usage to one of these.",
            )
        if key.rotation is not None and key.algorithm.kind is not MaterialKind.SYMMETRIC:
            error(
                f"AWS KMS cannot rotate imported {key.algorithm.name} keys",
                "AWS KMS keeps the one imported material of an asymmetric or HMAC key for the key's whole life; "
                "only symmetric (AES_256) keys rotate, by importing new material and RotateKeyOnDemand. Remove the "
                "rotation block, or replace the key with a new one when its material must change.",
            )
        if key.expiry is not None and not 0 < key.expiry.total_seconds() <= MAX_EXPIRY_DAYS * 86400:
            error(
                "AWS KMS material expiry must be between a moment and 365 days",
                f"AWS KMS accepts a ValidTo at most 365 days after the import; this key asks for {key.expiry}. "
                "Set expiry to 365 days or less, or declare that the material never expires.",
            )
        self._check_tags(key, error)
        self._check_aliases(key, error)
        if key.description is not None and len(key.description) > 8192:
            error("AWS KMS key descriptions are at most 8192 characters", "Shorten the description.")
        return diags

    @staticmethod
    def _check_tags(key: KeySpec, error: Callable[[str, str], None]) -> None:
        for name, value in key.labels.items():
            if name in RESERVED_TAGS:
                error(f"The label {name} is reserved for keyplan", f"keyplan sets {name} itself. Rename this label.")
            elif name.lower().startswith("aws:"):
                error(
                    f"AWS reserves tag keys beginning with aws: ({name})",
                    "Rename the label so it does not start with aws:.",
                )
            if not 1 <= len(name) <= 128:
                error(f"AWS KMS tag keys are 1 to 128 characters ({name[:40]!r})", "Shorten or rename the label.")
            if len(value) > 256:
                error(f"AWS KMS tag values are at most 256 characters (label {name})", "Shorten the label's value.")
        if len(key.labels) + len(RESERVED_TAGS) > MAX_TAGS:
            error(
                f"AWS KMS keys carry at most {MAX_TAGS} tags",
                f"This key has {len(key.labels)} labels and keyplan adds {len(RESERVED_TAGS)} of its own; "
                f"keep at most {MAX_TAGS - len(RESERVED_TAGS)} labels.",
            )

    @staticmethod
    def _check_aliases(key: KeySpec, error: Callable[[str, str], None]) -> None:
        for alias in key.aliases:
            if not alias.startswith("alias/") or alias == "alias/":
                error(
                    f"AWS KMS alias names start with alias/ ({alias})",
                    f"Write it as alias/{alias.removeprefix('alias/')}.",
                )
            elif alias.startswith("alias/aws/"):
                error(
                    f"alias/aws/ names are reserved for AWS managed keys ({alias})", "Choose a name outside alias/aws/."
                )
            elif len(alias) > 256 or not re.fullmatch(r"[a-zA-Z0-9:/_-]+", alias):
                error(
                    f"AWS KMS alias names use letters, digits and :/_- only, up to 256 characters ({alias})",
                    "Rename the alias.",
                )
        if len(set(key.aliases)) != len(key.aliases):
            error("An alias is listed twice", "List each alias once.")

    def lifecycle_support(self, settings: AwsSettings, key: KeySpec) -> KeyLifecycleSupport:
        # Only symmetric imported keys take new material (RotateKeyOnDemand); every import takes a ValidTo.
        return KeyLifecycleSupport(
            rotation=key.algorithm.kind is MaterialKind.SYMMETRIC,
            expiry=True,
            rotation_mechanism="AWS: new key material + RotateKeyOnDemand",
            rotation_instead=(
                f"AWS KMS keeps the one material of an imported {key.algorithm.name} key for its whole life. To "
                "change the material, declare a new key under another name, move aliases and applications to it, "
                "then remove the old key."
            ),
        )

    def protection_note(self, settings: AwsSettings) -> str | None:
        return (
            "AWS KMS can guard the key itself: a key policy statement denying kms:ScheduleKeyDeletion "
            "(keyplan does not manage key policies)"
        )

    def deletion_note(self, settings: AwsSettings) -> str:
        return (
            f"scheduled for deletion after a {settings.deletion_window_days}-day waiting period "
            "(cancelling restores it disabled)"
        )

    def open(self, settings: AwsSettings, context: RuntimeContext) -> Provider:
        return AwsKmsProvider(settings, context)


PLUGIN = AwsKmsPlugin()


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


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
        said = said if said.endswith(".") else said + "."
        if code in RETRYABLE_CODES or status >= 500:
            kind, fix = ErrorKind.RETRYABLE, "keyplan retries this with backoff; if it persists, try again later."
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
        return ProviderError(kind, f"{where} failed: {code}", f"{said} {fix}", code=code, remote_id=remote_id)
    if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectionClosedError)):
        return ProviderError(
            ErrorKind.RETRYABLE,
            f"{where} did not answer in time",
            "The connection was closed or timed out. keyplan retries this with backoff; if it persists, check the "
            "network path to AWS KMS.",
            remote_id=remote_id,
        )
    if isinstance(exc, bx.ConnectionError):
        target = settings.endpoint or f"the AWS KMS endpoint of region {settings.region}"
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


# ---------------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------------


class AwsKmsProvider(Provider):
    """One region of one AWS account, driven through one thread-safe boto3 KMS client."""

    def __init__(self, settings: AwsSettings, context: RuntimeContext) -> None:
        self.address = context.address
        self.settings = settings
        self._server: EmulatorServer | None = None
        endpoint = settings.endpoint
        local = settings.credentials == "local"
        if endpoint == "embedded":
            from providers.aws.emulator import KmsEmulator
            from providers.emulation import start_embedded

            self._server = start_embedded(KmsEmulator, context.data_dir, name=context.address.replace(".", "-"))
            endpoint, local = self._server.url, True
        self._endpoint_url = endpoint
        try:
            self._client = self._make_client(endpoint, local)
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a classified ProviderError
            self.close()
            raise classify(exc, "client setup", None, settings) from None

    def _make_client(self, endpoint: str | None, local: bool) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            region_name=self.settings.region,
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, self.settings.max_concurrency * 2),
        )
        if local:
            session = boto3.session.Session(
                aws_access_key_id=LOCAL_ACCESS_KEY,
                aws_secret_access_key=LOCAL_ACCESS_KEY,
                region_name=self.settings.region,
            )
        else:
            session = boto3.session.Session(profile_name=self.settings.profile, region_name=self.settings.region)
            if self.settings.assume_role_arn:
                session = self._assumed_session(session)
        return session.client("kms", endpoint_url=endpoint, config=config)

    def _assumed_session(self, session: Any) -> Any:
        import boto3

        role = session.client("sts").assume_role(RoleArn=self.settings.assume_role_arn, RoleSessionName="keyplan")
        creds = role["Credentials"]
        return boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=self.settings.region,
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(self, operation: str, remote_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self._client, re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower())
        try:
            result: dict[str, Any] = method(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every SDK failure becomes a classified ProviderError
            raise classify(exc, operation, remote_id, self.settings) from None
        return result

    def _pages(
        self, operation: str, field: str, remote_id: str | None = None, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        marker: str | None = None
        while True:
            page = self._call(operation, remote_id, **kwargs, **({"Marker": marker} if marker else {}))
            yield from page.get(field, [])
            marker = page.get("NextMarker")
            if not page.get("Truncated") or not marker:
                return

    def _concurrently(self, work: Callable[[str], T], items: Iterable[str]) -> dict[str, T]:
        items = list(items)
        if not items:
            return {}
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="keyplan-aws") as pool:
            return dict(zip(items, pool.map(work, items), strict=True))

    # -- reading ----------------------------------------------------------------------------------

    def _tags(self, remote_id: str) -> dict[str, str]:
        return {
            t["TagKey"]: t["TagValue"]
            for t in self._pages("ListResourceTags", "Tags", remote_id, KeyId=remote_id, Limit=50)
        }

    def _aliases_by_key(self, key_id: str | None = None) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        kwargs = {"KeyId": key_id} if key_id else {}
        for alias in self._pages("ListAliases", "Aliases", key_id, Limit=100, **kwargs):
            if alias.get("TargetKeyId"):
                found.setdefault(alias["TargetKeyId"], []).append(alias["AliasName"])
        return found

    def _versions(self, remote_id: str, metadata: dict[str, Any]) -> tuple[RemoteVersion, ...]:
        if metadata.get("KeySpec") != "SYMMETRIC_DEFAULT":
            if metadata.get("KeyState") == "PendingImport":
                return (RemoteVersion(version_id=SINGLE_MATERIAL_VERSION, state=VersionState.PENDING_IMPORT),)
            return (
                RemoteVersion(
                    version_id=SINGLE_MATERIAL_VERSION,
                    state=VersionState.ENABLED,
                    current=True,
                    expires_at=_utc(metadata.get("ValidTo")),
                ),
            )
        rotations = self._pages(
            "ListKeyRotations",
            "Rotations",
            remote_id,
            KeyId=remote_id,
            IncludeKeyMaterial="ALL_KEY_MATERIAL",
            Limit=1000,
        )
        return tuple(_version(r) for r in rotations)

    def _remote_key(
        self,
        metadata: dict[str, Any],
        tags: dict[str, str],
        aliases: list[str],
        addresses: Iterable[str],
        versions: tuple[RemoteVersion, ...] | None = None,
    ) -> RemoteKey:
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
            expires_at=_utc(metadata.get("ValidTo")),
            current_version=current,
            versions=versions,
            deletion_date=_utc(metadata.get("DeletionDate")),
        )

    def _read_key(
        self, remote_id: str, addresses: Iterable[str], aliases: dict[str, list[str]] | None, with_versions: bool
    ) -> RemoteKey:
        metadata = self._call("DescribeKey", remote_id, KeyId=remote_id)["KeyMetadata"]
        tags = self._tags(remote_id)
        if aliases is None:
            aliases = self._aliases_by_key(metadata["KeyId"])
        versions = self._versions(remote_id, metadata) if with_versions else None
        return self._remote_key(metadata, tags, aliases.get(metadata["KeyId"], []), addresses, versions)

    def describe(self, remote_id: str) -> RemoteKey | None:
        try:
            return self._read_key(remote_id, (), None, with_versions=False)
        except ProviderError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    def inventory(self, request: InventoryRequest) -> Inventory:
        listed = list(self._pages("ListKeys", "Keys", Limit=1000))
        arn_of = {k["KeyArn"]: k["KeyArn"] for k in listed} | {k["KeyId"]: k["KeyArn"] for k in listed}
        aliases = self._aliases_by_key()
        present = [rid for rid in request.known if rid in arn_of]
        missing = [rid for rid in request.known if rid not in arn_of]
        known_arns = {arn_of[rid] for rid in present}
        with_versions = set(request.with_versions)

        def read_known(remote_id: str) -> RemoteKey | None:
            try:
                return self._read_key(remote_id, request.addresses, aliases, remote_id in with_versions)
            except ProviderError as error:
                if error.kind is ErrorKind.NOT_FOUND:  # deleted between ListKeys and DescribeKey
                    return None
                raise

        keys = self._concurrently(read_known, present)
        missing += [rid for rid, key in keys.items() if key is None]
        found = [key for key in keys.values() if key is not None]
        if request.scan:
            found += self._scan([k["KeyArn"] for k in listed if k["KeyArn"] not in known_arns], request, aliases)
        return Inventory(keys=tuple(found), missing=tuple(missing))

    def _scan(self, arns: list[str], request: InventoryRequest, aliases: dict[str, list[str]]) -> list[RemoteKey]:
        """Keys tagged keyplan-managed-by that state does not know (adoption after a crash, orphans)."""
        with_versions = set(request.with_versions)

        def read_if_managed(arn: str) -> RemoteKey | None:
            try:
                tags = self._tags(arn)
                if RESERVED_TAG_MANAGED_BY not in tags:
                    return None
                metadata = self._call("DescribeKey", arn, KeyId=arn)["KeyMetadata"]
                versions = self._versions(arn, metadata) if arn in with_versions else None
                return self._remote_key(metadata, tags, aliases.get(metadata["KeyId"], []), request.addresses, versions)
            except ProviderError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    return None
                raise

        return [key for key in self._concurrently(read_if_managed, arns).values() if key is not None]

    def discover(self) -> list[RemoteKey]:
        listed = [k["KeyArn"] for k in self._pages("ListKeys", "Keys", Limit=1000)]
        aliases = self._aliases_by_key()

        def read_if_external(arn: str) -> RemoteKey | None:
            try:
                metadata = self._call("DescribeKey", arn, KeyId=arn)["KeyMetadata"]
                if metadata.get("Origin") != "EXTERNAL":
                    return None
                return self._remote_key(metadata, self._tags(arn), aliases.get(metadata["KeyId"], []), ())
            except ProviderError as error:
                if error.kind is ErrorKind.NOT_FOUND:
                    return None
                raise

        return [key for key in self._concurrently(read_if_external, listed).values() if key is not None]

    # -- writing ----------------------------------------------------------------------------------

    def ensure_prerequisite(self, request: EnsurePrerequisiteRequest) -> PrerequisiteRecord:
        raise ProviderError(
            ErrorKind.FATAL,
            f"AWS KMS has no prerequisite of kind {request.spec.kind}",
            "AWS KMS imports need no shared objects; this is a keyplan bug, please report it.",
        )

    def create_key(self, request: CreateKeyRequest) -> CreateKeyResponse:
        spec_name, usages = KEY_SPECS[request.key.algorithm.name]
        tags = {**request.key.labels, **self._reserved_tags(request.address, request.managed_by)}
        result = self._call(
            "CreateKey",
            Origin="EXTERNAL",
            KeySpec=spec_name,
            KeyUsage=usages[request.key.usage],
            Description=request.key.description or "",
            Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()],
        )
        metadata = result["KeyMetadata"]
        return CreateKeyResponse(
            remote_id=metadata["Arn"], state=KEY_STATES.get(metadata.get("KeyState", ""), KeyState.PENDING_IMPORT)
        )

    @staticmethod
    def _reserved_tags(address: str, managed_by: str) -> dict[str, str]:
        return {RESERVED_TAG_ADDRESS: encode_address(address), RESERVED_TAG_MANAGED_BY: managed_by}

    def get_import_parameters(self, request: ImportParametersRequest) -> ImportParameters:
        bits = request.offer.wrapping_key_bits
        result = self._call(
            "GetParametersForImport",
            request.remote_id,
            KeyId=request.remote_id,
            WrappingAlgorithm=request.offer.method.value,
            WrappingKeySpec=f"RSA_{bits}",
        )
        return ImportParameters(
            method=request.offer.method,
            wrapping_public_key=result["PublicKey"],
            wrapping_key_bits=bits,
            token=base64.b64encode(result["ImportToken"]).decode(),
            expires_at=_utc(result.get("ParametersValidTo")),
        )

    def import_material(self, request: ImportMaterialRequest) -> ImportMaterialResponse:
        symmetric = request.key.algorithm.kind is MaterialKind.SYMMETRIC
        if request.parameters.token is None:
            raise ProviderError(
                ErrorKind.PARAMETERS_EXPIRED,
                "AWS KMS import parameters carry no import token",
                "Fetch fresh import parameters with GetParametersForImport and wrap the material again.",
                remote_id=request.remote_id,
            )
        kwargs: dict[str, Any] = {
            "KeyId": request.remote_id,
            "ImportToken": base64.b64decode(request.parameters.token),
            "EncryptedKeyMaterial": request.wrapped,
        }
        if request.valid_to is None:
            kwargs["ExpirationModel"] = "KEY_MATERIAL_DOES_NOT_EXPIRE"
        else:
            kwargs.update(ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=request.valid_to)
        if request.purpose is ImportPurpose.NEW_VERSION:
            if not symmetric:
                raise ProviderError(
                    ErrorKind.FATAL,
                    f"AWS KMS cannot take new material for the {request.key.algorithm.name} key {request.remote_id}",
                    "AWS KMS rotates imported symmetric keys only. Remove the rotation from this key's configuration.",
                    remote_id=request.remote_id,
                )
            kwargs["ImportType"] = "NEW_KEY_MATERIAL"
        elif request.purpose is ImportPurpose.REIMPORT and symmetric:
            kwargs["ImportType"] = "EXISTING_KEY_MATERIAL"
            if request.reimport_version_id and re.fullmatch(r"[0-9a-f]{64}", request.reimport_version_id):
                kwargs["KeyMaterialId"] = request.reimport_version_id
        result = self._call("ImportKeyMaterial", request.remote_id, **kwargs)
        version = result.get("KeyMaterialId") if symmetric else None
        return ImportMaterialResponse(
            remote_id=request.remote_id,
            version_id=version or SINGLE_MATERIAL_VERSION,
            expires_at=request.valid_to,
        )

    def promote_version(self, request: PromoteVersionRequest) -> None:
        try:
            self._call("RotateKeyOnDemand", request.remote_id, KeyId=request.remote_id)
        except ProviderError as error:
            # A retried promotion finds nothing pending because the first one succeeded.
            if error.kind is not ErrorKind.CONFLICT or self._current_material(request.remote_id) != request.version_id:
                raise

    def _current_material(self, remote_id: str) -> str | None:
        metadata = self._call("DescribeKey", remote_id, KeyId=remote_id)["KeyMetadata"]
        current = metadata.get("CurrentKeyMaterialId")
        return str(current) if current else None

    def update_key(self, request: UpdateKeyRequest) -> RemoteKey:
        remote_id, key = request.remote_id, request.key
        self._update_tags(remote_id, {**key.labels, **self._reserved_tags(request.address, request.managed_by)})
        metadata = self._call("DescribeKey", remote_id, KeyId=remote_id)["KeyMetadata"]
        self._update_aliases(remote_id, metadata["KeyId"], set(key.aliases))
        if (metadata.get("Description") or "") != (key.description or ""):
            self._call("UpdateKeyDescription", remote_id, KeyId=remote_id, Description=key.description or "")
        state = metadata.get("KeyState", "")
        self._update_enabled(remote_id, state, key.enabled)
        # The key as it now is, from what was just read and set: reading it back would cost
        # three more calls per key (DescribeKey, ListResourceTags, ListAliases).
        if state in ("Enabled", "Disabled"):
            state = "Enabled" if key.enabled else "Disabled"
        after = {**metadata, "KeyState": state, "Enabled": state == "Enabled", "Description": key.description or ""}
        tags = {**key.labels, **self._reserved_tags(request.address, request.managed_by)}
        return self._remote_key(after, tags, sorted(key.aliases), (request.address,))

    def _update_tags(self, remote_id: str, desired: dict[str, str]) -> None:
        current = self._tags(remote_id)
        changed = {k: v for k, v in desired.items() if current.get(k) != v}
        removed = [k for k in current if k not in desired]
        if removed:
            self._call("UntagResource", remote_id, KeyId=remote_id, TagKeys=removed)
        if changed:
            tags = [{"TagKey": k, "TagValue": v} for k, v in changed.items()]
            self._call("TagResource", remote_id, KeyId=remote_id, Tags=tags)

    def _update_aliases(self, remote_id: str, key_id: str, desired: set[str]) -> None:
        current = set(self._aliases_by_key(key_id).get(key_id, []))
        for alias in sorted(current - desired):
            self._call("DeleteAlias", remote_id, AliasName=alias)
        for alias in sorted(desired - current):
            try:
                self._call("CreateAlias", remote_id, AliasName=alias, TargetKeyId=key_id)
            except ProviderError as error:
                if error.code != "AlreadyExistsException":
                    raise
                # The configuration gives this alias to this key: move it here.
                self._call("UpdateAlias", remote_id, AliasName=alias, TargetKeyId=key_id)

    def _update_enabled(self, remote_id: str, state: str, enabled: bool) -> None:
        if enabled and state == "Disabled":
            self._call("EnableKey", remote_id, KeyId=remote_id)
        elif not enabled and state == "Enabled":
            self._call("DisableKey", remote_id, KeyId=remote_id)
        elif not enabled and state == "PendingImport":
            raise ProviderError(
                ErrorKind.CONFLICT,
                f"AWS KMS cannot disable {remote_id} while it is pending import",
                "AWS KMS refuses DisableKey on a key without material. Import the key's material first (run "
                "`keyplan apply` again once the import has succeeded), then it can be disabled.",
                code="KMSInvalidStateException",
                remote_id=remote_id,
            )

    def schedule_deletion(self, request: ScheduleDeletionRequest) -> ScheduleDeletionResponse:
        window = request.window_days or self.settings.deletion_window_days
        try:
            result = self._call(
                "ScheduleKeyDeletion", request.remote_id, KeyId=request.remote_id, PendingWindowInDays=window
            )
        except ProviderError as error:
            if error.kind is not ErrorKind.CONFLICT:
                raise
            metadata = self._call("DescribeKey", request.remote_id, KeyId=request.remote_id)["KeyMetadata"]
            if metadata.get("KeyState") != "PendingDeletion":
                raise
            return ScheduleDeletionResponse(deletion_date=_utc(metadata.get("DeletionDate")))
        return ScheduleDeletionResponse(deletion_date=_utc(result.get("DeletionDate")))

    def cancel_deletion(self, request: CancelDeletionRequest) -> None:
        try:
            self._call("CancelKeyDeletion", request.remote_id, KeyId=request.remote_id)
        except ProviderError as error:
            if error.kind is not ErrorKind.CONFLICT:
                raise
            metadata = self._call("DescribeKey", request.remote_id, KeyId=request.remote_id)["KeyMetadata"]
            if metadata.get("KeyState") == "PendingDeletion":
                raise

    def prove_material(self, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
        from providers.aws.proof import prove

        return prove(self, request, witness)

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        if self._server is not None:
            self._server.stop()
            self._server.app.store.close()
            self._server = None


def _utc(value: Any) -> datetime | None:
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


def _version(rotation: dict[str, Any]) -> RemoteVersion:
    imported = rotation.get("ImportState", "IMPORTED") == "IMPORTED"
    state = _MATERIAL_STATES.get(rotation.get("KeyMaterialState", ""), VersionState.ENABLED)
    return RemoteVersion(
        version_id=rotation["KeyMaterialId"],
        state=state if imported else VersionState.PENDING_IMPORT,
        current=rotation.get("KeyMaterialState") == "CURRENT",
        imported=imported,
        expires_at=_utc(rotation.get("ValidTo")),
        created_at=_utc(rotation.get("RotationDate")),
    )
