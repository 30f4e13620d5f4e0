"""The limits on evaluation: numbers of at most `MAX_BITS` bits and finite floats, and values of
at most `MAX_ELEMENTS` elements and `MAX_STRING_CHARS` characters, checked as a value grows so
that a configuration doubling a value through locals is refused before it costs memory.
"""

from __future__ import annotations

import math
from typing import Any

from keyplan.config.failures import EvaluationError, fail
from keyplan.config.functions import MAX_ELEMENTS, MAX_STRING_CHARS
from keyplan.diagnostics import SourceRange

MAX_BITS = 1024  # whole numbers up to about 1.8e308, like the largest float
MAX_FILE_BYTES = 64 * 2**20  # a configuration or variables file (a generated one for 100,000 keys is about 30 MiB)


def out_of_range(range: SourceRange) -> EvaluationError:
    return fail(
        "Number out of range",
        f"The result is beyond what keyplan computes with (whole numbers of at most {MAX_BITS} bits, floats up to "
        "about 1.8e308). Use smaller numbers.",
        range,
    )


def in_range(number: int | float, range: SourceRange) -> int | float:
    if isinstance(number, float) and not math.isfinite(number):
        raise out_of_range(range)
    if isinstance(number, int) and number.bit_length() > MAX_BITS:
        raise out_of_range(range)
    return number


class Budget:
    """The size of a value being built, counted as it grows: elements (every list, map and
    leaf) and string characters, each against its limit."""

    def __init__(self, range: SourceRange) -> None:
        self.range = range
        self.elements = 0
        self.characters = 0

    def spend(self, value: Any) -> None:
        pending = [value]
        while pending:
            item = pending.pop()
            self.elements += 1
            if isinstance(item, str):
                self.characters += len(item)
            elif isinstance(item, dict):
                self.characters += sum(len(k) for k in item)
                pending.extend(item.values())
            elif isinstance(item, list | tuple):
                pending.extend(item)
            if self.elements > MAX_ELEMENTS or self.characters > MAX_STRING_CHARS:
                raise fail(
                    "Value too large",
                    f"This expression builds a value of more than {MAX_ELEMENTS:,} elements or {MAX_STRING_CHARS:,} "
                    "characters, far more than any key configuration needs; it may double itself through locals. "
                    "Build a smaller value.",
                    self.range,
                )


def check_size(value: Any, range: SourceRange) -> Any:
    """`value`, when it is within the evaluation limits; the check stops as soon as it is not,
    so a value that shares its parts many times over costs no more than the limit to check."""
    Budget(range).spend(value)
    return value
