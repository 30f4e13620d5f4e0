"""The Azure emulator driven by the unmodified azure-keyvault-keys client over HTTPS: the bearer
challenge, the BYOK rules of BYOK.md §3, error bodies and the SDK exceptions they become,
pagination, soft delete and purge, fault injection and persistence across restarts."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, wrap
from providers.azure.client import LocalTokenCredential
from providers.azure.emulator import AzureKeyVaultEmulator, ManagedHsmEmulator, emulator_class
from providers.azure.mapping import build_transfer_blob, jwk_member
from providers.emulation import Clock, DocumentStore, EmulatorServer
from providers.emulation.server import fetch_json

API = "api-version=7.5"


@dataclass
class Vault:
    server: EmulatorServer
    client: KeyClient
    store: DocumentStore

    @property
    def url(self) -> str:
        return self.server.url

    def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return fetch_json(self.url + path, "POST" if payload is not None else "GET", payload, ca=self.server.ca_cert)

    def materials(self) -> list[dict[str, Any]]:
        return list(self.control("/_emulator/materials")["materials"])

    def calls(self) -> dict[str, int]:
        return dict(self.control("/_emulator/stats")["calls"])

    def crypto(self, key: KeyVaultKey) -> CryptographyClient:
        return CryptographyClient(
            key.id,
            LocalTokenCredential(),
            verify_challenge_resource=False,
            connection_verify=str(self.server.ca_cert),
            retry_total=0,
        )

    def raw(
        self, method: str, path: str, body: dict[str, Any] | None = None, auth: bool = True
    ) -> tuple[int, Any, Any]:
        """A request outside the SDK (to send what the SDK never sends)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer local"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        context = ssl.create_default_context(cafile=str(self.server.ca_cert))
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}"), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}"), error.headers


def make_client(server: EmulatorServer) -> KeyClient:
    return KeyClient(
        vault_url=server.url,
        credential=LocalTokenCredential(),
        verify_challenge_resource=False,
        connection_verify=str(server.ca_cert),
        retry_total=0,
    )


def open_vault(tmp_path: Path, app_class: type[AzureKeyVaultEmulator], **options: Any) -> Iterator[Vault]:
    store = DocumentStore(tmp_path / "azure.sqlite")
    server = EmulatorServer(app_class(store, Clock(), **options), cert_dir=tmp_path).start()
    client = make_client(server)
    try:
        yield Vault(server, client, store)
    finally:
        client.close()
        server.stop()
        store.close()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    yield from open_vault(tmp_path, AzureKeyVaultEmulator)


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[Vault]:
    yield from open_vault(tmp_path, ManagedHsmEmulator)


def create_kek(vault: Vault, name: str = "kek", size: int = 2048, ops: list[str] | None = None) -> KeyVaultKey:
    return vault.client.create_rsa_key(
        name, size=size, hardware_protected=True, key_operations=ops if ops is not None else ["import"]
    )


def kek_spki(kek: KeyVaultKey) -> bytes:
    numbers = rsa.RSAPublicNumbers(
        int.from_bytes(jwk_member(kek.key, "e"), "big"), int.from_bytes(jwk_member(kek.key, "n"), "big")
    )
    return numbers.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pkcs8(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> SecretBytes:
    return SecretBytes(
        private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def byok(kek: KeyVaultKey, material: SecretBytes, kid: str | None = None) -> bytes:
    return build_transfer_blob(kid or kek.id, wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_1, kek_spki(kek), material))


def import_blob(vault: Vault, name: str, kty: str, blob: bytes, **kwargs: Any) -> KeyVaultKey:
    crv = kwargs.pop("crv", None)
    ops = kwargs.pop("key_ops", None)
    return vault.client.import_key(
        name, JsonWebKey(kty=kty, crv=crv, key_ops=ops, t=blob), hardware_protected=True, **kwargs
    )


def error_of(caught: pytest.ExceptionInfo[HttpResponseError]) -> tuple[str | None, str | None]:
    error = caught.value.error
    assert error is not None
    inner = error.innererror or {}
    return error.code, inner.get("code")


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app_class", "resource"),
    [(AzureKeyVaultEmulator, "https://vault.azure.net"), (ManagedHsmEmulator, "https://managedhsm.azure.net")],
)
def test_requests_without_a_token_get_the_bearer_challenge(
    tmp_path: Path, app_class: type[AzureKeyVaultEmulator], resource: str
) -> None:
    for vault in open_vault(tmp_path, app_class):
        status, body, headers = vault.raw("GET", f"/keys?{API}", auth=False)
        assert status == 401
        assert body["error"]["code"] == "Unauthorized"
        challenge = headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer authorization=")
        assert f'resource="{resource}"' in challenge
        # the SDK answers the challenge and the call then succeeds
        assert list(vault.client.list_properties_of_keys()) == []
        assert vault.calls()["Challenge"] >= 1


