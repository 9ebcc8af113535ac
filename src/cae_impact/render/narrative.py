"""Short French paragraphs written from the indicator table, for the reports.

Every number in a paragraph comes from the indicator table (CONTRACTS §5): the estimate, its
confidence interval, the unweighted base, the flags. This module computes nothing but the
difference, in points (or euros), between two estimates **as displayed** (rounded), so that the
text never contradicts itself (« 82 % … 85 % … 3 points »).

Rules that an evaluator would sign, enforced here:

* « significativement supérieur(e) / inférieur(e) » is written **only** when the row's
  ``significant`` flag is true (a test corrected upstream by Benjamini-Hochberg); otherwise the
  text says that the difference is not statistically significant, or that the values are close,
  or that the difference was not tested;
* a suppressed row (``suppressed`` true) gives « Résultat non diffusé (secret statistique) »
  and neither its value, nor its interval, nor a difference computed from it; a comparison with a
  suppressed row is left out for the same reason;
* a base under 30 respondents (``caution_base``) or a row with ``flag_caution`` carries
  « à interpréter avec prudence »;
* French grammar: elision and contraction (« d'entrepreneurs », « de l'ensemble »,
  « du consortium », « qu'Ellyx »), singular « point » below 2, no-break spaces
  (:func:`cae_impact.core.frenchfmt.french_typography`).

Expected columns of the frame: ``indicator_id, target, breakdown, group, category, estimate,
ci_low, ci_high, n_unweighted, significant, flag_caution, suppressed`` (``indicator_label``,
``comparison`` used when present). Targets are CAE ids (``cae-3``) and ``consortium``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cae_impact.analysis.disclosure import band_text
from cae_impact.core.frenchfmt import (
    format_ci,
    format_eur,
    format_n,
    format_number,
    format_pct,
    format_points,
    french_typography,
    is_missing,
    round_half_up,
)

CONSORTIUM = "consortium"
SUPPRESSED_TEXT = "Résultat non diffusé (secret statistique)"
CAUTION_TEXT = "à interpréter avec prudence"
UNITS = ("pct", "eur", "number")

_H_ASPIRE = ("handicap", "hausse", "haut", "hauteur", "hasard", "honte", "hiérarchie", "héros")
_CAE_ID = re.compile(r"^cae-(\d+)$")

__all__ = [
    "CAUTION_TEXT",
    "CENSUS_TEXT",
    "CONSORTIUM",
    "SUPPRESSED_TEXT",
    "Support",
    "de",
    "finding_paragraph",
    "indicator_paragraph",
    "que",
    "select_row",
    "target_label",
    "target_phrase",
    "truthy",
]


# --- small language helpers ------------------------------------------------------------------


def _starts_with_vowel(word: str) -> bool:
    """Whether a word takes elision (vowel or mute h), ignoring accents."""
    if not word:
        return False
    base = unicodedata.normalize("NFD", word)[0].lower()
    if base in "aeiouy":
        return True
    if base == "h":
        low = word.lower()
        return not any(low.startswith(h) for h in _H_ASPIRE)
    return False


def de(phrase: str) -> str:
    """Join « de » to a noun phrase with French elision and contraction.

    >>> de("la CAE 3"), de("le consortium"), de("les CAE"), de("l'ensemble du consortium")
    ('de la CAE 3', 'du consortium', 'des CAE', "de l'ensemble du consortium")
    >>> de("entrepreneurs"), de("Coodémarrage 53")
    ("d'entrepreneurs", 'de Coodémarrage 53')
    """
    if phrase.startswith("le "):
        return "du " + phrase[3:]
    if phrase.startswith("les "):
        return "des " + phrase[4:]
    if _starts_with_vowel(phrase):
        return "d'" + phrase
    return "de " + phrase


def que(phrase: str) -> str:
    """Join « que » to a phrase with elision (« qu'Ellyx », « que la CAE 3 »).

    >>> que("la CAE 3"), que("l'ensemble du consortium"), que("Ellyx")
    ('que la CAE 3', "que l'ensemble du consortium", "qu'Ellyx")
    """
    return ("qu'" if _starts_with_vowel(phrase) else "que ") + phrase


def target_label(target: str, labels: Mapping[str, str] | None = None) -> str:
    """Short label of a target for a chart axis: ``cae-3`` → « CAE 3 ».

    ``labels`` (target id → label, e.g. from the study configuration) wins when it has the target.

    >>> target_label("cae-3"), target_label("consortium")
    ('CAE 3', 'Ensemble du consortium')
    """
    if labels and target in labels:
        return labels[target]
    if target == CONSORTIUM:
        return "Ensemble du consortium"
    m = _CAE_ID.match(str(target))
    return f"CAE {m.group(1)}" if m else str(target)


def target_phrase(target: str, labels: Mapping[str, str] | None = None) -> str:
    """Noun phrase with its article for running text: « la CAE 3 », « l'ensemble du consortium ».

    A label starting with « CAE » takes « la »; another label (a CAE's own name) is used bare.
    """
    if target == CONSORTIUM and not (labels and target in labels):
        return "l'ensemble du consortium"
    label = target_label(target, labels)
    if label.startswith(("la ", "le ", "les ", "l'")):
        return label
    if label.startswith("CAE"):
        return "la " + label
    return label


def truthy(value: Any) -> bool | None:
    """Read a boolean flag of the indicator table: True, False, or None when missing.

    Accepts booleans, 0/1 and the strings ``true``/``false`` (as read back from a CSV).
    """
    if is_missing(value):
        return None
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "1", "yes", "vrai", "oui"):
            return True
        if low in ("false", "0", "no", "faux", "non", ""):
            return False
        raise ValueError(f"not a boolean flag: {value!r}")
    return bool(value)


def _same(a: Any, b: Any, blank: tuple[str, ...] = ("", "total")) -> bool:
    """Compare two keys of the table, treating NA, "" (and "total" for groups) as the same."""
    a_blank = is_missing(a) or str(a) in blank
    b_blank = is_missing(b) or str(b) in blank
    if a_blank or b_blank:
        return a_blank and b_blank
    return str(a) == str(b)


def select_row(
    df: pd.DataFrame,
    indicator_id: str,
    target: str,
    *,
    breakdown: str = "total",
    group: str | None = None,
    category: str | None = None,
) -> pd.Series | None:
    """Return the single row of the table for these keys, or None when there is none.

    ``group`` and ``category`` match NA, empty and (for ``group``) ``total`` alike. Several rows
    for the same keys is an error of the table.
    """
    # Positions matching the exact keys (vectorised), then the NA/blank-tolerant keys checked
    # on those few positions only; the row itself is taken once, at the end.
    mask = (df["indicator_id"] == indicator_id) & (df["target"] == target)
    positions = np.flatnonzero(mask.to_numpy(dtype=bool, na_value=False))
    for column, value, blank in (
        ("breakdown", breakdown, ("", "total")),
        ("group", group, ("", "total")),
        ("category", category, ("",)),
    ):
        if column in df.columns and len(positions):
            values = df[column].to_numpy(dtype=object)[positions]
            positions = positions[[_same(v, value, blank) for v in values]]
    if not len(positions):
        return None
    if len(positions) > 1:
        raise ValueError(
            f"{len(positions)} rows for indicator {indicator_id!r}, target {target!r}, "
            f"breakdown {breakdown!r}, group {group!r}, category {category!r}"
        )
    return df.iloc[positions[0]]


# --- formatting by unit ----------------------------------------------------------------------

_NOUNS = {
    "pct": ("Cette part", "supérieure", "inférieure", "celle"),
    "eur": ("Ce montant", "supérieur", "inférieur", "celui"),
    "number": ("Cette valeur", "supérieure", "inférieure", "celle"),
}


def _fmt(value: Any, unit: str, decimals: int) -> str:
    if unit == "pct":
        return format_pct(value, decimals)
    if unit == "eur":
        return format_eur(value, decimals)
    return format_number(value, decimals)


def _displayed(value: Any, unit: str, decimals: int) -> float:
    """The value as the reader sees it (percent points for shares), rounded like the display."""
    scaled = float(value) * 100 if unit == "pct" else float(value)
    return float(round_half_up(scaled, decimals))


def _fmt_diff(diff: float, unit: str, decimals: int) -> str:
    if unit == "pct":
        return format_points(abs(diff), decimals)
    if unit == "eur":
        return format_eur(abs(diff), decimals)
    return format_number(abs(diff), decimals)


def band_of(row, *, short: bool = False) -> str:
    """The band of a coded row (« 9 sur 10 ou plus », ``short``: « ≥ 90 % »), '' otherwise."""
    if not bool(truthy(row.get("suppressed"))):
        return ""
    low, high = row.get("band_low"), row.get("band_high")
    return band_text(None if is_missing(low) else float(low),
                     None if is_missing(high) else float(high), short=short)


def _is_suppressed(row: pd.Series) -> bool:
    return bool(truthy(row.get("suppressed")))


def _n(row: pd.Series) -> Any:
    return row.get("n_unweighted")


# --- paragraphs ------------------------------------------------------------------------------


def _lookup_comparison(
    df: pd.DataFrame,
    row: pd.Series,
    *,
    breakdown: str,
    group: str | None,
    category: str | None,
    reference_target: str,
) -> tuple[str, str, pd.Series] | None:
    """Find the row a row is compared with: (kind, key, row) with kind ``target`` or ``group``.

    The row's ``comparison`` names a target (``consortium``) or, within a breakdown, another
    group (``M``). When it is missing, the comparison is with ``reference_target``.
    """
    target = str(row["target"])
    comp = row.get("comparison") if "comparison" in row.index else None
    indicator_id = str(row["indicator_id"])
    if is_missing(comp) or str(comp) == "":
        if target == reference_target:
            return None
        other = select_row(
            df, indicator_id, reference_target, breakdown=breakdown, group=group, category=category
        )
        return ("target", reference_target, other) if other is not None else None
    comp = str(comp)
    if comp == target:
        return None
    other = select_row(df, indicator_id, comp, breakdown=breakdown, group=group, category=category)
    if other is not None:
        return ("target", comp, other)
    if breakdown != "total":
        other = select_row(
            df, indicator_id, target, breakdown=breakdown, group=comp, category=category
        )
        if other is not None:
            return ("group", comp, other)
    return None


def _comparison_sentence(
    row: pd.Series,
    other: pd.Series,
    other_phrase: str,
    *,
    unit: str,
    decimals: int,
) -> str:
    """The sentence comparing a row with another, worded by its ``significant`` flag."""
    mine = _displayed(row["estimate"], unit, decimals)
    theirs = _displayed(other["estimate"], unit, decimals)
    diff = mine - theirs
    other_value = _fmt(other["estimate"], unit, decimals)
    significant = truthy(row.get("significant"))
    noun, sup, inf, pron = _NOUNS[unit]
    if significant:
        direction = sup if float(row["estimate"]) > float(other["estimate"]) else inf
        if diff == 0:
            gap = "un écart inférieur à l'unité d'affichage"
            if unit == "pct":
                gap = "un écart inférieur à 1 point" if decimals == 0 else "un écart très faible"
        else:
            gap = "un écart de " + _fmt_diff(diff, unit, decimals)
        return (
            f"{noun} est significativement {direction} à {pron} {de(other_phrase)} "
            f"({other_value}), avec {gap}."
        )
    if significant is None:
        status = "l'écart n'a pas fait l'objet d'un test statistique"
    else:
        status = "l'écart n'est pas statistiquement significatif"
    if diff == 0:
        return f"Le résultat est proche de celui {de(other_phrase)} ({other_value}) ; {status}."
    more = "de plus" if diff > 0 else "de moins"
    return f"C'est {_fmt_diff(diff, unit, decimals)} {more} {que(other_phrase)} ({other_value}) ; {status}."


CENSUS_TEXT = ("tous les entrepreneurs inscrits ont répondu : ces chiffres n'ont pas de marge "
               "d'erreur d'échantillonnage")
CALIBRATED_TEXT = ("part connue par les registres des CAE, sur lesquels les poids sont calés : "
                   "elle n'a pas de marge d'erreur d'échantillonnage")


def _is_calibrated(row: Mapping[str, Any], unit: str) -> bool:
    """True for a share strictly between 0 and 100 % with no sampling variance.

    The weights are calibrated on it (the share of women: post-stratification on sex), so it is
    the registers' figure. A share of 0 or 100 % also has no variance, but for another reason:
    it keeps its interval.
    """
    if unit != "pct" or is_missing(row.get("se")) or is_missing(row.get("estimate")):
        return False
    est, se = float(row["estimate"]), float(row["se"])
    return 0.0 < est < 1.0 and se <= 1e-9


def indicator_paragraph(
    df: pd.DataFrame,
    indicator_id: str,
    target: str,
    *,
    statement: str | None = None,
    label: str | None = None,
    population: str = "entrepreneurs",
    breakdown: str = "total",
    group: str | None = None,
    category: str | None = None,
    unit: str = "pct",
    decimals: int = 0,
    confidence_level: float = 0.95,
    caution_base: int = 30,
    reference_target: str = CONSORTIUM,
    target_labels: Mapping[str, str] | None = None,
    phrases: Mapping[str, str] | None = None,
    statistic: str = "mean",
    census: bool = False,
) -> str:
    """Write the French paragraph for one estimate of the indicator table.

    Meaning of the arguments:

    df
        Indicator table (CONTRACTS §5); needs ``indicator_id, target, estimate, ci_low,
        ci_high, n_unweighted, suppressed`` and uses ``breakdown, group, category, significant,
        flag_caution, comparison, indicator_label`` when present.
    indicator_id, target, breakdown, group, category
        The keys of the row to describe (``group``/``category`` None for a total / a share).
    statement
        Verb phrase completing « 82 % des entrepreneurs de la CAE 3 (n = 74) … », e.g.
        « jugent la CAE décisive dans l'activation de leur projet ». For ``eur``/``number`` it
        completes « En moyenne, les entrepreneurs de la CAE 3 (n = 74) … », e.g. « déclarent un
        revenu mensuel net de ». Without it, the paragraph opens with the indicator's label.
    label
        Label used without ``statement``; defaults to the row's ``indicator_label``.
    population
        Plural noun of the people counted (« entrepreneurs », « femmes entrepreneures »).
    unit
        ``pct`` (proportions, differences in points), ``eur`` or ``number`` (means).
    reference_target
        Target compared with when the row's ``comparison`` is empty (default the consortium).
    target_labels, phrases
        Target id → short label (« CAE 3 »); target or group key → noun phrase with its article
        (« la CAE 3 », « les hommes »), for running text.
    census
        The target is a CAE where every registered entrepreneur answered: its figures have no
        sampling error, so no interval is given (the report says why once, :data:`CENSUS_TEXT`),
        nor the calibration sentence (a census is not a calibration).

    Returns the paragraph, with French typography applied. A suppressed row gives only
    « Résultat non diffusé (secret statistique) pour les entrepreneurs de la CAE 3. »
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}: expected one of {UNITS}")
    row = select_row(df, indicator_id, target, breakdown=breakdown, group=group, category=category)
    if row is None:
        raise KeyError(
            f"no row for indicator {indicator_id!r}, target {target!r}, breakdown {breakdown!r}, "
            f"group {group!r}, category {category!r}"
        )
    phrases = dict(phrases or {})

    def phrase_of(key: str) -> str:
        return phrases.get(key) or target_phrase(key, target_labels)

    who = f"{population} {de(phrase_of(target))}"
    band = band_of(row)
    if band:
        name = label or (None if is_missing(row.get("indicator_label")) else row.get("indicator_label"))
        n_band = _n(row)
        n_part = f" ({format_n(n_band)})" if not is_missing(n_band) else ""
        lead = f"{name} : " if name else ""
        return french_typography(
            f"{lead}{band} des {who}{n_part}. Le chiffre exact n'est pas diffusé : il "
            "porterait sur moins de 5 personnes.")
    if _is_suppressed(row):
        return french_typography(f"{SUPPRESSED_TEXT} pour les {who}.")

    n = _n(row)
    value = _fmt(row["estimate"], unit, decimals)
    level = format_pct(confidence_level)
    has_ci = not (census or is_missing(row.get("ci_low")) or is_missing(row.get("ci_high")))
    ci = format_ci(row.get("ci_low"), row.get("ci_high"), decimals, style="prose", kind=unit)
    calibrated = has_ci and _is_calibrated(row, unit)
    if has_ci and not calibrated and float(row["ci_low"]) == float(row["ci_high"]):
        has_ci = False  # « de 1 à 1 » is no interval (a mean whose answers are all equal)
    n_text = format_n(n) if not is_missing(n) else None
    if label is None:
        label = row.get("indicator_label") if "indicator_label" in row.index else None
        label = None if is_missing(label) else str(label)

    sentences: list[str] = []
    paren_n = f" ({n_text})" if n_text else ""
    if statement:
        ci_text = f" (intervalle de confiance à {level} : {ci})" if has_ci else ""
        if calibrated:
            ci_text = f" ({CALIBRATED_TEXT})"
        if unit == "pct":
            sentences.append(f"{value} des {who}{paren_n} {statement}{ci_text}.")
        else:
            how = "Pour la moitié d'entre eux au moins, les" if statistic == "median" else "En moyenne, les"
            sentences.append(f"{how} {who}{paren_n} {statement} {value}{ci_text}.")
    else:
        head = label or indicator_id
        ci_text = f", avec un intervalle de confiance à {level} de {ci}" if has_ci else ""
        if calibrated:
            ci_text = f" ; {CALIBRATED_TEXT}"
        if unit == "pct":
            sentences.append(f"{head} : {value} des {who}{paren_n}{ci_text}.")
        else:
            how = "" if statistic == "median" else " en moyenne"
            sentences.append(f"{head} : {value}{how} pour les {who}{paren_n}{ci_text}.")

    found = _lookup_comparison(
        df,
        row,
        breakdown=breakdown,
        group=group,
        category=category,
        reference_target=reference_target,
    )
    if found is not None:
        kind, key, other = found
        if not _is_suppressed(other) and not is_missing(other.get("estimate")):
            if kind == "target":
                other_phrase = phrase_of(key)
            else:
                other_phrase = phrases.get(key) or f"le groupe « {key} »"
            sentences.append(
                _comparison_sentence(row, other, other_phrase, unit=unit, decimals=decimals)
            )

    small = not is_missing(n) and float(n) < caution_base
    if small:
        sentences.append(f"Base inférieure à {caution_base} répondants : résultat {CAUTION_TEXT}.")
    elif truthy(row.get("flag_caution")):
        sentences.append(f"Résultat {CAUTION_TEXT} (précision limitée).")
    return french_typography(" ".join(sentences))


@dataclass(frozen=True)
class Support:
    """One supporting number of a finding: which row, and how to say it.

    ``statement`` is the verb phrase of :func:`indicator_paragraph`; ``label`` names the number
    when it is suppressed or has no statement; ``published`` is the consortium figure of the
    national CAE-IMPACT report (a proportion, or a value in ``unit``), quoted for memory.
    """

    indicator_id: str
    statement: str | None = None
    label: str | None = None
    category: str | None = None
    breakdown: str = "total"
    group: str | None = None
    unit: str = "pct"
    population: str = "entrepreneurs"
    published: float | None = None


def finding_paragraph(
    finding: Any,
    df: pd.DataFrame,
    supports: Sequence[Support],
    target: str,
    *,
    decimals: int = 0,
    confidence_level: float = 0.95,
    caution_base: int = 30,
    reference_target: str = CONSORTIUM,
    target_labels: Mapping[str, str] | None = None,
    phrases: Mapping[str, str] | None = None,
    published_source: str = "le rapport national de l'expérimentation CAE-IMPACT",
    census: bool = False,
) -> str:
    """Write the paragraph of one finding (*enseignement*) with its supporting numbers.

    ``finding`` is the finding's French text or an object with a ``text`` attribute (a codebook
    ``Finding``). The paragraph quotes the finding as a finding of the national experiment, then
    gives each supporting number with :func:`indicator_paragraph` (same rules: significance only
    when flagged, suppressed numbers never shown, caution on small bases). It does not claim that
    the target's numbers confirm the finding: the reader sees the numbers and their precision.
    """
    text = getattr(finding, "text", finding)
    text = str(text).strip().rstrip(".")
    phrases_d = dict(phrases or {})
    where = phrases_d.get(target) or target_phrase(target, target_labels)
    parts = [
        f"Enseignement de l'expérimentation nationale : « {text} ».",
        f"Les résultats {de(where)} qui s'y rapportent sont les suivants.",
    ]
    for sup in supports:
        row = select_row(
            df,
            sup.indicator_id,
            target,
            breakdown=sup.breakdown,
            group=sup.group,
            category=sup.category,
        )
        if row is None:
            continue
        name = sup.label
        if (
            name is None
            and "indicator_label" in row.index
            and not is_missing(row["indicator_label"])
        ):
            name = str(row["indicator_label"])
        if _is_suppressed(row) and band_of(row):
            who = f"{sup.population} {de(where)}"
            parts.append(f"{name + ' : ' if name else ''}{band_of(row)} des {who}.")
            continue
        if _is_suppressed(row):
            who = f"{sup.population} {de(where)}"
            if name:
                parts.append(
                    f"{name} : résultat non diffusé (secret statistique) pour les {who}."
                )
            else:
                parts.append(f"{SUPPRESSED_TEXT} pour les {who}.")
            continue
        parts.append(
            indicator_paragraph(
                df,
                sup.indicator_id,
                target,
                statement=sup.statement,
                label=name,
                population=sup.population,
                breakdown=sup.breakdown,
                group=sup.group,
                category=sup.category,
                unit=sup.unit,
                decimals=decimals,
                confidence_level=confidence_level,
                caution_base=caution_base,
                reference_target=reference_target,
                target_labels=target_labels,
                phrases=phrases,
                census=census,
            )
        )
        if sup.published is not None:
            parts.append(
                f"Pour mémoire, {published_source} indiquait "
                f"{_fmt(sup.published, sup.unit, decimals)} pour l'ensemble des CAE étudiées."
            )
    if len(parts) == 2:
        parts[1] = f"Aucun résultat {de(where)} ne s'y rapporte dans ce rapport."
    return french_typography(" ".join(parts))
