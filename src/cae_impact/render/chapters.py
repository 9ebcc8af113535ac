"""The report's chapters, built from a target's report table: headings, text, tables, charts.

Each function turns rows of the indicator table (CONTRACTS §5, one report's slice with its
tests adjusted) into HTML fragments through :mod:`cae_impact.render.present`, with the words of
:mod:`cae_impact.render.narrative` and the charts of :mod:`cae_impact.render.charts`. Nothing here computes
an estimate: numbers are read from the table and formatted (:mod:`cae_impact.core.frenchfmt`).
Suppressed cells are shown as « s » and never as values.

Which targets a chart or table shows is decided in one place, :attr:`View.shown_targets`: a
CAE's report shows the CAE and the consortium; the consortium's report names every CAE up to
:data:`MAX_NAMED_CAES` CAEs, and beyond that shows the consortium alone, with the spread of the
published CAE estimates (:func:`cae_spread`, a description of the table's rows, not an estimate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from cae_impact.analysis.indicators import TOTAL
from cae_impact.core.frenchfmt import (
    format_ci,
    format_eur,
    format_int,
    format_number,
    format_pct,
    french_typography,
    is_missing,
)
from cae_impact.render import narrative
from cae_impact.spec.codebook import Codebook
from cae_impact.spec.config import CONSORTIUM, MAX_NAMED_CAES, StudyConfig

SUPPRESSED = "s"
#: what « s » and a band mean, under every table that may show them
SUPPRESSED_LEGEND = ("s : non diffusé (trop peu de répondants, ou secret secondaire) ; « ≥ 70 % », "
                     "« < 20 % » : valeur donnée par tranche (moins de 5 répondants d'un côté)")



@dataclass(frozen=True)
class View:
    """What a chapter needs to know about its report.

    The chapters look rows up by (indicator, target, breakdown) hundreds of times per notebook;
    the table is grouped once on these keys (:attr:`_positions`) and each lookup reuses the group
    instead of filtering the whole table with a boolean mask. ``table`` must not be modified after
    the view is made.
    """

    study: StudyConfig
    codebook: Codebook
    target: str
    table: pd.DataFrame
    #: the target is a CAE where every registered entrepreneur answered (n = N): its figures have
    #: no sampling error; the report shows no interval for it and says why once
    census: bool = False

    @property
    def is_consortium(self) -> bool:
        """True for the consortium's report."""
        return self.target == CONSORTIUM

    @property
    def caes_capped(self) -> bool:
        """True for the consortium's report of a study of more than :data:`MAX_NAMED_CAES` CAEs."""
        return self.is_consortium and len(self.study.caes) > MAX_NAMED_CAES

    @cached_property
    def shown_targets(self) -> list[str]:
        """The targets a chart or table of this report shows, in order (the consortium last).

        A CAE's report: the CAE and the consortium. The consortium's report: every CAE and the
        consortium, or the consortium alone when the CAEs are too many (:attr:`caes_capped`).
        """
        if not self.is_consortium:
            return [self.target, CONSORTIUM]
        return [CONSORTIUM] if self.caes_capped else list(self.study.targets)

    @property
    def compared_caes(self) -> list[str]:
        """The CAEs named in this report's charts and tables (none when capped)."""
        return [t for t in self.shown_targets if t != CONSORTIUM]

    @cached_property
    def labels(self) -> dict[str, str]:
        """French label of every target."""
        return {t: self.study.target_label(t) for t in self.study.targets}

    @property
    def source(self) -> str:
        """Source line of the charts."""
        return f"enquête CAE-IMPACT, vague {self.study.wave}"

    def field(self, target: str | None = None) -> str:
        """Field (« champ ») of a chart or table."""
        t = target or self.target
        if t == CONSORTIUM:
            return "entrepreneurs des CAE du consortium"
        return f"entrepreneurs de la {self.study.target_label(t)}"

    @cached_property
    def _positions(self) -> dict[tuple, np.ndarray]:
        """Row positions of each (indicator_id, target, breakdown), in table order."""
        if self.table.empty:
            return {}
        return self.table.groupby(["indicator_id", "target", "breakdown"], sort=False).indices

    @cached_property
    def _frames(self) -> dict[tuple, pd.DataFrame]:
        return {}

    @cached_property
    def _category_masks(self) -> dict[str, np.ndarray]:
        return {}

    def rows(self, indicator_id: str, target: str | None = None, breakdown: str = TOTAL) -> pd.DataFrame:
        """The rows of an indicator for a target and breakdown (a shared frame: do not modify)."""
        key = (indicator_id, target or self.target, breakdown)
        if key not in self._frames:
            self._frames[key] = self.table.iloc[self._positions.get(key, [])]
        return self._frames[key]

    def _category_positions(self, indicator_id: str, target: str | None, breakdown: str,
                            category: str) -> list[int]:
        matches = self._category_masks.get(category)
        if matches is None:
            matches = (self.table["category"] == category).to_numpy(dtype=bool, na_value=False)
            self._category_masks[category] = matches
        return [p for p in self._positions.get((indicator_id, target or self.target, breakdown), ())
                if matches[p]]

    def row(self, indicator_id: str, target: str | None = None, *, category: str = "",
            breakdown: str = TOTAL) -> pd.Series | None:
        """The first row of an indicator for a target, breakdown and category, or None."""
        hits = self._category_positions(indicator_id, target, breakdown, category)
        return self.table.iloc[hits[0]] if hits else None

    def category_rows(self, indicator_id: str, target: str | None = None, *, category: str = "",
                      breakdown: str = TOTAL) -> list[pd.Series]:
        """Every row of an indicator for a target, breakdown and category, in table order."""
        return [self.table.iloc[p]
                for p in self._category_positions(indicator_id, target, breakdown, category)]

    def select(self, indicator_id: str, targets: Sequence[str] | None = None,
               breakdown: str | None = TOTAL) -> pd.DataFrame:
        """The rows of an indicator for some targets and a breakdown, in table order.

        ``targets`` None means every target, ``breakdown`` None every breakdown.
        """
        parts = [pos for (ind, tgt, b), pos in self._positions.items()
                 if ind == indicator_id and (breakdown is None or b == breakdown)
                 and (targets is None or tgt in targets)]
        return self.table.iloc[np.sort(np.concatenate(parts)) if parts else []]


