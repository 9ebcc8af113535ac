"""Cleaning: from one CAE's raw export to pseudonymous, validated responses, every row accounted for.

:func:`clean_export` reads a CAE's export with its adapter (:mod:`cae_impact.ingest`) and
applies the rules of :data:`CLEANING_RULES`, in that order; :func:`write_processed` writes the
three files of CONTRACTS.md §3 under ``data/processed/<wave>/<cae>/``, each atomically:

- ``responses.parquet``: one row per kept respondent, the columns of the codebook, no personal
  data, validated against :func:`cae_impact.clean.schema.processed_schema` before it is written;
- ``quarantine.csv``: every row set aside and every value blanked, with its line in the raw
  file, the column, the value (masked when personal), the reason and what was done;
- ``cleaning_log.json``: the accounting (raw rows = kept + set aside by reason + merged
  duplicates, asserted here), the rules applied and the problems found — the source of the
  reports' data-quality annex.

:func:`validate_export` runs the same reading and cleaning without writing anything and
reports, in French, whether a file can be used; :func:`cae_impact.clean.validate.main_validate` is ``cae-impact validate``.

Nothing personal leaves this module: identifiers become keyed pseudonyms
(:mod:`cae_impact.privacy.personal_data`), tokens, e-mail and IP addresses are dropped, and e-mail addresses
and phone numbers typed in free text are masked before the frame is built.
"""

from __future__ import annotations

import csv
import json
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cae_impact.core.files import atomic_write
from cae_impact.ingest import (
    FORMAT_LABELS,
    AnswerMatcher,
    ExportError,
    Problem,
    RawExport,
    guess_format,
    parse_datetime,
    parse_number,
    read_export,
)
from cae_impact.privacy.personal_data import (
    PSEUDONYM_LENGTH,
    load_pseudonymisation_key,
    mask_free_text,
    mask_series_detail,
    neutralise_formula,
    pseudonymise,
)
from cae_impact.spec.codebook import load_codebook, parse_relevant
from cae_impact.spec.config import PROJECT_ROOT

# ------------------------------------------------------------------------------------------
# Rules and thresholds
# ------------------------------------------------------------------------------------------

COMPLETENESS_MIN_SHARE = 0.5
"""A response is set aside when it answers less than this share of the core questions that
apply to the respondent (skip logic taken into account)."""

MAX_SUBMISSIONS_PER_IDENTIFIER = 5
"""An identifier shared by more submissions than this is a placeholder or a misconfigured link
(« test@test.fr », the same pre-filled id for everybody), not a person: it is not used to find
double submissions, and a warning says so."""

QUARANTINE_VALUE_MAX_CHARS = 200
"""Values longer than this are cut in quarantine.csv (they are already masked)."""

QUARANTINE_COLUMNS = ("raw_line", "column", "question_id", "value", "reason", "action", "detail")
"""Columns of quarantine.csv, in order."""

ROW_SET_ASIDE = "row_set_aside"
VALUE_BLANKED = "value_blanked"


@dataclass(frozen=True)
class CleaningRule:
    """One cleaning rule: a stable id, the reasons it records, and its French statement.

    ``text`` is what the report's data-quality annex prints; ``reasons`` are the codes written in
    the ``reason`` column of quarantine.csv and counted in cleaning_log.json.
    """

    id: str
    title: str
    text: str
    reasons: tuple[str, ...] = ()


