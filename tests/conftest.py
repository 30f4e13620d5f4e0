"""Suite-wide test set-up.

RSA keys of 3072 and 4096 bits take a second or more each to generate, and the emulators make
one for every wrapping key, import job and key-exchange key of every test (measured: 44% of the
CPU time of the AWS and Google end-to-end tests); 2048-bit keys take about 50 ms, and the suite
makes a few hundred (wrapping keys, Key Vault RSA keys, the PKCS#11 probe, RSA material). Inside
the test processes they come from a pool instead: each size has 16 distinct keys, handed out in
turn, so keys made one after the other still differ. The pool ships with the tests
(tests/fixtures/rsa-pool: throwaway keys made for the tests, never a secret of anything): making
it takes about 15 s of CPU, and every test worker of a fresh clone used to make it at once. Smaller
keys stay fresh. A forked copy of a test process (the crash suite's applies) takes its keys in
turn from what the process loaded before the fork, when it loaded any, so that a hundred forks do
not each load keys anew. In the keyplan processes the tests start (the kill and CI-script tests),
the embedded emulators take theirs from the same pool (tests/subprocess_site/sitecustomize.py),
and keyplan's own keys are made fresh.

Loading an RSA private key checks it (primality tests of its factors): 0.04 s for 2048 bits,
0.13 s for 3072, 0.33 s for 4096, and a test's few pooled keys are loaded again and again (to
fingerprint them in the key source, in the emulator that unwrapped them, to prove them). Inside
the test processes a load of the same bytes returns the key loaded (and checked) the first
time; bytes never loaded, or that failed to load, go through the check as before.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_POOL_SIZE = 16
POOL = Path(__file__).parent / "fixtures" / "rsa-pool"
_generate = getattr(rsa.generate_private_key, "__wrapped__", rsa.generate_private_key)  # not subprocess_site's
_pools: dict[tuple[int, int], Iterator[rsa.RSAPrivateKey]] = {}
_made: dict[tuple[int, int], list[rsa.RSAPrivateKey]] = {}
_lock = threading.Lock()
_OWNER = os.getpid()


def pytest_configure(config: pytest.Config) -> None:
    # the keyplan processes the tests start: their emulators take keys from the pool too, in a
    # turn kept in pytest's cache directory (without the cache plugin, in a turn of their own)
    os.environ["KEYPLAN_TEST_RSA_POOL"] = str(POOL)
    cache = getattr(config, "cache", None)
    if cache is not None:
        os.environ["KEYPLAN_TEST_RSA_TURN"] = str(cache.mkdir("rsa-pool") / "emulator-turn")
    site = str(Path(__file__).parent / "subprocess_site")
    if site not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))


def _pool_key(public_exponent: int, key_size: int, index: int) -> rsa.RSAPrivateKey:
    """The pool's `index`-th key of this size, or a fresh key for a size the pool lacks."""
    path = POOL / f"{public_exponent}-{key_size}-{index}.pem"
    if path.exists():
        # A key the pool ships (checked when it was made): OpenSSL's consistency check of an RSA
        # key (primality tests of its factors) costs 0.1 to 0.3 s of CPU per key and proves nothing here.
        key = serialization.load_pem_private_key(path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    return _generate(public_exponent=public_exponent, key_size=key_size)


def _pooled(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
    if key_size < 2048:
        return _generate(public_exponent=public_exponent, key_size=key_size)
    size = (public_exponent, key_size)
    with _lock:
        made = _made.setdefault(size, [])
        if len(made) < _POOL_SIZE and not (made and os.getpid() != _OWNER):
            key = _pool_key(public_exponent, key_size, len(made))
            made.append(key)
            return key
        if size not in _pools:
            _pools[size] = itertools.cycle(made)
        return next(_pools[size])


rsa.generate_private_key = _pooled


_load_der = serialization.load_der_private_key
_load_pem = serialization.load_pem_private_key


@functools.lru_cache(maxsize=1024)
def _loaded(pem: bool, data: bytes, password: bytes | None, unsafe_skip_rsa_key_validation: bool) -> Any:
    load = _load_pem if pem else _load_der
    return load(data, password, unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation)


def _load_der_once(data: Any, password: Any, backend: Any = None, *, unsafe_skip_rsa_key_validation: bool = False) -> Any:
    return _loaded(False, bytes(data), None if password is None else bytes(password), unsafe_skip_rsa_key_validation)


def _load_pem_once(data: Any, password: Any, backend: Any = None, *, unsafe_skip_rsa_key_validation: bool = False) -> Any:
    return _loaded(True, bytes(data), None if password is None else bytes(password), unsafe_skip_rsa_key_validation)


serialization.load_der_private_key = _load_der_once
serialization.load_pem_private_key = _load_pem_once


# The software keystore derives its master key from a passphrase with scrypt (2^15 rounds: about
# 85 ms of CPU), on every open of a passphrase-protected keystore, and the tests open the same few
# keystores again and again. Inside the test processes a derivation of the same passphrase with
# the same salt and parameters returns the bytes derived the first time; anything else (another
# passphrase, salt or parameters, or parameters scrypt refuses) goes to scrypt as before.
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt  # noqa: E402

import providers.software.unlock as _unlock  # noqa: E402


@functools.lru_cache(maxsize=256)
def _derived(salt: bytes, length: int, n: int, r: int, p: int, passphrase: bytes) -> bytes:
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(passphrase)


class _ScryptOnce:
    def __init__(self, salt: bytes, length: int, n: int, r: int, p: int, backend: Any = None) -> None:
        Scrypt(salt=salt, length=length, n=n, r=r, p=p)  # refuses what scrypt refuses
        self._parameters = (bytes(salt), length, n, r, p)

    def derive(self, key_material: bytes) -> bytes:
        return _derived(*self._parameters, bytes(key_material))


_unlock.Scrypt = _ScryptOnce  # type: ignore[misc,assignment]
