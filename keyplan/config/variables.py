"""Input variables: `variable` blocks and the values they take for one run.

A value comes, from strongest to weakest, from `-var NAME=VALUE` options, then `-var-file`
files (`.json`, or HCL for any other extension), then the environment variable
`KEYPLAN_VAR_<NAME>`, then the block's `default`. Values given as text (`-var`, environment)
are read as HCL expressions when the declared type is not a plain string, number or bool,
so lists and maps can be passed; the value is then converted to the declared type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyplan.config.bounds import MAX_FILE_BYTES
from keyplan.config.constraints import ANY, ConversionError, TypeConstraint, TypeSyntaxError, convert, parse_type
from keyplan.config.expressions import Evaluator, Scope
from keyplan.config.failures import FAILED, EvaluationError, fail
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import Attribute, Block, Expr, parse_expression, parse_file
from keyplan.config.values import canonical_json, leaves
from keyplan.diagnostics import Diagnostics, SourceRange

ENVIRONMENT_PREFIX = "KEYPLAN_VAR_"
_MISSING = object()
_VARIABLE_ATTRIBUTES = ("type", "default", "description", "sensitive")


@dataclass(frozen=True)
class VariableDeclaration:
    name: str
    type: TypeConstraint
    default: Any  # _MISSING when the variable has no default
    description: str | None
    sensitive: bool
    range: SourceRange

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class _Given:
    """A value for a variable and where it came from, for messages."""

    value: Any
    origin: str  # "the -var option", "the environment variable KEYPLAN_VAR_x", "file.json"
    range: SourceRange | None


@dataclass(frozen=True)
class ResolvedVariables:
    values: dict[str, Any]  # FAILED for a variable whose value is missing or invalid
    sensitive_names: frozenset[str]
    sensitive_leaves: frozenset[str]  # canonical JSON of every primitive inside a sensitive value


def declare_variable(block: Block, diagnostics: Diagnostics) -> VariableDeclaration | None:
    name = block.labels[0]
    body = block.body
    evaluator = Evaluator(Scope(where="in a variable block"))
    for attribute in body.attributes.values():
        if attribute.name not in _VARIABLE_ATTRIBUTES:
            diagnostics.error(
                "Unsupported argument",
                f"A variable block accepts {', '.join(_VARIABLE_ATTRIBUTES)}; `{attribute.name}` is not one of "
                f"them.{did_you_mean(attribute.name, _VARIABLE_ATTRIBUTES)} Remove it or correct its name.",
                range=attribute.name_range,
            )
    for nested in body.blocks:
        diagnostics.error(
            "Unsupported block",
            f"A variable block contains no blocks, so `{nested.type}` is not expected here. Remove it.",
            range=nested.range,
        )
    constraint = ANY
    if "type" in body.attributes:
        try:
            constraint = parse_type(body.attributes["type"].expr)
        except TypeSyntaxError as exc:
            diagnostics.error(
                "Invalid type",
                f"The variable's type is not valid: {exc.message}. Write one of string, number, bool, any, "
                "list(T), set(T) or map(T).",
                range=exc.expr.range,
            )
            return None
    try:
        description = _literal_text(body.attributes.get("description"), evaluator, "description")
        sensitive = _literal_bool(body.attributes.get("sensitive"), evaluator, "sensitive")
        default: Any = _MISSING
        if "default" in body.attributes:
            default_expr = body.attributes["default"].expr
            default = _convert_or_fail(evaluator.evaluate(default_expr), constraint, name, "its default", default_expr)
    except EvaluationError as exc:
        diagnostics.extend(exc.diagnostics)
        return None
    return VariableDeclaration(
        name=name, type=constraint, default=default, description=description, sensitive=sensitive, range=block.range
    )


def _literal_text(attribute: Attribute | None, evaluator: Evaluator, what: str) -> str | None:
    if attribute is None:
        return None
    value = evaluator.evaluate(attribute.expr)
    if value is not None and not isinstance(value, str):
        raise _type_error(f"The variable's {what} must be a string.", attribute.expr)
    return value


def _literal_bool(attribute: Attribute | None, evaluator: Evaluator, what: str) -> bool:
    if attribute is None:
        return False
    return evaluator.boolean(evaluator.evaluate(attribute.expr), attribute.expr.range, f"The variable's {what}")


def _type_error(detail: str, expr: Expr) -> EvaluationError:
    return fail("Incorrect attribute value type", detail, expr.range)


def _convert_or_fail(value: Any, constraint: TypeConstraint, name: str, origin: str, expr: Expr) -> Any:
    try:
        return convert(value, constraint)
    except ConversionError as exc:
        where = f" at {exc.path}" if exc.path else ""
        raise _type_error(
            f"The value of {origin} for var.{name} does not match its type {constraint}: {exc.message}{where}. "
            "Correct the value or the type.",
            expr,
        ) from None


def resolve_variables(
    declarations: dict[str, VariableDeclaration],
    var_args: list[str],
    var_files: list[Path],
    environ: Mapping[str, str],
    diagnostics: Diagnostics,
    *,
    planned_values: Mapping[str, object] = {},  # noqa: B006 - never mutated
) -> ResolvedVariables:
    given: dict[str, _Given] = {}
    for name, declaration in declarations.items():
        text = environ.get(ENVIRONMENT_PREFIX + name)
        if text is not None:
            origin = f"the environment variable {ENVIRONMENT_PREFIX}{name}"
            value = _read_text_value(text, declaration, origin, diagnostics)
            if value is not FAILED:
                given[name] = _Given(value, origin, None)
    for name, value in planned_values.items():
        if name in declarations:  # a variable the configuration no longer declares makes the plan stale
            given[name] = _Given(value, "the saved plan", None)
    for path in var_files:
        for name, entry in _read_var_file(path, declarations, diagnostics).items():
            given[name] = entry
    for argument in var_args:
        parsed = _read_var_argument(argument, declarations, diagnostics)
        if parsed is not None:
            given[parsed[0]] = parsed[1]

    values: dict[str, Any] = {}
    for name, declaration in declarations.items():
        values[name] = _final_value(declaration, given.get(name), diagnostics)
    sensitive_names = frozenset(name for name, d in declarations.items() if d.sensitive)
    sensitive_leaves = frozenset(
        canonical_json(leaf)
        for name in sensitive_names
        if values[name] is not FAILED
        for leaf in leaves(values[name])
        if leaf is not None
    )
    return ResolvedVariables(values=values, sensitive_names=sensitive_names, sensitive_leaves=sensitive_leaves)


def _final_value(declaration: VariableDeclaration, given: _Given | None, diagnostics: Diagnostics) -> Any:
    name = declaration.name
    if given is None:
        if declaration.required:
            diagnostics.error(
                "No value for required variable",
                f"The variable {name!r} has no default and no value was given. Set it with "
                f"`-var '{name}=VALUE'`, in a -var-file, or in the environment variable "
                f"{ENVIRONMENT_PREFIX}{name}; or give the variable a default.",
                range=declaration.range,
            )
            return FAILED
        return declaration.default
    try:
        return convert(given.value, declaration.type)
    except ConversionError as exc:
        where = f" at {exc.path}" if exc.path else ""
        kind = "sensitive variable" if declaration.sensitive else "variable"
        diagnostics.error(
            "Invalid value for variable",
            f"The value given for the {kind} {name!r} in {given.origin} does not match its type "
            f"{declaration.type}: {exc.message}{where}. Give a value of type {declaration.type}.",
            range=given.range or declaration.range,
        )
        return FAILED


def _read_text_value(text: str, declaration: VariableDeclaration, origin: str, diagnostics: Diagnostics) -> Any:
    """A value given as text: taken as-is for primitive types, read as an HCL expression otherwise."""
    if declaration.type.primitive:
        return text
    scratch = Diagnostics()
    expr = parse_expression(text, origin, scratch)
    if expr is not None and not scratch.has_errors():
        try:
            return Evaluator(Scope(where=f"in {origin}")).evaluate(expr)
        except EvaluationError:
            pass
    if declaration.type.kind == "any":
        return text
    diagnostics.error(
        "Invalid value for variable",
        f"The value given for {declaration.name!r} in {origin} could not be read as an HCL value of type "
        f"{declaration.type}. Write it as HCL, for example ["
        '"a", "b"] for a list or {key = "value"} for a map.',
        range=declaration.range,
    )
    return FAILED


def _read_var_argument(
    argument: str, declarations: dict[str, VariableDeclaration], diagnostics: Diagnostics
) -> tuple[str, _Given] | None:
    name, equals, text = argument.partition("=")
    name = name.strip()
    if not equals or not name:
        diagnostics.error(
            "Invalid -var option",
            "A -var option is written NAME=VALUE, for example -var 'region=us-east-1'. Correct the option.",
        )
        return None
    declaration = declarations.get(name)
    if declaration is None:
        diagnostics.error(
            "Value for undeclared variable",
            f"A -var option sets {name!r}, but no variable of that name is declared.{did_you_mean(name, declarations)} "
            "Declare it in a `variable` block or correct the name.",
        )
        return None
    origin = "the -var option"
    value = _read_text_value(text, declaration, origin, diagnostics)
    return None if value is FAILED else (name, _Given(value, origin, None))


def _read_var_file(
    path: Path, declarations: dict[str, VariableDeclaration], diagnostics: Diagnostics
) -> dict[str, _Given]:
    filename = str(path)
    try:
        with path.open("rb") as file:  # bounded: /dev/zero or a runaway generator must not fill the memory
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            diagnostics.error(
                "Cannot read variables file",
                f"The file {filename} is larger than {MAX_FILE_BYTES // 2**20} MiB. Check the -var-file path.",
            )
            return {}
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        diagnostics.error(
            "Cannot read variables file",
            f"The file {filename} could not be read ({type(exc).__name__}). Check the -var-file path.",
        )
        return {}
    entries = _json_entries(text, filename, diagnostics) if path.suffix == ".json" else _hcl_entries(text, filename, diagnostics)
    result: dict[str, _Given] = {}
    for name, (value, range, name_range) in entries.items():
        if name not in declarations:
            diagnostics.warning(
                "Value for undeclared variable",
                f"The file sets {name!r}, but no variable of that name is declared, so the value is ignored."
                f"{did_you_mean(name, declarations)} Declare the variable or remove the value.",
                range=name_range,
            )
            continue
        result[name] = _Given(value, filename, range)
    return result


_Entries = dict[str, tuple[Any, SourceRange, SourceRange]]  # name -> (value, its place, the name's place)


def _json_entries(text: str, filename: str, diagnostics: Diagnostics) -> _Entries:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        diagnostics.error(
            "Invalid JSON in variables file",
            f"The file is not valid JSON: {exc.msg}. Correct the JSON syntax.",
            range=SourceRange(filename=filename, line=exc.lineno, column=exc.colno),
        )
        return {}
    except (RecursionError, ValueError) as exc:
        diagnostics.error(
            "Invalid JSON in variables file",
            "The file nests arrays or objects too deeply, or holds a number too long to read "
            f"({'nesting' if isinstance(exc, RecursionError) else 'number'}). Simplify the values.",
            range=SourceRange(filename=filename),
        )
        return {}
    if not isinstance(data, dict):
        diagnostics.error(
            "Invalid variables file",
            "A JSON variables file holds one object mapping variable names to values. Wrap the values in {}.",
            range=SourceRange(filename=filename),
        )
        return {}
    whole = SourceRange(filename=filename)
    return {name: (value, whole, whole) for name, value in data.items()}


def _hcl_entries(text: str, filename: str, diagnostics: Diagnostics) -> _Entries:
    body = parse_file(text, filename, diagnostics)
    if body is None:
        return {}
    for block in body.blocks:
        diagnostics.error(
            "Unexpected block in variables file",
            "A variables file holds only NAME = VALUE assignments. Remove the block.",
            range=block.range,
        )
    evaluator = Evaluator(Scope(where="in a variables file"))
    entries: _Entries = {}
    for attribute in body.attributes.values():
        try:
            value = evaluator.evaluate(attribute.expr)
            entries[attribute.name] = (value, attribute.expr.range, attribute.name_range)
        except EvaluationError as exc:
            diagnostics.extend(exc.diagnostics)
    return entries
