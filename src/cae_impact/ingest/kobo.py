"""KoboToolbox adapter: the CSV or XLSX export, in every setting of Kobo's download screen.

Kobo's exporter (formpack, ``src/formpack/reporting/export.py`` and ``schema/fields.py``) names
and fills columns according to the export settings:

- « Value and header format »: « XML values and headers » gives question names and choice codes;
  a language of the form gives the question labels and the choice labels;
- « Include groups in headers »: ``d5/mutual_help`` (or ``5. Échanges et entraide/<label>``)
  instead of the bare ``mutual_help`` (or ``<label>``), Kobo's default;
- « Export select_multiple responses »: a single column (choices joined by a space: codes, or
  *labels* in a label export), separate columns ``<question>/<choice>`` holding ``1``/``0``
  (headed ``<question label>/<choice label>`` in a label export), or both;
- CSV (``;`` separator, every cell quoted) or XLSX.

Every header the form can produce is computed from the XLSForm that ``make questionnaire``
generates (:func:`cae_impact.spec.questionnaire.build_xlsform`), so headers are matched whole, never
split on ``/`` (a label may hold one). Labels of a joined multiple-choice cell are matched as
whole labels (« Des conseils sur mon activité »), never word by word. Note rows of the form
(always empty) are ignored silently. Kobo adds ``start``, ``end``, ``_id``, ``_uuid``,
``_submission_time``, ``_index``, ``_submitted_by``, ``_status``, ``_validation_status``,
``_notes``, ``_tags``, ``__version__``; the user name, device and phone metadata are personal and
dropped.

The submission time is ``end`` (the respondent's clock, offset dropped) when present, else
``_submission_time`` (server time, UTC).
"""

from __future__ import annotations

from cae_impact.ingest.answers import AnswerMatcher, normalise_label
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
GROUP_SEPARATOR = "/"

SETTING_ADVICE = (
    "dans KoboToolbox, « Téléchargements » : type CSV ou XLS, format des valeurs et en-têtes "
    "« Valeurs et en-têtes XML » (ou la langue du formulaire), réponses à choix multiples "
    "« En une seule colonne », « En colonnes séparées » ou les deux"
)


def looks_like(header: list[str]) -> bool:
    """True when the header has Kobo's metadata columns."""
    names = {h.strip().casefold() for h in header}
    return len(SIGNATURE & names) >= 2


_HEADERS_CACHE: dict[int, tuple[object, dict[str, tuple]]] = {}


def form_headers(codebook) -> dict[str, tuple]:
    """Every header formpack can write for the form, normalised -> what it holds.

    Values: ``("q", qid)``, ``("choice", qid, code)``, ``("note",)`` or ``("tech", name)``.
    Built from the XLSForm rows (types, names, labels, groups) of the generated questionnaire,
    in XML-value and label form, with and without groups.
    """
    cached = _HEADERS_CACHE.get(id(codebook))
    if cached is not None and cached[0] is codebook:
        return cached[1]
    from cae_impact.spec.questionnaire import build_xlsform

    wb = build_xlsform(codebook)
    rows = list(wb["survey"].iter_rows(values_only=True))
    columns = [str(c) for c in rows[0]]
    col = {name.split("::")[0]: i for i, name in enumerate(columns)}
    out: dict[str, tuple] = {}
    names_path: list[str] = []
    labels_path: list[str] = []
    by_name = {q.id: q for q in codebook.questions.values()}

    def add(header: str, value: tuple) -> None:
        out.setdefault(normalise_label(header), value)

    for row in rows[1:]:
        rtype = str(row[col["type"]] or "").strip()
        name = str(row[col["name"]] or "").strip()
        label = str(row[col["label"]] or "").strip() or name
        if rtype == "begin_group":
            names_path.append(name)
            labels_path.append(label)
            continue
        if rtype == "end_group":
            names_path.pop()
            labels_path.pop()
            continue
        xml_heads = {name, GROUP_SEPARATOR.join([*names_path, name])}
        label_heads = {label, GROUP_SEPARATOR.join([*labels_path, label])}
        if rtype == "note":
            for h in xml_heads | label_heads:
                add(h, ("note",))
            continue
        q = by_name.get(name)
        if q is None:
            for h in xml_heads | label_heads:
                add(h, ("tech", name))
            continue
        for h in xml_heads | label_heads:
            add(h, ("q", q.id))
        if q.type == "multiple":
            for c in codebook.scale_of(q.id).choices:
                for h in xml_heads:
                    add(f"{h}{GROUP_SEPARATOR}{c.code}", ("choice", q.id, c.code))
                for h in label_heads:
                    add(f"{h}{GROUP_SEPARATOR}{c.label}", ("choice", q.id, c.code))
    _HEADERS_CACHE[id(codebook)] = (codebook, out)
    return out


