"""The provider conformance suite: every provider passes these same tests against an emulator
of its cloud, through the cloud's real SDK. A provider's test module subclasses
`ProviderConformance` (the class name starts with `Test`), sets `algorithms` (what the target
imports as configured) and `rotates` (what takes a new version and `promote_version`), and
overrides the `harness` fixture.

The suite proves what the emulator received: after an import, the emulator's own record of the
material it unwrapped carries the fingerprint of the material keyplan wrapped. The emulator is
driven through keyplan's emulator control protocol at `control_url`: `GET /_emulator/materials`
(fingerprints of what it unwrapped), `GET /_emulator/stats` (calls per operation),
`POST /_emulator/clock` (`{"advance_seconds": n}`) and `POST /_emulator/faults` (`{"errors":
[{"operation": "*", "status": 503, "count": n}]}`); `keyplan`'s own emulators serve it
(`providers.emulation`), and a plugin's emulator must too.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyplan.algorithms import ALGORITHMS, Algorithm, MaterialKind
from keyplan.crypto import SecretBytes, fingerprint_material, wrap
from keyplan.limits import CallLimits, Clock
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
    Inventory,
    InventoryRequest,
    KeySpec,
    KeyState,
    PrerequisiteRecord,
    PromoteVersionRequest,
    PromoteVersionResponse,
    Provider,
    ProviderError,
    ProviderPlugin,
    ProviderSettings,
    RemoteKey,
    RuntimeContext,
    ScheduleDeletionRequest,
    UpdateKeyRequest,
)
from keyplan.testing.control import fetch_json


@dataclass
class ProviderHarness:
    plugin: ProviderPlugin[Any]
    settings: ProviderSettings
    provider: Provider  # opened against a running EmulatorServer
    control_url: str  # that emulator's base URL (for /_emulator/*)
    ca_cert: Path | None  # the CA of the control URL's TLS certificate, when it serves HTTPS

    def control(self, path: str, payload: dict[str, object] | None = None) -> dict[str, object]:
        method = "POST" if payload is not None else "GET"
        result = fetch_json(self.control_url + path, method=method, payload=payload, ca=self.ca_cert)
        assert isinstance(result, dict)
        return result

    def emulator_fingerprints(self) -> list[str]:
        materials = self.control("/_emulator/materials")["materials"]
        assert isinstance(materials, list)
        return [str(m["fingerprint"]) for m in materials]

    def calls(self) -> dict[str, int]:
        calls = self.control("/_emulator/stats")["calls"]
        assert isinstance(calls, dict)
        return {str(k): int(v) for k, v in calls.items()}


class VirtualClock:
    """A clock for the run's limiters on which waits pass at once: `now()` is the monotonic clock
    plus every wait asked for so far, `sleep()` only adds to that."""

    def __init__(self) -> None:
        self._waited = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() + self._waited

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._waited += max(0.0, seconds)


def conformance_context(address: str, working_dir: Path) -> RuntimeContext:
    """The run-time context to open a provider with in a harness: its limiters
    (`keyplan.limits`) wait on a `VirtualClock`, so the backoff between retried reads, the
    pacing and the slowdown after throttling answers cost no time, while every call is still
    sent, in the same order and with the same outcome, as in a run."""
    limits = CallLimits(clock=Clock(now=(clock := VirtualClock()).now, sleep=clock.sleep))
    return RuntimeContext(address=address, working_dir=working_dir, data_dir=working_dir / ".keyplan", limits=limits)


@cache
def rsa_private_key(bits: int, index: int = 0) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make (seconds for 4096 bits); each process makes each one once."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_material(algorithm: Algorithm, index: int = 0) -> SecretBytes:
    """Material for `algorithm`: fresh for symmetric and EC keys; RSA keys are made once per
    process and `index` (ask for another index where two distinct RSA materials are needed)."""
    if algorithm.kind in (MaterialKind.SYMMETRIC, MaterialKind.HMAC):
        return SecretBytes(os.urandom(algorithm.bits // 8))
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm.kind is MaterialKind.RSA:
        private_key = rsa_private_key(algorithm.bits, index)
    else:
        curve = ec.SECP256R1() if algorithm.curve == "P-256" else ec.SECP384R1()
        private_key = ec.generate_private_key(curve)
    return SecretBytes(
        private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


class ImportedKey:
    """A key taken through create -> prerequisites -> parameters -> wrap -> import."""

    def __init__(self, harness: ProviderHarness, algorithm_name: str, labels: dict[str, str] | None = None) -> None:
        self.harness = harness
        self.algorithm = ALGORITHMS[algorithm_name]
        suffix = uuid.uuid4().hex[:8]
        self.address = f'key.conformance["{algorithm_name.lower()}-{suffix}"]'
        self.managed_by = "keyplan-conformance"
        self.spec = KeySpec(
            address=self.address,
            algorithm=self.algorithm,
            usage=self.algorithm.default_usage,
            labels=labels if labels is not None else {"app": "conformance", "env": "test"},
            description="conformance key",
        )
        self.offer = harness.plugin.wrap_offers(harness.settings, self.algorithm)[0]
        self.prerequisites: dict[str, PrerequisiteRecord] = {}
        for spec in harness.plugin.prerequisites(harness.settings, self.spec, self.offer):
            record = harness.provider.ensure_prerequisite(EnsurePrerequisiteRequest(spec=spec))
            assert record.id == spec.id
            self.prerequisites[spec.id] = record
        created = harness.provider.create_key(
            CreateKeyRequest(
                address=self.address, managed_by=self.managed_by, key=self.spec, prerequisites=self.prerequisites
            )
        )
        self.remote_id = created.remote_id
        self.versions: list[str] = []

    def parameters(self) -> ImportParameters:
        return self.harness.provider.get_import_parameters(
            ImportParametersRequest(
                remote_id=self.remote_id, key=self.spec, offer=self.offer, prerequisites=self.prerequisites
            )
        )

    def import_material(
        self,
        material: SecretBytes,
        purpose: ImportPurpose = ImportPurpose.INITIAL,
        *,
        parameters: ImportParameters | None = None,
        reimport_version_id: str | None = None,
        valid_to: datetime | None = None,
    ) -> str:
        params = parameters or self.parameters()
        blob = wrap(params.method, params.wrapping_public_key, material)
        request = self.import_request(params, blob, purpose, reimport_version_id=reimport_version_id, valid_to=valid_to)
        response = self.harness.provider.import_material(request)
        assert response.remote_id == self.remote_id
        self.versions.append(response.version_id)
        return response.version_id

    def import_request(
        self,
        parameters: ImportParameters,
        wrapped: bytes,
        purpose: ImportPurpose = ImportPurpose.INITIAL,
        *,
        reimport_version_id: str | None = None,
        valid_to: datetime | None = None,
    ) -> ImportMaterialRequest:
        return ImportMaterialRequest(
            remote_id=self.remote_id,
            address=self.address,
            managed_by=self.managed_by,
            key=self.spec,
            parameters=parameters,
            wrapped=wrapped,
            purpose=purpose,
            reimport_version_id=reimport_version_id,
            valid_to=valid_to,
        )

    def inventory_entry(self) -> tuple[RemoteKey | None, Inventory]:
        inventory = self.harness.provider.inventory(
            InventoryRequest(
                managed_by=self.managed_by, known={self.remote_id: self.address}, addresses=(self.address,)
            )
        )
        matches = [k for k in inventory.keys if k.remote_id == self.remote_id]
        return matches[0] if matches else None, inventory


class ProviderConformance:
    algorithms: ClassVar[tuple[str, ...]] = ()  # keyplan algorithm names this target imports as configured
    rotates: ClassVar[tuple[str, ...]] = ()  # algorithms for which NEW_VERSION import + promote_version works

    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[ProviderHarness]:
        raise NotImplementedError("each provider's test module provides the harness")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One test per supported algorithm (so parallel workers can share them out)."""
        if "algorithm_name" in metafunc.fixturenames:
            metafunc.parametrize("algorithm_name", type(self).algorithms)

    # -- import ------------------------------------------------------------------------------

    def test_every_supported_algorithm_imports_and_the_emulator_holds_the_same_material(
        self, harness: ProviderHarness, algorithm_name: str
    ) -> None:
        key = ImportedKey(harness, algorithm_name)
        material = make_material(key.algorithm)
        key.import_material(material)
        assert fingerprint_material(key.algorithm.kind, material) in harness.emulator_fingerprints()

    def test_wrap_offers_are_strongest_first_and_every_offer_imports(self, harness: ProviderHarness) -> None:
        algorithm = ALGORITHMS[self.algorithms[0]]
        offers = harness.plugin.wrap_offers(harness.settings, algorithm)
        assert offers, "a supported algorithm must have at least one wrap offer"
        assert [o.method.strength for o in offers] == sorted((o.method.strength for o in offers), reverse=True)
        for offer in offers:
            key = ImportedKey(harness, algorithm.name)
            key.offer = offer
            material = make_material(algorithm)
            params = key.parameters()
            assert params.method is offer.method
            assert params.wrapping_key_bits == offer.wrapping_key_bits
            key.import_material(material, parameters=params)
            assert fingerprint_material(algorithm.kind, material) in harness.emulator_fingerprints()

    def test_unsupported_algorithms_have_no_offers(self, harness: ProviderHarness) -> None:
        for name, algorithm in ALGORITHMS.items():
            if name not in self.algorithms:
                assert harness.plugin.wrap_offers(harness.settings, algorithm) == [], name

    def test_material_wrapped_for_another_key_is_refused(self, harness: ProviderHarness) -> None:
        name = self.algorithms[0]
        key = ImportedKey(harness, name)
        other = rsa.generate_private_key(public_exponent=65537, key_size=key.offer.wrapping_key_bits)
        spki = other.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        params = key.parameters().model_copy(update={"wrapping_public_key": spki})
        with pytest.raises(ProviderError) as caught:
            key.import_material(make_material(key.algorithm), parameters=params)
        assert caught.value.kind in (ErrorKind.FATAL, ErrorKind.CONFLICT)
        assert caught.value.summary
        entry, _ = key.inventory_entry()
        if entry is not None:
            assert entry.state in (KeyState.PENDING_IMPORT, KeyState.CREATING)

    # -- inventory ---------------------------------------------------------------------------

    def test_inventory_shows_address_labels_and_state(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0], labels={"team": "payments"})
        key.import_material(make_material(key.algorithm))
        entry, inventory = key.inventory_entry()
        assert entry is not None, inventory
        assert entry.address == key.address
        assert entry.managed_by == key.managed_by
        assert entry.labels == {"team": "payments"}
        assert entry.state is KeyState.ENABLED and entry.enabled
        assert entry.algorithm == key.algorithm.name

    def test_scan_finds_managed_keys_state_does_not_know(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        key.import_material(make_material(key.algorithm))
        inventory = harness.provider.inventory(
            InventoryRequest(managed_by=key.managed_by, known={}, addresses=(key.address,), scan=True)
        )
        found = [k for k in inventory.keys if k.remote_id == key.remote_id]
        assert found and found[0].address == key.address

    def test_inventory_reports_known_ids_the_cloud_does_not_have(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        key.import_material(make_material(key.algorithm))
        missing_id = key.remote_id[: -len(key.remote_id.split("/")[-1])] + "keyplan-missing-" + uuid.uuid4().hex[:8]
        inventory = harness.provider.inventory(
            InventoryRequest(
                managed_by=key.managed_by,
                known={key.remote_id: key.address, missing_id: 'key.gone["x"]'},
                addresses=(key.address, 'key.gone["x"]'),
            )
        )
        assert missing_id in inventory.missing
        assert key.remote_id in {k.remote_id for k in inventory.keys}

    def test_describe_of_a_missing_key_is_none(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        key.import_material(make_material(key.algorithm))
        missing_id = key.remote_id[: -len(key.remote_id.split("/")[-1])] + "keyplan-missing-" + uuid.uuid4().hex[:8]
        assert harness.provider.describe(DescribeKeyRequest(remote_id=missing_id)).key is None
        described = harness.provider.describe(DescribeKeyRequest(remote_id=key.remote_id)).key
        assert described is not None and described.address == key.address

    # -- metadata ----------------------------------------------------------------------------

    def test_update_labels_and_disable_then_enable(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0], labels={"team": "payments", "tier": "1"})
        key.import_material(make_material(key.algorithm))
        current, _ = key.inventory_entry()
        desired = key.spec.model_copy(update={"labels": {"team": "ledger"}, "enabled": False})
        harness.provider.update_key(
            UpdateKeyRequest(
                remote_id=key.remote_id, address=key.address, managed_by=key.managed_by, key=desired, current=current
            )
        )
        entry, _ = key.inventory_entry()
        assert entry is not None
        assert entry.labels == {"team": "ledger"}
        assert entry.enabled is False and entry.state is KeyState.DISABLED
        assert entry.address == key.address, "reserved tags survive a label update"
        harness.provider.update_key(
            UpdateKeyRequest(
                remote_id=key.remote_id,
                address=key.address,
                managed_by=key.managed_by,
                key=desired.model_copy(update={"enabled": True}),
                current=entry,
            )
        )
        entry, _ = key.inventory_entry()
        assert entry is not None and entry.enabled and entry.state is KeyState.ENABLED

    # -- rotation ----------------------------------------------------------------------------

    def test_rotation_imports_a_new_version_and_makes_it_current(self, harness: ProviderHarness) -> None:
        if not self.rotates:
            pytest.skip("this target rotates no algorithm")
        key = ImportedKey(harness, self.rotates[0])
        first, second = make_material(key.algorithm), make_material(key.algorithm, index=1)
        v1 = key.import_material(first)
        v2 = key.import_material(second, ImportPurpose.NEW_VERSION)
        assert v1 != v2
        promoted = harness.provider.promote_version(PromoteVersionRequest(remote_id=key.remote_id, version_id=v2))
        assert isinstance(promoted, PromoteVersionResponse)
        fingerprints = harness.emulator_fingerprints()
        assert fingerprint_material(key.algorithm.kind, first) in fingerprints
        assert fingerprint_material(key.algorithm.kind, second) in fingerprints
        entry, _ = key.inventory_entry()
        assert entry is not None and entry.current_version == v2

    # -- deletion ----------------------------------------------------------------------------

    def test_schedule_and_cancel_deletion(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        key.import_material(make_material(key.algorithm))
        harness.provider.schedule_deletion(ScheduleDeletionRequest(remote_id=key.remote_id, window_days=7))
        entry, inventory = key.inventory_entry()
        assert entry is not None, inventory
        assert entry.state in (KeyState.PENDING_DELETION, KeyState.DELETED)
        restored = harness.provider.cancel_deletion(CancelDeletionRequest(remote_id=key.remote_id))
        entry, _ = key.inventory_entry()
        assert entry is not None
        assert entry.state in (KeyState.DISABLED, KeyState.ENABLED)
        assert restored.enabled == (entry.state is KeyState.ENABLED)  # the answer says what the cloud holds

    # -- errors ------------------------------------------------------------------------------

    def test_import_parameters_for_a_missing_key_are_not_found(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        key.import_material(make_material(key.algorithm))
        missing_id = key.remote_id[: -len(key.remote_id.split("/")[-1])] + "keyplan-missing-" + uuid.uuid4().hex[:8]
        with pytest.raises(ProviderError) as caught:
            harness.provider.update_key(
                UpdateKeyRequest(remote_id=missing_id, address=key.address, managed_by=key.managed_by, key=key.spec)
            )
        assert caught.value.kind is ErrorKind.NOT_FOUND

    def test_expired_import_parameters_are_classified(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        params = key.parameters()
        if params.expires_at is None:
            pytest.skip("this cloud's import parameters do not expire")
        lifetime = (params.expires_at - datetime.now(UTC)).total_seconds()
        harness.control("/_emulator/clock", {"advance_seconds": lifetime + 3600})
        with pytest.raises(ProviderError) as caught:
            key.import_material(make_material(key.algorithm), parameters=params)
        assert caught.value.kind is ErrorKind.PARAMETERS_EXPIRED
        fresh = key.parameters()
        key.import_material(make_material(key.algorithm), parameters=fresh)

    def test_server_errors_are_retryable_and_throttling_is_waited_out(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        key.import_material(make_material(key.algorithm))
        harness.control("/_emulator/faults", {"errors": [{"operation": "*", "status": 503, "count": 50}]})
        try:
            with pytest.raises(ProviderError) as caught:
                harness.provider.describe(DescribeKeyRequest(remote_id=key.remote_id))
            assert caught.value.kind is ErrorKind.RETRYABLE
        finally:
            harness.control("/_emulator/faults", {"errors": []})
        # The cloud's throttling answer never leaves the provider: the call is admitted again,
        # slower, until it goes through (keyplan.limits).
        harness.control("/_emulator/faults", {"errors": [{"operation": "*", "status": 429, "count": 3}]})
        try:
            described = harness.provider.describe(DescribeKeyRequest(remote_id=key.remote_id)).key
            assert described is not None and described.remote_id == key.remote_id
        finally:
            harness.control("/_emulator/faults", {"errors": []})

    def test_unreachable_endpoint_is_classified(self, harness: ProviderHarness, tmp_path: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        scheme = harness.control_url.split(":", 1)[0]
        settings = harness.settings.model_copy(update={"endpoint": f"{scheme}://127.0.0.1:{port}"})
        provider = harness.plugin.open(
            settings, conformance_context("unreachable.test", tmp_path)
        )
        try:
            with pytest.raises(ProviderError) as caught:
                provider.inventory(InventoryRequest(managed_by="keyplan-conformance", scan=True))
            assert caught.value.kind is ErrorKind.UNREACHABLE
            assert "endpoint" in caught.value.detail.lower()
        finally:
            provider.close()

    def test_errors_never_carry_material(self, harness: ProviderHarness) -> None:
        key = ImportedKey(harness, self.algorithms[0])
        material = make_material(key.algorithm)
        raw = material.reveal()
        params = key.parameters()
        # corrupt the wrapped blob so the cloud refuses it
        blob = bytearray(wrap(params.method, params.wrapping_public_key, material))
        blob[-1] ^= 0xFF
        with pytest.raises(ProviderError) as caught:
            harness.provider.import_material(
                key.import_request(params, bytes(blob), valid_to=datetime.now(UTC) + timedelta(days=30))
            )
        text = f"{caught.value.summary} {caught.value.detail} {caught.value!r}"
        import base64

        for needle in (raw.hex(), base64.b64encode(raw).decode(), base64.b64encode(bytes(blob)).decode()[:40]):
            assert needle not in text