# -- key-exchange keys --------------------------------------------------------------------------


def test_a_kek_has_import_as_its_only_operation(vault: Vault) -> None:
    kek = create_kek(vault, size=3072)
    assert kek.key_type == "RSA-HSM"
    assert kek.key_operations == ["import"]
    assert len(jwk_member(kek.key, "n")) * 8 == 3072
    assert kek.id.startswith(f"{vault.url}/keys/kek/") and len(kek.properties.version or "") == 32
    with pytest.raises(HttpResponseError) as caught:
        create_kek(vault, "mixed", ops=["import", "encrypt"])
    assert caught.value.status_code == 400 and error_of(caught)[0] == "BadParameter"
    with pytest.raises(HttpResponseError):
        vault.client.create_rsa_key("tiny", size=1024, hardware_protected=True)


def test_key_names_are_checked_and_case_insensitive(vault: Vault) -> None:
    create_kek(vault, "Kek-One")
    assert vault.client.get_key("kek-one").name == "Kek-One"
    status, body, _ = vault.raw("POST", f"/keys/bad_name/create?{API}", {"kty": "RSA-HSM", "key_ops": ["import"]})
    assert status == 400 and body["error"]["code"] == "BadParameter"


# -- BYOK import --------------------------------------------------------------------------------


def test_rsa_import_unwraps_the_material_and_decrypts_with_it(vault: Vault) -> None:
    kek = create_kek(vault)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    material = pkcs8(private)
    key = import_blob(vault, "payments", "RSA-HSM", byok(kek, material), tags={"team": "payments"})
    assert key.key_type == "RSA-HSM"
    assert jwk_member(key.key, "n") == private.public_key().public_numbers().n.to_bytes(256, "big")
    assert key.properties.tags == {"team": "payments"}
    assert {
        "key": "payments",
        "version": key.properties.version,
        "fingerprint": fingerprint_material(MaterialKind.RSA, material),
    } in vault.materials()
    # the service decrypts with the imported private key
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ciphertext = private.public_key().encrypt(b"ledger", oaep)
    assert vault.crypto(key).decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext).plaintext == b"ledger"


def test_ec_import_checks_the_curve(vault: Vault) -> None:
    kek = create_kek(vault)
    private = ec.generate_private_key(ec.SECP384R1())
    key = import_blob(vault, "signer", "EC-HSM", byok(kek, pkcs8(private)), crv="P-384")
    assert jwk_member(key.key, "crv") == "P-384" and key.key_type == "EC-HSM"
    assert jwk_member(key.key, "x") == private.public_key().public_numbers().x.to_bytes(48, "big")
    with pytest.raises(HttpResponseError) as caught:
        import_blob(vault, "signer2", "EC-HSM", byok(kek, pkcs8(private)), crv="P-256")
    assert caught.value.status_code == 400 and error_of(caught)[0] == "BadParameter"
    with pytest.raises(HttpResponseError):
        import_blob(vault, "signer3", "EC-HSM", byok(kek, pkcs8(private)))  # no crv
    with pytest.raises(HttpResponseError):
        import_blob(vault, "signer4", "RSA-HSM", byok(kek, pkcs8(private)))  # not an RSA key


