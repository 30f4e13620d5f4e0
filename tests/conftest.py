"""Suite-wide test set-up.

RSA keys of 3072 and 4096 bits take a second or more each to generate, and the emulators make
one for every wrapping key, import job and key-exchange key of every test (measured: 44% of the
CPU time of the AWS and Google end-to-end tests). Inside the test processes they come from a pool
made once per process instead: each size has 16 distinct keys, handed out in turn, so keys made
one after the other still differ. 2048-bit keys are cheap and stay fresh. keyplan processes the
tests start (the kill and CI-script tests) generate their own. A forked copy of a test process
(the crash suite's applies) takes its keys in turn from what the process made before the fork,
when it made any, so that a hundred forks do not each make keys anew.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

_POOL_SIZE = 16
_generate = rsa.generate_private_key
_pools: dict[tuple[int, int], Iterator[rsa.RSAPrivateKey]] = {}
_made: dict[tuple[int, int], list[rsa.RSAPrivateKey]] = {}
_lock = threading.Lock()
_OWNER = os.getpid()


def _pooled(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
    if key_size < 3072:
        return _generate(public_exponent=public_exponent, key_size=key_size)
    size = (public_exponent, key_size)
    with _lock:
        made = _made.setdefault(size, [])
        if len(made) < _POOL_SIZE and not (made and os.getpid() != _OWNER):
            key = _generate(public_exponent=public_exponent, key_size=key_size)
            made.append(key)
            return key
        if size not in _pools:
            _pools[size] = itertools.cycle(made)
        return next(_pools[size])


rsa.generate_private_key = _pooled
