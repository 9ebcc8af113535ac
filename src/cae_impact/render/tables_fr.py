"""The indicator table for a French analyst: ``indicators.xlsx`` and ``indicateurs_excel.csv``.

``indicators.csv`` is the machine table (CONTRACTS.md §5: English column names, codes, raw
floats, comma-separated): tools and ``make verify`` read it. This module makes the two
spreadsheet versions of the same rows:

* :func:`french_frame`: French column headers, the domain's name instead of its code, « oui » /
  « non » for the flags, the published code of a hidden or banded cell (« s », « ≥ 90 % »),
  floats rounded to 10 decimals (no ``1.26e-17``);
* :func:`write_xlsx`: sheet « Indicateurs » with number formats per row (percent, euro,
  integer), a frozen header, an autofilter and column widths fitted to their content, and a
  sheet « Dictionnaire » that explains every column and the suppression codes;
* :func:`excel_csv`: what French Excel opens as it is (UTF-8 with BOM, « ; », decimal comma).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cae_impact.analysis.disclosure import band_text
from cae_impact.core.files import atomic_write, write_atomic
from cae_impact.privacy.personal_data import neutralise_frame
from cae_impact.render import tables_fr
from cae_impact.spec.codebook import Codebook

SUPPRESSED_CODE = "s"
EXCEL_CSV_NAME = "indicateurs_excel.csv"
SHEET_DATA = "Indicateurs"
SHEET_DICTIONARY = "Dictionnaire"


@dataclass(frozen=True)
class Column:
    """A column of the French table: its machine source, header, meaning and display format."""

    source: str
    header: str
    meaning: str
    fmt: str = "text"  # text, value (by the row's unit), int, pop, p, pct


COLUMNS: list[Column] = [
    Column("indicator_id", "Code indicateur", "Identifiant de l’indicateur dans le référentiel (codebook)."),
    Column("indicator_label", "Indicateur", "Libellé de l’indicateur."),
    Column("domain_id", "Domaine", "Domaine d’effet de l’indicateur (chapitre du rapport) ; « Profil » pour les "
           "caractéristiques des répondants."),
    Column("kind", "Type d’indicateur", "Part, répartition, au moins une réponse parmi plusieurs, moyenne, médiane "
           "ou évolution avant / maintenant."),
    Column("unit", "Unité", "« % » : part de répondants ; « € » : montant en euros ; « nombre » : autre valeur."),
    Column("target", "Champ", "La CAE (son identifiant) ou « consortium » : l’ensemble des CAE de l’étude."),
    Column("breakdown", "Ventilation", "« Ensemble », ou la caractéristique des répondants selon laquelle "
           "le résultat est décliné (sexe, diplôme…)."),
    Column("group_label", "Groupe", "Le groupe de la ventilation (vide pour l’ensemble)."),
    Column("category_label", "Modalité", "La réponse d’une répartition, ou « avant » / « aujourd’hui » / "
           "« évolution » d’un indicateur avant / maintenant ; vide pour une valeur unique."),
    Column("published", "Valeur publiée", "Vide quand l’estimation est publiée ; sinon le code imprimé dans les "
           "rapports : « s » (secret statistique, valeur masquée) ou une tranche (« ≥ 90 % », « < 20 % »)."),
    Column("estimate", "Estimation", "Valeur estimée (pondérée) ; en % pour une part, en euros pour un montant.",
           "value"),
    Column("ci_low", "IC 95 % : borne basse", "Borne basse de l’intervalle de confiance à 95 %.", "value"),
    Column("ci_high", "IC 95 % : borne haute", "Borne haute de l’intervalle de confiance à 95 %.", "value"),
    Column("se", "Erreur type", "Erreur type de l’estimation (précision : plus elle est petite, plus "
           "l’estimation est précise).", "value"),
    Column("n_unweighted", "Répondants (base)", "Nombre de répondants sur lesquels porte l’estimation "
           "(non pondéré).", "int"),
    Column("n_count", "Répondants (cellule)", "Pour une part : nombre de répondants ayant la réponse "
           "comptée (non pondéré).", "int"),
    Column("base_weighted", "Population estimée", "Nombre de personnes que représente la base, après "
           "pondération.", "pop"),
    Column("comparison", "Comparaison", "Ce à quoi le résultat est comparé : « reste du consortium », "
           "« entre groupes » ou « avant l’entrée en CAE »."),
    Column("test", "Test", "Le test statistique utilisé pour la comparaison."),
    Column("p_value", "Probabilité critique (p)", "Probabilité d’observer un écart au moins aussi grand si "
           "aucun écart n’existait.", "p"),
    Column("p_adjusted", "p ajustée", "La même, corrigée pour le nombre de tests du rapport "
           "(Benjamini-Hochberg).", "p"),
    Column("significant", "Écart significatif", "« oui » quand la p ajustée est inférieure au seuil de l’étude "
           "(5 %) : l’écart a peu de chances d’être dû au hasard de l’échantillon."),
    Column("flag_caution", "À interpréter avec prudence", "« oui » quand la base compte moins de 30 "
           "répondants."),
    Column("suppressed", "Masquée", "« oui » quand la valeur n’est pas publiée (secret statistique)."),
    Column("suppression_reason", "Motif du secret", "Pourquoi la valeur est masquée ou publiée en tranche "
           "(voir plus bas)."),
    Column("band_low", "Tranche : au moins", "Valeur publiée en tranche « au moins » (≥ 90 % : 9 sur 10 ou "
           "plus).", "pct"),
    Column("band_high", "Tranche : moins de", "Valeur publiée en tranche « moins de » (< 20 % : moins de "
           "2 sur 10).", "pct"),
    # A wave with a previous one (issue 18, cae_impact.analysis.waves): the total rows' change since then.
    Column("previous_wave", "Vague précédente", "L’enquête précédente avec laquelle la valeur est comparée."),
    Column("previous_estimate", "Valeur à la vague précédente", "La valeur publiée par l’enquête précédente "
           "(vide : non publiée, ou indicateur non comparable).", "value"),
    Column("change", "Évolution", "Valeur de cette enquête moins celle de l’enquête précédente (pour une part : "
           "en points de pourcentage) ; vide quand l’une des deux valeurs n’est pas publiée.", "value"),
    Column("change_ci_low", "Évolution : IC 95 % bas", "Borne basse de l’intervalle de confiance à 95 % de "
           "l’évolution.", "value"),
    Column("change_ci_high", "Évolution : IC 95 % haut", "Borne haute de l’intervalle de confiance à 95 % de "
           "l’évolution.", "value"),
    Column("change_p_adjusted", "Évolution : p ajustée", "Probabilité critique de l’évolution, corrigée pour le "
           "nombre d’évolutions testées dans le rapport (Benjamini-Hochberg).", "p"),
    Column("change_significant", "Évolution significative", "« oui » quand la p ajustée de l’évolution est "
           "inférieure au seuil de l’étude (5 %)."),
    Column("change_note", "Évolution : remarque", "Pourquoi l’évolution n’est pas donnée ou pas testée "
           "(indicateur non comparable, valeur non publiée, chiffre des registres, médiane)."),
]

UNITS = {"pct": "%", "eur": "€", "number": "nombre"}
KINDS = {"share": "part", "distribution": "répartition", "any_of": "au moins une réponse", "mean": "moyenne",
         "median": "médiane", "paired_difference": "avant / maintenant"}
COMPARISONS = {"consortium": "reste du consortium", "groups": "entre groupes", "before": "avant l’entrée en CAE"}
PROFILE_DOMAIN = "profile"
# The profile variables results are broken down by (as the reports name them, chapters.py).
BREAKDOWNS = {"total": "Ensemble", "sex": "Sexe", "diploma": "Diplôme", "prior_status": "Situation avant la CAE",
              "seniority": "Ancienneté dans la CAE", "sector": "Secteur", "age_band": "Âge",
              "contract_stage": "Statut dans la CAE"}

# Excel number formats (the file stores them with « . » and « , »; Excel shows them in the
# reader's locale: 45,3 % and 1 234 € in French Excel).
FORMATS = {"pct": "0.0%", "eur": "#,##0\\ \"€\"", "number": "#,##0.0", "int": "0", "pop": "#,##0",
           "p": "0.0000"}

SUPPRESSION_CODES = [
    ("s", "Valeur masquée (secret statistique) : la case est vide dans « Estimation » et l’intervalle."),
    ("≥ 90 % (ou ≥ 80 %…)", "Valeur publiée en tranche : au moins 9 sur 10 (colonne « Tranche : au moins »)."),
    ("< 20 % (ou < 10 %…)", "Valeur publiée en tranche : moins de 2 sur 10 (colonne « Tranche : moins de »)."),
    ("effectif < 5", "Motif : moins de 5 répondants ont la réponse comptée ; on pourrait les reconnaître."),
    ("base < 10", "Motif : moins de 10 répondants dans la base ; l’estimation n’a pas de sens."),
    ("suppression secondaire", "Motif : la valeur permettrait de retrouver par différence une valeur masquée "
     "ailleurs (dans ce fichier, le rapport d’une autre CAE ou celui du consortium)."),
    ("valeur en tranche …", "Motif : la part est si proche de 0 ou de 100 % que le nombre exact révélerait un "
     "petit effectif ; seule la tranche est publiée."),
]


def domain_names(codebook: Any | None) -> dict[str, str]:
    """Domain id -> « 1. Titre » from the codebook (empty without one)."""
    names = {PROFILE_DOMAIN: "Profil des répondants"}
    if codebook is not None:
        for d in codebook.domains:
            names[d.id] = f"{d.number}. {d.title}"
    return names


def _clean_float(v: Any) -> Any:
    """A float rounded to 10 decimals (``1.26e-17`` -> 0.0); None for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        r = round(v, 10)
        return 0.0 if r == 0 else r
    return v


