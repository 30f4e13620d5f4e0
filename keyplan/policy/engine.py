"""Running a policy: the built-in rules the `policy` block enables (with its parameters,
severities and scopes) and its custom rules, over the inputs a command has (configuration
always; state and live inventory when given), with exceptions applied.

`evaluate` is pure apart from reading the plugins' static capabilities: it never contacts a
cloud or opens a key source. Commands choose the phases: `validate` the configuration rules,
`plan` and `check` those and the state rules, `drift` the live rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from keyplan import registry
from keyplan.policy.model import (
    CustomRule,
    Finding,
    FindingSeverity,
    Phase,
    Policy,
    PolicyException,
    RuleSetting,
)
from keyplan.policy.rule import PolicyInputs, Rule, RuleParams, Violation
from keyplan.policy.rules import RULES
from keyplan.policy.selectors import KeyFacts, matches
from keyplan.provider import ProviderPlugin, ProviderSettings, RemoteKey, SourceCapabilities, SourcePlugin

if TYPE_CHECKING:
    from keyplan.config.model import Config
    from keyplan.state.model import State

ALL_PHASES = frozenset(Phase)


@dataclass
class PolicyReport:
    """What one policy run found. `waived` are findings an unexpired exception covers."""

    findings: list[Finding] = field(default_factory=list)
    waived: list[Finding] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)  # ids of the rules that ran

    def at_least(self, severity: FindingSeverity) -> list[Finding]:
        return [f for f in self.findings if f.severity.rank >= severity.rank]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is FindingSeverity.ERROR]

    def counts(self) -> dict[str, int]:
        return {severity.value: sum(f.severity is severity for f in self.findings) for severity in FindingSeverity}


def evaluate(
    config: Config,
    *,
    phases: Iterable[Phase] = ALL_PHASES,
    state: State | None = None,
    live: dict[str, dict[str, RemoteKey]] | None = None,
    now: datetime | None = None,
    policy: Policy | None = None,
) -> PolicyReport:
    """Run the rules of `policy` (default: the configuration's) whose phase is in `phases` and
    whose inputs are given: state rules need `state`, live rules need `live`."""
    policy = policy if policy is not None else config.policy
    inputs = PolicyInputs(
        config=config,
        sources=_source_capabilities(config),
        targets=_target_plugins(config),
        now=now or datetime.now(UTC),
        state=state,
        live=live,
    )
    wanted = set(phases)
    available = {Phase.CONFIG} | ({Phase.STATE} if state is not None else set()) | (
        {Phase.LIVE} if live is not None else set()
    )
    report = PolicyReport()
    found: list[tuple[KeyFacts, Finding]] = []
    for rule, setting in _enabled_rules(policy):
        if rule.phase not in wanted or rule.phase not in available:
            continue
        report.rules.append(rule.id)
        found.extend(_run_rule(rule, setting, inputs))
    if Phase.CONFIG in wanted:
        for custom in policy.custom.values():
            report.rules.append(custom.id)
            found.extend(_run_custom(custom, inputs))
    today = inputs.now.date()
    for facts, finding in found:
        exceptions = [e for e in policy.exceptions if e.rule == finding.rule and matches(e.scope, facts)]
        current = [e for e in exceptions if e.expires >= today]
        if current:
            report.waived.append(finding.model_copy(update={"note": _waived(current)}))
        elif exceptions:
            report.findings.append(finding.model_copy(update={"note": _expired(exceptions)}))
        else:
            report.findings.append(finding)
    report.findings.sort(key=_order)
    report.waived.sort(key=_order)
    return report


def default_policy() -> Policy:
    """What `keyplan check` runs when the configuration declares no policy: every built-in rule
    with its defaults."""
    return Policy(declared=False)


def _enabled_rules(policy: Policy) -> list[tuple[Rule, RuleSetting | None]]:
    enabled: list[tuple[Rule, RuleSetting | None]] = []
    for rule in RULES.values():
        setting = policy.rules.get(rule.id)
        if setting is not None and not setting.enabled:
            continue
        if setting is None and policy.only_listed:
            continue
        enabled.append((rule, setting))
    return enabled


def _run_rule(rule: Rule, setting: RuleSetting | None, inputs: PolicyInputs) -> list[tuple[KeyFacts, Finding]]:
    params = _params(rule, setting)
    severity = setting.severity if setting and setting.severity else rule.severity
    scope = setting.scope if setting and setting.scope is not None else rule.scope
    found: list[tuple[KeyFacts, Finding]] = []
    if rule.check is not None:
        for key in inputs.config.keys.values():
            facts = inputs.facts(key)
            if matches(scope, facts):
                found.extend((facts, _finding(rule, severity, v)) for v in rule.check(inputs, key, params))
    if rule.live_check is not None:
        for facts, violation in rule.live_check(inputs, params):
            if matches(scope, facts):
                found.append((facts, _finding(rule, severity, violation)))
    return found


def _params(rule: Rule, setting: RuleSetting | None) -> RuleParams:
    try:
        return rule.params.model_validate(setting.params if setting else {})
    except ValidationError:  # the loader reported it already; fall back to the defaults
        return rule.params()


def _finding(rule: Rule, severity: FindingSeverity, violation: Violation) -> Finding:
    return Finding(
        rule=rule.id,
        severity=severity,
        message=violation.message,
        fix=violation.fix or rule.fix,
        address=violation.address,
        target=violation.target,
        range=violation.range,
    )


def _run_custom(custom: CustomRule, inputs: PolicyInputs) -> list[tuple[KeyFacts, Finding]]:
    found = []
    for address, holds in sorted(custom.holds.items()):
        key = inputs.config.keys.get(address)
        if holds or key is None:
            continue
        finding = Finding(
            rule=custom.id,
            severity=custom.severity,
            message=custom.message,
            fix=f"Change the key so that the condition at {custom.condition_range} holds.",
            address=address,
            range=key.range,
        )
        found.append((inputs.facts(key), finding))
    return found


def _waived(exceptions: list[PolicyException]) -> str:
    latest = max(exceptions, key=lambda e: e.expires)
    return f"Waived through {latest.expires.isoformat()} by the exception at {latest.range}: {latest.reason}"


def _expired(exceptions: list[PolicyException]) -> str:
    latest = max(exceptions, key=lambda e: e.expires)
    return (
        f"The exception at {latest.range} ({latest.reason}) expired on {latest.expires.isoformat()}. "
        "Fix the finding, or renew the exception with a new expiry date."
    )


def _order(finding: Finding) -> tuple[str, int, int, str, str, str]:
    where = finding.range
    return (
        where.filename if where else "~",
        where.line if where else 0,
        where.column if where else 0,
        finding.address or "",
        finding.rule,
        finding.target or "",
    )


def _source_capabilities(config: Config) -> dict[str, SourceCapabilities]:
    capabilities: dict[str, SourceCapabilities] = {}
    for address, block in config.sources.items():
        try:
            plugin = registry.source_plugin(block.kind)
            if isinstance(plugin, SourcePlugin):
                capabilities[address] = plugin.declared_capabilities(plugin.settings_model.model_validate(block.attributes))
        except (ImportError, ValidationError):
            continue  # validate reports unusable source blocks
    return capabilities


def _target_plugins(config: Config) -> dict[str, tuple[ProviderPlugin[Any], ProviderSettings]]:
    targets: dict[str, tuple[ProviderPlugin[Any], ProviderSettings]] = {}
    for address, block in config.providers.items():
        try:
            plugin = registry.provider_plugin(block.kind)
            if isinstance(plugin, ProviderPlugin):
                settings = plugin.settings_model.model_validate(block.attributes)
                targets[address] = (plugin, settings)
        except (ImportError, ValidationError):
            continue  # validate reports unusable provider blocks
    return targets


def live_keys(live: dict[str, dict[str, object]]) -> dict[str, dict[str, RemoteKey]]:
    """A refresh-only plan's `live` values as remote keys."""
    return {
        target: {remote_id: RemoteKey.model_validate(value) for remote_id, value in keys.items()}
        for target, keys in live.items()
    }
