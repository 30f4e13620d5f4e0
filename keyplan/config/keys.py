"""A `key` block: its shape checked (attributes and nested blocks), its for_each expanded, and
each instance evaluated into a `KeyConfig`, with diagnostics for every problem found.

`keyplan.config.load` calls `expand_key` for each key block once the variables and locals are
known.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

from keyplan.config.durations import DurationError, parse_duration
from keyplan.config.expressions import Evaluator, Scope, mentions, show
from keyplan.config.failures import FAILED, EvaluationError
from keyplan.config.model import KeyConfig
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import Attribute, Block, Expr, ObjectExpr, TupleExpr, quoted
from keyplan.config.values import SetValue, type_name
from keyplan.diagnostics import Diagnostics, SourceRange
from keyplan.heap import trusted

KEY_ATTRIBUTES = ("for_each", "algorithm", "usage", "source", "targets", "labels", "description", "aliases", "enabled")
KEY_REQUIRED = ("algorithm", "source", "targets")
KEY_BLOCKS: dict[str, tuple[str, ...]] = {
    "expiry": ("after", "never"),
    "rotation": ("every",),
    "lifecycle": ("prevent_destroy",),
}


def expand_key(block: Block, scope: Scope, diagnostics: Diagnostics) -> list[KeyConfig]:
    name = block.labels[0]
    if not _check_key_body(block, diagnostics):
        return []
    for_each = block.body.attributes.get("for_each")
    if for_each is None:
        instance = _KeyInstance(block, replace(scope, where=f"in key.{name}, which has no for_each"), diagnostics)
        key = instance.build(f"key.{name}", None)
        return [key] if key is not None else []
    elements = _for_each_elements(for_each, replace(scope, where="in for_each itself"), diagnostics)
    keys = []
    once = _Once(block)
    for each_key, each_value in elements:
        address = f"key.{name}[{json.dumps(each_key, ensure_ascii=False)}]"
        instance = _KeyInstance(block, replace(scope, each=(each_key, each_value), where=address), diagnostics, once)
        key = instance.build(address, each_key)
        if key is not None:
            keys.append(key)
    return keys


def _check_key_body(block: Block, diagnostics: Diagnostics) -> bool:
    ok = True
    body = block.body
    for attribute in body.attributes.values():
        if attribute.name not in KEY_ATTRIBUTES:
            ok = False
            hint = did_you_mean(attribute.name, KEY_ATTRIBUTES)
            diagnostics.error(
                "Unsupported argument",
                f"A key block has no argument `{attribute.name}`.{hint} The arguments are "
                f"{', '.join(KEY_ATTRIBUTES)}; remove it or correct its name.",
                range=attribute.name_range,
            )
    for required in KEY_REQUIRED:
        if required not in body.attributes:
            ok = False
            diagnostics.error(
                "Missing required argument",
                f"The key block {quoted(block.labels[0])} does not set `{required}`, which every key needs. Add "
                f"`{required} = ...` to the block.",
                range=block.range,
                address=f"key.{block.labels[0]}",
            )
    seen: dict[str, SourceRange] = {}
    for nested in body.blocks:
        allowed = KEY_BLOCKS.get(nested.type)
        if allowed is None:
            ok = False
            diagnostics.error(
                "Unsupported block type",
                f"A key block has no `{nested.type}` block.{did_you_mean(nested.type, KEY_BLOCKS)} The nested blocks "
                f"are {', '.join(KEY_BLOCKS)}; remove it or correct its name.",
                range=nested.range,
            )
            continue
        if nested.type in seen:
            ok = False
            diagnostics.error(
                f"Duplicate {nested.type} block",
                f"The {nested.type} block is already set at {seen[nested.type]}. Keep one.",
                range=nested.range,
            )
        seen[nested.type] = nested.range
        if nested.labels:
            ok = False
            diagnostics.error(
                "Unexpected block label",
                f"The {nested.type} block takes no labels. Write it as `{nested.type} {{ ... }}`.",
                range=nested.label_ranges[0],
            )
        for attribute in nested.body.attributes.values():
            if attribute.name not in allowed:
                ok = False
                diagnostics.error(
                    "Unsupported argument",
                    f"The {nested.type} block has no argument `{attribute.name}`.{did_you_mean(attribute.name, allowed)} "
                    f"It accepts {', '.join(allowed)}; remove it or correct its name.",
                    range=attribute.name_range,
                )
    return ok


def _for_each_elements(attribute: Attribute, scope: Scope, diagnostics: Diagnostics) -> list[tuple[str, Any]]:
    try:
        value, sensitive = Evaluator(scope).evaluate_marked(attribute.expr)
    except EvaluationError as exc:
        diagnostics.extend(exc.diagnostics)
        return []
    if sensitive:
        _sensitive_in_key(diagnostics, "for_each", attribute.expr.range, "its keys become key addresses, shown everywhere")
        return []
    if isinstance(value, dict):
        return [(key, value[key]) for key in sorted(value)]
    if isinstance(value, SetValue) and all(isinstance(item, str) for item in value):
        return [(item, item) for item in value]
    if isinstance(value, list | tuple) and not isinstance(value, SetValue) and all(isinstance(i, str) for i in value):
        hint = "Convert the list with toset(...), which also removes duplicates."
    elif isinstance(value, SetValue):
        hint = "Every element of the set must be a string; build a map with a for expression for other values."
    else:
        hint = 'Give a map (each.value is the element) or a set of strings, for example toset(["a", "b"]).'
    diagnostics.error(
        "Invalid for_each argument",
        f"for_each takes a map or a set of strings, and this is a {_describe_collection(value)}. {hint}",
        range=attribute.expr.range,
    )
    return []


def _describe_collection(value: Any) -> str:
    if isinstance(value, list | tuple) and value:
        inner = {type_name(item) for item in value}
        return f"{type_name(value)} of {'/'.join(sorted(inner))}"
    return type_name(value)


class _Once:
    """The attributes of a for_each block that never mention `each` have one value for all its
    instances: evaluated for the first instance, and kept when that succeeded with a value not
    derived from a sensitive one (a failure is evaluated again per instance, so each instance
    reports it as before)."""

    def __init__(self, block: Block) -> None:
        attributes = [a for a in block.body.attributes.values() if a.name != "for_each"]
        attributes += [a for nested in block.body.blocks for a in nested.body.attributes.values()]
        self.invariant = {id(a) for a in attributes if not mentions(a.expr, "each")}
        self.values: dict[int, Any] = {}


class _KeyInstance:
    """Evaluates one key block for one for_each element (or the only instance)."""

    def __init__(self, block: Block, scope: Scope, diagnostics: Diagnostics, once: _Once | None = None) -> None:
        self.block = block
        self.scope = scope
        self.evaluator = Evaluator(scope)
        self.diagnostics = diagnostics
        self.failed = False
        self.ranges: dict[str, SourceRange] = {}
        self.once = once

    def build(self, address: str, each_key: str | None) -> KeyConfig | None:
        attributes = self.block.body.attributes
        values = {name: self.value(attribute) for name, attribute in attributes.items() if name != "for_each"}
        settings: dict[str, Any] = {
            "algorithm": self.text(values, "algorithm"),
            "usage": self.text(values, "usage", optional=True),
            "source": self.text(values, "source"),
            "targets": self.strings(values, "targets"),
            "labels": self.labels(values),
            "description": self.text(values, "description", optional=True),
            "aliases": self.strings(values, "aliases"),
            "enabled": self.flag(values, "enabled", default=True),
        }
        settings.update(self.nested_blocks())
        if self.failed:
            return None
        return trusted(  # each value checked above (text, strings, labels, flag, durations)
            KeyConfig,
            address=address,
            name=self.block.labels[0],
            each_key=each_key,
            range=self.block.range,
            attribute_ranges=self.ranges,
            **{name: value for name, value in settings.items() if value is not None},
        )

    # -- evaluation with error capture --------------------------------------------------------

    def value(self, attribute: Attribute, where: str | None = None) -> Any:
        self.ranges[attribute.name] = attribute.expr.range
        if self.once is not None and id(attribute) in self.once.values:
            return self.once.values[id(attribute)]  # shared: build() copies the lists and maps it keeps
        try:
            value, sensitive = self.evaluator.evaluate_marked(attribute.expr)
        except EvaluationError as exc:
            self.diagnostics.extend(exc.diagnostics)
            self.failed = True
            return FAILED
        if sensitive:
            self.failed = True
            _sensitive_in_key(self.diagnostics, where or attribute.name, attribute.expr.range, None)
            return FAILED
        if self.once is not None and id(attribute) in self.once.invariant:
            self.once.values[id(attribute)] = value
        return value

    def wrong_type(self, attribute: str, expected: str, got: Any, range: SourceRange | None = None) -> None:
        self.failed = True
        self.diagnostics.error(
            "Incorrect attribute value type",
            f"`{attribute}` must be {expected}, and this is a {_describe_collection(got)}. Correct the value.",
            range=range or self.ranges.get(attribute, self.block.range),
            address=self.scope.where if self.scope.each else None,
        )

    # -- attribute shapes ---------------------------------------------------------------------

    def text(self, values: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
        value = values.get(name)
        if value is FAILED or (value is None and optional) or (value is None and name not in values):
            return None
        if isinstance(value, str):
            return value
        self.wrong_type(name, "a string", value)
        return None

    def strings(self, values: dict[str, Any], name: str) -> tuple[str, ...] | None:
        value = values.get(name)
        if value is FAILED or (value is None and name not in values):
            return None
        if not isinstance(value, list | tuple):
            self.wrong_type(name, "a list of strings", value)
            return None
        expr = self.block.body.attributes[name].expr
        items = expr.items if isinstance(expr, TupleExpr) and len(expr.items) == len(value) else None
        for index, item in enumerate(value):
            item_range = items[index].range if items else None
            if item_range is not None:
                self.ranges[f"{name}[{index}]"] = item_range
            if not isinstance(item, str):
                self.wrong_type(name, "a list of strings", value, item_range)
                return None
        return tuple(value)

    def labels(self, values: dict[str, Any]) -> dict[str, str] | None:
        value = values.get("labels")
        if value is FAILED or value is None:
            return None
        if not isinstance(value, dict):
            self.wrong_type("labels", "a map of strings", value)
            return None
        expr = self.block.body.attributes["labels"].expr
        for label, item in value.items():
            if isinstance(item, str):
                continue
            self.failed = True
            self.diagnostics.error(
                "Label value is not a string",
                f"The label {quoted(label)} has a {type_name(item)} value, and labels hold strings only. Quote the "
                'value (for example "true" or "3") or convert it with tostring().',
                range=_object_item_range(expr, label) or self.ranges["labels"],
                address=self.scope.where if self.scope.each else None,
            )
        return dict(value)

    def flag(self, values: dict[str, Any], name: str, *, default: bool) -> bool | None:
        value = values.get(name, default)
        if value is FAILED:
            return None
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.wrong_type(name, "true or false", value)
        return None

    def nested_blocks(self) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for nested in self.block.body.blocks:
            values = {
                name: self.value(attribute, f"{nested.type}.{name}") for name, attribute in nested.body.attributes.items()
            }
            for name, attribute in nested.body.attributes.items():
                self.ranges[f"{nested.type}.{name}"] = attribute.expr.range
            if nested.type == "expiry":
                self.ranges["expiry"] = nested.range
                settings["expiry"] = self.expiry(nested, values)
            elif nested.type == "rotation":
                self.ranges["rotation"] = nested.range
                settings["rotation"] = self.duration(nested, values, "every", required=True)
            elif nested.type == "lifecycle":
                settings["prevent_destroy"] = self.flag(values, "prevent_destroy", default=False)
        return settings

    def expiry(self, block: Block, values: dict[str, Any]) -> timedelta | None:
        never = self.flag(values, "never", default=False)
        if "after" in values and never:
            self.failed = True
            self.diagnostics.error(
                "Conflicting expiry settings",
                "The expiry block sets both `after` and `never = true`. Keep one of them.",
                range=block.range,
            )
            return None
        if "after" not in values and "never" not in values:
            self.failed = True
            self.diagnostics.error(
                "Empty expiry block",
                'The expiry block needs `after = "365d"` (material expires that long after import) or '
                "`never = true`. Add one of them.",
                range=block.range,
            )
            return None
        return self.duration(block, values, "after", required=False)

    def duration(self, block: Block, values: dict[str, Any], name: str, *, required: bool) -> timedelta | None:
        value = values.get(name)
        if value is FAILED or (value is None and not required and name not in values):
            return None
        range = self.ranges.get(f"{block.type}.{name}", block.range)
        if value is None:
            self.failed = True
            self.diagnostics.error(
                "Missing required argument",
                f'The {block.type} block needs `{name}`, a duration like "90d". Add it.',
                range=range,
            )
            return None
        if not isinstance(value, str):
            self.wrong_type(f"{block.type}.{name}", 'a duration string like "90d"', value, range)
            return None
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.failed = True
            self.diagnostics.error(
                "Invalid duration",
                f"The value {show(value, self.scope)} of `{block.type}.{name}` is not a valid duration "
                f"({exc.message}). {exc.hint}",
                range=range,
            )
            return None


def _sensitive_in_key(diagnostics: Diagnostics, attribute: str, range: SourceRange, why: str | None) -> None:
    diagnostics.error(
        "Sensitive value in a key block",
        f"`{attribute}` is derived from a sensitive value (a variable declared with `sensitive = true`, or a "
        f"local computed from one). Everything a key block says reaches the clouds, where labels, descriptions "
        f"and aliases are readable by anyone allowed to list keys, and is recorded in clear in state and plan "
        f"files{' (' + why + ')' if why else ''}, so keyplan refuses to send it. If the value is not secret, "
        "remove `sensitive = true` from the variable, or wrap the expression in nonsensitive(...) to publish it "
        "explicitly.",
        range=range,
    )


def _object_item_range(expr: Expr, key: str) -> SourceRange | None:
    if isinstance(expr, ObjectExpr):
        for item in expr.items:
            if getattr(item.key, "value", None) == key:
                return item.value.range
    return None


