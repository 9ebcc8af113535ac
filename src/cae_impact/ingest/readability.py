"""Answers an export holds but ingestion could not read, and the export setting to choose instead.

``cae-impact validate`` must never call an export usable when answers would be lost. Two things
lose answers:

- cells holding an answer that matches no code or text of the question's scale (an answer-code
  export of a survey typed with other codes, a label export in another language…): counted per
  question from the ``unknown_code`` problems of :func:`cae_impact.ingest.find_unknown_answers`;
- columns of a known question whose choice could not be recognised (a sub-question text of
  another wording, a 0/1 column of a choice label of another language): their non-empty cells
  that are not « not ticked »;
- columns that hold answers but could not be assigned to a question (headings LimeSurvey cut
  after 15 characters, a layout no adapter reads): when questions of the codebook have no column
  and non-empty columns are left unrecognised, those columns are the answers of the missing
  questions, counted by non-empty cell.

:data:`SETTING_ADVICE` names, for each tool, the export setting that the adapters read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cae_impact.ingest import kobo, limesurvey
from cae_impact.ingest.base import RawExport

SETTING_ADVICE = {
    "limesurvey": limesurvey.SETTING_ADVICE,
    "kobo": kobo.SETTING_ADVICE,
    "googleforms": (
        "dans Google Forms, onglet « Réponses » → « Télécharger les réponses (.csv) », ou le fichier "
        "CSV de la feuille Google Sheets des réponses, sans en modifier les colonnes"
    ),
    "spreadsheet": (
        "corrigez ces réponses dans le tableur, ou ajoutez leur orthographe aux « values » du fichier "
        "de correspondance (mapping.yaml), et nommez-y chaque colonne du questionnaire"
    ),
}
"""The export setting to choose, per format (French, for CAE staff)."""


UNKNOWN_ANSWER_ADVICE = {
    "limesurvey": (
        "dans LimeSurvey, « Réponses » → « Exporter » : réponses « Réponses complètes » (les codes "
        "de réponse de ce questionnaire ne sont pas ceux du questionnaire CAE-IMPACT), en-têtes "
        "« Code de la question » ou « Texte complet de la question »"
    ),
    "kobo": (
        "dans KoboToolbox, « Téléchargements » : format des valeurs et en-têtes « Valeurs et "
        "en-têtes XML » (les libellés de cet export ne sont pas ceux du questionnaire CAE-IMPACT)"
    ),
}
"""The setting to choose when answers match no code or text of the questionnaire."""


def advice(fmt: str | None, unreadable: Unreadable | None = None) -> str:
    """The export setting to choose instead, for this format and these unreadable answers."""
    if unreadable is not None and unreadable.unknown_answers and not unreadable.columns:
        return UNKNOWN_ANSWER_ADVICE.get(fmt or "", SETTING_ADVICE.get(fmt or "", ""))
    return SETTING_ADVICE.get(fmt or "", "")


@dataclass
class Unreadable:
    """Answers of an export that could not be read."""

    by_question: dict[str, int] = field(default_factory=dict)  # question id -> unreadable answers
    columns: dict[str, int] = field(default_factory=dict)  # unrecognised column -> non-empty cells
    missing_questions: list[str] = field(default_factory=list)
    unknown_answers: bool = False  # answers matching no code or text (rather than unread columns)

    @property
    def total(self) -> int:
        """Answers that could not be read, in all."""
        return sum(self.by_question.values()) + sum(self.columns.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        """« 12 réponse(s) illisible(s) : mutual_help 8, … » in French."""
        parts = [f"{qid} {n}" for qid, n in self.by_question.items()]
        if self.columns:
            parts += [f"colonne « {_short(c)} » {n}" for c, n in self.columns.items()]
        shown = ", ".join(parts[:12]) + (f" et {len(parts) - 12} autre(s)" if len(parts) > 12 else "")
        text = f"{self.total} réponse(s) illisible(s) ({shown})"
        if self.columns and self.missing_questions:
            text += f" ; question(s) sans colonne lisible : {', '.join(self.missing_questions[:12])}"
        return text


def find_unreadable(raw: RawExport) -> Unreadable:
    """Count the answers of ``raw`` that ingestion could not read (see the module docstring)."""
    out = Unreadable()
    by_column = {column: qid for qid, column in raw.source_columns.items() if not qid.startswith("_")}
    for problem in raw.problems:
        if problem.code != "unknown_code":
            continue
        qid = by_column.get(problem.column or "", problem.column or "?")
        out.unknown_answers = True
        out.by_question[qid] = out.by_question.get(qid, 0) + len(problem.lines)
    for qid, n in raw.partial_filled.items():
        out.by_question[qid] = out.by_question.get(qid, 0) + n
    if raw.missing_questions and raw.unmapped_columns:
        out.missing_questions = list(raw.missing_questions)
        for column in raw.unmapped_columns:
            n = raw.unmapped_filled.get(column or "(sans nom)", 0)
            if n and (column or "(sans nom)") not in out.columns:
                out.columns[column or "(sans nom)"] = n
    return out


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