def test_importing_onto_an_existing_name_adds_a_version(vault: Vault) -> None:
    kek = create_kek(vault)
    first = import_blob(
        vault, "rotating", "EC-HSM", byok(kek, pkcs8(ec.generate_private_key(ec.SECP256R1()))), crv="P-256"
    )
    second = import_blob(
        vault, "rotating", "EC-HSM", byok(kek, pkcs8(ec.generate_private_key(ec.SECP256R1()))), crv="P-256"
    )
    assert first.properties.version != second.properties.version
    assert vault.client.get_key("rotating").properties.version == second.properties.version
    assert jwk_member(vault.client.get_key("rotating", first.properties.version).key, "x") == jwk_member(first.key, "x")
    versions = list(vault.client.list_properties_of_key_versions("rotating"))
    assert sorted(str(v.version) for v in versions) == sorted(
        [str(first.properties.version), str(second.properties.version)]
    )
    assert all(v.id.count("/") == 5 for v in versions), "version listings carry versioned ids"
    assert [p.name for p in vault.client.list_properties_of_keys()] == ["kek", "rotating"]
    assert all(p.version is None for p in vault.client.list_properties_of_keys()), "listings carry versionless ids"


def test_aes_import_is_refused_by_a_key_vault(vault: Vault) -> None:
    kek = create_kek(vault)
    with pytest.raises(HttpResponseError) as caught:
        import_blob(vault, "aes", "oct-HSM", byok(kek, SecretBytes(os.urandom(32))))
    assert caught.value.status_code == 400
    assert "Managed HSM" in str(caught.value.error.message if caught.value.error else "")
    assert vault.materials() == []


def test_aes_import_into_a_managed_hsm_encrypts_with_a256gcm(hsm: Vault) -> None:
    kek = create_kek(hsm)
    secret = os.urandom(32)
    key = import_blob(hsm, "aes", "oct-HSM", byok(kek, SecretBytes(secret)), key_ops=["encrypt", "decrypt"])
    assert key.key_type == "oct-HSM" and jwk_member(key.key, "k") is None, "symmetric material is never returned"
    assert key.properties.recovery_level == "CustomizedRecoverable+Purgeable"
    assert hsm.materials()[0]["fingerprint"] == fingerprint_material(MaterialKind.SYMMETRIC, SecretBytes(secret))
    result = hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"card data", additional_authenticated_data=b"ctx")
    # decrypting locally with the material proves the service encrypted with the imported key
    assert AESGCM(secret).decrypt(result.iv, result.ciphertext + result.tag, b"ctx") == b"card data"
    back = hsm.crypto(key).decrypt(
        EncryptionAlgorithm.a256_gcm,
        result.ciphertext,
        iv=result.iv,
        authentication_tag=result.tag,
        additional_authenticated_data=b"ctx",
    )
    assert back.plaintext == b"card data"


def test_aes_keys_wrap_and_unwrap_with_rfc_3394_and_only_as_key_ops_allow(hsm: Vault) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap, aes_key_wrap_with_padding

    kek = create_kek(hsm)
    secret = os.urandom(32)
    key = import_blob(hsm, "kw", "oct-HSM", byok(kek, SecretBytes(secret)), key_ops=["wrapKey", "unwrapKey"])
    payload = os.urandom(32)
    # CKM_AES_KEY_WRAP: the SDK would wrap A256KW locally (with a key of its own) once it read the key
    wrapped = hsm.crypto(key).wrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap, payload)
    assert wrapped.encrypted_key == aes_key_wrap(secret, payload)
    assert aes_key_unwrap(secret, wrapped.encrypted_key) == payload
    assert hsm.crypto(key).unwrap_key(KeyWrapAlgorithm.aes_256, wrapped.encrypted_key).key == payload
    ours = aes_key_wrap_with_padding(secret, b"odd length")
    assert hsm.crypto(key).unwrap_key(KeyWrapAlgorithm.ckm_aes_key_wrap_pad, ours).key == b"odd length"
    with pytest.raises(HttpResponseError) as caught:  # another key's wrap fails RFC 3394's integrity check
        hsm.crypto(key).unwrap_key(KeyWrapAlgorithm.aes_256, aes_key_wrap(os.urandom(32), payload))
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:  # the size in the algorithm must be the key's
        hsm.crypto(key).unwrap_key(KeyWrapAlgorithm.aes_128, wrapped.encrypted_key)
    assert caught.value.status_code == 400
    with pytest.raises(HttpResponseError) as caught:  # key_ops without encrypt
        hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x")
    assert caught.value.status_code == 403 and error_of(caught) == ("Forbidden", "KeyOperationForbidden")


