"""The AWS KMS provider beyond the conformance suite: static checks and wrap offers, the address
tag encoding, aliases and descriptions, re-import and expiry, versions, bulk inventory, the
embedded endpoint, credentials and error classification — against the emulator through boto3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from keyplan.algorithms import ALGORITHMS, KeyUsage, MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, wrap
from keyplan.diagnostics import SourceRange
from keyplan.provider import (
    CreateKeyRequest,
    DescribeKeyRequest,
    DiscoverRequest,
    ErrorKind,
    ImportMaterialRequest,
    ImportParametersRequest,
    ImportPurpose,
    InventoryRequest,
    KeySpec,
    KeyState,
    PromoteVersionRequest,
    ProviderError,
    RuntimeContext,
    ScheduleDeletionRequest,
    UpdateKeyRequest,
    VersionState,
)
from providers.aws import PLUGIN, AwsKmsProvider, AwsSettings, KmsEmulator
from providers.aws.errors import classify
from providers.aws.mapping import decode_address, encode_address
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json

REGION = "eu-west-1"
MANAGED_BY = "keyplan-test"


@dataclass
class Setup:
    server: EmulatorServer
    settings: AwsSettings
    provider: AwsKmsProvider
    kms: Any  # a raw boto3 client, for changes made outside keyplan

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return fetch_json(self.server.url + path, method="POST" if payload is not None else "GET", payload=payload)

    def fingerprints(self) -> list[str]:
        return [m["fingerprint"] for m in self.control("/_emulator/materials")["materials"] if m["imported"]]


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[Setup]:
    store = DocumentStore(tmp_path / "aws.sqlite")
    server = EmulatorServer(KmsEmulator(store, Clock()), cert_dir=tmp_path).start()
    settings = AwsSettings(region=REGION, endpoint=server.url, credentials="local", wrapping_key_spec="RSA_2048")
    provider = PLUGIN.open(
        settings, RuntimeContext(address="aws.test", working_dir=tmp_path, data_dir=tmp_path / ".kp")
    )
    assert isinstance(provider, AwsKmsProvider)
    kms = boto3.client(
        "kms", endpoint_url=server.url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    yield Setup(server, settings, provider, kms)
    provider.close()
    server.stop()
    store.close()


def spec_for(algorithm: str, **changes: Any) -> KeySpec:
    algo = ALGORITHMS[algorithm]
    base = KeySpec(address=f'key.test["{algorithm.lower()}"]', algorithm=algo, usage=algo.default_usage)
    return base.model_copy(update=changes)


def material_for(algorithm: str) -> SecretBytes:
    algo = ALGORITHMS[algorithm]
    assert algo.material_length is not None
    return SecretBytes(os.urandom(algo.material_length))


def create(aws: Setup, key: KeySpec) -> str:
    return aws.provider.create_key(CreateKeyRequest(address=key.address, managed_by=MANAGED_BY, key=key)).remote_id


def import_into(
    aws: Setup,
    remote_id: str,
    key: KeySpec,
    material: SecretBytes,
    purpose: ImportPurpose = ImportPurpose.INITIAL,
    **extra: Any,
) -> str:
    offer = PLUGIN.wrap_offers(aws.settings, key.algorithm)[0]
    params = aws.provider.get_import_parameters(ImportParametersRequest(remote_id=remote_id, key=key, offer=offer))
    response = aws.provider.import_material(
        ImportMaterialRequest(
            remote_id=remote_id,
            address=key.address,
            managed_by=MANAGED_BY,
            key=key,
            parameters=params,
            wrapped=wrap(params.method, params.wrapping_public_key, material),
            purpose=purpose,
            **extra,
        )
    )
    return response.version_id


def update(aws: Setup, remote_id: str, key: KeySpec) -> Any:
    return aws.provider.update_key(
        UpdateKeyRequest(remote_id=remote_id, address=key.address, managed_by=MANAGED_BY, key=key)
    )


# -- static half -----------------------------------------------------------------------------------------


def test_wrap_offers_follow_what_aws_accepts() -> None:
    settings = AwsSettings(region=REGION)

    def methods(name: str) -> list[WrapMethod]:
        return [o.method for o in PLUGIN.wrap_offers(settings, ALGORITHMS[name])]

    assert methods("AES_256") == [WrapMethod.RSAES_OAEP_SHA_256, WrapMethod.RSAES_OAEP_SHA_1]
    assert methods("HMAC_SHA512") == [WrapMethod.RSAES_OAEP_SHA_256, WrapMethod.RSAES_OAEP_SHA_1]
    assert methods("RSA_4096") == [WrapMethod.RSA_AES_KEY_WRAP_SHA_256, WrapMethod.RSA_AES_KEY_WRAP_SHA_1]
    assert methods("EC_P384") == [
        WrapMethod.RSA_AES_KEY_WRAP_SHA_256,
        WrapMethod.RSAES_OAEP_SHA_256,
        WrapMethod.RSA_AES_KEY_WRAP_SHA_1,
        WrapMethod.RSAES_OAEP_SHA_1,
    ]
    assert {o.wrapping_key_bits for o in PLUGIN.wrap_offers(settings, ALGORITHMS["AES_256"])} == {4096}
    small = AwsSettings(region=REGION, wrapping_key_spec="RSA_2048")
    assert {o.wrapping_key_bits for o in PLUGIN.wrap_offers(small, ALGORITHMS["EC_P256"])} == {2048}


def test_check_key_reports_every_problem_with_its_range() -> None:
    where = SourceRange(filename="main.kp.hcl", line=7, column=3)
    key = spec_for(
        "HMAC_SHA256",
        usage=KeyUsage.ENCRYPT,
        rotation=timedelta(days=90),
        expiry=timedelta(days=400),
        labels={"aws:team": "x", "keyplan-address": "y", "k" * 129: "v", "long": "v" * 257},
        aliases=("payments", "alias/aws/ebs", "alias/ok", "alias/ok"),
        range=where,
    )
    diags = PLUGIN.check_key(AwsSettings(region=REGION), "aws.main", key)
    summaries = [d.summary for d in diags.errors]
    assert all(d.range == where and d.detail for d in diags.errors)
    for needle in (
        "for encrypt",
        "cannot rotate",
        "365 days",
        "aws:",
        "reserved for keyplan",
        "1 to 128",
        "256",
        "start with alias/",
        "alias/aws/",
        "twice",
    ):
        assert any(needle in s for s in summaries), (needle, summaries)
    assert not PLUGIN.check_key(
        AwsSettings(region=REGION), "aws.main", spec_for("AES_256", rotation=timedelta(days=90))
    )


def test_check_key_counts_the_reserved_tags() -> None:
    labels = {f"l{i}": "v" for i in range(48)}
    assert not PLUGIN.check_key(AwsSettings(region=REGION), "aws.main", spec_for("AES_256", labels=labels))
    labels["one-too-many"] = "v"
    diags = PLUGIN.check_key(AwsSettings(region=REGION), "aws.main", spec_for("AES_256", labels=labels))
    assert [d.summary for d in diags.errors] == ["AWS KMS keys carry at most 50 tags"]


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        AwsSettings(region=REGION, deletion_window_days=6)
    with pytest.raises(ValueError):
        AwsSettings(region=REGION, wrapping_key_spec="RSA_1024")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AwsSettings()  # type: ignore[call-arg]


@pytest.mark.parametrize("address", ['key.payments["prod"]', "key.plain", 'key.x["ünï cødé @ 100%"]'])
def test_address_tags_round_trip(address: str) -> None:
    encoded = encode_address(address)
    assert len(encoded) <= 256 and all(c.isascii() for c in encoded)
    assert decode_address(encoded) == address


def test_long_addresses_are_matched_by_digest() -> None:
    address = 'key.x["' + "a" * 300 + '"]'
    encoded = encode_address(address)
    assert len(encoded) <= 256
    assert decode_address(encoded, ["key.other", address]) == address
    assert decode_address(encoded, ["key.other"]) is None


# -- runtime ----------------------------------------------------------------------------------------------


def test_create_key_tags_and_description(aws: Setup) -> None:
    key = spec_for("AES_256", labels={"team": "payments"}, description="payments data key")
    remote_id = create(aws, key)
    metadata = aws.kms.describe_key(KeyId=remote_id)["KeyMetadata"]
    assert metadata["Origin"] == "EXTERNAL" and metadata["KeyState"] == "PendingImport"
    assert metadata["Description"] == "payments data key" and metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    tags = {t["TagKey"]: t["TagValue"] for t in aws.kms.list_resource_tags(KeyId=remote_id)["Tags"]}
    assert tags == {
        "team": "payments",
        "keyplan-address": encode_address(key.address),
        "keyplan-managed-by": MANAGED_BY,
    }
    described = aws.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert (
        described is not None
        and described.state is KeyState.PENDING_IMPORT
        and described.labels == {"team": "payments"}
    )


@pytest.mark.parametrize(
    ("usage", "kms_usage"), [(KeyUsage.SIGN, "SIGN_VERIFY"), (KeyUsage.DECRYPT, "ENCRYPT_DECRYPT")]
)
def test_rsa_usage_maps_to_the_kms_key_usage(aws: Setup, usage: KeyUsage, kms_usage: str) -> None:
    remote_id = create(aws, spec_for("RSA_2048", usage=usage))
    assert aws.kms.describe_key(KeyId=remote_id)["KeyMetadata"]["KeyUsage"] == kms_usage


def test_aliases_description_and_enabled_are_reconciled(aws: Setup) -> None:
    key = spec_for("AES_256", aliases=("alias/app", "alias/app-old"), description="one")
    remote_id = create(aws, key)
    import_into(aws, remote_id, key, material_for("AES_256"))
    updated = update(aws, remote_id, key)
    assert updated.aliases == ("alias/app", "alias/app-old")
    other = spec_for("HMAC_SHA256", aliases=("alias/shared",))
    other_id = create(aws, other)
    update(aws, other_id, other)
    changed = key.model_copy(update={"aliases": ("alias/app", "alias/shared"), "description": "two", "enabled": False})
    updated = update(aws, remote_id, changed)
    assert updated.aliases == ("alias/app", "alias/shared")
    assert updated.description == "two" and updated.state is KeyState.DISABLED
    moved = aws.provider.describe(DescribeKeyRequest(remote_id=other_id)).key
    assert moved is not None and moved.aliases == ()
    assert aws.kms.describe_key(KeyId="alias/shared")["KeyMetadata"]["Arn"] == remote_id


def test_disabling_a_key_pending_import_is_a_conflict_after_the_other_changes(aws: Setup) -> None:
    key = spec_for("AES_256", labels={"a": "1"})
    remote_id = create(aws, key)
    with pytest.raises(ProviderError) as caught:
        update(aws, remote_id, key.model_copy(update={"labels": {"b": "2"}, "enabled": False}))
    assert caught.value.kind is ErrorKind.CONFLICT
    assert "import" in caught.value.detail.lower()
    described = aws.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert described is not None and described.labels == {"b": "2"}


def test_reimport_after_the_cloud_lost_the_material(aws: Setup) -> None:
    key = spec_for("AES_256")
    remote_id = create(aws, key)
    material = material_for("AES_256")
    version = import_into(aws, remote_id, key, material)
    aws.kms.delete_imported_key_material(KeyId=remote_id)
    lost = aws.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert lost is not None and lost.state is KeyState.PENDING_IMPORT and lost.current_version == version
    with pytest.raises(ProviderError) as caught:
        import_into(aws, remote_id, key, material_for("AES_256"), ImportPurpose.REIMPORT, reimport_version_id=version)
    assert caught.value.kind is ErrorKind.FATAL and caught.value.code == "IncorrectKeyMaterialException"
    again = import_into(aws, remote_id, key, material, ImportPurpose.REIMPORT, reimport_version_id=version)
    assert again == version
    restored = aws.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert restored is not None and restored.state is KeyState.ENABLED


def test_asymmetric_keys_have_one_version_and_reimport_it(aws: Setup) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = spec_for("EC_P256")
    remote_id = create(aws, key)
    private_key = ec.generate_private_key(ec.SECP256R1())
    material = SecretBytes(
        private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    version = import_into(aws, remote_id, key, material)
    assert fingerprint_material(MaterialKind.EC, material) in aws.fingerprints()
    aws.kms.delete_imported_key_material(KeyId=remote_id)
    assert import_into(aws, remote_id, key, material, ImportPurpose.REIMPORT, reimport_version_id=version) == version
    inventory = aws.provider.inventory(
        InventoryRequest(managed_by=MANAGED_BY, known={remote_id: key.address}, with_versions=(remote_id,))
    )
    (entry,) = inventory.keys
    assert entry.current_version == version and entry.versions is not None
    assert [(v.version_id, v.current) for v in entry.versions] == [(version, True)]
    with pytest.raises(ProviderError) as caught:
        import_into(aws, remote_id, key, material, ImportPurpose.NEW_VERSION)
    assert caught.value.kind is ErrorKind.FATAL and "rotat" in caught.value.detail


def test_valid_to_becomes_expiry_and_expired_material_shows_pending_import(aws: Setup) -> None:
    key = spec_for("AES_256", expiry=timedelta(days=10))
    remote_id = create(aws, key)
    valid_to = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    import_into(aws, remote_id, key, material_for("AES_256"), valid_to=valid_to)
    described = aws.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert described is not None and described.expires_at == valid_to
    aws.control("/_emulator/clock", {"advance_seconds": 11 * 86400})
    expired = aws.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert expired is not None and expired.state is KeyState.PENDING_IMPORT and expired.enabled is False


def test_versions_after_rotation(aws: Setup) -> None:
    key = spec_for("AES_256", rotation=timedelta(days=90))
    remote_id = create(aws, key)
    first = import_into(aws, remote_id, key, material_for("AES_256"))
    second = import_into(aws, remote_id, key, material_for("AES_256"), ImportPurpose.NEW_VERSION)
    request = InventoryRequest(managed_by=MANAGED_BY, known={remote_id: key.address}, with_versions=(remote_id,))
    (entry,) = aws.provider.inventory(request).keys
    assert entry.versions is not None
    assert [(v.version_id, v.state, v.current) for v in entry.versions] == [
        (first, VersionState.ENABLED, True),
        (second, VersionState.PENDING_ROTATION, False),
    ]
    aws.provider.promote_version(PromoteVersionRequest(remote_id=remote_id, version_id=second))
    aws.provider.promote_version(PromoteVersionRequest(remote_id=remote_id, version_id=second))  # a retry is harmless
    (entry,) = aws.provider.inventory(request).keys
    assert entry.current_version == second
    assert entry.versions is not None and [v.current for v in entry.versions] == [False, True]


def test_inventory_uses_bulk_listing_and_concurrent_per_key_reads(aws: Setup) -> None:
    keys = {create(aws, spec_for("AES_256", address=f'key.bulk["{i}"]')): f'key.bulk["{i}"]' for i in range(6)}
    aws.kms.create_key(Description="not keyplan's")
    aws.control("/_emulator/stats/reset", {})
    known = dict(list(keys.items())[:4])
    inventory = aws.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, known=known, scan=True))
    calls = aws.control("/_emulator/stats")["calls"]
    assert calls["ListKeys"] == 1 and calls["ListAliases"] == 1
    assert calls["DescribeKey"] == 6  # four known + two adopted; the foreign key is read by tags only
    assert calls["ListResourceTags"] == 7
    assert {k.remote_id: k.address for k in inventory.keys} == keys
    assert inventory.missing == ()


def test_scan_reports_other_workspaces_keys_with_their_owner(aws: Setup) -> None:
    key = spec_for("AES_256")
    remote_id = aws.provider.create_key(
        CreateKeyRequest(address=key.address, managed_by="keyplan-other", key=key)
    ).remote_id
    inventory = aws.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, scan=True, addresses=(key.address,)))
    assert [(k.remote_id, k.managed_by, k.address) for k in inventory.keys] == [
        (remote_id, "keyplan-other", key.address)
    ]


def test_discover_lists_imported_keys_only(aws: Setup) -> None:
    remote_id = create(aws, spec_for("AES_256"))
    aws.kms.create_key()
    unmanaged = aws.kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["Arn"]
    found = {k.remote_id: k for k in aws.provider.discover(DiscoverRequest()).keys}
    assert set(found) == {remote_id, unmanaged}
    assert found[unmanaged].managed_by is None and found[unmanaged].external


def test_schedule_deletion_uses_the_configured_window_and_is_idempotent(aws: Setup) -> None:
    remote_id = create(aws, spec_for("AES_256"))
    first = aws.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=remote_id))
    assert first.deletion_date is not None
    assert timedelta(days=29, hours=23) < first.deletion_date - datetime.now(UTC) <= timedelta(days=30)
    again = aws.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=remote_id))
    assert again.deletion_date == first.deletion_date


def test_concurrent_calls_share_one_provider(aws: Setup) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda i: create(aws, spec_for("AES_256", address=f'key.c["{i}"]')), range(16)))
    assert len(set(ids)) == 16


def test_embedded_endpoint_runs_and_persists_the_emulator(tmp_path: Path) -> None:
    settings = AwsSettings(region=REGION, endpoint="embedded", wrapping_key_spec="RSA_2048")
    context = RuntimeContext(address="aws.main", working_dir=tmp_path, data_dir=tmp_path / ".keyplan")
    provider = PLUGIN.open(settings, context)
    try:
        remote_id = provider.create_key(
            CreateKeyRequest(address="key.a", managed_by=MANAGED_BY, key=spec_for("AES_256", address="key.a"))
        ).remote_id
    finally:
        provider.close()
    assert (tmp_path / ".keyplan" / "emulators" / "aws-main.sqlite").exists()
    reopened = PLUGIN.open(settings, context)
    try:
        described = reopened.describe(DescribeKeyRequest(remote_id=remote_id)).key
        assert described is not None and described.address == "key.a"
    finally:
        reopened.close()


def test_missing_credentials_are_an_auth_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(ProviderError) as caught:
        PLUGIN.open(
            AwsSettings(region=REGION, profile="absent"),
            RuntimeContext(address="aws.x", working_dir=tmp_path, data_dir=tmp_path / ".kp"),
        )
    assert caught.value.kind is ErrorKind.AUTH and "profile" in caught.value.detail
    error = classify(NoCredentialsError(), "ListKeys", None, AwsSettings(region=REGION))
    assert error.kind is ErrorKind.AUTH and "credentials" in error.detail


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("AccessDeniedException", 400, ErrorKind.AUTH),
        ("UnrecognizedClientException", 400, ErrorKind.AUTH),
        ("ExpiredImportTokenException", 400, ErrorKind.PARAMETERS_EXPIRED),
        ("AlreadyExistsException", 400, ErrorKind.CONFLICT),
        ("NotFoundException", 400, ErrorKind.NOT_FOUND),
        ("ThrottlingException", 400, ErrorKind.RETRYABLE),
        ("KMSInternalException", 500, ErrorKind.RETRYABLE),
        ("ValidationException", 400, ErrorKind.FATAL),
    ],
)
def test_client_errors_are_classified(code: str, status: int, kind: ErrorKind) -> None:
    error = ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    classified = classify(error, "Op", "arn:x", AwsSettings(region=REGION))
    assert classified.kind is kind and classified.code == code and classified.detail.endswith(".")
