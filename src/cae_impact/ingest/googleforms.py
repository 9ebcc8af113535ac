"""Google Forms adapter: the responses CSV downloaded from the form or its Sheets.

Headers are the full question texts; answers are the full answer texts; the answers of a
checkbox question are joined with ``", "`` in one cell — and an answer text may itself contain
a comma, so known answer texts are matched (:meth:`AnswerMatcher.split_joined`) instead of
splitting on every comma. The first column is the submission time, ``Horodateur`` (French
interface, ``dd/mm/yyyy HH:MM:SS``) or ``Timestamp``; ``Adresse e-mail`` / ``Email Address`` is
present when the form collects e-mails (read for double submissions only, then dropped). A
checkbox grid exports ``Question [row]`` columns, matched like LimeSurvey sub-questions.

The Forms download (« Télécharger les réponses (.csv) ») writes the time as
``2026/03/14 10:22:31 AM UTC+1`` (or ``UTC`` only); the Sheets download writes it as the sheet
shows it (``14/03/2026 10:22:31`` in a French sheet, ``3/14/2026 10:22:31`` in a US one): all are
read by :func:`~cae_impact.ingest.base.parse_datetime`, US dates once recognised as month first.

The built-in « Autre » option of a question lets the respondent type an answer: Google writes
the typed text in place of a choice (alone in a multiple-choice question, among the joined texts
of a checkbox question). For a question whose scale has an ``autre`` choice, an answer text that
is no choice of the scale is read as ``autre`` (the typed text is kept in
``RawExport.other_texts``, whole — never split on its commas; it is free text, masked by the
cleaning step before anything is written). For any other question it stays an unknown answer.
"""

from __future__ import annotations

import re

import pandas as pd

from cae_impact.ingest.answers import AnswerMatcher, normalise_label
from cae_impact.ingest.base import EMAIL_HEADER_NAMES, PERSONAL_HEADER_NAMES, RawExport
from cae_impact.ingest.plan import ColumnPlan, HeaderIndex, materialise
from cae_impact.ingest.tabular import Table

FORMAT = "googleforms"

TIMESTAMP_HEADERS = {normalise_label(h) for h in ("Horodateur", "Timestamp", "Horodatage", "Marca temporal")}
IGNORED_HEADERS = {normalise_label(h) for h in ("Score", "Total score", "Note", "Points")}
JOIN_SEPARATOR = ", "
OTHER_CODE = "autre"
"""Code of the choice the « Autre » option of Google Forms is read as."""
_BRACKET_RE = re.compile(r"^(?P<text>.*?)\s*\[(?P<row>[^\]]+)\]\s*$")


def looks_like(header: list[str]) -> bool:
    """True when the first column is Google Forms' submission time."""
    return bool(header) and normalise_label(header[0]) in TIMESTAMP_HEADERS


def plan_columns(table: Table, codebook) -> ColumnPlan:
    """Assign every column of a Google Forms export (see the module docstring)."""
    index = HeaderIndex(codebook)
    plan = ColumnPlan()
    for j, raw_name in enumerate(table.header):
        name = raw_name.strip()
        norm = normalise_label(name)
        if norm in TIMESTAMP_HEADERS:
            plan.add_meta("_submitted_at", j)
        elif norm in EMAIL_HEADER_NAMES:
            plan.add_meta("_email", j)
        elif norm in IGNORED_HEADERS:
            plan.ignored.append(j)
        elif norm in PERSONAL_HEADER_NAMES:
            plan.removed.append(j)
        elif (tech := index.technical(name)) is not None:
            plan.add_meta(tech, j)
        elif (qid := index.question(name)) is not None:
            question = codebook.question(qid)
            if question.type == "multiple":
                scale = codebook.scale_of(qid)
                matcher = AnswerMatcher.from_scale(scale)
                plan.add_joined(qid, j, _joined_splitter(matcher, OTHER_CODE if OTHER_CODE in scale.codes else None))
            else:
                plan.add_single(qid, j)
        elif (m := _BRACKET_RE.match(name)) is not None and (qid := index.question(m.group("text"))) is not None:
            question = codebook.question(qid)
            matcher = AnswerMatcher.from_scale(codebook.scale_of(qid)) if question.has_choices else None
            code = matcher.match(m.group("row")) if matcher else None
            if question.type == "multiple" and code is not None:
                plan.add_choice(qid, code, j)
            else:
                plan.partial[j] = qid
        else:
            plan.unmapped.append(j)
    return plan