def test_the_transfer_blob_may_be_base64_or_base64url(vault: Vault) -> None:
    kek = create_kek(vault)
    for name, encode in (("std", base64.b64encode), ("url", base64.urlsafe_b64encode)):
        material = pkcs8(ec.generate_private_key(ec.SECP256R1()))
        body = {"key": {"kty": "EC-HSM", "crv": "P-256", "key_hsm": encode(byok(kek, material)).decode()}, "Hsm": True}
        status, bundle, _ = vault.raw("PUT", f"/keys/{name}?{API}", body)
        assert status == 200, bundle
        assert bundle["key"]["kid"].startswith(f"{vault.url}/keys/{name}/")


def test_the_kek_must_be_an_import_only_key_of_this_vault(vault: Vault) -> None:
    material = pkcs8(ec.generate_private_key(ec.SECP256R1()))
    general = create_kek(vault, "general", ops=["encrypt", "decrypt", "wrapKey", "unwrapKey"])
    with pytest.raises(HttpResponseError) as caught:
        import_blob(vault, "k1", "EC-HSM", byok(general, material), crv="P-256")
    assert caught.value.status_code == 400 and "import" in str(caught.value.error.message if caught.value.error else "")
    kek = create_kek(vault)
    elsewhere = kek.id.replace(vault.url, "https://other.vault.azure.net")
    with pytest.raises(HttpResponseError) as caught:
        import_blob(vault, "k2", "EC-HSM", byok(kek, material, kid=elsewhere), crv="P-256")
    assert caught.value.status_code == 400
    vault.client.update_key_properties("kek", kek.properties.version, enabled=False)
    with pytest.raises(HttpResponseError):
        import_blob(vault, "k3", "EC-HSM", byok(kek, material), crv="P-256")
    assert vault.materials() == []


def test_material_wrapped_for_another_key_or_damaged_is_refused(vault: Vault) -> None:
    kek = create_kek(vault)
    material = pkcs8(ec.generate_private_key(ec.SECP256R1()))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    foreign = wrap(
        WrapMethod.RSA_AES_KEY_WRAP_SHA_1,
        stranger.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        material,
    )
    with pytest.raises(HttpResponseError) as caught:
        import_blob(vault, "k", "EC-HSM", build_transfer_blob(kek.id, foreign), crv="P-256")
    assert caught.value.status_code == 400 and error_of(caught)[0] == "BadParameter"
    damaged = bytearray(wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_1, kek_spki(kek), material))
    damaged[-3] ^= 0x01
    with pytest.raises(HttpResponseError):
        import_blob(vault, "k", "EC-HSM", build_transfer_blob(kek.id, bytes(damaged)), crv="P-256")
    sha256 = wrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_256, kek_spki(kek), material)
    with pytest.raises(HttpResponseError):
        import_blob(vault, "k", "EC-HSM", build_transfer_blob(kek.id, sha256), crv="P-256")
    document = json.loads(byok(kek, material))
    document["header"]["enc"] = "RSA_AES_KEY_WRAP_256"
    with pytest.raises(HttpResponseError):
        import_blob(vault, "k", "EC-HSM", json.dumps(document).encode(), crv="P-256")
    with pytest.raises(HttpResponseError) as caught:
        vault.client.get_key("k")
    assert isinstance(caught.value, ResourceNotFoundError)


