"""The AWS KMS emulator driven by the unmodified boto3 client over HTTP: the BYOK rules of
AWS KMS (BYOK.md §2), its error bodies as boto3 sees them, pagination, the clock, faults and
persistence across restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, wrap
from providers.aws import KmsEmulator
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json

REGION = "eu-west-1"


class Cloud:
    """One running emulator and a boto3 KMS client pointed at it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = DocumentStore(path)
        self.server = EmulatorServer(KmsEmulator(self.store, Clock()), cert_dir=path.parent).start()
        self.kms = client(self.server.url, REGION)

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return fetch_json(self.server.url + path, method="POST" if payload is not None else "GET", payload=payload)

    def advance(self, seconds: float) -> None:
        self.control("/_emulator/clock", {"advance_seconds": seconds})

    def fingerprints(self) -> dict[str, str]:
        return {
            m["version"]: m["fingerprint"] for m in self.control("/_emulator/materials")["materials"] if m["imported"]
        }

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


def client(url: str, region: str) -> Any:
    return boto3.client(
        "kms",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    running = Cloud(tmp_path / "aws.sqlite")
    yield running
    running.stop()


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def external_key(cloud: Cloud, spec: str = "SYMMETRIC_DEFAULT", usage: str | None = None) -> dict[str, Any]:
    kwargs = {"KeyUsage": usage} if usage else {}
    return cloud.kms.create_key(Origin="EXTERNAL", KeySpec=spec, **kwargs)["KeyMetadata"]


def import_material(
    cloud: Cloud,
    key_id: str,
    material: SecretBytes,
    method: WrapMethod = WrapMethod.RSAES_OAEP_SHA_256,
    spec: str = "RSA_2048",
    **kwargs: Any,
) -> dict[str, Any]:
    params = cloud.kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=method.value, WrappingKeySpec=spec)
    blob = wrap(method, params["PublicKey"], material)
    kwargs.setdefault("ExpirationModel", "KEY_MATERIAL_DOES_NOT_EXPIRE")
    return cloud.kms.import_key_material(
        KeyId=key_id, ImportToken=params["ImportToken"], EncryptedKeyMaterial=blob, **kwargs
    )


def aes_material() -> SecretBytes:
    return SecretBytes(os.urandom(32))


