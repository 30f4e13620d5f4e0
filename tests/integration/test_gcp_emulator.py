"""The Cloud KMS emulator driven by the unmodified `google-cloud-kms` REST client: the BYOK rules
of Google Cloud KMS, error bodies and the SDK exceptions they become, pagination, filters, the
clock, fault injection and persistence across restarts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from google.api_core import exceptions as api
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import kms

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, wrap
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json
from providers.gcp.emulator import GcpKmsEmulator

LOCATION = "projects/emulated/locations/global"
Purpose = kms.CryptoKey.CryptoKeyPurpose
Alg = kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm
VState = kms.CryptoKeyVersion.CryptoKeyVersionState
Method = kms.ImportJob.ImportMethod
JobState = kms.ImportJob.ImportJobState
Level = kms.ProtectionLevel


@dataclass
class Emulated:
    server: EmulatorServer
    client: kms.KeyManagementServiceClient
    ring: str

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return fetch_json(self.server.url + path, method="POST" if payload is not None else "GET", payload=payload)

    def fingerprints(self) -> list[str]:
        return [m["fingerprint"] for m in self.control("/_emulator/materials")["materials"]]

    def key(
        self,
        key_id: str,
        algorithm: Alg = Alg.GOOGLE_SYMMETRIC_ENCRYPTION,
        purpose: Purpose = Purpose.ENCRYPT_DECRYPT,
        level: Level = Level.HSM,
        labels: dict[str, str] | None = None,
    ) -> kms.CryptoKey:
        return self.client.create_crypto_key(
            request={
                "parent": self.ring,
                "crypto_key_id": key_id,
                "skip_initial_version_creation": True,
                "crypto_key": {
                    "purpose": purpose,
                    "import_only": True,
                    "labels": labels or {},
                    "version_template": {"algorithm": algorithm, "protection_level": level},
                },
            }
        )

    def job(
        self, job_id: str, method: Method = Method.RSA_OAEP_3072_SHA256_AES_256, level: Level = Level.HSM
    ) -> kms.ImportJob:
        created = self.client.create_import_job(
            request={
                "parent": self.ring,
                "import_job_id": job_id,
                "import_job": {"import_method": method, "protection_level": level},
            }
        )
        assert created.state == JobState.PENDING_GENERATION
        return self.client.get_import_job(name=created.name)

    def import_(
        self,
        key: kms.CryptoKey,
        job: kms.ImportJob,
        material: SecretBytes,
        method: WrapMethod,
        algorithm: Alg = Alg.GOOGLE_SYMMETRIC_ENCRYPTION,
        **extra: Any,
    ) -> kms.CryptoKeyVersion:
        blob = wrap(method, spki(job), material)
        version = self.client.import_crypto_key_version(
            request={"parent": key.name, "algorithm": algorithm, "import_job": job.name, "wrapped_key": blob, **extra}
        )
        assert version.state == VState.PENDING_IMPORT
        return self.client.get_crypto_key_version(name=version.name)


def spki(job: kms.ImportJob) -> bytes:
    return serialization.load_pem_public_key(job.public_key.pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def client_for(url: str) -> kms.KeyManagementServiceClient:
    return kms.KeyManagementServiceClient(
        transport="rest", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=url)
    )


def status_of(error: api.GoogleAPICallError) -> str:
    return str(error.response.json()["error"]["status"])


@pytest.fixture
def gcp(tmp_path: Path) -> Iterator[Emulated]:
    server = EmulatorServer(GcpKmsEmulator(DocumentStore(tmp_path / "gcp.sqlite"), Clock())).start()
    client = client_for(server.url)
    ring = client.create_key_ring(request={"parent": LOCATION, "key_ring_id": "ring", "key_ring": {}}).name
    try:
        yield Emulated(server, client, ring)
    finally:
        client.transport.close()
        server.stop()


@pytest.fixture
def active(gcp: Emulated) -> kms.ImportJob:
    return gcp.job("job-3072")


def aes() -> SecretBytes:
    return SecretBytes(os.urandom(32))


# -- key rings and keys ------------------------------------------------------------------------


def test_key_rings_are_created_listed_and_unique(gcp: Emulated) -> None:
    assert gcp.client.get_key_ring(name=gcp.ring).name == gcp.ring
    with pytest.raises(api.Conflict) as caught:
        gcp.client.create_key_ring(request={"parent": LOCATION, "key_ring_id": "ring", "key_ring": {}})
    assert status_of(caught.value) == "ALREADY_EXISTS"
    assert [r.name for r in gcp.client.list_key_rings(parent=LOCATION)] == [gcp.ring]
    with pytest.raises(api.NotFound):
        gcp.client.get_key_ring(name=f"{LOCATION}/keyRings/absent")


def test_crypto_keys_follow_creation_rules(gcp: Emulated) -> None:
    key = gcp.key("k1", labels={"team": "payments"})
    assert key.import_only and key.destroy_scheduled_duration == timedelta(days=30)
    assert key.version_template.protection_level == Level.HSM and key.labels["team"] == "payments"
    assert not key.primary.name
    with pytest.raises(api.Conflict):
        gcp.key("k1")
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.create_crypto_key(
            request={
                "parent": gcp.ring,
                "crypto_key_id": "k2",
                "crypto_key": {
                    "purpose": Purpose.ENCRYPT_DECRYPT,
                    "import_only": True,
                    "version_template": {"algorithm": Alg.GOOGLE_SYMMETRIC_ENCRYPTION},
                },
            }
        )
    assert status_of(caught.value) == "INVALID_ARGUMENT" and "skip_initial_version_creation" in caught.value.message
    with pytest.raises(api.BadRequest):
        gcp.key("k3", labels={"Team": "x"})
    with pytest.raises(api.BadRequest):
        gcp.key("k4", labels={"team": "Payments!"})
    with pytest.raises(api.BadRequest):
        gcp.key("k5", algorithm=Alg.HMAC_SHA256, purpose=Purpose.ENCRYPT_DECRYPT)
    with pytest.raises(api.NotFound):
        gcp.client.get_crypto_key(name=f"{gcp.ring}/cryptoKeys/absent")


def test_labels_are_patched_with_an_update_mask(gcp: Emulated) -> None:
    key = gcp.key("k", labels={"a": "1", "b": "2"})
    updated = gcp.client.update_crypto_key(
        request={"crypto_key": {"name": key.name, "labels": {"c": "3"}}, "update_mask": {"paths": ["labels"]}}
    )
    assert dict(updated.labels) == {"c": "3"}
    assert dict(gcp.client.get_crypto_key(name=key.name).labels) == {"c": "3"}
    with pytest.raises(api.BadRequest):
        gcp.client.update_crypto_key(
            request={"crypto_key": {"name": key.name, "import_only": False}, "update_mask": {"paths": ["import_only"]}}
        )


def test_listing_paginates_and_filters_on_labels(gcp: Emulated) -> None:
    for i in range(7):
        gcp.key(f"k{i}", labels={"keyplan-managed-by": "ws-a" if i % 2 else "ws-b"})
    gcp.key("plain")
    gcp.control("/_emulator/stats/reset", {})
    pager = gcp.client.list_crypto_keys(request={"parent": gcp.ring, "page_size": 3})
    names = [k.name.rsplit("/", 1)[1] for k in pager]
    assert names == [f"k{i}" for i in range(7)] + ["plain"]
    assert gcp.control("/_emulator/stats")["calls"]["ListCryptoKeys"] == 3
    managed = gcp.client.list_crypto_keys(request={"parent": gcp.ring, "filter": "labels.keyplan-managed-by:*"})
    assert len(list(managed)) == 7
    mine = gcp.client.list_crypto_keys(request={"parent": gcp.ring, "filter": "labels.keyplan-managed-by=ws-a"})
    assert [k.name.rsplit("/", 1)[1] for k in mine] == ["k1", "k3", "k5"]
    with pytest.raises(api.BadRequest):
        list(gcp.client.list_crypto_keys(request={"parent": gcp.ring, "filter": "labels.x ~ y"}))


# -- import jobs -------------------------------------------------------------------------------


def test_import_jobs_generate_on_first_read_and_expire_after_three_days(gcp: Emulated) -> None:
    created = gcp.client.create_import_job(
        request={
            "parent": gcp.ring,
            "import_job_id": "j",
            "import_job": {"import_method": Method.RSA_OAEP_4096_SHA1_AES_256, "protection_level": Level.SOFTWARE},
        }
    )
    assert created.state == JobState.PENDING_GENERATION and not created.public_key.pem
    assert created.expire_time - created.create_time == timedelta(days=3)
    job = gcp.client.get_import_job(name=created.name)
    assert job.state == JobState.ACTIVE and job.generate_time
    public_key = serialization.load_pem_public_key(job.public_key.pem.encode())
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 4096
    with pytest.raises(api.Conflict):
        gcp.job("j")
    gcp.control("/_emulator/clock", {"advance_seconds": 3 * 86400 + 1})
    expired = gcp.client.get_import_job(name=job.name)
    assert expired.state == JobState.EXPIRED and not expired.public_key.pem
    assert [j.state for j in gcp.client.list_import_jobs(parent=gcp.ring)] == [JobState.EXPIRED]


def test_import_job_needs_a_supported_method_and_protection_level(gcp: Emulated) -> None:
    for body in (
        {"import_method": Method.RSA_OAEP_3072_SHA256_AES_256},
        {"import_method": Method.HPKE_KEM_ML_KEM_768_HKDF_SHA256_AES_256_GCM, "protection_level": Level.HSM},
        {"protection_level": Level.HSM},
    ):
        with pytest.raises(api.BadRequest) as caught:
            gcp.client.create_import_job(request={"parent": gcp.ring, "import_job_id": "bad", "import_job": body})
        assert status_of(caught.value) == "INVALID_ARGUMENT"


# -- import ------------------------------------------------------------------------------------


def test_import_unwraps_with_the_job_key_and_numbers_versions(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("k")
    first, second = aes(), aes()
    v1 = gcp.import_(key, active, first, WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    v2 = gcp.import_(key, active, second, WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    assert (v1.name.rsplit("/", 1)[1], v2.name.rsplit("/", 1)[1]) == ("1", "2")
    assert v1.state == VState.ENABLED and v1.import_job == active.name and v1.import_time and v1.reimport_eligible
    materials = gcp.control("/_emulator/materials")["materials"]
    assert {(m["key"], m["version"], m["fingerprint"]) for m in materials} == {
        (key.name, "1", fingerprint_material(MaterialKind.SYMMETRIC, first)),
        (key.name, "2", fingerprint_material(MaterialKind.SYMMETRIC, second)),
    }
    assert not gcp.client.get_crypto_key(name=key.name).primary.name, "an import does not make itself primary"


def test_legacy_rsa_aes_wrapped_key_field_is_accepted(gcp: Emulated, active: kms.ImportJob) -> None:
    key, material = gcp.key("k"), aes()
    version = gcp.client.import_crypto_key_version(
        request={
            "parent": key.name,
            "algorithm": Alg.GOOGLE_SYMMETRIC_ENCRYPTION,
            "import_job": active.name,
            "rsa_aes_wrapped_key": wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_256, spki(active), material),
        }
    )
    assert gcp.client.get_crypto_key_version(name=version.name).state == VState.ENABLED
    assert fingerprint_material(MaterialKind.SYMMETRIC, material) in gcp.fingerprints()


def test_import_requests_are_checked_before_unwrapping(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("k")
    blob = wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_256, spki(active), aes())
    base = {"parent": key.name, "algorithm": Alg.GOOGLE_SYMMETRIC_ENCRYPTION, "import_job": active.name}
    cases = [
        ({**base}, "INVALID_ARGUMENT"),  # neither wrapped field
        ({**base, "wrapped_key": blob, "rsa_aes_wrapped_key": blob}, "INVALID_ARGUMENT"),  # both
        ({**base, "wrapped_key": blob, "algorithm": Alg.HMAC_SHA256}, "INVALID_ARGUMENT"),  # purpose mismatch
    ]
    for request, status in cases:
        with pytest.raises(api.BadRequest) as caught:
            gcp.client.import_crypto_key_version(request=request)
        assert status_of(caught.value) == status
    software = gcp.key("soft", level=Level.SOFTWARE)
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.import_crypto_key_version(request={**base, "parent": software.name, "wrapped_key": blob})
    assert "protection level" in caught.value.message
    assert gcp.fingerprints() == [] and not list(gcp.client.list_crypto_key_versions(parent=key.name))


def test_direct_oaep_methods_refuse_rsa_targets(gcp: Emulated) -> None:
    job = gcp.job("direct", Method.RSA_OAEP_3072_SHA256)
    key = gcp.key("rsa", algorithm=Alg.RSA_SIGN_PSS_2048_SHA256, purpose=Purpose.ASYMMETRIC_SIGN)
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.import_crypto_key_version(
            request={
                "parent": key.name,
                "algorithm": Alg.RSA_SIGN_PSS_2048_SHA256,
                "import_job": job.name,
                "wrapped_key": b"\x00" * 384,
            }
        )
    assert status_of(caught.value) == "INVALID_ARGUMENT"
    ec_key = gcp.key("ec", algorithm=Alg.EC_SIGN_P256_SHA256, purpose=Purpose.ASYMMETRIC_SIGN)
    private = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = SecretBytes(
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    version = gcp.import_(ec_key, job, pkcs8, WrapMethod.RSAES_OAEP_SHA_256, Alg.EC_SIGN_P256_SHA256)
    assert version.state == VState.ENABLED
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"message")
    signed = gcp.client.asymmetric_sign(request={"name": version.name, "digest": {"sha256": digest.finalize()}})
    private.public_key().verify(signed.signature, b"message", ec.ECDSA(hashes.SHA256()))


def test_import_with_an_expired_job_is_a_failed_precondition(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("k")
    blob = wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_256, spki(active), aes())
    gcp.control("/_emulator/clock", {"advance_seconds": 3 * 86400})
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.import_crypto_key_version(
            request={
                "parent": key.name,
                "algorithm": Alg.GOOGLE_SYMMETRIC_ENCRYPTION,
                "import_job": active.name,
                "wrapped_key": blob,
            }
        )
    assert status_of(caught.value) == "FAILED_PRECONDITION" and "EXPIRED" in caught.value.message


def test_bad_material_fails_the_version_with_a_reason(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("k")
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=3072)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    wrong_key = gcp.client.import_crypto_key_version(
        request={
            "parent": key.name,
            "algorithm": Alg.GOOGLE_SYMMETRIC_ENCRYPTION,
            "import_job": active.name,
            "wrapped_key": wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_256, other, aes()),
        }
    )
    failed = gcp.client.get_crypto_key_version(name=wrong_key.name)
    assert failed.state == VState.IMPORT_FAILED and "could not be unwrapped" in failed.import_failure_reason
    short = gcp.import_(key, active, SecretBytes(os.urandom(16)), WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    assert short.state == VState.IMPORT_FAILED and "32 bytes" in short.import_failure_reason
    hmac_key = gcp.key("mac", algorithm=Alg.HMAC_SHA384, purpose=Purpose.MAC)
    wrong_length = gcp.import_(
        hmac_key, active, SecretBytes(os.urandom(32)), WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.HMAC_SHA384
    )
    assert wrong_length.state == VState.IMPORT_FAILED
    ec_key = gcp.key("ec", algorithm=Alg.EC_SIGN_P384_SHA384, purpose=Purpose.ASYMMETRIC_SIGN)
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    wrong_curve = gcp.import_(
        ec_key, active, SecretBytes(p256), WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.EC_SIGN_P384_SHA384
    )
    assert wrong_curve.state == VState.IMPORT_FAILED and "curve" in wrong_curve.import_failure_reason
    assert gcp.fingerprints() == []


def test_reimport_needs_a_destroyed_or_failed_version_and_identical_material(
    gcp: Emulated, active: kms.ImportJob
) -> None:
    key, material = gcp.key("k"), aes()
    version = gcp.import_(key, active, material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    reimport = {"crypto_key_version": version.name}
    with pytest.raises(api.BadRequest) as caught:
        gcp.import_(key, active, material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, **reimport)
    assert status_of(caught.value) == "FAILED_PRECONDITION"
    gcp.client.destroy_crypto_key_version(name=version.name)
    gcp.control("/_emulator/clock", {"advance_seconds": 30 * 86400 + 1})
    active = gcp.job("fresh")
    assert gcp.client.get_crypto_key_version(name=version.name).state == VState.DESTROYED
    assert gcp.fingerprints() == []
    different = gcp.import_(key, active, aes(), WrapMethod.RSA_AES_KEY_WRAP_SHA_256, **reimport)
    assert different.state == VState.IMPORT_FAILED and "does not match" in different.import_failure_reason
    same = gcp.import_(key, active, material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, **reimport)
    assert same.state == VState.ENABLED and same.name == version.name
    assert gcp.fingerprints() == [fingerprint_material(MaterialKind.SYMMETRIC, material)]
    assert len(list(gcp.client.list_crypto_key_versions(parent=key.name))) == 1


# -- lifecycle and use -------------------------------------------------------------------------


def test_destroy_restore_and_enable_disable(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("k")
    version = gcp.import_(key, active, aes(), WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    disabled = gcp.client.update_crypto_key_version(
        request={
            "crypto_key_version": {"name": version.name, "state": VState.DISABLED},
            "update_mask": {"paths": ["state"]},
        }
    )
    assert disabled.state == VState.DISABLED
    with pytest.raises(api.BadRequest):
        gcp.client.update_crypto_key_version(
            request={
                "crypto_key_version": {"name": version.name, "state": VState.DESTROYED},
                "update_mask": {"paths": ["state"]},
            }
        )
    scheduled = gcp.client.destroy_crypto_key_version(name=version.name)
    now = datetime_of(gcp)
    assert scheduled.state == VState.DESTROY_SCHEDULED
    assert abs((scheduled.destroy_time - now) - timedelta(days=30)) < timedelta(minutes=1)
    with pytest.raises(api.BadRequest):
        gcp.client.destroy_crypto_key_version(name=version.name)
    restored = gcp.client.restore_crypto_key_version(name=version.name)
    assert restored.state == VState.DISABLED and not restored.destroy_time
    gcp.client.destroy_crypto_key_version(name=version.name)
    gcp.control("/_emulator/clock", {"advance_seconds": 31 * 86400})
    destroyed = gcp.client.get_crypto_key_version(name=version.name)
    assert destroyed.state == VState.DESTROYED and destroyed.destroy_event_time
    with pytest.raises(api.BadRequest):
        gcp.client.restore_crypto_key_version(name=version.name)


def datetime_of(gcp: Emulated) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(gcp.control("/_emulator/clock")["now"])


def test_primary_encrypts_and_older_versions_still_decrypt(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("k")
    v1 = gcp.import_(key, active, aes(), WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    with pytest.raises(api.BadRequest):
        gcp.client.encrypt(name=key.name, plaintext=b"no primary yet")
    gcp.client.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1")
    old = gcp.client.encrypt(request={"name": key.name, "plaintext": b"first", "additional_authenticated_data": b"ctx"})
    assert old.name == v1.name
    gcp.import_(key, active, aes(), WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    promoted = gcp.client.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="2")
    assert promoted.primary.name.endswith("/2")
    assert gcp.client.encrypt(name=key.name, plaintext=b"second").name.endswith("/2")
    decrypted = gcp.client.decrypt(
        request={"name": key.name, "ciphertext": old.ciphertext, "additional_authenticated_data": b"ctx"}
    )
    assert decrypted.plaintext == b"first" and not decrypted.used_primary
    with pytest.raises(api.BadRequest):
        gcp.client.decrypt(
            request={"name": key.name, "ciphertext": old.ciphertext, "additional_authenticated_data": b"other"}
        )
    gcp.client.update_crypto_key_version(
        request={"crypto_key_version": {"name": v1.name, "state": VState.DISABLED}, "update_mask": {"paths": ["state"]}}
    )
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.decrypt(
            request={"name": key.name, "ciphertext": old.ciphertext, "additional_authenticated_data": b"ctx"}
        )
    assert (
        status_of(caught.value) == "FAILED_PRECONDITION"
        and "is not enabled, current state is: DISABLED" in caught.value.message
    )


def test_mac_keys_sign_and_have_no_primary(gcp: Emulated, active: kms.ImportJob) -> None:
    import hmac as std_hmac

    key = gcp.key("mac", algorithm=Alg.HMAC_SHA256, purpose=Purpose.MAC)
    material = SecretBytes(os.urandom(32))
    version = gcp.import_(key, active, material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.HMAC_SHA256)
    mac = gcp.client.mac_sign(request={"name": version.name, "data": b"payload"}).mac
    assert mac == std_hmac.new(material.reveal(), b"payload", "sha256").digest()
    assert gcp.client.mac_verify(request={"name": version.name, "data": b"payload", "mac": mac}).success
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1")
    assert status_of(caught.value) == "FAILED_PRECONDITION"


def test_raw_aes_keys_encrypt_standard_ciphertexts_both_ways(gcp: Emulated, active: kms.ImportJob) -> None:
    """RawEncrypt/RawDecrypt as Google documents them: AES-GCM with a service-chosen 12-byte IV and
    the 16-byte tag appended, readable by any AES-GCM implementation, and the reverse."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = gcp.key("raw", algorithm=Alg.AES_256_GCM, purpose=Purpose.RAW_ENCRYPT_DECRYPT)
    material = aes()
    version = gcp.import_(key, active, material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.AES_256_GCM)
    assert version.state == VState.ENABLED
    sealed = gcp.client.raw_encrypt(
        request={"name": version.name, "plaintext": b"payload", "additional_authenticated_data": b"ctx"}
    )
    assert len(sealed.initialization_vector) == 12 and sealed.tag_length == 16
    assert AESGCM(material.reveal()).decrypt(sealed.initialization_vector, sealed.ciphertext, b"ctx") == b"payload"
    iv = os.urandom(12)
    ours = AESGCM(material.reveal()).encrypt(iv, b"from outside", b"ctx")
    opened = gcp.client.raw_decrypt(
        request={
            "name": version.name,
            "ciphertext": ours,
            "additional_authenticated_data": b"ctx",
            "initialization_vector": iv,
            "tag_length": 16,
        }
    )
    assert opened.plaintext == b"from outside"
    for bad in (
        {"additional_authenticated_data": b"other", "initialization_vector": iv},  # the tag does not verify
        {"additional_authenticated_data": b"ctx", "initialization_vector": iv[:8]},
        {"additional_authenticated_data": b"ctx", "initialization_vector": iv, "tag_length": 8},
    ):
        with pytest.raises(api.BadRequest) as caught:
            gcp.client.raw_decrypt(request={"name": version.name, "ciphertext": ours, **bad})
        assert status_of(caught.value) == "INVALID_ARGUMENT"
    with pytest.raises(api.BadRequest) as caught:  # GCM's IV is the service's to choose
        gcp.client.raw_encrypt(request={"name": version.name, "plaintext": b"x", "initialization_vector": iv + iv[:4]})
    assert status_of(caught.value) == "INVALID_ARGUMENT"
    with pytest.raises(api.BadRequest) as caught:  # an HSM key takes at most 8 KiB of plaintext and AAD
        gcp.client.raw_encrypt(request={"name": version.name, "plaintext": b"x" * 8000, "additional_authenticated_data": b"y" * 500})
    assert status_of(caught.value) == "INVALID_ARGUMENT"
    # CBC: a caller's 16-byte IV, whole blocks only, no AAD
    cbc_key = gcp.key("raw-cbc", algorithm=Alg.AES_256_CBC, purpose=Purpose.RAW_ENCRYPT_DECRYPT)
    cbc_material = aes()
    cbc = gcp.import_(cbc_key, active, cbc_material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.AES_256_CBC)
    block_iv = os.urandom(16)
    sealed = gcp.client.raw_encrypt(request={"name": cbc.name, "plaintext": b"a" * 32, "initialization_vector": block_iv})
    decryptor = Cipher(algorithms.AES(cbc_material.reveal()), modes.CBC(block_iv)).decryptor()
    assert decryptor.update(sealed.ciphertext) + decryptor.finalize() == b"a" * 32 and sealed.tag_length == 0
    for bad in ({"plaintext": b"a" * 17}, {"plaintext": b"a" * 16, "additional_authenticated_data": b"ctx"}):
        with pytest.raises(api.BadRequest):
            gcp.client.raw_encrypt(request={"name": cbc.name, **bad})
    # other purposes and unusable versions are refused
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.raw_encrypt(request={"name": f"{gcp.key('plain').name}/cryptoKeyVersions/1", "plaintext": b"x"})
    assert status_of(caught.value) == "INVALID_ARGUMENT" and "RAW_ENCRYPT_DECRYPT" in caught.value.message
    gcp.client.update_crypto_key_version(
        request={"crypto_key_version": {"name": version.name, "state": VState.DISABLED}, "update_mask": {"paths": ["state"]}}
    )
    with pytest.raises(api.BadRequest) as caught:
        gcp.client.raw_encrypt(request={"name": version.name, "plaintext": b"x"})
    assert status_of(caught.value) == "FAILED_PRECONDITION"