CLEANING_RULES: tuple[CleaningRule, ...] = (
    CleaningRule(
        "R01",
        "Lignes illisibles",
        "Une ligne du fichier qui n'a pas le nombre de colonnes de l'en-tête, ou qui répète "
        "l'en-tête (deux exports collés, seconde ligne de titres), est mise de côté. Les lignes "
        "entièrement vides sont ignorées et comptées à part.",
        ("malformed_row", "header_row"),
    ),
    CleaningRule(
        "R02",
        "Version du questionnaire",
        "Une réponse dont la version du questionnaire (champ caché « qversion ») diffère de la "
        "version du référentiel est mise de côté ; si aucune réponse n'a la bonne version, "
        "l'export est refusé.",
        ("other_version",),
    ),
    CleaningRule(
        "R03",
        "Recodage des réponses",
        "Chaque réponse est ramenée au code du référentiel, qu'elle soit exportée sous forme de "
        "code ou de libellé complet ; la casse, les accents, les espaces et les apostrophes "
        "typographiques ne comptent pas, et Oui/Non s'écrivent aussi Y/N ou 1/0. Une réponse "
        "qui ne correspond à aucun code ni libellé de l'échelle est effacée.",
        ("unknown_code",),
    ),
    CleaningRule(
        "R04",
        "Valeurs numériques",
        "Les nombres sont lus avec une virgule ou un point décimal, des espaces ou des points "
        "comme séparateurs de milliers et une unité éventuelle (€, mois) ; une valeur qui n'est "
        "pas un nombre, ou qui sort des bornes du référentiel (minimum et maximum de la "
        "question), est effacée.",
        ("not_a_number", "out_of_range"),
    ),
    CleaningRule(
        "R05",
        "Réponses incompatibles",
        "Une question à choix multiples où une réponse exclusive (« Aucune de ces aides », "
        "« Ne sait pas ») est cochée avec une autre réponse est effacée pour ce répondant.",
        ("exclusive_conflict",),
    ),
    CleaningRule(
        "R06",
        "Filtres du questionnaire",
        "Une réponse donnée à une question qui ne s'adressait pas au répondant (condition "
        "d'affichage du référentiel, par exemple une question réservée aux entrepreneurs "
        "salariés) est effacée : la question est « non concernée » pour lui. Si la question "
        "filtre est elle-même restée sans réponse, le filtre ne peut pas être vérifié et la "
        "réponse est gardée.",
        ("not_relevant",),
    ),
    CleaningRule(
        "R07",
        "Date de réponse",
        "La date de réponse est lue dans les formats des outils d'enquête (ISO, jj/mm/aaaa) ; "
        "une date illisible est effacée.",
        ("bad_date",),
    ),
    CleaningRule(
        "R08",
        "Doublons",
        "Plusieurs réponses d'une même personne (même identifiant de participation, même jeton "
        "ou même adresse électronique) sont fusionnées : on garde la plus complète, puis la plus "
        f"récente, puis la dernière du fichier. Un identifiant partagé par plus de "
        f"{MAX_SUBMISSIONS_PER_IDENTIFIER} réponses n'est pas utilisé (valeur fictive ou lien "
        f"mal configuré).",
        ("duplicate",),
    ),
    CleaningRule(
        "R09",
        "Réponses incomplètes",
        "Une réponse est mise de côté si une question obligatoire du référentiel (situation "
        "dans la CAE, ancienneté) est sans réponse, ou si moins de "
        f"{COMPLETENESS_MIN_SHARE:.0%} des questions essentielles (celles des indicateurs) qui "
        "s'adressaient au répondant ont une réponse. « Ne sait pas » compte comme une réponse ; "
        "une question absente de l'export de la CAE n'est pas comptée."
        .replace("%", " %"),
        ("required_missing", "incomplete"),
    ),
    CleaningRule(
        "R10",
        "Textes libres",
        "Dans les réponses en texte libre (y compris le texte saisi après « Autre », gardé dans la colonne `<question>__autre_texte`), les caractères de contrôle et invisibles sont "
        "supprimés ; les adresses électroniques (même écrites avec des espaces, « arobase » "
        "au lieu de « @ » ou « point » au lieu de « . »), les numéros de téléphone (quel que soit le groupement des "
        "chiffres, formes internationales comprises), les adresses IP, les liens vers une page "
        "personnelle et les noms annoncés par « je m'appelle », « signé », « cordialement, »… "
        "sont remplacés par « [courriel masqué] », « [téléphone masqué] », « [adresse IP "
        "masquée] », « [lien masqué] » et « [nom masqué] ».",
    ),
    CleaningRule(
        "R11",
        "Pseudonymisation",
        "L'identifiant de chaque répondant (identifiant de participation, sinon jeton, sinon "
        "adresse électronique, sinon numéro de réponse de l'outil) est remplacé par une "
        f"empreinte HMAC-SHA256 à clé secrète ({PSEUDONYM_LENGTH} caractères hexadécimaux), la "
        "clé étant conservée hors du dépôt. Jetons, adresses électroniques, adresses IP, noms "
        "et identifiants d'appareil sont supprimés.",
    ),
    CleaningRule(
        "R12",
        "Contrôle final",
        "Les réponses gardées sont contrôlées par un schéma dérivé du référentiel (colonnes, "
        "types, codes permis, bornes, absence de données personnelles) avant d'être écrites ; "
        "le bilan lignes brutes = gardées + mises de côté + doublons fusionnés est vérifié.",
    ),
)
"""The cleaning rules, in the order they are applied (printed by the report's annex)."""

REASON_LABELS: dict[str, str] = {
    "malformed_row": "ligne mal formée",
    "header_row": "ligne d'en-tête répétée",
    "other_version": "autre version du questionnaire",
    "unknown_code": "réponse inconnue",
    "not_a_number": "valeur non numérique",
    "out_of_range": "valeur hors bornes",
    "exclusive_conflict": "réponses incompatibles",
    "not_relevant": "question non posée (filtre)",
    "bad_date": "date illisible",
    "duplicate": "doublon fusionné",
    "required_missing": "question obligatoire sans réponse",
    "incomplete": "réponse incomplète",
}
"""French label of every reason code of quarantine.csv."""

ROW_REASONS = ("malformed_row", "header_row", "other_version", "required_missing", "incomplete")
"""Reasons for which a whole row is set aside (duplicates are counted apart, as merged)."""


def rules_markdown() -> str:
    """The rules as a Markdown table (French), as embedded in docs/cleaning-rules.md."""
    lines = ["| Règle | Intitulé | Énoncé | Motifs (`reason`) |", "|---|---|---|---|"]
    for rule in CLEANING_RULES:
        reasons = ", ".join(f"`{r}`" for r in rule.reasons)
        lines.append(f"| {rule.id} | {rule.title} | {rule.text} | {reasons} |")
    return "\n".join(lines) + "\n"


def core_question_ids(codebook) -> list[str]:
    """The core questions of the completeness rule: those an indicator reads, and required ones.

    Free-text questions are never core.
    """
    used = {qid for ind in codebook.indicators for qid in ind.question_ids}
    return [
        q.id
        for q in codebook.questions.values()
        if q.type != "text" and (q.id in used or q.required)
    ]


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------


class AccountingError(AssertionError):
    """Raw rows do not add up to kept + set aside + merged duplicates (a bug, never data)."""


