"""The PKCS#11 source against a SoftHSM2 token, for what the conformance suite cannot show:
keys stay sensitive in the token, errors say how to fix them, deleted keys are reported, and
neither material nor PINs reach messages."""

from __future__ import annotations

import ast
import base64
import ctypes
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, ObjectClass

from keyplan.algorithms import ALGORITHMS
from keyplan.crypto.wrap import WrapMethod, unwrap
from keyplan.provider import GenerateRequest, KeySource, RuntimeContext, SourceError, WrapRequest
from keyplan.registry import source_plugin
from providers.pkcs11 import PLUGIN, DevToken, Pkcs11SourceSettings, init_dev_token, open_source
from providers.pkcs11.mechanisms import RsaAesKeyWrapParameter
from providers.pkcs11.objects import TokenHandle
from providers.pkcs11.wrapping import import_wrapping_key, wrap_in_token

pytestmark = pytest.mark.hsm

PIN = "246810"
SO_PIN = "13579113"
AES = ALGORITHMS["AES_256"]
PACKAGE = Path(__file__).resolve().parents[2] / "providers" / "pkcs11"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> DevToken:
    return init_dev_token(tmp_path_factory.mktemp("softhsm-it"), "keyplan-it", pin=PIN, so_pin=SO_PIN)


@pytest.fixture
def pin_env() -> Iterator[str]:
    name = f"KEYPLAN_TEST_PIN_{uuid.uuid4().hex.upper()}"
    os.environ[name] = PIN
    yield name
    os.environ.pop(name, None)


@pytest.fixture
def source(token: DevToken, pin_env: str) -> Iterator[KeySource]:
    opened = open_source(token.source_settings(pin_env), "pkcs11.it")
    yield opened
    opened.close()


def wrapping_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private_key, private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def raw_session(token: DevToken) -> pkcs11.Session:
    """A session of the test's own on the library the source loaded (same process, same login)."""
    lib = pkcs11.lib(str(token.module_path.resolve()))
    return lib.get_token(token_label=token.label).open(rw=True)


# ---- registration and settings -----------------------------------------------------------------


def test_plugin_is_registered_under_pkcs11() -> None:
    assert source_plugin("pkcs11") is PLUGIN


def test_declared_capabilities_are_conservative(token: DevToken) -> None:
    declared = PLUGIN.declared_capabilities(token.source_settings("UNUSED"))
    assert declared.wrap_methods == {WrapMethod.RSAES_OAEP_SHA_1, WrapMethod.RSA_AES_KEY_WRAP_SHA_1}
    assert declared.exact_pkcs8 is False and declared.wraps_in_hardware is True
    trusted = PLUGIN.declared_capabilities(token.source_settings("UNUSED", wrap_with_trusted=True))
    assert trusted.wrap_methods == {WrapMethod.RSAES_OAEP_SHA_1}


def test_settings_have_no_place_for_a_pin(token: DevToken) -> None:
    with pytest.raises(ValueError):
        Pkcs11SourceSettings.model_validate(
            {"module": str(token.module_path), "token_label": token.label, "pin_env": "X", "pin": "1234"}
        )


def test_plugin_open_through_the_runtime_context(token: DevToken, pin_env: str, tmp_path: Path) -> None:
    context = RuntimeContext(address="pkcs11.ctx", working_dir=tmp_path, data_dir=tmp_path / ".keyplan")
    source = PLUGIN.open(token.source_settings(pin_env), context)
    try:
        material = source.generate(GenerateRequest(address="key.ctx", version=3, algorithm=AES))
        assert TokenHandle.parse(material.handle) is not None
        assert material.handle.startswith('keyplan:key.ctx:v3#')
    finally:
        source.close()


