"""The functions `*.kp.hcl` expressions may call (`merge(...)`, `setproduct(...)`, `format(...)` …),
with the same meaning as the HCL functions of the same name.

Each function checks its own arguments and reports a misuse as a `FunctionError` naming the
argument at fault; the evaluator turns that into a diagnostic at that argument's place.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from keyplan.config.values import (
    SetValue,
    as_text,
    canonical_json,
    is_number,
    number_text,
    parse_number,
    type_name,
    values_equal,
)

# Evaluation limits, far beyond any real key configuration, so that no expression can exhaust
# memory or time: the longest string, the most elements in one value, the widest format verb.
MAX_STRING_CHARS = 1_048_576
MAX_ELEMENTS = 100_000
MAX_FORMAT_WIDTH = 1_000

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors become diagnostics, not lines on stderr
_RE2_OPTIONS.max_mem = 8 << 20  # bytes for one compiled pattern


class FunctionError(Exception):
    """A function was called with arguments it cannot work with. `argument` is the 0-based
    index of the argument at fault, when one is."""

    def __init__(self, message: str, argument: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.argument = argument


@dataclass(frozen=True)
class Function:
    name: str
    signature: str  # as shown in messages, e.g. "lookup(map, key, default)"
    min_args: int
    max_args: int | None  # None: any number
    call: Callable[[list[Any]], Any]


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _string(args: list[Any], index: int, what: str = "a string") -> str:
    text = as_text(args[index])
    if text is None:
        raise FunctionError(f"argument {index + 1} must be {what}, not a {type_name(args[index])}", index)
    return text


def _number(args: list[Any], index: int) -> int | float:
    value = args[index]
    if is_number(value):
        return value  # type: ignore[no-any-return]
    number = parse_number(value) if isinstance(value, str) else None
    if number is None:
        raise FunctionError(f"argument {index + 1} must be a number, not a {type_name(value)}", index)
    return number


def _sequence(args: list[Any], index: int) -> list[Any]:
    value = args[index]
    if isinstance(value, list | tuple):
        return list(value)
    raise FunctionError(f"argument {index + 1} must be a list or set, not a {type_name(value)}", index)


def _mapping(args: list[Any], index: int) -> dict[str, Any]:
    value = args[index]
    if isinstance(value, dict):
        return value
    raise FunctionError(f"argument {index + 1} must be a map, not a {type_name(value)}", index)


# ---------------------------------------------------------------------------------------------
# Collections
# ---------------------------------------------------------------------------------------------


def _toset(args: list[Any]) -> SetValue:
    items = _sequence(args, 0)
    kinds = {type_name(item) for item in items if item is not None}
    if len(kinds) > 1 and kinds <= {"string", "number", "bool"}:
        # Mixed primitives unify to strings, as HCL does.
        items = [as_text(item) for item in items]
    elif len(kinds) > 1:
        raise FunctionError("all elements of a set must have the same type", 0)
    if any(item is None for item in items):
        raise FunctionError("a set cannot contain null", 0)
    return SetValue(items)


def _tolist(args: list[Any]) -> list[Any]:
    return _sequence(args, 0)


def _tomap(args: list[Any]) -> dict[str, Any]:
    return dict(_mapping(args, 0))


def _tostring(args: list[Any]) -> str | None:
    if args[0] is None:
        return None
    return _string(args, 0, "a string, number or bool")


def _setproduct(args: list[Any]) -> Any:
    sequences = [_sequence(args, i) for i in range(len(args))]
    if math.prod(len(sequence) for sequence in sequences) > MAX_ELEMENTS:
        raise FunctionError(f"the product would have more than {MAX_ELEMENTS:,} elements (value too large)", None)
    product = [list(combination) for combination in itertools.product(*sequences)]
    if all(isinstance(arg, SetValue) for arg in args):
        return SetValue(product)
    return product


def _merge(args: list[Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for index, arg in enumerate(args):
        if arg is None:
            continue
        merged.update(_mapping(args, index))
    return merged


def _concat(args: list[Any]) -> list[Any]:
    result: list[Any] = []
    for index in range(len(args)):
        result.extend(_sequence(args, index))
    return result


def _flatten(args: list[Any]) -> list[Any]:
    def walk(items: list[Any]) -> list[Any]:
        flat: list[Any] = []
        for item in items:
            if isinstance(item, list | tuple):
                flat.extend(walk(list(item)))
            else:
                flat.append(item)
        return flat

    return walk(_sequence(args, 0))


def _keys(args: list[Any]) -> list[str]:
    return sorted(_mapping(args, 0))


def _values(args: list[Any]) -> list[Any]:
    mapping = _mapping(args, 0)
    return [mapping[key] for key in sorted(mapping)]


def _lookup(args: list[Any]) -> Any:
    mapping = _mapping(args, 0)
    key = _string(args, 1)
    if key in mapping:
        return mapping[key]
    if len(args) == 3:
        return args[2]
    raise FunctionError(
        f"the map has no element {json.dumps(key)} and no default was given (add a third argument)", 1
    )


def _length(args: list[Any]) -> int:
    value = args[0]
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise FunctionError(f"argument 1 must be a string, list, set or map, not a {type_name(value)}", 0)


def _contains(args: list[Any]) -> bool:
    return any(values_equal(item, args[1]) for item in _sequence(args, 0))


def _distinct(args: list[Any]) -> list[Any]:
    seen: set[str] = set()
    result: list[Any] = []
    for item in _sequence(args, 0):
        key = canonical_json(item)
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


def _sort(args: list[Any]) -> list[str]:
    items = _sequence(args, 0)
    texts = [as_text(item) for item in items]
    if any(text is None for text in texts):
        raise FunctionError("every element must be a string, number or bool", 0)
    return sorted(text for text in texts if text is not None)


def _element(args: list[Any]) -> Any:
    items = _sequence(args, 0)
    if not items:
        raise FunctionError("cannot take an element of an empty list", 0)
    index = _number(args, 1)
    return items[int(index) % len(items)]


def _coalesce(args: list[Any]) -> Any:
    for arg in args:
        if arg is not None and arg != "":
            return arg
    raise FunctionError("every argument is null or an empty string", None)


def _range(args: list[Any]) -> list[int | float]:
    numbers = [_number(args, i) for i in range(len(args))]
    start: int | float = 0 if len(numbers) == 1 else numbers[0]
    stop = numbers[0] if len(numbers) == 1 else numbers[1]
    step: int | float = numbers[2] if len(numbers) == 3 else 1
    if step == 0:
        raise FunctionError("the step must not be zero", 2)
    result: list[int | float] = []
    current = start
    while (step > 0 and current < stop) or (step < 0 and current > stop):
        result.append(current)
        current += step
        if len(result) > 1024:
            raise FunctionError("more than 1024 elements", None)
    return result


# ---------------------------------------------------------------------------------------------
# Strings
# ---------------------------------------------------------------------------------------------


def _lower(args: list[Any]) -> str:
    return _string(args, 0).lower()


def _upper(args: list[Any]) -> str:
    return _string(args, 0).upper()


def _trimspace(args: list[Any]) -> str:
    return _string(args, 0).strip()


def _join(args: list[Any]) -> str:
    separator = _string(args, 0)
    parts: list[str] = []
    for index in range(1, len(args)):
        for item in _sequence(args, index):
            text = as_text(item)
            if text is None:
                raise FunctionError(f"argument {index + 1} must hold only strings, not a {type_name(item)}", index)
            parts.append(text)
    if len(separator) * max(len(parts) - 1, 0) + sum(len(part) for part in parts) > MAX_STRING_CHARS:
        raise FunctionError(f"the result would be longer than {MAX_STRING_CHARS:,} characters (value too large)", None)
    return separator.join(parts)


def _split(args: list[Any]) -> list[str]:
    separator, text = _string(args, 0), _string(args, 1)
    if separator == "":
        raise FunctionError("the separator must not be empty", 0)
    return text.split(separator)


def _replace(args: list[Any]) -> str:
    text, pattern, replacement = _string(args, 0), _string(args, 1), _string(args, 2)
    if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
        # RE2 matches in time linear in the text: no pattern can make replace() hang, unlike a
        # backtracking engine on `(a+)+$`. It leaves out what needs backtracking (backreferences,
        # lookaround), which is refused with a diagnostic.
        try:
            regex = re2.compile(pattern[1:-1], _RE2_OPTIONS)
        except re2.error as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise FunctionError(
                f"argument 2 is not a regular expression keyplan can run ({reason}); backreferences and lookaround "
                "are not supported",
                1,
            ) from None
        matches = sum(1 for _ in regex.finditer(text))
        _check_replacement_size(text, matches, replacement, groups=True)
        # HCL writes capture groups as $1; RE2, like Python, as \1.
        return str(regex.sub(re.sub(r"\$(\d+)", r"\\\1", replacement.replace("\\", "\\\\")), text))
    _check_replacement_size(text, text.count(pattern), replacement, groups=False)
    return text.replace(pattern, replacement)


def _check_replacement_size(text: str, matches: int, replacement: str, *, groups: bool) -> None:
    # Each match adds at most the replacement, whose group references add at most the text each.
    per_match = len(replacement) + (len(text) * replacement.count("$") if groups else 0)
    if len(text) + matches * per_match > MAX_STRING_CHARS:
        raise FunctionError(f"the result would be longer than {MAX_STRING_CHARS:,} characters (value too large)", None)


_VERB = re.compile(r"%([-+ 0#]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _format(args: list[Any]) -> str:
    template = _string(args, 0)
    values = args[1:]
    position = 0
    output: list[str] = []
    last = 0
    for match in _VERB.finditer(template):
        output.append(template[last : match.start()])
        last = match.end()
        flags, width, precision, verb = match.groups()
        if any(part is not None and (len(part) > 4 or int(part) > MAX_FORMAT_WIDTH) for part in (width, precision)):
            raise FunctionError(f"widths and precisions are at most {MAX_FORMAT_WIDTH} (%{match.group(0)[1:]})", 0)
        if verb == "%":
            output.append("%")
            continue
        if position >= len(values):
            raise FunctionError(f"the format string has more verbs than there are values (at %{verb})", 0)
        value = values[position]
        position += 1
        text = _format_one(verb, value, precision, position)
        if width:
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width), "0" if "0" in flags else " ")
        output.append(text)
    output.append(template[last:])
    if position < len(values):
        raise FunctionError(f"too many values for the format string ({len(values)} given, {position} used)", 0)
    return "".join(output)


def _format_one(verb: str, value: Any, precision: str | None, position: int) -> str:
    index = position  # the value's argument index is its 1-based position after the format
    if verb in ("s", "v"):
        text = as_text(value)
        if text is None:
            if verb == "v":
                return json.dumps(value, default=list, ensure_ascii=False)
            raise FunctionError(f"%s needs a string, number or bool, not a {type_name(value)}", index)
        return text
    if verb == "q":
        text = as_text(value)
        if text is None:
            raise FunctionError(f"%q needs a string, not a {type_name(value)}", index)
        return json.dumps(text, ensure_ascii=False)
    if verb == "t":
        if not isinstance(value, bool):
            raise FunctionError(f"%t needs a bool, not a {type_name(value)}", index)
        return "true" if value else "false"
    number = value if is_number(value) else (parse_number(value) if isinstance(value, str) else None)
    if number is None:
        raise FunctionError(f"%{verb} needs a number, not a {type_name(value)}", index)
    if verb == "d":
        if isinstance(number, float) and not number.is_integer():
            raise FunctionError("%d needs a whole number", index)
        return str(int(number))
    if verb in ("f", "e", "E", "g"):
        return f"{float(number):.{precision or 6}{verb}}" if verb != "g" else number_text(number)
    if verb in ("x", "X", "o", "b"):
        return format(int(number), verb)
    raise FunctionError(f"unsupported format verb %{verb}; use %s, %d, %q, %v, %t, %f or %x", 0)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("sensitive", "sensitive(value)", 1, 1, lambda args: args[0]),
        Function("nonsensitive", "nonsensitive(value)", 1, 1, lambda args: args[0]),
        Function("toset", "toset(list)", 1, 1, _toset),
        Function("tolist", "tolist(set_or_list)", 1, 1, _tolist),
        Function("tomap", "tomap(map)", 1, 1, _tomap),
        Function("tostring", "tostring(value)", 1, 1, _tostring),
        Function("setproduct", "setproduct(set_or_list, set_or_list, ...)", 2, None, _setproduct),
        Function("merge", "merge(map, map, ...)", 0, None, _merge),
        Function("concat", "concat(list, list, ...)", 1, None, _concat),
        Function("flatten", "flatten(list)", 1, 1, _flatten),
        Function("keys", "keys(map)", 1, 1, _keys),
        Function("values", "values(map)", 1, 1, _values),
        Function("lookup", "lookup(map, key, default)", 2, 3, _lookup),
        Function("length", "length(value)", 1, 1, _length),
        Function("contains", "contains(list, value)", 2, 2, _contains),
        Function("distinct", "distinct(list)", 1, 1, _distinct),
        Function("sort", "sort(list)", 1, 1, _sort),
        Function("element", "element(list, index)", 2, 2, _element),
        Function("coalesce", "coalesce(value, value, ...)", 1, None, _coalesce),
        Function("range", "range(start, limit, step)", 1, 3, _range),
        Function("lower", "lower(string)", 1, 1, _lower),
        Function("upper", "upper(string)", 1, 1, _upper),
        Function("trimspace", "trimspace(string)", 1, 1, _trimspace),
        Function("format", "format(format_string, values...)", 1, None, _format),
        Function("join", "join(separator, list)", 2, None, _join),
        Function("split", "split(separator, string)", 2, 2, _split),
        Function("replace", "replace(string, substring, replacement)", 3, 3, _replace),
    ]
}
