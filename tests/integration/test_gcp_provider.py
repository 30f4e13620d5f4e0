"""The Google Cloud KMS provider beyond the conformance suite: static checks, wrap offers and
prerequisites, label encoding, import-job reuse and replacement, re-import after destruction,
inventory call counts, credentials and the embedded emulator."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from keyplan.algorithms import ALGORITHMS, KeyUsage, MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, wrap
from keyplan.diagnostics import SourceRange
from keyplan.provider import (
    CancelDeletionRequest,
    CreateKeyRequest,
    DescribeKeyRequest,
    DiscoverRequest,
    EnsurePrerequisiteRequest,
    ErrorKind,
    ImportMaterialRequest,
    ImportParametersRequest,
    ImportPurpose,
    InventoryRequest,
    KeySpec,
    KeyState,
    PrerequisiteRecord,
    ProviderError,
    RuntimeContext,
    ScheduleDeletionRequest,
    VersionState,
    WrapOffer,
)
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json
from providers.gcp import PLUGIN, GcpSettings
from providers.gcp.emulator import GcpKmsEmulator
from providers.gcp.mapping import decode_label_value, encode_label_value
from providers.gcp.provider import GcpProvider

MANAGED_BY = "keyplan-test"
FAST_METHOD = "RSA_OAEP_3072_SHA256_AES_256"  # 3072-bit job keys generate quickly


@dataclass
class Target:
    server: EmulatorServer
    settings: GcpSettings
    provider: GcpProvider
    expired_jobs: list[str] = field(default_factory=list)  # jobs an import found expired

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return fetch_json(self.server.url + path, method="POST" if payload is not None else "GET", payload=payload)

    def calls(self) -> dict[str, int]:
        return dict(self.control("/_emulator/stats")["calls"])

    def spec(self, name: str, algorithm: str = "AES_256", **update: Any) -> KeySpec:
        algo = ALGORITHMS[algorithm]
        return KeySpec(address=f'key.{name}["prod"]', algorithm=algo, usage=algo.default_usage, **update)

    def prerequisites(self, spec: KeySpec) -> dict[str, PrerequisiteRecord]:
        offer = PLUGIN.wrap_offers(self.settings, spec.algorithm)[0]
        records = {}
        for prerequisite in PLUGIN.prerequisites(self.settings, spec, offer):
            records[prerequisite.id] = self.provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=prerequisite))
        return records

    def create(self, spec: KeySpec) -> tuple[str, dict[str, PrerequisiteRecord]]:
        records = self.prerequisites(spec)
        created = self.provider.create_key(
            CreateKeyRequest(address=spec.address, managed_by=MANAGED_BY, key=spec, prerequisites=records)
        )
        return created.remote_id, records

    def import_(
        self,
        remote_id: str,
        spec: KeySpec,
        records: dict[str, PrerequisiteRecord],
        material: SecretBytes,
        purpose: ImportPurpose = ImportPurpose.INITIAL,
        version: str | None = None,
    ) -> str:
        """Import as the apply walker does: once more with fresh parameters if the job expired."""
        offer = PLUGIN.wrap_offers(self.settings, spec.algorithm)[0]
        for refreshed in (False, True):
            params = self.provider.get_import_parameters(
                ImportParametersRequest(remote_id=remote_id, key=spec, offer=offer, prerequisites=records)
            )
            try:
                response = self.provider.import_material(
                    ImportMaterialRequest(
                        remote_id=remote_id,
                        address=spec.address,
                        managed_by=MANAGED_BY,
                        key=spec,
                        parameters=params,
                        wrapped=wrap(params.method, params.wrapping_public_key, material),
                        purpose=purpose,
                        reimport_version_id=version,
                    )
                )
                return response.version_id
            except ProviderError as error:
                if error.kind is not ErrorKind.PARAMETERS_EXPIRED or refreshed:
                    raise
                self.expired_jobs.append(params.reference or "")
        raise AssertionError("unreachable")


def open_target(tmp_path: Path, server: EmulatorServer, **settings: Any) -> Target:
    config = GcpSettings(
        project="test",
        key_ring="keyplan",
        endpoint=server.url,
        credentials="local",
        import_method=FAST_METHOD,
        **settings,
    )
    provider = PLUGIN.open(
        config, RuntimeContext(address="gcp.test", working_dir=tmp_path, data_dir=tmp_path / ".keyplan")
    )
    assert isinstance(provider, GcpProvider)
    return Target(server, config, provider)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    server = EmulatorServer(GcpKmsEmulator(DocumentStore(tmp_path / "gcp.sqlite"), Clock())).start()
    opened = open_target(tmp_path, server)
    try:
        yield opened
    finally:
        opened.provider.close()
        server.stop()


def aes() -> SecretBytes:
    return SecretBytes(os.urandom(32))


# -- static half -------------------------------------------------------------------------------


def test_check_key_reports_label_algorithm_and_expiry_problems() -> None:
    settings = GcpSettings(project="p", key_ring="r")
    where = SourceRange(filename="main.kp.hcl", line=4, column=3)
    aes_256 = ALGORITHMS["AES_256"]
    bad = KeySpec(
        address='key.a["x"]',
        algorithm=aes_256,
        usage=KeyUsage.ENCRYPT,
        range=where,
        expiry=timedelta(days=90),
        labels={"Team": "x", "env": "Prod", "keyplan-address": "y", "ok_label": "fine-1"},
    )
    diags = PLUGIN.check_key(settings, "gcp.main", bad)
    errors = [d.summary for d in diags.errors]
    assert sorted(errors) == [
        "label 'Team' is not allowed by Google Cloud KMS",
        "label 'env' is not allowed by Google Cloud KMS",
        "label 'keyplan-address' is reserved by keyplan",
    ]
    assert all(d.range == where for d in diags)
    assert [d.summary for d in diags.warnings] == ["expiry is ignored by Google Cloud KMS"]
    assert all(d.detail.rstrip().endswith(".") for d in diags)
    wrong_usage = KeySpec(address='key.b["x"]', algorithm=aes_256, usage=KeyUsage.SIGN)
    assert PLUGIN.check_key(settings, "gcp.main", wrong_usage).has_errors()
    rsa = ALGORITHMS["RSA_3072"]
    direct = GcpSettings(project="p", key_ring="r", import_method="RSA_OAEP_4096_SHA256")
    rsa_spec = KeySpec(address='key.c["x"]', algorithm=rsa, usage=KeyUsage.DECRYPT)
    assert PLUGIN.check_key(direct, "gcp.main", rsa_spec).has_errors()
    assert not PLUGIN.check_key(settings, "gcp.main", rsa_spec)
    too_many = KeySpec(
        address='key.d["x"]', algorithm=aes_256, usage=KeyUsage.ENCRYPT, labels={f"l{i}": "v" for i in range(63)}
    )
    assert PLUGIN.check_key(settings, "gcp.main", too_many).has_errors()


def test_aliases_are_refused_description_is_warned_and_only_labels_and_enabled_are_compared() -> None:
    settings = GcpSettings(project="p", key_ring="r")
    where = SourceRange(filename="main.kp.hcl", line=7, column=1)
    spec = KeySpec(
        address='key.a["x"]',
        algorithm=ALGORITHMS["AES_256"],
        usage=KeyUsage.ENCRYPT,
        range=where,
        aliases=("alias/a",),
        description="data key",
    )
    diags = PLUGIN.check_key(settings, "gcp.main", spec)
    assert [d.summary for d in diags.errors] == ["Google Cloud KMS keys have no aliases"]
    assert [d.summary for d in diags.warnings] == ["description is not kept by Google Cloud KMS"]
    assert all(d.range == where and "gcp.main" in d.detail for d in diags)
    assert PLUGIN.metadata_fields(settings) == frozenset({"labels", "enabled"})


def test_wrap_offers_prefer_sha256_hybrid_and_4096() -> None:
    settings = GcpSettings(project="p", key_ring="r")
    offers = PLUGIN.wrap_offers(settings, ALGORITHMS["EC_P256"])
    assert [(o.method, o.wrapping_key_bits) for o in offers] == [
        (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 4096),
        (WrapMethod.RSA_AES_KEY_WRAP_SHA_256, 3072),
        (WrapMethod.RSAES_OAEP_SHA_256, 4096),
        (WrapMethod.RSAES_OAEP_SHA_256, 3072),
        (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 4096),
        (WrapMethod.RSA_AES_KEY_WRAP_SHA_1, 3072),
    ]
    assert all(o.method.hybrid for o in PLUGIN.wrap_offers(settings, ALGORITHMS["RSA_2048"]))
    pinned = GcpSettings(project="p", key_ring="r", import_method="RSA_OAEP_3072_SHA1_AES_256")
    assert PLUGIN.wrap_offers(pinned, ALGORITHMS["AES_256"]) == [
        WrapOffer(method=WrapMethod.RSA_AES_KEY_WRAP_SHA_1, wrapping_key_bits=3072)
    ]


def test_prerequisites_name_the_key_ring_and_one_job_per_method_and_level() -> None:
    settings = GcpSettings(project="p", location="europe-west1", key_ring="r", protection_level="SOFTWARE")
    spec = KeySpec(address='key.a["x"]', algorithm=ALGORITHMS["AES_256"], usage=KeyUsage.ENCRYPT)
    offer = WrapOffer(method=WrapMethod.RSA_AES_KEY_WRAP_SHA_1, wrapping_key_bits=4096)
    ring = "projects/p/locations/europe-west1/keyRings/r"
    assert [p.id for p in PLUGIN.prerequisites(settings, spec, offer)] == [
        f"key_ring:{ring}",
        f"import_job:{ring}:RSA_OAEP_4096_SHA1_AES_256:SOFTWARE",
    ]
    assert "cannot delete" in PLUGIN.deletion_note(settings)


def test_label_values_encode_reversibly_or_matchably() -> None:
    for text in ('key.payments["prod"]', "keyplan-3f2a", "UPPER_case.ü", ""):
        encoded = encode_label_value(text)
        assert len(encoded) <= 63 and all(c.islower() or c.isdigit() or c in "_-" for c in encoded)
        assert decode_label_value(encoded) == text
    long_address = "key." + "x" * 40 + '["' + "y" * 30 + '"]'
    encoded = encode_label_value(long_address)
    assert len(encoded) <= 63 and decode_label_value(encoded) is None
    assert decode_label_value(encoded, {encoded: long_address}) == long_address


# -- runtime -----------------------------------------------------------------------------------


def test_import_job_is_awaited_reused_and_replaced_after_expiry(target: Target) -> None:
    spec = target.spec("jobs")
    remote_id, records = target.create(spec)
    job_id = next(r for r in records.values() if r.kind == "gcp_import_job")
    assert target.calls()["GetImportJob"] >= 1, "the provider polled the PENDING_GENERATION job"
    again = target.provider.ensure_prerequisite(
        EnsurePrerequisiteRequest(
            spec=PLUGIN.prerequisites(target.settings, spec, PLUGIN.wrap_offers(target.settings, spec.algorithm)[0])[1],
            known=job_id,
        )
    )
    assert again.remote_id == job_id.remote_id and target.calls()["CreateImportJob"] == 1
    target.import_(remote_id, spec, records, aes())
    target.control("/_emulator/stats/reset", {})
    target.import_(remote_id, spec, records, aes(), ImportPurpose.NEW_VERSION)
    assert "GetImportJob" not in target.calls(), "a job known to be active is not read again for every import"
    target.control("/_emulator/clock", {"advance_seconds": 3 * 86400 + 60})
    version = target.import_(remote_id, spec, records, aes(), ImportPurpose.NEW_VERSION)
    assert version == "3" and target.calls()["CreateImportJob"] == 1
    assert target.expired_jobs == [job_id.remote_id], "Cloud KMS said expired; a fresh job was made and used"
    inventory = target.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, known={remote_id: spec.address}))
    jobs = [p for p in inventory.prerequisites if p.kind == "gcp_import_job"]
    assert len(jobs) == 1 and jobs[0].remote_id != job_id.remote_id and jobs[0].id == job_id.id


def test_concurrent_imports_share_one_new_import_job(target: Target) -> None:
    specs = [target.spec(f"parallel{i}") for i in range(4)]
    ring = PLUGIN.prerequisites(target.settings, specs[0], PLUGIN.wrap_offers(target.settings, specs[0].algorithm)[0])[
        0
    ]
    target.provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=ring))
    created = [
        target.provider.create_key(CreateKeyRequest(address=s.address, managed_by=MANAGED_BY, key=s)) for s in specs
    ]
    materials = [aes() for _ in specs]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            target.import_(created[index].remote_id, specs[index], {}, materials[index])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(specs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert target.calls()["CreateImportJob"] == 1
    held = {m["fingerprint"] for m in target.control("/_emulator/materials")["materials"]}
    assert held == {fingerprint_material(MaterialKind.SYMMETRIC, m) for m in materials}


def test_destroyed_material_is_reimported_into_the_same_version(target: Target) -> None:
    spec = target.spec("restore")
    remote_id, records = target.create(spec)
    material = aes()
    version = target.import_(remote_id, spec, records, material)
    deletion = target.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=remote_id))
    assert deletion.deletion_date is not None
    target.control("/_emulator/clock", {"advance_seconds": 31 * 86400})
    described = target.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    # Destroyed is not deleted-and-restorable: the key waits for the same material again.
    assert described is not None and described.state is KeyState.PENDING_IMPORT
    assert described.current_version == version and not described.enabled
    assert described.versions and described.versions[0].state is VersionState.DESTROYED
    target.provider.cancel_deletion(CancelDeletionRequest(remote_id=remote_id))  # too late: nothing to restore
    still = target.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert still is not None and still.state is KeyState.PENDING_IMPORT
    with pytest.raises(ProviderError) as caught:
        target.import_(remote_id, spec, records, aes(), ImportPurpose.REIMPORT, version)
    assert caught.value.kind is ErrorKind.FATAL and "does not match" in caught.value.detail
    again = target.import_(remote_id, spec, records, material, ImportPurpose.REIMPORT, version)
    assert again == version
    described = target.provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    assert described is not None and described.state is KeyState.ENABLED and described.current_version == version


def versions_of(target: Target, remote_id: str) -> dict[str, str]:
    listed = target.provider._client.list_crypto_key_versions(request={"parent": remote_id})
    return {v.name.rsplit("/", 1)[-1]: v.state.name for v in listed}


def test_the_primary_stands_for_the_key_and_restored_versions_come_back_disabled(target: Target) -> None:
    spec = target.spec("primary")
    remote_id, records = target.create(spec)
    target.import_(remote_id, spec, records, aes())
    v2 = target.import_(remote_id, spec, records, aes(), ImportPurpose.NEW_VERSION)
    target.provider._client.update_crypto_key_primary_version(request={"name": remote_id, "crypto_key_version_id": v2})
    client = target.provider._client
    client.destroy_crypto_key_version(name=f"{remote_id}/cryptoKeyVersions/{v2}")
    known = {remote_id: spec.address}
    entry = target.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, known=known)).keys[0]
    # Version 1 still decrypts, but the key cannot encrypt: the destruction is keyplan's business.
    assert entry.state is KeyState.PENDING_DELETION and entry.current_version == v2
    assert entry.deletion_date is not None
    target.provider.cancel_deletion(CancelDeletionRequest(remote_id=remote_id))
    assert versions_of(target, remote_id) == {"1": "ENABLED", v2: "DISABLED"}
    entry = target.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, known=known)).keys[0]
    assert entry.state is KeyState.DISABLED and not entry.enabled
    client.update_crypto_key_version(
        request={
            "crypto_key_version": {"name": f"{remote_id}/cryptoKeyVersions/{v2}", "state": "ENABLED"},
            "update_mask": {"paths": ["state"]},
        }
    )
    client.destroy_crypto_key_version(name=f"{remote_id}/cryptoKeyVersions/{v2}")
    target.control("/_emulator/clock", {"advance_seconds": 31 * 86400})
    target.control("/_emulator/stats/reset", {})
    entry = target.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, known=known)).keys[0]
    assert entry.state is KeyState.PENDING_IMPORT and entry.current_version == v2
    assert "ListCryptoKeyVersions" not in target.calls(), "a known key's destroyed primary needs no version listing"


def test_keys_without_a_primary_and_spent_keys_state_does_not_know(target: Target) -> None:
    mac = target.spec("mac", "HMAC_SHA256")
    mac_id, records = target.create(mac)
    mac_material = SecretBytes(os.urandom(32))
    target.import_(mac_id, mac, records, mac_material)
    v2 = target.import_(mac_id, mac, records, SecretBytes(os.urandom(32)), ImportPurpose.NEW_VERSION)
    forgotten = target.spec("forgotten")
    forgotten_id, _ = target.create(forgotten)
    target.import_(forgotten_id, forgotten, records, aes())
    target.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=forgotten_id))
    target.provider._client.destroy_crypto_key_version(name=f"{mac_id}/cryptoKeyVersions/{v2}")
    target.control("/_emulator/clock", {"advance_seconds": 31 * 86400})
    inventory = target.provider.inventory(
        InventoryRequest(managed_by=MANAGED_BY, known={mac_id: mac.address}, addresses=(forgotten.address,), scan=True)
    )
    by_id = {k.remote_id: k for k in inventory.keys}
    # The newest version stands for a MAC key: destroyed, it is re-imported, not replaced by version 1.
    assert by_id[mac_id].state is KeyState.PENDING_IMPORT and by_id[mac_id].current_version == v2
    assert forgotten_id not in by_id, "a key whose versions were all destroyed is neither adoptable nor an orphan"
    known = target.provider.inventory(InventoryRequest(managed_by=MANAGED_BY, known={forgotten_id: forgotten.address}))
    assert [(k.remote_id, k.state, k.current_version) for k in known.keys] == [
        (forgotten_id, KeyState.PENDING_IMPORT, "1")
    ]


def test_inventory_lists_in_bulk_and_fetches_only_what_the_listing_cannot_tell(target: Target) -> None:
    known: dict[str, str] = {}
    for i, algorithm in enumerate(("AES_256", "AES_256", "HMAC_SHA256")):
        spec = target.spec(f"inv{i}", algorithm, labels={"team": "t"})
        remote_id, records = target.create(spec)
        material = aes() if algorithm == "AES_256" else SecretBytes(os.urandom(32))
        target.import_(remote_id, spec, records, material)
        known[remote_id] = spec.address
    stripped = next(iter(known))  # someone removed keyplan's labels out of band
    target.provider._client.update_crypto_key(
        request={"crypto_key": {"name": stripped, "labels": {}}, "update_mask": {"paths": ["labels"]}}
    )
    target.control("/_emulator/stats/reset", {})
    inventory = target.provider.inventory(
        InventoryRequest(managed_by=MANAGED_BY, known=known, addresses=tuple(known.values()))
    )
    calls = target.calls()
    assert calls.get("ListCryptoKeys") == 1 and calls.get("ListImportJobs") == 1
    assert calls.get("GetCryptoKey") == 1, "only the key missing from the filtered listing is fetched"
    assert calls.get("ListCryptoKeyVersions") == 1, "only the MAC key (no primary) needs its versions"
    by_id = {k.remote_id: k for k in inventory.keys}
    assert set(by_id) == set(known) and not inventory.missing
    assert by_id[stripped].address is None and by_id[stripped].managed_by is None
    for remote_id in list(known)[1:]:
        entry = by_id[remote_id]
        assert entry.address == known[remote_id] and entry.managed_by == MANAGED_BY
        assert entry.labels == {"team": "t"} and entry.state is KeyState.ENABLED and entry.current_version == "1"
    discovered = {k.remote_id: k for k in target.provider.discover(DiscoverRequest()).keys}
    assert set(discovered) == set(known) and all(k.external for k in discovered.values())
    mac_id = list(known)[2]
    assert by_id[mac_id].algorithm == "HMAC_SHA256" and by_id[mac_id].versions is None
    with_versions = target.provider.inventory(
        InventoryRequest(managed_by=MANAGED_BY, known=known, with_versions=(mac_id,))
    )
    versions = {k.remote_id: k.versions for k in with_versions.keys}
    assert versions[mac_id] is not None and versions[mac_id][0].imported and versions[mac_id][0].current


def test_missing_key_ring_means_every_known_key_is_missing(target: Target) -> None:
    ghost = f"{target.settings.key_ring_name}/cryptoKeys/ghost"
    inventory = target.provider.inventory(
        InventoryRequest(managed_by=MANAGED_BY, known={ghost: 'key.g["x"]'}, scan=True)
    )
    assert inventory.missing == (ghost,) and inventory.keys == () and inventory.prerequisites == ()


def test_a_lost_create_answer_is_adopted_and_a_destroyed_name_is_skipped(target: Target) -> None:
    spec = target.spec("names")
    first, records = target.create(spec)
    assert (
        target.provider.create_key(CreateKeyRequest(address=spec.address, managed_by=MANAGED_BY, key=spec)).remote_id
        == first
    )
    target.import_(first, spec, records, aes())
    second = target.provider.create_key(
        CreateKeyRequest(address=spec.address, managed_by=MANAGED_BY, key=spec)
    ).remote_id
    assert second != first and second.startswith(first)


def test_default_credentials_without_any_configured_are_an_auth_error(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # never probe a metadata server
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    settings = target.settings.model_copy(update={"credentials": "default"})
    with pytest.raises(ProviderError) as caught:
        PLUGIN.open(settings, RuntimeContext(address="gcp.adc", working_dir=tmp_path, data_dir=tmp_path / ".keyplan"))
    assert caught.value.kind is ErrorKind.AUTH and "gcloud auth application-default login" in caught.value.detail


def test_embedded_endpoint_runs_the_emulator_in_process_and_persists(tmp_path: Path) -> None:
    settings = GcpSettings(project="p", key_ring="r", endpoint="embedded", import_method=FAST_METHOD)
    context = RuntimeContext(address="gcp.main", working_dir=tmp_path, data_dir=tmp_path / ".keyplan")
    spec = KeySpec(address='key.e["x"]', algorithm=ALGORITHMS["AES_256"], usage=KeyUsage.ENCRYPT)
    provider = PLUGIN.open(settings, context)
    try:
        records = {}
        for prerequisite in PLUGIN.prerequisites(settings, spec, PLUGIN.wrap_offers(settings, spec.algorithm)[0]):
            records[prerequisite.id] = provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=prerequisite))
        remote_id = provider.create_key(
            CreateKeyRequest(address=spec.address, managed_by=MANAGED_BY, key=spec)
        ).remote_id
    finally:
        provider.close()
    assert (tmp_path / ".keyplan" / "emulators" / "gcp-main.sqlite").exists()
    reopened = PLUGIN.open(settings, context)
    try:
        described = reopened.describe(DescribeKeyRequest(remote_id=remote_id)).key
        assert (
            described is not None and described.state is KeyState.PENDING_IMPORT and described.address == spec.address
        )
    finally:
        reopened.close()
