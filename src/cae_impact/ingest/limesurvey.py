"""LimeSurvey adapter: the « Export responses » CSV, with answer codes or full answer texts.

LimeSurvey writes one column per question, named by the question code (the codebook's
``export_code``), and one column per sub-question of a multiple-choice question,
``CODE[SQcode]``, holding ``Y`` when ticked (or « Oui » / the answer text in a full-text
export). The fixed columns ``id``, ``submitdate``, ``lastpage``, ``startlanguage``, ``seed``,
``token``, ``ipaddr`` (and ``startdate``, ``datestamp``, ``refurl`` when enabled) come first; an
incomplete response has an empty ``submitdate``. Participant attributes (``firstname``,
``lastname``, ``email``) appear when the survey uses a participant table: they are dropped, the
e-mail being only read to find double submissions.
"""

from __future__ import annotations

import re

from cae_impact.ingest.answers import normalise_label
from cae_impact.ingest.base import EMAIL_HEADER_NAMES, PERSONAL_HEADER_NAMES, RawExport
from cae_impact.ingest.plan import ColumnPlan, HeaderIndex, materialise
from cae_impact.ingest.tabular import Table

FORMAT = "limesurvey"

_SUBQUESTION_RE = re.compile(r"^(?P<code>[A-Za-z][A-Za-z0-9_]*)\s*\[(?P<sq>[^\]]*)\]\s*$")

META = {"id": "_response_id", "submitdate": "_submitted_at", "token": "_token"}
IGNORED = {"lastpage", "startlanguage", "seed", "startdate", "datestamp", "interviewtime"}
PERSONAL = {"ipaddr", "refurl", "firstname", "lastname"}
SIGNATURE = {"id", "submitdate", "lastpage", "startlanguage"}
"""Columns whose presence identifies a LimeSurvey export (see :func:`looks_like`)."""


def looks_like(header: list[str]) -> bool:
    """True when the header has LimeSurvey's fixed columns."""
    names = {h.strip().casefold() for h in header}
    return len(SIGNATURE & names) >= 3


def plan_columns(table: Table, codebook) -> ColumnPlan:
    """Assign every column of a LimeSurvey export (see the module docstring)."""
    index = HeaderIndex(codebook)
    plan = ColumnPlan()
    for j, raw_name in enumerate(table.header):
        name = raw_name.strip()
        low = name.casefold()
        if low in META:
            plan.add_meta(META[low], j)
        elif low in IGNORED or re.fullmatch(r"(groupTime|[0-9]+X[0-9]+(X[0-9]+)?Time)\d*", name):
            plan.ignored.append(j)
        elif low in PERSONAL or normalise_label(name) in PERSONAL_HEADER_NAMES or low.startswith("attribute_"):
            plan.removed.append(j)
        elif normalise_label(name) in EMAIL_HEADER_NAMES:
            plan.add_meta("_email", j)
        elif (tech := index.technical(name)) is not None:
            plan.add_meta(tech, j)
        elif (m := _SUBQUESTION_RE.match(name)) is not None:
            qid = index.question(m.group("code"))
            if qid is None or codebook.question(qid).type != "multiple":
                plan.unmapped.append(j)
                continue
            sq = m.group("sq").strip()
            scale = codebook.scale_of(qid)
            codes = {c.code.casefold(): c.code for c in scale.choices}
            if sq.casefold() in ("other", "comment") or sq.casefold().endswith("comment"):
                plan.removed.append(j)  # « Autre : précisez » and comments are free text: not read
                continue
            if sq.casefold() not in codes:
                plan.unmapped.append(j)
                continue
            plan.add_choice(qid, codes[sq.casefold()], j)
        elif (qid := index.question(name)) is not None:
            if codebook.question(qid).type == "multiple":
                plan.unmapped.append(j)  # a multiple-choice question needs its [SQ] columns
            else:
                plan.add_single(qid, j)
        else:
            plan.unmapped.append(j)
    return plan


def read(table: Table, codebook) -> RawExport:
    """Map a LimeSurvey export table onto the codebook."""
    return materialise(table, plan_columns(table, codebook), codebook, FORMAT)