@dataclass(frozen=True)
class Accounting:
    """Where every data row of the raw file went."""

    raw_rows: int
    kept: int
    set_aside: dict[str, int]
    merged_duplicates: int
    blank_lines_ignored: int = 0

    @property
    def set_aside_total(self) -> int:
        """Rows set aside, all reasons together."""
        return sum(self.set_aside.values())

    def check(self) -> None:
        """Raise AccountingError unless raw rows = kept + set aside + merged duplicates."""
        total = self.kept + self.set_aside_total + self.merged_duplicates
        if total != self.raw_rows or self.kept < 0 or any(v < 0 for v in self.set_aside.values()):
            raise AccountingError(
                f"accounting does not add up: raw {self.raw_rows} != kept {self.kept} + set aside "
                f"{self.set_aside_total} {self.set_aside} + merged duplicates {self.merged_duplicates}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (cleaning_log.json ``accounting``)."""
        return {
            "raw_rows": self.raw_rows,
            "kept": self.kept,
            "set_aside": dict(self.set_aside),
            "set_aside_total": self.set_aside_total,
            "merged_duplicates": self.merged_duplicates,
            "blank_lines_ignored": self.blank_lines_ignored,
            "identity": "raw_rows = kept + set_aside_total + merged_duplicates",
            "identity_holds": self.kept + self.set_aside_total + self.merged_duplicates == self.raw_rows,
        }

    def format_text(self) -> list[str]:
        """French lines for ``cae-impact validate`` and the notebook."""
        out = [
            f"lignes de réponses dans le fichier : {self.raw_rows}",
            f"gardées : {self.kept}",
            f"mises de côté : {self.set_aside_total}",
        ]
        for reason, n in self.set_aside.items():
            if n:
                out.append(f"  - {REASON_LABELS.get(reason, reason)} : {n}")
        out.append(f"doublons fusionnés : {self.merged_duplicates}")
        if self.blank_lines_ignored:
            out.append(f"(lignes vides ignorées : {self.blank_lines_ignored})")
        return out


@dataclass
class CleaningResult:
    """The cleaned data of one CAE and everything needed to write and audit it."""

    cae_id: str
    wave: str
    responses: pd.DataFrame
    quarantine: pd.DataFrame
    accounting: Accounting
    problems: list[Problem]
    log: dict[str, Any]

    @property
    def values_blanked(self) -> int:
        """Number of answers blanked (kept rows and others)."""
        return int((self.quarantine["action"] == VALUE_BLANKED).sum())

    def reason_counts(self) -> pd.DataFrame:
        """Quarantine entries per action and reason, with the French label of the reason.

        Columns ``action``, ``reason``, ``label``, ``n``; rows in the order of the rules.
        """
        order = {r: k for k, rule in enumerate(CLEANING_RULES) for r in rule.reasons}
        counts = self.quarantine.groupby(["action", "reason"]).size().reset_index(name="n")
        counts["label"] = counts["reason"].map(REASON_LABELS).astype("string")
        counts["_o"] = counts["reason"].map(order)
        counts = counts.sort_values(["action", "_o"]).drop(columns="_o").reset_index(drop=True)
        return counts[["action", "reason", "label", "n"]]


# ------------------------------------------------------------------------------------------
# The cleaning itself
# ------------------------------------------------------------------------------------------


@dataclass
class _Quarantine:
    """Collects quarantine entries (tuples in QUARANTINE_COLUMNS order) during a cleaning run."""

    rows: list[tuple] = field(default_factory=list)

    def add(self, line: int, column: str, qid: str, value: object, reason: str, action: str, detail: str) -> None:
        self.rows.append((int(line), column, qid, _safe_value(value), reason, action, detail))

    def add_many(
        self, lines: Iterable[int], values: Iterable[object], column: str, qid: str, reason: str,
        detail: Callable[[object], str] | str,
    ) -> None:
        for line, value in zip(lines, values, strict=True):
            text = detail(value) if callable(detail) else detail
            self.add(line, column, qid, value, reason, VALUE_BLANKED, text)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=list(QUARANTINE_COLUMNS))
        frame["raw_line"] = frame["raw_line"].astype("int64")
        for col in QUARANTINE_COLUMNS[1:]:
            frame[col] = frame[col].astype("string")
        order = frame["action"].map({ROW_SET_ASIDE: 0, VALUE_BLANKED: 1})
        frame = frame.assign(_o=order).sort_values(["raw_line", "_o", "question_id"], kind="stable")
        return frame.drop(columns="_o").reset_index(drop=True)


