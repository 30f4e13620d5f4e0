"""The values expressions evaluate to, as plain Python data.

string -> str, number -> int or float (int whenever the number is whole), bool -> bool,
null -> None, list/tuple -> list, map/object -> dict, set -> `SetValue` (a tuple kept
de-duplicated in a fixed order, so that sets iterate the same way on every run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


class SetValue(tuple[Any, ...]):
    """An HCL set: unique elements in canonical order (strings sort lexicographically)."""

    __slots__ = ()

    def __new__(cls, items: Iterable[Any] = ()) -> SetValue:
        unique: dict[str, Any] = {}
        for item in items:
            unique.setdefault(canonical_json(item), item)
        ordered = sorted(unique.items(), key=lambda pair: _sort_key(pair[1], pair[0]))
        return super().__new__(cls, tuple(value for _, value in ordered))


def _sort_key(value: Any, encoded: str) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (0, encoded)
    if isinstance(value, int | float):
        return (1, float(value))
    if isinstance(value, str):
        return (2, value)
    return (3, encoded)


def plain(value: Any) -> Any:
    """Sets become lists: the JSON-compatible form stored in the configuration model."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, SetValue):
        return "set"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normalize_number(value: float | int) -> int | float:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def number_text(value: int | float) -> str:
    value = normalize_number(value)
    return str(value) if isinstance(value, int) else repr(value)


def parse_number(text: str) -> int | float | None:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return normalize_number(number)


def as_text(value: Any) -> str | None:
    """The string form of a primitive value, as string templates and `tostring` produce it;
    None for null and collections, which have no string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return number_text(value)
    return None


def values_equal(left: Any, right: Any) -> bool:
    """HCL equality: values of different types are never equal (so `1 == true` is false)."""
    if is_number(left) and is_number(right):
        return bool(float(left) == float(right))
    if type_name(left) != type_name(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(values_equal(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(values_equal(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def leaves(value: Any) -> Iterable[Any]:
    """Every primitive inside a value."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from leaves(item)
    else:
        yield value