def test_tag_limits(vault: Vault) -> None:
    kek = create_kek(vault)
    material = pkcs8(ec.generate_private_key(ec.SECP256R1()))
    for tags in ({f"t{i}": "v" for i in range(16)}, {"long": "v" * 257}, {"n" * 257: "v"}):
        with pytest.raises(HttpResponseError) as caught:
            import_blob(vault, "tagged", "EC-HSM", byok(kek, material), crv="P-256", tags=tags)
        assert caught.value.status_code == 400
    key = import_blob(
        vault, "tagged", "EC-HSM", byok(kek, material), crv="P-256", tags={f"t{i}": "v" * 256 for i in range(15)}
    )
    assert len(key.properties.tags or {}) == 15


# -- metadata and attributes ---------------------------------------------------------------------


def test_update_changes_attributes_and_tags_and_disabled_keys_refuse_operations(hsm: Vault) -> None:
    kek = create_kek(hsm)
    key = import_blob(hsm, "aes", "oct-HSM", byok(kek, SecretBytes(os.urandom(32))), tags={"a": "1"})
    updated = hsm.client.update_key_properties("aes", enabled=False, tags={"b": "2"})
    assert updated.properties.enabled is False and updated.properties.tags == {"b": "2"}
    assert hsm.client.get_key("aes").properties.enabled is False
    with pytest.raises(HttpResponseError) as caught:
        hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x")
    assert caught.value.status_code == 403 and error_of(caught) == ("Forbidden", "KeyDisabled")
    hsm.client.update_key_properties("aes", key.properties.version, enabled=True)
    assert hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x").ciphertext


def test_expiry_follows_the_emulator_clock(hsm: Vault) -> None:
    from datetime import UTC, datetime, timedelta

    kek = create_kek(hsm)
    expires = datetime.now(UTC) + timedelta(days=1)
    key = import_blob(hsm, "aes", "oct-HSM", byok(kek, SecretBytes(os.urandom(32))), expires_on=expires)
    assert key.properties.expires_on is not None and abs((key.properties.expires_on - expires).total_seconds()) < 2
    assert hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x").ciphertext
    hsm.control("/_emulator/clock", {"advance_seconds": 2 * 86400})
    with pytest.raises(HttpResponseError) as caught:
        hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x")
    assert error_of(caught) == ("Forbidden", "KeyExpired")


# -- listing ---------------------------------------------------------------------------------


def test_listing_pages_with_next_links(vault: Vault) -> None:
    names = [f"key-{i:02d}" for i in range(30)]
    for name in names:
        vault.client.create_ec_key(name, curve="P-256", hardware_protected=True)
    vault.control("/_emulator/stats/reset", {})
    listed = [p.name for p in vault.client.list_properties_of_keys(max_page_size=7)]
    assert listed == names
    assert vault.calls()["GetKeys"] == 5
    vault.control("/_emulator/stats/reset", {})
    assert len(list(vault.client.list_properties_of_keys())) == 30
    assert vault.calls()["GetKeys"] == 2, "the default page is 25"
    with pytest.raises(HttpResponseError) as caught:
        list(vault.client.list_properties_of_keys(max_page_size=26))
    assert caught.value.status_code == 400


# -- deletion -------------------------------------------------------------------------------