def _safe_value(value: object) -> str:
    """A raw value as quarantine.csv shows it: text, masked, cut."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, tuple):
        value = ", ".join(str(v) for v in value)
    text = mask_free_text(str(value))
    if len(text) > QUARANTINE_VALUE_MAX_CHARS:
        text = text[: QUARANTINE_VALUE_MAX_CHARS - 1] + "…"
    return text


def _fmt(x: float) -> str:
    return f"{x:g}".replace(".", ",")


class _Cleaner:
    """One run of the rules over one RawExport (state kept between rules)."""

    def __init__(self, raw: RawExport, codebook, cae_id: str, wave: str, key: bytes) -> None:
        self.raw = raw
        self.cb = codebook
        self.cae_id = cae_id
        self.wave = wave
        self.key = key
        self.q = _Quarantine()
        self.problems: list[Problem] = list(raw.problems)
        self.set_aside: Counter[str] = Counter()
        self.merged = 0
        self.blanked: dict[str, Counter[str]] = {}
        self.masked = {"emails": 0, "phones": 0, "ips": 0, "urls": 0, "names": 0, "controls": 0,
                       "texts_changed": 0}
        self.relevant: dict[str, pd.Series] = {}
        self.work = raw.frame.copy()

    # -- helpers ---------------------------------------------------------------------------

    def column_name(self, qid: str) -> str:
        return self.raw.source_columns.get(qid, qid)

    def count_blanked(self, reason: str, qid: str, n: int) -> None:
        if n:
            self.blanked.setdefault(reason, Counter())[qid] += n

    def drop_rows(self, mask: pd.Series, reason: str, detail: Callable[[int], str] | str) -> None:
        """Set aside the rows of ``mask`` for ``reason``."""
        index = mask[mask].index
        for i in index:
            text = detail(i) if callable(detail) else detail
            self.q.add(self.work.at[i, "_line"], "", "", "", reason, ROW_SET_ASIDE, text)
        if reason == "duplicate":
            self.merged += len(index)
        else:
            self.set_aside[reason] += len(index)
        self.work = self.work.drop(index=index)

    # -- R01 -------------------------------------------------------------------------------

    def rejected_rows(self) -> None:
        for record in self.raw.rejected:
            self.q.add(record.line, "", "", "", record.reason, ROW_SET_ASIDE, record.detail)
            self.set_aside[record.reason] += 1

    # -- R02 -------------------------------------------------------------------------------

    def version(self) -> None:
        versions = self.work["_qversion"].str.strip()
        other = (versions.notna() & (versions != "") & (versions != self.cb.version)).fillna(False).astype(bool)
        self.drop_rows(
            other,
            "other_version",
            lambda i: f"version « {_safe_value(versions[i])} » au lieu de « {self.cb.version} »",
        )

    # -- R03 / R04 / R05 -------------------------------------------------------------------

    def recode(self) -> None:
        for question in self.cb.questions.values():
            if question.type == "multiple":
                self._recode_multiple(question)
            elif question.has_choices:
                self._recode_single(question)
            elif question.type == "numeric":
                self._numbers(question)
            # text: masked later (R10)

    def _recode_single(self, question) -> None:
        qid = question.id
        series = self.work[qid]
        matcher = AnswerMatcher.from_scale(self.cb.scale_of(qid))
        uniques = series.dropna().unique()
        mapping = {v: matcher.match(v) for v in uniques}
        codes = series.map(mapping).astype("string")
        unknown = series.notna() & codes.isna()
        if unknown.any():
            scale = question.scale_id
            self.q.add_many(
                self.work.loc[unknown, "_line"], series[unknown], self.column_name(qid), qid, "unknown_code",
                f"ni un code ni un libellé de l'échelle « {scale} » : réponse effacée",
            )
            self.count_blanked("unknown_code", qid, int(unknown.sum()))
        self.work[qid] = codes

    def _recode_multiple(self, question) -> None:
        qid = question.id
        scale = self.cb.scale_of(qid)
        matcher = AnswerMatcher.from_scale(scale)
        exclusive = {c.code for c in scale.choices if c.exclusive}
        cache: dict[str, str | None] = {}
        out: list[object] = []
        lines = self.work["_line"].to_numpy()
        column = self.column_name(qid)
        n_unknown = n_conflict = 0
        for line, value in zip(lines, self.work[qid].to_numpy(), strict=True):
            if not isinstance(value, tuple):
                out.append(None)
                continue
            ticked: list[str] = []
            for token in value:
                if token not in cache:
                    cache[token] = matcher.match(token)
                code = cache[token]
                if code is None:
                    n_unknown += 1
                    self.q.add(
                        line, column, qid, token, "unknown_code", VALUE_BLANKED,
                        f"ni un code ni un libellé de l'échelle « {scale.id} » : case ignorée",
                    )
                elif code not in ticked:
                    ticked.append(code)
            if len(ticked) > 1 and exclusive & set(ticked):
                n_conflict += 1
                self.q.add(
                    line, column, qid, ", ".join(ticked), "exclusive_conflict", VALUE_BLANKED,
                    "réponse exclusive cochée avec d'autres réponses : question effacée",
                )
                out.append(None)
                continue
            out.append(frozenset(ticked) if ticked else None)
        self.count_blanked("unknown_code", qid, n_unknown)
        self.count_blanked("exclusive_conflict", qid, n_conflict)
        self.work[qid] = pd.Series(out, index=self.work.index, dtype=object)

    def _numbers(self, question) -> None:
        qid = question.id
        series = self.work[qid]
        uniques = series.dropna().unique()
        parsed = {v: parse_number(v) for v in uniques}
        numbers = series.map(parsed).astype("Float64")
        not_number = series.notna() & numbers.isna()
        column = self.column_name(qid)
        if not_number.any():
            self.q.add_many(
                self.work.loc[not_number, "_line"], series[not_number], column, qid, "not_a_number",
                "valeur qui n'est pas un nombre : effacée",
            )
            self.count_blanked("not_a_number", qid, int(not_number.sum()))
        low = question.min if question.min is not None else -np.inf
        high = question.max if question.max is not None else np.inf
        outside = numbers.notna() & ((numbers < low) | (numbers > high))
        outside = outside.fillna(False).astype(bool)
        if outside.any():
            bounds = f"[{_fmt(low)} ; {_fmt(high)}]" + (f" {question.unit}" if question.unit else "")
            self.q.add_many(
                self.work.loc[outside, "_line"], series[outside], column, qid, "out_of_range",
                f"hors des bornes du référentiel {bounds} : valeur effacée",
            )
            self.count_blanked("out_of_range", qid, int(outside.sum()))
            numbers = numbers.mask(outside)
        self.work[qid] = numbers

    # -- R06 -------------------------------------------------------------------------------

    def skip_logic(self) -> None:
        for question in self.cb.questions.values():
            if not question.relevant:
                continue
            node = parse_relevant(question.relevant)
            ids = list(dict.fromkeys(node.questions()))
            keys = pd.DataFrame({qid: self._hashable(qid) for qid in ids}, index=self.work.index)
            # A filter answer is known when given, or blank because its own filter excluded it;
            # a filter question left blank although it applied makes the verdict unknown.
            known = pd.Series(True, index=self.work.index)
            for qid in ids:
                skipped = self.relevant[qid].eq(False).fillna(False) if qid in self.relevant else False
                known &= self._answered(qid) | skipped
            combos = keys[known].drop_duplicates()
            verdict = {}
            for row in combos.itertuples(index=False, name=None):
                answers = {qid: (None if v is None or v is pd.NA else v) for qid, v in zip(ids, row, strict=True)}
                verdict[row] = bool(node.evaluate(answers))
            relevant = pd.Series(
                [verdict[row] if ok else pd.NA for ok, row in zip(known, keys.itertuples(index=False, name=None), strict=True)],
                index=self.work.index,
                dtype="boolean",
            )
            self.relevant[question.id] = relevant
            answered = self._answered(question.id)
            wrong = answered & relevant.eq(False).fillna(False).astype(bool)
            if wrong.any():
                qid = question.id
                self.q.add_many(
                    self.work.loc[wrong, "_line"], self._display(qid)[wrong], self.column_name(qid), qid,
                    "not_relevant", f"question non posée à ce répondant (filtre : {question.relevant}) : réponse effacée",
                )
                self.count_blanked("not_relevant", qid, int(wrong.sum()))
                self._blank(qid, wrong)

    def _hashable(self, qid: str) -> pd.Series:
        series = self.work[qid]
        if series.dtype == object:
            return series.map(lambda v: v if isinstance(v, frozenset) else None)
        return series.astype(object).where(series.notna(), None)

    def _display(self, qid: str) -> pd.Series:
        series = self.work[qid]
        if series.dtype == object:
            return series.map(lambda v: ", ".join(sorted(v)) if isinstance(v, frozenset) else "")
        return series.astype(object).where(series.notna(), "")

    def _answered(self, qid: str) -> pd.Series:
        series = self.work[qid]
        if series.dtype == object:
            return series.map(lambda v: isinstance(v, frozenset)).astype(bool)
        return series.notna().astype(bool)

    def _blank(self, qid: str, mask: pd.Series) -> None:
        series = self.work[qid]
        if series.dtype == object:
            self.work.loc[mask, qid] = None
        else:
            self.work[qid] = series.mask(mask)

    # -- R07 -------------------------------------------------------------------------------

    def dates(self) -> None:
        raw = self.work["_submitted_at"]
        uniques = raw.dropna().unique()
        parsed = {v: parse_datetime(v) for v in uniques}
        values = raw.map(parsed)
        bad = raw.notna() & values.isna()
        if bad.any():
            column = self.column_name("_submitted_at")
            self.q.add_many(
                self.work.loc[bad, "_line"], raw[bad], column, "submitted_at", "bad_date",
                "date de réponse illisible : effacée",
            )
            self.count_blanked("bad_date", "submitted_at", int(bad.sum()))
        self.work["_submitted"] = pd.to_datetime(values.where(values.notna(), None)).astype("datetime64[ns]")

    # -- R08 -------------------------------------------------------------------------------

    def duplicates(self) -> None:
        n = len(self.work)
        if n == 0:
            return
        position = {idx: k for k, idx in enumerate(self.work.index)}
        parent = list(range(n))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        labels = {"_rid": "identifiant de participation", "_token": "jeton", "_email": "adresse électronique"}
        for column, label in labels.items():
            keys = self.work[column].str.strip()
            if column == "_email":
                keys = keys.str.casefold()
            keys = keys[keys.notna() & (keys != "")]
            if keys.empty:
                continue
            sizes = keys.value_counts()
            shared = sizes[sizes > MAX_SUBMISSIONS_PER_IDENTIFIER]
            if not shared.empty:
                lines = tuple(int(x) for x in self.work.loc[keys[keys.isin(shared.index)].index, "_line"])
                self.problems.append(
                    Problem(
                        "warning",
                        "shared_identifier",
                        f"{len(shared)} valeur(s) de {label} partagée(s) par plus de "
                        f"{MAX_SUBMISSIONS_PER_IDENTIFIER} réponses (jusqu'à {int(shared.max())}) : valeur "
                        f"fictive ou lien mal configuré, non utilisée pour repérer les doublons",
                        lines=lines,
                    )
                )
                keys = keys[~keys.isin(shared.index)]
            for _, group in keys.groupby(keys, sort=False).groups.items():
                members = [position[i] for i in group]
                root = find(members[0])
                for other in members[1:]:
                    r = find(other)
                    if r != root:
                        parent[r] = root
        roots = pd.Series([find(k) for k in range(n)], index=self.work.index)
        sizes = roots.map(roots.value_counts())
        if not (sizes > 1).any():
            return
        completeness = self._n_answered()
        submitted = self.work["_submitted"]
        order = pd.DataFrame(
            {
                "root": roots,
                "answered": completeness,
                "submitted": submitted.fillna(pd.Timestamp.min),
                "line": self.work["_line"],
            }
        )
        order = order[sizes > 1].sort_values(["root", "answered", "submitted", "line"], ascending=[True, False, False, False])
        keepers = order.groupby("root", sort=False).head(1)
        kept_line = dict(zip(keepers["root"], keepers["line"], strict=True))
        drop = order.index.difference(keepers.index)
        mask = pd.Series(False, index=self.work.index)
        mask[drop] = True
        self.drop_rows(
            mask,
            "duplicate",
            lambda i: f"même répondant que la ligne {kept_line[roots[i]]}, gardée (plus complète ou plus récente)",
        )

    def _n_answered(self) -> pd.Series:
        counts = pd.Series(0, index=self.work.index, dtype="int64")
        for question in self.cb.questions.values():
            counts += self._answered(question.id).astype("int64")
        return counts

    # -- R09 -------------------------------------------------------------------------------

    def completeness(self) -> None:
        required = [q.id for q in self.cb.questions.values() if q.required]
        missing_required = pd.Series(False, index=self.work.index)
        which: dict[Any, list[str]] = {}
        for qid in required:
            applies = self._applies(qid)
            miss = applies & ~self._answered(qid)
            for i in miss[miss].index:
                which.setdefault(i, []).append(qid)
            missing_required |= miss
        self.drop_rows(
            missing_required,
            "required_missing",
            lambda i: "question(s) obligatoire(s) sans réponse : " + ", ".join(which[i]),
        )
        absent = set(self.raw.missing_questions)  # not in this export: not asked by this CAE
        core = [qid for qid in core_question_ids(self.cb) if qid not in absent]
        answered = pd.Series(0, index=self.work.index, dtype="int64")
        applicable = pd.Series(0, index=self.work.index, dtype="int64")
        for qid in core:
            applies = self._applies(qid)
            applicable += applies.astype("int64")
            answered += (applies & self._answered(qid)).astype("int64")
        share = (answered / applicable.where(applicable > 0)).fillna(0.0)
        low = share < COMPLETENESS_MIN_SHARE
        self.drop_rows(
            low,
            "incomplete",
            lambda i: (
                f"{answered[i]} question(s) essentielle(s) sur {applicable[i]} renseignée(s) "
                f"({share[i]:.0%}, seuil {COMPLETENESS_MIN_SHARE:.0%})".replace("%", " %")
            ),
        )

    def _applies(self, qid: str) -> pd.Series:
        """True where the question applies to the respondent (its filter is not known to be false)."""
        if qid not in self.relevant:
            return pd.Series(True, index=self.work.index)
        return ~self.relevant[qid].reindex(self.work.index).eq(False).fillna(False).astype(bool)

    # -- R10 -------------------------------------------------------------------------------

    def free_text(self) -> None:
        others = self.cb.other_text_columns()
        for qid, column in others.items():  # what was typed after « Autre » (the export's own)
            typed = self.raw.other_texts.get(qid, {})
            self.work[column] = pd.Series(
                [typed.get(i) for i in self.work.index], index=self.work.index, dtype="string")
        texts = [q.id for q in self.cb.questions.values() if q.type == "text"]
        for column in [*texts, *others.values()]:
            series = self.work[column]
            masked, counts, changed = mask_series_detail(series)
            for kind, n in counts.items():
                self.masked[kind] = self.masked.get(kind, 0) + n
            self.masked["texts_changed"] += changed
            self.work[column] = masked.astype("string")

    # -- R11 -------------------------------------------------------------------------------

    def identifiers(self) -> pd.Series:
        source = pd.Series(pd.NA, index=self.work.index, dtype="string")
        for column, kind in (("_rid", "rid"), ("_token", "token"), ("_email", "email"), ("_response_id", "response")):
            values = self.work[column].str.strip()
            if column == "_email":
                values = values.str.casefold()
            values = kind + ":" + values
            source = source.fillna(values.where(self.work[column].notna() & (self.work[column].str.strip() != "")))
        fallback = "line:" + self.work["_line"].astype(str)
        source = source.fillna(fallback)
        repeated = source.duplicated(keep=False)
        if repeated.any():  # only when a shared identifier was not used for duplicates (R08)
            source = source.where(~repeated, "line:" + self.work["_line"].astype(str))
        scope = self.cae_id
        return source.map(lambda s: pseudonymise(s, self.key, scope=scope)).astype("string")

    # -- assembly --------------------------------------------------------------------------

    def responses(self) -> pd.DataFrame:
        dtypes = self.cb.processed_columns()
        columns: dict[str, pd.Series] = {
            "respondent_id": self.identifiers(),
            "cae_id": pd.Series(self.cae_id, index=self.work.index, dtype="string"),
            "wave": pd.Series(self.wave, index=self.work.index, dtype="string"),
            "submitted_at": self.work["_submitted"].astype("datetime64[ns]"),
        }
        for question in self.cb.questions.values():
            qid = question.id
            if question.type == "multiple":
                sets = self.work[qid]
                answered = sets.map(lambda v: isinstance(v, frozenset)).astype(bool)
                for code in self.cb.scale_of(qid).codes:
                    ticked = sets.map(lambda v, c=code: isinstance(v, frozenset) and c in v).astype("boolean")
                    columns[f"{qid}__{code}"] = ticked.mask(~answered)
            else:
                columns[qid] = self.work[qid].astype(dtypes[qid])
        for column in self.cb.other_text_columns().values():
            columns[column] = self.work[column].astype("string")
        frame = pd.DataFrame(columns, index=self.work.index)
        frame = frame.loc[self.work.sort_values("_line").index].reset_index(drop=True)
        return frame[list(dtypes)].astype(dtypes)


def clean_responses(
    raw: RawExport,
    codebook,
    *,
    cae_id: str,
    wave: str,
    key: bytes,
    source_label: str | None = None,
) -> CleaningResult:
    """Apply :data:`CLEANING_RULES` to a RawExport; return the cleaned data and the accounting.

    ``key`` is the pseudonymisation key (:func:`cae_impact.privacy.personal_data.load_pseudonymisation_key`).
    The accounting identity is asserted and the responses are validated against the schema
    derived from the codebook; both failures are bugs and raise.
    """
    from cae_impact.clean.schema import validate_processed

    cleaner = _Cleaner(raw, codebook, cae_id, wave, key)
    cleaner.rejected_rows()
    cleaner.version()
    cleaner.recode()
    cleaner.skip_logic()
    cleaner.dates()
    cleaner.duplicates()
    cleaner.completeness()
    cleaner.free_text()
    responses = cleaner.responses()
    responses = validate_processed(responses, codebook, cae_id=cae_id, wave=wave)
    set_aside = {reason: cleaner.set_aside.get(reason, 0) for reason in ROW_REASONS}
    accounting = Accounting(
        raw_rows=raw.n_raw_rows,
        kept=len(responses),
        set_aside=set_aside,
        merged_duplicates=cleaner.merged,
        blank_lines_ignored=raw.blank_records,
    )
    accounting.check()
    quarantine = cleaner.q.frame()
    problems = cleaner.problems
    if accounting.kept == 0:
        problems.append(
            Problem("error", "nothing_kept", "aucune réponse n'est gardée après nettoyage : l'export est inutilisable")
        )
    log = _build_log(raw, codebook, cae_id, wave, accounting, cleaner, quarantine, problems, source_label)
    return CleaningResult(cae_id, wave, responses, quarantine, accounting, problems, log)


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return Path(path).name


def _build_log(raw, codebook, cae_id, wave, accounting, cleaner, quarantine, problems, source_label) -> dict[str, Any]:
    blanked = {reason: dict(sorted(counter.items())) for reason, counter in sorted(cleaner.blanked.items())}
    return {
        "cae_id": cae_id,
        "wave": wave,
        "source": {
            "file": source_label or _relative(raw.path),
            "sha256": raw.sha256,
            "format": raw.format,
            "encoding": raw.encoding,
            "separator": raw.separator,
            "sheet": raw.sheet,
            "header_line": raw.header_line,
        },
        "codebook_version": codebook.version,
        "accounting": accounting.to_dict(),
        "values_blanked": {
            "total": int(sum(sum(c.values()) for c in cleaner.blanked.values())),
            "by_reason": {reason: int(sum(c.values())) for reason, c in blanked.items()},
            "by_reason_and_question": blanked,
        },
        "free_text_masked": dict(cleaner.masked),
        "columns": {
            "removed_personal": list(raw.removed_columns),
            "unmapped": list(raw.unmapped_columns),
            "questions_without_column": list(raw.missing_questions),
        },
        "thresholds": {
            "completeness_min_share": COMPLETENESS_MIN_SHARE,
            "core_questions": core_question_ids(codebook),
            "required_questions": [q.id for q in codebook.questions.values() if q.required],
            "max_submissions_per_identifier": MAX_SUBMISSIONS_PER_IDENTIFIER,
        },
        "pseudonymisation": {
            "method": "HMAC-SHA256",
            "hex_digits": PSEUDONYM_LENGTH,
            "identifier_order": ["rid", "token", "email", "response_id", "raw_line"],
            "key": "CAE_IMPACT_PSEUDO_KEY or .secrets/pseudonymisation.key (outside the repository)",
        },
        "quarantine_entries": {
            ROW_SET_ASIDE: int((quarantine["action"] == ROW_SET_ASIDE).sum()),
            VALUE_BLANKED: int((quarantine["action"] == VALUE_BLANKED).sum()),
        },
        "rules": [
            {"id": r.id, "title": r.title, "text": r.text, "reasons": list(r.reasons)} for r in CLEANING_RULES
        ],
        "reason_labels": dict(REASON_LABELS),
        "problems": [p.to_dict() for p in problems],
    }


class UnusableCaeError(RuntimeError):
    """A CAE keeps fewer usable respondents than the study's minimum: what depends on it stops."""