def _joined_splitter(scale):
    """Split a select_multiple summary cell: codes joined by a space, or labels joined by a space."""
    codes = {c.code.casefold(): c.code for c in scale.choices}
    labels = AnswerMatcher.from_scale(scale, labels_only=True)

    def split(cell: str) -> tuple[str, ...]:
        tokens = cell.split()
        if tokens and all(t.casefold() in codes for t in tokens):
            return tuple(dict.fromkeys(codes[t.casefold()] for t in tokens))
        found, unknown = labels.split_joined(cell, " ")
        return tuple(found) + tuple(unknown)

    return split


def plan_columns(table: Table, codebook) -> ColumnPlan:
    """Assign every column of a Kobo export (see the module docstring)."""
    headers = form_headers(codebook)
    index = HeaderIndex(codebook)
    plan = ColumnPlan()
    end_col = submission_col = None
    choice_cols: dict[str, dict[str, int]] = {}
    for j, raw_name in enumerate(table.header):
        name = raw_name.strip()
        low = name.casefold()
        last = low.rsplit("/", 1)[-1]
        known = headers.get(normalise_label(name))
        if low == "_uuid":
            plan.meta["_response_id"] = j
        elif low in ("end", "meta/end"):
            end_col = j
        elif low == "_submission_time":
            submission_col = j
        elif low in IGNORED or last in IGNORED:
            plan.ignored.append(j)
        elif known is not None and known[0] == "note":
            plan.ignored.append(j)
        elif low in PERSONAL or last in PERSONAL or normalise_label(name) in PERSONAL_HEADER_NAMES:
            plan.removed.append(j)
        elif last in EMAIL_HEADER_NAMES or normalise_label(name) in EMAIL_HEADER_NAMES:
            plan.add_meta("_email", j)
        elif (tech := index.technical(name)) is not None or (tech := index.technical(last)) is not None:
            plan.add_meta(tech, j)
        elif known is not None and known[0] == "q":
            _add_question(plan, codebook, known[1], j)
        elif known is not None and known[0] == "choice":
            choice_cols.setdefault(known[1], {})[known[2]] = j
        elif (qid := index.question(name)) is not None or (qid := index.question(name.rsplit("/", 1)[-1])) is not None:
            _add_question(plan, codebook, qid, j)  # a header of another form version
        elif (choice := _choice_by_names(name, codebook, index)) is not None:
            choice_cols.setdefault(choice[0], {})[choice[1]] = j  # other groups: …/question/code
        elif "/" in name and (parent := headers.get(normalise_label(name.rsplit("/", 1)[0]))) is not None and parent[0] == "q":
            plan.partial[j] = parent[1]  # a 0/1 column of a choice this form does not have
        else:
            plan.unmapped.append(j)
    if end_col is not None:
        plan.meta["_submitted_at"] = end_col
        if submission_col is not None:
            plan.ignored.append(submission_col)
    elif submission_col is not None:
        plan.meta["_submitted_at"] = submission_col
    for qid, cols in choice_cols.items():
        if qid in plan.multi_joined:
            plan.ignored.extend(cols.values())  # the single column is authoritative
        else:
            plan.multi_columns[qid] = cols
    plan.setting = _describe(table.header, codebook, plan, bool(choice_cols))
    return plan


def _describe(header: list[str], codebook, plan: ColumnPlan, details: bool) -> str:
    """The download settings the headers show, in French."""
    ids = {q.id.casefold() for q in codebook.questions.values()}
    sections = {s.id.casefold() for s in codebook.sections}
    names = [h.strip().casefold() for h in header]
    xml = any(n in ids or n.rsplit("/", 1)[-1] in ids for n in names)
    groups = any("/" in n and n.split("/", 1)[0] in sections for n in names) or any(
        "/" in h and h.split("/", 1)[0][:1].isdigit() and ". " in h.split("/", 1)[0] for h in header
    )
    multiple = [q.id for q in codebook.questions.values() if q.type == "multiple"]
    joined = any(q in plan.multi_joined for q in multiple)
    layout = "en une colonne et en colonnes séparées" if joined and details else (
        "en colonnes séparées" if details else "en une seule colonne")
    return (
        f"valeurs et en-têtes {'XML' if xml else 'en libellés'}, "
        f"{'avec' if groups else 'sans'} les groupes dans les en-têtes, choix multiples {layout}"
    )


def _choice_by_names(name: str, codebook, index: HeaderIndex) -> tuple[str, str] | None:
    """(question id, choice code) of a ``…/question/code`` header whatever its groups, or None."""
    parts = [p for p in name.split("/") if p]
    if len(parts) < 2 or (qid := index.question(parts[-2])) is None:
        return None
    if codebook.question(qid).type != "multiple":
        return None
    codes = {c.code.casefold(): c.code for c in codebook.scale_of(qid).choices}
    code = codes.get(parts[-1].casefold())
    return (qid, code) if code is not None else None


def _add_question(plan: ColumnPlan, codebook, qid: str, j: int) -> None:
    if codebook.question(qid).type == "multiple":
        plan.add_joined(qid, j, _joined_splitter(codebook.scale_of(qid)))
    else:
        plan.add_single(qid, j)


def read(table: Table, codebook) -> RawExport:
    """Map a Kobo export table (CSV or XLSX) onto the codebook."""
    return materialise(table, plan_columns(table, codebook), codebook, FORMAT)