def _yes_no(v: Any) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return "oui" if bool(v) else "non"


def published_code(row: dict[str, Any]) -> str:
    """« s », a band (« ≥ 90 % ») or « » for a published estimate."""
    low, high = _clean_float(row.get("band_low")), _clean_float(row.get("band_high"))
    if low is not None or high is not None:
        return band_text(low, high, short=True)
    if _yes_no(row.get("suppressed")) == "oui":
        return SUPPRESSED_CODE
    return ""


def french_frame(table: pd.DataFrame, codebook: Any | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The French table (headers, domain names, « oui » / « non ») and each row's unit code.

    Columns absent from ``table`` are left out; values are plain Python objects (None missing).
    """
    names = domain_names(codebook)
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    units = [str(r.get("unit") or "number") for r in records]
    out: dict[str, list[Any]] = {}
    for col in COLUMNS:
        if col.source != "published" and col.source not in table.columns:
            continue
        values: list[Any] = []
        for r in records:
            v = r.get(col.source)
            if col.source == "published":
                v = published_code(r) or None
            elif col.source == "domain_id":
                v = names.get(v, v) if v is not None else None
            elif col.source == "unit":
                v = UNITS.get(v, v)
            elif col.source == "kind":
                v = KINDS.get(v, v)
            elif col.source == "breakdown":
                v = BREAKDOWNS.get(v, v)
            elif col.source == "comparison":
                v = COMPARISONS.get(v, v)
            elif col.source in ("significant", "flag_caution", "suppressed", "change_significant"):
                v = _yes_no(v)
            elif col.fmt in ("int",) and v is not None and not (isinstance(v, float) and math.isnan(v)):
                v = int(round(float(v)))
            else:
                v = _clean_float(v)
            if isinstance(v, str) and v == "":
                v = None
            values.append(v)
        out[col.header] = values
    return pd.DataFrame(out, columns=list(out), dtype=object), units


def _format_of(col: Column, unit: str) -> str | None:
    if col.fmt == "value":
        return FORMATS.get(unit, FORMATS["number"])
    return FORMATS.get(col.fmt)


def _display_len(v: Any, fmt: str | None) -> int:
    if v is None:
        return 0
    if isinstance(v, float):
        return 9 if fmt else len(f"{v:.10g}")
    return len(str(v))


def column_widths(frame: pd.DataFrame, columns: list[Column]) -> list[float]:
    """Width of each column in Excel characters: its header and content, between 8 and 60."""
    widths = []
    for col, header in zip(columns, frame.columns, strict=True):
        fmt = _format_of(col, "pct")
        longest = max([_display_len(v, fmt) for v in frame[header]] + [0])
        head = max(len(w) for w in header.split()) + 2  # the header may wrap between words
        widths.append(float(min(60, max(8, head, min(longest, 60) + 2))))
    return widths


def _columns_of(frame: pd.DataFrame) -> list[Column]:
    by_header = {c.header: c for c in COLUMNS}
    return [by_header[h] for h in frame.columns]


def write_xlsx(table: pd.DataFrame, path: Path, codebook: Any | None = None,
               neutralise: Any = None) -> None:
    """Write the two sheets (« Indicateurs », « Dictionnaire ») to ``path`` with fixed dates.

    ``neutralise`` (a function on a DataFrame) makes text cells inert against formulas.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    frame, units = french_frame(table, codebook)
    if neutralise is not None:
        frame = _none_for_missing(neutralise(frame))
    columns = _columns_of(frame)
    book = Workbook(write_only=True)
    book.properties.creator = "cae-impact"
    book.properties.created = book.properties.modified = dt.datetime(2000, 1, 1)
    sheet = book.create_sheet(SHEET_DATA)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="EEF2F5")
    wrap = Alignment(wrap_text=True, vertical="top")
    right = Alignment(horizontal="right")
    for i, w in enumerate(column_widths(frame, columns), 1):
        sheet.column_dimensions[get_column_letter(i)].width = w
    sheet.freeze_panes = "C2"  # header row and the indicator's code and label stay in view
    last = f"{get_column_letter(max(1, len(columns)))}{len(frame) + 1}"
    sheet.auto_filter.ref = f"A1:{last}"
    header = []
    for h in frame.columns:
        cell = WriteOnlyCell(sheet, value=str(h))
        cell.font, cell.fill, cell.alignment = bold, fill, wrap
        header.append(cell)
    sheet.append(header)
    for values, unit in zip(frame.itertuples(index=False, name=None), units, strict=True):
        row = []
        for col, v in zip(columns, values, strict=True):
            cell = WriteOnlyCell(sheet, value=v)
            fmt = _format_of(col, unit)
            if fmt and isinstance(v, (int, float)):
                cell.number_format = fmt
            elif col.source == "published" and v:
                cell.alignment = right
            row.append(cell)
        sheet.append(row)

    dico = book.create_sheet(SHEET_DICTIONARY)
    dico.column_dimensions["A"].width = 28
    dico.column_dimensions["B"].width = 22
    dico.column_dimensions["C"].width = 90
    dico.freeze_panes = "A2"

    def line(*cells: Any, head: bool = False) -> None:
        out = []
        for v in cells:
            c = WriteOnlyCell(dico, value=v)
            c.alignment = wrap
            if head:
                c.font, c.fill = bold, fill
            out.append(c)
        dico.append(out)

    line("Colonne", "Colonne de indicators.csv", "Signification", head=True)
    for col in columns:
        line(col.header, "" if col.source == "published" else col.source, col.meaning)
    line()
    line("Code ou motif", "", "Signification", head=True)
    for code, meaning in SUPPRESSION_CODES:
        line(code, "", meaning)
    line()
    line("Format", "", "Signification", head=True)
    line("Une ligne", "", "Un résultat publié : un indicateur, pour un champ (CAE ou consortium), une ventilation "
         "et un groupe, et le cas échéant une modalité de réponse.")
    line("Nombres", "", "Les parts sont enregistrées comme des proportions (0,453) affichées en % (45,3 %) ; "
         "les montants en euros ; les cases vides sont des valeurs manquantes ou masquées.")
    line("indicateurs_excel.csv", "", "Le même tableau en CSV pour Excel (UTF-8, « ; », virgule décimale) ; "
         "indicators.csv est la version pour les programmes (colonnes en anglais, point décimal).")
    if codebook is not None:
        line()
        line("Domaine", "Code", "Description", head=True)
        for d in codebook.domains:
            line(f"{d.number}. {d.title}", d.id, d.description)
    book.save(path)


