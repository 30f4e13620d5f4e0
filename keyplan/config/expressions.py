"""The expression evaluator: turns a syntax tree expression into a value within a `Scope`
(declared variables, locals, sources and providers, and `each` inside a for_each block).

An expression that cannot be evaluated raises `EvaluationError` carrying one diagnostic at the
place of the offending sub-expression; callers collect it and go on with the next attribute.

Why this file is long: it is one class, `Evaluator`, with one method per kind of syntax node
(found by the node's class name) and the helpers those share; its length follows HCL's
expression grammar. The limits it enforces live in `config/bounds.py`, its failures in
`config/failures.py`, the functions in `config/functions.py`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from keyplan.config.bounds import MAX_BITS, Budget, check_size, in_range, out_of_range
from keyplan.config.failures import FAILED, EvaluationError, fail
from keyplan.config.functions import FUNCTIONS, FunctionError
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import (
    Binary,
    Call,
    Conditional,
    Expr,
    ForExpr,
    GetAttr,
    Index,
    Literal,
    Name,
    ObjectExpr,
    Splat,
    Template,
    TupleExpr,
    Unary,
    Unsupported,
    quoted,
)
from keyplan.config.values import (
    SetValue,
    as_text,
    canonical_json,
    is_number,
    leaves,
    normalize_number,
    parse_number,
    type_name,
    values_equal,
)
from keyplan.diagnostics import Diagnostic, SourceRange

REFERENCE_ROOTS = ("var", "local", "each", "source", "provider", "keyplan")


@dataclass(frozen=True)
class Scope:
    variables: dict[str, Any] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    sources: frozenset[str] = frozenset()  # "software.main"
    providers: frozenset[str] = frozenset()  # KIND.NAME
    each: tuple[str, Any] | None = None
    where: str = "here"  # "in a variable default", … for the `each` message
    bindings: dict[str, Any] = field(default_factory=dict)  # for-expression variables
    # Canonical JSON of the leaves of every sensitive value: of the sensitive variables, and of
    # each value derived from one as it is evaluated (shared by all scopes of one load).
    sensitive: set[str] | frozenset[str] = field(default_factory=set)
    sensitive_variables: frozenset[str] = frozenset()  # names of variables declared sensitive
    sensitive_locals: frozenset[str] = frozenset()  # names of locals derived from a sensitive value
    workspace: str = "default"  # keyplan.workspace: the current state workspace


@dataclass
class _Marks:
    """Whether the expression being evaluated read a sensitive value. Shared with the evaluators
    of nested for expressions; whole-expression granularity, so a value computed from a
    sensitive one in any way (template, function, condition, for expression) is sensitive."""

    sensitive: bool = False


def show(value: Any, scope: Scope) -> str:
    """A value as it may appear in a message: sensitive values are never shown."""
    if any(canonical_json(leaf) in scope.sensitive for leaf in leaves(value)):
        return "(sensitive value)"
    text = canonical_json(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Evaluator:
    def __init__(self, scope: Scope, marks: _Marks | None = None) -> None:
        self.scope = scope
        self._marks = marks if marks is not None else _Marks()

    def evaluate(self, expr: Expr) -> Any:
        method = getattr(self, f"_{type(expr).__name__}")
        return method(expr)

    def evaluate_marked(self, expr: Expr) -> tuple[Any, bool]:
        """The value of a whole expression and whether it derives from a sensitive value; the
        leaves of a sensitive result join `scope.sensitive`, so messages never show them."""
        self._marks.sensitive = False
        value = check_size(self.evaluate(expr), expr.range)
        sensitive = self._marks.sensitive
        if sensitive and isinstance(self.scope.sensitive, set):
            self.scope.sensitive.update(canonical_json(leaf) for leaf in leaves(value) if leaf is not None)
        return value, sensitive

    def evaluate_all(self, exprs: tuple[Expr, ...] | list[Expr]) -> list[Any]:
        """Evaluate independent sub-expressions (list items, arguments, template parts) and
        report the problems of all of them, not only the first."""
        values: list[Any] = []
        problems: list[Diagnostic] = []
        failed = False
        for expr in exprs:
            try:
                values.append(self.evaluate(expr))
            except EvaluationError as exc:
                failed = True
                problems.extend(exc.diagnostics)
        if failed:
            raise EvaluationError(None, *problems)
        return values

    # -- literals and collections -------------------------------------------------------------

    def _Literal(self, expr: Literal) -> Any:
        return expr.value

    def _Template(self, expr: Template) -> str:
        pieces: list[str] = []
        values = iter(self.evaluate_all([part for part in expr.parts if isinstance(part, Expr)]))
        for part in expr.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = next(values)
            text = as_text(value)
            if text is None:
                raise fail(
                    "Invalid template interpolation value",
                    f"A {type_name(value)} cannot be inserted into a string. Interpolate a string, number or "
                    "bool instead, for example with join() for a list or lookup() for a map element.",
                    part.range,
                )
            pieces.append(text)
        text = "".join(pieces)
        check_size(text, expr.range)
        return text

    def _TupleExpr(self, expr: TupleExpr) -> list[Any]:
        return self.evaluate_all(expr.items)

    def _ObjectExpr(self, expr: ObjectExpr) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for item in expr.items:
            key = self.key_text(self.evaluate(item.key), item.key.range)
            if key in result:
                raise fail(
                    "Duplicate map key",
                    f"The key {quoted(key)} appears more than once in this map. Remove or rename one of them.",
                    item.key.range,
                )
            result[key] = self.evaluate(item.value)
        return result

    def key_text(self, key: Any, range: SourceRange) -> str:
        text = as_text(key)
        if text is None:
            raise fail(
                "Invalid map key",
                f"A map key must be a string, not a {type_name(key)}. Use a string expression as the key.",
                range,
            )
        return text

    def _Unsupported(self, expr: Unsupported) -> Any:
        raise fail(
            "Unsupported expression",
            f"keyplan does not evaluate {expr.what}. Rewrite it with a quoted string, a conditional "
            "(`cond ? a : b`) or a for expression.",
            expr.range,
        )

    # -- references ---------------------------------------------------------------------------

    def _Name(self, expr: Name) -> Any:
        if expr.name in self.scope.bindings:
            return self.scope.bindings[expr.name]
        if expr.name in REFERENCE_ROOTS:
            example = {"source": "source.software.main", "provider": "provider.KIND.NAME", "each": "each.key", "keyplan": "keyplan.workspace"}.get(
                expr.name, f"{expr.name}.NAME"
            )
            raise fail(
                "Invalid reference",
                f"`{expr.name}` on its own is not a value; it must be followed by a name, like {example}. "
                "Complete the reference.",
                expr.range,
            )
        candidates = list(self.scope.bindings) + list(REFERENCE_ROOTS)
        hint = did_you_mean(expr.name, candidates)
        raise fail(
            "Unknown name",
            f"There is nothing called `{expr.name}` here. Values are referenced as var.NAME, local.NAME, "
            f"each.key, each.value, source.KIND.NAME, provider.KIND.NAME or keyplan.workspace; a plain word is only valid "
            f"inside a for expression that declares it; quote it if you meant a string.{hint}",
            expr.range,
        )

    def _GetAttr(self, expr: GetAttr) -> Any:
        root = expr.target
        if isinstance(root, Name) and root.name not in self.scope.bindings:
            if root.name == "var":
                return self._lookup_declared(self.scope.variables, expr, "variable", "var")
            if root.name == "local":
                return self._lookup_declared(self.scope.locals, expr, "local value", "local")
            if root.name == "each":
                return self._each(expr)
            if root.name == "keyplan":
                return self._keyplan(expr)
            if root.name in ("source", "provider"):
                raise fail(
                    "Incomplete reference",
                    f"A {root.name} is referenced by kind and name, like {root.name}.{expr.name}.NAME. "
                    "Add the block's name.",
                    expr.range,
                )
        if (
            isinstance(root, GetAttr)
            and isinstance(root.target, Name)
            and root.target.name in ("source", "provider")
            and root.target.name not in self.scope.bindings
        ):
            return self._plugin_address(root.target.name, root.name, expr)
        target = self.evaluate(expr.target)
        return self.attribute_of(target, expr.name, expr.name_range)

    def _lookup_declared(self, table: dict[str, Any], expr: GetAttr, noun: str, prefix: str) -> Any:
        if expr.name not in table:
            block = "variable" if prefix == "var" else "locals"
            hint = did_you_mean(expr.name, table, render=prefix + ".{}")
            raise fail(
                f"Reference to undeclared {noun}",
                f"No {noun} named {quoted(expr.name)} is declared. Declare it in a `{block}` block, or correct "
                f"the name.{hint}",
                expr.range,
            )
        value = table[expr.name]
        if value is FAILED:
            raise EvaluationError(None)
        marked = self.scope.sensitive_variables if prefix == "var" else self.scope.sensitive_locals
        if expr.name in marked:
            self._marks.sensitive = True
        return value

    def _keyplan(self, expr: GetAttr) -> Any:
        if expr.name == "workspace":
            return self.scope.workspace
        raise fail(
            "Invalid keyplan attribute",
            f"`keyplan` has only `workspace` (the current state workspace), not `{expr.name}`."
            f"{did_you_mean(expr.name, ['workspace'], render='keyplan.{}')}",
            expr.range,
        )

    def _each(self, expr: GetAttr) -> Any:
        if self.scope.each is None:
            raise fail(
                "Reference to `each` outside for_each",
                f"each.{expr.name} is only available inside a key block that sets for_each, and it is used "
                f"{self.scope.where}. Add for_each to the block or remove the reference.",
                expr.range,
            )
        if expr.name == "key":
            return self.scope.each[0]
        if expr.name == "value":
            return self.scope.each[1]
        raise fail(
            "Invalid each attribute",
            f"`each` has only `key` and `value`, not `{expr.name}`.{did_you_mean(expr.name, ['key', 'value'], render='each.{}')}",
            expr.name_range,
        )

    def _plugin_address(self, root: str, kind: str, expr: GetAttr) -> str:
        address = f"{kind}.{expr.name}"
        declared = self.scope.sources if root == "source" else self.scope.providers
        if address not in declared:
            hint = did_you_mean(address, declared, render=root + ".{}")
            raise fail(
                f"Reference to undeclared {root}",
                f"No `{root} {quoted(kind)} {quoted(expr.name)}` block is declared. Declare it, or correct the "
                f"reference.{hint}",
                expr.range,
            )
        return address

    def attribute_of(self, target: Any, name: str, range: SourceRange) -> Any:
        if isinstance(target, dict):
            if name in target:
                return target[name]
            raise fail(
                "Unsupported attribute",
                f"This map has no element named {quoted(name)}.{did_you_mean(name, target)} Use an existing key, "
                "or lookup(map, key, default) for an optional one.",
                range,
            )
        raise fail(
            "Unsupported attribute",
            f"A {type_name(target)} has no attributes, so `.{name}` cannot be read from it. "
            "Attribute access works on maps and objects only.",
            range,
        )

    def _Index(self, expr: Index) -> Any:
        target = self.evaluate(expr.target)
        key = self.evaluate(expr.key)
        return self.index_of(target, key, expr.key.range)

    def index_of(self, target: Any, key: Any, range: SourceRange) -> Any:
        if isinstance(target, dict):
            text = as_text(key)
            if text is None:
                raise fail("Invalid index", f"A map is indexed by a string, not a {type_name(key)}.", range)
            if text not in target:
                raise fail(
                    "Invalid index",
                    f"The map has no element {show(text, self.scope)}.{did_you_mean(text, target)} Use an existing "
                    "key, or lookup(map, key, default) for an optional one.",
                    range,
                )
            return target[text]
        if isinstance(target, SetValue):
            raise fail(
                "Invalid index",
                "Elements of a set cannot be picked by index because a set has no order. Convert it with "
                "tolist() first, or iterate over it with a for expression.",
                range,
            )
        if isinstance(target, list | tuple):
            number = key if is_number(key) else (parse_number(key) if isinstance(key, str) else None)
            if number is None or (isinstance(number, float) and not number.is_integer()):
                raise fail("Invalid index", f"A list is indexed by a whole number, not a {type_name(key)}.", range)
            if not 0 <= int(number) < len(target):
                raise fail(
                    "Index out of range",
                    f"The list has {len(target)} elements, so index {int(number)} does not exist. Use an index "
                    f"from 0 to {len(target) - 1}.",
                    range,
                )
            return target[int(number)]
        raise fail("Invalid index", f"A {type_name(target)} cannot be indexed.", range)

    def _Splat(self, expr: Splat) -> list[Any]:
        target = self.evaluate(expr.target)
        if target is None:
            return []
        items = list(target) if isinstance(target, list | tuple) else [target]
        results = []
        for item in items:
            for kind, step in expr.steps:
                if kind == "attr" and isinstance(step, str):
                    item = self.attribute_of(item, step, expr.range)
                elif isinstance(step, Expr):
                    item = self.index_of(item, self.evaluate(step), step.range)
            results.append(item)
        return results

    # -- functions and operators --------------------------------------------------------------

    def _Call(self, expr: Call) -> Any:
        function = FUNCTIONS.get(expr.name)
        if function is None:
            raise fail(
                "Call to unknown function",
                f"There is no function named {quoted(expr.name)}.{did_you_mean(expr.name, FUNCTIONS)} The "
                f"available functions are: {', '.join(sorted(FUNCTIONS))}.",
                expr.name_range,
            )
        published = self._marks.sensitive
        args = self.evaluate_all(expr.args)
        if expr.name == "nonsensitive":
            self._marks.sensitive = published  # the explicit marker: this value may be shown and sent
        elif expr.name == "sensitive":
            self._marks.sensitive = True
        arg_ranges = [arg.range for arg in expr.args]
        if expr.expand_last and args:
            last = args.pop()
            if not isinstance(last, list | tuple):
                raise fail(
                    "Invalid expanding argument",
                    f"Only a list or set can be expanded with `...`, not a {type_name(last)}.",
                    arg_ranges[-1],
                )
            args.extend(last)
            arg_ranges[-1:] = [expr.args[-1].range] * len(last)
        if len(args) < function.min_args or (function.max_args is not None and len(args) > function.max_args):
            raise fail(
                "Wrong number of arguments",
                f"{expr.name}() was given {len(args)} argument{'s' if len(args) != 1 else ''}; it is called as "
                f"{function.signature}. Correct the arguments.",
                expr.range,
            )
        try:
            return check_size(function.call(args), expr.range)
        except FunctionError as exc:
            place = arg_ranges[exc.argument] if exc.argument is not None and exc.argument < len(arg_ranges) else expr.range
            raise fail(
                f"Invalid arguments to {expr.name}()",
                f"In {function.signature}, {exc.message}. Correct the argument.",
                place,
            ) from None

    def _Conditional(self, expr: Conditional) -> Any:
        condition = self.boolean(self.evaluate(expr.condition), expr.condition.range, "The condition")
        return self.evaluate(expr.if_true if condition else expr.if_false)

    def boolean(self, value: Any, range: SourceRange, what: str) -> bool:
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return bool(value == "true")
        raise fail(
            "Expected a bool",
            f"{what} must be true or false, not a {type_name(value)}. Use a comparison such as `x == \"y\"`.",
            range,
        )

    def number(self, value: Any, range: SourceRange, operator: str) -> int | float:
        if is_number(value):
            return value  # type: ignore[no-any-return]
        number = parse_number(value) if isinstance(value, str) else None
        if number is None:
            raise fail(
                "Expected a number",
                f"The operator `{operator}` works on numbers, and this is a {type_name(value)}. Use a number here.",
                range,
            )
        return number

    def _Unary(self, expr: Unary) -> Any:
        value = self.evaluate(expr.operand)
        if expr.operator == "!":
            return not self.boolean(value, expr.operand.range, "The operand of `!`")
        return in_range(normalize_number(-self.number(value, expr.operand.range, "-")), expr.range)

    def _Binary(self, expr: Binary) -> Any:
        operator = expr.operator
        left = self.evaluate(expr.left)
        if operator in ("&&", "||"):
            truth = self.boolean(left, expr.left.range, f"The left operand of `{operator}`")
            if (operator == "&&" and not truth) or (operator == "||" and truth):
                return truth
            return self.boolean(self.evaluate(expr.right), expr.right.range, f"The right operand of `{operator}`")
        right = self.evaluate(expr.right)
        if operator == "==":
            return values_equal(left, right)
        if operator == "!=":
            return not values_equal(left, right)
        a = self.number(left, expr.left.range, operator)
        b = self.number(right, expr.right.range, operator)
        if operator in ("<", ">", "<=", ">="):
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[operator]
        if operator in ("/", "%") and b == 0:
            raise fail("Division by zero", f"The right operand of `{operator}` is zero. Divide by another number.", expr.right.range)
        if operator == "*" and isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_BITS:
            raise out_of_range(expr.range)  # refused before Python builds the product
        if operator == "+":
            result = a + b
        elif operator == "-":
            result = a - b
        elif operator == "*":
            result = a * b
        elif operator == "/":
            try:
                result = a / b
            except OverflowError:
                raise out_of_range(expr.range) from None
        else:
            result = math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) else _int_mod(a, b)
        return in_range(normalize_number(result), expr.range)

    # -- for expressions ----------------------------------------------------------------------

    def _ForExpr(self, expr: ForExpr) -> Any:
        collection = self.evaluate(expr.collection)
        keys: list[Any] = []
        values: list[Any] = []
        grouped: dict[str, list[Any]] = {}
        budget = Budget(expr.range)
        # One scope for all the elements, its bindings rebound for each (a value never holds
        # on to the scope it was computed in; a nested for expression copies the bindings).
        bindings = dict(self.scope.bindings)
        inner = Evaluator(replace(self.scope, bindings=bindings), self._marks)
        for item_key, item_value in self._iterate(collection, expr.collection.range):
            if expr.key_var is not None:
                bindings[expr.key_var] = item_key
            bindings[expr.value_var] = item_value
            if expr.condition is not None:
                keep = inner.boolean(inner.evaluate(expr.condition), expr.condition.range, "The `if` condition")
                if not keep:
                    continue
            value = inner.evaluate(expr.value)
            budget.spend(value)  # nested for expressions multiply: the whole result stays bounded
            if expr.key is None:
                values.append(value)
                continue
            key = inner.key_text(inner.evaluate(expr.key), expr.key.range)
            if expr.group:
                grouped.setdefault(key, []).append(value)
            elif key in keys:
                raise fail(
                    "Duplicate map key",
                    f"The for expression produced the key {show(key, self.scope)} more than once. Make the keys "
                    "unique, or add `...` after the value to group values with the same key into lists.",
                    expr.key.range,
                )
            else:
                keys.append(key)
                values.append(value)
        if expr.key is None:
            return values
        if expr.group:
            return grouped
        return dict(zip(keys, values, strict=True))

    def _iterate(self, collection: Any, range: SourceRange) -> Iterator[tuple[Any, Any]]:
        if isinstance(collection, dict):
            for key in sorted(collection):
                yield key, collection[key]
        elif isinstance(collection, SetValue):
            for item in collection:
                yield item, item
        elif isinstance(collection, list | tuple):
            yield from enumerate(collection)
        else:
            raise fail(
                "Invalid for expression source",
                f"A for expression iterates over a list, set or map, and this is a {type_name(collection)}. "
                "Give it a collection.",
                range,
            )


def _int_mod(a: int | float, b: int | float) -> int:
    # HCL's remainder takes the sign of the dividend, like math.fmod, unlike Python's %.
    result = abs(int(a)) % abs(int(b))
    return -result if a < 0 else result


def references(expr: Expr, root: str) -> Iterator[tuple[str, SourceRange]]:
    """Every `ROOT.NAME` reference inside an expression (names of locals an expression needs)."""
    if isinstance(expr, GetAttr) and isinstance(expr.target, Name) and expr.target.name == root:
        yield expr.name, expr.range
        return
    for child in _children(expr):
        yield from references(child, root)


def mentions(expr: Expr, name: str) -> bool:
    """Whether the identifier `name` appears anywhere in the expression (as a reference root or
    a for-variable): an expression that never says `each` has one value for every instance."""
    if isinstance(expr, Name):
        return expr.name == name
    return any(mentions(child, name) for child in _children(expr))


def _children(expr: Expr) -> Iterator[Expr]:
    if isinstance(expr, Template):
        yield from (p for p in expr.parts if isinstance(p, Expr))
    elif isinstance(expr, GetAttr):
        yield expr.target
    elif isinstance(expr, Index):
        yield from (expr.target, expr.key)
    elif isinstance(expr, Splat):
        yield expr.target
        yield from (s for _, s in expr.steps if isinstance(s, Expr))
    elif isinstance(expr, TupleExpr):
        yield from expr.items
    elif isinstance(expr, ObjectExpr):
        for item in expr.items:
            yield from (item.key, item.value)
    elif isinstance(expr, Call):
        yield from expr.args
    elif isinstance(expr, Conditional):
        yield from (expr.condition, expr.if_true, expr.if_false)
    elif isinstance(expr, Binary):
        yield from (expr.left, expr.right)
    elif isinstance(expr, Unary):
        yield expr.operand
    elif isinstance(expr, ForExpr):
        yield expr.collection
        yield from (e for e in (expr.key, expr.value, expr.condition) if e is not None)
