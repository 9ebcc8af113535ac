"""The canonical raw frame every adapter returns, and the helpers the adapters share.

An adapter turns one export :class:`~cae_impact.ingest.tabular.Table` into a :class:`RawExport`:

- ``frame``: one row per data record kept by ingestion, question ids as columns holding the raw
  values (answer codes or texts as exported, numbers as text), ``<NA>`` when blank. A
  multiple-choice question holds a tuple of the raw ticked answers (codes or texts), ``<NA>``
  when nothing is ticked. Technical columns start with ``_``: ``_line`` (the raw line of the
  row), ``_rid`` (the questionnaire's hidden participation id), ``_token``, ``_email``,
  ``_response_id`` (the tool's own id of the submission), ``_submitted_at`` (raw text) and
  ``_qversion``. ``_token``, ``_email`` and ``_rid`` are personal: the cleaning step uses them
  to find double submissions and to derive the pseudonym, then drops them.
- ``rejected``: records that could not be read as a response (a line with the wrong number of
  fields, a second header row), each with its raw line and reason; the cleaning step puts them
  in quarantine so that raw rows = kept + set aside + merged duplicates.
- ``problems``: what the CAE should know (unmapped columns, unknown answer codes…).

Columns holding personal data that the analysis never needs (IP address, user name, names,
device ids…) are never copied into the frame; the adapters list them in ``removed_columns``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cae_impact.ingest.answers import normalise_label
from cae_impact.ingest.problems import Problem
from cae_impact.ingest.tabular import Table

META_COLUMNS = ("_line", "_rid", "_token", "_email", "_response_id", "_submitted_at", "_qversion")
"""Technical columns of the canonical raw frame, always present (``<NA>`` when unknown)."""

PERSONAL_META = ("_rid", "_token", "_email")
"""Technical columns that identify a person: used for de-duplication and pseudonyms, then dropped."""

PERSONAL_HEADER_NAMES = frozenset(
    normalise_label(n)
    for n in (
        "ipaddr", "ip", "adresse ip", "ip address", "refurl", "firstname", "lastname", "prenom",
        "nom", "nom de famille", "name", "first name", "last name", "full name", "username",
        "nom d'utilisateur", "_submitted_by", "submitted_by", "deviceid", "phonenumber",
        "phone", "telephone", "téléphone", "tel", "portable", "mobile", "simserial",
        "subscriberid", "adresse", "address", "adresse postale", "meta/deviceid", "meta/instanceid",
        "_geolocation", "_attachments", "audit", "audit_url",
    )
)
"""Headers of columns that hold personal data and are dropped on sight (never read)."""

EMAIL_HEADER_NAMES = frozenset(
    normalise_label(n)
    for n in ("email", "e-mail", "courriel", "adresse e-mail", "adresse email", "email address", "adresse électronique", "mail")
)


@dataclass(frozen=True)
class RejectedRecord:
    """A record of the raw file that ingestion could not read as a response."""

    line: int
    reason: str  # stable code: malformed_row, header_row
    detail: str  # French explanation for the quarantine file


@dataclass
class RawExport:
    """One export mapped onto the codebook, values still raw (see the module docstring)."""

    path: Path
    format: str
    frame: pd.DataFrame
    source_columns: dict[str, str]  # question id or technical column -> header in the raw file
    rejected: list[RejectedRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    removed_columns: list[str] = field(default_factory=list)
    unmapped_columns: list[str] = field(default_factory=list)
    missing_questions: list[str] = field(default_factory=list)
    encoding: str | None = None
    separator: str | None = None
    sheet: str | None = None
    sha256: str = ""
    blank_records: int = 0
    header_line: int = 1
    unmapped_filled: dict[str, int] = field(default_factory=dict)
    """Non-empty cells of each unrecognised column (answers that may have been lost)."""
    partial_filled: dict[str, int] = field(default_factory=dict)
    """Question id -> cells holding an answer in its columns whose choice was not recognised."""
    setting: str = ""
    """The export setting recognised, in French (« en-têtes : code de la question ; … »)."""
    other_texts: dict[str, dict[int, str]] = field(default_factory=dict)
    """Answers typed in a tool's « Autre » option: question id -> {frame row: text}. Free text,
    personal: never written as is (the answer itself reads as the scale's ``autre`` choice)."""

    @property
    def n_raw_rows(self) -> int:
        """Data records of the raw file (blank lines excluded): read rows plus rejected ones."""
        return len(self.frame) + len(self.rejected)

    @property
    def question_ids(self) -> list[str]:
        """Question columns of the frame, in codebook order."""
        return [c for c in self.frame.columns if not c.startswith("_")]


def text_column(values: Iterable[str]) -> pd.Series:
    """A string Series with ``<NA>`` for empty cells."""
    series = pd.Series(list(values), dtype="string")
    return series.mask(series.str.strip() == "")


def build_frame(
    table: Table,
    lines: list[int],
    rows_index: list[int],
    columns: dict[str, pd.Series | list],
) -> pd.DataFrame:
    """Assemble a canonical raw frame: meta columns first (NA when absent), then questions."""
    n = len(rows_index)
    data: dict[str, object] = {"_line": pd.Series(lines, dtype="int64")}
    for meta in META_COLUMNS[1:]:
        data[meta] = columns.pop(meta) if meta in columns else pd.Series([pd.NA] * n, dtype="string")
    data.update(columns)
    frame = pd.DataFrame(data)
    frame.index = pd.RangeIndex(n)
    return frame


def find_header_rows(table: Table, extra_names: dict[int, set[str]] | None = None) -> list[int]:
    """Indices of data rows that repeat the header.

    Two exports pasted together, or a second header line of question texts: at least half of
    their non-empty cells, and at least two, equal the header cell of their column (or another
    known name of that column).
    """
    if not table.rows:
        return []
    columns = list(zip(*table.rows, strict=True))
    candidates: dict[int, int] = {}  # row index -> cells equal to their column's header
    for j, column in enumerate(columns):
        names = {normalise_label(table.header[j])} | set((extra_names or {}).get(j, ()))
        matching = {v for v in set(column) if v and normalise_label(v) in names}
        if not matching:
            continue
        for i, value in enumerate(column):
            if value in matching:
                candidates[i] = candidates.get(i, 0) + 1
    found: list[int] = []
    for i, same in sorted(candidates.items()):
        filled = sum(1 for v in table.rows[i] if v)
        if same >= 2 and same * 2 >= filled:
            found.append(i)
    return found


_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2}|UTC|GMT)?$"
)
_FR_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2})[:h](\d{2})(?::(\d{2}))?)?$")
_YMD_SLASH_RE = re.compile(
    r"^(\d{4})/(\d{1,2})/(\d{1,2})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(AM|PM|am|pm)?)?(?:\s*(?:UTC|GMT)[+-]?\d*(?::\d{2})?)?$"
)


