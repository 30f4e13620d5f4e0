"""The key-source conformance suite: the software keystore and the PKCS#11 source both pass
these same tests. A source's test module subclasses `KeySourceConformance` (the subclass name
starts with `Test`) and overrides the class-scoped `source` fixture.

Each wrap is checked the way a cloud checks it: the blob is unwrapped with the private half of
a freshly generated RSA wrapping key (`keyplan.crypto.wrap.unwrap`), and the fingerprint of what
came out must equal the fingerprint the source recorded when it generated the material.

PKCS#8 padding: a source that advertises `exact_pkcs8=False` (SoftHSM) zero-pads a private
key's PKCS#8 DER to a multiple of 8 bytes before AES key wrap, so the unwrapped bytes are the
DER followed by up to 7 zero bytes. The suite strips exactly that padding (and nothing else:
the bytes after the DER must all be zero and fewer than 8) before computing the fingerprint;
a source that advertises `exact_pkcs8=True` must produce the DER alone.

Nothing here is skipped: an algorithm or wrap method the source does not advertise is a case
too, and the source must refuse it with a `SourceError` (never a crash, never a blob).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from keyplan.algorithms import ALGORITHMS, Algorithm, MaterialKind
from keyplan.crypto import SecretBytes, fingerprint_material
from keyplan.crypto.fingerprint import spki_fingerprint
from keyplan.crypto.proofs import SignatureScheme, signature_verifies
from keyplan.crypto.wrap import WrapMethod, direct_oaep_limit, unwrap
from keyplan.provider import (
    AesGcmRequest,
    AesKeyWrapRequest,
    GeneratedMaterial,
    GenerateRequest,
    HoldingRequest,
    KeySource,
    MacRequest,
    PublicKeyRequest,
    SignRequest,
    SourceError,
    WrapRequest,
    checked_answer,
)

WRAPPING_KEY_BITS = 2048
_FINGERPRINT_PREFIX = {
    MaterialKind.SYMMETRIC: "aeskcv:",
    MaterialKind.HMAC: "hmackcv:",
    MaterialKind.RSA: "spki:",
    MaterialKind.EC: "spki:",
}


def der_length(data: bytes) -> int:
    """Length of the DER element (tag, length, contents) at the start of `data`."""
    if len(data) < 2 or data[0] != 0x30:
        raise AssertionError("the unwrapped material is not a DER SEQUENCE")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def strip_pkcs8_padding(material: SecretBytes) -> SecretBytes:
    """The PKCS#8 DER without the zero padding a token may append (see the module docstring)."""
    raw = material.reveal()
    length = der_length(raw)
    padding = raw[length:]
    assert len(padding) < 8 and padding == bytes(len(padding)), "material carries more than PKCS#8 zero padding"
    return SecretBytes(raw[:length])


def wrapping_key_pair(bits: int = WRAPPING_KEY_BITS) -> tuple[rsa.RSAPrivateKey, bytes]:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    spki = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_key, spki


class GeneratedCache:
    """Material generated once per algorithm per test class (RSA-4096 in a token is slow)."""

    def __init__(self, source: KeySource) -> None:
        self._source = source
        self._generated: dict[str, GeneratedMaterial] = {}
        self._lock = threading.Lock()

    def get(self, algorithm: Algorithm) -> GeneratedMaterial:
        with self._lock:
            if algorithm.name not in self._generated:
                self._generated[algorithm.name] = self._source.generate(
                    GenerateRequest(address=f'key.conformance["{algorithm.name}"]', version=1, algorithm=algorithm)
                )
            return self._generated[algorithm.name]


