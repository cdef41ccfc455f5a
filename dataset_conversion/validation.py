"""Collecting problems of a conversion: every error and warning names the file and the problem.

A converter walks over all cases before it decides anything, so that one run lists *every* bad input instead of
stopping at the first. :class:`ValidationReport` collects :class:`Issue` objects; at the end
:meth:`ValidationReport.raise_if_errors` raises one :class:`DatasetValidationError` listing all errors (a
``ValueError``, so callers that catch ``ValueError`` keep working). Warnings never stop a conversion; they are
printed by the command line tools and stored in ``provenance.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["DatasetValidationError", "Issue", "Severity", "ValidationReport"]

Severity = Literal["error", "warning"]

# How many errors the exception message spells out; the report object keeps all of them.
_MAX_ERRORS_IN_MESSAGE = 50


@dataclass(frozen=True)
class Issue:
    """One problem of the input.

    Attributes:
        severity: ``"error"`` (the dataset cannot be written) or ``"warning"`` (written, but look at it).
        file: The file (or folder) the problem is in; ``""`` for problems of the arguments themselves.
        problem: What is wrong, with the offending value and, where there is one, the way out.
        case: The case identifier, if the problem belongs to one case.
    """

    severity: Severity
    file: str
    problem: str
    case: str | None = None

    def __str__(self) -> str:
        where = self.file or "arguments"
        case = f" [case {self.case}]" if self.case else ""
        return f"{self.severity}: {where}{case}: {self.problem}"

    def as_json(self) -> dict[str, str | None]:
        """A JSON-serialisable dict (for ``provenance.json``)."""
        return {"severity": self.severity, "file": self.file, "case": self.case, "problem": self.problem}


class DatasetValidationError(ValueError):
    """The input has errors; :attr:`issues` holds all of them (the message lists them, one per line)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        lines = [str(issue) for issue in self.issues[:_MAX_ERRORS_IN_MESSAGE]]
        if len(self.issues) > _MAX_ERRORS_IN_MESSAGE:
            lines.append(f"... and {len(self.issues) - _MAX_ERRORS_IN_MESSAGE} more errors")
        super().__init__(f"{len(self.issues)} error(s) in the input; nothing was written:\n" + "\n".join(lines))


@dataclass
class ValidationReport:
    """Errors and warnings of one conversion, in the order found.

    Example:
        >>> report = ValidationReport()
        >>> report.warning("landmarks.json", "case 086, annotator 'mollabashi': landmark 'l16' is missing", case="086")
        >>> report.has_errors
        False
    """

    issues: list[Issue] = field(default_factory=list)

    def error(self, file: str | os.PathLike[str], problem: str, *, case: str | None = None) -> None:
        """Record an error (the conversion will fail, after every case has been checked)."""
        self.issues.append(Issue("error", _file_text(file), problem, case))

    def warning(self, file: str | os.PathLike[str], problem: str, *, case: str | None = None) -> None:
        """Record a warning (the conversion goes on)."""
        self.issues.append(Issue("warning", _file_text(file), problem, case))

    def extend(self, other: ValidationReport) -> None:
        """Append the issues of ``other``."""
        self.issues.extend(other.issues)

    @property
    def errors(self) -> list[Issue]:
        """The errors, in the order found."""
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        """The warnings, in the order found."""
        return [issue for issue in self.issues if issue.severity == "warning"]

    @property
    def has_errors(self) -> bool:
        """Whether any error was recorded."""
        return any(issue.severity == "error" for issue in self.issues)

    def __iter__(self) -> Iterator[Issue]:
        return iter(self.issues)

    def raise_if_errors(self) -> None:
        """Raise if any error was recorded.

        Raises:
            DatasetValidationError: listing every error.
        """
        errors = self.errors
        if errors:
            raise DatasetValidationError(errors)

    def summary(self) -> str:
        """One line: how many errors and warnings."""
        return f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"


def _file_text(file: str | os.PathLike[str]) -> str:
    return str(Path(file)) if isinstance(file, os.PathLike) else str(file)