def pkcs8(private_key: Any) -> SecretBytes:
    return SecretBytes(
        private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


# -- the import workflow ---------------------------------------------------------------------------


def test_external_key_starts_pending_import_with_a_regional_arn(cloud: Cloud) -> None:
    metadata = external_key(cloud)
    assert metadata["KeyState"] == "PendingImport" and metadata["Enabled"] is False
    assert metadata["Origin"] == "EXTERNAL"
    assert metadata["Arn"] == f"arn:aws:kms:{REGION}:111122223333:key/{metadata['KeyId']}"
    assert "ExpirationModel" not in metadata and "CurrentKeyMaterialId" not in metadata
    with pytest.raises(ClientError) as caught:
        cloud.kms.encrypt(KeyId=metadata["KeyId"], Plaintext=b"x")
    assert error_of(caught)[:2] == ("KMSInvalidStateException", f"{metadata['Arn']} is pending import.")
    with pytest.raises(ClientError) as caught:
        cloud.kms.disable_key(KeyId=metadata["KeyId"])
    assert error_of(caught) == ("KMSInvalidStateException", f"{metadata['Arn']} is pending import.", 400)


def test_symmetric_import_unwraps_the_material_and_encrypts_with_it(cloud: Cloud) -> None:
    key = external_key(cloud)
    material = aes_material()
    valid_to = datetime.now(UTC) + timedelta(days=30)
    result = import_material(cloud, key["KeyId"], material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    assert result["KeyId"] == key["Arn"]
    material_id = result["KeyMaterialId"]
    assert len(material_id) == 64 and int(material_id, 16) >= 0
    assert cloud.fingerprints()[material_id] == fingerprint_material(MaterialKind.SYMMETRIC, material)
    metadata = cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert metadata["KeyState"] == "Enabled" and metadata["Enabled"] is True
    assert metadata["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs((metadata["ValidTo"] - valid_to).total_seconds()) < 1
    assert metadata["CurrentKeyMaterialId"] == material_id
    blob = cloud.kms.encrypt(KeyId=key["Arn"], Plaintext=b"payload", EncryptionContext={"a": "b"})["CiphertextBlob"]
    decrypted = cloud.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert decrypted["Plaintext"] == b"payload" and decrypted["KeyId"] == key["Arn"]
    with pytest.raises(ClientError) as caught:
        cloud.kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "c"})
    assert error_of(caught)[0] == "InvalidCiphertextException"


def test_expiration_model_defaults_to_expires_and_valid_to_is_bounded(cloud: Cloud) -> None:
    key = external_key(cloud)
    params = cloud.kms.get_parameters_for_import(
        KeyId=key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_1", WrappingKeySpec="RSA_2048"
    )
    blob = wrap(WrapMethod.RSAES_OAEP_SHA_1, params["PublicKey"], aes_material())
    base = {"KeyId": key["KeyId"], "ImportToken": params["ImportToken"], "EncryptedKeyMaterial": blob}
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(**base)
    assert error_of(caught)[:2] == (
        "ValidationException",
        "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
    )
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(**base, ValidTo=datetime.now(UTC) + timedelta(days=366))
    assert error_of(caught)[0] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(**base, ValidTo=datetime.now(UTC) - timedelta(minutes=1))
    assert error_of(caught)[0] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(
            **base, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE", ValidTo=datetime.now(UTC) + timedelta(days=1)
        )
    assert error_of(caught)[0] == "ValidationException"
    assert cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"


def test_wrapping_algorithms_follow_the_key_material_type(cloud: Cloud) -> None:
    symmetric, rsa_key = external_key(cloud), external_key(cloud, "RSA_2048", "SIGN_VERIFY")
    with pytest.raises(ClientError) as caught:
        cloud.kms.get_parameters_for_import(
            KeyId=symmetric["KeyId"], WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec="RSA_2048"
        )
    assert error_of(caught)[0] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        cloud.kms.get_parameters_for_import(
            KeyId=rsa_key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
        )
    assert error_of(caught)[0] == "ValidationException"
    for spec, bits in (("RSA_2048", 2048), ("RSA_3072", 3072), ("RSA_4096", 4096)):
        params = cloud.kms.get_parameters_for_import(
            KeyId=symmetric["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec=spec
        )
        public_key = serialization.load_der_public_key(params["PublicKey"])
        assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == bits
        lifetime = params["ParametersValidTo"] - datetime.now(UTC)
        assert timedelta(hours=23) < lifetime <= timedelta(hours=24)


def test_import_parameters_are_refused_for_kms_generated_keys(cloud: Cloud) -> None:
    metadata = cloud.kms.create_key()["KeyMetadata"]
    assert metadata["Origin"] == "AWS_KMS" and metadata["KeyState"] == "Enabled"
    with pytest.raises(ClientError) as caught:
        cloud.kms.get_parameters_for_import(
            KeyId=metadata["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
        )
    assert error_of(caught)[:2] == (
        "UnsupportedOperationException",
        f"{metadata['Arn']} origin is AWS_KMS which is not valid for this operation.",
    )
    blob = cloud.kms.encrypt(KeyId=metadata["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    assert cloud.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


def test_tokens_are_bound_to_their_key_wrapping_key_and_lifetime(cloud: Cloud) -> None:
    key, other = external_key(cloud), external_key(cloud)
    params = cloud.kms.get_parameters_for_import(
        KeyId=key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    material = aes_material()
    blob = wrap(WrapMethod.RSAES_OAEP_SHA_256, params["PublicKey"], material)
    never = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(
            KeyId=other["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=blob, **never
        )
    assert error_of(caught)[0] == "InvalidImportTokenException"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    foreign = wrap(
        WrapMethod.RSAES_OAEP_SHA_256,
        stranger.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        material,
    )
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(
            KeyId=key["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=foreign, **never
        )
    assert error_of(caught)[0] == "InvalidCiphertextException"
    cloud.advance(24 * 3600 + 60)
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(
            KeyId=key["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=blob, **never
        )
    assert error_of(caught)[0] == "ExpiredImportTokenException"
    assert cloud.fingerprints() == {}


def test_a_token_a_day_past_its_expiry_is_forgotten_by_the_next_sweep(cloud: Cloud) -> None:
    key = external_key(cloud)
    params = cloud.kms.get_parameters_for_import(
        KeyId=key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    blob = wrap(WrapMethod.RSAES_OAEP_SHA_256, params["PublicKey"], aes_material())
    never = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    fresh = external_key(cloud)
    for _ in range(3):  # imports within the hour sweep once, and the token is not a day past expiry yet
        cloud.kms.get_parameters_for_import(
            KeyId=fresh["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
        )
    cloud.advance(2 * 24 * 3600 + 60)
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(KeyId=key["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=blob, **never)
    assert error_of(caught)[0] == "ExpiredImportTokenException"  # still known: no sweep since
    cloud.kms.get_parameters_for_import(
        KeyId=fresh["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    with pytest.raises(ClientError) as caught:
        cloud.kms.import_key_material(KeyId=key["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=blob, **never)
    assert error_of(caught)[0] == "InvalidImportTokenException"


def test_material_must_fit_the_key_spec(cloud: Cloud) -> None:
    symmetric = external_key(cloud)
    with pytest.raises(ClientError) as caught:
        import_material(cloud, symmetric["KeyId"], SecretBytes(os.urandom(16)))
    assert error_of(caught)[0] == "IncorrectKeyMaterialException"
    hmac_key = external_key(cloud, "HMAC_384", "GENERATE_VERIFY_MAC")
    with pytest.raises(ClientError) as caught:
        import_material(cloud, hmac_key["KeyId"], SecretBytes(os.urandom(32)))
    assert error_of(caught)[0] == "IncorrectKeyMaterialException"
    p256 = external_key(cloud, "ECC_NIST_P256", "SIGN_VERIFY")
    with pytest.raises(ClientError) as caught:
        import_material(cloud, p256["KeyId"], pkcs8(ec.generate_private_key(ec.SECP384R1())))
    assert error_of(caught)[0] == "IncorrectKeyMaterialException"


def test_reimport_needs_the_same_bytes_after_deletion_of_material(cloud: Cloud) -> None:
    key = external_key(cloud)
    material = aes_material()
    material_id = import_material(cloud, key["KeyId"], material)["KeyMaterialId"]
    blob = cloud.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"kept")["CiphertextBlob"]
    deleted = cloud.kms.delete_imported_key_material(KeyId=key["KeyId"])
    assert deleted["KeyMaterialId"] == material_id
    metadata = cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert metadata["KeyState"] == "PendingImport" and metadata["Enabled"] is False
    assert "ExpirationModel" not in metadata and metadata["CurrentKeyMaterialId"] == material_id
    with pytest.raises(ClientError) as caught:
        import_material(cloud, key["KeyId"], aes_material())
    assert error_of(caught)[0] == "IncorrectKeyMaterialException"
    again = import_material(
        cloud, key["KeyId"], material, ImportType="EXISTING_KEY_MATERIAL", KeyMaterialId=material_id
    )
    assert again["KeyMaterialId"] == material_id
    assert cloud.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    assert cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_material_expires_when_the_clock_passes_valid_to(cloud: Cloud) -> None:
    key = external_key(cloud)
    material = aes_material()
    import_material(
        cloud,
        key["KeyId"],
        material,
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=datetime.now(UTC) + timedelta(days=2),
    )
    cloud.advance(3 * 86400)
    metadata = cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert metadata["KeyState"] == "PendingImport" and "ValidTo" not in metadata
    with pytest.raises(ClientError) as caught:
        cloud.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    assert error_of(caught)[0] == "KMSInvalidStateException"
    assert cloud.fingerprints() == {}
    import_material(cloud, key["KeyId"], material)
    assert (
        cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    )


def test_on_demand_rotation_of_imported_symmetric_material(cloud: Cloud) -> None:
    key = external_key(cloud)
    first = import_material(cloud, key["KeyId"], aes_material())["KeyMaterialId"]
    old_blob = cloud.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"old")["CiphertextBlob"]
    second = import_material(cloud, key["KeyId"], aes_material(), ImportType="NEW_KEY_MATERIAL")["KeyMaterialId"]
    assert cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"] == first
    with pytest.raises(ClientError) as caught:
        import_material(cloud, key["KeyId"], aes_material(), ImportType="NEW_KEY_MATERIAL")
    code, message, _ = error_of(caught)
    assert code == "KMSInvalidStateException" and f"(id: {second}) is pending rotation" in message
    rotations = cloud.kms.list_key_rotations(KeyId=key["KeyId"], IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    assert [(r["KeyMaterialId"], r["KeyMaterialState"], r["ImportState"]) for r in rotations] == [
        (first, "CURRENT", "IMPORTED"),
        (second, "PENDING_ROTATION", "IMPORTED"),
    ]
    assert cloud.kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"] == []
    cloud.kms.rotate_key_on_demand(KeyId=key["KeyId"])
    assert cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"] == second
    only = cloud.kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"]
    assert [(r["KeyMaterialId"], r["RotationType"]) for r in only] == [(second, "ON_DEMAND")]
    assert cloud.kms.decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"old"
    new_blob = cloud.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"new")["CiphertextBlob"]
    assert cloud.kms.decrypt(CiphertextBlob=new_blob)["KeyMaterialId"] == second
    with pytest.raises(ClientError) as caught:
        cloud.kms.rotate_key_on_demand(KeyId=key["KeyId"])
    assert error_of(caught)[:2] == (
        "KMSInvalidStateException",
        f"No available key material pending rotation for the key: {key['Arn']}.",
    )


def test_hmac_keys_mac_with_the_imported_material_and_do_not_rotate(cloud: Cloud) -> None:
    key = external_key(cloud, "HMAC_256", "GENERATE_VERIFY_MAC")
    material = SecretBytes(os.urandom(32))
    import_material(cloud, key["KeyId"], material)
    mac = cloud.kms.generate_mac(KeyId=key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.new(material.reveal(), b"m", hashlib.sha256).digest()
    assert cloud.kms.verify_mac(KeyId=key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac)["MacValid"]
    with pytest.raises(ClientError) as caught:
        cloud.kms.verify_mac(KeyId=key["KeyId"], Message=b"n", MacAlgorithm="HMAC_SHA_256", Mac=mac)
    assert error_of(caught)[0] == "KMSInvalidMacException"
    with pytest.raises(ClientError) as caught:
        cloud.kms.rotate_key_on_demand(KeyId=key["KeyId"])
    assert error_of(caught)[0] == "UnsupportedOperationException"
    assert "CurrentKeyMaterialId" not in cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]


@pytest.mark.parametrize(
    ("spec", "algorithm", "make"),
    [
        ("ECC_NIST_P384", "ECDSA_SHA_384", lambda: ec.generate_private_key(ec.SECP384R1())),
        ("RSA_2048", "RSASSA_PSS_SHA_256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
)
def test_asymmetric_keys_sign_with_the_imported_private_key(cloud: Cloud, spec: str, algorithm: str, make: Any) -> None:
    private_key = make()
    key = external_key(cloud, spec, "SIGN_VERIFY")
    import_material(cloud, key["KeyId"], pkcs8(private_key), WrapMethod.RSA_AES_KEY_WRAP_SHA_256, "RSA_3072")
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert cloud.kms.get_public_key(KeyId=key["KeyId"])["PublicKey"] == spki
    signature = cloud.kms.sign(KeyId=key["KeyId"], Message=b"doc", SigningAlgorithm=algorithm)["Signature"]
    if spec.startswith("ECC"):
        private_key.public_key().verify(signature, b"doc", ec.ECDSA(hashes.SHA384()))
    else:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        private_key.public_key().verify(signature, b"doc", pss, hashes.SHA256())
    # Verify inside KMS: its own signature, one made outside with the same private key, digests too
    chosen = hashes.SHA384() if spec.startswith("ECC") else hashes.SHA256()
    outside = (
        private_key.sign(b"other", ec.ECDSA(chosen))
        if spec.startswith("ECC")
        else private_key.sign(b"other", padding.PSS(mgf=padding.MGF1(chosen), salt_length=chosen.digest_size), chosen)
    )
    for message, message_type, signed in (
        (b"doc", "RAW", signature),
        (b"other", "RAW", outside),
        (hashes_of(chosen, b"other"), "DIGEST", outside),
    ):
        answer = cloud.kms.verify(
            KeyId=key["KeyId"], Message=message, MessageType=message_type, Signature=signed, SigningAlgorithm=algorithm
        )
        assert answer["SignatureValid"] is True
    with pytest.raises(ClientError) as caught:
        cloud.kms.verify(KeyId=key["KeyId"], Message=b"tampered", Signature=outside, SigningAlgorithm=algorithm)
    assert error_of(caught)[0] == "KMSInvalidSignatureException"
    with pytest.raises(ClientError) as caught:  # a digest of the wrong length
        cloud.kms.verify(KeyId=key["KeyId"], Message=b"short", MessageType="DIGEST", Signature=outside, SigningAlgorithm=algorithm)
    assert error_of(caught)[0] == "ValidationException"


def hashes_of(algorithm: hashes.HashAlgorithm, message: bytes) -> bytes:
    hasher = hashes.Hash(algorithm)
    hasher.update(message)
    return hasher.finalize()


# -- state, deletion ---------------------------------------------------------------------------------


def test_schedule_and_cancel_deletion_and_final_deletion(cloud: Cloud) -> None:
    key = external_key(cloud)
    import_material(cloud, key["KeyId"], aes_material())
    cloud.kms.create_alias(AliasName="alias/doomed", TargetKeyId=key["KeyId"])
    with pytest.raises(ClientError) as caught:
        cloud.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=6)
    assert error_of(caught)[0] == "ValidationException"
    scheduled = cloud.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    assert timedelta(days=6, hours=23) < scheduled["DeletionDate"] - datetime.now(UTC) <= timedelta(days=7)
    with pytest.raises(ClientError) as caught:
        cloud.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert error_of(caught)[0] == "KMSInvalidStateException" and "pending deletion" in error_of(caught)[1]
    cloud.kms.cancel_key_deletion(KeyId=key["KeyId"])
    metadata = cloud.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert metadata["KeyState"] == "Disabled" and "DeletionDate" not in metadata
    cloud.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    cloud.advance(7 * 86400 + 1)
    with pytest.raises(ClientError) as caught:
        cloud.kms.describe_key(KeyId=key["KeyId"])
    assert error_of(caught) == ("NotFoundException", f"Key '{key['Arn']}' does not exist", 400)
    assert key["KeyId"] not in {k["KeyId"] for k in cloud.kms.list_keys()["Keys"]}
    assert cloud.kms.list_aliases()["Aliases"] == []


def test_unknown_and_malformed_key_ids_are_not_found(cloud: Cloud) -> None:
    with pytest.raises(ClientError) as caught:
        cloud.kms.describe_key(KeyId="not-a-key")
    assert error_of(caught)[:2] == ("NotFoundException", "Invalid keyId 'not-a-key'")
    with pytest.raises(ClientError) as caught:
        cloud.kms.describe_key(KeyId="0f0f0f0f-0000-4000-8000-000000000000")
    assert error_of(caught)[0] == "NotFoundException"


def test_keys_belong_to_the_region_the_client_signs_for(cloud: Cloud) -> None:
    key = external_key(cloud)
    elsewhere = client(cloud.server.url, "us-west-2")
    assert elsewhere.list_keys()["Keys"] == []
    with pytest.raises(ClientError) as caught:
        elsewhere.describe_key(KeyId=key["KeyId"])
    assert error_of(caught)[0] == "NotFoundException"


# -- tags, aliases, pagination -------------------------------------------------------------------------


def test_tag_rules(cloud: Cloud) -> None:
    key = external_key(cloud)
    for tags, code in (
        ([{"TagKey": "aws:owner", "TagValue": "x"}], "TagException"),
        ([{"TagKey": "AWS:owner", "TagValue": "x"}], "TagException"),
        ([{"TagKey": "a", "TagValue": "1"}, {"TagKey": "a", "TagValue": "2"}], "TagException"),
        ([{"TagKey": "k" * 129, "TagValue": "x"}], "ValidationException"),
        ([{"TagKey": "k", "TagValue": "v" * 257}], "ValidationException"),
        ([{"TagKey": f"t{i}", "TagValue": ""} for i in range(51)], "TagException"),
    ):
        with pytest.raises(ClientError) as caught:
            cloud.kms.tag_resource(KeyId=key["KeyId"], Tags=tags)
        assert error_of(caught)[0] == code, tags[0]["TagKey"]
    cloud.kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": f"t{i}", "TagValue": str(i)} for i in range(5)])
    cloud.kms.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "t0", "TagValue": "changed"}])
    cloud.kms.untag_resource(KeyId=key["KeyId"], TagKeys=["t4"])
    pages = list(
        cloud.kms.get_paginator("list_resource_tags").paginate(KeyId=key["KeyId"], PaginationConfig={"PageSize": 2})
    )
    assert len(pages) == 2 and pages[0]["Truncated"] is True
    tags = {t["TagKey"]: t["TagValue"] for page in pages for t in page["Tags"]}
    assert tags == {"t0": "changed", "t1": "1", "t2": "2", "t3": "3"}


def test_alias_rules(cloud: Cloud) -> None:
    key, other = external_key(cloud), external_key(cloud)
    with pytest.raises(ClientError) as caught:
        cloud.kms.create_alias(AliasName="payments", TargetKeyId=key["KeyId"])
    assert error_of(caught)[0] == "ValidationException"
    cloud.kms.create_alias(AliasName="alias/payments", TargetKeyId=key["KeyId"])
    with pytest.raises(ClientError) as caught:
        cloud.kms.create_alias(AliasName="alias/payments", TargetKeyId=other["KeyId"])
    assert error_of(caught)[0] == "AlreadyExistsException"
    assert cloud.kms.describe_key(KeyId="alias/payments")["KeyMetadata"]["KeyId"] == key["KeyId"]
    cloud.kms.update_alias(AliasName="alias/payments", TargetKeyId=other["KeyId"])
    listed = cloud.kms.list_aliases(KeyId=other["KeyId"])["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in listed] == [("alias/payments", other["KeyId"])]
    assert listed[0]["AliasArn"] == f"arn:aws:kms:{REGION}:111122223333:alias/payments"
    assert cloud.kms.list_aliases(KeyId=key["KeyId"])["Aliases"] == []
    cloud.kms.delete_alias(AliasName="alias/payments")
    with pytest.raises(ClientError) as caught:
        cloud.kms.delete_alias(AliasName="alias/payments")
    assert error_of(caught)[0] == "NotFoundException"


def test_list_keys_pages_with_markers(cloud: Cloud) -> None:
    created = [external_key(cloud)["KeyId"] for _ in range(5)]
    pages = list(cloud.kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["Keys"]) for p in pages] == [2, 2, 1]
    assert [p["Truncated"] for p in pages] == [True, True, False]
    assert [k["KeyId"] for p in pages for k in p["Keys"]] == created
    with pytest.raises(ClientError) as caught:
        cloud.kms.list_keys(Marker="bm90LWEtbWFya2Vy")
    assert error_of(caught)[0] == "InvalidMarkerException"


# -- faults, persistence, standalone ---------------------------------------------------------------------


def test_injected_faults_use_kms_error_bodies(cloud: Cloud) -> None:
    cloud.control("/_emulator/faults", {"errors": [{"operation": "ListKeys", "status": 429, "count": 1}]})
    with pytest.raises(ClientError) as caught:
        cloud.kms.list_keys()
    assert error_of(caught)[0::2] == ("ThrottlingException", 400)
    cloud.control("/_emulator/faults", {"errors": [{"operation": "ListKeys", "status": 503, "count": 1}]})
    with pytest.raises(ClientError) as caught:
        cloud.kms.list_keys()
    assert error_of(caught)[0::2] == ("KMSInternalException", 500)
    assert cloud.kms.list_keys()["Keys"] == []
    assert cloud.control("/_emulator/stats")["calls"]["ListKeys"] == 3


@pytest.mark.parametrize(
    "configuration",
    [
        {"profile": "realistic", "quota_scale": 0},  # divided by zero at the first throttled call
        {"profile": "realistic", "quota_scale": -1},  # throttled every call, forever
        {"profile": "realistic", "quota_scale": "fast"},
        {"latency_ms": -5},
        {"latency_ms": 1e9},
        {"listing_lag": float("nan")},
        {"errors": 5},
        {"errors": [{"operation": "ListKeys", "status": "busy"}]},
        {"profile": "sometimes"},
    ],
)
def test_a_configuration_out_of_range_is_refused_and_changes_nothing(cloud: Cloud, configuration: dict[str, Any]) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        cloud.control("/_emulator/faults", configuration)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]
    cloud.kms.create_key(Origin="EXTERNAL")
    assert len(cloud.kms.list_keys()["Keys"]) == 1, "the emulator still serves, unthrottled"
    assert cloud.control("/_emulator/stats")["quotas"] == {}


def test_a_fault_after_the_work_loses_the_answer_but_keeps_the_key(cloud: Cloud) -> None:
    cloud.control("/_emulator/faults", {"errors": [{"operation": "CreateKey", "status": 503, "after": True}]})
    with pytest.raises(ClientError) as caught:
        cloud.kms.create_key(Origin="EXTERNAL")
    assert error_of(caught)[0::2] == ("KMSInternalException", 500)
    assert len(cloud.kms.list_keys()["Keys"]) == 1, "the key was created although the answer was an error"


def test_faults_with_a_rate_fail_that_share_of_calls(cloud: Cloud) -> None:
    cloud.control(
        "/_emulator/faults", {"seed": 4, "errors": [{"operation": "ListKeys", "status": 429, "rate": 0.3}]}
    )
    throttled = 0
    for _ in range(200):
        try:
            cloud.kms.list_keys()
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ThrottlingException"
            throttled += 1
    assert 30 <= throttled <= 90  # 30 % of 200, give or take what a seeded draw gives
    cloud.control("/_emulator/faults", {"errors": [{"operation": "ListKeys", "status": 429, "rate": 1.0, "count": 2}]})
    for _ in range(2):
        with pytest.raises(ClientError):
            cloud.kms.list_keys()
    assert cloud.kms.list_keys()["Keys"] == []  # the count bounds the rate


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = Cloud(tmp_path / "aws.sqlite")
    key = external_key(first)
    material = aes_material()
    import_material(first, key["KeyId"], material)
    blob = first.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"durable")["CiphertextBlob"]
    first.stop()
    second = Cloud(tmp_path / "aws.sqlite")
    try:
        assert second.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
        assert second.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"durable"
        assert fingerprint_material(MaterialKind.SYMMETRIC, material) in second.fingerprints().values()
    finally:
        second.stop()


def test_standalone_emulator_prints_its_url_and_serves(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.aws.emulator", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        kms = client(url, REGION)
        key_id = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [key_id]
        assert (tmp_path / "aws-main.sqlite").exists()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_material_is_reported_as_fingerprints_only(cloud: Cloud) -> None:
    key = external_key(cloud)
    material = aes_material()
    import_material(cloud, key["KeyId"], material)
    listing = cloud.control("/_emulator/materials")
    text = str(listing)
    assert material.reveal().hex() not in text and base64.b64encode(material.reveal()).decode() not in text
    assert listing["materials"][0]["key"] == key["Arn"]


def test_request_members_are_typed_as_kms_types_them(cloud: Cloud) -> None:
    """Each operation's body is validated before it runs: a missing required member is a
    ValidationException naming it in camelCase, a member of the wrong JSON type a
    SerializationException, and neither echoes the value sent (boto3's own checks are off, so
    the emulator sees what a careless client would send)."""
    loose = boto3.client(
        "kms",
        endpoint_url=cloud.server.url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=False),
    )
    with pytest.raises(ClientError) as caught:
        loose.describe_key()
    code, message, status = error_of(caught)
    assert (code, status) == ("ValidationException", 400)
    assert "Value null at 'keyId'" in message and "Member must not be null" in message

    key_id = cloud.kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError) as caught:
        loose.schedule_key_deletion(KeyId=key_id, PendingWindowInDays="seven-secret-days")
    code, message, _ = error_of(caught)
    assert code == "SerializationException" and "pendingWindowInDays" in message
    assert "seven-secret-days" not in message
    with pytest.raises(ClientError) as caught:
        loose.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env"}])
    code, message, _ = error_of(caught)
    assert code == "ValidationException" and "'tags.member.tagValue'" in message
    assert cloud.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"  # nothing changed
    assert cloud.kms.list_resource_tags(KeyId=key_id)["Tags"] == []


def kms_post(cloud: Cloud, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A KMS call as raw JSON over HTTP, for bodies no SDK would send."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        cloud.server.url + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"TrentService.{operation}",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/kms/aws4_request, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


SECRET_TEXT = base64.b64encode(b"wrapped-key-material-never-echoed").decode()


def test_import_request_members_are_typed_as_kms_types_them(cloud: Cloud) -> None:
    """GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial and ListKeyRotations
    read typed bodies: every missing member is named in one ValidationException, a member of the
    wrong JSON type (or a blob that is not base64) is a SerializationException, an enum member
    outside its value set names the set; no answer quotes what was sent, and the key is untouched."""
    key_id = external_key(cloud)["KeyId"]
    status, answer = kms_post(cloud, "GetParametersForImport", {"WrappingAlgorithm": "RSAES_OAEP_SHA_256"})
    assert (status, answer["__type"]) == (400, "ValidationException")
    assert answer["message"] == (
        "2 validation errors detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null; "
        "Value null at 'wrappingKeySpec' failed to satisfy constraint: Member must not be null"
    )
    status, answer = kms_post(
        cloud, "GetParametersForImport", {"KeyId": key_id, "WrappingAlgorithm": SECRET_TEXT, "WrappingKeySpec": "RSA_2048"}
    )
    assert answer["__type"] == "ValidationException" and "'wrappingAlgorithm'" in answer["message"]
    assert "enum value set: [RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1," in answer["message"]
    assert SECRET_TEXT not in answer["message"]

    params = cloud.kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    token = base64.b64encode(params["ImportToken"]).decode()
    for wrong in (
        {"EncryptedKeyMaterial": 12345},
        {"EncryptedKeyMaterial": SECRET_TEXT + "!"},  # not base64
        {"EncryptedKeyMaterial": SECRET_TEXT, "ValidTo": "tomorrow"},
        {"EncryptedKeyMaterial": SECRET_TEXT, "ExpirationModel": ["KEY_MATERIAL_EXPIRES"]},
    ):
        status, answer = kms_post(cloud, "ImportKeyMaterial", {"KeyId": key_id, "ImportToken": token, **wrong})
        assert (status, answer["__type"]) == (400, "SerializationException"), wrong
        assert SECRET_TEXT not in answer["message"] and "tomorrow" not in answer["message"]
    status, answer = kms_post(cloud, "ImportKeyMaterial", {"KeyId": key_id, "EncryptedKeyMaterial": ""})
    assert answer["message"] == (
        "2 validation errors detected: Value null at 'importToken' failed to satisfy constraint: Member must not be "
        "null; Value at 'encryptedKeyMaterial' failed to satisfy constraint: Member must have length greater than "
        "or equal to 1"
    )
    status, answer = kms_post(cloud, "DeleteImportedKeyMaterial", {"KeyId": key_id, "KeyMaterialId": 7})
    assert answer["__type"] == "SerializationException" and "'keyMaterialId'" in answer["message"]
    status, answer = kms_post(cloud, "ListKeyRotations", {"KeyId": key_id, "IncludeKeyMaterial": SECRET_TEXT})
    assert answer["__type"] == "ValidationException"
    assert "'includeKeyMaterial'" in answer["message"] and SECRET_TEXT not in answer["message"]
    assert cloud.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"

    import_material(cloud, key_id, aes_material())  # the same routes still serve a well-formed body
    assert cloud.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_crypto_request_members_are_typed_as_kms_types_them(cloud: Cloud) -> None:
    """Encrypt, Decrypt, GenerateMac, VerifyMac, Sign and Verify read typed bodies: no KeyError or
    server error for a missing or mistyped member, a digest of the wrong length or a message type
    KMS does not know, and no answer quotes the blob sent."""
    symmetric = cloud.kms.create_key()["KeyMetadata"]["KeyId"]
    signing = cloud.kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    status, answer = kms_post(cloud, "Encrypt", {"KeyId": symmetric, "Plaintext": ["not", "a", "blob"]})
    assert (status, answer["__type"]) == (400, "SerializationException") and "'plaintext'" in answer["message"]
    status, answer = kms_post(
        cloud, "Encrypt", {"KeyId": symmetric, "Plaintext": SECRET_TEXT, "EncryptionContext": {"purpose": 1}}
    )
    assert answer["__type"] == "SerializationException" and "'encryptionContext.purpose'" in answer["message"]
    assert SECRET_TEXT not in answer["message"]
    status, answer = kms_post(
        cloud, "Encrypt", {"KeyId": symmetric, "Plaintext": base64.b64encode(bytes(4097)).decode()}
    )
    assert answer["message"] == (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096"
    )
    status, answer = kms_post(cloud, "Decrypt", {"KeyId": symmetric})
    assert answer["message"] == (
        "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy constraint: Member must not be null"
    )
    status, answer = kms_post(cloud, "GenerateMac", {"KeyId": symmetric, "Message": SECRET_TEXT, "MacAlgorithm": 256})
    assert answer["__type"] == "SerializationException" and "'macAlgorithm'" in answer["message"]
    status, answer = kms_post(cloud, "VerifyMac", {"Message": SECRET_TEXT, "MacAlgorithm": "HMAC_SHA_256"})
    assert answer["message"].startswith("2 validation errors detected: Value null at 'keyId'")
    assert "Value null at 'mac'" in answer["message"]

    sign = {"KeyId": signing, "Message": SECRET_TEXT, "SigningAlgorithm": "ECDSA_SHA_256"}
    status, answer = kms_post(cloud, "Sign", {**sign, "MessageType": "RAWISH"})
    assert answer["__type"] == "ValidationException"
    assert "'messageType'" in answer["message"] and "[RAW, DIGEST, EXTERNAL_MU]" in answer["message"]
    assert "RAWISH" not in answer["message"]
    status, answer = kms_post(cloud, "Sign", {**sign, "MessageType": "DIGEST"})  # 33 bytes, not a SHA-256 digest
    assert (status, answer["__type"]) == (400, "ValidationException") and "32 bytes" in answer["message"]
    status, answer = kms_post(cloud, "Verify", {**sign, "Signature": 1234})
    assert answer["__type"] == "SerializationException" and "'signature'" in answer["message"]

    signed = cloud.kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    verified = cloud.kms.verify(KeyId=signing, Message=b"m", Signature=signed, SigningAlgorithm="ECDSA_SHA_256")
    assert verified["SignatureValid"] is True


@pytest.mark.parametrize("scale", [0, -1, "nan"])
def test_a_quota_scale_that_is_not_positive_is_refused_with_400(cloud: Cloud, scale: object) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as refused:
        cloud.control("/_emulator/faults", {"profile": "realistic", "quota_scale": scale})
    assert refused.value.code == 400
    assert "quota_scale must be a positive number" in json.loads(refused.value.read())["error"]
    assert cloud.kms.list_keys()["Keys"] == []  # still serving, under the profile it had
