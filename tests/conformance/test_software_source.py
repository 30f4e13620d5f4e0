"""The software keystore source: the shared key-source conformance suite, plus what only a
keystore file has (passphrases, the development key file, corruption, atomic writes, leaks)."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyplan.algorithms import ALGORITHMS
from keyplan.crypto.wrap import WrapMethod, unwrap
from keyplan.provider import GenerateRequest, KeySource, RuntimeContext, SourceError, WrapRequest
from keyplan.registry import source_plugin
from keyplan.testing.sources import KeySourceConformance, wrapping_key_pair
from providers.software import PLUGIN, SoftwareSourceSettings

AES = ALGORITHMS["AES_256"]


@pytest.fixture
def passphrase_env() -> Iterator[str]:
    """A variable name of this test's own, so tests never see each other's passphrase."""
    name = f"KEYPLAN_TEST_PASSPHRASE_{uuid.uuid4().hex.upper()}"
    yield name
    os.environ.pop(name, None)


def open_source(working_dir: Path, passphrase_env: str, log: logging.Logger | None = None) -> KeySource:
    settings = SoftwareSourceSettings(passphrase_env=passphrase_env)
    context = RuntimeContext(
        address="software.main",
        working_dir=working_dir,
        data_dir=working_dir / ".keyplan",
        log=log or logging.getLogger("keyplan.test"),
    )
    return PLUGIN.open(settings, context)


def keystore_file(working_dir: Path) -> Path:
    return working_dir / ".keyplan" / "keystore.json"


def journal_file(working_dir: Path) -> Path:
    return working_dir / ".keyplan" / "keystore.json.journal"


def wrap_and_recover(source: KeySource, handle: str, algorithm_name: str = "AES_256") -> bytes:
    """The material, as a cloud would recover it, so a test can look for it where it must not be."""
    private_key, spki = wrapping_key_pair()
    method = WrapMethod.RSA_AES_KEY_WRAP_SHA_256
    algorithm = ALGORITHMS[algorithm_name]
    blob = source.wrap(WrapRequest(handle=handle, algorithm=algorithm, method=method, wrapping_public_key=spki)).blob
    return unwrap(method, private_key, blob).reveal()


class TestSoftwareSourceConformance(KeySourceConformance):
    @pytest.fixture(scope="class")
    def source(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySource]:
        name = f"KEYPLAN_TEST_PASSPHRASE_{uuid.uuid4().hex.upper()}"
        os.environ[name] = "correct horse battery staple"
        source = open_source(tmp_path_factory.mktemp("software"), name)
        yield source
        source.close()
        os.environ.pop(name, None)


def test_plugin_is_registered_under_software() -> None:
    assert source_plugin("software") is PLUGIN
    assert PLUGIN.declared_capabilities(SoftwareSourceSettings()).exact_pkcs8 is True


def test_settings_resolve_the_keystore_against_the_working_directory(tmp_path: Path) -> None:
    assert SoftwareSourceSettings().keystore_path(tmp_path) == tmp_path / ".keyplan" / "keystore.json"
    assert SoftwareSourceSettings(keystore=Path("/abs/ks.json")).keystore_path(tmp_path) == Path("/abs/ks.json")
    with pytest.raises(ValueError):
        SoftwareSourceSettings.model_validate({"keystore": "k.json", "passphrase": "inline secrets are refused"})


def test_passphrase_keystore_records_scrypt_and_reopens(tmp_path: Path, passphrase_env: str) -> None:
    os.environ[passphrase_env] = "first passphrase"
    source = open_source(tmp_path, passphrase_env)
    material = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES))
    source.close()

    document = json.loads(keystore_file(tmp_path).read_text())
    assert document["protection"]["kdf"] == "scrypt"
    assert {"salt", "n", "r", "p"} <= set(document["protection"])
    assert not (tmp_path / ".keyplan" / "keystore.key").exists()
    assert stat.S_IMODE(keystore_file(tmp_path).stat().st_mode) == 0o600

    reopened = open_source(tmp_path, passphrase_env)
    assert reopened.describe(material.handle).fingerprint == material.fingerprint
    assert len(wrap_and_recover(reopened, material.handle)) == 32
    reopened.close()


def test_wrong_passphrase_is_a_clear_source_error(tmp_path: Path, passphrase_env: str) -> None:
    os.environ[passphrase_env] = "the right one"
    source = open_source(tmp_path, passphrase_env)
    material = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES))
    source.close()

    os.environ[passphrase_env] = "the wrong one"
    wrong = open_source(tmp_path, passphrase_env)
    with pytest.raises(SourceError) as raised:
        wrong.describe(material.handle)
    assert raised.value.summary == "Wrong passphrase for the software keystore"
    assert passphrase_env in raised.value.detail
    assert "the wrong one" not in str(raised.value) + raised.value.detail
    with pytest.raises(SourceError):
        wrap_and_recover(wrong, material.handle)


def test_unset_passphrase_for_a_passphrase_keystore_says_which_variable(tmp_path: Path, passphrase_env: str) -> None:
    os.environ[passphrase_env] = "set at creation"
    source = open_source(tmp_path, passphrase_env)
    material = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES))
    source.close()

    del os.environ[passphrase_env]
    with pytest.raises(SourceError) as raised:
        open_source(tmp_path, passphrase_env).describe(material.handle)
    assert passphrase_env in raised.value.detail


def test_development_key_file_is_private_and_warned_about_once(
    tmp_path: Path, passphrase_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger(f"keyplan.test.{uuid.uuid4().hex}")
    with caplog.at_level(logging.WARNING, logger=log.name):
        source = open_source(tmp_path, passphrase_env, log)
        handles = [source.generate(GenerateRequest(address="key.a", version=v, algorithm=AES)).handle for v in (1, 2, 3)]
        wrap_and_recover(source, handles[0])
        source.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == log.name]
    assert len(warnings) == 1
    assert warnings[0].startswith("development key file; for real use protect the software keystore")
    assert f"set {passphrase_env} and run `keyplan keystore re-protect`" in warnings[0]

    key_file = tmp_path / ".keyplan" / "keystore.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    assert json.loads(keystore_file(tmp_path).read_text())["protection"]["kind"] == "key-file"

    reopened = open_source(tmp_path, passphrase_env)
    assert all(reopened.describe(h).present for h in handles)


def test_passphrase_set_for_a_key_file_keystore_is_refused(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handle = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES)).handle
    os.environ[passphrase_env] = "late passphrase"
    with pytest.raises(SourceError) as raised:
        open_source(tmp_path, passphrase_env).describe(handle)
    assert passphrase_env in raised.value.detail


def test_corrupt_keystore_is_a_source_error(tmp_path: Path, passphrase_env: str) -> None:
    keystore_file(tmp_path).parent.mkdir(parents=True)
    keystore_file(tmp_path).write_text('{"format": "keyplan-keystore", "entries": [')
    source = open_source(tmp_path, passphrase_env)
    with pytest.raises(SourceError) as raised:
        source.describe("key.a/v1/000000000000")
    assert raised.value.summary == "The software keystore is corrupt"
    with pytest.raises(SourceError):
        source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES))


def test_entries_are_bound_to_their_handles(tmp_path: Path, passphrase_env: str) -> None:
    os.environ[passphrase_env] = "binding"
    source = open_source(tmp_path, passphrase_env)
    first = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES))
    second = source.generate(GenerateRequest(address="key.b", version=1, algorithm=AES))
    source.close()

    # Swap the sealed material of the two entries: each now decrypts under the wrong handle.
    document = json.loads(keystore_file(tmp_path).read_text())
    entries = document["entries"]
    entries[first.handle]["sealed"], entries[second.handle]["sealed"] = (
        entries[second.handle]["sealed"],
        entries[first.handle]["sealed"],
    )
    keystore_file(tmp_path).write_text(json.dumps(document))

    tampered = open_source(tmp_path, passphrase_env)
    with pytest.raises(SourceError) as raised:
        wrap_and_recover(tampered, first.handle)
    assert raised.value.summary == "A software keystore entry is corrupt"


def test_wrap_checks_the_algorithm_the_state_names(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handle = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES)).handle
    with pytest.raises(SourceError):
        wrap_and_recover(source, handle, "HMAC_SHA256")


def test_concurrent_writers_on_one_keystore_lose_nothing(tmp_path: Path, passphrase_env: str) -> None:
    os.environ[passphrase_env] = "shared"
    first = open_source(tmp_path, passphrase_env)
    first.generate(GenerateRequest(address="key.seed", version=1, algorithm=AES))
    second = open_source(tmp_path, passphrase_env)  # a second run on the same file
    handles: list[str] = []
    lock = threading.Lock()

    def generate(source: KeySource, index: int) -> None:
        handle = source.generate(GenerateRequest(address=f'key.w["{index}"]', version=1, algorithm=AES)).handle
        with lock:
            handles.append(handle)

    threads = [threading.Thread(target=generate, args=(first if i % 2 else second, i)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.close()  # each folds the journal into the document
    second.close()
    assert not journal_file(tmp_path).exists()
    document = json.loads(keystore_file(tmp_path).read_text())
    assert set(handles) <= set(document["entries"])
    assert len(document["entries"]) == 11
    leftovers = [p.name for p in keystore_file(tmp_path).parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def _forms(material: bytes) -> list[bytes]:
    return [
        material,
        material.hex().encode(),
        material.hex().upper().encode(),
        base64.b64encode(material),
        base64.urlsafe_b64encode(material),
        base64.b64encode(material).rstrip(b"="),
    ]


@pytest.mark.parametrize("algorithm_name", ["AES_256", "HMAC_SHA512", "EC_P256"])
def test_material_never_appears_in_the_keystore_or_in_errors(
    tmp_path: Path, passphrase_env: str, algorithm_name: str
) -> None:
    source = open_source(tmp_path, passphrase_env)
    algorithm = ALGORITHMS[algorithm_name]
    material = source.generate(GenerateRequest(address="key.leak", version=1, algorithm=algorithm))
    recovered = wrap_and_recover(source, material.handle, algorithm_name)

    messages: list[str] = [repr(source), repr(material)]
    _, spki = wrapping_key_pair()
    failing = [
        WrapRequest(handle=material.handle, algorithm=ALGORITHMS["HMAC_SHA224"], method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki),
        WrapRequest(handle=material.handle, algorithm=algorithm, method=WrapMethod.RSAES_OAEP_SHA_256, wrapping_public_key=b"not a key"),
        WrapRequest(handle="key.missing/v1/0", algorithm=algorithm, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=spki),
    ]
    for request in failing:
        with pytest.raises(SourceError) as raised:
            source.wrap(request)
        error = raised.value
        messages += [str(error), repr(error), error.summary, error.detail]
        messages += [str(error.__cause__), str(error.__context__)]

    stored = keystore_file(tmp_path).read_bytes() + journal_file(tmp_path).read_bytes()
    text = "\n".join(messages).encode()
    for form in _forms(recovered):
        assert form not in stored
        assert form not in text


def test_a_wrapping_key_of_another_type_is_reported_not_raised_raw(tmp_path: Path, passphrase_env: str) -> None:
    source = open_source(tmp_path, passphrase_env)
    handle = source.generate(GenerateRequest(address="key.a", version=1, algorithm=AES)).handle
    with pytest.raises(SourceError):
        source.wrap(WrapRequest(handle=handle, algorithm=AES, method=WrapMethod.RSAES_OAEP_SHA_1, wrapping_public_key=b"junk"))
