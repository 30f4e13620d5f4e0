"""`SecretBytes`: key material as a type that refuses to be printed, logged, pickled,
serialised or compared by accident. The only way to the bytes is `reveal()`, which a reviewer
can grep for.
"""

from __future__ import annotations

from typing import Any, NoReturn

_REDACTED = "SecretBytes(<redacted>)"


class SecretBytes:
    __slots__ = ("_value",)

    def __init__(self, value: bytes | bytearray) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("SecretBytes holds bytes")
        self._value = bytearray(value)

    def reveal(self) -> bytes:
        """The material in the clear. Call it only where the bytes go straight into a cipher."""
        return bytes(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def wipe(self) -> None:
        """Overwrite the buffer this object holds (copies handed out by `reveal` are not reached)."""
        for i in range(len(self._value)):
            self._value[i] = 0

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __bytes__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be converted to bytes implicitly; use reveal() where a cipher needs it")

    def __eq__(self, other: object) -> NoReturn:
        raise TypeError("SecretBytes are not compared; compare fingerprints instead")

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled or serialised")

    def __getstate__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled or serialised")

    def __iter__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be iterated")

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretBytes:
        return SecretBytes(self._value)
