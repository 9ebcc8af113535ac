"""LimeSurvey adapter: the « Export responses » CSV, in every heading and answer setting.

LimeSurvey's export (``application/helpers/admin/export/Writer.php``, ``CsvWriter.php``,
``SurveyObj.php``) writes one column per question and one per sub-question of a
multiple-choice question. Its settings change the headers and the cells:

- headings « Question code » (``etape``, ``entraide[conseils]``; ``entraide_conseils`` with the
  ExpressionScript codes), « Full question text » (``Quelle est … ?``,
  ``Question text [Subquestion text]``) or « Question code & question text » (the code, a
  separator, then the text); the abbreviated text (cut after 15 characters) cannot be read back
  and is reported;
- answers « Answer codes » (the LimeSurvey answer code; ``Y`` for a ticked sub-question) or
  « Full answers » (the answer text; « Oui » / « Non » for a sub-question, « N/A » when the
  question was not shown — read as not asked, without a warning);
- field separator ``,`` or ``;`` (read by :mod:`.tabular`), interface in English or French: the
  fixed columns are ``id``, ``submitdate``, ``lastpage``, ``startlanguage``, ``seed``, ``token``,
  ``startdate``, ``datestamp``, ``ipaddr``, ``refurl`` with codes, « Response ID » / « ID de la
  réponse », « Date submitted » / « Date de soumission », « Access code » / « Code d'accès »…
  with texts.

Answer codes are the LimeSurvey codes of :mod:`.codes` (1 to 5 characters, as in the survey
structure ``make questionnaire`` writes), the codebook's own codes, or the answer texts.
Sub-questions are recognised by the codebook's choice code, LimeSurvey's default ``SQ001``…
(in the codebook's order), or the choice's text. An incomplete response has an empty submission
date. Participant attributes (``firstname``, ``lastname``, ``email``) are dropped, the e-mail
being only read to find double submissions.
"""

from __future__ import annotations

import re

from cae_impact.ingest.answers import normalise_label
from cae_impact.ingest.base import EMAIL_HEADER_NAMES, PERSONAL_HEADER_NAMES, RawExport
from cae_impact.ingest.plan import ColumnPlan, HeaderIndex, materialise
from cae_impact.ingest.tabular import Table
from cae_impact.spec.codes import (
    default_subquestion_codes,
    limesurvey_answer_codes,
    limesurvey_subquestion_codes,
)

FORMAT = "limesurvey"

_SUBQUESTION_RE = re.compile(r"^(?P<code>[A-Za-z][A-Za-z0-9_]*)\s*\[(?P<sq>[^\]]*)\]\s*$")
_TEXT_SUBQUESTION_RE = re.compile(r"^(?P<text>.*?)\s*\[(?P<sq>[^\]]*)\]\s*$", re.S)
_CODE_TEXT_RE = re.compile(r"^(?P<code>[A-Za-z][A-Za-z0-9_]*(?:\[[^\]]*\])?)(?P<sep>[^A-Za-z0-9\[\]]{1,4})(?P<text>\S.*)$", re.S)
_TIMING_RE = re.compile(r"(groupTime|[0-9]+X[0-9]+(X[0-9]+)?Time|interviewtime)\d*", re.I)

FIXED_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "Response ID", "ID de la réponse", "ID de réponse", "Identifiant de la réponse"),
    "submitdate": ("submitdate", "Date submitted", "Date de soumission", "Date d'envoi", "Date de validation"),
    "lastpage": ("lastpage", "Last page", "Dernière page", "Dernière page vue"),
    "startlanguage": ("startlanguage", "Start language", "Langue de départ", "Langue de démarrage", "Langue initiale"),
    "seed": ("seed", "Seed", "Graine", "Tête de série", "Semence"),
    "token": ("token", "Access code", "Code d'accès", "Token", "Jeton", "Jeton d'accès"),
    "startdate": ("startdate", "Date started", "Date de début", "Date de démarrage", "Date de lancement"),
    "datestamp": ("datestamp", "Date last action", "Date de la dernière action", "Date de dernière action"),
    "ipaddr": ("ipaddr", "IP address", "Adresse IP"),
    "refurl": ("refurl", "Referrer URL", "URL de référence", "URL référente", "URL du référent"),
    "interviewtime": ("interviewtime", "Total time", "Temps total"),
}
"""Fixed columns of LimeSurvey's export: the code, then the English and French headings."""