def test_imported_rsa_decryption_keys_decrypt_oaep(gcp: Emulated, active: kms.ImportJob) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = gcp.key("dec", algorithm=Alg.RSA_DECRYPT_OAEP_2048_SHA256, purpose=Purpose.ASYMMETRIC_DECRYPT)
    material = SecretBytes(
        private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    version = gcp.import_(key, active, material, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.RSA_DECRYPT_OAEP_2048_SHA256)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    sealed = private_key.public_key().encrypt(b"secret", oaep)
    assert gcp.client.asymmetric_decrypt(request={"name": version.name, "ciphertext": sealed}).plaintext == b"secret"
    with pytest.raises(api.BadRequest) as caught:  # OAEP with SHA-1 is another algorithm
        sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        gcp.client.asymmetric_decrypt(request={"name": version.name, "ciphertext": private_key.public_key().encrypt(b"x", sha1)})
    assert status_of(caught.value) == "INVALID_ARGUMENT"


def test_imported_rsa_key_signs_with_pss(gcp: Emulated, active: kms.ImportJob) -> None:
    key = gcp.key("rsa", algorithm=Alg.RSA_SIGN_PSS_2048_SHA256, purpose=Purpose.ASYMMETRIC_SIGN)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = SecretBytes(
        private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    version = gcp.import_(key, active, pkcs8, WrapMethod.RSA_AES_KEY_WRAP_SHA_256, Alg.RSA_SIGN_PSS_2048_SHA256)
    assert version.state == VState.ENABLED
    public_pem = gcp.client.get_public_key(name=version.name).pem
    assert (
        serialization.load_pem_public_key(public_pem.encode()).public_numbers() == private.public_key().public_numbers()
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"document")
    value = digest.finalize()
    signature = gcp.client.asymmetric_sign(request={"name": version.name, "digest": {"sha256": value}}).signature
    private.public_key().verify(
        signature,
        value,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        utils.Prehashed(hashes.SHA256()),
    )


# -- wire format, faults, persistence ----------------------------------------------------------


def test_enum_names_are_accepted_and_answered_without_int_encoding(gcp: Emulated) -> None:
    body = json.dumps(
        {
            "purpose": "MAC",
            "importOnly": True,
            "versionTemplate": {"algorithm": "HMAC_SHA512", "protectionLevel": "SOFTWARE"},
        }
    )
    request = urllib.request.Request(
        f"{gcp.server.url}/v1/{gcp.ring}/cryptoKeys?cryptoKeyId=named&skipInitialVersionCreation=true",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created = json.loads(response.read())
    assert created["purpose"] == "MAC" and created["versionTemplate"]["algorithm"] == "HMAC_SHA512"
    key = gcp.client.get_crypto_key(name=created["name"])
    assert key.purpose == Purpose.MAC and key.version_template.protection_level == Level.SOFTWARE


def test_request_bodies_are_typed_and_proto_names_are_accepted(gcp: Emulated) -> None:
    """A body is validated before its handler reads it: proto (snake_case) member names work like
    their JSON (camelCase) names, and a member of the wrong JSON type is INVALID_ARGUMENT naming
    the member without quoting the value; nothing is created."""

    def post(key_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{gcp.server.url}/v1/{gcp.ring}/cryptoKeys?cryptoKeyId={key_id}&skipInitialVersionCreation=true",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    status, created = post(
        "snake", {"purpose": "MAC", "import_only": True, "version_template": {"algorithm": "HMAC_SHA256"}}
    )
    assert status == 200 and created["importOnly"] is True
    status, refused = post(
        "typed", {"purpose": "MAC", "importOnly": "yes-secret", "versionTemplate": {"algorithm": "HMAC_SHA256"}}
    )
    assert status == 400 and refused["error"]["status"] == "INVALID_ARGUMENT"
    assert "importOnly" in refused["error"]["message"] and "yes-secret" not in refused["error"]["message"]
    status, refused = post("labels", {"purpose": "MAC", "labels": {"env": 5}})
    assert status == 400 and "labels.env" in refused["error"]["message"]
    names = {key.name.rsplit("/", 1)[-1] for key in gcp.client.list_crypto_keys(parent=gcp.ring)}
    assert "snake" in names and not names & {"typed", "labels"}


def test_injected_faults_use_google_error_bodies(gcp: Emulated) -> None:
    gcp.control(
        "/_emulator/faults",
        {
            "errors": [
                {"operation": "GetKeyRing", "status": 429, "count": 1},
                {"operation": "ListCryptoKeys", "status": 503, "count": 1},
            ]
        },
    )
    with pytest.raises(api.TooManyRequests) as throttled:
        gcp.client.get_key_ring(name=gcp.ring, retry=None)
    assert status_of(throttled.value) == "RESOURCE_EXHAUSTED"
    with pytest.raises(api.ServiceUnavailable) as unavailable:
        list(gcp.client.list_crypto_keys(parent=gcp.ring, retry=None))
    assert status_of(unavailable.value) == "UNAVAILABLE"
    assert gcp.client.get_key_ring(name=gcp.ring, retry=None).name == gcp.ring


def test_state_and_clock_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "gcp.sqlite"
    with EmulatorServer(GcpKmsEmulator(DocumentStore(path), Clock())) as server:
        client = client_for(server.url)
        gcp = Emulated(
            server,
            client,
            client.create_key_ring(request={"parent": LOCATION, "key_ring_id": "r", "key_ring": {}}).name,
        )
        key, job = gcp.key("k"), gcp.job("j")
        gcp.import_(key, job, aes(), WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
        client.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1")
        ciphertext = client.encrypt(name=key.name, plaintext=b"kept").ciphertext
        gcp.control("/_emulator/clock", {"advance_seconds": 86400})
        client.transport.close()
    store = DocumentStore(path)
    with EmulatorServer(GcpKmsEmulator(store, Clock(float(store.get_meta("clock_offset") or 0)))) as server:
        client = client_for(server.url)
        assert client.decrypt(name=key.name, ciphertext=ciphertext).plaintext == b"kept"
        assert client.get_import_job(name=job.name).state == JobState.ACTIVE
        assert fetch_json(server.url + "/_emulator/clock")["offset_seconds"] == 86400
        client.transport.close()


def test_runs_standalone_and_prints_its_url(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.gcp.emulator", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = client_for(url)
        ring = client.create_key_ring(request={"parent": LOCATION, "key_ring_id": "standalone", "key_ring": {}})
        assert base64.b64encode(ring.name.encode())
        client.transport.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert (tmp_path / "gcp-main.sqlite").exists()


def test_crypto_request_bodies_are_typed(gcp: Emulated, active: kms.ImportJob) -> None:
    """encrypt, decrypt, rawEncrypt, rawDecrypt, macSign, macVerify, asymmetricSign and
    asymmetricDecrypt read typed bodies: a member of the wrong JSON type, or bytes that are not
    base64, is INVALID_ARGUMENT naming the member, never a falsy value taken for empty bytes or a
    server error; a digest of the wrong length is INVALID_ARGUMENT; no answer quotes what was sent."""
    secret = base64.b64encode(b"plaintext-never-echoed").decode()

    def post(name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{gcp.server.url}/v1/{name}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    key = gcp.key("enc")
    gcp.import_(key, active, aes(), WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    gcp.client.update_crypto_key_primary_version(name=key.name, crypto_key_version_id="1")
    mac = gcp.import_(
        gcp.key("mac", algorithm=Alg.HMAC_SHA256, purpose=Purpose.MAC),
        active,
        aes(),
        WrapMethod.RSA_AES_KEY_WRAP_SHA_256,
        Alg.HMAC_SHA256,
    ).name
    private = ec.generate_private_key(ec.SECP256R1())
    signing = gcp.import_(
        gcp.key("sign", algorithm=Alg.EC_SIGN_P256_SHA256, purpose=Purpose.ASYMMETRIC_SIGN),
        active,
        SecretBytes(
            private.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        ),
        WrapMethod.RSA_AES_KEY_WRAP_SHA_256,
        Alg.EC_SIGN_P256_SHA256,
    ).name
    for name, body, member in (
        (f"{key.name}:encrypt", {"plaintext": 0}, "plaintext"),
        (f"{key.name}:encrypt", {"plaintext": secret + "*"}, "plaintext"),
        (f"{key.name}:decrypt", {"ciphertext": secret, "additionalAuthenticatedData": ["ctx"]}, "additionalAuthenticatedData"),
        (f"{key.name}/cryptoKeyVersions/1:rawEncrypt", {"plaintext": secret, "initialization_vector": 0}, "initialization_vector"),
        (f"{key.name}/cryptoKeyVersions/1:rawDecrypt", {"ciphertext": secret, "tagLength": "sixteen"}, "tagLength"),
        (f"{mac}:macSign", {"data": False}, "data"),
        (f"{mac}:macVerify", {"data": secret, "mac": 0}, "mac"),
        (f"{signing}:asymmetricSign", {"digest": {"sha256": 256}}, "digest.sha256"),
        (f"{signing}:asymmetricSign", {"digest": secret}, "digest"),
        (f"{signing}:asymmetricDecrypt", {"ciphertext": {"bytes": secret}}, "ciphertext"),
    ):
        status, answer = post(name, body)
        assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT"), (name, body)
        assert answer["error"]["message"].startswith(f"Invalid value at '{member}'"), (name, answer)
        assert secret not in answer["error"]["message"]
    short = base64.b64encode(b"not a sha-256 digest").decode()
    status, answer = post(f"{signing}:asymmetricSign", {"digest": {"sha256": short}})
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT") and "32 bytes" in answer["error"]["message"]
    status, answer = post(f"{key.name}:encrypt", {"plaintext": secret.rstrip("=").replace("+", "-")})
    assert status == 200 and answer["name"].endswith("/cryptoKeyVersions/1")  # URL-safe, unpadded base64 is bytes too