def fmt_value(row: Mapping, unit: str) -> str:
    """An estimate as printed, its band when coded (« 9 sur 10 ou plus »), « s » when hidden."""
    if bool(row.get("suppressed")):
        return narrative.band_of(row, short=True) or SUPPRESSED
    if is_missing(row.get("estimate")):  # nobody in the base
        return "—"
    return _fmt_number(row["estimate"], unit)


POINT_INTERVAL = "—"
def fmt_interval(row: Mapping, unit: str) -> str:
    """The interval as printed (« [78 % ; 91 %] »), or empty when suppressed.

    An interval reduced to the estimate (a figure the weights are calibrated on, a census) is
    not an interval: :data:`POINT_INTERVAL`, which the table's note explains.
    """
    if bool(row.get("suppressed")) or is_missing(row.get("ci_low")):
        return ""
    if float(row["ci_low"]) == float(row["ci_high"]):
        return POINT_INTERVAL
    kind = {"pct": "pct", "eur": "eur"}.get(unit, "number")
    return format_ci(row["ci_low"], row["ci_high"], kind=kind, decimals=0 if unit != "number" else 1)


def _caution(row: Mapping) -> str:
    return " *" if bool(row.get("flag_caution")) and not bool(row.get("suppressed")) else ""


def _fmt_number(value: float, unit: str, *, plus: bool = False) -> str:
    """A number as the report prints it (``plus``: signed, for a change)."""
    if unit == "pct":
        return format_pct(value, plus=plus)
    if unit == "eur":
        return format_eur(value, plus=plus)
    return format_number(value, 1, plus=plus)


def cae_detail_text(view: View, *, short: bool = False) -> str:
    """Where the figures of each CAE are, when the consortium report does not name its CAEs; ''.

    The long text opens the report (profile chapter), the short one each effect chapter.
    """
    if not view.caes_capped:
        return ""
    n = format_int(len(view.study.caes))
    # The consortium's indicators.xlsx holds every CAE's totals, not its breakdowns
    # (indicators.report_rows).
    where = ("Les résultats de chaque CAE figurent dans son propre rapport ; ceux de toutes les "
             "CAE, hors ventilations par profil, figurent dans le fichier indicators.xlsx (ou "
             "indicators.csv) joint au présent rapport.")
    if short:
        return french_typography(
            f"Les {n} CAE du consortium ne sont pas présentées une à une dans ce chapitre : les "
            "graphiques et tableaux portent sur l'ensemble du consortium et indiquent, pour chaque "
            "indicateur qui s'y prête, l'étendue des résultats entre CAE. " + where)
    return french_typography(
        f"Le consortium compte {n} CAE. Au-delà de {format_int(MAX_NAMED_CAES)} CAE, les "
        "graphiques et tableaux de ce rapport ne les présentent plus une à une, ce qui les "
        "rendrait illisibles : ils portent sur l'ensemble du consortium, et une ligne donne, pour "
        "chaque indicateur qui s'y prête, l'étendue des résultats entre CAE (estimations la plus "
        "faible et la plus forte, et médiane, établies à partir des seules CAE dont l'estimation "
        "est publiée, sans les nommer). Ces écarts mêlent des différences réelles entre CAE et "
        "les aléas de l'échantillonnage, d'autant plus marqués qu'une CAE compte peu de "
        "répondants. " + where)


def census_note(view: View) -> str:
    """The sentence a census CAE's report gives once, capitalised, or ''."""
    if not view.census:
        return ""
    text = narrative.CENSUS_TEXT
    return french_typography(text[0].upper() + text[1:] + ".")
