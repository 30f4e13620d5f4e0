"""keyplan's AWS KMS provider at run time: one region of one account through boto3.

Each keyplan key is one KMS key with Origin EXTERNAL. Symmetric keys rotate by importing NEW key
material and calling RotateKeyOnDemand; asymmetric and HMAC keys keep their one material for
life. Every KMS key keyplan creates carries the tags `keyplan-address` (the key address, escaped
into the characters AWS tagging allows everywhere) and `keyplan-managed-by`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from keyplan.algorithms import MaterialKind
from keyplan.provider import (
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
    ImportPurpose,
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
from providers.aws.client import KmsClient
from providers.aws.mapping import (
    KEY_SPECS,
    KEY_STATES,
    SINGLE_MATERIAL_VERSION,
    remote_key,
    reserved_tags,
    rotation_version,
    single_material_version,
    utc,
)
from providers.aws.settings import AwsSettings
from providers.common import EmbeddedEmulator, fan_out
from providers.common.errors import unless_not_found

T = TypeVar("T")


class AwsKmsProvider(Provider):
    """One region of one AWS account, driven through one thread-safe boto3 KMS client."""

    def __init__(self, settings: AwsSettings, context: RuntimeContext) -> None:
        self.address = context.address
        self.settings = settings
        self._embedded: EmbeddedEmulator | None = None
        endpoint = settings.endpoint
        local = settings.credentials == "local"
        if endpoint == "embedded":
            from providers.aws.emulator import KmsEmulator

            self._embedded = EmbeddedEmulator(KmsEmulator, context)
            endpoint, local = self._embedded.url, True
        self._endpoint_url = endpoint
        try:
            self._kms = KmsClient(settings, endpoint, local=local, limits=settings.call_limits(context))
        except Exception:
            self.close()
            raise

    def _concurrently(self, work: Callable[[str], T], items: Iterable[str]) -> dict[str, T]:
        return fan_out(work, items, max_workers=self.settings.max_concurrency, name="aws")

    # -- reading ----------------------------------------------------------------------------------

    def _tags(self, remote_id: str) -> dict[str, str]:
        return {
            t["TagKey"]: t["TagValue"]
            for t in self._kms.pages("ListResourceTags", "Tags", remote_id, KeyId=remote_id, Limit=50)
        }

    def _aliases_by_key(self, key_id: str | None = None) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        kwargs = {"KeyId": key_id} if key_id else {}
        for alias in self._kms.pages("ListAliases", "Aliases", key_id, Limit=100, **kwargs):
            if alias.get("TargetKeyId"):
                found.setdefault(alias["TargetKeyId"], []).append(alias["AliasName"])
        return found

    def _versions(self, remote_id: str, metadata: dict[str, Any]) -> tuple[RemoteVersion, ...]:
        if metadata.get("KeySpec") != "SYMMETRIC_DEFAULT":
            return single_material_version(metadata)
        return self.material_versions(remote_id)

    def material_versions(self, remote_id: str) -> tuple[RemoteVersion, ...]:
        """Every material a symmetric key holds or held (ListKeyRotations with its material)."""
        rotations = self._kms.pages(
            "ListKeyRotations",
            "Rotations",
            remote_id,
            KeyId=remote_id,
            IncludeKeyMaterial="ALL_KEY_MATERIAL",
            Limit=1000,
        )
        return tuple(rotation_version(r) for r in rotations)

    def _read_key(
        self, remote_id: str, addresses: Iterable[str], aliases: dict[str, list[str]] | None, with_versions: bool
    ) -> RemoteKey:
        metadata = self._kms.call("DescribeKey", remote_id, KeyId=remote_id)["KeyMetadata"]
        tags = self._tags(remote_id)
        if aliases is None:
            aliases = self._aliases_by_key(metadata["KeyId"])
        versions = self._versions(remote_id, metadata) if with_versions else None
        return remote_key(metadata, tags, aliases.get(metadata["KeyId"], []), addresses, versions)

    def describe(self, request: DescribeKeyRequest) -> DescribeKeyResponse:
        return DescribeKeyResponse(key=self._describe(request.remote_id))

    def _describe(self, remote_id: str) -> RemoteKey | None:
        return unless_not_found(lambda: self._read_key(remote_id, (), None, with_versions=False))

    def inventory(self, request: InventoryRequest) -> Inventory:
        listed = list(self._kms.pages("ListKeys", "Keys", Limit=1000))
        arn_of = {k["KeyArn"]: k["KeyArn"] for k in listed} | {k["KeyId"]: k["KeyArn"] for k in listed}
        aliases = self._aliases_by_key()
        present = [rid for rid in request.known if rid in arn_of]
        missing = [rid for rid in request.known if rid not in arn_of]
        known_arns = {arn_of[rid] for rid in present}
        with_versions = set(request.with_versions)

        def read_known(remote_id: str) -> RemoteKey | None:  # None: deleted between ListKeys and DescribeKey
            return unless_not_found(
                lambda: self._read_key(remote_id, request.addresses, aliases, remote_id in with_versions)
            )

        keys = self._concurrently(read_known, present)
        missing += [rid for rid, key in keys.items() if key is None]
        found = [key for key in keys.values() if key is not None]
        if request.scan:
            found += self._scan([k["KeyArn"] for k in listed if k["KeyArn"] not in known_arns], request, aliases)
        return Inventory(keys=tuple(found), missing=tuple(missing))

    def _scan(self, arns: list[str], request: InventoryRequest, aliases: dict[str, list[str]]) -> list[RemoteKey]:
        """Keys tagged keyplan-managed-by that state does not know (adoption after a crash, orphans)."""
        with_versions = set(request.with_versions)

        def read(arn: str) -> RemoteKey | None:
            tags = self._tags(arn)
            if RESERVED_TAG_MANAGED_BY not in tags:
                return None
            metadata = self._kms.call("DescribeKey", arn, KeyId=arn)["KeyMetadata"]
            versions = self._versions(arn, metadata) if arn in with_versions else None
            return remote_key(metadata, tags, aliases.get(metadata["KeyId"], []), request.addresses, versions)

        def read_if_managed(arn: str) -> RemoteKey | None:
            return unless_not_found(lambda: read(arn))

        return [key for key in self._concurrently(read_if_managed, arns).values() if key is not None]

    def discover(self, request: DiscoverRequest) -> DiscoverResponse:
        return DiscoverResponse(keys=tuple(self._discover()))

    def _discover(self) -> list[RemoteKey]:
        listed = [k["KeyArn"] for k in self._kms.pages("ListKeys", "Keys", Limit=1000)]
        aliases = self._aliases_by_key()

        def read(arn: str) -> RemoteKey | None:
            metadata = self._kms.call("DescribeKey", arn, KeyId=arn)["KeyMetadata"]
            if metadata.get("Origin") != "EXTERNAL":
                return None
            return remote_key(metadata, self._tags(arn), aliases.get(metadata["KeyId"], []), ())

        def read_if_external(arn: str) -> RemoteKey | None:
            return unless_not_found(lambda: read(arn))

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
        tags = {**request.key.labels, **reserved_tags(request.address, request.managed_by)}
        try:
            result = self._kms.call(
                "CreateKey",
                Origin="EXTERNAL",
                KeySpec=spec_name,
                KeyUsage=usages[request.key.usage],
                Description=request.key.description or "",
                Tags=[{"TagKey": k, "TagValue": v} for k, v in tags.items()],
            )
        except ProviderError as error:
            # A 5xx or a timeout may come after KMS created the key (the answer was lost): find it
            # by its tags rather than let the retry create a second one.
            created = self._created_for(request.address, request.managed_by) if error.retryable else None
            if created is None:
                raise
            return created
        metadata = result["KeyMetadata"]
        self._kms.created(metadata["Arn"])
        return CreateKeyResponse(
            remote_id=metadata["Arn"], state=KEY_STATES.get(metadata.get("KeyState", ""), KeyState.PENDING_IMPORT)
        )

    def _created_for(self, address: str, managed_by: str) -> CreateKeyResponse | None:
        """A key pending import tagged with this address and this state: one an earlier CreateKey
        made although its answer never arrived. Costs a tag read per key, only after a lost answer."""
        wanted = reserved_tags(address, managed_by)
        listed = [k["KeyArn"] for k in self._kms.pages("ListKeys", "Keys", Limit=1000)]

        def ours(arn: str) -> bool:
            tags = unless_not_found(lambda: self._tags(arn)) or {}
            return all(tags.get(k) == v for k, v in wanted.items())

        for arn in sorted(arn for arn, match in self._concurrently(ours, listed).items() if match):
            metadata = self._kms.call("DescribeKey", arn, KeyId=arn)["KeyMetadata"]
            if metadata.get("KeyState") == "PendingImport":
                self._kms.created(metadata["Arn"])
                return CreateKeyResponse(remote_id=metadata["Arn"], state=KeyState.PENDING_IMPORT)
        return None

    def get_import_parameters(self, request: ImportParametersRequest) -> ImportParameters:
        bits = request.offer.wrapping_key_bits
        result = self._kms.call(
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
            expires_at=utc(result.get("ParametersValidTo")),
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
        result = self._kms.call("ImportKeyMaterial", request.remote_id, **kwargs)
        version = result.get("KeyMaterialId") if symmetric else None
        return ImportMaterialResponse(
            remote_id=request.remote_id,
            version_id=version or SINGLE_MATERIAL_VERSION,
            expires_at=request.valid_to,
        )

    def promote_version(self, request: PromoteVersionRequest) -> PromoteVersionResponse:
        try:
            self._kms.call("RotateKeyOnDemand", request.remote_id, KeyId=request.remote_id)
        except ProviderError as error:
            # A retried promotion finds nothing pending because the first one succeeded.
            if error.kind is not ErrorKind.CONFLICT or self._current_material(request.remote_id) != request.version_id:
                raise
        return PromoteVersionResponse(promoted=True)

    def _current_material(self, remote_id: str) -> str | None:
        metadata = self._kms.call("DescribeKey", remote_id, KeyId=remote_id)["KeyMetadata"]
        current = metadata.get("CurrentKeyMaterialId")
        return str(current) if current else None

    def update_key(self, request: UpdateKeyRequest) -> RemoteKey:
        remote_id, key = request.remote_id, request.key
        self._update_tags(remote_id, {**key.labels, **reserved_tags(request.address, request.managed_by)})
        metadata = self._kms.call("DescribeKey", remote_id, KeyId=remote_id)["KeyMetadata"]
        self._update_aliases(remote_id, metadata["KeyId"], set(key.aliases))
        if (metadata.get("Description") or "") != (key.description or ""):
            self._kms.call("UpdateKeyDescription", remote_id, KeyId=remote_id, Description=key.description or "")
        state = metadata.get("KeyState", "")
        self._update_enabled(remote_id, state, key.enabled)
        # The key as it now is, from what was just read and set: reading it back would cost
        # three more calls per key (DescribeKey, ListResourceTags, ListAliases).
        if state in ("Enabled", "Disabled"):
            state = "Enabled" if key.enabled else "Disabled"
        after = {**metadata, "KeyState": state, "Enabled": state == "Enabled", "Description": key.description or ""}
        tags = {**key.labels, **reserved_tags(request.address, request.managed_by)}
        return remote_key(after, tags, sorted(key.aliases), (request.address,))

    def _update_tags(self, remote_id: str, desired: dict[str, str]) -> None:
        current = self._tags(remote_id)
        changed = {k: v for k, v in desired.items() if current.get(k) != v}
        removed = [k for k in current if k not in desired]
        if removed:
            self._kms.call("UntagResource", remote_id, KeyId=remote_id, TagKeys=removed)
        if changed:
            tags = [{"TagKey": k, "TagValue": v} for k, v in changed.items()]
            self._kms.call("TagResource", remote_id, KeyId=remote_id, Tags=tags)

    def _update_aliases(self, remote_id: str, key_id: str, desired: set[str]) -> None:
        current = set(self._aliases_by_key(key_id).get(key_id, []))
        for alias in sorted(current - desired):
            self._kms.call("DeleteAlias", remote_id, AliasName=alias)
        for alias in sorted(desired - current):
            try:
                self._kms.call("CreateAlias", remote_id, AliasName=alias, TargetKeyId=key_id)
            except ProviderError as error:
                if error.code != "AlreadyExistsException":
                    raise
                # The configuration gives this alias to this key: move it here.
                self._kms.call("UpdateAlias", remote_id, AliasName=alias, TargetKeyId=key_id)

    def _update_enabled(self, remote_id: str, state: str, enabled: bool) -> None:
        if enabled and state == "Disabled":
            self._kms.call("EnableKey", remote_id, KeyId=remote_id)
        elif not enabled and state == "Enabled":
            self._kms.call("DisableKey", remote_id, KeyId=remote_id)
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
            result = self._kms.call(
                "ScheduleKeyDeletion", request.remote_id, KeyId=request.remote_id, PendingWindowInDays=window
            )
        except ProviderError as error:
            if error.kind is not ErrorKind.CONFLICT:
                raise
            metadata = self._kms.call("DescribeKey", request.remote_id, KeyId=request.remote_id)["KeyMetadata"]
            if metadata.get("KeyState") != "PendingDeletion":
                raise
            return ScheduleDeletionResponse(deletion_date=utc(metadata.get("DeletionDate")))
        return ScheduleDeletionResponse(deletion_date=utc(result.get("DeletionDate")))

    def cancel_deletion(self, request: CancelDeletionRequest) -> CancelDeletionResponse:
        try:
            self._kms.call("CancelKeyDeletion", request.remote_id, KeyId=request.remote_id)
        except ProviderError as error:
            if error.kind is not ErrorKind.CONFLICT:
                raise
            metadata = self._kms.call("DescribeKey", request.remote_id, KeyId=request.remote_id)["KeyMetadata"]
            if metadata.get("KeyState") == "PendingDeletion":
                raise
        return CancelDeletionResponse(enabled=False)  # KMS restores a key disabled

    def prove_material(self, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
        from providers.aws.proof import prove

        return prove(self, request, witness)

    def close(self) -> None:
        kms = getattr(self, "_kms", None)
        if kms is not None:
            kms.close()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