def parse_datetime(text: str | None) -> dt.datetime | None:
    """Parse a submission time as written by the survey tools; None when blank or unreadable.

    Accepts ISO 8601 (``2026-03-14 10:22:31``, ``2026-03-14T10:22:31.000+01:00``: the offset is
    dropped, keeping the respondent's local clock time), French ``14/03/2026 10:22:31`` (day
    first) and Google Forms' English ``2026/03/14 10:22:31 AM UTC+1``.

    >>> parse_datetime("14/03/2026 10:22:31"), parse_datetime("2026-03-14T10:22:31.120+01:00")
    (datetime.datetime(2026, 3, 14, 10, 22, 31), datetime.datetime(2026, 3, 14, 10, 22, 31))
    """
    if text is None or text is pd.NA:
        return None
    text = str(text).strip()
    if not text:
        return None
    try:
        if m := _ISO_RE.match(text):
            y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:6])
            return dt.datetime(y, mo, d, h, mi, s)
        if m := _FR_RE.match(text):
            d, mo, y, h, mi, s = (int(g) if g else 0 for g in m.groups())
            return dt.datetime(y, mo, d, h, mi, s)
        if m := _YMD_SLASH_RE.match(text):
            y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:6])
            meridiem = (m.group(7) or "").upper()
            if meridiem == "PM" and h < 12:
                h += 12
            elif meridiem == "AM" and h == 12:
                h = 0
            return dt.datetime(y, mo, d, h, mi, s)
    except ValueError:
        return None
    return None


_NUMBER_CLEAN_RE = re.compile(r"(?i)\s*(€|eur|euros?|mois|ans?|/\s*10|points?)\s*$")
_FR_THOUSANDS_RE = re.compile(r"^[+-]?\d{1,3}(?:[ .]\d{3})+(?:,\d+)?$")
_PLAIN_RE = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?$")


def parse_number(text: str | None) -> float | None:
    """Parse a number written the French or the English way; None when it is not a number.

    Decimal comma or point, spaces (also non-breaking) or dots as thousands separators, and a
    trailing unit (``€``, ``euros``, ``mois``, ``ans``) are accepted.

    >>> parse_number("1 500,50 €"), parse_number("2.000"), parse_number("7,5"), parse_number("3.0000000000")
    (1500.5, 2000.0, 7.5, 3.0)
    >>> parse_number("environ 1500") is None, parse_number("=1+1") is None
    (True, True)
    """
    if text is None or text is pd.NA:
        return None
    value = str(text).strip().replace("\u00a0", " ").replace("\u202f", " ")
    value = _NUMBER_CLEAN_RE.sub("", value).strip()
    if not value:
        return None
    if _FR_THOUSANDS_RE.match(value):
        value = value.replace(" ", "").replace(".", "").replace(",", ".")
    elif "," in value and "." in value:
        if value.rfind(",") > value.rfind("."):
            value = value.replace(".", "").replace(",", ".")
        else:
            value = value.replace(",", "")
    else:
        value = value.replace(" ", "").replace(",", ".")
    if not _PLAIN_RE.match(value):
        return None
    try:
        return float(value)
    except ValueError:
        return None
