"""Type constraints of variables (`type = map(string)`): parsing them from their expression and
converting a given value to the declared type, as HCL does ("3" becomes 3 for a number,
a list becomes a set for set(T)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyplan.config.syntax import Call, Expr, Literal, Name
from keyplan.config.values import SetValue, as_text, is_number, parse_number, type_name

PRIMITIVES = ("string", "number", "bool")
COLLECTIONS = ("list", "set", "map")


@dataclass(frozen=True)
class TypeConstraint:
    kind: str  # "string", "number", "bool", "any", "list", "set", "map"
    element: TypeConstraint | None = None

    def __str__(self) -> str:
        return f"{self.kind}({self.element})" if self.element else self.kind

    @property
    def primitive(self) -> bool:
        return self.kind in PRIMITIVES


ANY = TypeConstraint("any")


class TypeSyntaxError(Exception):
    def __init__(self, message: str, expr: Expr) -> None:
        super().__init__(message)
        self.message = message
        self.expr = expr


def parse_type(expr: Expr) -> TypeConstraint:
    """`string`, `number`, `bool`, `any`, `list(T)`, `set(T)`, `map(T)` (quoted names are accepted
    for compatibility with older HCL)."""
    if isinstance(expr, Name) or (isinstance(expr, Literal) and isinstance(expr.value, str)):
        name = expr.name if isinstance(expr, Name) else str(expr.value)
        if name in PRIMITIVES or name == "any":
            return TypeConstraint(name)
        if name in COLLECTIONS:
            raise TypeSyntaxError(f"`{name}` needs an element type, like {name}(string)", expr)
        raise TypeSyntaxError(f"`{name}` is not a type", expr)
    if isinstance(expr, Call) and expr.name in COLLECTIONS:
        if len(expr.args) != 1:
            raise TypeSyntaxError(f"{expr.name}() takes exactly one element type", expr)
        return TypeConstraint(expr.name, parse_type(expr.args[0]))
    raise TypeSyntaxError("this is not a type expression", expr)


class ConversionError(Exception):
    """`path` says where inside the value the mismatch is ("", "[2]", "[\"app\"]")."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def convert(value: Any, constraint: TypeConstraint, path: str = "") -> Any:
    kind = constraint.kind
    if kind == "any" or value is None:
        return value
    if kind == "string":
        text = as_text(value)
        if text is None:
            raise ConversionError(f"a string is required, not a {type_name(value)}", path)
        return text
    if kind == "number":
        if is_number(value):
            return value
        number = parse_number(value) if isinstance(value, str) else None
        if number is None:
            raise ConversionError(f"a number is required, not a {type_name(value)}", path)
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ConversionError(f"a bool is required, not a {type_name(value)}", path)
    element = constraint.element or ANY
    if kind in ("list", "set"):
        if not isinstance(value, list | tuple):
            raise ConversionError(f"a {kind} is required, not a {type_name(value)}", path)
        items = [convert(item, element, f"{path}[{index}]") for index, item in enumerate(value)]
        return SetValue(items) if kind == "set" else items
    if not isinstance(value, dict):
        raise ConversionError(f"a map is required, not a {type_name(value)}", path)
    return {key: convert(item, element, f'{path}["{key}"]') for key, item in value.items()}
