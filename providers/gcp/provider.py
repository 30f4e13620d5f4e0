"""The Google Cloud KMS provider: settings, static checks and wrap offers (`GcpPlugin`), and the
runtime adapter on the official `google-cloud-kms` client (`GcpProvider`).

One provider block manages the crypto keys of one key ring. Keys are created `import_only`
without an initial version; material arrives through import jobs (one per key ring, import
method and protection level, each valid three days) and each import is a new
CryptoKeyVersion. The client talks REST, with the SDK's own retries off and short timeouts:
keyplan's apply walker retries what this module classifies as retryable. The SDK is imported
only when a provider is opened.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field

from keyplan.algorithms import Algorithm, MaterialKind
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
    PrerequisiteSpec,
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
    WrapOffer,
)
from providers.gcp.mapping import (
    IMPORT_METHODS,
    VERSION_STATES,
    WRAPS_BY_IMPORT_METHOD,
    VersionView,
    crypto_key_id,
    current_version,
    decode_label_value,
    encode_label_value,
    gcp_key_type,
    import_job_prerequisite_id,
    import_method_name,
    key_ring_prerequisite_id,
    key_state,
    keyplan_algorithm_name,
    label_problems,
    spent,
)

if TYPE_CHECKING:
    from google.cloud.kms_v1 import CryptoKey, CryptoKeyVersion, ImportJob, KeyManagementServiceClient

    from providers.emulation.server import EmulatorServer

ImportMethodName = Literal[
    "RSA_OAEP_4096_SHA256_AES_256",
    "RSA_OAEP_3072_SHA256_AES_256",
    "RSA_OAEP_4096_SHA256",
    "RSA_OAEP_3072_SHA256",
    "RSA_OAEP_4096_SHA1_AES_256",
    "RSA_OAEP_3072_SHA1_AES_256",
]

KIND_KEY_RING = "gcp_key_ring"
KIND_IMPORT_JOB = "gcp_import_job"
MAX_NAME_ATTEMPTS = 20
MAX_LABELS = 64
JOB_MARGIN = timedelta(minutes=10)  # an import job this close to expiry is not used for a new import
T = TypeVar("T")


class GcpSettings(ProviderSettings):
    """Attributes of a `provider "gcp"` block."""

    project: str = Field(min_length=1, description="Google Cloud project id that holds the key ring.")
    location: str = Field(
        default="global", description='Cloud KMS location of the key ring, e.g. "global" or "europe-west1".'
    )
    key_ring: str = Field(
        pattern=r"^[a-zA-Z0-9_-]{1,63}$",
        description="Key ring holding keyplan's keys; created when missing (key rings cannot be deleted).",
    )
    protection_level: Literal["HSM", "SOFTWARE"] = Field(
        default="HSM", description="Protection level of the keys and of the import jobs that wrap their material."
    )
    credentials: Literal["default", "local"] = Field(
        default="default",
        description='"default": Application Default Credentials (gcloud auth, GOOGLE_APPLICATION_CREDENTIALS, '
        'metadata server). "local": anonymous credentials and no call to an identity service, for a local '
        'endpoint such as the emulator (implied by endpoint = "embedded").',
    )
    import_method: ImportMethodName | None = Field(
        default=None,
        description="Use only this import method instead of negotiating the strongest one both sides support.",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="Deadline of each Cloud KMS call.")
    import_wait_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long to wait for an import job to become ACTIVE or an imported version to settle.",
    )

    @property
    def key_ring_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/keyRings/{self.key_ring}"


# ---------------------------------------------------------------------------------------------
# Static half
# ---------------------------------------------------------------------------------------------


class GcpPlugin(ProviderPlugin[GcpSettings]):
    kind = "gcp"
    settings_model = GcpSettings

    def check_key(self, settings: GcpSettings, address: str, key: KeySpec) -> Diagnostics:
        diags = Diagnostics()
        key_type = gcp_key_type(key.algorithm, key.usage)
        if key_type is None:
            diags.error(
                f"Google Cloud KMS cannot import {key.algorithm.name} keys for {key.usage.value}",
                f"The target {address} imports AES_256 for encrypt, HMAC_SHA224 to HMAC_SHA512 for mac, RSA_2048 to "
                "RSA_4096 for sign or decrypt, and EC_P256 or EC_P384 for sign. Choose one of these, or remove "
                f"{address} from this key's targets.",
                range=key.range,
                address=key.address,
            )
        elif not self.wrap_offers(settings, key.algorithm):
            diags.error(
                f"import method {settings.import_method} cannot carry {key.algorithm.name} keys",
                f"Direct RSA-OAEP import methods cannot wrap RSA private keys. Set import_method on {address} to an "
                "RSA_OAEP_*_AES_256 method, or remove it to let keyplan choose.",
                range=key.range,
                address=key.address,
            )
        user_labels = dict(key.labels)
        for reserved in RESERVED_TAGS:
            if reserved in user_labels:
                diags.error(
                    f"label {reserved!r} is reserved by keyplan",
                    f"keyplan sets {reserved!r} on every key it manages. Rename or remove this label.",
                    range=key.range,
                    address=key.address,
                )
        if len(user_labels) + len(RESERVED_TAGS) > MAX_LABELS:
            diags.error(
                f"too many labels for Google Cloud KMS ({len(user_labels)})",
                f"A Cloud KMS key carries at most {MAX_LABELS} labels, and keyplan adds {len(RESERVED_TAGS)} of its "
                f"own. Keep at most {MAX_LABELS - len(RESERVED_TAGS)} labels on this key.",
                range=key.range,
                address=key.address,
            )
        for label, value in user_labels.items():
            problems = label_problems(label, value)
            if problems:
                diags.error(
                    f"label {label!r} is not allowed by Google Cloud KMS",
                    f"At {address}, the {'; the '.join(problems)}. Rename the label or change its value to follow "
                    "these rules.",
                    range=key.range,
                    address=key.address,
                )
        if key.expiry is not None:
            diags.warning(
                "expiry is ignored by Google Cloud KMS",
                f"Cloud KMS has no expiry for imported material, so keys at {address} keep their material until "
                "keyplan rotates or destroys it. Remove expiry, or use rotation to replace material on a schedule.",
                range=key.range,
                address=key.address,
            )
        if key.aliases:
            diags.error(
                "Google Cloud KMS keys have no aliases",
                f"Cloud KMS finds keys by their resource name only, so aliases cannot be set at {address}. Remove "
                "aliases from this key, or declare the key for the targets that have aliases separately from the "
                "one for Cloud KMS.",
                range=key.range,
                address=key.address,
            )
        if key.description is not None:
            diags.warning(
                "description is not kept by Google Cloud KMS",
                f"Cloud KMS keys have no description, so keys at {address} do not carry it and keyplan never "
                "compares it there. Put what it says in a label if Cloud KMS should show it, or remove "
                "description when no other target uses it.",
                range=key.range,
                address=key.address,
            )
        return diags

    def metadata_fields(self, settings: GcpSettings) -> frozenset[str]:
        """Cloud KMS keeps labels and (per version) enabled; it has no aliases or description."""
        return frozenset({"labels", "enabled"})

    def wrap_offers(self, settings: GcpSettings, algorithm: Algorithm) -> list[WrapOffer]:
        if not any(gcp_key_type(algorithm, usage) for usage in algorithm.usages):
            return []
        offers = []
        for (method, bits), name in IMPORT_METHODS.items():  # already strongest first, 4096 before 3072
            if not method.hybrid and algorithm.kind is MaterialKind.RSA:
                continue
            if settings.import_method is not None and name != settings.import_method:
                continue
            offers.append(WrapOffer(method=method, wrapping_key_bits=bits))
        return offers

    def prerequisites(self, settings: GcpSettings, key: KeySpec, offer: WrapOffer) -> list[PrerequisiteSpec]:
        ring = settings.key_ring_name
        method = import_method_name(offer.method, offer.wrapping_key_bits)
        return [
            PrerequisiteSpec(
                id=key_ring_prerequisite_id(ring),
                kind=KIND_KEY_RING,
                description=f"key ring {ring}",
                attributes={"name": ring},
            ),
            PrerequisiteSpec(
                id=import_job_prerequisite_id(ring, method, settings.protection_level),
                kind=KIND_IMPORT_JOB,
                description=f"{method} import job ({settings.protection_level}) in key ring {ring}",
                attributes={"key_ring": ring, "import_method": method, "protection_level": settings.protection_level},
            ),
        ]

    def lifecycle_support(self, settings: GcpSettings, key: KeySpec) -> KeyLifecycleSupport:
        # Cloud KMS keeps imported versions until they are destroyed: no expiry time exists.
        return KeyLifecycleSupport(
            rotation=True, expiry=False, rotation_mechanism="Google: new key version imported, then made primary"
        )

    def protection_note(self, settings: GcpSettings) -> str | None:
        return (
            "Google Cloud KMS destroys versions only after the scheduled-destruction period; an IAM deny policy "
            "on cloudkms.cryptoKeyVersions.destroy guards the key itself"
        )

    def deletion_note(self, settings: GcpSettings) -> str:
        return (
            "every version scheduled for destruction (Cloud KMS cannot delete a key holding imported versions; "
            "the key and its name remain, empty, after the destroy window)"
        )

    def open(self, settings: GcpSettings, context: RuntimeContext) -> Provider:
        server: EmulatorServer | None = None
        endpoint, local = settings.endpoint, settings.credentials == "local"
        if endpoint == "embedded":
            from providers.emulation import start_embedded
            from providers.gcp.emulator import GcpKmsEmulator

            server = start_embedded(GcpKmsEmulator, context.data_dir, name=context.address.replace(".", "-"))
            endpoint, local = server.url, True
        try:
            client = _client(endpoint, local)
        except Exception as exc:
            if server is not None:
                server.stop()
            raise classify(exc, "connect to Google Cloud KMS") from exc
        return GcpProvider(settings, context, client, server)


def _client(endpoint: str | None, local: bool) -> KeyManagementServiceClient:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.kms_v1 import KeyManagementServiceClient

    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    # None: Application Default Credentials
    credentials = AnonymousCredentials() if local else None  # type: ignore[no-untyped-call]
    return KeyManagementServiceClient(transport="rest", credentials=credentials, client_options=options)


# ---------------------------------------------------------------------------------------------
# Error classification
# ---------------------------------------------------------------------------------------------


def google_status(exc: BaseException) -> str | None:
    """The canonical code (`FAILED_PRECONDITION`, …) of a REST error body: over REST the SDK picks
    its exception class from the HTTP status alone, and 400 covers several codes."""
    response = getattr(exc, "response", None)
    try:
        status = response.json()["error"]["status"] if response is not None else None
    except Exception:
        return None
    return status if isinstance(status, str) else None


def classify(exc: BaseException, action: str, remote_id: str | None = None) -> ProviderError:
    """A `ProviderError` for an SDK or transport failure while trying to `action`."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, ProviderError):
        return exc
    message = getattr(exc, "message", None) or str(exc).split("\n")[0]
    code = google_status(exc)

    def error(kind: ErrorKind, summary: str, detail: str) -> ProviderError:
        return ProviderError(kind, summary, detail, code=code or type(exc).__name__, remote_id=remote_id)

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