def _joined_splitter(matcher: AnswerMatcher, other: str | None = None):
    def split(cell: str) -> tuple[str, ...]:
        codes, unknown = matcher.split_joined(cell, JOIN_SEPARATOR)
        if other is not None and unknown:
            # the « Autre » option: the typed text, read as the scale's « autre » choice
            return tuple(dict.fromkeys([*codes, other]))
        return tuple(codes) + tuple(unknown)

    return split


def _other_text(cell: str, matcher: AnswerMatcher) -> str | None:
    """The text typed in the « Autre » option of a joined cell, whole (None when there is none)."""
    _, unknown = matcher.split_joined(cell, JOIN_SEPARATOR)
    return JOIN_SEPARATOR.join(unknown) if unknown else None


def read(table: Table, codebook) -> RawExport:
    """Map a Google Forms export table onto the codebook."""
    plan = plan_columns(table, codebook)
    if "_submitted_at" in plan.meta:
        j = plan.meta["_submitted_at"]
        first = next((r[j] for r in table.rows if r[j].strip()), "")
        plan.setting = (
            "téléchargement depuis Google Sheets" if re.match(r"^\d{1,2}/\d{1,2}/\d{4}", first)
            else "téléchargement depuis Google Forms"
        )
    raw = materialise(table, plan, codebook, FORMAT)
    _read_other_option(raw, plan, table, codebook)
    _month_first_dates(raw)
    return raw


_SLASH_DATE_RE = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})(.*)$")


def _month_first_dates(raw: RawExport) -> None:
    """A Sheets download from an English (US) sheet writes ``3/14/2026 10:22:31``, month first.

    Day first is the default (French sheets); the column is read month first when one of its
    dates can only be month first (a second number above 12) and none can only be day first.
    Month-first dates are rewritten as ISO dates, which every later step reads.
    """
    series = raw.frame["_submitted_at"]
    parts = [m.groups() for v in series.dropna() if (m := _SLASH_DATE_RE.match(str(v)))]
    if not parts or not any(int(b) > 12 for _, b, _, _ in parts) or any(int(a) > 12 for a, _, _, _ in parts):
        return

    def iso(value: object) -> object:
        m = _SLASH_DATE_RE.match(str(value)) if isinstance(value, str) else None
        if m is None:
            return value
        month, day, year, rest = m.groups()
        return f"{year}-{int(month):02d}-{int(day):02d}{rest}"

    raw.frame["_submitted_at"] = series.map(iso).astype(series.dtype)


def _read_other_option(raw: RawExport, plan: ColumnPlan, table: Table, codebook) -> None:
    """Read the « Autre » option's typed answers as ``autre`` and keep the typed texts aside."""
    for qid in [*plan.single, *plan.multi_joined]:
        question = codebook.question(qid)
        if not question.has_choices:
            continue
        scale = codebook.scale_of(qid)
        if OTHER_CODE not in scale.codes:
            continue
        matcher = AnswerMatcher.from_scale(scale)
        series = raw.frame[qid]
        texts: dict[int, str] = {}
        if question.type == "multiple":
            j = plan.multi_joined[qid][0]
            by_line = {table.lines[i]: table.rows[i][j] for i in range(len(table.rows))}
            for i, line in raw.frame["_line"].items():
                cell = by_line.get(int(line), "")
                if cell and (text := _other_text(cell, matcher)) is not None:
                    texts[i] = text
        else:
            for i, value in series.items():
                if value is pd.NA or value is None or matcher.match(str(value)) is not None:
                    continue
                texts[i] = str(value)
                raw.frame.at[i, qid] = OTHER_CODE
        if texts:
            raw.other_texts[qid] = texts