_FIXED_LOOKUP = {normalise_label(name): code for code, names in FIXED_COLUMNS.items() for name in names}
META = {"id": "_response_id", "submitdate": "_submitted_at", "token": "_token"}
IGNORED = {"lastpage", "startlanguage", "seed", "startdate", "datestamp", "interviewtime"}
PERSONAL = {"ipaddr", "refurl", "firstname", "lastname"}
SIGNATURE = {"id", "submitdate", "lastpage", "startlanguage", "seed"}
"""Fixed columns whose presence identifies a LimeSurvey export (see :func:`looks_like`)."""

NOT_SHOWN = frozenset({normalise_label("N/A")})
"""Cell written by a « full answers » export for a question that was not shown."""

SETTING_ADVICE = (
    "dans LimeSurvey, « Réponses » → « Exporter » : format CSV, en-têtes « Code de la question » "
    "(ou « Texte complet de la question »), réponses « Codes des réponses » ou « Réponses complètes »"
)


def _fixed(name: str) -> str | None:
    code = _FIXED_LOOKUP.get(normalise_label(name))
    if code is None and (m := _CODE_TEXT_RE.match(name.strip())) is not None:
        code = _FIXED_LOOKUP.get(m.group("code").casefold())
    return code


def looks_like(header: list[str]) -> bool:
    """True when the header has LimeSurvey's fixed columns (by code or by text).

    The response id and the submission date suffice: the French names of the other fixed
    columns vary between LimeSurvey's translations.
    """
    found = {_fixed(h) for h in header}
    return {"id", "submitdate"} <= found or len(SIGNATURE & found) >= 3


class _Names:
    """Every name a LimeSurvey export may give a question or a sub-question of the codebook."""

    def __init__(self, codebook) -> None:
        self.codebook = codebook
        self.index = HeaderIndex(codebook)
        self.sub: dict[str, dict[str, str]] = {}  # qid -> {normalised sub-question name: choice code}
        for q in codebook.questions.values():
            if q.type != "multiple":
                continue
            scale = codebook.scale_of(q.id)
            names: dict[str, str] = {}
            for sq, code in default_subquestion_codes(scale).items():
                names[sq.casefold()] = code
            for c in scale.choices:
                names[normalise_label(c.label)] = c.code
            for code, sq in limesurvey_subquestion_codes(scale).items():
                names[sq.casefold()] = code
            for c in scale.choices:
                names[c.code.casefold()] = c.code
            self.sub[q.id] = names

    def question(self, name: str) -> str | None:
        return self.index.question(name)

    def subquestion(self, qid: str, sq: str) -> str | None:
        names = self.sub.get(qid, {})
        return names.get(sq.strip().casefold()) or names.get(normalise_label(sq))

    def resolve(self, name: str) -> tuple[str, str | None] | None:
        """(question id, choice code or None) of a header, or None when it is not recognised."""
        name = name.strip()
        if (qid := self.question(name)) is not None:
            return qid, None
        m = _SUBQUESTION_RE.match(name) or _TEXT_SUBQUESTION_RE.match(name)
        if m is not None:
            head = m.group("code") if "code" in m.groupdict() else m.group("text")
            qid = self.question(head)
            if qid is not None and (code := self.subquestion(qid, m.group("sq"))) is not None:
                return qid, code
            if qid is not None:
                return qid, "?" + m.group("sq")
        if "_" in name:  # ExpressionScript codes: entraide_conseils
            head, _, sq = name.rpartition("_")
            qid = self.question(head)
            if qid is not None and (code := self.subquestion(qid, sq)) is not None:
                return qid, code
        return None


