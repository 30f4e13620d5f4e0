"""The Azure Key Vault / Managed HSM provider at run time, through `azure-keyvault-keys`.

Azure creates a key when material is first imported under its name, so `create_key` makes no
call; every import (first, rotation or re-import) adds a version under the same name. Material
is wrapped for the vault's key-exchange key (see `kek`). The transfer blob is the .byok JSON of
Azure's BYOK specification.

Remote ids are versionless key ids under the configured `vault_url`
(`https://<vault>.vault.azure.net/keys/<name>`), even when requests go to another `endpoint`
(an emulator or private peer), so state does not depend on where the vault was reached.
Key names are derived from keyplan addresses: a readable part plus a short hash.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from keyplan.provider import (
    RESERVED_TAG_ADDRESS,
    RESERVED_TAG_MANAGED_BY,
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
    RemoteVersion,
    RuntimeContext,
    ScheduleDeletionRequest,
    ScheduleDeletionResponse,
    UpdateKeyRequest,
)
from providers.azure.client import VaultCalls, make_key_client
from providers.azure.errors import (
    DELETED_BUT_RECOVERABLE,
    KEY_STATE_REFUSALS,
    import_refused,
    name_held_by_deleted_key,
)
from providers.azure.kek import KeyExchangeKeys, public_key_der
from providers.azure.mapping import (
    KEK_KIND,
    WRAP_METHOD,
    azure_key_type,
    build_transfer_blob,
    key_name_for,
    key_operations,
    logical_kid,
    remote_id_for,
    same_expiry,
)
from providers.azure.settings import KEY_NAME_PATTERN, AzureSettings
from providers.azure.views import remote_deleted, remote_key, remote_versions
from providers.common import EmbeddedEmulator, fan_out

LOST_ANSWER_SKEW = timedelta(seconds=30)  # clock difference tolerated between keyplan and the vault

if TYPE_CHECKING:
    from azure.keyvault.keys import DeletedKey, KeyProperties, KeyVaultKey


class AzureProvider(Provider):
    """One vault, opened for a run. The SDK client is shared by all threads."""

    def __init__(self, settings: AzureSettings, context: RuntimeContext) -> None:
        self.settings = settings
        self.address = context.address
        self.vault_url = settings.vault_url
        self._embedded: EmbeddedEmulator | None = None
        endpoint, ca_bundle, credentials = settings.endpoint, settings.ca_bundle, settings.credentials
        if endpoint == "embedded":
            from providers.azure.emulator import emulator_class

            app = emulator_class(
                settings.vault_kind,
                purge_protection=settings.purge_protection,
                retention_days=settings.retention_days,
                vault_url=settings.vault_url,
            )
            self._embedded = EmbeddedEmulator(app, context)
            server = self._embedded.server
            endpoint, ca_bundle, credentials = server.url, str(server.ca_cert), "local"
        self.client_url = (endpoint or self.vault_url).rstrip("/")
        # Transfer blobs name the KEK as the service that unwraps them knows it: the embedded
        # emulator stands in for vault_url itself (so an exported file stays valid across runs,
        # whatever port the emulator gets); any other endpoint knows only its own address.
        self._kid_base = self.vault_url if self._embedded is not None else self.client_url
        self._client, self._credential = make_key_client(
            settings, self.client_url, ca_bundle=ca_bundle, local=credentials == "local", challenge=endpoint is None
        )
        shown_client = settings.shown("endpoint" if settings.endpoint else "vault_url", self.client_url)  # in messages
        self._call = VaultCalls(settings.shown("vault_url", self.vault_url), shown_client, settings.call_limits(context))
        self._optional = self._call.optional
        self._kek = KeyExchangeKeys(settings, self._client, self._call)
        self._closed = threading.Event()
        # what this run's imports answered, by lower-case key name, for the update that follows
        self._imported: dict[str, KeyVaultKey] = {}
        self._imported_lock = threading.Lock()
        self._holders: dict[str, str | None] | None = None  # see _name_holders
        self._holders_lock = threading.Lock()

    def remote_id_for(self, name: str) -> str:
        return remote_id_for(self.vault_url, name)

    def _name_of(self, remote_id: str) -> str:
        parts = urlsplit(remote_id).path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "keys" or not KEY_NAME_PATTERN.match(parts[1]):
            raise ProviderError(
                ErrorKind.FATAL,
                "Not an Azure key id",
                f"{remote_id!r} is not of the form {self.vault_url}/keys/<name>. The state may have been edited "
                "by hand; restore it from the previous copy.",
                remote_id=remote_id,
            )
        return parts[1]

    def _wire_kid(self, kid: str) -> str:
        """A kid as the service the client talks to names it (what that service checks)."""
        return self._kid_base + urlsplit(kid).path

    def inventory(self, request: InventoryRequest) -> Inventory:
        known_by_name = {self._name_of(rid).lower(): rid for rid in request.known}
        listed: list[KeyProperties] = self._call(
            "listing keys", lambda: list(self._client.list_properties_of_keys(max_page_size=25))
        )
        kek_name = self.settings.kek_name.lower()
        chosen: dict[str, str] = {}  # lower name -> remote id to report
        kek_listed = False
        for props in listed:
            name = (props.name or "").lower()
            if name == kek_name:
                kek_listed = True
            elif name in known_by_name:
                chosen[name] = known_by_name[name]
            elif request.scan and RESERVED_TAG_MANAGED_BY in (props.tags or {}):
                chosen[name] = self.remote_id_for(props.name or name)
        with_versions = {self._name_of(rid).lower() for rid in request.with_versions}
        keys = self._fetch_concurrently(chosen, with_versions, request.known)
        prerequisites = (self._kek.current_record(),) if kek_listed else ()
        reported = {k.remote_id for k in keys}
        missing_names = [n for n in known_by_name if n not in chosen or chosen[n] not in reported]
        deleted, missing = self._deleted_or_missing(missing_names, known_by_name, request.known)
        return Inventory(
            keys=tuple(keys) + tuple(deleted),
            missing=tuple(missing),
            prerequisites=tuple(r for r in prerequisites if r is not None),
        )

    def _fetch_concurrently(
        self, chosen: dict[str, str], with_versions: set[str], known: dict[str, str]
    ) -> list[RemoteKey]:
        """Listing items carry no key type or version, so each reported key is read once
        (and its versions listed when asked), up to max_concurrency calls at a time."""

        def fetch(item: tuple[str, str]) -> RemoteKey | None:
            name, remote_id = item
            return self._describe_live(name, remote_id, list_versions=name in with_versions, known=known)

        results = fan_out(fetch, chosen.items(), max_workers=self.settings.max_concurrency, name="azure")
        return [key for key in results.values() if key is not None]

    def _deleted_or_missing(
        self, names: list[str], known_by_name: dict[str, str], known: dict[str, str]
    ) -> tuple[list[RemoteKey], list[str]]:
        if not names:
            return [], []
        listed: list[DeletedKey] = self._call(
            "listing deleted keys", lambda: list(self._client.list_deleted_keys(max_page_size=25))
        )
        by_name = {(d.name or "").lower(): d for d in listed}
        deleted, missing = [], []
        for name in names:
            remote_id = known_by_name[name]
            if name in by_name:
                deleted.append(remote_deleted(by_name[name], remote_id, known))
            else:
                missing.append(remote_id)
        return deleted, missing

    def describe(self, request: DescribeKeyRequest) -> DescribeKeyResponse:
        return DescribeKeyResponse(key=self._describe(request.remote_id))

    def _describe(self, remote_id: str) -> RemoteKey | None:
        name = self._name_of(remote_id)
        live = self._describe_live(name, remote_id, list_versions=True, known={})
        if live is not None:
            return live
        deleted = self._optional(
            "reading a deleted key", lambda: self._client.get_deleted_key(name), remote_id=remote_id
        )
        return remote_deleted(deleted, remote_id, {}) if deleted is not None else None

    def _describe_live(
        self, name: str, remote_id: str, *, list_versions: bool, known: dict[str, str]
    ) -> RemoteKey | None:
        key = self._optional(f"reading key {name}", lambda: self._client.get_key(name), remote_id=remote_id)
        if key is None:
            return None
        versions = self._versions(name, key.properties.version, remote_id) if list_versions else None
        return remote_key(key.properties, remote_id, known, key=key, versions=versions)

    def _versions(self, name: str, current: str | None, remote_id: str) -> tuple[RemoteVersion, ...]:
        listed: list[KeyProperties] = self._call(
            f"listing the versions of key {name}",
            lambda: list(self._client.list_properties_of_key_versions(name, max_page_size=25)),
            remote_id=remote_id,
        )
        return remote_versions(listed, current, datetime.now(UTC))

    def discover(self, request: DiscoverRequest) -> DiscoverResponse:
        return DiscoverResponse(keys=tuple(self._discover()))

    def _discover(self) -> list[RemoteKey]:
        listed: list[KeyProperties] = self._call(
            "listing keys", lambda: list(self._client.list_properties_of_keys(max_page_size=25))
        )
        kek_name = self.settings.kek_name.lower()
        names = [p.name for p in listed if p.name and p.name.lower() != kek_name]
        # A listing carries no key material type: each key is read for its JWK (kty, crv, n), so
        # EC and AES keys are named by algorithm, not reported as unknown.
        found = fan_out(
            lambda name: self._describe_live(name, self.remote_id_for(name), list_versions=False, known={}),
            names,
            max_workers=self.settings.max_concurrency,
            name="azure",
        )
        return [key for key in found.values() if key is not None]

    def ensure_prerequisite(self, request: EnsurePrerequisiteRequest) -> PrerequisiteRecord:
        if request.spec.kind != KEK_KIND:
            raise ProviderError(
                ErrorKind.FATAL,
                f"Unknown Azure prerequisite kind {request.spec.kind!r}",
                "The plan names a prerequisite this provider does not create; re-run keyplan plan.",
            )
        return self._kek.ensure()

    # -- keys -----------------------------------------------------------------------------------

    def create_key(self, request: CreateKeyRequest) -> CreateKeyResponse:
        """Azure creates the key when its first material is imported, so nothing is created here.
        But an import under a name a live key holds adds a version to that key and makes it
        current: a key of another keyplan state, or of nobody, must not be taken over that way."""
        name = key_name_for(request.address)
        remote_id = self.remote_id_for(name)
        holders = self._name_holders()
        owner = holders.get(name.lower())
        if name.lower() in holders and owner != request.managed_by:
            held_by = f"a key managed by another keyplan state ({owner})" if owner else "a key keyplan does not manage"
            raise ProviderError(
                ErrorKind.CONFLICT,
                f"The key name {name} in {self.vault_url} is held by {held_by}",
                f"Azure adds an import under an existing name as a new version of that key and makes it current, "
                f"so creating {request.address} here would replace the material of a key this state does not own. "
                "If it is this key and its state was lost, adopt it with `keyplan import`; otherwise remove or "
                "rename that key in the vault, or give this key another address.",
                remote_id=remote_id,
            )
        return CreateKeyResponse(remote_id=remote_id, exists_remotely=False, state=KeyState.PENDING_IMPORT)

    def _name_holders(self) -> dict[str, str | None]:
        """Every live key name in the vault (lower case) and its keyplan-managed-by tag, listed
        once per run on the first create: one listing page per 25 keys, not a read per key."""
        with self._holders_lock:
            if self._holders is None:
                listed: list[KeyProperties] = self._call(
                    "listing keys", lambda: list(self._client.list_properties_of_keys(max_page_size=25))
                )
                self._holders = {
                    (p.name or "").lower(): (p.tags or {}).get(RESERVED_TAG_MANAGED_BY) for p in listed if p.name
                }
            return self._holders

    def get_import_parameters(self, request: ImportParametersRequest) -> ImportParameters:
        if request.offer.method is not WRAP_METHOD:
            raise ProviderError(
                ErrorKind.FATAL,
                f"Azure does not accept {request.offer.method.value}",
                f"Azure imports only material wrapped with {WRAP_METHOD.value} (CKM_RSA_AES_KEY_WRAP). "
                "Re-run keyplan plan so the wrap method is negotiated again.",
                remote_id=request.remote_id,
            )
        kek = self._kek.for_import(request.prerequisites, request.remote_id)
        spki, bits = public_key_der(kek)
        return ImportParameters(
            method=WRAP_METHOD,
            wrapping_public_key=spki,
            wrapping_key_bits=bits,
            reference=logical_kid(self.vault_url, kek.id),
            expires_at=kek.properties.expires_on,
        )

    def import_material(self, request: ImportMaterialRequest) -> ImportMaterialResponse:
        from azure.keyvault.keys import JsonWebKey

        name = self._name_of(request.remote_id)
        key_type = azure_key_type(request.key.algorithm)
        if key_type is None or request.parameters.method is not WRAP_METHOD or not request.parameters.reference:
            raise ProviderError(
                ErrorKind.FATAL,
                f"Azure cannot import this {request.key.algorithm.name} material",
                "The algorithm or the import parameters do not fit Azure's BYOK import. Re-run keyplan plan.",
                remote_id=request.remote_id,
            )
        blob = self.transfer_blob(request.parameters, request.wrapped)
        jwk = JsonWebKey(kty=key_type.kty, crv=key_type.crv, key_ops=key_operations(request.key.usage), t=blob)
        tags = {
            **request.key.labels,
            RESERVED_TAG_ADDRESS: request.address,
            RESERVED_TAG_MANAGED_BY: request.managed_by,
        }
        action = f"importing material into key {name}"
        started = datetime.now(UTC)
        try:
            imported = self._call(
                action,
                lambda: self._client.import_key(
                    name,
                    jwk,
                    hardware_protected=True,
                    enabled=request.key.enabled,
                    tags=tags,
                    expires_on=request.valid_to,
                ),
                remote_id=request.remote_id,
            )
        except ProviderError as error:
            if error.code == DELETED_BUT_RECOVERABLE:
                raise self._name_held(name, error) from error.__cause__
            landed = self._landed_import(name, tags, started) if error.retryable else None
            if landed is None:
                raise self._import_failure(error, request) from error.__cause__
            imported = landed
        with self._imported_lock:
            self._imported[name.lower()] = imported
        with self._holders_lock:
            if self._holders is not None:
                self._holders[name.lower()] = request.managed_by
        return ImportMaterialResponse(
            remote_id=request.remote_id,
            version_id=imported.properties.version or "",
            expires_at=imported.properties.expires_on,
        )

    def _landed_import(self, name: str, tags: dict[str, str], started: datetime) -> KeyVaultKey | None:
        """The version an import created although its answer was lost (a 5xx or a timeout after
        the vault did the work): the key's newest version, made since this import started and
        carrying this import's tags. Sending the import again would add a second version."""
        key = self._optional(f"reading key {name}", lambda: self._client.get_key(name))
        if key is None or dict(key.properties.tags or {}) != tags:
            return None
        created = key.properties.created_on
        return key if created is not None and created >= started - LOST_ANSWER_SKEW else None

    def _name_held(self, name: str, error: ProviderError) -> ProviderError:
        """The name is held by a soft-deleted key: say which, until when, and both ways out."""
        deleted = self._optional("reading a deleted key", lambda: self._client.get_deleted_key(name))
        return name_held_by_deleted_key(name, self.vault_url, self.settings.purge_protection, deleted, error)

    def transfer_blob(self, parameters: ImportParameters, wrapped: bytes) -> bytes:
        """The .byok file for material wrapped under `parameters`: its header names the KEK as
        the endpoint keyplan talks to knows it (the vault itself, or the emulator standing in)."""
        if parameters.method is not WRAP_METHOD or not parameters.reference:
            raise ProviderError(
                ErrorKind.FATAL,
                "These import parameters do not name an Azure key-exchange key",
                f"A transfer blob needs material wrapped with {WRAP_METHOD.value} for a key-exchange key of "
                f"{self.vault_url}. This looks like a keyplan bug; please report it.",
            )
        return build_transfer_blob(self._wire_kid(parameters.reference), wrapped)

    def _import_failure(self, error: ProviderError, request: ImportMaterialRequest) -> ProviderError:
        """A refused import whose KEK version is gone or unusable needs fresh parameters and a
        fresh wrap; any other refusal stands (Azure documents no distinct codes for these)."""
        key_refused = error.kind is ErrorKind.CONFLICT and error.code in KEY_STATE_REFUSALS  # e.g. the KEK disabled
        if error.kind not in (ErrorKind.FATAL, ErrorKind.NOT_FOUND, ErrorKind.AUTH) and not key_refused:
            return error
        kek_usable = self._kek.still_usable(request.parameters.reference or "")
        return import_refused(error, request.parameters.reference or "", request.remote_id, kek_usable=kek_usable)

    def promote_version(self, request: PromoteVersionRequest) -> PromoteVersionResponse:
        """Azure's versionless key id always resolves to the newest version: nothing to do."""
        return PromoteVersionResponse(promoted=False)

    def update_key(self, request: UpdateKeyRequest) -> RemoteKey:
        """Set tags, enabled and expiry on the latest version. Right after this run imported the
        key (which set them already) the answer of that import is used and nothing is sent."""
        name = self._name_of(request.remote_id)
        with self._imported_lock:
            current = self._imported.pop(name.lower(), None)
        if current is None:
            current = self._call(
                f"reading key {name}", lambda: self._client.get_key(name), remote_id=request.remote_id
            )
        tags = {
            **request.key.labels,
            RESERVED_TAG_ADDRESS: request.address,
            RESERVED_TAG_MANAGED_BY: request.managed_by,
        }
        props = current.properties
        expires_on = None
        if request.key.expiry is not None and props.created_on is not None:
            expires_on = props.created_on + request.key.expiry
        if dict(props.tags or {}) == tags and bool(props.enabled) == request.key.enabled and same_expiry(
            props.expires_on, expires_on
        ):
            return remote_key(props, request.remote_id, {}, key=current)
        updated = self._call(
            f"updating key {name}",
            lambda: self._client.update_key_properties(
                name,
                props.version,
                enabled=request.key.enabled,
                tags=tags,
                expires_on=expires_on,
            ),
            remote_id=request.remote_id,
        )
        return remote_key(updated.properties, request.remote_id, {}, key=updated)

    def schedule_deletion(self, request: ScheduleDeletionRequest) -> ScheduleDeletionResponse:
        name = self._name_of(request.remote_id)
        action = f"deleting key {name}"

        def delete() -> DeletedKey:
            poller = self._client.begin_delete_key(name)
            poller.wait()  # result() alone returns before the deletion has finished
            return poller.result()

        deleted = self._optional(action, delete, remote_id=request.remote_id)
        if deleted is None:  # already soft-deleted: deletion is idempotent
            deleted = self._call(action, lambda: self._client.get_deleted_key(name), remote_id=request.remote_id)
        return ScheduleDeletionResponse(deletion_date=deleted.scheduled_purge_date)

    def cancel_deletion(self, request: CancelDeletionRequest) -> CancelDeletionResponse:
        name = self._name_of(request.remote_id)

        def recover() -> KeyVaultKey:
            return self._client.begin_recover_deleted_key(name).result()

        try:
            recovered = self._call(f"recovering key {name}", recover, remote_id=request.remote_id)
        except ProviderError as error:
            live = self._optional(
                f"reading key {name}", lambda: self._client.get_key(name), remote_id=request.remote_id
            )
            if error.kind is not ErrorKind.NOT_FOUND or live is None:
                raise
            recovered = live
        return CancelDeletionResponse(enabled=bool(recovered.properties.enabled))

    def prove_material(self, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
        from providers.azure.proof import prove

        return prove(self, request, witness)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._client.close()
        close_credential = getattr(self._credential, "close", None)
        if callable(close_credential):
            close_credential()
        if self._embedded is not None:
            self._embedded.stop()