# ---- material stays in the token ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["AES_256", "HMAC_SHA256", "EC_P256"])
def test_generated_keys_are_persistent_sensitive_and_unreadable(source: KeySource, token: DevToken, name: str) -> None:
    material = source.generate(GenerateRequest(address=f"key.sensitive_{name}", version=1, algorithm=ALGORITHMS[name]))
    handle = TokenHandle.parse(material.handle)
    assert handle is not None
    session = raw_session(token)
    try:
        object_class = ObjectClass.PRIVATE_KEY if ALGORITHMS[name].kind.asymmetric else ObjectClass.SECRET_KEY
        key = session.get_key(object_class=object_class, label=handle.label, id=handle.object_id)
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is True
        assert key[Attribute.WRAP_WITH_TRUSTED] is False
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
    finally:
        session.close()


def test_no_code_path_reads_cka_value() -> None:
    """The source computes fingerprints inside the token; CKA_VALUE is never asked for."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "VALUE":
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id == "CKA_VALUE":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


# ---- errors ------------------------------------------------------------------------------------


def test_wrong_pin_is_a_source_error_without_the_pin(token: DevToken, pin_env: str) -> None:
    os.environ[pin_env] = "999999"
    with pytest.raises(SourceError) as raised:
        open_source(token.source_settings(pin_env), "pkcs11.it")
    assert raised.value.summary == "Wrong PIN for the PKCS#11 token"
    assert "999999" not in raised.value.summary + raised.value.detail + repr(raised.value)


def test_unset_pin_variable_is_named(token: DevToken, pin_env: str) -> None:
    del os.environ[pin_env]
    with pytest.raises(SourceError) as raised:
        open_source(token.source_settings(pin_env), "pkcs11.it")
    assert pin_env in raised.value.detail


def test_missing_token_lists_the_labels_found(token: DevToken, pin_env: str) -> None:
    with pytest.raises(SourceError) as raised:
        open_source(token.source_settings(pin_env, token_label="no-such-token"), "pkcs11.it")
    assert raised.value.summary == "PKCS#11 token not found"
    assert repr(token.label) in raised.value.detail


def test_wrong_slot_is_reported(token: DevToken, pin_env: str) -> None:
    with pytest.raises(SourceError) as raised:
        open_source(token.source_settings(pin_env, slot=4242), "pkcs11.it")
    assert "slot 4242" in raised.value.detail


def test_missing_module_file(token: DevToken, pin_env: str, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as raised:
        open_source(token.source_settings(pin_env, module=tmp_path / "libnothing.so"), "pkcs11.it")
    assert raised.value.summary == "PKCS#11 library not found"
    assert "libnothing.so" in raised.value.detail


def test_module_that_is_not_a_library(token: DevToken, pin_env: str, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(SourceError) as raised:
        open_source(token.source_settings(pin_env, module=bogus), "pkcs11.it")
    assert raised.value.summary == "Cannot load the PKCS#11 library"


def test_key_deleted_from_the_token(source: KeySource, token: DevToken) -> None:
    material = source.generate(GenerateRequest(address="key.deleted", version=1, algorithm=AES))
    handle = TokenHandle.parse(material.handle)
    assert handle is not None and source.describe(material.handle).present
    session = raw_session(token)
    try:
        for found in session.get_objects({Attribute.LABEL: handle.label, Attribute.ID: handle.object_id}):
            found.destroy()
    finally:
        session.close()

    assert source.describe(material.handle).present is False
    _, spki = wrapping_key()
    with pytest.raises(SourceError) as raised:
        source.wrap(WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki))
    assert raised.value.summary == "Key material not found in the PKCS#11 token"
    assert handle.label in raised.value.detail


def test_unsupported_method_names_what_the_token_can_do(source: KeySource) -> None:
    material = source.generate(GenerateRequest(address="key.method", version=1, algorithm=AES))
    _, spki = wrapping_key()
    with pytest.raises(SourceError) as raised:
        source.wrap(WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSA_AES_KEY_WRAP_SHA_256, wrapping_public_key=spki))
    assert "RSA_AES_KEY_WRAP_SHA_1" in raised.value.detail


def test_private_keys_need_a_hybrid_method(source: KeySource) -> None:
    ec_p256 = ALGORITHMS["EC_P256"]
    material = source.generate(GenerateRequest(address="key.ec", version=1, algorithm=ec_p256))
    _, spki = wrapping_key()
    with pytest.raises(SourceError) as raised:
        source.wrap(WrapRequest(handle=material.handle, algorithm=ec_p256, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki))
    assert "RSA_AES_KEY_WRAP" in raised.value.detail


def test_a_handle_from_another_source_is_refused(source: KeySource) -> None:
    assert source.describe("key.a/v1/0123456789ab").present is False
    _, spki = wrapping_key()
    with pytest.raises(SourceError):
        source.wrap(WrapRequest(handle="no-separator", algorithm=AES, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki))


def _forms(material: bytes) -> list[bytes]:
    return [material, material.hex().encode(), material.hex().upper().encode(), base64.b64encode(material), base64.urlsafe_b64encode(material)]


def test_material_and_pin_never_appear_in_errors(source: KeySource) -> None:
    material = source.generate(GenerateRequest(address="key.leak", version=1, algorithm=AES))
    private_key, spki = wrapping_key()
    blob = source.wrap(WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSA_AES_KEY_WRAP_SHA_1, wrapping_public_key=spki)).blob
    recovered = unwrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_1, private_key, blob).reveal()

    failing = [
        WrapRequest(handle=material.handle, algorithm=ALGORITHMS["HMAC_SHA256"], method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki),
        WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSAES_OAEP_SHA_256, wrapping_public_key=spki),
        WrapRequest(handle=material.handle, algorithm=AES, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=b"junk"),
    ]
    messages = [repr(source), repr(material)]
    for request in failing:
        with pytest.raises(SourceError) as raised:
            source.wrap(request)
        messages += [str(raised.value), repr(raised.value), raised.value.summary, raised.value.detail]
    text = "\n".join(messages).encode()
    for form in _forms(recovered):
        assert form not in text
    assert PIN.encode() not in text


# ---- CKM_RSA_AES_KEY_WRAP (0x1054) -------------------------------------------------------------


def test_rsa_aes_key_wrap_parameter_layout() -> None:
    parameter = RsaAesKeyWrapParameter.for_method(WrapMethod.RSA_AES_KEY_WRAP_SHA_256)
    width = ctypes.sizeof(ctypes.c_ulong)
    assert len(parameter.raw) == width + ctypes.sizeof(ctypes.c_void_p)
    assert int.from_bytes(parameter.raw[:width], "little") == 256
    pointer = int.from_bytes(parameter.raw[width:], "little")
    assert pointer == ctypes.addressof(parameter._oaep)
    assert parameter._oaep.hashAlg == int(pkcs11.Mechanism.SHA256) and parameter._oaep.mgf == int(pkcs11.MGF.SHA256)


def test_native_rsa_aes_key_wrap_reaches_the_token(source: KeySource, token: DevToken) -> None:
    """SoftHSM lacks the mechanism: the call must get as far as the token and be refused there."""
    material = source.generate(GenerateRequest(address="key.native", version=1, algorithm=AES))
    handle = TokenHandle.parse(material.handle)
    assert handle is not None
    _, spki = wrapping_key()
    session = raw_session(token)
    try:
        target = session.get_key(object_class=ObjectClass.SECRET_KEY, label=handle.label, id=handle.object_id)
        assert isinstance(target, pkcs11.SecretKey)
        cloud_key = import_wrapping_key(session, spki)
        with pytest.raises(pkcs11.exceptions.MechanismInvalid):
            wrap_in_token(session, cloud_key, target, WrapMethod.RSA_AES_KEY_WRAP_SHA_1, native_hybrid=True)
        cloud_key.destroy()
    finally:
        session.close()
