"""Google Forms adapter: the responses CSV downloaded from the form or its Sheets.

Headers are the full question texts; answers are the full answer texts; the answers of a
checkbox question are joined with ``", "`` in one cell — and an answer text may itself contain
a comma, so known answer texts are matched (:meth:`AnswerMatcher.split_joined`) instead of
splitting on every comma. The first column is the submission time, ``Horodateur`` (French
interface, ``dd/mm/yyyy HH:MM:SS``) or ``Timestamp``; ``Adresse e-mail`` / ``Email Address`` is
present when the form collects e-mails (read for double submissions only, then dropped). A
checkbox grid exports ``Question [row]`` columns, matched like LimeSurvey sub-questions.
"""

from __future__ import annotations

import re

from cae_impact.ingest.answers import AnswerMatcher, normalise_label
from cae_impact.ingest.base import EMAIL_HEADER_NAMES, PERSONAL_HEADER_NAMES, RawExport
from cae_impact.ingest.plan import ColumnPlan, HeaderIndex, materialise
from cae_impact.ingest.tabular import Table

FORMAT = "googleforms"

TIMESTAMP_HEADERS = {normalise_label(h) for h in ("Horodateur", "Timestamp", "Horodatage", "Marca temporal")}
IGNORED_HEADERS = {normalise_label(h) for h in ("Score", "Total score", "Note", "Points")}
JOIN_SEPARATOR = ", "
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
                matcher = AnswerMatcher.from_scale(codebook.scale_of(qid))
                plan.add_joined(qid, j, _joined_splitter(matcher))
            else:
                plan.add_single(qid, j)
        elif (m := _BRACKET_RE.match(name)) is not None and (qid := index.question(m.group("text"))) is not None:
            question = codebook.question(qid)
            matcher = AnswerMatcher.from_scale(codebook.scale_of(qid)) if question.has_choices else None
            code = matcher.match(m.group("row")) if matcher else None
            if question.type == "multiple" and code is not None:
                plan.add_choice(qid, code, j)
            else:
                plan.unmapped.append(j)
        else:
            plan.unmapped.append(j)
    return plan


def _joined_splitter(matcher: AnswerMatcher):
    def split(cell: str) -> tuple[str, ...]:
        codes, unknown = matcher.split_joined(cell, JOIN_SEPARATOR)
        return tuple(codes) + tuple(unknown)

    return split


def read(table: Table, codebook) -> RawExport:
    """Map a Google Forms export table onto the codebook."""
    return materialise(table, plan_columns(table, codebook), codebook, FORMAT)