def _none_for_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """None in every missing cell (``Series.map`` turns None into NaN)."""
    return frame.astype(object).where(frame.notna(), None)


def _csv_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "oui" if v else "non"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.10g}".replace(".", ",") if "e" not in f"{v:.10g}" else f"{v:.10f}".rstrip("0").replace(".", ",")
    text = str(v)
    if any(ch in text for ch in ';"\n\r'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def excel_csv(table: pd.DataFrame, codebook: Any | None = None, neutralise: Any = None) -> bytes:
    """The French table as French Excel opens it: UTF-8 with BOM, « ; », decimal comma, CRLF."""
    frame, _ = french_frame(table, codebook)
    if neutralise is not None:
        frame = _none_for_missing(neutralise(frame))
    lines = [";".join(_csv_cell(h) for h in frame.columns)]
    lines += [";".join(_csv_cell(v) for v in row) for row in frame.itertuples(index=False, name=None)]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


# ------------------------------------------------------------------ the indicator files of a report
# (moved here from cae_impact.analysis.indicators: writing them is rendering)


def _fix_zip_timestamps(path: Path) -> None:
    """Rewrite a zip container (XLSX) with fixed member dates, so equal content gives equal bytes.

    openpyxl stamps the save time into the zip members and into docProps/core.xml (modified).
    """
    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info.filename)) for info in src.infolist()]
    members = [
        (info, re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
         if info.filename == "docProps/core.xml" else data)
        for info, data in members
    ]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)


