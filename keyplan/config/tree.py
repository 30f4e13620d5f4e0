"""The typed syntax tree of `*.kp.hcl` files: expressions, attributes, blocks and bodies, every
node carrying its place in the file. `keyplan.config.syntax` builds it; the evaluator walks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from keyplan.diagnostics import SourceRange
from keyplan.escaping import for_terminal


@dataclass(frozen=True)
class Expr:
    range: SourceRange


@dataclass(frozen=True)
class Literal(Expr):
    value: Any  # str, int, float, bool or None


@dataclass(frozen=True)
class Template(Expr):
    """A quoted string with `${...}` interpolations; parts are literal text or expressions."""

    parts: tuple[str | Expr, ...]


@dataclass(frozen=True)
class Name(Expr):
    """A bare identifier: the root of a reference (`var`, `local`, `each`) or a for-variable."""

    name: str


@dataclass(frozen=True)
class GetAttr(Expr):
    target: Expr
    name: str
    name_range: SourceRange


@dataclass(frozen=True)
class Index(Expr):
    target: Expr
    key: Expr


@dataclass(frozen=True)
class Splat(Expr):
    """`list[*].attr` or `list.*.attr`: apply `steps` to every element."""

    target: Expr
    steps: tuple[tuple[str, Expr | str], ...]  # ("attr", name) or ("index", expr)


@dataclass(frozen=True)
class TupleExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class ObjectItem:
    key: Expr  # a bare identifier key is a Literal of its name
    value: Expr


@dataclass(frozen=True)
class ObjectExpr(Expr):
    items: tuple[ObjectItem, ...]


@dataclass(frozen=True)
class Call(Expr):
    name: str
    name_range: SourceRange
    args: tuple[Expr, ...]
    expand_last: bool = False


@dataclass(frozen=True)
class Conditional(Expr):
    condition: Expr
    if_true: Expr
    if_false: Expr


@dataclass(frozen=True)
class Binary(Expr):
    operator: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Unary(Expr):
    operator: str
    operand: Expr


@dataclass(frozen=True)
class ForExpr(Expr):
    key_var: str | None
    value_var: str
    collection: Expr
    key: Expr | None  # None for the list form `[for ...]`
    value: Expr
    condition: Expr | None
    group: bool = False


@dataclass(frozen=True)
class Unsupported(Expr):
    """A construct keyplan does not evaluate (template directives, interpolating heredocs)."""

    what: str


@dataclass(frozen=True)
class Attribute:
    name: str
    name_range: SourceRange
    expr: Expr
    range: SourceRange  # from the name to the end of the value


@dataclass(frozen=True)
class Block:
    type: str
    labels: tuple[str, ...]
    label_ranges: tuple[SourceRange, ...]
    body: Body
    range: SourceRange  # the block type's name
    end_range: SourceRange  # the closing brace


@dataclass(frozen=True)
class Body:
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()


def quoted(text: str) -> str:
    """A string as it would be written in HCL, for messages (control characters escaped)."""
    return for_terminal(json.dumps(text, ensure_ascii=False))
