"""The policy steps of validate, plan, apply and drift: the findings of the configuration's
`policy` block (none without one), and the gate that stops a command on error-level findings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from keyplan.diagnostics import Diagnostic, DiagnosticsError, Severity
from keyplan.policy.model import Finding, FindingSeverity, Phase

if TYPE_CHECKING:  # the engine (its rules, the plugins' capabilities) loads only for a declared policy
    from keyplan.config.model import Config
    from keyplan.policy.engine import PolicyReport
    from keyplan.state.model import State


def policy_findings(config: Config, state: State | None = None) -> list[Finding]:
    """Configuration rules, and state rules when a state is given."""
    report = offline_findings(config, state)
    return report.findings if report else []


def gate(findings: list[Finding], command: str) -> None:
    """Stop `command` on error-level findings (with every finding shown)."""
    if any(f.severity == "error" for f in findings):
        raise DiagnosticsError([*as_diagnostics(findings), refusal(findings, command)])


def offline_findings(config: Config, state: State | None) -> PolicyReport | None:
    """The configuration (and, given one, state) rules of a declared policy; None without one."""
    if not config.policy.declared:
        return None
    from keyplan.policy.engine import evaluate

    phases = {Phase.CONFIG} | ({Phase.STATE} if state is not None else set())
    return evaluate(config, phases=phases, state=state)


def live_findings(config: Config, state: State, live: dict[str, dict[str, object]]) -> PolicyReport | None:
    """The live rules of a declared policy over a refresh-only plan's inventory."""
    if not config.policy.declared:
        return None
    from keyplan.policy.engine import evaluate, live_keys

    return evaluate(config, phases={Phase.LIVE}, state=state, live=live_keys(live))


def refusal(findings: list[Finding], command: str) -> Diagnostic:
    errors = sum(f.severity is FindingSeverity.ERROR for f in findings)
    return Diagnostic(
        severity=Severity.ERROR,
        summary=f"keyplan {command} stops on error-level policy findings",
        detail=f"{errors} policy finding(s) above are errors under the configuration's policy block. Fix them, "
        "lower the rule's severity in the policy block, or record an exception with a reason and an expiry date.",
    )


def as_diagnostics(findings: Iterable[Finding]) -> list[Diagnostic]:
    return [
        Diagnostic(
            severity=Severity.ERROR if f.severity is FindingSeverity.ERROR else Severity.WARNING,
            summary=f"Policy {f.rule}: {f.message}",
            detail=f.fix + (f"\n{f.note}" if f.note else ""),
            range=f.range,
            address=f.address,
        )
        for f in findings
    ]