# ---------------------------------------------------------------------------------------------
# Runtime half
# ---------------------------------------------------------------------------------------------


def _when(value: Any) -> datetime | None:
    """A proto timestamp from the SDK as an aware datetime (None when unset)."""
    if not value or not isinstance(value, datetime) or value.timestamp() <= 0:
        return None
    return datetime.fromtimestamp(value.timestamp(), UTC)


def _version_id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class GcpProvider(Provider):
    """The crypto keys of one key ring, through the REST client. Thread-safe: the client's HTTP
    session is shared, and import-job creation is serialised per import method."""

    def __init__(
        self,
        settings: GcpSettings,
        context: RuntimeContext,
        client: KeyManagementServiceClient,
        server: EmulatorServer | None = None,
    ) -> None:
        self.address = context.address
        self.settings = settings
        self._client = client
        self._server = server
        self._log = context.log
        self._ring = settings.key_ring_name
        self._job_locks: dict[str, threading.Lock] = {}
        self._job_locks_guard = threading.Lock()
        self._jobs: dict[str, ImportJob] = {}  # "method:level" -> the ACTIVE job last seen, guarded by its lock

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(self, action: str, method: Callable[..., T], remote_id: str | None = None, **kwargs: Any) -> T:
        try:
            return method(retry=None, timeout=self.settings.timeout_seconds, **kwargs)
        except Exception as exc:
            raise classify(exc, action, remote_id) from exc

    def _list(self, action: str, method: Callable[..., Iterable[T]], request: dict[str, Any]) -> list[T]:
        try:
            return list(method(request=request, retry=None, timeout=self.settings.timeout_seconds))
        except Exception as exc:
            raise classify(exc, action) from exc

    def _wait(self, what: str, poll: Callable[[], T], settled: Callable[[T], bool], first: T) -> T:
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

    def _fan_out(self, function: Callable[[str], T], items: list[str]) -> dict[str, T]:
        if not items:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(items))) as pool:
            return dict(zip(items, pool.map(function, items), strict=True))

    def _get_key(self, remote_id: str) -> CryptoKey | None:
        try:
            return self._call("read the key", self._client.get_crypto_key, remote_id, name=remote_id)
        except ProviderError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise

    def _versions(self, remote_id: str) -> list[CryptoKeyVersion]:
        return self._list(
            f"list the versions of {remote_id}",
            self._client.list_crypto_key_versions,
            {"parent": remote_id, "page_size": 1000},
        )

    # -- prerequisites ----------------------------------------------------------------------------

    def ensure_prerequisite(self, request: EnsurePrerequisiteRequest) -> PrerequisiteRecord:
        spec = request.spec
        if spec.kind == KIND_KEY_RING:
            ring = self._ensure_key_ring(spec.attributes.get("name", self._ring))
            return PrerequisiteRecord(id=spec.id, kind=spec.kind, remote_id=ring, attributes=dict(spec.attributes))
        if spec.kind == KIND_IMPORT_JOB:
            self._ensure_key_ring(spec.attributes.get("key_ring", self._ring))
            known = request.known.remote_id if request.known else None
            job = self._active_import_job(spec.attributes["import_method"], spec.attributes["protection_level"], known)
            return self._job_record(job, spec.id, dict(spec.attributes))
        raise ProviderError(
            ErrorKind.FATAL,
            f"unknown Google Cloud KMS prerequisite kind {spec.kind!r}",
            "This plan was made by a different keyplan version. Run `keyplan plan` again with this version.",
        )

    def _ensure_key_ring(self, ring: str) -> str:
        try:
            return self._call("read the key ring", self._client.get_key_ring, ring, name=ring).name
        except ProviderError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
        parent, _, ring_id = ring.rpartition("/keyRings/")
        try:
            self._call(
                "create the key ring",
                self._client.create_key_ring,
                ring,
                request={"parent": parent, "key_ring_id": ring_id, "key_ring": {}},
            )
        except ProviderError as failure:
            if failure.kind is not ErrorKind.CONFLICT:  # created meanwhile by another run
                raise
        return ring

    def _job_record(self, job: ImportJob, prerequisite_id: str, attributes: dict[str, str]) -> PrerequisiteRecord:
        return PrerequisiteRecord(
            id=prerequisite_id,
            kind=KIND_IMPORT_JOB,
            remote_id=job.name,
            attributes=attributes,
            expires_at=_when(job.expire_time),
        )

    def _job_lock(self, method: str, level: str) -> threading.Lock:
        with self._job_locks_guard:
            return self._job_locks.setdefault(f"{method}:{level}", threading.Lock())

    def _active_import_job(self, method: str, level: str, known: str | None) -> ImportJob:
        """An ACTIVE import job for this method and level: the known one while it lasts, else the
        longest-lived one in the key ring, else a new one (waited for until ACTIVE)."""
        with self._job_lock(method, level):
            cached = self._jobs.get(f"{method}:{level}")
            if cached is not None and (known is None or cached.name == known) and self._lasts(cached):
                return cached
            candidates: list[ImportJob] = []
            if known:
                try:
                    candidates.append(self._call("read the import job", self._client.get_import_job, known, name=known))
                except ProviderError as error:
                    if error.kind is not ErrorKind.NOT_FOUND:
                        raise
            if not any(self._usable_job(job, method, level) for job in candidates):
                candidates = self._list(
                    "list import jobs", self._client.list_import_jobs, {"parent": self._ring, "page_size": 1000}
                )
            usable = [job for job in candidates if self._usable_job(job, method, level)]
            if usable:
                job = max(usable, key=lambda j: _when(j.expire_time) or datetime.min.replace(tzinfo=UTC))
            else:
                job = self._create_import_job(method, level)
            job = self._wait(
                f"generating import job {job.name}",
                lambda: self._call("read the import job", self._client.get_import_job, job.name, name=job.name),
                lambda j: j.state.name != "PENDING_GENERATION",
                job,
            )
            if job.state.name != "ACTIVE":  # expired while we looked: start afresh
                job = self._create_import_job(method, level)
                job = self._wait(
                    f"generating import job {job.name}",
                    lambda: self._call("read the import job", self._client.get_import_job, job.name, name=job.name),
                    lambda j: j.state.name != "PENDING_GENERATION",
                    job,
                )
            self._jobs[f"{method}:{level}"] = job
            return job

    @staticmethod
    def _lasts(job: ImportJob) -> bool:
        """Whether a job seen ACTIVE is still good for an import started now, by this machine's
        clock. Should Cloud KMS disagree, the import fails as expired and `_job_expired` drops it."""
        expires = _when(job.expire_time)
        return job.state.name == "ACTIVE" and expires is not None and expires - JOB_MARGIN > datetime.now(UTC)

    @staticmethod
    def _usable_job(job: ImportJob, method: str, level: str) -> bool:
        return (
            job.import_method.name == method
            and job.protection_level.name == level
            and job.state.name in ("ACTIVE", "PENDING_GENERATION")
        )

    def _create_import_job(self, method: str, level: str) -> ImportJob:
        job_id = f"keyplan-{method.lower().replace('_', '-')}-{level.lower()}-{secrets.token_hex(3)}"
        return self._call(
            "create an import job",
            self._client.create_import_job,
            self._ring,
            request={
                "parent": self._ring,
                "import_job_id": job_id,
                "import_job": {"import_method": method, "protection_level": level},
            },
        )

    # -- keys -------------------------------------------------------------------------------------

    def _labels(self, key: KeySpec, address: str, managed_by: str) -> dict[str, str]:
        labels = {k: v for k, v in key.labels.items() if k not in RESERVED_TAGS}
        labels[RESERVED_TAG_ADDRESS] = encode_label_value(address)
        labels[RESERVED_TAG_MANAGED_BY] = encode_label_value(managed_by)
        return labels

    def create_key(self, request: CreateKeyRequest) -> CreateKeyResponse:
        key_type = gcp_key_type(request.key.algorithm, request.key.usage)
        if key_type is None:
            raise ProviderError(
                ErrorKind.FATAL,
                f"Google Cloud KMS cannot hold {request.key.algorithm.name} keys for {request.key.usage.value}",
                "Run `keyplan validate` to see which algorithms this target imports, and change the key.",
            )
        labels = self._labels(request.key, request.address, request.managed_by)
        for attempt in range(MAX_NAME_ATTEMPTS):
            key_id = crypto_key_id(request.address, attempt)
            name = f"{self._ring}/cryptoKeys/{key_id}"
            try:
                created = self._call(
                    "create the key",
                    self._client.create_crypto_key,
                    name,
                    request={
                        "parent": self._ring,
                        "crypto_key_id": key_id,
                        "skip_initial_version_creation": True,
                        "crypto_key": {
                            "purpose": key_type.purpose,
                            "import_only": True,
                            "labels": labels,
                            "version_template": {
                                "algorithm": key_type.algorithm,
                                "protection_level": self.settings.protection_level,
                            },
                        },
                    },
                )
                return CreateKeyResponse(remote_id=created.name, state=KeyState.PENDING_IMPORT)
            except ProviderError as error:
                if error.kind is not ErrorKind.CONFLICT:
                    raise
            if self._adoptable(name, labels):  # an earlier attempt created it and its answer was lost
                return CreateKeyResponse(remote_id=name, state=KeyState.PENDING_IMPORT)
        raise ProviderError(
            ErrorKind.CONFLICT,
            f"no free Cloud KMS key name for {request.address}",
            f"The names derived from this address in {self._ring} are all taken by keys that cannot be deleted. "
            "Use another key_ring for this provider.",
        )

    def _adoptable(self, name: str, labels: dict[str, str]) -> bool:
        existing = self._get_key(name)
        if existing is None:
            return False
        ours = all(existing.labels.get(k) == labels[k] for k in RESERVED_TAGS)
        return ours and not self._versions(name)

    # -- import -----------------------------------------------------------------------------------

    def get_import_parameters(self, request: ImportParametersRequest) -> ImportParameters:
        from cryptography.hazmat.primitives import serialization

        method = import_method_name(request.offer.method, request.offer.wrapping_key_bits)
        level = self.settings.protection_level
        record = request.prerequisites.get(import_job_prerequisite_id(self._ring, method, level))
        job = self._active_import_job(method, level, record.remote_id if record else None)
        public_key = serialization.load_pem_public_key(job.public_key.pem.encode())
        return ImportParameters(
            method=request.offer.method,
            wrapping_public_key=public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            wrapping_key_bits=request.offer.wrapping_key_bits,
            reference=job.name,
            expires_at=_when(job.expire_time),
        )

    def import_material(self, request: ImportMaterialRequest) -> ImportMaterialResponse:
        key_type = gcp_key_type(request.key.algorithm, request.key.usage)
        job_name = request.parameters.reference
        if key_type is None or not job_name:
            raise ProviderError(
                ErrorKind.FATAL,
                f"no Cloud KMS import possible for {request.address}",
                "The import parameters do not name an import job, or the algorithm is not importable. Run "
                "`keyplan plan` again.",
                remote_id=request.remote_id,
            )
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
        try:
            version = self._call(
                "import key material", self._client.import_crypto_key_version, request.remote_id, request=body
            )
        except ProviderError as error:
            if error.code == "FAILED_PRECONDITION" and self._job_expired(job_name):
                raise ProviderError(
                    ErrorKind.PARAMETERS_EXPIRED,
                    f"import job {job_name} expired before the material was imported",
                    "Cloud KMS import jobs last three days. keyplan fetches a fresh import job and wraps the "
                    "material again; run apply again if it stopped here.",
                    code=error.code,
                    remote_id=request.remote_id,
                ) from error
            raise
        version = self._wait(
            f"importing into {request.remote_id}",
            lambda: self._call(
                "read the imported version", self._client.get_crypto_key_version, version.name, name=version.name
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
        version_id = _version_id(version.name)
        if key_type.purpose == "ENCRYPT_DECRYPT" and self._needs_primary(request, version_id):
            self._make_primary(request.remote_id, version_id)
        return ImportMaterialResponse(remote_id=request.remote_id, version_id=version_id)

    def _needs_primary(self, request: ImportMaterialRequest, version_id: str) -> bool:
        """The first material becomes primary at once; a rotation waits for promote_version; a
        re-import takes over when the key has no usable primary left."""
        if request.purpose is ImportPurpose.INITIAL:
            return True
        if request.purpose is ImportPurpose.NEW_VERSION:
            return False
        key = self._get_key(request.remote_id)
        return key is not None and (not key.primary.name or key.primary.state.name != "ENABLED")

    def _job_expired(self, job_name: str) -> bool:
        try:
            job = self._call("read the import job", self._client.get_import_job, job_name, name=job_name)
        except ProviderError:
            return False
        if job.state.name != "EXPIRED":
            return False
        key = f"{job.import_method.name}:{job.protection_level.name}"
        with self._job_lock(job.import_method.name, job.protection_level.name):
            if key in self._jobs and self._jobs[key].name == job_name:
                del self._jobs[key]
        return True

    def promote_version(self, request: PromoteVersionRequest) -> None:
        key = self._call("read the key", self._client.get_crypto_key, request.remote_id, name=request.remote_id)
        if key.purpose.name != "ENCRYPT_DECRYPT":
            return  # asymmetric and MAC keys have no primary; callers name versions
        self._make_primary(request.remote_id, request.version_id)

    def _make_primary(self, remote_id: str, version_id: str) -> None:
        self._call(
            "make the new version primary",
            self._client.update_crypto_key_primary_version,
            remote_id,
            request={"name": remote_id, "crypto_key_version_id": version_id},
        )

    # -- metadata and lifecycle -------------------------------------------------------------------

    def update_key(self, request: UpdateKeyRequest) -> RemoteKey:
        labels = self._labels(request.key, request.address, request.managed_by)
        key = self._call(
            "update the key's labels",
            self._client.update_crypto_key,
            request.remote_id,
            request={"crypto_key": {"name": request.remote_id, "labels": labels}, "update_mask": {"paths": ["labels"]}},
        )
        target = "ENABLED" if request.key.enabled else "DISABLED"
        versions = self._versions(request.remote_id)
        changed = False
        for index, version in enumerate(versions):
            if version.state.name in ("ENABLED", "DISABLED") and version.state.name != target and version.import_job:
                versions[index] = self._call(
                    f"{'enable' if request.key.enabled else 'disable'} a key version",
                    self._client.update_crypto_key_version,
                    request.remote_id,
                    request={
                        "crypto_key_version": {"name": version.name, "state": target},
                        "update_mask": {"paths": ["state"]},
                    },
                )
                changed = True
        if changed and key.primary.name:  # the answer above shows the primary as it was before
            key = self._call("read the key", self._client.get_crypto_key, request.remote_id, name=request.remote_id)
        lookup = {encode_label_value(request.address): request.address}
        return self._remote_key(key, versions, lookup, request.managed_by, with_versions=True)

    def schedule_deletion(self, request: ScheduleDeletionRequest) -> ScheduleDeletionResponse:
        latest: datetime | None = None
        for version in self._versions(request.remote_id):
            if version.state.name in ("ENABLED", "DISABLED"):
                version = self._call(
                    "schedule a key version for destruction",
                    self._client.destroy_crypto_key_version,
                    request.remote_id,
                    name=version.name,
                )
            destroy_time = _when(version.destroy_time) if version.state.name == "DESTROY_SCHEDULED" else None
            if destroy_time and (latest is None or destroy_time > latest):
                latest = destroy_time
        return ScheduleDeletionResponse(deletion_date=latest)

    def cancel_deletion(self, request: CancelDeletionRequest) -> None:
        """Restore every version scheduled for destruction. Restored versions come back DISABLED,
        as at Cloud KMS; enabling them is `update_key`'s part (the plan adds it when the key is
        meant to be enabled). A version already DESTROYED cannot be restored: it needs its
        material re-imported, which the plan shows as a re-import."""
        for version in self._versions(request.remote_id):
            if version.state.name == "DESTROY_SCHEDULED":
                self._call(
                    "restore a key version",
                    self._client.restore_crypto_key_version,
                    request.remote_id,
                    name=version.name,
                )

    # -- reading ----------------------------------------------------------------------------------

    def describe(self, remote_id: str) -> RemoteKey | None:
        key = self._get_key(remote_id)
        if key is None:
            return None
        return self._remote_key(key, self._versions(remote_id), {}, None, with_versions=True)

    def inventory(self, request: InventoryRequest) -> Inventory:
        managed_value = encode_label_value(request.managed_by)
        label_filter = (
            f"labels.{RESERVED_TAG_MANAGED_BY}:*"
            if request.scan
            else f"labels.{RESERVED_TAG_MANAGED_BY}={managed_value}"
        )
        try:
            listed = self._list(
                "list keys",
                self._client.list_crypto_keys,
                {"parent": self._ring, "page_size": 1000, "filter": label_filter},
            )
        except ProviderError as error:
            if error.kind is not ErrorKind.NOT_FOUND:  # no key ring yet: nothing listed
                raise
            listed = []
        keys = {key.name: key for key in listed if request.scan or key.name in request.known}
        unlisted = [remote_id for remote_id in request.known if remote_id not in keys]
        fetched = self._fan_out(self._get_key, unlisted)
        keys.update({remote_id: key for remote_id, key in fetched.items() if key is not None})
        missing = tuple(remote_id for remote_id, key in fetched.items() if key is None)

        wanted = set(request.with_versions)
        need_versions = [
            name
            for name, key in keys.items()
            if name in wanted or not self._primary_settles(key, known=name in request.known)
        ]
        versions = self._fan_out(self._versions, need_versions)
        # A key state does not know whose versions were all destroyed is one keyplan deleted and
        # forgot (or another tool's): there is nothing to adopt or restore, and it is no orphan.
        keys = {
            name: key
            for name, key in keys.items()
            if name in request.known or not spent(self._views(versions.get(name)))
        }
        lookup = {encode_label_value(a): a for a in (*request.addresses, *request.known.values())}
        remote = tuple(
            self._remote_key(key, versions.get(name), lookup, request.managed_by, with_versions=name in wanted)
            for name, key in keys.items()
        )
        return Inventory(keys=remote, missing=missing, prerequisites=self._prerequisite_records())

    @staticmethod
    def _primary_settles(key: CryptoKey, *, known: bool = True) -> bool:
        """Whether the listing alone tells the key's state: the primary stands for the key (see
        `mapping.current_version`), except that a destruction date is the latest of all versions'
        and a key state does not know needs its versions to tell whether all were destroyed."""
        if not key.primary.name:
            return False
        state = key.primary.state.name
        return state in ("ENABLED", "DISABLED") or (known and state != "DESTROY_SCHEDULED")

    @staticmethod
    def _views(versions: list[CryptoKeyVersion] | None) -> list[VersionView]:
        return [VersionView(_version_id(v.name), v.state.name) for v in versions or []]

    def _prerequisite_records(self) -> tuple[PrerequisiteRecord, ...]:
        try:
            jobs = self._list(
                "list import jobs", self._client.list_import_jobs, {"parent": self._ring, "page_size": 1000}
            )
        except ProviderError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return ()
            raise
        ring_id = key_ring_prerequisite_id(self._ring)
        best: dict[str, ImportJob] = {}
        for job in jobs:
            method, level = job.import_method.name, job.protection_level.name
            if job.state.name != "ACTIVE" or method not in WRAPS_BY_IMPORT_METHOD:
                continue
            spec_id = import_job_prerequisite_id(self._ring, method, level)
            if spec_id not in best or (_when(job.expire_time) or datetime.min.replace(tzinfo=UTC)) > (
                _when(best[spec_id].expire_time) or datetime.min.replace(tzinfo=UTC)
            ):
                best[spec_id] = job
        records = [
            PrerequisiteRecord(id=ring_id, kind=KIND_KEY_RING, remote_id=self._ring, attributes={"name": self._ring})
        ]
        for spec_id, job in best.items():
            attributes = {
                "key_ring": self._ring,
                "import_method": job.import_method.name,
                "protection_level": job.protection_level.name,
            }
            records.append(self._job_record(job, spec_id, attributes))
        return tuple(records)

    def _remote_key(
        self,
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
        primary = VersionView(_version_id(key.primary.name), key.primary.state.name) if key.primary.name else None
        current = current_version(primary, self._views(versions))
        state = key_state(current)
        current_id = current.version_id if current else None
        scheduled = [_when(v.destroy_time) for v in versions or [] if v.state.name == "DESTROY_SCHEDULED"]
        if primary is not None and primary.state == "DESTROY_SCHEDULED":
            scheduled.append(_when(key.primary.destroy_time))
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
            versions=tuple(self._remote_version(v, current_id) for v in versions)
            if with_versions and versions is not None
            else None,
            deletion_date=deletion,
        )

    @staticmethod
    def _remote_version(version: CryptoKeyVersion, current_id: str | None) -> RemoteVersion:
        version_id = _version_id(version.name)
        return RemoteVersion(
            version_id=version_id,
            state=VERSION_STATES.get(version.state.name, VERSION_STATES["IMPORT_FAILED"]),
            current=version_id == current_id,
            imported=bool(version.import_job),
            created_at=_when(version.create_time),
        )

    def discover(self) -> list[RemoteKey]:
        try:
            listed = self._list("list keys", self._client.list_crypto_keys, {"parent": self._ring, "page_size": 1000})
        except ProviderError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return []
            raise
        imported = [key for key in listed if key.import_only]
        versions = self._fan_out(self._versions, [k.name for k in imported if not self._primary_settles(k)])
        return [self._remote_key(k, versions.get(k.name), {}, None, with_versions=False) for k in imported]

    def prove_material(self, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
        from providers.gcp.proof import prove

        return prove(self, request, witness)

    def close(self) -> None:
        try:
            self._client.transport.close()  # type: ignore[no-untyped-call]
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None


__all__ = ["GcpPlugin", "GcpProvider", "GcpSettings", "classify"]
