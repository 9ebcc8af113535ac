"""From an export's columns to the canonical raw frame: the plan every adapter fills in.

Adapters differ in how they *name* things (LimeSurvey ``entraide[conseils]``, Kobo
``d5/mutual_help/conseils``, Google Forms full question texts, a CAE's own spreadsheet headers
through a mapping file) but not in what they produce. Each adapter builds a :class:`ColumnPlan`
— which raw column feeds which question or technical field, which columns are personal and
dropped, which are not recognised — and :func:`materialise` turns the plan into a
:class:`~cae_impact.ingest.base.RawExport` the same way for all formats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from cae_impact.ingest.answers import TICKED_VALUES, UNTICKED_VALUES, AnswerMatcher, normalise_label
from cae_impact.ingest.base import (
    RawExport,
    RejectedRecord,
    build_frame,
    find_header_rows,
)
from cae_impact.ingest.problems import ExportError, Problem
from cae_impact.ingest.tabular import Table
from cae_impact.privacy.personal_data import is_formula_like


@dataclass
class ColumnPlan:
    """Which raw column (by index) feeds what.

    - ``meta``: canonical technical column (``_rid``, ``_submitted_at``…) -> raw column;
    - ``single``: question id -> raw column (single-choice, numeric and text questions);
    - ``multi_joined``: question id -> (raw column, splitter) for multiple-choice answers held in
      one cell; the splitter turns the cell into a tuple of raw answers;
    - ``multi_columns``: question id -> {raw answer (choice code or text): raw column} for
      one-column-per-choice layouts, ticked cells being ``Y``/``1``/``Oui``/the answer text;
    - ``value_maps``: question id -> {normalised raw value: code}, from a mapping file;
    - ``ticked``: raw column -> extra normalised cell values meaning « ticked » (mapping file);
    - ``na_values``: normalised cell values meaning « not asked / not answered » (mapping file);
    - ``removed``: personal columns dropped unread; ``unmapped``: columns not recognised;
      ``ignored``: technical columns of the tool that are read for nothing (``lastpage``…).
    """

    meta: dict[str, int] = field(default_factory=dict)
    single: dict[str, int] = field(default_factory=dict)
    multi_joined: dict[str, tuple[int, Callable[[str], tuple[str, ...]]]] = field(default_factory=dict)
    multi_columns: dict[str, dict[str, int]] = field(default_factory=dict)
    value_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    ticked: dict[int, frozenset[str]] = field(default_factory=dict)
    na_values: frozenset[str] = frozenset()
    removed: list[int] = field(default_factory=list)
    unmapped: list[int] = field(default_factory=list)
    ignored: list[int] = field(default_factory=list)

    duplicated: list[tuple[int, str]] = field(default_factory=list)
    setting: str = ""  # the export setting recognised, in French (RawExport.setting)
    partial: dict[int, str] = field(default_factory=dict)  # column -> question id, choice not recognised

    def mapped_questions(self) -> set[str]:
        """Question ids the plan found a column for."""
        return set(self.single) | set(self.multi_joined) | set(self.multi_columns)

    def add_meta(self, target: str, j: int) -> None:
        """Read column ``j`` as the technical column ``target`` (the first such column wins)."""
        if target in self.meta:
            self.duplicated.append((j, target.lstrip("_")))
        else:
            self.meta[target] = j

    def add_single(self, qid: str, j: int) -> None:
        """Read column ``j`` as question ``qid`` (a second column for it is reported, not read)."""
        if qid in self.mapped_questions():
            self.duplicated.append((j, qid))
        else:
            self.single[qid] = j

    def add_joined(self, qid: str, j: int, splitter: Callable[[str], tuple[str, ...]]) -> None:
        """Read column ``j`` as the joined answers of multiple-choice question ``qid``."""
        if qid in self.mapped_questions():
            self.duplicated.append((j, qid))
        else:
            self.multi_joined[qid] = (j, splitter)

    def add_choice(self, qid: str, answer: str, j: int) -> None:
        """Read column ``j`` as the « ticked » column of ``answer`` of question ``qid``."""
        if qid in self.single or qid in self.multi_joined or answer in self.multi_columns.get(qid, {}):
            self.duplicated.append((j, f"{qid}/{answer}"))
        else:
            self.multi_columns.setdefault(qid, {})[answer] = j


class HeaderIndex:
    """Recognises a header as a question or a technical field of the codebook.

    A header matches a question by its id, its LimeSurvey export code (case-insensitively) or its
    full text (normalised: case, accents, spaces); it matches the hidden technical fields
    (questionnaire version, participation id) by id, export code or label.
    """

    def __init__(self, codebook) -> None:
        self.codebook = codebook
        self._questions: dict[str, str] = {}
        for q in codebook.questions.values():
            self._questions.setdefault(q.export_code.casefold(), q.id)
            self._questions.setdefault(q.id.casefold(), q.id)
        for q in codebook.questions.values():
            self._questions.setdefault(normalise_label(q.text), q.id)
        self._technical: dict[str, str] = {}
        for tech, target in ((codebook.version_field, "_qversion"), (codebook.respondent_field, "_rid")):
            for key in (tech.id, tech.export_code):
                self._technical[key.casefold()] = target
            self._technical[normalise_label(tech.label)] = target

    def question(self, header: str) -> str | None:
        """Question id of a header, or None."""
        return self._questions.get(header.strip().casefold()) or self._questions.get(normalise_label(header))

    def technical(self, header: str) -> str | None:
        """Canonical technical column (``_qversion``/``_rid``) of a header, or None."""
        return self._technical.get(header.strip().casefold()) or self._technical.get(normalise_label(header))


def cell_is_ticked(
    value: str, answer: str, matcher: AnswerMatcher | None, extra_ticked: frozenset[str] = frozenset()
) -> bool | None:
    """Read one cell of a one-column-per-choice layout: True ticked, False not, None unknown."""
    norm = normalise_label(value)
    if norm in extra_ticked or norm in TICKED_VALUES:
        return True
    if norm in UNTICKED_VALUES:
        return False
    if norm == normalise_label(answer):
        return True
    if matcher is not None and matcher.match(value) is not None and matcher.match(value) == matcher.match(answer):
        return True
    return None


def materialise(
    table: Table,
    plan: ColumnPlan,
    codebook,
    fmt: str,
    *,
    require_questions: bool = True,
) -> RawExport:
    """Build the :class:`RawExport` of a table from its plan (shared by every adapter).

    Raises ExportError when no column of the questionnaire is recognised (not a survey export)
    or when a column of a required question is missing; reports unmapped columns, personal
    columns dropped, missing non-required questions and repeated header rows as problems.
    """
    header = table.header
    mapped = plan.mapped_questions()
    problems = list(table.problems)
    if require_questions and not mapped:
        shown = ", ".join(f"« {h} »" for h in header[:8]) + ("…" if len(header) > 8 else "")
        raise ExportError(
            f"aucune colonne du questionnaire CAE-IMPACT n'a été reconnue pour le format {fmt} "
            f"(colonnes trouvées : {shown}) : ce n'est pas un export de ce questionnaire, ou le "
            f"format indiqué n'est pas le bon",
            path=table.path,
            line=table.header_line,
        )
    missing = [q.id for q in codebook.questions.values() if q.id not in mapped]
    missing_required = [q for q in missing if codebook.question(q).required]
    if missing_required:
        names = ", ".join(f"« {_expected_name(codebook.question(q), fmt)} »" for q in missing_required)
        raise ExportError(
            f"colonne(s) obligatoire(s) absente(s) : {names} — l'export est incomplet ou vient "
            f"d'un autre questionnaire",
            path=table.path,
            line=table.header_line,
            column=_expected_name(codebook.question(missing_required[0]), fmt),
        )
    if missing:
        expected = {qid: _expected_name(codebook.question(qid), fmt) for qid in missing}
        names = ", ".join(qid if name == qid else f"{qid} (« {name} »)" for qid, name in expected.items())
        problems.append(
            Problem(
                "warning",
                "missing_column",
                f"{len(missing)} question(s) du questionnaire sans colonne dans l'export, vides pour tous "
                f"les répondants et non comptées dans la complétude : {names}",
            )
        )
    if "_qversion" not in plan.meta:
        problems.append(
            Problem(
                "warning",
                "no_version_column",
                f"pas de colonne « {codebook.version_field.export_code} » : la version du questionnaire "
                f"ne peut pas être vérifiée (version {codebook.version} supposée)",
            )
        )
    removed = [header[j] for j in plan.removed]
    if removed:
        problems.append(
            Problem(
                "info",
                "personal_column_removed",
                "colonne(s) de données personnelles écartée(s) sans être lue(s) : "
                + ", ".join(f"« {h} »" for h in removed),
            )
        )
    for j, target in plan.duplicated:
        problems.append(
            Problem(
                "warning",
                "duplicate_column",
                f"deuxième colonne pour « {target} » : seule la première est lue",
                column=header[j],
            )
        )
    unmapped = [header[j] for j in [*plan.unmapped, *plan.partial]]
    for j in plan.partial:
        problems.append(
            Problem(
                "warning",
                "unread_choice_column",
                "colonne d'une question du questionnaire dont la réponse n'est pas reconnue : "
                "ses réponses ne sont pas reprises",
                column=header[j] or "(sans nom)",
            )
        )
    for name in (header[j] for j in plan.unmapped):
        problems.append(
            Problem(
                "warning",
                "unmapped_column",
                "colonne non reconnue : elle ne correspond à aucune question du questionnaire "
                f"(version {codebook.version}) et n'est pas reprise",
                column=name or "(sans nom)",
            )
        )

    # rows that repeat the header: set aside
    extra = _alternative_names(plan, codebook)
    header_rows = set(find_header_rows(table, extra))
    rejected = [
        RejectedRecord(m.line, "malformed_row", _malformed_detail(m)) for m in table.malformed
    ]
    keep = [i for i in range(len(table.rows)) if i not in header_rows]
    for i in sorted(header_rows):
        rejected.append(
            RejectedRecord(
                table.lines[i],
                "header_row",
                "ligne d'en-tête répétée (deux exports collés ou seconde ligne de titres)",
            )
        )
    if header_rows:
        problems.append(
            Problem(
                "warning",
                "header_row",
                "ligne(s) répétant l'en-tête mise(s) de côté",
                lines=tuple(table.lines[i] for i in sorted(header_rows)),
            )
        )
    for m in table.malformed:
        problems.append(
            Problem("warning", "malformed_row", _malformed_detail(m) + " : ligne mise de côté", lines=(m.line,))
        )
    rows = [table.rows[i] for i in keep]
    lines = [table.lines[i] for i in keep]
    if plan.na_values:
        question_cols = set(plan.single.values()) | {j for j, _ in plan.multi_joined.values()}
        question_cols |= {j for cols in plan.multi_columns.values() for j in cols.values()}
        na = plan.na_values
        rows = [[("" if j in question_cols and v and normalise_label(v) in na else v) for j, v in enumerate(r)] for r in rows]

    columns: dict[str, object] = {}
    for meta, j in plan.meta.items():
        columns[meta] = _text_series([r[j] for r in rows])
    source_columns: dict[str, str] = {}
    for q in codebook.questions.values():
        if q.id in plan.single:
            j = plan.single[q.id]
            columns[q.id] = _text_series([r[j] for r in rows])
            source_columns[q.id] = header[j]
        elif q.id in plan.multi_joined:
            j, splitter = plan.multi_joined[q.id]
            columns[q.id] = pd.Series([(splitter(r[j]) or pd.NA) if r[j] else pd.NA for r in rows], dtype=object)
            source_columns[q.id] = header[j]
        elif q.id in plan.multi_columns:
            cols = plan.multi_columns[q.id]
            matcher = AnswerMatcher.from_scale(codebook.scale_of(q.id))
            columns[q.id] = pd.Series([_ticked(r, cols, matcher, plan.ticked) for r in rows], dtype=object)
            source_columns[q.id] = _common_prefix([header[j] for j in cols.values()])
        else:
            if q.type == "multiple":
                columns[q.id] = pd.Series([pd.NA] * len(rows), dtype=object)
            else:
                columns[q.id] = pd.Series([pd.NA] * len(rows), dtype="string")
    for meta, j in plan.meta.items():
        source_columns[meta] = header[j]
    unmapped_filled = {}
    for j in plan.unmapped:
        n = sum(1 for r in rows if r[j].strip() and normalise_label(r[j]) not in plan.na_values)
        if n:
            unmapped_filled[header[j] or "(sans nom)"] = n
    partial_filled: dict[str, int] = {}
    for j, qid in plan.partial.items():  # cells that may hold an answer (not « not ticked », not « not shown »)
        n = sum(1 for r in rows if normalise_label(r[j]) not in UNTICKED_VALUES | plan.na_values)
        if n:
            partial_filled[qid] = partial_filled.get(qid, 0) + n
    frame = build_frame(table, lines, keep, columns)
    for qid, mapping in plan.value_maps.items():
        if qid in frame.columns and mapping:
            frame[qid] = _apply_value_map(frame[qid], mapping)
    _report_formula_cells(frame, source_columns, problems)
    return RawExport(
        path=table.path,
        format=fmt,
        frame=frame,
        source_columns=source_columns,
        rejected=rejected,
        problems=problems,
        removed_columns=removed,
        unmapped_columns=unmapped,
        unmapped_filled=unmapped_filled,
        partial_filled=partial_filled,
        setting=plan.setting,
        missing_questions=missing,
        encoding=table.encoding,
        separator=table.separator,
        sheet=table.sheet,
        sha256=table.sha256,
        blank_records=table.blank_records,
        header_line=table.header_line,
    )


def _text_series(values: list[str]) -> pd.Series:
    series = pd.Series(values, dtype="string")
    return series.mask(series == "")


def _ticked(row: list[str], cols: dict[str, int], matcher: AnswerMatcher, extra: dict[int, frozenset[str]]) -> object:
    ticked: list[str] = []
    any_filled = False
    for answer, j in cols.items():
        value = row[j]
        if not value:
            continue
        any_filled = True
        state = cell_is_ticked(value, answer, matcher, extra.get(j, frozenset()))
        if state is True:
            ticked.append(answer)
        elif state is None:
            ticked.append(value)  # unreadable cell: kept as written, reported as unknown answer
    if not any_filled or not ticked:
        return pd.NA
    return tuple(ticked)


def _apply_value_map(series: pd.Series, mapping: dict[str, str]) -> pd.Series:
    def convert(value: object) -> object:
        if value is pd.NA or value is None:
            return value
        if isinstance(value, tuple):
            return tuple(mapping.get(normalise_label(v), v) for v in value)
        return mapping.get(normalise_label(str(value)), value)

    out = series.map(convert)
    return out.astype(series.dtype) if series.dtype != object else out


def _report_formula_cells(frame: pd.DataFrame, source_columns: dict[str, str], problems: list[Problem]) -> None:
    for qid, column in source_columns.items():
        series = frame[qid]
        if qid.startswith("_") or series.dtype == object:
            continue
        suspicious = series[series.str.match(r"\s*[=+\-@\t\r\n]").fillna(False).astype(bool)]
        hits = [i for i, v in suspicious.items() if is_formula_like(v)]
        if hits:
            problems.append(
                Problem(
                    "warning",
                    "formula_cell",
                    "cellule(s) commençant par =, +, - ou @ : lues comme du texte, jamais calculées ; "
                    "neutralisées dans tout fichier écrit par le projet",
                    column=column,
                    lines=tuple(int(frame.at[i, "_line"]) for i in hits),
                )
            )


def _alternative_names(plan: ColumnPlan, codebook) -> dict[int, set[str]]:
    """Other names a header row may show for a column: the question's code, id and text."""
    names: dict[int, set[str]] = {}
    for qid, j in plan.single.items():
        q = codebook.question(qid)
        names.setdefault(j, set()).update({normalise_label(q.text), q.export_code.casefold(), qid})
    for qid, (j, _) in plan.multi_joined.items():
        q = codebook.question(qid)
        names.setdefault(j, set()).update({normalise_label(q.text), q.export_code.casefold(), qid})
    for qid, cols in plan.multi_columns.items():
        q = codebook.question(qid)
        scale = codebook.scale_of(qid)
        for answer, j in cols.items():
            label = next((c.label for c in scale.choices if c.code == answer), answer)
            # not the bare label: a full-text export may write it in a ticked cell
            names.setdefault(j, set()).update({normalise_label(q.text), normalise_label(f"{q.text} [{label}]")})
    for meta, j in plan.meta.items():
        names.setdefault(j, set()).add(meta.lstrip("_"))
    return names


def _malformed_detail(m) -> str:
    span = f" (lignes {m.line} à {m.end_line})" if m.end_line > m.line else ""
    return f"{m.n_fields} champ(s) au lieu de {m.n_header}{span}"


def _common_prefix(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    first, last = min(names), max(names)
    i = 0
    while i < min(len(first), len(last)) and first[i] == last[i]:
        i += 1
    prefix = first[:i]
    return f"{prefix}…" if prefix else names[0]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _expected_name(question, fmt: str) -> str:
    if fmt == "limesurvey":
        return question.export_code + ("[…]" if question.type == "multiple" else "")
    if fmt == "kobo":  # Kobo's default headers are bare names; « include groups » gives section/id
        return question.id
    if fmt == "googleforms":
        return _short(question.text)
    return question.id