def check_usable(result: CleaningResult, study, label: str = "") -> None:
    """Raise :class:`UnusableCaeError` when the CAE keeps fewer respondents than ``min_respondents``.

    The message names the CAE, the count, the minimum and the main reasons rows were set aside
    (English and French), so that the build stops here rather than publish a consortium
    without the CAE.
    """
    minimum = getattr(study, "min_respondents", 1)
    kept = result.accounting.kept
    if kept >= minimum:
        return
    reasons = sorted(((n, r) for r, n in result.accounting.set_aside.items() if n), reverse=True)
    why = "; ".join(f"{n} × {REASON_LABELS.get(r, r)}" for n, r in reasons[:3]) or "aucune ligne de réponse"
    errors = [p.message for p in result.problems if p.severity == "error" and p.code != "nothing_kept"]
    if errors:
        why += " ; " + " ; ".join(errors[:2])
    name = f"{result.cae_id} ({label})" if label else result.cae_id
    raise UnusableCaeError(
        f"CAE {name} unusable: {kept} usable respondent(s) of {result.accounting.raw_rows} raw row(s), "
        f"fewer than the minimum of {minimum} (min_respondents in {getattr(study, 'path', 'the study file')}) "
        f"— CAE NON UTILISABLE : {kept} répondant(s) exploitable(s), minimum {minimum} ; lignes mises "
        f"de côté : {why}. Nothing that depends on this CAE is built (its data, the estimation, the "
        f"consortium report); correct the export, or exclude the CAE with 'exclude_caes' and a reason."
    )