def plan_columns(table: Table, codebook) -> ColumnPlan:
    """Assign every column of a LimeSurvey export (see the module docstring)."""
    names = _Names(codebook)
    plan = ColumnPlan()
    plan.na_values = NOT_SHOWN
    headings: set[str] = set()
    for j, raw_name in enumerate(table.header):
        name = raw_name.strip()
        fixed = _fixed(name)
        if fixed in META:
            plan.add_meta(META[fixed], j)
            continue
        if fixed in IGNORED or _TIMING_RE.fullmatch(name):
            plan.ignored.append(j)
            continue
        low = name.casefold()
        if fixed in PERSONAL or low in PERSONAL or normalise_label(name) in PERSONAL_HEADER_NAMES or low.startswith("attribute_"):
            plan.removed.append(j)
            continue
        if normalise_label(name) in EMAIL_HEADER_NAMES:
            plan.add_meta("_email", j)
            continue
        tech = names.index.technical(name)
        resolved = names.resolve(name)
        if resolved is not None:
            headings.add("code" if _looks_like_code(name) else "full")
        if tech is None and resolved is None and (m := _CODE_TEXT_RE.match(name)) is not None:
            # « Question code & question text »: read the code part
            tech = names.index.technical(m.group("code"))
            resolved = names.resolve(m.group("code"))
            if resolved is not None:
                headings.add("codetext")
        if tech is not None:
            plan.add_meta(tech, j)
            continue
        if resolved is None:
            plan.unmapped.append(j)
            continue
        qid, code = resolved
        question = codebook.question(qid)
        if code is None:
            if question.type == "multiple":
                plan.unmapped.append(j)  # a multiple-choice question needs its [SQ] columns
            else:
                plan.add_single(qid, j)
            continue
        if question.type != "multiple":
            plan.unmapped.append(j)
            continue
        if code.startswith("?"):
            sq = code[1:].strip().casefold()
            if sq in ("other", "comment", "autre") or sq.endswith("comment"):
                plan.removed.append(j)  # « Autre : précisez » and comments are free text: not read
            else:
                plan.partial[j] = qid
            continue
        plan.add_choice(qid, code, j)
    # LimeSurvey answer codes (A1…) of the scales whose codebook codes are too long for it
    for qid in list(plan.single):
        question = codebook.question(qid)
        if not question.has_choices:
            continue
        codes = limesurvey_answer_codes(codebook.scale_of(qid))
        value_map = {normalise_label(ls): code for code, ls in codes.items() if ls != code}
        if value_map:
            plan.value_maps[qid] = value_map
    plan.setting = _describe(table, plan, headings)
    return plan


def _looks_like_code(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\[[^\]]*\])?", name.strip()) is not None


def _describe(table: Table, plan: ColumnPlan, headings: set[str]) -> str:
    """The export settings the file shows, in French."""
    heading = {"code": "code de la question", "full": "texte complet de la question",
               "codetext": "code et texte de la question"}
    shown = " / ".join(heading[h] for h in ("code", "full", "codetext") if h in headings) or "non reconnus"
    cells = {normalise_label(r[j]) for cols in plan.multi_columns.values() for j in cols.values() for r in table.rows}
    if cells & {"oui", "yes", "non", "no"}:
        answers = "réponses complètes"
    elif "y" in cells:
        answers = "codes des réponses"
    else:
        answers = "codes ou réponses complètes"
    return f"en-têtes : {shown} ; {answers} ; séparateur « {table.separator or ','} »"


def read(table: Table, codebook) -> RawExport:
    """Map a LimeSurvey export table onto the codebook."""
    return materialise(table, plan_columns(table, codebook), codebook, FORMAT)
