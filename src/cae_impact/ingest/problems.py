"""Errors and problems found in an export, located by file, line and column.

Two levels, for two situations:

- :class:`ExportError` stops ingestion: the file as a whole cannot be used (empty, not a survey
  export, unreadable encoding, broken quoting, required columns missing, another questionnaire
  version). Its message names the file, the line and the column, in French, for CAE staff.
- :class:`Problem` is recorded and ingestion goes on: an unmapped column, unknown answer codes, a
  repeated header row. Problems are listed by ``cae-impact validate`` and in the cleaning log;
  those of severity ``error`` make the export unusable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SEVERITIES = ("error", "warning", "info")
SEVERITY_LABELS = {"error": "ERREUR", "warning": "ATTENTION", "info": "INFO"}

MAX_LINES_SHOWN = 10


def format_lines(lines: tuple[int, ...] | list[int], limit: int = MAX_LINES_SHOWN) -> str:
    """French list of raw line numbers, shortened after ``limit``.

    >>> format_lines([3]), format_lines([3, 9, 12]), format_lines(list(range(2, 20)), limit=3)
    ('ligne 3', 'lignes 3, 9, 12', 'lignes 2, 3, 4… (18 en tout)')
    """
    lines = sorted(set(lines))
    if not lines:
        return ""
    if len(lines) == 1:
        return f"ligne {lines[0]}"
    shown = ", ".join(str(n) for n in lines[:limit])
    if len(lines) > limit:
        return f"lignes {shown}… ({len(lines)} en tout)"
    return f"lignes {shown}"


class ExportError(Exception):
    """An export that cannot be used; the message says which file, line and column, and why."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
        sheet: str | None = None,
    ) -> None:
        self.reason = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.column = column
        self.sheet = sheet
        super().__init__(self.located_message())

    def located_message(self) -> str:
        """``<file>, feuille S, ligne N, colonne « C » : <reason>`` with the parts that are known."""
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.sheet:
            where.append(f"feuille « {self.sheet} »")
        if self.line is not None:
            where.append(f"ligne {self.line}")
        if self.column is not None:
            where.append(f"colonne « {self.column} »")
        return f"{', '.join(where)} : {self.reason}" if where else self.reason


@dataclass(frozen=True)
class Problem:
    """Something wrong with an export that does not stop ingestion on its own.

    ``code`` is a stable English identifier (``unmapped_column``, ``unknown_code`` …);
    ``message`` is French, for CAE staff; ``lines`` are raw line numbers.
    """

    severity: str
    code: str
    message: str
    column: str | None = None
    lines: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def format_text(self) -> str:
        """One French line: severity, column, lines, message."""
        parts = [SEVERITY_LABELS[self.severity]]
        if self.column:
            parts.append(f"colonne « {self.column} »")
        if self.lines:
            parts.append(format_lines(self.lines))
        return f"{' — '.join(parts)} : {self.message}"

    def to_dict(self) -> dict:
        """JSON-ready form for the cleaning log (at most 50 lines listed)."""
        return {
            "severity": self.severity,
            "code": self.code,
            "column": self.column,
            "lines": list(sorted(set(self.lines)))[:50],
            "n_lines": len(set(self.lines)),
            "message": self.message,
        }