def test_soft_delete_recover_and_purge(vault: Vault) -> None:
    kek = create_kek(vault)
    material = pkcs8(ec.generate_private_key(ec.SECP256R1()))
    import_blob(vault, "doomed", "EC-HSM", byok(kek, material), crv="P-256")
    poller = vault.client.begin_delete_key("doomed")
    poller.wait()
    deleted = poller.result()
    assert deleted.recovery_id == f"{vault.url}/deletedkeys/doomed"
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert (deleted.scheduled_purge_date - deleted.deleted_date).days == 90
    with pytest.raises(ResourceNotFoundError) as missing:
        vault.client.get_key("doomed")
    assert error_of(missing)[0] == "KeyNotFound"
    assert [d.name for d in vault.client.list_deleted_keys()] == ["doomed"]
    assert [p.name for p in vault.client.list_properties_of_keys()] == ["kek"]
    # the name is held while the key is recoverable
    with pytest.raises(ResourceExistsError) as held:
        import_blob(vault, "doomed", "EC-HSM", byok(kek, material), crv="P-256")
    assert error_of(held) == ("Conflict", "ObjectIsDeletedButRecoverable")
    vault.client.begin_recover_deleted_key("doomed").wait()
    assert jwk_member(vault.client.get_key("doomed").key, "crv") == "P-256"
    vault.client.begin_delete_key("doomed").wait()
    vault.client.purge_deleted_key("doomed")
    with pytest.raises(ResourceNotFoundError):
        vault.client.get_deleted_key("doomed")
    assert vault.materials() == []
    import_blob(vault, "doomed", "EC-HSM", byok(kek, material), crv="P-256")
    with pytest.raises(ResourceNotFoundError):
        vault.client.begin_delete_key("never-was")


def test_purge_protection_forbids_purge(tmp_path: Path) -> None:
    for vault in open_vault(tmp_path, AzureKeyVaultEmulator, purge_protection=True, retention_days=7):
        vault.client.create_ec_key("kept", curve="P-256", hardware_protected=True)
        deleted = vault.client.begin_delete_key("kept")
        deleted.wait()
        assert deleted.result().properties.recovery_level == "CustomizedRecoverable"
        with pytest.raises(HttpResponseError) as caught:
            vault.client.purge_deleted_key("kept")
        assert caught.value.status_code == 403 and "purge protection" in str(caught.value.message)
        # after the retention period the service purges it on its own
        vault.control("/_emulator/clock", {"advance_seconds": 8 * 86400})
        with pytest.raises(ResourceNotFoundError):
            vault.client.get_deleted_key("kept")
        vault.client.create_ec_key("kept", curve="P-256", hardware_protected=True)


# -- faults, errors and persistence ---------------------------------------------------------------


def test_injected_faults_carry_azure_bodies(vault: Vault) -> None:
    create_kek(vault)
    vault.control("/_emulator/faults", {"errors": [{"operation": "GetKey", "status": 429, "count": 1}]})
    with pytest.raises(HttpResponseError) as caught:
        vault.client.get_key("kek")
    assert caught.value.status_code == 429 and error_of(caught)[0] == "Throttled"
    assert caught.value.response is not None and getattr(caught.value.response, "headers", {})["Retry-After"] == "1"
    vault.control("/_emulator/faults", {"errors": [{"operation": "GetKey", "status": 503, "count": 1}]})
    with pytest.raises(HttpResponseError) as caught:
        vault.client.get_key("kek")
    assert caught.value.status_code == 503 and error_of(caught)[0] == "ServiceUnavailable"
    assert vault.client.get_key("kek").name == "kek"


def test_keys_and_materials_survive_a_restart(tmp_path: Path) -> None:
    material = pkcs8(ec.generate_private_key(ec.SECP256R1()))
    for vault in open_vault(tmp_path, AzureKeyVaultEmulator):
        kek = create_kek(vault)
        version = import_blob(vault, "durable", "EC-HSM", byok(kek, material), crv="P-256").properties.version
        vault.control("/_emulator/clock", {"advance_seconds": 3600})
    for vault in open_vault(tmp_path, AzureKeyVaultEmulator):
        key = vault.client.get_key("durable")
        assert key.properties.version == version
        assert key.id.startswith(vault.url), "ids follow the host the client used"
        assert vault.materials()[0]["fingerprint"] == fingerprint_material(MaterialKind.EC, material)


