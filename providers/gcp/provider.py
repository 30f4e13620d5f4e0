"""The Google Cloud KMS provider at run time, on the official `google-cloud-kms` client.

One provider block manages the crypto keys of one key ring. Keys are created `import_only`
without an initial version; material arrives through import jobs (see `importjobs`) and each
import is a new CryptoKeyVersion (see `imports`). The client talks REST, with the SDK's own retries off and
short timeouts: keyplan's apply walker retries what `errors` classifies as retryable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAG_MANAGED_BY,
    RESERVED_TAGS,
    CancelDeletionRequest,
    CancelDeletionResponse,
    CreateKeyRequest,
    CreateKeyResponse,
    DescribeKeyRequest,
    DescribeKeyResponse,
    DiscoverRequest,
    DiscoverResponse,
    EnsurePrerequisiteRequest,
    ErrorKind,
    ImportMaterialRequest,
    ImportMaterialResponse,
    ImportParameters,
    ImportParametersRequest,
    Inventory,
    InventoryRequest,
    KeySpec,
    KeyState,
    MaterialProof,
    MaterialProofRequest,
    MaterialWitness,
    PrerequisiteRecord,
    PromoteVersionRequest,
    PromoteVersionResponse,
    Provider,
    ProviderError,
    RemoteKey,
    RuntimeContext,
    ScheduleDeletionRequest,
    ScheduleDeletionResponse,
    UpdateKeyRequest,
)
from providers.common import EmbeddedEmulator, fan_out
from providers.common.errors import unless_not_found
from providers.gcp import imports
from providers.gcp.client import KmsCalls, make_client
from providers.gcp.errors import classify
from providers.gcp.importjobs import ImportJobs, job_record
from providers.gcp.mapping import (
    KIND_IMPORT_JOB,
    KIND_KEY_RING,
    crypto_key_id,
    encode_label_value,
    gcp_key_type,
    import_job_prerequisite_id,
    import_method_name,
    spent,
)
from providers.gcp.settings import GcpSettings
from providers.gcp.views import primary_settles, remote_key, version_views, when

if TYPE_CHECKING:
    from google.cloud.kms_v1 import CryptoKey, CryptoKeyVersion

MAX_NAME_ATTEMPTS = 20
T = TypeVar("T")


class GcpProvider(Provider):
    """The crypto keys of one key ring, through the REST client. Thread-safe: the client's HTTP
    session is shared, and import-job creation is serialised per import method."""

    def __init__(self, settings: GcpSettings, context: RuntimeContext) -> None:
        self.address = context.address
        self.settings = settings
        self._log = context.log
        self._ring = settings.key_ring_name
        self._embedded: EmbeddedEmulator | None = None
        endpoint, local = settings.endpoint, settings.credentials == "local"
        if endpoint == "embedded":
            from providers.gcp.emulator import GcpKmsEmulator

            self._embedded = EmbeddedEmulator(GcpKmsEmulator, context)
            endpoint, local = self._embedded.url, True
        try:
            self._client = make_client(endpoint, local)
        except Exception as exc:
            self._stop_embedded()
            raise classify(exc, "connect to Google Cloud KMS") from exc
        self._kms = KmsCalls(settings, settings.call_limits(context))
        self._jobs = ImportJobs(self._kms, self._client, self._ring)
        # The version each import made, by key and wrapped blob: when a later step of the same
        # import fails (making the version primary was throttled) and the import is tried again,
        # it settles that version instead of adding a second one holding the same material.
        self._imported: dict[tuple[str, bytes], CryptoKeyVersion] = {}
        self._imported_lock = threading.Lock()

    def _fan_out(self, function: Callable[[str], T], items: list[str]) -> dict[str, T]:
        return fan_out(function, items, max_workers=self.settings.max_concurrency, name="gcp")

    def _get_key(self, remote_id: str) -> CryptoKey | None:
        return unless_not_found(
            lambda: self._kms.call("read the key", self._client.get_crypto_key, remote_id, name=remote_id)
        )

    def _versions(self, remote_id: str) -> list[CryptoKeyVersion]:
        return self._kms.list(
            f"list the versions of {remote_id}",
            self._client.list_crypto_key_versions,
            {"parent": remote_id, "page_size": 1000},
        )

    def ensure_prerequisite(self, request: EnsurePrerequisiteRequest) -> PrerequisiteRecord:
        spec = request.spec
        if spec.kind == KIND_KEY_RING:
            ring = self._ensure_key_ring(spec.attributes.get("name", self._ring))
            return PrerequisiteRecord(id=spec.id, kind=spec.kind, remote_id=ring, attributes=dict(spec.attributes))
        if spec.kind == KIND_IMPORT_JOB:
            self._ensure_key_ring(spec.attributes.get("key_ring", self._ring))
            known = request.known.remote_id if request.known else None
            job = self._jobs.active(spec.attributes["import_method"], spec.attributes["protection_level"], known)
            return job_record(job, spec.id, dict(spec.attributes))
        raise ProviderError(
            ErrorKind.FATAL,
            f"unknown Google Cloud KMS prerequisite kind {spec.kind!r}",
            "This plan was made by a different keyplan version. Run `keyplan plan` again with this version.",
        )

    def _ensure_key_ring(self, ring: str) -> str:
        try:
            return self._kms.call("read the key ring", self._client.get_key_ring, ring, name=ring).name
        except ProviderError as error:
            if error.kind is not ErrorKind.NOT_FOUND:
                raise
        parent, _, ring_id = ring.rpartition("/keyRings/")
        try:
            self._kms.call(
                "create the key ring",
                self._client.create_key_ring,
                ring,
                request={"parent": parent, "key_ring_id": ring_id, "key_ring": {}},
            )
        except ProviderError as failure:
            if failure.kind is not ErrorKind.CONFLICT:  # created meanwhile by another run
                raise
        return ring

    def _labels(self, key: KeySpec, address: str, managed_by: str) -> dict[str, str]:
        labels = {k: v for k, v in key.labels.items() if k not in RESERVED_TAGS}
        labels[RESERVED_TAG_ADDRESS] = encode_label_value(address)
        labels[RESERVED_TAG_MANAGED_BY] = encode_label_value(managed_by)
        return labels

    def create_key(self, request: CreateKeyRequest) -> CreateKeyResponse:
        key_type = gcp_key_type(request.key.algorithm, request.key.usage, self.settings.symmetric_algorithm)
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
                created = self._kms.call(
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

    def get_import_parameters(self, request: ImportParametersRequest) -> ImportParameters:
        from cryptography.hazmat.primitives import serialization

        method = import_method_name(request.offer.method, request.offer.wrapping_key_bits)
        level = self.settings.protection_level
        record = request.prerequisites.get(import_job_prerequisite_id(self._ring, method, level))
        job = self._jobs.active(method, level, record.remote_id if record else None)
        public_key = serialization.load_pem_public_key(job.public_key.pem.encode())
        return ImportParameters(
            method=request.offer.method,
            wrapping_public_key=public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            wrapping_key_bits=request.offer.wrapping_key_bits,
            reference=job.name,
            expires_at=when(job.expire_time),
        )

    def import_material(self, request: ImportMaterialRequest) -> ImportMaterialResponse:
        return imports.import_material(self, request)

    def promote_version(self, request: PromoteVersionRequest) -> PromoteVersionResponse:
        key = self._kms.call("read the key", self._client.get_crypto_key, request.remote_id, name=request.remote_id)
        if key.purpose.name != "ENCRYPT_DECRYPT":
            return PromoteVersionResponse(promoted=False)  # asymmetric and MAC keys have no primary; callers name versions
        self._make_primary(request.remote_id, request.version_id)
        return PromoteVersionResponse(promoted=True)

    def _make_primary(self, remote_id: str, version_id: str) -> None:
        self._kms.call(
            "make the new version primary",
            self._client.update_crypto_key_primary_version,
            remote_id,
            request={"name": remote_id, "crypto_key_version_id": version_id},
        )

    def update_key(self, request: UpdateKeyRequest) -> RemoteKey:
        labels = self._labels(request.key, request.address, request.managed_by)
        key = self._kms.call(
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
                versions[index] = self._kms.call(
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
            key = self._kms.call("read the key", self._client.get_crypto_key, request.remote_id, name=request.remote_id)
        lookup = {encode_label_value(request.address): request.address}
        return remote_key(key, versions, lookup, request.managed_by, with_versions=True)

    def schedule_deletion(self, request: ScheduleDeletionRequest) -> ScheduleDeletionResponse:
        latest: datetime | None = None
        for version in self._versions(request.remote_id):
            if version.state.name in ("ENABLED", "DISABLED"):
                version = self._kms.call(
                    "schedule a key version for destruction",
                    self._client.destroy_crypto_key_version,
                    request.remote_id,
                    name=version.name,
                )
            destroy_time = when(version.destroy_time) if version.state.name == "DESTROY_SCHEDULED" else None
            if destroy_time and (latest is None or destroy_time > latest):
                latest = destroy_time
        return ScheduleDeletionResponse(deletion_date=latest)

    def cancel_deletion(self, request: CancelDeletionRequest) -> CancelDeletionResponse:
        """Restore every version scheduled for destruction. Restored versions come back DISABLED,
        as at Cloud KMS; enabling them is `update_key`'s part (the plan adds it when the key is
        meant to be enabled). A version already DESTROYED cannot be restored: it needs its
        material re-imported, which the plan shows as a re-import."""
        for version in self._versions(request.remote_id):
            if version.state.name == "DESTROY_SCHEDULED":
                self._kms.call(
                    "restore a key version",
                    self._client.restore_crypto_key_version,
                    request.remote_id,
                    name=version.name,
                )
        return CancelDeletionResponse(enabled=False)

    def describe(self, request: DescribeKeyRequest) -> DescribeKeyResponse:
        return DescribeKeyResponse(key=self._describe(request.remote_id))

    def _describe(self, remote_id: str) -> RemoteKey | None:
        key = self._get_key(remote_id)
        if key is None:
            return None
        return remote_key(key, self._versions(remote_id), {}, None, with_versions=True)

    def inventory(self, request: InventoryRequest) -> Inventory:
        managed_value = encode_label_value(request.managed_by)
        label_filter = (
            f"labels.{RESERVED_TAG_MANAGED_BY}:*"
            if request.scan
            else f"labels.{RESERVED_TAG_MANAGED_BY}={managed_value}"
        )
        try:
            listed = self._kms.list(
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
            if name in wanted or not primary_settles(key, known=name in request.known)
        ]
        versions = self._fan_out(self._versions, need_versions)
        # A key state does not know whose versions were all destroyed is one keyplan deleted and
        # forgot (or another tool's): there is nothing to adopt or restore, and it is no orphan.
        keys = {
            name: key
            for name, key in keys.items()
            if name in request.known or not spent(version_views(versions.get(name)))
        }
        lookup = {encode_label_value(a): a for a in (*request.addresses, *request.known.values())}
        remote = tuple(
            remote_key(key, versions.get(name), lookup, request.managed_by, with_versions=name in wanted)
            for name, key in keys.items()
        )
        return Inventory(keys=remote, missing=missing, prerequisites=self._jobs.records())

    def discover(self, request: DiscoverRequest) -> DiscoverResponse:
        return DiscoverResponse(keys=tuple(self._discover()))

    def _discover(self) -> list[RemoteKey]:
        try:
            listed = self._kms.list("list keys", self._client.list_crypto_keys, {"parent": self._ring, "page_size": 1000})
        except ProviderError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return []
            raise
        imported = [key for key in listed if key.import_only]
        versions = self._fan_out(self._versions, [k.name for k in imported if not primary_settles(k)])
        return [remote_key(k, versions.get(k.name), {}, None, with_versions=False) for k in imported]

    def prove_material(self, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
        from providers.gcp.proof import prove

        return prove(self, request, witness)

    def close(self) -> None:
        try:
            self._client.transport.close()  # type: ignore[no-untyped-call]
        finally:
            self._stop_embedded()

    def _stop_embedded(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