def clean_export(study, cae_id: str, *, codebook=None, key: bytes | None = None) -> CleaningResult:
    """Read and clean the export of one CAE of the study configuration.

    The adapter is chosen from the CAE's ``format`` (with its ``mapping`` for spreadsheets); the
    key defaults to :func:`~cae_impact.privacy.personal_data.load_pseudonymisation_key`. Raises ExportError
    (located, in French) when the export cannot be used at all.
    """
    cae = study.cae(cae_id)
    if codebook is None:
        codebook = load_codebook(study.codebook)
    if key is None:
        key = load_pseudonymisation_key()
    raw = read_export(cae.export, cae.format, mapping=cae.mapping, codebook=codebook)
    result = clean_responses(raw, codebook, cae_id=cae.id, wave=study.wave, key=key)
    check_usable(result, study, cae.label)
    return result


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------

RESPONSES_FILE = "responses.parquet"
QUARANTINE_FILE = "quarantine.csv"
LOG_FILE = "cleaning_log.json"


def write_quarantine_csv(quarantine: pd.DataFrame, path: Path) -> None:
    """Write quarantine.csv: UTF-8 with BOM (Excel), ``,``, every text cell formula-neutralised."""
    frame = quarantine.copy()
    for column in QUARANTINE_COLUMNS[1:]:
        frame[column] = frame[column].map(neutralise_formula, na_action="ignore")
    frame.to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def write_processed(result: CleaningResult, out_dir: str | Path) -> dict[str, Path]:
    """Write responses.parquet, quarantine.csv and cleaning_log.json into ``out_dir``.

    Each file is written under a temporary name in the same folder, then renamed, so a reader
    never sees a half-written file. The log is written last: its presence means the other two
    are complete. Returns the paths written.
    """
    out = Path(out_dir)
    paths = {"responses": out / RESPONSES_FILE, "quarantine": out / QUARANTINE_FILE, "log": out / LOG_FILE}
    atomic_write(paths["responses"], lambda p: result.responses.to_parquet(p, index=False, engine="pyarrow"), private=True)
    atomic_write(paths["quarantine"], lambda p: write_quarantine_csv(result.quarantine, p), private=True)
    text = json.dumps(result.log, ensure_ascii=False, indent=2) + "\n"
    atomic_write(paths["log"], lambda p: p.write_text(text, encoding="utf-8"), private=True)
    return paths