class KeySourceConformance:
    """Subclass, name it `Test…`, and override `source` (scope="class", yields an open source)."""

    @pytest.fixture(scope="class")
    def source(self) -> Iterator[KeySource]:
        raise NotImplementedError("a source's conformance class overrides the `source` fixture")

    @pytest.fixture(scope="class")
    def generated(self, source: KeySource) -> GeneratedCache:
        return GeneratedCache(source)

    @pytest.fixture(scope="class")
    def wrapping_key(self) -> tuple[rsa.RSAPrivateKey, bytes]:
        """Generated afresh for each source's run of the suite (per test would only add minutes)."""
        return wrapping_key_pair()

    # ---- helpers ------------------------------------------------------------------------------

    def supported(self, source: KeySource, name: str) -> Algorithm | None:
        """The algorithm when the source advertises it; otherwise None, after checking that the
        source refuses to generate it."""
        algorithm = ALGORITHMS[name]
        if name in source.capabilities().algorithms:
            return algorithm
        with pytest.raises(SourceError) as refused:
            source.generate(GenerateRequest(address="key.unsupported", version=1, algorithm=algorithm))
        assert name in refused.value.summary + refused.value.detail
        return None

    def aes(self, source: KeySource) -> Algorithm:
        algorithm = self.supported(source, "AES_256")
        assert algorithm is not None, "every key source generates AES_256"
        return algorithm

    def unwrapped_fingerprint(
        self, source: KeySource, algorithm: Algorithm, method: WrapMethod, private_key: rsa.RSAPrivateKey, blob: bytes
    ) -> str:
        material = unwrap(method, private_key, blob)
        if algorithm.kind.asymmetric:
            if source.capabilities().exact_pkcs8:
                assert der_length(material.reveal()) == len(material), "exact_pkcs8 source padded its PKCS#8"
            else:
                material = strip_pkcs8_padding(material)
        else:
            assert len(material) == algorithm.material_length
        return fingerprint_material(algorithm.kind, material)

    # ---- capabilities -------------------------------------------------------------------------

    def test_capabilities_name_known_algorithms_and_methods(self, source: KeySource) -> None:
        capabilities = source.capabilities()
        assert capabilities.algorithms, "a source supports at least one algorithm"
        assert capabilities.algorithms <= set(ALGORITHMS)
        assert capabilities.wrap_methods, "a source supports at least one wrap method"
        assert capabilities.wrap_methods <= set(WrapMethod)

    # ---- generate -----------------------------------------------------------------------------

    @pytest.mark.parametrize("name", sorted(ALGORITHMS))
    def test_generate_returns_handle_and_fingerprint(
        self, source: KeySource, generated: GeneratedCache, name: str
    ) -> None:
        algorithm = self.supported(source, name)
        if algorithm is None:
            return
        material = generated.get(algorithm)
        assert material.handle
        assert material.fingerprint.startswith(_FINGERPRINT_PREFIX[algorithm.kind])
        assert material.created_at.tzinfo is not None
        info = source.describe(material.handle)
        assert info.present
        assert info.handle == material.handle
        assert info.fingerprint == material.fingerprint

    def test_handles_never_repeat(self, source: KeySource) -> None:
        algorithm = self.aes(source)
        requests = [
            GenerateRequest(address="key.repeat", version=1, algorithm=algorithm),
            GenerateRequest(address="key.repeat", version=1, algorithm=algorithm),
            GenerateRequest(address="key.repeat", version=2, algorithm=algorithm),
            GenerateRequest(address='key.repeat["b"]', version=1, algorithm=algorithm),
        ]
        materials = [source.generate(request) for request in requests]
        assert len({m.handle for m in materials}) == len(materials)
        assert len({m.fingerprint for m in materials}) == len(materials), "fresh material every time"
        for material in materials:
            assert source.describe(material.handle).fingerprint == material.fingerprint

    # ---- wrap ---------------------------------------------------------------------------------

    @pytest.mark.parametrize("method", list(WrapMethod), ids=lambda m: m.value)
    @pytest.mark.parametrize("name", sorted(ALGORITHMS))
    def test_wrap_unwraps_to_the_recorded_fingerprint(
        self,
        source: KeySource,
        generated: GeneratedCache,
        wrapping_key: tuple[rsa.RSAPrivateKey, bytes],
        name: str,
        method: WrapMethod,
    ) -> None:
        algorithm = self.supported(source, name)
        if algorithm is None:
            return
        material = generated.get(algorithm)
        private_key, spki = wrapping_key
        request = WrapRequest(handle=material.handle, algorithm=algorithm, method=method, wrapping_public_key=spki)
        if method not in source.capabilities().wrap_methods:
            with pytest.raises(SourceError) as refused:
                source.wrap(request)
            assert method.value in refused.value.summary + refused.value.detail
            return
        if not method.hybrid and algorithm.kind.asymmetric:
            # Direct OAEP carries a private key only when its PKCS#8 fits in one RSA block (EC
            # under the software source); a token may refuse it outright. Either is conformant,
            # as long as a refusal is a SourceError and a blob is right.
            try:
                wrapped = source.wrap(request)
            except SourceError as error:
                assert error.detail
                return
        elif not method.hybrid and algorithm.bits // 8 > direct_oaep_limit(WRAPPING_KEY_BITS, method):
            with pytest.raises(SourceError):
                source.wrap(request)
            return
        else:
            wrapped = source.wrap(request)
        assert wrapped.method is method
        fingerprint = self.unwrapped_fingerprint(source, algorithm, method, private_key, wrapped.blob)
        assert fingerprint == material.fingerprint

    def test_unadvertised_methods_fail_with_source_error(
        self, source: KeySource, generated: GeneratedCache, wrapping_key: tuple[rsa.RSAPrivateKey, bytes]
    ) -> None:
        algorithm = self.aes(source)
        missing = set(WrapMethod) - source.capabilities().wrap_methods  # may be empty
        material = generated.get(algorithm)
        for method in missing:
            with pytest.raises(SourceError):
                source.wrap(
                    WrapRequest(
                        handle=material.handle, algorithm=algorithm, method=method, wrapping_public_key=wrapping_key[1]
                    )
                )

    def test_wrap_under_a_non_rsa_key_fails_with_source_error(
        self, source: KeySource, generated: GeneratedCache
    ) -> None:
        algorithm = self.aes(source)
        material = generated.get(algorithm)
        ec_spki = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        method = sorted(source.capabilities().wrap_methods)[0]
        with pytest.raises(SourceError):
            source.wrap(WrapRequest(handle=material.handle, algorithm=algorithm, method=method, wrapping_public_key=ec_spki))

    # ---- proofs of possession (keyplan verify) ------------------------------------------------
    # What the source computes is checked against the same computation over the material it
    # wraps out (unwrapped here, as a cloud would), so a source answering for other material fails.

    def unwrapped(
        self, source: KeySource, algorithm: Algorithm, material: GeneratedMaterial, wrapping_key: tuple[rsa.RSAPrivateKey, bytes]
    ) -> SecretBytes:
        private_key, spki = wrapping_key
        method = next(m for m in sorted(source.capabilities().wrap_methods, key=lambda m: -m.strength) if m.hybrid)
        blob = source.wrap(WrapRequest(handle=material.handle, algorithm=algorithm, method=method, wrapping_public_key=spki)).blob
        raw = unwrap(method, private_key, blob)
        return raw if not algorithm.kind.asymmetric or source.capabilities().exact_pkcs8 else strip_pkcs8_padding(raw)

    @pytest.mark.parametrize("name", sorted(ALGORITHMS))
    def test_proof_operations_compute_with_the_material_the_source_holds(
        self, source: KeySource, generated: GeneratedCache, wrapping_key: tuple[rsa.RSAPrivateKey, bytes], name: str
    ) -> None:
        algorithm = self.supported(source, name)
        if algorithm is None:
            return
        material = generated.get(algorithm)
        held = self.unwrapped(source, algorithm, material, wrapping_key)
        message = os.urandom(32)
        if algorithm.kind.asymmetric:
            spki = source.public_key(PublicKeyRequest(handle=material.handle, algorithm=algorithm)).spki
            assert spki_fingerprint(spki) == material.fingerprint
            expected = serialization.load_der_private_key(held.reveal(), password=None).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            assert spki == expected
            schemes = (
                [SignatureScheme.ECDSA_SHA384 if algorithm.curve == "P-384" else SignatureScheme.ECDSA_SHA256]
                if algorithm.kind is MaterialKind.EC
                else [SignatureScheme.RSA_PSS_SHA256, SignatureScheme.RSA_PKCS1_SHA256]
            )
            for scheme in schemes:
                signed = source.sign(SignRequest(handle=material.handle, algorithm=algorithm, message=message, scheme=scheme))
                assert signature_verifies(expected, scheme, message, signed.signature), scheme
                assert not signature_verifies(expected, scheme, message[::-1], signed.signature)
        elif algorithm.kind is MaterialKind.HMAC:
            mac = source.mac(MacRequest(handle=material.handle, algorithm=algorithm, message=message)).mac
            digest = algorithm.name.removeprefix("HMAC_").lower()
            assert mac == hmac.new(held.reveal(), message, getattr(hashlib, digest)).digest()
        else:
            iv = os.urandom(12)
            sealed = source.aes_gcm_encrypt(
                AesGcmRequest(handle=material.handle, algorithm=algorithm, iv=iv, plaintext=message, aad=b"context")
            )
            assert len(sealed.tag) == 16
            assert sealed.ciphertext + sealed.tag == AESGCM(held.reveal()).encrypt(iv, message, b"context")
            wrapped = source.aes_key_wrap(AesKeyWrapRequest(handle=material.handle, algorithm=algorithm, plaintext=message))
            assert wrapped.wrapped == aes_key_wrap(held.reveal(), message)

    def test_proof_operations_refuse_other_kinds_and_missing_handles(
        self, source: KeySource, generated: GeneratedCache
    ) -> None:
        algorithm = self.aes(source)
        material = generated.get(algorithm)
        with pytest.raises(SourceError):
            source.public_key(PublicKeyRequest(handle=material.handle, algorithm=algorithm))
        with pytest.raises(SourceError):
            source.mac(MacRequest(handle=material.handle, algorithm=algorithm, message=b"x"))
        with pytest.raises(SourceError):
            source.sign(
                SignRequest(handle=material.handle, algorithm=algorithm, message=b"x", scheme=SignatureScheme.ECDSA_SHA256)
            )
        with pytest.raises(SourceError):
            source.aes_gcm_encrypt(
                AesGcmRequest(handle="key.never-generated/v1/000000000000", algorithm=algorithm, iv=bytes(12), plaintext=b"x")
            )
        with pytest.raises(SourceError):
            source.aes_key_wrap(AesKeyWrapRequest(handle="key.never-generated/v1/000000000000", algorithm=algorithm, plaintext=bytes(16)))
        with pytest.raises(SourceError):  # not a whole number of 64-bit blocks
            source.aes_key_wrap(AesKeyWrapRequest(handle=material.handle, algorithm=algorithm, plaintext=bytes(20)))

    # ---- missing handles ----------------------------------------------------------------------

    def test_describe_of_a_missing_handle_is_not_present(self, source: KeySource) -> None:
        info = source.describe("key.never-generated/v1/000000000000")
        assert info.present is False
        assert info.fingerprint is None

    def test_holding_names_exactly_the_handles_it_lacks(self, source: KeySource, generated: GeneratedCache) -> None:
        held = generated.get(self.aes(source)).handle
        lacking = "keyplan-conformance-missing-handle#00"
        answer = checked_answer(source.address, KeySource.holding, source.holding(HoldingRequest(handles=(held, lacking))))
        assert answer.missing == (lacking,)
        assert source.holding(HoldingRequest()).missing == ()

    def test_wrap_of_a_missing_handle_fails_with_source_error(
        self, source: KeySource, wrapping_key: tuple[rsa.RSAPrivateKey, bytes]
    ) -> None:
        algorithm = self.aes(source)
        method = sorted(source.capabilities().wrap_methods)[0]
        with pytest.raises(SourceError) as raised:
            source.wrap(
                WrapRequest(
                    handle="key.never-generated/v1/000000000000",
                    algorithm=algorithm,
                    method=method,
                    wrapping_public_key=wrapping_key[1],
                )
            )
        assert raised.value.summary and raised.value.detail

    # ---- threads ------------------------------------------------------------------------------

    def test_wrap_and_generate_from_four_threads(
        self, source: KeySource, generated: GeneratedCache, wrapping_key: tuple[rsa.RSAPrivateKey, bytes]
    ) -> None:
        algorithm = self.aes(source)
        material = generated.get(algorithm)
        private_key, spki = wrapping_key
        capabilities = source.capabilities()
        method = next(m for m in sorted(capabilities.wrap_methods, key=lambda m: m.strength))

        def wrap_once(_: int) -> str:
            request = WrapRequest(handle=material.handle, algorithm=algorithm, method=method, wrapping_public_key=spki)
            return self.unwrapped_fingerprint(source, algorithm, method, private_key, source.wrap(request).blob)

        def generate_once(index: int) -> GeneratedMaterial:
            return source.generate(GenerateRequest(address=f'key.threads["{index}"]', version=1, algorithm=algorithm))

        with ThreadPoolExecutor(max_workers=4) as pool:
            fingerprints = list(pool.map(wrap_once, range(12)))
            created = list(pool.map(generate_once, range(8)))
        assert fingerprints == [material.fingerprint] * 12
        assert len({m.handle for m in created}) == 8
        for item in created:
            assert source.describe(item.handle).fingerprint == item.fingerprint
