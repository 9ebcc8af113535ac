"""KoboToolbox adapter: the CSV or XLSX « XML values and headers » export.

Kobo names a column ``group/name`` (the codebook's section and question id; nested groups add
more segments). A ``select_multiple`` question gives a column of space-separated choice codes
and, when « Include data in one column per choice » is on, a ``group/name/code`` column per
choice holding ``1``/``0``. Kobo adds ``start``, ``end``, ``_id``, ``_uuid``,
``_submission_time``, ``_index``, ``_submitted_by``, ``_status``, ``_validation_status``,
``_notes``, ``_tags``, ``__version__``, ``meta/instanceID``; the user name, device and phone
metadata are personal and dropped. An export with labels instead of XML values is read too: the
answer texts are recoded by the cleaning step.

The submission time is ``end`` (the respondent's clock, offset dropped) when present, else
``_submission_time`` (server time, UTC).
"""

from __future__ import annotations

from cae_impact.ingest.answers import normalise_label
from cae_impact.ingest.base import EMAIL_HEADER_NAMES, PERSONAL_HEADER_NAMES, RawExport
from cae_impact.ingest.plan import ColumnPlan, HeaderIndex, materialise
from cae_impact.ingest.tabular import Table

FORMAT = "kobo"

IGNORED = {
    "start", "_id", "_index", "_status", "_validation_status", "_notes", "_tags", "__version__",
    "_version_", "_xform_id_string", "today", "instanceid", "meta/instanceid", "meta/rootuuid",
    "formhub/uuid", "_parent_index", "_parent_table_name", "_submission__id",
}
PERSONAL = {"_submitted_by", "username", "deviceid", "phonenumber", "simserial", "subscriberid",
            "_geolocation", "_attachments", "audit", "audit_url"}
SIGNATURE = {"_uuid", "_submission_time", "_index", "_id", "_submitted_by"}


def looks_like(header: list[str]) -> bool:
    """True when the header has Kobo's metadata columns or ``group/name`` headers."""
    names = {h.strip().casefold() for h in header}
    return len(SIGNATURE & names) >= 2


def _split_codes(cell: str) -> tuple[str, ...]:
    return tuple(cell.split())


def plan_columns(table: Table, codebook) -> ColumnPlan:
    """Assign every column of a Kobo export (see the module docstring)."""
    index = HeaderIndex(codebook)
    plan = ColumnPlan()
    end_col = submission_col = None
    choice_cols: dict[str, dict[str, int]] = {}
    for j, raw_name in enumerate(table.header):
        name = raw_name.strip()
        low = name.casefold()
        last = low.rsplit("/", 1)[-1]
        if low == "_uuid":
            plan.meta["_response_id"] = j
        elif low in ("end", "meta/end"):
            end_col = j
        elif low == "_submission_time":
            submission_col = j
        elif low in IGNORED or last in IGNORED:
            plan.ignored.append(j)
        elif low in PERSONAL or last in PERSONAL or normalise_label(name) in PERSONAL_HEADER_NAMES:
            plan.removed.append(j)
        elif last in EMAIL_HEADER_NAMES or normalise_label(name) in EMAIL_HEADER_NAMES:
            plan.add_meta("_email", j)
        elif (tech := index.technical(last)) is not None or (tech := index.technical(name)) is not None:
            plan.add_meta(tech, j)
        else:
            parts = [p for p in name.split("/") if p]
            qid = index.question(parts[-1]) if parts else None
            if qid is not None:
                if codebook.question(qid).type == "multiple":
                    plan.add_joined(qid, j, _split_codes)
                else:
                    plan.add_single(qid, j)
                continue
            if len(parts) >= 2 and (qid := index.question(parts[-2])) is not None:
                question = codebook.question(qid)
                codes = {c.code.casefold(): c.code for c in codebook.scale_of(qid).choices} if question.has_choices else {}
                if question.type == "multiple" and parts[-1].casefold() in codes:
                    choice_cols.setdefault(qid, {})[codes[parts[-1].casefold()]] = j
                    continue
            if (qid := index.question(name)) is not None:  # label headers: the question text
                if codebook.question(qid).type == "multiple":
                    plan.add_joined(qid, j, _split_codes)
                else:
                    plan.add_single(qid, j)
                continue
            plan.unmapped.append(j)
    if end_col is not None:
        plan.meta["_submitted_at"] = end_col
        if submission_col is not None:
            plan.ignored.append(submission_col)
    elif submission_col is not None:
        plan.meta["_submitted_at"] = submission_col
    for qid, cols in choice_cols.items():
        if qid in plan.multi_joined:
            plan.ignored.extend(cols.values())  # the space-separated column is authoritative
        else:
            plan.multi_columns[qid] = cols
    return plan


def read(table: Table, codebook) -> RawExport:
    """Map a Kobo export table (CSV or XLSX) onto the codebook."""
    return materialise(table, plan_columns(table, codebook), codebook, FORMAT)
