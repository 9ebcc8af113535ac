"""Spreadsheet adapter: any CSV or XLSX a CAE built itself, read through a column-mapping file.

A CAE that typed its questionnaires (paper, telephone) into its own table — an Excel workbook,
or a « CSV (séparateur : point-virgule) » saved by French Excel in Windows-1252 with decimal
commas and ``dd/mm/yyyy`` dates — describes it in a YAML mapping file beside the export
(``mapping_version: 1``, the format written by :mod:`cae_impact_demo.demo`)::

    mapping_version: 1
    file: export_tableur.csv       # the export this mapping describes
    format: csv                    # csv | xlsx
    encoding: cp1252               # CSV only; detected when absent
    separator: ";"                 # CSV only; detected when absent
    decimal: ","                   # numbers accept both marks anyway
    sheet: Réponses                # XLSX only; default: the first sheet
    header_row: 1                  # 1-based line/row of the column names
    date_format: "%d/%m/%Y"        # dates written as text
    respondent_id: N° questionnaire   # a double entry repeats it (double submissions)
    submitted_at: Date de saisie
    version: Version               # the questionnaire version (codebook ``version``)
    na_values: [NC]                # cells meaning « not asked / not answered »
    ignore: [Saisi par, Observations]  # never read: they may hold personal data
    columns:
      Sexe: {question: sex, values: {Femme: f, Homme: m}}
      "Protection : Mutuelle": {question: protection_access, choice: mutuelle, ticked: [x]}
      Thèmes de formation: {question: training_topics, split: " / ", values: {Gestion: gestion}}
      Mois avant 1re facture: {question: months_to_first_invoice}
      Remarques: remarks           # short form: just the question id

Labels are matched after folding case, accents and spaces. A label not listed under ``values`` is
still matched against the codebook's codes and labels; if neither knows it, the value is
blanked by the cleaning step and listed in quarantine. Columns of the export that the mapping
does not list are reported as unmapped and not read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cae_impact.ingest.answers import AnswerMatcher, normalise_label
from cae_impact.ingest.base import EMAIL_HEADER_NAMES, PERSONAL_HEADER_NAMES, RawExport
from cae_impact.ingest.plan import ColumnPlan, HeaderIndex, materialise
from cae_impact.ingest.problems import ExportError, Problem
from cae_impact.ingest.tabular import Table
from cae_impact.spec.config import check_yaml_text

FORMAT = "spreadsheet"
MAPPING_VERSION = 1
TECHNICAL_KEYS = {"respondent_id": "_rid", "submitted_at": "_submitted_at", "version": "_qversion", "email": "_email"}
"""Top-level keys of the mapping file naming a technical column, and their canonical column."""


@dataclass(frozen=True)
class ColumnEntry:
    """How one spreadsheet column maps onto the codebook."""

    question: str
    values: dict[str, str] = field(default_factory=dict)  # normalised label -> code
    choice: str | None = None
    ticked: tuple[str, ...] = ()
    split: str | None = None


@dataclass
class ColumnMapping:
    """A parsed, checked mapping file (see the module docstring)."""

    path: Path
    columns: dict[str, ColumnEntry]
    technical: dict[str, str] = field(default_factory=dict)  # canonical column -> header
    ignore: tuple[str, ...] = ()
    na_values: tuple[str, ...] = ()
    sheet: str | None = None
    header_row: int = 1
    separator: str | None = None
    encoding: str | None = None
    date_format: str | None = None
    file: str | None = None


def _fail(path: Path, message: str, column: str | None = None) -> ExportError:
    return ExportError(f"fichier de correspondance : {message}", path=path, column=column)


def load_mapping(path: str | Path, codebook) -> ColumnMapping:
    """Read and check a mapping file; ExportError names the file and the entry at fault."""
    path = Path(path)
    if not path.exists():
        raise ExportError("fichier de correspondance des colonnes introuvable", path=path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    def refuse(message: str) -> ExportError:
        return ExportError(f"fichier de correspondance refusé : {message.split(': ', 1)[-1]}", path=path)

    try:
        check_yaml_text(text, path, refuse)  # size, and no alias of a list or mapping (« billion laughs »)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ExportError(
            f"fichier de correspondance illisible (YAML invalide : {getattr(exc, 'problem', exc)})",
            path=path,
            line=mark.line + 1 if mark else None,
        ) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict) or not raw["columns"]:
        raise _fail(path, "une table « columns: » (colonne -> question) est attendue")
    version = raw.get("mapping_version", MAPPING_VERSION)
    if version != MAPPING_VERSION:
        raise _fail(path, f"mapping_version {version!r} inconnue (version lue : {MAPPING_VERSION})")
    columns: dict[str, ColumnEntry] = {}
    for header, spec in raw["columns"].items():
        header = str(header)
        columns[header] = _parse_entry(path, header, spec, codebook)
    technical = {TECHNICAL_KEYS[k]: str(raw[k]) for k in TECHNICAL_KEYS if raw.get(k)}
    header_row = raw.get("header_row", 1)
    if not isinstance(header_row, int) or isinstance(header_row, bool) or header_row < 1:
        raise _fail(path, f"header_row doit être un entier ≥ 1, pas {header_row!r}")
    return ColumnMapping(
        path=path,
        columns=columns,
        technical=technical,
        ignore=tuple(str(x) for x in raw.get("ignore") or ()),
        na_values=tuple(str(x) for x in raw.get("na_values") or ()),
        sheet=str(raw["sheet"]) if raw.get("sheet") else None,
        header_row=header_row,
        separator=str(raw["separator"]) if raw.get("separator") else None,
        encoding=str(raw["encoding"]) if raw.get("encoding") else None,
        date_format=str(raw["date_format"]) if raw.get("date_format") else None,
        file=str(raw["file"]) if raw.get("file") else None,
    )


def _parse_entry(path: Path, header: str, spec: Any, codebook) -> ColumnEntry:
    if isinstance(spec, str):
        spec = {"question": spec}
    if not isinstance(spec, dict) or "question" not in spec:
        raise _fail(path, "chaque colonne a besoin d'une « question: »", header)
    qid = str(spec["question"])
    if qid not in codebook.questions:
        raise _fail(path, f"la question « {qid} » n'existe pas dans le référentiel", header)
    question = codebook.question(qid)
    codes = codebook.scale_of(qid).codes if question.has_choices else []
    values: dict[str, str] = {}
    for label, code in (spec.get("values") or {}).items():
        if not question.has_choices:
            raise _fail(path, f"« values » ne s'applique qu'aux questions à choix ({qid} est {question.type})", header)
        if str(code) not in codes:
            raise _fail(path, f"« {label} » renvoie au code « {code} », absent de l'échelle de {qid} ({', '.join(codes)})", header)
        values[normalise_label(str(label))] = str(code)
    choice = spec.get("choice")
    if choice is not None and (question.type != "multiple" or str(choice) not in codes):
        raise _fail(path, f"« choice: {choice} » n'est pas une réponse de la question à choix multiples {qid}", header)
    split = spec.get("split")
    if split is not None and question.type != "multiple":
        raise _fail(path, f"« split » ne s'applique qu'aux questions à choix multiples ({qid} est {question.type})", header)
    ticked = tuple(str(x) for x in spec.get("ticked") or ())
    return ColumnEntry(qid, values, str(choice) if choice is not None else None, ticked, str(split) if split is not None else None)


def plan_columns(table: Table, codebook, mapping: ColumnMapping) -> ColumnPlan:
    """Assign every column of the spreadsheet from the mapping file."""
    index = HeaderIndex(codebook)
    plan = ColumnPlan(na_values=frozenset(normalise_label(v) for v in mapping.na_values))
    by_header = {normalise_label(h): e for h, e in mapping.columns.items()}
    technical = {normalise_label(h): target for target, h in mapping.technical.items()}
    ignored = {normalise_label(h) for h in mapping.ignore}
    found: set[str] = set()
    for j, raw_name in enumerate(table.header):
        norm = normalise_label(raw_name)
        if norm in technical:
            plan.add_meta(technical[norm], j)
            found.add(norm)
        elif norm in ignored:
            plan.removed.append(j)
            found.add(norm)
        elif norm in by_header:
            found.add(norm)
            entry = by_header[norm]
            question = codebook.question(entry.question)
            if question.type == "multiple":
                if entry.choice is not None:
                    plan.add_choice(entry.question, entry.choice, j)
                    if entry.ticked:
                        plan.ticked[j] = frozenset(normalise_label(t) for t in entry.ticked)
                else:
                    matcher = AnswerMatcher.from_scale(codebook.scale_of(entry.question), entry.values)
                    plan.add_joined(entry.question, j, _splitter(matcher, entry.split or ", "))
            else:
                plan.add_single(entry.question, j)
                if entry.values:
                    plan.value_maps.setdefault(entry.question, {}).update(entry.values)
        elif norm in PERSONAL_HEADER_NAMES or norm in EMAIL_HEADER_NAMES:
            plan.removed.append(j)
        elif (tech := index.technical(raw_name)) is not None:
            plan.add_meta(tech, j)
        else:
            plan.unmapped.append(j)
    expected = list(mapping.columns) + list(mapping.technical.values())
    missing = [h for h in expected if normalise_label(h) not in found]
    if missing:
        raise ExportError(
            "colonne(s) annoncée(s) dans le fichier de correspondance "
            f"({mapping.path.name}) mais absente(s) de l'export : " + ", ".join(f"« {h} »" for h in missing),
            path=table.path,
            line=table.header_line,
            column=missing[0],
        )
    return plan


def _splitter(matcher: AnswerMatcher, separator: str):
    def split(cell: str) -> tuple[str, ...]:
        codes, unknown = matcher.split_joined(cell, separator)
        return tuple(codes) + tuple(unknown)

    return split


def _dates_to_iso(raw: RawExport, date_format: str) -> None:
    """Read text dates with the mapping's ``date_format`` (day/month order is then never guessed)."""
    series = raw.frame["_submitted_at"]

    def convert(value: object) -> object:
        if value is pd.NA or value is None:
            return value
        try:
            return dt.datetime.strptime(str(value).strip(), date_format).isoformat(sep=" ")
        except ValueError:
            return value  # an ISO date from an XLSX date cell, or unreadable: left to the cleaning

    raw.frame["_submitted_at"] = series.map(convert).astype("string")


def read(table: Table, codebook, mapping: ColumnMapping) -> RawExport:
    """Map a spreadsheet export onto the codebook through its mapping file."""
    raw = materialise(table, plan_columns(table, codebook, mapping), codebook, FORMAT)
    if mapping.date_format:
        _dates_to_iso(raw, mapping.date_format)
    if mapping.file and mapping.file != table.path.name:
        raw.problems.append(
            Problem(
                "warning",
                "mapping_file_name",
                f"le fichier de correspondance décrit « {mapping.file} », pas « {table.path.name} » : "
                "vérifiez qu'il s'agit du bon fichier",
            )
        )
    return raw
