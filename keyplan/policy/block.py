"""Reading the `policy` block of a configuration into a `Policy`:

    policy {
      builtin = "all"                      # or "listed": only rules with a rule block run
      rule "rotation" {
        severity = "error"                 # error, warning or info
        max_days = 90                      # the rule's parameters
        scope { labels = { env = "prod" } }
      }
      exception "prevent-destroy" {
        scope   { addresses = ["key.scratch*"] }
        reason  = "scratch keys are recreated every sprint"
        expires = "2026-12-31"
      }
      custom "owner" {
        condition = lookup(key.labels, "owner", "") != ""
        message   = "Every key names the team that owns it."
      }
    }

Custom conditions are evaluated here, once per key in scope, with the configuration's
variables and locals and `key` bound to the key's attributes (`key_object`). Every problem is a
diagnostic with file:line:column; the loader goes on with the rest.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from keyplan import registry
from keyplan.algorithms import get_algorithm
from keyplan.config.expressions import Evaluator, Scope, show
from keyplan.config.failures import EvaluationError
from keyplan.config.suggestions import did_you_mean
from keyplan.config.syntax import Attribute, Block, quoted
from keyplan.config.values import type_name
from keyplan.diagnostics import Diagnostics
from keyplan.policy.model import CustomRule, FindingSeverity, Policy, PolicyException, RuleSetting, Selector
from keyplan.policy.rules import RULES
from keyplan.policy.selectors import key_facts, kind_of, matches

if TYPE_CHECKING:
    from keyplan.config.model import KeyConfig

POLICY_BLOCKS = ("rule", "exception", "custom")
SELECTOR_ATTRIBUTES = ("labels", "addresses", "target_kinds", "source_kinds")
RULE_ATTRIBUTES = ("enabled", "severity")
EXCEPTION_ATTRIBUTES = ("reason", "expires")
CUSTOM_ATTRIBUTES = ("condition", "message", "severity")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CUSTOM_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")


def read_policy(
    blocks: list[Block], scope: Scope, keys: dict[str, KeyConfig], diagnostics: Diagnostics
) -> Policy:
    if not blocks:
        return Policy()
    for extra in blocks[1:]:
        diagnostics.error(
            "Duplicate policy block",
            f"The policy block is already declared at {blocks[0].range}. Merge the two into one.",
            range=extra.range,
        )
    return _Reader(blocks[0], replace(scope, where="in the policy block"), diagnostics).read(keys)


class _Reader:
    def __init__(self, block: Block, scope: Scope, diagnostics: Diagnostics) -> None:
        self.block = block
        self.scope = scope
        self.evaluator = Evaluator(scope)
        self.diagnostics = diagnostics

    def read(self, keys: dict[str, KeyConfig]) -> Policy:
        body = self.block.body
        only_listed = False
        for name, attribute in body.attributes.items():
            if name != "builtin":
                self.unsupported(attribute, "The policy block", ("builtin",))
                continue
            value = self.value(attribute)
            if value in ("all", "listed"):
                only_listed = value == "listed"
            elif value is not None:
                self.diagnostics.error(
                    "Invalid value for builtin",
                    f'`builtin` is "all" (every built-in rule runs unless disabled) or "listed" (only built-in '
                    f"rules with a rule block run), not {show(value, self.scope)}. Use one of them.",
                    range=attribute.expr.range,
                )
        rules: dict[str, RuleSetting] = {}
        customs: dict[str, CustomRule] = {}
        exception_blocks: list[Block] = []
        for nested in body.blocks:
            if nested.type not in POLICY_BLOCKS:
                self.diagnostics.error(
                    "Unsupported block type",
                    f"A policy block has no `{nested.type}` block.{did_you_mean(nested.type, POLICY_BLOCKS)} It holds "
                    "rule, exception and custom blocks; remove it or correct its name.",
                    range=nested.range,
                )
            elif self.one_label(nested):
                if nested.type == "rule":
                    self.store(rules, nested, self.rule(nested))
                elif nested.type == "custom":
                    self.store(customs, nested, self.custom(nested, keys))
                else:
                    exception_blocks.append(nested)
        exceptions = [e for b in exception_blocks if (e := self.exception(b, customs)) is not None]
        return Policy(
            declared=True,
            only_listed=only_listed,
            rules=rules,
            exceptions=tuple(exceptions),
            custom=customs,
            range=self.block.range,
        )

    # -- rule blocks ----------------------------------------------------------------------------

    def rule(self, block: Block) -> tuple[str, RuleSetting] | None:
        rule_id = block.labels[0]
        rule = RULES.get(rule_id)
        if rule is None:
            hint = did_you_mean(rule_id, RULES)
            self.diagnostics.error(
                "Unknown policy rule",
                f"keyplan has no built-in rule {quoted(rule_id)}.{hint} The rules are {', '.join(RULES)}; "
                "write your own checks as custom blocks.",
                range=block.label_ranges[0],
            )
            return None
        parameters = tuple(rule.params.model_fields)
        enabled, severity, params = True, None, {}
        for name, attribute in block.body.attributes.items():
            if name == "enabled":
                flag = self.value(attribute)
                if isinstance(flag, bool):
                    enabled = flag
                elif flag is not None:
                    self.wrong_type(attribute, "true or false", flag)
            elif name == "severity":
                severity = self.severity(attribute)
            elif name in parameters:
                params[name] = self.value(attribute)
            else:
                self.unsupported(attribute, f"The rule {quoted(rule_id)}", RULE_ATTRIBUTES + parameters)
        try:
            rule.params.model_validate(params)
        except ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                where = block.body.attributes[name].expr.range if name in block.body.attributes else block.range
                self.diagnostics.error(
                    "Invalid rule parameter",
                    f"`{name}` of rule {quoted(rule_id)} is not valid: {error['msg']}. Correct the value.",
                    range=where,
                )
        return rule_id, RuleSetting(
            rule=rule_id,
            enabled=enabled,
            severity=severity,
            scope=self.scope_of(block),
            params=params,
            range=block.label_ranges[0],
        )

    # -- custom rules ---------------------------------------------------------------------------

    def custom(self, block: Block, keys: dict[str, KeyConfig]) -> tuple[str, CustomRule] | None:
        name = block.labels[0]
        if not _CUSTOM_NAME.match(name):
            self.diagnostics.error(
                "Invalid name",
                f"The custom rule name {quoted(name)} is not valid: names start with a letter or underscore and "
                "contain only letters, digits, underscores and dashes. Rename it.",
                range=block.label_ranges[0],
            )
            return None
        attributes = block.body.attributes
        for attribute in attributes.values():
            if attribute.name not in CUSTOM_ATTRIBUTES:
                self.unsupported(attribute, "A custom rule", CUSTOM_ATTRIBUTES)
        message = self.text(block, "message")
        severity = self.severity(attributes["severity"]) if "severity" in attributes else FindingSeverity.ERROR
        condition = attributes.get("condition")
        if condition is None:
            self.missing(block, "condition", "an expression over `key` that must be true, e.g. key.rotation_days != null")
        scope = self.scope_of(block)
        if condition is None or message is None or severity is None:
            return None
        holds: dict[str, bool] = {}
        for address, key in keys.items():
            if matches(scope, key_facts(key)):
                verdict = self.condition(condition, key)
                if verdict is not None:
                    holds[address] = verdict
        return name, CustomRule(
            id=f"custom.{name}",
            message=message,
            severity=severity,
            scope=scope,
            holds=holds,
            range=block.label_ranges[0],
            condition_range=condition.expr.range,
        )

    def condition(self, attribute: Attribute, key: KeyConfig) -> bool | None:
        scope = replace(self.scope, bindings={"key": key_object(key)}, where=f"in a custom rule, for {key.address}")
        try:
            value = Evaluator(scope).evaluate(attribute.expr)
        except EvaluationError as exc:
            self.diagnostics.extend(d.model_copy(update={"address": key.address}) for d in exc.diagnostics)
            return None
        if isinstance(value, bool):
            return value
        self.diagnostics.error(
            "Custom rule condition is not a bool",
            f"A custom rule's condition must be true or false, and for {key.address} it is a {type_name(value)}. "
            'Compare it with something, e.g. key.labels.env == "prod".',
            range=attribute.expr.range,
        )
        return None

    # -- exceptions -----------------------------------------------------------------------------

    def exception(self, block: Block, customs: dict[str, CustomRule]) -> PolicyException | None:
        rule_id = block.labels[0]
        known = list(RULES) + [c.id for c in customs.values()]
        if rule_id not in known:
            self.diagnostics.error(
                "Exception for an unknown rule",
                f"There is no rule {quoted(rule_id)} to make an exception to.{did_you_mean(rule_id, known)} Name a "
                f"built-in rule ({', '.join(RULES)}) or a custom rule as custom.NAME.",
                range=block.label_ranges[0],
            )
        for attribute in block.body.attributes.values():
            if attribute.name not in EXCEPTION_ATTRIBUTES:
                self.unsupported(attribute, "An exception", EXCEPTION_ATTRIBUTES)
        reason = self.text(block, "reason")
        if reason is None and "reason" not in block.body.attributes:
            self.missing(block, "reason", "why the rule does not apply to these keys")
        expires = self.expiry_date(block)
        scope = self.scope_of(block)
        if rule_id not in known or reason is None or expires is None:
            return None
        return PolicyException(rule=rule_id, scope=scope, reason=reason, expires=expires, range=block.label_ranges[0])

    def expiry_date(self, block: Block) -> date | None:
        attribute = block.body.attributes.get("expires")
        if attribute is None:
            self.missing(block, "expires", 'the last day it holds, e.g. expires = "2026-12-31"')
            return None
        value = self.value(attribute)
        if value is None:
            return None
        if isinstance(value, str) and _DATE.fullmatch(value):
            try:
                return date.fromisoformat(value)
            except ValueError:  # a day that does not exist, like 2026-02-30
                pass
        self.diagnostics.error(
            "Invalid expiry date",
            f"`expires` is a date written YYYY-MM-DD, and {show(value, self.scope)} is not one. Write the "
            'last day the exception holds, e.g. "2026-12-31".',
            range=attribute.expr.range,
        )
        return None

    # -- selectors ------------------------------------------------------------------------------

    def scope_of(self, block: Block) -> Selector | None:
        scopes = [b for b in block.body.blocks if b.type == "scope"]
        for nested in block.body.blocks:
            if nested.type != "scope":
                self.diagnostics.error(
                    "Unsupported block type",
                    f"A {block.type} block holds only a `scope` block, not `{nested.type}`."
                    f"{did_you_mean(nested.type, ['scope'])} Remove or rename it.",
                    range=nested.range,
                )
        for extra in scopes[1:]:
            self.diagnostics.error(
                "Duplicate scope block",
                f"The scope is already set at {scopes[0].range}. Keep one scope block.",
                range=extra.range,
            )
        return self.selector(scopes[0]) if scopes else None

    def selector(self, block: Block) -> Selector | None:
        if block.labels:
            self.diagnostics.error(
                "Unexpected block label", "The scope block takes no labels. Write it as `scope { ... }`.",
                range=block.label_ranges[0],
            )  # fmt: skip
        fields: dict[str, Any] = {}
        ok = True
        for name, attribute in block.body.attributes.items():
            if name not in SELECTOR_ATTRIBUTES:
                self.unsupported(attribute, "A scope", SELECTOR_ATTRIBUTES)
                ok = False
                continue
            value = self.value(attribute)
            checked = self.selector_field(attribute, value) if value is not None else None
            if checked is None:
                ok = False
            else:
                fields[name] = checked
        return Selector(range=block.range, **fields) if ok else None

    def selector_field(self, attribute: Attribute, value: Any) -> Any:
        name = attribute.name
        if name == "labels":
            if not isinstance(value, dict):
                return self.bad_selector(attribute, f"`labels` is a map of label names to values, not a {type_name(value)}")
            labels: dict[str, tuple[str, ...]] = {}
            for label, accepted in value.items():
                values = self.strings(accepted)
                if values is None:
                    return self.bad_selector(
                        attribute, f"the label {quoted(label)} must match a string or a list of strings"
                    )
                labels[label] = values
            return labels
        patterns = self.strings(value)
        if patterns is None:
            return self.bad_selector(attribute, f"`{name}` is a list of strings, not a {type_name(value)}")
        if name == "addresses":
            wrong = [p for p in patterns if not p.startswith(("key.", "*"))]
            if wrong:
                return self.bad_selector(
                    attribute, f"the pattern {quoted(wrong[0])} cannot match a key address, which starts with key."
                )
            return patterns
        kinds = registry.provider_kinds() if name == "target_kinds" else registry.source_kinds()
        unknown = [k for k in patterns if k not in kinds]
        if unknown:
            return self.bad_selector(
                attribute,
                f"no {'provider' if name == 'target_kinds' else 'source'} plugin is named {quoted(unknown[0])}"
                f" (the installed ones are {', '.join(kinds)}).{did_you_mean(unknown[0], kinds)}",
            )
        return patterns

    def bad_selector(self, attribute: Attribute, problem: str) -> None:
        self.diagnostics.error(
            "Invalid selector",
            f"In this scope, {problem}. A scope takes labels = {{ NAME = \"VALUE\" or [...] }}, "
            'addresses = ["key.PATTERN"], target_kinds and source_kinds (plugin names); correct the value.',
            range=attribute.expr.range,
        )

    # -- values -----------------------------------------------------------------------------------

    def value(self, attribute: Attribute) -> Any:
        try:
            return self.evaluator.evaluate(attribute.expr)
        except EvaluationError as exc:
            self.diagnostics.extend(exc.diagnostics)
            return None

    def text(self, block: Block, name: str) -> str | None:
        attribute = block.body.attributes.get(name)
        if attribute is None:
            if name == "message":
                self.missing(block, name, "the sentence shown with each finding")
            return None
        value = self.value(attribute)
        if isinstance(value, str) and value.strip():
            if self.holds_sensitive(value):
                self.diagnostics.error(
                    "Sensitive value in a policy text",
                    f"`{name}` is shown with every finding, in plans and reports, and this one contains the value of "
                    "a sensitive variable. Write the text without it.",
                    range=attribute.expr.range,
                )
                return None
            return value
        if value is not None:
            self.wrong_type(attribute, "a non-empty string", value)
        return None

    def holds_sensitive(self, text: str) -> bool:
        secrets = (json.loads(leaf) for leaf in self.scope.sensitive)
        return any(isinstance(secret, str) and len(secret) >= 3 and secret in text for secret in secrets)

    def strings(self, value: Any) -> tuple[str, ...] | None:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        return None

    def severity(self, attribute: Attribute) -> FindingSeverity | None:
        value = self.value(attribute)
        if isinstance(value, str) and value in {s.value for s in FindingSeverity}:
            return FindingSeverity(value)
        if value is not None:
            choices = [s.value for s in FindingSeverity]
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            self.diagnostics.error(
                "Invalid severity",
                f"A severity is error, warning or info, not {show(value, self.scope)}.{hint} Use one of them.",
                range=attribute.expr.range,
            )
        return None

    # -- reporting --------------------------------------------------------------------------------

    def one_label(self, block: Block) -> bool:
        if len(block.labels) == 1:
            return True
        what = {"rule": "RULE_ID", "exception": "RULE_ID", "custom": "NAME"}[block.type]
        self.diagnostics.error(
            "Wrong number of block labels",
            f'A {block.type} block has one label, and this one has {len(block.labels)}. Write it as `{block.type} "{what}" {{ ... }}`.',
            range=block.range,
        )
        return False

    def store(self, table: dict[str, Any], block: Block, entry: tuple[str, Any] | None) -> None:
        if entry is None:
            return
        name, value = entry
        if name in table:
            self.diagnostics.error(
                f"Duplicate {block.type} block",
                f"A {block.type} block {quoted(name)} is already declared at {table[name].range}. Merge the two.",
                range=block.label_ranges[0],
            )
            return
        table[name] = value

    def unsupported(self, attribute: Attribute, what: str, allowed: tuple[str, ...]) -> None:
        self.diagnostics.error(
            "Unsupported argument",
            f"{what} has no argument `{attribute.name}`.{did_you_mean(attribute.name, allowed)} Its arguments are "
            f"{', '.join(allowed)}; remove it or correct its name.",
            range=attribute.name_range,
        )

    def missing(self, block: Block, name: str, meaning: str) -> None:
        self.diagnostics.error(
            "Missing required argument",
            f"The {block.type} block {quoted(block.labels[0])} must set `{name}`: {meaning}. Add it.",
            range=block.label_ranges[0],
        )

    def wrong_type(self, attribute: Attribute, expected: str, got: Any) -> None:
        self.diagnostics.error(
            "Incorrect attribute value type",
            f"`{attribute.name}` must be {expected}, and this is a {type_name(got)}. Correct the value.",
            range=attribute.expr.range,
        )


def _days(value: Any) -> int | float | None:
    if value is None:
        return None
    days = value.total_seconds() / 86400
    return int(days) if days.is_integer() else days


def key_object(key: KeyConfig) -> dict[str, Any]:
    """What a custom condition sees as `key`: the key's evaluated attributes."""
    algorithm = get_algorithm(key.algorithm)
    usage = key.usage or (algorithm.default_usage.value if algorithm else None)
    return {
        "address": key.address,
        "name": key.name,
        "each_key": key.each_key,
        "algorithm": key.algorithm,
        "algorithm_kind": algorithm.kind.value if algorithm else None,
        "bits": algorithm.bits if algorithm else None,
        "usage": usage,
        "source": key.source,
        "source_kind": kind_of(key.source),
        "targets": list(key.targets),
        "target_kinds": sorted({kind_of(t) for t in key.targets}),
        "labels": dict(key.labels),
        "description": key.description,
        "aliases": list(key.aliases),
        "enabled": key.enabled,
        "rotation_days": _days(key.rotation),
        "expiry_days": _days(key.expiry),
        "prevent_destroy": key.prevent_destroy,
    }