def read_quarantine(path: str | Path) -> pd.DataFrame:
    """Read a quarantine.csv written by :func:`write_processed`."""
    return pd.read_csv(path, encoding="utf-8-sig", dtype="string", keep_default_na=False).astype(
        {"raw_line": "int64"}
    )


# ------------------------------------------------------------------------------------------
# Validation of an export before it is sent (cae-impact validate)
# ------------------------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """Whether an export can be used, and why: the accounting and every problem found."""

    path: Path
    format: str | None
    usable: bool
    accounting: Accounting | None = None
    problems: list[Problem] = field(default_factory=list)
    error: ExportError | None = None
    values_blanked: dict[str, int] = field(default_factory=dict)
    encoding: str | None = None
    separator: str | None = None
    codebook_version: str | None = None

    def format_text(self) -> str:
        """The report in French, for CAE staff."""
        lines = [f"Vérification de l'export : {self.path}"]
        if self.format:
            detail = FORMAT_LABELS.get(self.format, self.format)
            if self.encoding:
                enc = {"utf-8-sig": "UTF-8 avec BOM", "utf-8": "UTF-8", "cp1252": "Windows-1252", "utf-16": "UTF-16"}
                detail += f" — encodage {enc.get(self.encoding, self.encoding)}"
            if self.separator:
                sep = {"\t": "tabulation"}.get(self.separator, f"« {self.separator} »")
                detail += f", séparateur {sep}"
            lines.append(f"Format : {detail}")
        if self.codebook_version:
            lines.append(f"Questionnaire attendu : version {self.codebook_version}")
        if self.error is not None:
            lines += ["", "ERREUR — le fichier ne peut pas être utilisé :", f"  {self.error.located_message()}"]
        if self.accounting is not None:
            lines += ["", "Bilan des lignes"] + [f"  {line}" for line in self.accounting.format_text()]
        if self.values_blanked:
            total = sum(self.values_blanked.values())
            parts = ", ".join(f"{REASON_LABELS.get(r, r)} : {n}" for r, n in self.values_blanked.items())
            lines.append(f"  valeurs effacées : {total} ({parts})")
        if self.problems:
            order = {"error": 0, "warning": 1, "info": 2}
            lines += ["", f"Problèmes relevés ({len(self.problems)})"]
            for problem in sorted(self.problems, key=lambda p: order[p.severity]):
                lines.append(f"  {problem.format_text()}")
        lines += ["", "Verdict : export UTILISABLE" if self.usable else "Verdict : export NON UTILISABLE — corrigez-le et renvoyez-le"]
        return "\n".join(lines) + "\n"


def validate_export(
    path: str | Path,
    format: str | None = None,
    mapping: str | Path | None = None,
    codebook=None,
) -> ValidationReport:
    """Read and clean an export in memory (nothing written) and say whether it can be used.

    ``format`` is recognised from the file when not given. A throwaway key is used for
    pseudonyms, which are not shown. Never raises for a bad file: the ExportError is in the
    report, whose ``usable`` is then False.
    """
    path = Path(path)
    if codebook is None:
        codebook = load_codebook()
    report = ValidationReport(path=path, format=format, usable=False, codebook_version=codebook.version)
    try:
        if format is None:
            format = guess_format(path, mapping)
            report.format = format
        raw = read_export(path, format, mapping=mapping, codebook=codebook)
        report.encoding, report.separator = raw.encoding, raw.separator
        result = clean_responses(raw, codebook, cae_id="validation", wave="validation", key=secrets.token_bytes(32))
    except ExportError as exc:
        report.error = exc
        return report
    report.accounting = result.accounting
    report.problems = result.problems
    report.values_blanked = dict(result.log["values_blanked"]["by_reason"])
    report.usable = result.accounting.kept > 0 and not any(p.severity == "error" for p in result.problems)
    return report
