"""Start-up of the Python processes the tests start: tests/conftest.py puts this directory first
on their PYTHONPATH and names the suite's RSA key pool (tests/fixtures/rsa-pool) in
KEYPLAN_TEST_RSA_POOL, and the file that keeps the processes' turn in KEYPLAN_TEST_RSA_TURN.

The emulators embedded in a keyplan process that a test runs (the kill tests, the CI scripts, the
throttling runs) make RSA wrapping keys, import-job keys and key-exchange keys of 3,072 or 4,096
bits: 0.3 to 3 s of CPU each, in nearly every such process. There they come from the pool,
handed out in turn across all these processes (a counter the processes share), so keys handed
out one after the other differ, as a cloud's would (without a turn file, a process takes its
keys from a random place in the pool). keyplan's own keys (a key source's RSA
material) and every other caller still get fresh ones.
"""

from __future__ import annotations

import os


def _emulators_take_keys_from(pool: str, turn_file: str | None) -> None:
    import fcntl
    import random
    import sys
    from pathlib import Path
    from typing import Any

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    generate = rsa.generate_private_key
    directory = Path(pool)
    pool_size = 16  # as tests/conftest.py's pool
    start = random.randrange(pool_size)
    taken = [0]

    def next_turn() -> int:
        if turn_file is None:
            taken[0] += 1
            return (start + taken[0]) % pool_size
        with open(turn_file, "a+") as turn:
            fcntl.flock(turn, fcntl.LOCK_EX)
            turn.seek(0)
            count = int(turn.read() or 0)
            turn.seek(0)
            turn.truncate()
            turn.write(str(count + 1))
        return count % pool_size

    def pooled(public_exponent: int, key_size: int, backend: Any = None) -> rsa.RSAPrivateKey:
        caller = str(sys._getframe(1).f_globals.get("__name__", ""))
        if key_size < 2048 or not (caller.startswith("providers.") and ".emulator" in caller):
            return generate(public_exponent=public_exponent, key_size=key_size)
        path = directory / f"{public_exponent}-{key_size}-{next_turn()}.pem"
        if path.exists():
            # a key the pool ships: its consistency was checked when it was made
            key = serialization.load_pem_private_key(path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
        return generate(public_exponent=public_exponent, key_size=key_size)

    pooled.__wrapped__ = generate  # type: ignore[attr-defined]
    rsa.generate_private_key = pooled


if os.environ.get("KEYPLAN_TEST_RSA_POOL"):
    try:
        _emulators_take_keys_from(os.environ["KEYPLAN_TEST_RSA_POOL"], os.environ.get("KEYPLAN_TEST_RSA_TURN"))
    except ImportError:  # a Python without cryptography (a tool the tests run): nothing to pool
        pass
