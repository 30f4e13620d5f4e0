"""Findings rendered for people and tools: terminal text, the JSON report
(`schemas/policy.schema.json`), SARIF 2.1.0 for code-review annotations, and the text and
Markdown sections plans carry. Renderers return strings; only the CLI prints.

Every value from the configuration or a cloud (addresses, labels in messages, reasons) is
escaped for its medium with `keyplan.escaping`; JSON and SARIF are written by the json module.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from keyplan import __version__
from keyplan.escaping import for_markdown, for_terminal, markdown_code
from keyplan.policy.model import Finding, FindingSeverity

if TYPE_CHECKING:  # a plan's findings section needs neither the engine nor the rule catalogue
    from keyplan.policy.engine import PolicyReport

POLICY_REPORT_FORMAT_VERSION = 1
SCHEMA_FILE = "policy.schema.json"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://keyplan.dev/docs/policy"
_SARIF_LEVELS = {FindingSeverity.ERROR: "error", FindingSeverity.WARNING: "warning", FindingSeverity.INFO: "note"}


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

_COLOURS = {FindingSeverity.ERROR: "1;31", FindingSeverity.WARNING: "1;33", FindingSeverity.INFO: "1;36"}


def finding_lines(finding: Finding, *, colour: bool = False) -> list[str]:
    tag = f"{finding.severity.value.capitalize()}[{finding.rule}]:"
    if colour:
        tag = f"\x1b[{_COLOURS[finding.severity]}m{tag}\x1b[0m"
    lines = [f"{tag} {for_terminal(finding.message)}"]
    subject = for_terminal(finding.address or "") + (f" @ {for_terminal(finding.target)}" if finding.target else "")
    if finding.range is not None:
        lines.append(f"  on {for_terminal(str(finding.range))}" + (f", {subject}" if subject else ""))
    elif subject:
        lines.append(f"  with {subject}")
    lines.append(f"  Fix: {for_terminal(finding.fix)}")
    if finding.note:
        lines.append(f"  Note: {for_terminal(finding.note)}")
    return lines


def summary_line(report: PolicyReport) -> str:
    counts = report.counts()
    waived = f", {len(report.waived)} waived by exceptions" if report.waived else ""
    return (
        f"Policy: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info "
        f"from {len(report.rules)} rule(s){waived}."
    )


def render_text(report: PolicyReport, *, colour: bool = False) -> str:
    out: list[str] = []
    for finding in report.findings:
        out.extend(finding_lines(finding, colour=colour))
        out.append("")
    out.append(summary_line(report) if report.findings else f"No findings. {summary_line(report)}")
    return "\n".join(out) + "\n"


def plan_section_text(findings: list[Finding], *, colour: bool = False) -> str:
    """The findings a plan carries, shown above it."""
    if not findings:
        return ""
    out = ["Policy findings:", ""]
    for finding in findings:
        out.extend("  " + line for line in finding_lines(finding, colour=colour))
        out.append("")
    return "\n".join(out) + "\n"


def plan_section_markdown(findings: list[Finding]) -> list[str]:
    if not findings:
        return []
    lines = ["", "#### Policy findings", "", "| severity | rule | key | where | finding |", "|---|---|---|---|---|"]
    for f in findings:
        subject = (f.address or "") + (f" @ {f.target}" if f.target else "")
        lines.append(
            f"| {f.severity.value} | {for_markdown(f.rule)} | {markdown_code(subject) if subject else ''} | "
            f"{for_markdown(f.range) if f.range else ''} | {for_markdown(f.message)} Fix: {for_markdown(f.fix)} |"
        )
    return lines


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleInfo(_Model):
    id: str
    title: str
    rationale: str
    fix: str
    default_severity: FindingSeverity


class PolicyReportDocument(_Model):
    """What `keyplan check -format=json` prints."""

    format_version: int = Field(
        default=POLICY_REPORT_FORMAT_VERSION, description="Changes only on incompatible changes to this document."
    )
    keyplan_version: str
    clean: bool = Field(description="True when there is no finding at all.")
    counts: dict[FindingSeverity, int] = Field(description="Findings by severity; every severity is present.")
    findings: list[Finding] = Field(description="Every finding, ordered by file, line, column, key and rule.")
    waived: list[Finding] = Field(description="Findings an unexpired exception covers; `note` names it.")
    rules: list[str] = Field(description="The ids of the rules that ran.")
    catalogue: list[RuleInfo] = Field(description="Every built-in rule with its rationale and fix.")


def report_document(report: PolicyReport) -> PolicyReportDocument:
    from keyplan.policy.rules import RULES

    return PolicyReportDocument(
        keyplan_version=__version__,
        clean=not report.findings,
        counts={FindingSeverity(k): v for k, v in report.counts().items()},
        findings=report.findings,
        waived=report.waived,
        rules=report.rules,
        catalogue=[
            RuleInfo(id=r.id, title=r.title, rationale=r.rationale, fix=r.fix, default_severity=r.severity)
            for r in RULES.values()
        ],
    )


def render_json(report: PolicyReport) -> str:
    return json.dumps(report_document(report).model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def policy_schema() -> dict[str, Any]:
    from keyplan.schemas import with_meta

    return with_meta(
        PolicyReportDocument.model_json_schema(mode="serialization"),
        SCHEMA_FILE,
        "keyplan policy report",
        "What `keyplan check -format=json` prints: the findings of the policy rules. `keyplan check` "
        "exits 0 when nothing reaches -fail-on, 2 when a finding does, 1 on errors. `format_version` changes only "
        "on incompatible changes.",
    )


# ---------------------------------------------------------------------------------------------
# SARIF
# ---------------------------------------------------------------------------------------------


def render_sarif(report: PolicyReport, *, config_dir: Path, base: Path) -> str:
    """SARIF 2.1.0: one run of keyplan, its rules, and one result per finding (waived findings
    as suppressed results). File locations are relative to `base` (the directory a code-review
    tool calls the repository root) when the configuration is inside it."""
    from keyplan.policy.rules import RULES

    rule_ids = [r.id for r in RULES.values()] + sorted({f.rule for f in report.findings + report.waived} - set(RULES))
    rules = [_sarif_rule(rule_id) for rule_id in rule_ids]
    results = [_sarif_result(f, rule_ids, config_dir, base, suppressed=False) for f in report.findings]
    results += [_sarif_result(f, rule_ids, config_dir, base, suppressed=True) for f in report.waived]
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "keyplan",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def sarif_text(text: str) -> str:
    """A plain text SARIF message holding `text` literally: SARIF 2.1.0 reads `[text](target)` in
    a message as an embedded link (section 3.11.6) and `{0}` as a placeholder (3.11.5), so the
    brackets (and the backslash that escapes them) are escaped with a backslash and the braces
    doubled. Control characters are escaped as for the terminal (a viewer may show them raw)."""
    escaped = for_terminal(text)
    escaped = escaped.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return escaped.replace("{", "{{").replace("}", "}}")


def _sarif_rule(rule_id: str) -> dict[str, Any]:
    from keyplan.policy.rules import RULES

    rule = RULES.get(rule_id)
    if rule is None:  # a custom rule
        return {"id": rule_id, "name": rule_id, "shortDescription": {"text": sarif_text(f"Custom rule {rule_id}")}}
    return {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": sarif_text(rule.title)},
        "fullDescription": {"text": sarif_text(rule.rationale)},
        "help": {"text": sarif_text(rule.fix)},
        "defaultConfiguration": {"level": _SARIF_LEVELS[rule.severity]},
    }


def _sarif_result(
    finding: Finding, rule_ids: list[str], config_dir: Path, base: Path, *, suppressed: bool
) -> dict[str, Any]:
    # The same finding keeps its identity when lines move, so review tools track it across commits.
    identity = "\0".join((finding.rule, finding.address or "", finding.target or "", finding.message))
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_ids.index(finding.rule),
        "level": _SARIF_LEVELS[finding.severity],
        "message": {"text": sarif_text(f"{finding.message} Fix: {finding.fix}")},
        "partialFingerprints": {"keyplanFinding/v1": hashlib.sha256(identity.encode()).hexdigest()},
    }
    location: dict[str, Any] = {}
    if finding.range is not None:
        region = {"startLine": finding.range.line, "startColumn": finding.range.column}
        if finding.range.end_line is not None:
            region["endLine"] = finding.range.end_line
        if finding.range.end_column is not None:
            region["endColumn"] = finding.range.end_column
        location["physicalLocation"] = {
            "artifactLocation": {"uri": _uri(config_dir / finding.range.filename, base)},
            "region": region,
        }
    if finding.address:
        location["logicalLocations"] = [{"fullyQualifiedName": finding.address, "kind": "resource"}]
    if location:
        result["locations"] = [location]
    if finding.target:
        result["properties"] = {"target": finding.target}
    if suppressed:
        result["suppressions"] = [{"kind": "inSource", "justification": finding.note or "policy exception"}]
    return result


def _uri(path: Path, base: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(base.resolve()).as_posix()
    except ValueError:
        return resolved.as_uri()
