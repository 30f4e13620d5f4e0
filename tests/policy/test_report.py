"""Findings rendered for terminals, Markdown and SARIF: values from the configuration are data,
never markup or escape sequences."""

from __future__ import annotations

import json
from pathlib import Path

from keyplan.diagnostics import SourceRange
from keyplan.policy.engine import PolicyReport
from keyplan.policy.model import Finding, FindingSeverity
from keyplan.policy.report import plan_section_markdown, render_sarif, render_text
from tests import schemas

SARIF_SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())
HOSTILE = 'key.k["\x1b[2J| **x** <img src=y>\n"]'


def _report() -> PolicyReport:
    finding = Finding(
        rule="labels",
        severity=FindingSeverity.WARNING,
        message=f"The {HOSTILE} label is odd.",
        fix="Fix it.",
        address=HOSTILE,
        target="aws.main",
        range=SourceRange(filename="main.kp.hcl", line=3, column=5),
    )
    waived = finding.model_copy(update={"rule": "rotation", "note": "Waived through 2026-12-31 by the exception at x: y"})
    return PolicyReport(findings=[finding], waived=[waived], rules=["labels", "rotation"])


def test_terminal_text_shows_control_characters_escaped() -> None:
    text = render_text(_report())
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert all(not line.startswith("**") for line in text.splitlines())


def test_markdown_cells_hold_literal_text() -> None:
    lines = plan_section_markdown(_report().findings)
    row = lines[-1]
    assert "\x1b" not in row and "<img" not in row and "**x**" not in row and "\n" not in row
    assert row.count("|") == 6  # the value's pipe cannot open a cell


def test_sarif_validates_and_marks_waived_findings_suppressed(tmp_path: Path) -> None:
    log = json.loads(render_sarif(_report(), config_dir=tmp_path / "keys", base=tmp_path))
    schemas.validate(log, SARIF_SCHEMA)
    results = log["runs"][0]["results"]
    assert [r["ruleId"] for r in results] == ["labels", "rotation"]
    assert "suppressions" not in results[0]
    assert results[1]["suppressions"][0]["justification"].startswith("Waived through 2026-12-31")
    location = results[0]["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "keys/main.kp.hcl"}, "region": {"startLine": 3, "startColumn": 5}}


def test_sarif_fingerprints_follow_the_finding_not_its_line(tmp_path: Path) -> None:
    report = _report()
    moved = PolicyReport(
        findings=[f.model_copy(update={"range": SourceRange(filename="main.kp.hcl", line=30, column=5)}) for f in report.findings]
    )

    def fingerprints(r: PolicyReport) -> list[str]:
        log = json.loads(render_sarif(r, config_dir=tmp_path, base=tmp_path))
        return [res["partialFingerprints"]["keyplanFinding/v1"] for res in log["runs"][0]["results"]]

    assert fingerprints(moved) == fingerprints(PolicyReport(findings=report.findings))
    other = PolicyReport(findings=[report.findings[0].model_copy(update={"address": "key.other"})])
    assert fingerprints(other) != fingerprints(moved)


def test_sarif_messages_hold_brackets_and_braces_literally(tmp_path: Path) -> None:
    """SARIF 2.1.0 reads `[text](target)` in a plain text message as an embedded link (3.11.6)
    and `{0}` as a placeholder (3.11.5): a value from the configuration is escaped so a viewer
    shows it as written, not as a link or an argument."""
    address = 'key.k["[docs](https://attacker.example) {0} a\\\\b"]'
    finding = Finding(
        rule="labels", severity=FindingSeverity.WARNING, message=f"The {address} label is odd.", fix="Fix it."
    )
    log = json.loads(render_sarif(PolicyReport(findings=[finding]), config_dir=tmp_path, base=tmp_path))
    schemas.validate(log, SARIF_SCHEMA)
    text = log["runs"][0]["results"][0]["message"]["text"]
    assert "[docs](" not in text and "\\[docs\\](https://attacker.example)" in text
    assert "{0}" not in text.replace("{{0}}", "") and "{{0}}" in text
    assert "a\\\\\\\\b" in text  # the backslash that escapes brackets is itself escaped

    def unescaped(message: str) -> str:  # what a SARIF viewer shows
        out, i = [], 0
        while i < len(message):
            if message[i] == "\\" and i + 1 < len(message) and message[i + 1] in "\\[]":
                out.append(message[i + 1])
                i += 2
            elif message[i] in "{}" and message[i : i + 2] in ("{{", "}}"):
                out.append(message[i])
                i += 2
            else:
                out.append(message[i])
                i += 1
        return "".join(out)

    assert unescaped(text) == f"The {address} label is odd. Fix: Fix it."