def _write_xlsx(frame: pd.DataFrame, path: Path, sheet_name: str = "Indicateurs",
                codebook: Codebook | None = None) -> None:
    """The analyst's workbook (:func:`write_xlsx`).

    French headers, domain names, number formats, frozen header, autofilter, and the
    « Dictionnaire » sheet; openpyxl's write-only workbook streams rows; fixed document dates. ``frame`` is the machine
    table (already neutralised against formulas); ``sheet_name`` is kept for callers.
    """
    tables_fr.write_xlsx(frame, path, codebook, neutralise=neutralise_frame)


def write_indicator_files(table: pd.DataFrame, folder: Path, codebook: Codebook | None = None
                          ) -> tuple[Path, Path]:
    """Write the indicator tables of a report atomically; return (``indicators.csv``, ``.xlsx``).

    * ``indicators.csv``: the machine table (CONTRACTS.md §5; UTF-8, comma-separated, point
      decimal), read by tools and ``make verify``;
    * ``indicators.xlsx``: the same rows for an analyst in Excel (this module;
      domain names from ``codebook`` when given);
    * ``indicateurs_excel.csv``: that French table as French Excel opens it (BOM, « ; »,
      decimal comma).

    Text cells that a spreadsheet would read as a formula are neutralised.
    """
    folder.mkdir(parents=True, exist_ok=True)
    safe = neutralise_frame(table)
    csv_path = folder / "indicators.csv"
    write_atomic(csv_path, safe.to_csv(index=False, float_format="%.10g", lineterminator="\n"))
    write_atomic(folder / EXCEL_CSV_NAME,
                 excel_csv(safe, codebook, neutralise=neutralise_frame))
    xlsx_path = folder / "indicators.xlsx"

    def write(tmp: Path) -> None:
        _write_xlsx(safe, tmp, codebook=codebook)
        _fix_zip_timestamps(tmp)

    atomic_write(xlsx_path, write)
    return csv_path, xlsx_path
