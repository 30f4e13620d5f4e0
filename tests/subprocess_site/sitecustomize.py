"""Start-up of the Python processes the tests start: tests/conftest.py puts this directory first
on their PYTHONPATH and names the suite's RSA key pool (tests/conftest.py) in
KEYPLAN_TEST_RSA_POOL.

The emulators embedded in a keyplan process that a test runs (the kill tests, the CI scripts, the
throttling runs) make RSA wrapping keys, import-job keys and key-exchange keys of 3,072 or 4,096
bits: 0.3 to 3 s of CPU each, in nearly every such process. There they come from the pool,
handed out in turn across all these processes (a counter the processes share), so keys handed
out one after the other differ, as a cloud's would. keyplan's own keys (a key source's RSA
material) and every other caller still get fresh ones.
"""

from __future__ import annotations

import os


def _emulators_take_keys_from(pool: str) -> None:
    import fcntl
    import sys
    import tempfile
    from pathlib import Path
    from typing import Any

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    generate = rsa.generate_private_key
    directory = Path(pool)
    pool_size = 16  # as tests/conftest.py's pool

    def next_turn() -> int:
        with open(directory / "emulator-turn", "a+") as turn:
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
            # the pool's own file (tests/conftest.py): its consistency was checked when it was made
            key = serialization.load_pem_private_key(path.read_bytes(), None, unsafe_skip_rsa_key_validation=True)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
        key = generate(public_exponent=public_exponent, key_size=key_size)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        handle, temporary = tempfile.mkstemp(dir=directory)
        with os.fdopen(handle, "wb") as out:
            out.write(pem)
        os.replace(temporary, path)
        return key

    pooled.__wrapped__ = generate  # type: ignore[attr-defined]
    rsa.generate_private_key = pooled


if os.environ.get("KEYPLAN_TEST_RSA_POOL"):
    try:
        _emulators_take_keys_from(os.environ["KEYPLAN_TEST_RSA_POOL"])
    except ImportError:  # a Python without cryptography (a tool the tests run): nothing to pool
        pass
