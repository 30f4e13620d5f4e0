"""How evaluation fails: `EvaluationError` carries the diagnostics that stopped one expression,
and `FAILED` stands for the value of a variable or local whose own evaluation failed, so that
expressions using it fail quietly instead of repeating the same problem.
"""

from __future__ import annotations

from keyplan.diagnostics import Diagnostic, Severity, SourceRange


class EvaluationError(Exception):
    """The problems that stopped one expression. `diagnostics` is empty when the problem was
    already reported elsewhere (a reference to a variable or local that itself failed)."""

    def __init__(self, diagnostic: Diagnostic | None, *more: Diagnostic) -> None:
        self.diagnostics = ([diagnostic] if diagnostic else []) + list(more)
        super().__init__("; ".join(d.summary for d in self.diagnostics) or "already reported")

    @property
    def diagnostic(self) -> Diagnostic | None:
        return self.diagnostics[0] if self.diagnostics else None


def fail(summary: str, detail: str, range: SourceRange) -> EvaluationError:
    return EvaluationError(Diagnostic(severity=Severity.ERROR, summary=summary, detail=detail, range=range))


class Failed:
    """Stands for the value of a variable or local whose own evaluation failed."""

    def __repr__(self) -> str:
        return "<failed>"


FAILED = Failed()