def test_the_emulator_runs_standalone(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "providers.azure.emulator",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--kind",
            "managedhsm",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        ca = process.stdout.readline().strip().removeprefix("ca-cert: ")
        assert url.startswith("https://127.0.0.1:")
        client = KeyClient(
            vault_url=url, credential=LocalTokenCredential(), verify_challenge_resource=False, connection_verify=ca
        )
        with client:
            key = client.create_oct_key("aes", size=256, hardware_protected=True)
            assert key.key_type == "oct-HSM"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert (tmp_path / "azure-main.sqlite").exists()


def test_embedded_class_options(tmp_path: Path) -> None:
    app_class = emulator_class("managedhsm", purge_protection=True, retention_days=30)
    app = app_class(DocumentStore(tmp_path / "x.sqlite"), Clock())
    assert app.vault_kind == "managedhsm" and app.purge_protection and app.retention_days == 30
    assert emulator_class("vault") is AzureKeyVaultEmulator


# -- typed request bodies --------------------------------------------------------------------------

SECRET_TEXT = base64.urlsafe_b64encode(b"wrapped-key-material-never-echoed").decode()


def refusal(status: int, answer: Any) -> str:
    """The message of a Key Vault BadParameter answer, checked to be the service's error shape."""
    assert status == 400, answer
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}, answer
    assert answer["error"]["code"] == "BadParameter"
    return str(answer["error"]["message"])


def test_key_request_members_are_typed_as_key_vault_types_them(vault: Vault) -> None:
    """CreateKey and UpdateKey read typed bodies: a member of the wrong JSON type is refused with
    BadParameter naming it (a number sent as text is not read as a number, text is not read as a
    boolean), a missing required member is named, every problem is listed, and nothing is made
    or changed."""
    create = f"/keys/typed/create?{API}"
    message = refusal(*vault.raw("POST", create, {"kty": "RSA-HSM", "key_size": "3072"})[:2])
    assert message == "Property key_size has invalid value.\r\n"
    message = refusal(*vault.raw("POST", create, {"kty": "RSA-HSM", "attributes": {"enabled": "false"}})[:2])
    assert message == "Property attributes.enabled has invalid value.\r\n"
    message = refusal(*vault.raw("POST", create, {"key_size": 2048, "key_ops": ["sign", 7], "tags": {"env": 1}})[:2])
    assert message == (
        "Property 'kty' is required.\r\nProperty key_ops[1] has invalid value.\r\nProperty tags.env has invalid value.\r\n"
    )
    message = refusal(*vault.raw("POST", create, ["kty", "RSA-HSM"])[:2])  # not a JSON object at all
    assert message == "Property  has invalid value.\r\n"
    assert vault.raw("GET", f"/keys/typed?{API}")[0] == 404

    key = vault.client.create_rsa_key("typed", size=2048, hardware_protected=True, tags={"env": "dev"})
    for wrong, member in (
        ({"attributes": {"exp": "1893456000"}}, "attributes.exp"),
        ({"attributes": {"enabled": 0}}, "attributes.enabled"),
        ({"tags": {"env": ["prod"]}}, "tags.env"),
        ({"key_ops": "sign"}, "key_ops"),
    ):
        message = refusal(*vault.raw("PATCH", f"/keys/typed/{key.properties.version}?{API}", wrong)[:2])
        assert message == f"Property {member} has invalid value.\r\n", wrong
    unchanged = vault.client.get_key("typed")
    assert unchanged.properties.enabled is True and unchanged.properties.expires_on is None
    assert unchanged.properties.tags == {"env": "dev"}
    updated = vault.client.update_key_properties("typed", enabled=False)  # a well-formed body still serves
    assert updated.properties.enabled is False


