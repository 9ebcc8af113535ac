"""Generate the CAE-IMPACT questionnaire from the codebook: an XLSForm and a printable version.

The CAEs collect answers with different tools — KoboToolbox or ODK (from the XLSForm), LimeSurvey,
Google Forms, or on paper and by telephone with the answers typed into a spreadsheet. Generating
every version from ``config/codebook.yaml`` keeps the question wording, the answer codes, the skip
logic and the questionnaire version identical across tools, which is what makes the CAEs' results
comparable and the exports readable by the ingestion adapters.

Outputs of :func:`write_questionnaire`:

- ``questionnaire.xlsx``: an XLSForm (sheets ``survey``, ``choices``, ``settings``) that pyxform
  converts for KoboToolbox/ODK: one group per section, French labels, skip logic (``relevant``),
  constraints from min/max and exclusive choices, hidden fields ``rid`` (respondent identifier,
  prefilled from the invitation link) and ``qversion`` (questionnaire version);
- ``questionnaire_limesurvey.txt``: the LimeSurvey survey structure (LimeSurvey's tab-separated
  survey format, imported with « Importer un questionnaire »), with LimeSurvey answer codes of 1 to
  5 characters computed from the codebook (:mod:`cae_impact.spec.codes`);
- ``questionnaire.html`` and ``questionnaire.pdf`` (WeasyPrint, A4): the paper / telephone
  questionnaire, with numbered questions, boxes to tick and filter instructions.

Command line: ``python -m cae_impact.spec.questionnaire OUT_DIR``.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from openpyxl import Workbook
from openpyxl.styles import Font

from cae_impact.spec.codes import limesurvey_answer_codes, limesurvey_subquestion_codes

from .codebook import (
    BoolOp,
    Codebook,
    Compare,
    Not,
    Question,
    Selected,
    load_codebook,
    parse_relevant,
)

LANG = "Français (fr)"
FIXED_TIMESTAMP = datetime(2026, 1, 1, 0, 0, 0)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
FORM_ID = "cae_impact"

# --------------------------------------------------------------------------------------------
# Deterministic XLSX
# --------------------------------------------------------------------------------------------


def workbook_bytes(wb: Workbook, creator: str = "CAE-IMPACT", when: datetime = FIXED_TIMESTAMP) -> bytes:
    """Serialise a workbook byte for byte reproducibly.

    openpyxl stamps the document properties and every zip entry with the current time; this
    fixes the properties (creator, created, modified) and rewrites the archive with fixed entry
    dates, so that regenerating a file yields identical bytes.
    """
    wb.properties.creator = creator
    wb.properties.lastModifiedBy = creator
    wb.properties.created = when
    wb.properties.modified = when
    raw = io.BytesIO()
    wb.save(raw)
    raw.seek(0)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                # openpyxl stamps `modified` with the current time on save, whatever was set.
                stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>" + stamp + rb"\g<2>", data)
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            dst.writestr(entry, data)
    return out.getvalue()


def save_workbook_deterministic(wb: Workbook, path: Path, creator: str = "CAE-IMPACT") -> Path:
    """Write a workbook to ``path`` with fixed properties and zip dates (see :func:`workbook_bytes`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(workbook_bytes(wb, creator=creator))
    return path


# --------------------------------------------------------------------------------------------
# XLSForm
# --------------------------------------------------------------------------------------------

SURVEY_COLUMNS = [
    "type",
    "name",
    f"label::{LANG}",
    f"hint::{LANG}",
    "required",
    "relevant",
    "constraint",
    f"constraint_message::{LANG}",
    "appearance",
    "calculation",
]


def _fr_number(value: float) -> str:
    """A number in French typography (15 000, 0,5)."""
    if float(value).is_integer():
        text = f"{int(value):,}".replace(",", "\u202f")
    else:
        text = f"{value:,.2f}".replace(",", "\u202f").replace(".", ",")
    return text


def _xls_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _constraint(cb: Codebook, q: Question) -> tuple[str, str]:
    """The XLSForm constraint and its French message for a question, or empty strings."""
    if q.type == "numeric" and (q.min is not None or q.max is not None):
        parts: list[str] = []
        if q.min is not None:
            parts.append(f". >= {_xls_number(q.min)}")
        if q.max is not None:
            parts.append(f". <= {_xls_number(q.max)}")
        if q.min is not None and q.max is not None:
            bounds = f"Indiquez un nombre compris entre {_fr_number(q.min)} et {_fr_number(q.max)}."
        elif q.min is not None:
            bounds = f"Indiquez un nombre supérieur ou égal à {_fr_number(q.min)}."
        else:
            bounds = f"Indiquez un nombre inférieur ou égal à {_fr_number(q.max)}."  # type: ignore[arg-type]
        return " and ".join(parts), bounds
    if q.type == "multiple":
        exclusive = [c for c in cb.scale_of(q.id).choices if c.exclusive]
        if exclusive:
            expr = " and ".join(f"not(selected(., '{c.code}') and count-selected(.) > 1)" for c in exclusive)
            labels = _join_fr([f"« {c.label} »" for c in exclusive])
            verb = "ne peut pas être cochée" if len(exclusive) == 1 else "ne peuvent pas être cochées"
            return expr, f"{labels} {verb} avec une autre réponse."
    return "", ""


def _xlsform_type(q: Question) -> str:
    if q.type == "multiple":
        return f"select_multiple {q.scale_id}"
    if q.type in ("single", "likert", "frequency", "yesno"):
        return f"select_one {q.scale_id}"
    if q.type == "numeric":
        return "integer"
    return "text"


def build_xlsform(cb: Codebook) -> Workbook:
    """Build the XLSForm workbook (survey, choices, settings) of the codebook's questionnaire."""
    wb = Workbook()
    survey = wb.active
    survey.title = "survey"
    survey.append(SURVEY_COLUMNS)
    bold = Font(bold=True)
    for cell in survey[1]:
        cell.font = bold

    def row(**kw: Any) -> None:
        survey.append([kw.get(col.split("::")[0] if "::" in col else col, "") for col in SURVEY_COLUMNS])

    row(type="start", name="start")
    row(type="end", name="end")
    row(type="hidden", name=cb.respondent_field.id, label=cb.respondent_field.label)
    row(type="calculate", name=cb.version_field.id, calculation=f"'{cb.version}'")
    row(
        type="note",
        name="intro",
        label=(
            "Ce questionnaire porte sur votre parcours et votre expérience dans la coopérative. "
            "Il prend environ 20 minutes. Vos réponses sont confidentielles et ne servent qu'à des "
            "statistiques d'ensemble."
        ),
    )
    for number, section in enumerate(cb.sections, start=1):
        questions = cb.questions_in_section(section.id)
        if not questions:
            continue
        row(type="begin_group", name=section.id, label=f"{number}. {section.title}")
        if section.intro:
            row(type="note", name=f"{section.id}_intro", label=section.intro)
        for q in questions:
            constraint, message = _constraint(cb, q)
            appearance = "multiline" if q.type == "text" else ("likert" if q.type in ("likert", "frequency") else "")
            row(
                type=_xlsform_type(q),
                name=q.id,
                label=q.text,
                hint=q.hint or "",
                required="yes" if q.required else "",
                relevant=q.relevant or "",
                constraint=constraint,
                constraint_message=message,
                appearance=appearance,
            )
        row(type="end_group", name=section.id)

    choices = wb.create_sheet("choices")
    choices.append(["list_name", "name", f"label::{LANG}"])
    for cell in choices[1]:
        cell.font = bold
    used = {q.scale_id for q in cb.questions.values() if q.scale_id}
    for scale in cb.scales.values():
        if scale.id not in used:
            continue
        for c in scale.choices:
            choices.append([scale.id, c.code, c.label])

    settings = wb.create_sheet("settings")
    settings.append(["form_title", "form_id", "version", "default_language", "allow_choice_duplicates"])
    for cell in settings[1]:
        cell.font = bold
    settings.append([cb.title or "Questionnaire CAE-IMPACT", FORM_ID, cb.version, LANG, "yes"])

    widths = {"A": 28, "B": 26, "C": 70, "D": 40, "E": 9, "F": 40, "G": 36, "H": 40, "I": 12, "J": 14}
    for col, width in widths.items():
        survey.column_dimensions[col].width = width
    choices.column_dimensions["A"].width = 22
    choices.column_dimensions["B"].width = 16
    choices.column_dimensions["C"].width = 70
    return wb


# --------------------------------------------------------------------------------------------
# Printable questionnaire
# --------------------------------------------------------------------------------------------


def _join_fr(items: list[str], last: str = "ou") -> str:
    """« a, b ou c »."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


@dataclass
class _PrintedQuestion:
    number: int
    question: Question
    instruction: str
    filter_text: str
    choices: list[dict[str, Any]]
    boxes: int


def _codes_text(cb: Codebook, qid: str, codes: list[str], numbers: dict[str, int]) -> str:
    scale = cb.scale_of(qid)
    labels = [f"« {scale.label(c)} »" for c in codes]
    return f"{_join_fr(labels)} à la question {numbers[qid]}"


def _condition_fr(cb: Codebook, node: Any, numbers: dict[str, int]) -> str:
    """A skip-logic expression as French reading « vous avez répondu « Oui » à la question 14 »."""
    if isinstance(node, (Compare, Selected)):
        qid = node.question_id
        code = node.code if isinstance(node, Selected) else node.value
        q = cb.question(qid)
        if isinstance(code, str) and q.scale_id:
            if isinstance(node, Compare) and node.op == "!=":
                others = [c for c in cb.scale_of(qid).valid_codes if c != code]
                return f"vous avez répondu {_codes_text(cb, qid, others, numbers)}"
            return f"vous avez répondu {_codes_text(cb, qid, [code], numbers)}"
        ops = {"=": "égale à", "!=": "différente de", "<": "inférieure à", "<=": "inférieure ou égale à",
               ">": "supérieure à", ">=": "supérieure ou égale à"}
        return f"votre réponse à la question {numbers[qid]} est {ops[node.op]} {_fr_number(float(code))}"
    if isinstance(node, BoolOp):
        # « ${q} = 'a' or ${q} = 'b' » reads « vous avez répondu « A » ou « B » à la question N ».
        if node.op == "or" and all(
            isinstance(i, (Compare, Selected)) and (isinstance(i, Selected) or i.op == "=") and isinstance(
                i.code if isinstance(i, Selected) else i.value, str)
            for i in node.items
        ) and len({i.question_id for i in node.items}) == 1:
            qid = node.items[0].question_id
            codes = [i.code if isinstance(i, Selected) else i.value for i in node.items]
            return f"vous avez répondu {_codes_text(cb, qid, codes, numbers)}"
        joiner = " ou si " if node.op == "or" else " et si "
        return joiner.join(_condition_fr(cb, i, numbers) for i in node.items)
    if isinstance(node, Not):
        return f"vous n'êtes pas dans le cas suivant : {_condition_fr(cb, node.item, numbers)}"
    raise TypeError(f"unsupported expression node {node!r}")


def _skip_target(cb: Codebook, order: list[Question], start: int) -> int:
    """Index of the first question after a filtered run starting at ``start``.

    The run holds the questions sharing the filter of ``order[start]`` and those that depend on a
    question of the run; the next question outside it is where a respondent skips to.
    """
    expr = order[start].relevant
    run = {order[start].id}
    j = start + 1
    while j < len(order):
        q = order[j]
        refs = set(parse_relevant(q.relevant).questions()) if q.relevant else set()
        if q.relevant == expr or (refs & run):
            run.add(q.id)
            j += 1
            continue
        break
    return j


def _printed_questions(cb: Codebook) -> list[tuple[Any, list[_PrintedQuestion]]]:
    order = list(cb.questions.values())
    numbers = {q.id: i + 1 for i, q in enumerate(order)}
    index = {q.id: i for i, q in enumerate(order)}
    # Arrows next to the answers that skip the following question(s): for each choice, the next
    # question that is still asked when only this answer is known.
    arrows: dict[tuple[str, str], int] = {}
    for i, q in enumerate(order):
        if not q.scale_id or q.type == "multiple":
            continue
        for code in cb.scale_of(q.id).codes:
            j = i + 1
            while j < len(order):
                nxt = order[j]
                if not nxt.relevant or q.id not in set(parse_relevant(nxt.relevant).questions()):
                    break
                if cb.is_relevant(nxt.id, {q.id: code}):
                    break
                j += 1
            if j > i + 1 and j < len(order):
                arrows[(q.id, code)] = numbers[order[j].id]
    out = []
    previous_expr: str | None = None
    for section in cb.sections:
        printed = []
        for q in cb.questions_in_section(section.id):
            i = index[q.id]
            filter_text = ""
            if q.relevant and q.relevant != previous_expr:
                cond = _condition_fr(cb, parse_relevant(q.relevant), numbers)
                target = _skip_target(cb, order, i)
                last = target - 1
                if target >= len(order):
                    follow = "sinon, le questionnaire est terminé."
                else:
                    follow = f"sinon, passez à la question {target + 1}."
                if last > i:
                    filter_text = f"Si {cond}, répondez aux questions {i + 1} à {last + 1} ; {follow}"
                else:
                    filter_text = f"Si {cond}, répondez à la question {i + 1} ; {follow}"
            previous_expr = q.relevant
            if q.type == "multiple":
                instruction = "Plusieurs réponses possibles."
            elif q.scale_id:
                instruction = "Une seule réponse."
            elif q.type == "numeric":
                instruction = "Indiquez un nombre entier."
            else:
                instruction = "Répondez librement."
            choices = []
            if q.scale_id:
                for c in cb.scale_of(q.id).choices:
                    choices.append(
                        {"label": c.label, "missing": c.missing, "skip": arrows.get((q.id, c.code))}
                    )
            boxes = len(_xls_number(q.max)) if q.type == "numeric" and q.max is not None else 5
            printed.append(_PrintedQuestion(numbers[q.id], q, instruction, filter_text, choices, boxes))
        if printed:
            out.append((section, printed))
    return out


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<meta name="generator" content="cae_impact.spec.questionnaire">
<style>
@page {
  size: A4;
  margin: 18mm 17mm 20mm 17mm;
  @bottom-left { content: "CAE-IMPACT — questionnaire version {{ version }}"; font-family: "DejaVu Sans", sans-serif; font-size: 8pt; color: #555; }
  @bottom-right { content: "Page " counter(page) " / " counter(pages); font-family: "DejaVu Sans", sans-serif; font-size: 8pt; color: #555; }
}
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 9.6pt; line-height: 1.35; color: #111; }
h1 { font-size: 16pt; margin: 0 0 2mm 0; }
.subtitle { font-size: 10.5pt; margin: 0 0 4mm 0; color: #333; }
.admin { display: flex; justify-content: space-between; border: 0.6pt solid #444; padding: 2mm 3mm; margin-bottom: 4mm; font-size: 9pt; }
.intro { border-left: 2pt solid #2b5d8a; padding: 1mm 0 1mm 3mm; margin-bottom: 4mm; }
.intro p { margin: 0 0 1.6mm 0; }
.howto { font-size: 8.8pt; color: #333; }
h2 { font-size: 12pt; background: #2b5d8a; color: #fff; padding: 1.4mm 2.5mm; margin: 6mm 0 2mm 0; break-after: avoid; }
.section-intro { font-style: italic; margin: 0 0 2mm 0; }
.q { break-inside: avoid; margin: 0 0 3.2mm 0; }
.filter { border: 0.6pt dashed #2b5d8a; background: #eef3f8; padding: 1.2mm 2.5mm; margin: 0 0 1.5mm 0; font-size: 9pt; break-after: avoid; }
.qtext { font-weight: bold; }
.qnum { display: inline-block; min-width: 11mm; }
.hint { font-size: 8.8pt; color: #333; margin-left: 11mm; }
.instr { font-size: 8.4pt; color: #444; font-style: italic; }
ul.choices { list-style: none; margin: 1mm 0 0 11mm; padding: 0; }
ul.choices li { margin: 0.6mm 0; }
ul.choices.inline li { display: inline-block; margin-right: 6mm; }
.box { display: inline-block; width: 3.2mm; height: 3.2mm; border: 0.7pt solid #111; vertical-align: -0.5mm; margin-right: 2mm; }
.nsp { font-style: italic; }
.skip { font-size: 8.6pt; font-weight: bold; }
.digits { margin: 1.4mm 0 0 11mm; }
.digit { display: inline-block; width: 5.2mm; height: 6mm; border: 0.7pt solid #111; margin-right: -0.7pt; vertical-align: middle; }
.unit { margin-left: 2mm; }
.lines { margin: 1mm 0 0 11mm; }
.line { border-bottom: 0.6pt dotted #555; height: 6.5mm; }
.thanks { margin-top: 8mm; text-align: center; font-size: 11pt; font-weight: bold; }
.small { font-size: 8.4pt; color: #333; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="subtitle">Enquête auprès des entrepreneurs de la coopérative d'activité et d'emploi</p>
<div class="admin">
  <span>Version du questionnaire : <strong>{{ version }}</strong></span>
  <span>N° de questionnaire (réservé à la CAE) : <span class="digit"></span><span class="digit"></span><span class="digit"></span><span class="digit"></span></span>
</div>
<div class="intro">
  <p>Madame, Monsieur,</p>
  <p>Votre coopérative participe à la mesure de l'impact social des coopératives d'activité et d'emploi
  (méthode CAE-IMPACT, conçue par le réseau Coopérer Pour Entreprendre avec les CAE). Ce questionnaire porte
  sur votre parcours avant la CAE et sur ce que la coopérative vous apporte aujourd'hui. Il prend environ
  20 minutes.</p>
  <p>Il n'y a pas de bonne ou de mauvaise réponse. Vos réponses sont confidentielles : elles ne servent qu'à
  des statistiques d'ensemble et ne sont jamais présentées sous une forme qui permettrait de vous
  reconnaître. Conformément au règlement général sur la protection des données (RGPD), vous pouvez exercer
  vos droits d'accès, de rectification et d'opposition auprès de votre CAE.</p>
  <p class="howto"><strong>Comment répondre ?</strong> Cochez la case <span class="box"></span> qui correspond
  à votre réponse ; sauf indication « Plusieurs réponses possibles », une seule réponse par question. Les
  encadrés « Si vous avez répondu… » indiquent les questions à passer.<br>
  <strong>Passation par téléphone :</strong> l'enquêteur lit la question et les réponses proposées, sauf celles
  en <span class="nsp">italique</span>, qu'il ne cite pas mais coche si la personne les donne spontanément.</p>
</div>
{% for section, questions in sections %}
<h2>Partie {{ loop.index }} — {{ section.title|fr }}</h2>
{% if section.intro %}<p class="section-intro">{{ section.intro|fr }}</p>{% endif %}
{% for pq in questions %}
{% if pq.filter_text %}<div class="filter">▸ {{ pq.filter_text|fr }}</div>{% endif %}
<div class="q" id="q{{ pq.number }}">
  <div><span class="qtext"><span class="qnum">Q{{ pq.number }}.</span>{{ pq.question.text|fr }}</span>
  <span class="instr">{{ pq.instruction }}</span></div>
  {% if pq.question.hint and pq.question.hint != pq.instruction %}<div class="hint">{{ pq.question.hint|fr }}</div>{% endif %}
  {% if pq.choices %}
  <ul class="choices{% if pq.choices|length <= 3 and pq.question.type != 'multiple' and (pq.choices|map(attribute='label')|map('length')|max) < 30 %} inline{% endif %}">
  {% for c in pq.choices %}<li{% if c.missing %} class="nsp"{% endif %}><span class="box"></span>{{ c.label|fr }}{% if c.skip %} <span class="skip">→ passez à la question {{ c.skip }}</span>{% endif %}</li>
  {% endfor %}</ul>
  {% elif pq.question.type == 'numeric' %}
  <div class="digits">{% for _ in range(pq.boxes) %}<span class="digit"></span>{% endfor %}<span class="unit">{{ pq.question.unit or '' }}</span></div>
  {% else %}
  <div class="lines"><div class="line"></div><div class="line"></div><div class="line"></div></div>
  <p class="small" style="margin-left:11mm">Merci de ne pas indiquer de nom, d'adresse électronique ni de numéro de téléphone.</p>
  {% endif %}
</div>
{% endfor %}
{% endfor %}
<p class="thanks">Merci pour votre participation !</p>
<p class="small" style="text-align:center">Merci de remettre ce questionnaire à votre CAE, sous enveloppe si vous le souhaitez.</p>
</body>
</html>
"""


_FR_SPACES = (
    (" ?", "\u202f?"), (" !", "\u202f!"), (" ;", "\u202f;"), (" :", "\u00a0:"),
    ("« ", "«\u00a0"), (" »", "\u00a0»"),
)


def french_typography(text: str) -> str:
    """No-break spaces before « ? ! ; : » and inside guillemets, as French typography wants."""
    for plain, fixed in _FR_SPACES:
        text = text.replace(plain, fixed)
    return text


def render_html(cb: Codebook) -> str:
    """The printable questionnaire as a standalone HTML page (French, A4 print styles)."""
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["fr"] = french_typography
    template = env.from_string(_HTML_TEMPLATE)
    return template.render(
        title="Questionnaire CAE-IMPACT",
        version=cb.version,
        sections=_printed_questions(cb),
    )


# --------------------------------------------------------------------------------------------
# LimeSurvey survey structure (tab-separated survey format)
# --------------------------------------------------------------------------------------------

LIMESURVEY_LANG = "fr"
LIMESURVEY_COLUMNS = [
    "class", "type/scale", "name", "relevance", "text", "help", "language", "validation",
    "mandatory", "other", "default", "same_default", "hidden", "exclude_all_others",
    "min_num_value_n", "max_num_value_n", "num_value_int_only",
]
"""Columns of LimeSurvey's tab-separated survey structure (``TSVImportSurvey`` in LimeSurvey's
``application/helpers/admin/import_helper.php``): one row per survey setting (``S``), language
setting (``SL``), group (``G``), question (``Q``), sub-question (``SQ``) and answer (``A``);
any column after ``same_default`` is a question attribute."""


def _limesurvey_type(q: Question) -> str:
    if q.type == "multiple":
        return "M"  # multiple choice: one Y/empty column per sub-question
    if q.has_choices:
        return "L"  # list (radio)
    if q.type == "numeric":
        return "N"
    return "T"  # long free text


def limesurvey_relevance(cb: Codebook, expr: str | None) -> str:
    """The ExpressionScript equivalent of a codebook skip-logic expression (``1`` when none).

    Answer codes are the LimeSurvey codes of :func:`cae_impact.spec.codes.limesurvey_answer_codes`;
    ``.NAOK`` makes a question that was not shown read as empty, like an unanswered one in ODK.
    """
    if not expr:
        return "1"

    def emit(node: Any) -> str:
        if isinstance(node, BoolOp):
            return "(" + f" {node.op} ".join(emit(item) for item in node.items) + ")"
        if isinstance(node, Not):
            return f"!({emit(node.item)})"
        if isinstance(node, Selected):
            q = cb.question(node.question_id)
            scale = cb.scale_of(q.id)
            if q.type == "multiple":
                sq = limesurvey_subquestion_codes(scale)[node.code]
                return f"({q.export_code}_{sq}.NAOK == 'Y')"
            return f"({q.export_code}.NAOK == '{limesurvey_answer_codes(scale)[node.code]}')"
        if isinstance(node, Compare):
            q = cb.question(node.question_id)
            op = "==" if node.op == "=" else node.op
            if isinstance(node.value, str):
                value = node.value
                if q.has_choices and value:
                    value = limesurvey_answer_codes(cb.scale_of(q.id))[value]
                return f"({q.export_code}.NAOK {op} '{value}')"
            return f"({q.export_code}.NAOK {op} {_xls_number(float(node.value))})"
        raise TypeError(f"unsupported skip-logic node {node!r}")

    return emit(parse_relevant(expr))


def build_limesurvey_structure(cb: Codebook) -> str:
    """The LimeSurvey survey structure (``.txt``, tab-separated) of the codebook's questionnaire.

    Import it in LimeSurvey with « Créer un questionnaire » → « Importer » (LimeSurvey reads
    ``.lss``, ``.txt`` and ``.zip`` there). Every question of the codebook is a question of the
    same code (its ``export_code``), in the same group order; answer codes are the LimeSurvey
    codes of :func:`cae_impact.spec.codes.limesurvey_answer_codes` (1 to 5 characters), which
    the LimeSurvey adapter reads back; multiple-choice answers are sub-questions coded with the
    codebook's choice codes. ``rid`` (prefilled from the invitation link ``?rid=…``) and
    ``qversion`` (a short text whose default is the questionnaire version) are hidden questions.
    """
    rows: list[dict[str, str]] = []
    lang = LIMESURVEY_LANG

    def add(**kw: str) -> None:
        kw.setdefault("language", lang)
        rows.append(kw)

    rows.append({"class": "S", "name": "language", "text": lang})
    rows.append({"class": "S", "name": "format", "text": "G"})
    rows.append({"class": "S", "name": "ipaddr", "text": "N"})
    rows.append({"class": "S", "name": "allowprev", "text": "Y"})
    add(**{"class": "SL", "name": "surveyls_title", "text": cb.title or "Questionnaire CAE-IMPACT"})
    add(**{"class": "SL", "name": "surveyls_description", "text": f"Questionnaire CAE-IMPACT, version {cb.version}"})
    add(**{"class": "SL", "name": "surveyls_welcometext", "text": (
        "Ce questionnaire porte sur votre parcours et votre expérience dans la coopérative. "
        "Il prend environ 20 minutes. Vos réponses sont confidentielles et ne servent qu'à des "
        "statistiques d'ensemble.")})
    sections = [s for s in cb.sections if cb.questions_in_section(s.id)]
    for number, section in enumerate(sections, start=1):
        add(**{"class": "G", "type/scale": f"G{number}", "name": f"{number}. {section.title}",
               "relevance": "1", "text": section.intro or ""})
        if number == 1:
            for tech, default in ((cb.respondent_field, ""), (cb.version_field, cb.version)):
                add(**{"class": "Q", "type/scale": "S", "name": tech.export_code, "relevance": "1",
                       "text": tech.label, "mandatory": "N", "other": "N", "default": default, "hidden": "1"})
        for q in cb.questions_in_section(section.id):
            row = {"class": "Q", "type/scale": _limesurvey_type(q), "name": q.export_code,
                   "relevance": limesurvey_relevance(cb, q.relevant), "text": q.text, "help": q.hint or "",
                   "mandatory": "Y" if q.required else "N", "other": "N"}
            if q.type == "numeric":
                if q.min is not None:
                    row["min_num_value_n"] = _xls_number(q.min)
                if q.max is not None:
                    row["max_num_value_n"] = _xls_number(q.max)
                row["num_value_int_only"] = "1"
            scale = cb.scale_of(q.id) if q.has_choices else None
            if q.type == "multiple":
                sq_codes = limesurvey_subquestion_codes(scale)
                exclusive = [sq_codes[c.code] for c in scale.choices if c.exclusive]
                if exclusive:
                    row["exclude_all_others"] = ";".join(exclusive)
            add(**row)
            if q.type == "multiple":
                for c in scale.choices:
                    add(**{"class": "SQ", "type/scale": "0", "name": sq_codes[c.code], "relevance": "1", "text": c.label})
            elif scale is not None:
                codes = limesurvey_answer_codes(scale)
                for c in scale.choices:
                    add(**{"class": "A", "type/scale": "0", "name": codes[c.code], "text": c.label})

    def cell(value: str) -> str:
        value = str(value).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
        if any(ch in value for ch in '"\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = ["\t".join(LIMESURVEY_COLUMNS)]
    for row in rows:
        lines.append("\t".join(cell(row.get(col, "")) for col in LIMESURVEY_COLUMNS))
    return "\n".join(lines) + "\n"


def write_questionnaire(cb: Codebook, out_dir: str | Path, pdf: bool = True) -> dict[str, Path]:
    """Write the questionnaire for every tool, and for print.

    ``questionnaire.xlsx`` (XLSForm), ``questionnaire_limesurvey.txt`` (LimeSurvey survey
    structure), ``questionnaire.html`` and ``questionnaire.pdf``.

    Returns the written paths by kind (``xlsform``, ``limesurvey``, ``html``, ``pdf``). The XLSX is byte for
    byte reproducible; set ``pdf=False`` to skip the (slower) PDF rendering.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"xlsform": save_workbook_deterministic(build_xlsform(cb), out / "questionnaire.xlsx")}
    paths["limesurvey"] = out / "questionnaire_limesurvey.txt"
    paths["limesurvey"].write_text(build_limesurvey_structure(cb), encoding="utf-8")
    html = render_html(cb)
    paths["html"] = out / "questionnaire.html"
    paths["html"].write_text(html, encoding="utf-8")
    if pdf:
        from weasyprint import HTML

        paths["pdf"] = out / "questionnaire.pdf"
        HTML(string=html, base_url=str(out)).write_pdf(paths["pdf"])
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m cae_impact.spec.questionnaire OUT_DIR [--codebook PATH] [--no-pdf]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cae_impact.spec.questionnaire",
        description="Generate the XLSForm and the printable questionnaire from the codebook.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--codebook", default=None, help="codebook path (default config/codebook.yaml)")
    parser.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    args = parser.parse_args(argv)
    cb = load_codebook(args.codebook)
    for kind, path in write_questionnaire(cb, args.out_dir, pdf=not args.no_pdf).items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
