"""Diagnostics: the way keyplan reports problems the user caused.

A diagnostic has a severity, a one-line summary, a detail written in full sentences that ends
with how to fix the problem, and, where it has one, a place in a configuration file. Code that
finds user errors collects them into a `Diagnostics` list and keeps going, so that one run
shows every problem at once; only the CLI decides exit codes and prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class SourceRange(BaseModel):
    """A place in a configuration file; lines and columns count from 1."""

    model_config = ConfigDict(frozen=True)

    filename: str
    line: int = 1
    column: int = 1
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True)

    severity: Severity
    summary: str
    detail: str = ""
    range: SourceRange | None = None
    address: str | None = None

    def __str__(self) -> str:
        where = f"{self.range}: " if self.range else ""
        subject = f" ({self.address})" if self.address else ""
        text = f"{where}{self.severity.value}: {self.summary}{subject}"
        if self.detail:
            text += "\n  " + self.detail.replace("\n", "\n  ")
        return text


class Diagnostics:
    """An ordered collection of diagnostics; falsy when empty."""

    def __init__(self, items: Iterable[Diagnostic] = ()) -> None:
        self._items: list[Diagnostic] = list(items)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"Diagnostics({self._items!r})"

    def add(self, diagnostic: Diagnostic) -> None:
        self._items.append(diagnostic)

    def extend(self, other: Iterable[Diagnostic]) -> None:
        self._items.extend(other)

    def error(
        self,
        summary: str,
        detail: str = "",
        *,
        range: SourceRange | None = None,
        address: str | None = None,
    ) -> None:
        self.add(Diagnostic(severity=Severity.ERROR, summary=summary, detail=detail, range=range, address=address))

    def warning(
        self,
        summary: str,
        detail: str = "",
        *,
        range: SourceRange | None = None,
        address: str | None = None,
    ) -> None:
        self.add(Diagnostic(severity=Severity.WARNING, summary=summary, detail=detail, range=range, address=address))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self._items if d.severity is Severity.WARNING]

    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self._items)

    def raise_if_errors(self) -> None:
        if self.has_errors():
            raise DiagnosticsError(self)


class DiagnosticsError(Exception):
    """Carries user errors across layers to the CLI, which prints them and exits 1."""

    def __init__(self, diagnostics: Diagnostics | Iterable[Diagnostic]) -> None:
        self.diagnostics = diagnostics if isinstance(diagnostics, Diagnostics) else Diagnostics(diagnostics)
        super().__init__("; ".join(d.summary for d in self.diagnostics))

    @classmethod
    def single(
        cls, summary: str, detail: str = "", *, range: SourceRange | None = None, address: str | None = None
    ) -> DiagnosticsError:
        diags = Diagnostics()
        diags.error(summary, detail, range=range, address=address)
        return cls(diags)