def test_import_request_members_are_typed_as_key_vault_types_them(vault: Vault) -> None:
    """ImportKey reads a typed body: `key.key_hsm` is base64url (Key Vault's "Content of … is not
    base64url"), `Hsm` a boolean, `key` required; the answer never quotes what was sent and no key
    is made."""
    kek = create_kek(vault)
    blob = base64.urlsafe_b64encode(byok(kek, pkcs8(ec.generate_private_key(ec.SECP256R1())))).decode()
    jwk = {"kty": "EC-HSM", "crv": "P-256", "key_hsm": blob}
    message = refusal(*vault.raw("PUT", f"/keys/imported?{API}", {"key": jwk, "Hsm": "true"})[:2])
    assert message == "Property Hsm has invalid value.\r\n"
    message = refusal(*vault.raw("PUT", f"/keys/imported?{API}", {"key": {**jwk, "key_hsm": SECRET_TEXT + "!"}})[:2])
    assert message == "Content of 'key.key_hsm' is not base64url.\r\n"
    message = refusal(*vault.raw("PUT", f"/keys/imported?{API}", {"key": {**jwk, "key_ops": [{"op": SECRET_TEXT}]}})[:2])
    assert message == "Property key.key_ops[0] has invalid value.\r\n"
    message = refusal(*vault.raw("PUT", f"/keys/imported?{API}", {"Hsm": True})[:2])
    assert message == "Property 'key' is required.\r\n"
    assert vault.raw("GET", f"/keys/imported?{API}")[0] == 404 and vault.materials() == []

    status, bundle, _ = vault.raw("PUT", f"/keys/imported?{API}", {"key": jwk, "Hsm": True})
    assert status == 200, bundle  # the same route still serves a well-formed body


def test_crypto_request_members_are_typed_as_key_vault_types_them(hsm: Vault) -> None:
    """encrypt, decrypt, wrapkey, unwrapkey and sign read typed bodies: `value`, `iv`, `aad` and
    `tag` are base64url and `alg` is text; a member that is not is BadParameter naming it, never a
    server error, and no answer quotes what was sent."""
    kek = create_kek(hsm)
    key = import_blob(hsm, "aes", "oct-HSM", byok(kek, SecretBytes(os.urandom(32))))
    signer = hsm.client.create_ec_key("signer", curve="P-256", hardware_protected=True)
    aes = f"/keys/aes/{key.properties.version}"
    for operation in ("encrypt", "decrypt", "wrapkey", "unwrapkey"):
        message = refusal(*hsm.raw("POST", f"{aes}/{operation}?{API}", {"alg": "A256GCM", "value": SECRET_TEXT + "*"})[:2])
        assert message == "Content of 'value' is not base64url.\r\nProperty 'value' is required.\r\n", operation
    message = refusal(*hsm.raw("POST", f"{aes}/encrypt?{API}", {"alg": 256, "value": SECRET_TEXT})[:2])
    assert message == "Property alg has invalid value.\r\n"
    message = refusal(*hsm.raw("POST", f"{aes}/encrypt?{API}", {"alg": "A256GCM"})[:2])
    assert message == "Property 'value' is required.\r\n"
    message = refusal(
        *hsm.raw("POST", f"{aes}/decrypt?{API}", {"alg": "A256GCM", "value": SECRET_TEXT, "iv": "?", "tag": 12})[:2]
    )
    assert message == "Content of 'iv' is not base64url.\r\nProperty tag has invalid value.\r\n"
    message = refusal(
        *hsm.raw("POST", f"{aes}/encrypt?{API}", {"alg": "A256GCM", "value": SECRET_TEXT, "aad": SECRET_TEXT + "%"})[:2]
    )
    assert message == "Content of 'aad' is not base64url.\r\n"
    digest = f"/keys/signer/{signer.properties.version}/sign?{API}"
    message = refusal(*hsm.raw("POST", digest, {"alg": "ES256", "value": {"digest": SECRET_TEXT}})[:2])
    assert message == "Property value has invalid value.\r\n"

    sealed = hsm.crypto(key).encrypt(EncryptionAlgorithm.a256_gcm, b"x", additional_authenticated_data=b"ctx")
    assert sealed.aad == b"ctx"  # the route still serves a well-formed body
    back = hsm.crypto(key).decrypt(
        EncryptionAlgorithm.a256_gcm, sealed.ciphertext, iv=sealed.iv, authentication_tag=sealed.tag,
        additional_authenticated_data=b"ctx",
    )
    assert back.plaintext == b"x"
