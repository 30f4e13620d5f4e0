"""The policy as data: the evaluated `policy` block (which rules run, how severe they are, where
they apply, the exceptions granted) and the findings a policy run produces.

These models hold no code and import nothing from the rest of the policy package, so the
configuration model can carry a `Policy` without import cycles.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from keyplan.diagnostics import SourceRange


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FindingSeverity(StrEnum):
    ERROR = "error"  # `keyplan plan` refuses to plan; `keyplan validate` fails
    WARNING = "warning"  # shown with the plan and by validate
    INFO = "info"  # shown by `keyplan check` and in reports only

    @property
    def rank(self) -> int:
        return {"info": 1, "warning": 2, "error": 3}[self.value]


class Phase(StrEnum):
    """What a rule needs to see. Each command runs the rules its inputs allow."""

    CONFIG = "config"  # the configuration and the plugins' static capabilities (validate, check, plan)
    STATE = "state"  # also the state file (check, plan, drift)
    LIVE = "live"  # also the clouds' live inventory (drift)


class Selector(_Model):
    """Which keys a rule, exception or custom rule applies to. Every criterion given must hold;
    a criterion left out holds for every key. Patterns use shell wildcards (`*`, `?`, `[...]`)."""

    labels: dict[str, tuple[str, ...]] = Field(
        default={}, description="Label name -> accepted values (patterns); the key's label must match one of them."
    )
    addresses: tuple[str, ...] = Field(default=(), description='Key address patterns, e.g. "key.payments*".')
    target_kinds: tuple[str, ...] = Field(
        default=(), description="Provider plugin names; the key must have at least one target of one of them."
    )
    source_kinds: tuple[str, ...] = Field(default=(), description="Source plugin names the key's source must be of.")
    range: SourceRange | None = None


class RuleSetting(_Model):
    """One `rule "ID" { ... }` block: how a built-in rule runs."""

    rule: str
    enabled: bool = True
    severity: FindingSeverity | None = None  # None: the rule's default
    scope: Selector | None = None  # None: the rule's default scope
    params: dict[str, Any] = {}  # validated against the rule's parameter model
    range: SourceRange


class PolicyException(_Model):
    """One `exception "RULE" { ... }` block: findings of a rule waived for some keys until a date."""

    rule: str
    scope: Selector | None = None  # None: every key
    reason: str
    expires: date  # the exception holds through this day (UTC)
    range: SourceRange


class CustomRule(_Model):
    """One `custom "NAME" { ... }` block, with its condition already evaluated for every key in
    scope (the loader evaluates it with the configuration's variables and locals)."""

    id: str  # "custom.NAME"
    message: str
    severity: FindingSeverity = FindingSeverity.ERROR
    scope: Selector | None = None
    holds: dict[str, bool] = {}  # key address -> whether the condition holds
    range: SourceRange
    condition_range: SourceRange


class Policy(_Model):
    """The evaluated `policy` block. `declared` is False when the configuration has none: then
    validate, plan and drift run no rules, and `keyplan check` runs the built-in defaults."""

    declared: bool = False
    only_listed: bool = False  # `builtin = "listed"`: only built-in rules with a `rule` block run
    rules: dict[str, RuleSetting] = {}
    exceptions: tuple[PolicyException, ...] = ()
    custom: dict[str, CustomRule] = {}
    range: SourceRange | None = None


class Finding(_Model):
    """One violation of a policy rule by one key (or one key at one target)."""

    rule: str = Field(description='The rule id, e.g. "rotation" or "custom.owner-label".')
    severity: FindingSeverity
    message: str = Field(description="What is wrong, in one sentence.")
    fix: str = Field(description="How to fix it.")
    address: str | None = Field(default=None, description='The key address, e.g. key.payments["prod"].')
    target: str | None = Field(default=None, description="The provider address, for findings about one target.")
    range: SourceRange | None = Field(default=None, description="Where in the configuration the violating block is.")
    note: str | None = Field(default=None, description="Context, e.g. that an exception expired.")

    def __str__(self) -> str:
        where = f"{self.range}: " if self.range else ""
        subject = f" ({self.address}{' @ ' + self.target if self.target else ''})" if self.address else ""
        text = f"{where}{self.severity.value}[{self.rule}]: {self.message}{subject}\n  Fix: {self.fix}"
        return text + (f"\n  Note: {self.note}" if self.note else "")
