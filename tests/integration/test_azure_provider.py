"""What the Azure provider does beyond the conformance suite: static checks, key names, the
transfer blob, the embedded emulator, the KEK lifecycle, soft-deleted names, expiry, call
counts of inventory and error classification — against the emulator through the real SDK."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from pydantic import ValidationError

from keyplan.algorithms import ALGORITHMS, KeyUsage
from keyplan.crypto import SecretBytes, fingerprint_material, wrap
from keyplan.diagnostics import SourceRange
from keyplan.provider import (
    CancelDeletionRequest,
    CreateKeyRequest,
    DescribeKeyRequest,
    EnsurePrerequisiteRequest,
    ErrorKind,
    ImportMaterialRequest,
    ImportParameters,
    ImportParametersRequest,
    ImportPurpose,
    InventoryRequest,
    KeySpec,
    KeyState,
    PrerequisiteRecord,
    ProviderError,
    RuntimeContext,
    ScheduleDeletionRequest,
    UpdateKeyRequest,
)
from providers.azure import PLUGIN, AzureSettings, build_transfer_blob, key_name_for
from providers.azure.client import LocalTokenCredential
from providers.azure.emulator import AzureKeyVaultEmulator, ManagedHsmEmulator
from providers.azure.errors import ErrorContext, classify
from providers.azure.provider import AzureProvider
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json

VAULT_URL = "https://payments.vault.azure.net"
HSM_URL = "https://payments.managedhsm.azure.net"
MANAGED_BY = "keyplan-test"
RANGE = SourceRange(filename="main.kp.hcl", line=7, column=3)


def spec(algorithm: str = "EC_P256", address: str = 'key.payments["prod"]', **fields: Any) -> KeySpec:
    algo = ALGORITHMS[algorithm]
    return KeySpec(address=address, algorithm=algo, usage=algo.default_usage, range=RANGE, **fields)


# -- static checks ------------------------------------------------------------------------------


def test_aes_on_a_key_vault_is_rejected_with_a_way_out() -> None:
    diagnostics = PLUGIN.check_key(AzureSettings(vault_url=VAULT_URL), "azure.main", spec("AES_256"))
    [error] = diagnostics.errors
    assert "Managed HSM" in error.summary and error.range == RANGE
    assert "managedhsm.azure.net" in error.detail and "RSA or EC" in error.detail
    assert PLUGIN.wrap_offers(AzureSettings(vault_url=VAULT_URL), ALGORITHMS["AES_256"]) == []
    assert not PLUGIN.check_key(AzureSettings(vault_url=HSM_URL), "azure.main", spec("AES_256")).has_errors()


def test_hmac_and_wrong_usages_are_rejected() -> None:
    settings = AzureSettings(vault_url=HSM_URL)
    [hmac_error] = PLUGIN.check_key(settings, "azure.main", spec("HMAC_SHA256")).errors
    assert "HMAC" in hmac_error.summary and hmac_error.detail.endswith(".")
    wrong_usage = spec("EC_P256").model_copy(update={"usage": KeyUsage.DECRYPT})
    [usage_error] = PLUGIN.check_key(settings, "azure.main", wrong_usage).errors
    assert "decrypt" in usage_error.summary


def test_labels_are_checked_with_the_reserved_tags_counted() -> None:
    settings = AzureSettings(vault_url=VAULT_URL)
    assert not PLUGIN.check_key(settings, "azure.main", spec(labels={f"l{i}": "v" for i in range(13)}))
    [too_many] = PLUGIN.check_key(settings, "azure.main", spec(labels={f"l{i}": "v" for i in range(14)})).errors
    assert "13" in too_many.detail
    [reserved] = PLUGIN.check_key(settings, "azure.main", spec(labels={"keyplan-address": "x"})).errors
    assert "reserve" in reserved.summary
    [too_long] = PLUGIN.check_key(settings, "azure.main", spec(labels={"team": "x" * 257})).errors
    assert "256" in too_long.detail



def test_aliases_are_refused_and_descriptions_warned_about() -> None:
    settings = AzureSettings(vault_url=VAULT_URL)
    [alias_error] = PLUGIN.check_key(settings, "azure.main", spec(aliases=("alias/payments",))).errors
    assert "aliases" in alias_error.summary and "alias/payments" in alias_error.detail
    assert alias_error.range == RANGE and alias_error.detail.endswith(".")
    described = PLUGIN.check_key(settings, "azure.main", spec(description="payments signing key"))
    assert not described.has_errors()
    [warning] = described.warnings
    assert "description" in warning.summary and "label" in warning.detail


def test_only_tags_and_enabled_are_compared() -> None:
    assert PLUGIN.metadata_fields(AzureSettings(vault_url=VAULT_URL)) == frozenset({"labels", "enabled"})


def test_expiry_and_rotation_are_allowed() -> None:
    key = spec("RSA_3072", expiry=timedelta(days=365), rotation=timedelta(days=90))
    assert not PLUGIN.check_key(AzureSettings(vault_url=VAULT_URL), "azure.main", key)


def test_settings_validate_the_vault_url() -> None:
    assert AzureSettings(vault_url="https://Payments.Vault.Azure.Net/").vault_url == VAULT_URL
    assert AzureSettings(vault_url=HSM_URL).vault_kind == "managedhsm"
    for bad in ("http://payments.vault.azure.net", "https://example.com", "https://payments.vault.azure.net/keys/x"):
        with pytest.raises(ValidationError):
            AzureSettings(vault_url=bad)
    assert AzureSettings(endpoint="embedded").credentials == "local"
    for incomplete in ({}, {"endpoint": "https://127.0.0.1:8443"}):
        with pytest.raises(ValidationError, match="vault_url is required"):
            AzureSettings(**incomplete)
    with pytest.raises(ValidationError):
        AzureSettings(vault_url=VAULT_URL, kek_size=2048)  # type: ignore[arg-type]


def test_key_names_are_legal_deterministic_and_distinct() -> None:
    addresses = [
        'key.payments["prod"]',
        'key.payments["prod-"]',
        "key.payments.prod",
        'key.x["ümlaut/…"]',
        "key." + "a" * 300,
    ]
    names = [key_name_for(a) for a in addresses]
    assert len(set(names)) == len(names)
    assert names[0].startswith("payments-prod-") and names[0] == key_name_for('key.payments["prod"]')
    for name in names:
        assert 1 <= len(name) <= 127 and all(c.isascii() and (c.isalnum() or c == "-") for c in name), name


def test_the_transfer_blob_follows_the_byok_specification() -> None:
    kid = f"{VAULT_URL}/keys/keyplan-kek/{'0' * 32}"
    document = json.loads(build_transfer_blob(kid, b"\x01\x02\xff"))
    assert document["schema_version"] == "1.0.0"
    assert document["header"] == {"kid": kid, "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"}
    assert base64.urlsafe_b64decode(document["ciphertext"] + "==") == b"\x01\x02\xff"
    assert document["generator"].startswith("keyplan ")


def test_deletion_note_mentions_recovery_and_purge_protection() -> None:
    note = PLUGIN.deletion_note(AzureSettings(vault_url=VAULT_URL, purge_protection=True, retention_days=30))
    assert "soft-deleted" in note and "30 days" in note and "purge protection" in note


# -- against an emulator -------------------------------------------------------------------------


@dataclass
class Target:
    provider: AzureProvider
    settings: AzureSettings
    server: EmulatorServer

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return fetch_json(
            self.server.url + path, "POST" if payload is not None else "GET", payload, ca=self.server.ca_cert
        )

    def calls(self) -> dict[str, int]:
        return dict(self.control("/_emulator/stats")["calls"])

    def fingerprints(self) -> list[str]:
        return [m["fingerprint"] for m in self.control("/_emulator/materials")["materials"]]

    def kek(self) -> PrerequisiteRecord:
        [prerequisite] = PLUGIN.prerequisites(
            self.settings, spec(), PLUGIN.wrap_offers(self.settings, ALGORITHMS["EC_P256"])[0]
        )
        return self.provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=prerequisite))

    def imported(self, key: KeySpec, material: SecretBytes | None = None) -> tuple[str, str, ImportParameters]:
        kek = self.kek()
        prerequisites = {kek.id: kek}
        remote_id = self.provider.create_key(
            CreateKeyRequest(address=key.address, managed_by=MANAGED_BY, key=key, prerequisites=prerequisites)
        ).remote_id
        offer = PLUGIN.wrap_offers(self.settings, key.algorithm)[0]
        params = self.provider.get_import_parameters(
            ImportParametersRequest(remote_id=remote_id, key=key, offer=offer, prerequisites=prerequisites)
        )
        version = self.import_with(remote_id, key, params, material or SecretBytes(os.urandom(32)))
        return remote_id, version, params

    def import_with(
        self, remote_id: str, key: KeySpec, params: ImportParameters, material: SecretBytes, **extra: Any
    ) -> str:
        response = self.provider.import_material(
            ImportMaterialRequest(
                remote_id=remote_id,
                address=key.address,
                managed_by=MANAGED_BY,
                key=key,
                parameters=params,
                wrapped=wrap(params.method, params.wrapping_public_key, material),
                purpose=extra.pop("purpose", ImportPurpose.INITIAL),
                **extra,
            )
        )
        return response.version_id


def open_target(
    tmp_path: Path, app_class: type[AzureKeyVaultEmulator], vault_url: str, **settings: Any
) -> Iterator[Target]:
    store = DocumentStore(tmp_path / "azure.sqlite")
    server = EmulatorServer(app_class(store, Clock()), cert_dir=tmp_path).start()
    config = AzureSettings(
        vault_url=vault_url,
        endpoint=server.url,
        credentials="local",
        ca_bundle=str(server.ca_cert),
        kek_size=3072,
        **settings,
    )
    provider = PLUGIN.open(
        config, RuntimeContext(address="azure.main", working_dir=tmp_path, data_dir=tmp_path / ".keyplan")
    )
    assert isinstance(provider, AzureProvider)
    try:
        yield Target(provider, config, server)
    finally:
        provider.close()
        server.stop()
        store.close()


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[Target]:
    yield from open_target(tmp_path, ManagedHsmEmulator, HSM_URL)


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Target]:
    yield from open_target(tmp_path, AzureKeyVaultEmulator, VAULT_URL)


def test_the_kek_is_created_once_and_reused(vault: Target) -> None:
    first = vault.kek()
    assert first.id == f"kek:{VAULT_URL}" and first.remote_id == f"{VAULT_URL}/keys/keyplan-kek"
    assert first.attributes["kid"].startswith(f"{VAULT_URL}/keys/keyplan-kek/") and first.attributes["bits"] == "3072"
    assert vault.kek() == first
    assert vault.calls()["CreateKey"] == 1


def test_remote_ids_name_the_configured_vault_and_imports_prove_the_material(hsm: Target) -> None:
    key = spec("AES_256")
    material = SecretBytes(os.urandom(32))
    remote_id, version, params = hsm.imported(key, material)
    assert remote_id == f"{HSM_URL}/keys/{key_name_for(key.address)}"
    assert params.reference and params.reference.startswith(f"{HSM_URL}/keys/keyplan-kek/")
    assert len(version) == 32
    assert fingerprint_material(key.algorithm.kind, material) in hsm.fingerprints()
    described = hsm.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert described is not None and described.algorithm == "AES_256" and described.current_version == version
    assert described.versions is not None and [v.version_id for v in described.versions] == [version]


def test_a_replaced_kek_makes_old_parameters_expire(hsm: Target) -> None:
    key = spec("AES_256")
    remote_id, _, stale = hsm.imported(key)
    # someone disables the KEK version the parameters name
    from azure.keyvault.keys import KeyClient

    client = KeyClient(
        vault_url=hsm.server.url,
        credential=LocalTokenCredential(),
        verify_challenge_resource=False,
        connection_verify=str(hsm.server.ca_cert),
    )
    with client:
        client.update_key_properties("keyplan-kek", enabled=False)
    with pytest.raises(ProviderError) as caught:
        hsm.import_with(remote_id, key, stale, SecretBytes(os.urandom(32)), purpose=ImportPurpose.NEW_VERSION)
    assert caught.value.kind is ErrorKind.PARAMETERS_EXPIRED
    with pytest.raises(ProviderError) as conflict:
        hsm.provider.get_import_parameters(
            ImportParametersRequest(
                remote_id=remote_id,
                key=key,
                offer=PLUGIN.wrap_offers(hsm.settings, key.algorithm)[0],
                prerequisites={
                    f"kek:{HSM_URL}": PrerequisiteRecord(
                        id=f"kek:{HSM_URL}", kind="azure-kek", remote_id="x", attributes={"kid": stale.reference or ""}
                    )
                },
            )
        )
    assert conflict.value.kind is ErrorKind.CONFLICT and "apply again" in conflict.value.detail
    fresh_kek = hsm.kek()
    assert fresh_kek.attributes["kid"] != stale.reference
    _, version, fresh = hsm.imported(key)
    assert fresh.reference == fresh_kek.attributes["kid"] and version


def test_a_soft_deleted_name_is_a_conflict_that_says_how_to_resolve_it(vault: Target) -> None:
    key = spec("EC_P384")
    remote_id, _, params = vault.imported(key, _ec_material())
    vault.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=remote_id))
    with pytest.raises(ProviderError) as caught:
        vault.import_with(remote_id, key, params, _ec_material())
    assert caught.value.kind is ErrorKind.CONFLICT and caught.value.code == "ObjectIsDeletedButRecoverable"
    name = remote_id.rsplit("/", 1)[1]
    assert name in caught.value.summary and VAULT_URL in caught.value.summary
    assert f"az keyvault key recover --vault-name payments --name {name}" in caught.value.detail
    assert f"az keyvault key purge --vault-name payments --name {name}" in caught.value.detail
    assert "purged by Azure on" in caught.value.detail
    # deleting again is idempotent and still names the purge date; recovery makes the name usable
    again = vault.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=remote_id))
    assert again.deletion_date is not None
    vault.provider.cancel_deletion(CancelDeletionRequest(remote_id=remote_id))
    vault.provider.cancel_deletion(CancelDeletionRequest(remote_id=remote_id))
    vault.import_with(remote_id, key, params, _ec_material(), purpose=ImportPurpose.NEW_VERSION)


def _ec_material() -> SecretBytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP384R1())
    return SecretBytes(
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def test_expiry_is_set_on_import_and_update(hsm: Target) -> None:
    key = spec("AES_256", expiry=timedelta(days=30))
    remote_id, _, _ = hsm.imported(key)
    entry = hsm.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert entry is not None and entry.expires_at is None
    updated = hsm.provider.update_key(
        UpdateKeyRequest(remote_id=remote_id, address=key.address, managed_by=MANAGED_BY, key=key)
    )
    described = hsm.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert described is not None and described.expires_at == updated.expires_at
    assert described.versions and described.versions[0].created_at
    assert described.expires_at is not None
    assert described.expires_at - described.versions[0].created_at == timedelta(days=30)


def test_inventory_lists_in_pages_reads_each_key_once_and_reports_the_kek(hsm: Target) -> None:
    keys = [spec("AES_256", address=f'key.bulk["{i}"]') for i in range(26)]
    remote_ids = {}
    for key in keys:
        remote_ids[hsm.imported(key)[0]] = key.address
    gone = next(iter(remote_ids))
    hsm.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=gone))
    vanished = f"{HSM_URL}/keys/{key_name_for('key.vanished')}"
    hsm.control("/_emulator/stats/reset", {})
    inventory = hsm.provider.inventory(
        InventoryRequest(
            managed_by=MANAGED_BY,
            known={**remote_ids, vanished: "key.vanished"},
            addresses=tuple(remote_ids.values()),
            with_versions=(list(remote_ids)[1],),
        )
    )
    calls = hsm.calls()
    assert calls["GetKeys"] == 2 and calls["GetDeletedKeys"] == 1 and calls["GetKeyVersions"] == 1
    assert calls["GetKey"] == 25 + 1, "one read per live key, one for the KEK"
    states = {k.remote_id: k.state for k in inventory.keys}
    assert states[gone] is KeyState.DELETED and len(states) == 26
    assert inventory.missing == (vanished,)
    assert [p.id for p in inventory.prerequisites] == [f"kek:{HSM_URL}"]
    by_id = {k.remote_id: k for k in inventory.keys}
    with_versions = by_id[list(remote_ids)[1]]
    assert with_versions.versions is not None and with_versions.versions[0].current
    assert all(k.address == remote_ids[k.remote_id] for k in inventory.keys)
    assert by_id[gone].deletion_date is not None


def test_concurrent_imports_from_several_threads(hsm: Target) -> None:
    keys = [spec("AES_256", address=f'key.parallel["{i}"]') for i in range(8)]
    materials = [SecretBytes(os.urandom(32)) for _ in keys]
    hsm.kek()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda pair: hsm.imported(pair[0], pair[1]), zip(keys, materials, strict=True)))
    held = hsm.fingerprints()
    assert all(fingerprint_material(k.algorithm.kind, m) in held for k, m in zip(keys, materials, strict=True))


def test_forbidden_and_challenge_failures_are_auth_errors(hsm: Target) -> None:
    remote_id, _, _ = hsm.imported(spec("AES_256"))
    hsm.control("/_emulator/faults", {"errors": [{"operation": "GetKey", "status": 403, "count": 1}]})
    with pytest.raises(ProviderError) as caught:
        hsm.provider.describe(DescribeKeyRequest(remote_id=remote_id))
    assert caught.value.kind is ErrorKind.AUTH and "Crypto Officer" in caught.value.detail
    where = ErrorContext("listing keys", HSM_URL, hsm.server.url)
    error = classify(ClientAuthenticationError(message="DefaultAzureCredential failed to retrieve a token"), where)
    assert error.kind is ErrorKind.AUTH and "az login" in error.detail


def test_embedded_endpoint_persists_between_runs(tmp_path: Path) -> None:
    settings = AzureSettings(vault_url=HSM_URL, endpoint="embedded")
    context = RuntimeContext(address="azure.main", working_dir=tmp_path, data_dir=tmp_path / ".keyplan")
    key = spec("AES_256")
    provider = PLUGIN.open(settings, context)
    try:
        [prerequisite] = PLUGIN.prerequisites(settings, key, PLUGIN.wrap_offers(settings, key.algorithm)[0])
        kek = provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=prerequisite))
        remote_id = provider.create_key(CreateKeyRequest(address=key.address, managed_by=MANAGED_BY, key=key)).remote_id
        params = provider.get_import_parameters(
            ImportParametersRequest(
                remote_id=remote_id,
                key=key,
                offer=PLUGIN.wrap_offers(settings, key.algorithm)[0],
                prerequisites={kek.id: kek},
            )
        )
        provider.import_material(
            ImportMaterialRequest(
                remote_id=remote_id,
                address=key.address,
                managed_by=MANAGED_BY,
                key=key,
                parameters=params,
                wrapped=wrap(params.method, params.wrapping_public_key, SecretBytes(os.urandom(32))),
                purpose=ImportPurpose.INITIAL,
            )
        )
    finally:
        provider.close()
    assert (tmp_path / ".keyplan" / "emulators" / "azure-main.sqlite").exists()
    reopened = PLUGIN.open(settings, context)
    try:
        described = reopened.describe(DescribeKeyRequest(remote_id=remote_id)).key
        assert described is not None and described.address == key.address and described.state is KeyState.ENABLED
        assert reopened.ensure_prerequisite(EnsurePrerequisiteRequest(spec=prerequisite)) == kek
    finally:
        reopened.close()


def test_the_update_after_an_import_sends_nothing_when_the_import_set_it_all(hsm: Target) -> None:
    key = spec("AES_256", labels={"team": "core"})
    remote_id, _, _ = hsm.imported(key)
    before = dict(hsm.calls())
    request = UpdateKeyRequest(remote_id=remote_id, address=key.address, managed_by=MANAGED_BY, key=key)
    updated = hsm.provider.update_key(request)
    assert updated.labels == {"team": "core"} and updated.enabled
    assert dict(hsm.calls()) == before, "the import's answer already had the tags and enabled"
    # the next update reads the key again, and sends only what differs
    relabelled = key.model_copy(update={"labels": {"team": "platform"}})
    hsm.provider.update_key(request.model_copy(update={"key": relabelled}))
    calls = hsm.calls()
    assert calls["GetKey"] == before.get("GetKey", 0) + 1 and calls["UpdateKey"] == before.get("UpdateKey", 0) + 1
    hsm.provider.update_key(request.model_copy(update={"key": relabelled}))
    assert hsm.calls()["UpdateKey"] == calls["UpdateKey"], "nothing differs: nothing sent"


def test_creating_a_key_never_takes_over_a_name_another_state_holds(vault: Target) -> None:
    key = spec("EC_P384")
    vault.imported(key, _ec_material())  # held by MANAGED_BY
    with pytest.raises(ProviderError) as caught:
        vault.provider.create_key(CreateKeyRequest(address=key.address, managed_by="keyplan-other", key=key))
    assert caught.value.kind is ErrorKind.CONFLICT
    assert "another keyplan state (keyplan-test)" in caught.value.summary
    assert "keyplan import" in caught.value.detail
    # the state that owns it (an apply interrupted before its state write) may go on
    mine = vault.provider.create_key(CreateKeyRequest(address=key.address, managed_by=MANAGED_BY, key=key))
    assert mine.remote_id.endswith("/keys/" + key_name_for(key.address))
