"""Ingestion: read a CAE's survey export, whatever tool produced it, onto the codebook.

One adapter per export format of the study configuration (``format`` of each CAE):

=============== ===========================================================================
``limesurvey``  LimeSurvey CSV, answer codes or full answer texts (:mod:`.limesurvey`)
``kobo``        KoboToolbox CSV or XLSX (:mod:`.kobo`)
``googleforms`` Google Forms CSV (:mod:`.googleforms`)
``spreadsheet`` any CSV or XLSX with a column-mapping file (:mod:`.spreadsheet`)
=============== ===========================================================================

Every adapter returns a :class:`RawExport`: question ids as columns with the raw values, the raw
line of every row, the records that could not be read, and the problems found (unmapped columns,
unknown answer codes…), in French for CAE staff. An export that cannot be used at all raises
:class:`ExportError`, whose message names the file, the line and the column.

Cleaning (:mod:`cae_impact.clean.cleaning`) takes it from there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from cae_impact.ingest import googleforms, kobo, limesurvey, spreadsheet
from cae_impact.ingest.answers import AnswerMatcher, normalise_label
from cae_impact.ingest.base import (
    META_COLUMNS,
    PERSONAL_META,
    RawExport,
    RejectedRecord,
    parse_datetime,
    parse_number,
)
from cae_impact.ingest.problems import ExportError, Problem, format_lines
from cae_impact.ingest.spreadsheet import ColumnMapping, load_mapping
from cae_impact.ingest.tabular import Table, read_table
from cae_impact.privacy.personal_data import mask_free_text
from cae_impact.spec.codebook import load_codebook

__all__ = [
    "ADAPTERS",
    "AnswerMatcher",
    "ColumnMapping",
    "ExportError",
    "META_COLUMNS",
    "PERSONAL_META",
    "Problem",
    "RawExport",
    "RejectedRecord",
    "Table",
    "find_unknown_answers",
    "format_lines",
    "guess_format",
    "load_mapping",
    "normalise_label",
    "parse_datetime",
    "parse_number",
    "read_cae_export",
    "read_export",
    "read_table",
]

ADAPTERS: dict[str, Callable[..., RawExport]] = {
    "limesurvey": limesurvey.read,
    "kobo": kobo.read,
    "googleforms": googleforms.read,
    "spreadsheet": spreadsheet.read,
}
"""Adapter of each export format named in the study configuration."""

FORMAT_LABELS = {
    "limesurvey": "LimeSurvey",
    "kobo": "KoboToolbox",
    "googleforms": "Google Forms",
    "spreadsheet": "tableur avec fichier de correspondance",
}


def _load_codebook(codebook):
    if codebook is not None:
        return codebook
    return load_codebook()


def guess_format(path: str | Path, mapping: str | Path | None = None) -> str:
    """Recognise the export format from the file's header (for ``cae-impact validate``).

    A mapping file means ``spreadsheet``; otherwise LimeSurvey's fixed columns, Kobo's metadata
    columns or Google Forms' « Horodateur » first column decide. Raises ExportError when none
    of them is found.
    """
    if mapping is not None:
        return "spreadsheet"
    table = read_table(path)
    if limesurvey.looks_like(table.header):
        return "limesurvey"
    if kobo.looks_like(table.header):
        return "kobo"
    if googleforms.looks_like(table.header):
        return "googleforms"
    beside = Path(path).with_name("mapping.yaml")
    if beside.exists():
        return "spreadsheet"
    raise ExportError(
        "format d'export non reconnu (ni LimeSurvey, ni KoboToolbox, ni Google Forms, et pas de "
        "mapping.yaml à côté) : indiquez-le avec --format",
        path=path,
        line=table.header_line,
    )


def read_export(
    path: str | Path,
    format: str,
    *,
    mapping: str | Path | ColumnMapping | None = None,
    codebook=None,
) -> RawExport:
    """Read one export with the adapter of ``format`` and check it as a whole.

    Returns the :class:`RawExport` (see :mod:`cae_impact.ingest.base`). Raises ExportError when
    the file cannot be used: unreadable, empty, not a survey export, required columns missing,
    or every response from another version of the questionnaire. Unknown answer codes are added
    to the problems, by column, value and raw lines.
    """
    codebook = _load_codebook(codebook)
    path = Path(path)
    if format not in ADAPTERS:
        raise ExportError(
            f"format d'export inconnu « {format} » (formats possibles : {', '.join(ADAPTERS)})",
            path=path,
        )
    if format == "spreadsheet":
        if mapping is None:
            beside = path.with_name("mapping.yaml")
            if not beside.exists():
                raise ExportError(
                    "le format « spreadsheet » a besoin d'un fichier de correspondance des colonnes "
                    "(mapping.yaml à côté de l'export, ou --mapping)",
                    path=path,
                )
            mapping = beside
        if not isinstance(mapping, ColumnMapping):
            mapping = load_mapping(mapping, codebook)
        table = read_table(
            path,
            sheet=mapping.sheet,
            header_line=mapping.header_row,
            separator=mapping.separator,
            encoding=mapping.encoding,
        )
        raw = spreadsheet.read(table, codebook, mapping)
    else:
        table = read_table(path)
        raw = ADAPTERS[format](table, codebook)
    if raw.n_raw_rows == 0:
        raise ExportError(
            "aucune ligne de réponse : le fichier ne contient que l'en-tête", path=path, line=table.header_line + 1
        )
    if len(raw.frame) == 0:
        raise ExportError(
            f"aucune ligne lisible : les {raw.n_raw_rows} ligne(s) du fichier sont mal formées ou "
            f"répètent l'en-tête",
            path=path,
            line=raw.rejected[0].line,
        )
    _check_version(raw, codebook)
    raw.problems.extend(find_unknown_answers(raw, codebook))
    return raw


def read_cae_export(study, cae_id: str, codebook=None) -> RawExport:
    """Read the export of one CAE of the study configuration, with its format and mapping."""
    cae = study.cae(cae_id)
    if codebook is None:
        codebook = load_codebook(study.codebook)
    return read_export(cae.export, cae.format, mapping=cae.mapping, codebook=codebook)


def _check_version(raw: RawExport, codebook) -> None:
    versions = raw.frame["_qversion"].dropna().str.strip()
    versions = versions[versions != ""]
    if versions.empty:
        return
    other = versions[versions != codebook.version]
    if len(other) == len(versions):
        found = ", ".join(sorted(other.unique())[:5])
        first = int(raw.frame.loc[other.index[0], "_line"])
        raise ExportError(
            f"export d'une autre version du questionnaire (version(s) {found} ; version attendue "
            f"{codebook.version}) : utilisez le questionnaire et le référentiel de la même version",
            path=raw.path,
            line=first,
            column=codebook.version_field.export_code,
        )
    if not other.empty:
        lines = tuple(int(v) for v in raw.frame.loc[other.index, "_line"])
        raw.problems.append(
            Problem(
                "warning",
                "other_version",
                f"{len(other)} réponse(s) d'une autre version du questionnaire "
                f"({', '.join(sorted(other.unique())[:5])}) : mises de côté au nettoyage",
                column=codebook.version_field.export_code,
                lines=lines,
            )
        )


def find_unknown_answers(raw: RawExport, codebook) -> list[Problem]:
    """One problem per choice question holding answers that match no code or label of its scale.

    The message lists the unknown values as written (at most ten) and the lines hold them.
    """
    problems: list[Problem] = []
    for qid in raw.question_ids:
        question = codebook.question(qid)
        if not question.has_choices:
            continue
        matcher = AnswerMatcher.from_scale(codebook.scale_of(qid))
        series = raw.frame[qid].dropna()
        if series.empty:
            continue
        unknown_values: dict[str, list[int]] = {}
        lines = raw.frame.loc[series.index, "_line"]
        if question.type == "multiple":
            for value, line in zip(series, lines, strict=True):
                for token in value:
                    if matcher.match(token) is None:
                        unknown_values.setdefault(token, []).append(int(line))
        else:
            for value in pd.unique(series):
                if matcher.match(value) is None:
                    unknown_values[value] = [int(x) for x in lines[series == value]]
        if unknown_values:
            shown = ", ".join(f"« {_clip(v)} »" for v in list(unknown_values)[:10])
            more = f" et {len(unknown_values) - 10} autre(s)" if len(unknown_values) > 10 else ""
            all_lines = tuple(sorted({n for ls in unknown_values.values() for n in ls}))
            problems.append(
                Problem(
                    "warning",
                    "unknown_code",
                    f"réponse(s) inconnue(s) pour la question {qid} : {shown}{more} — ni un code ni un "
                    f"libellé de l'échelle « {question.scale_id} » ; valeur effacée au nettoyage",
                    column=raw.source_columns.get(qid, qid),
                    lines=all_lines,
                )
            )
    return problems


def _clip(value: str, limit: int = 40) -> str:
    value = mask_free_text(str(value))
    return value if len(value) <= limit else value[: limit - 1] + "…"

