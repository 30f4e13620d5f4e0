"""The tests' RSA key pool (tests/conftest.py, tests/fixtures/rsa-pool): complete, distinct, real
keys, handed out in turn so that keys made one after the other differ."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import _POOL_SIZE, POOL


def test_the_pool_holds_distinct_keys_of_each_size() -> None:
    moduli = set()
    for size in (2048, 3072, 4096):
        for index in range(_POOL_SIZE):
            data = (POOL / f"65537-{size}-{index}.pem").read_bytes()
            key = serialization.load_pem_private_key(data, None, unsafe_skip_rsa_key_validation=True)
            assert isinstance(key, rsa.RSAPrivateKey)
            numbers = key.private_numbers()
            assert key.key_size == size
            assert numbers.p * numbers.q == numbers.public_numbers.n
            assert numbers.public_numbers.e == 65537
            moduli.add(numbers.public_numbers.n)
    assert len(moduli) == 3 * _POOL_SIZE


def test_keys_made_one_after_the_other_differ() -> None:
    made = [rsa.generate_private_key(public_exponent=65537, key_size=3072) for _ in range(_POOL_SIZE)]
    assert len({key.public_key().public_numbers().n for key in made}) == _POOL_SIZE
