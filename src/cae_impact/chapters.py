"""The report's chapters, built from a target's report table: headings, text, tables, charts.

Each function turns rows of the indicator table (CONTRACTS §5, one report's slice with its
tests adjusted) into HTML fragments through :mod:`cae_impact.present`, with the words of
:mod:`cae_impact.narrative` and the charts of :mod:`cae_impact.charts`. Nothing here computes
an estimate: numbers are read from the table and formatted (:mod:`cae_impact.frenchfmt`).
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

from . import charts, narrative, present
from .codebook import Codebook, Domain, Finding, Indicator
from .config import CONSORTIUM, MAX_NAMED_CAES, StudyConfig
from .frenchfmt import (
    format_ci,
    format_eur,
    format_int,
    format_number,
    format_pct,
    french_typography,
    is_missing,
)
from .indicators import TOTAL

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
#: why a CAE's verdict against the consortium can differ between its report and the consortium's
FAMILY_NOTE = ("Écart significatif : test t de Wald de chaque CAE contre le reste du consortium, "
               "corrigé (Benjamini-Hochberg) avec les tests de toutes les CAE de ce rapport. Le "
               "rapport d'une CAE corrige ce même écart avec ses propres tests (et le mesure "
               "contre les chiffres publiés du consortium quand il y en a) : le verdict peut y "
               "être différent.")


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


def cae_spread(view: View, indicator_id: str, *, category: str = "", unit: str = "pct",
               lead: str = "Entre CAE", plus: bool = False) -> str:
    """One line on the spread of the CAEs' published estimates, naming no CAE; '' if none.

    « Entre CAE (152 CAE dont l'estimation est publiée) : de 41 % à 93 %, médiane 72 %. »
    Only the CAEs' ``total`` rows of ``category`` that are published (not suppressed, with an
    estimate) count, so nothing hidden in a CAE's report is used; fewer than two gives ''.
    """
    caes = set(view.study.cae_ids)
    rows = view.select(indicator_id, caes)
    if rows.empty:
        return ""
    hidden = rows["suppressed"].map(lambda v: is_missing(v) or bool(v)).astype(bool)
    published = rows[(rows["category"] == category) & ~hidden & rows["estimate"].notna()]
    values = published["estimate"].to_numpy(dtype=float)
    if len(values) < 2:
        return ""
    low, high, mid = (_fmt_number(v, unit, plus=plus)
                      for v in (values.min(), values.max(), float(np.median(values))))
    return french_typography(
        f"{lead} ({format_int(len(values))} CAE dont l'estimation est publiée) : "
        f"de {low} à {high}, médiane {mid}.")


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


def domain_intro(view: View, domain: Domain, findings: list[Finding]) -> str:
    """Chapter heading, description and the published findings the domain supports."""
    parts = [present.heading_html(f"{domain.number}. {domain.title}", 1, anchor=f"domaine-{domain.number}")]
    parts.append(present.paragraph_html(domain.description))
    detail = cae_detail_text(view, short=True)
    if detail:
        parts.append(present.paragraph_html(detail, "note"))
    if findings:
        items = "".join(f"<li>{present.esc(f.text)}</li>" for f in findings)
        parts.append(
            '<aside class="box"><p class="box-title">Enseignements du rapport national éclairés par ce chapitre</p>'
            f"<ul>{items}</ul></aside>"
        )
    return "".join(parts)


NOT_TESTED_NOTE = ("— : écart non testé (résultat non diffusé ; évolution avant / maintenant, qui "
                   "a son propre test ; "
                   "chiffre sur lequel les poids sont calés ; part de 0 % ou de 100 %, dont "
                   "l'échantillon ne permet pas d'estimer la variance)")


def consortium_verdict(row: Mapping) -> str:
    """« oui » / « non » for the test of a CAE against the consortium on this row, else « — ».

    Only that test: a « before / now » row carries its own (paired) test, which answers another
    question (did the figure change?) and is not shown in a column about the consortium.
    """
    if str(row.get("comparison") or "") != CONSORTIUM:
        return "—"
    sig = row.get("significant")
    return ("oui" if bool(sig) else "non") if not is_missing(sig) else "—"


def census_note(view: View) -> str:
    """The sentence a census CAE's report gives once, capitalised, or ''."""
    if not view.census:
        return ""
    text = narrative.CENSUS_TEXT
    return french_typography(text[0].upper() + text[1:] + ".")


def key_figures_table(view: View, indicators: list[Indicator]) -> str:
    """Summary table of the chapter: each indicator's value for the target and the consortium."""
    rows = []
    for ind in indicators:
        if ind.kind in ("distribution",):
            continue
        category = "difference" if ind.kind == "paired_difference" else ""
        row = view.row(ind.id, category=category)
        if row is None:
            continue
        unit = row["unit"]
        line = {"Indicateur": ind.label, view.labels[view.target]: fmt_value(row, unit) + _caution(row),
                "n": format_int(row["n_unweighted"])}
        if not view.is_consortium:
            c = view.row(ind.id, CONSORTIUM, category=category)
            line["Consortium"] = fmt_value(c, unit) if c is not None else "—"
            line["Écart significatif ?"] = consortium_verdict(row)
        rows.append(line)
    if not rows:
        return ""
    frame = pd.DataFrame(rows)
    note = (SUPPRESSED_LEGEND + " ; * : base inférieure à 30 répondants, "
            "à interpréter avec prudence.")
    if not view.is_consortium:
        note += (f" Écart significatif : test t de Wald de la CAE contre {_against(view)}, au "
                 f"seuil de 5 % après correction de Benjamini-Hochberg ; {NOT_TESTED_NOTE}.")
    numeric = [c for c in frame.columns if c not in ("Indicateur", "Écart significatif ?")]
    return present.table_html(frame, caption=f"Chiffres clés — {view.labels[view.target]}",
                              note=note, numeric_columns=numeric)


def _against(view: View) -> str:
    """What a CAE is tested against: the rest of the consortium, or its published figures."""
    return ("les chiffres publiés du consortium" if view.study.consortium_reference is not None
            else "le reste du consortium")


def indicator_text(view: View, ind: Indicator) -> str:
    """The paragraph(s) of one indicator (numbers read from the table, wording by the tests)."""
    if ind.kind == "distribution":
        return ""
    own = view.rows(ind.id)
    unit = own["unit"].iloc[0] if len(own) else "pct"
    cae_labels = {t: lab for t, lab in view.labels.items() if t != CONSORTIUM}
    kw = dict(target_labels=cae_labels, caution_base=view.study.report.caution_base,
              confidence_level=view.study.report.confidence_level, census=view.census)
    paragraphs = []
    # The paragraph reads only this indicator's rows: pass them rather than the whole table.
    rows = view.select(ind.id, breakdown=None)
    if ind.kind == "paired_difference":
        paragraphs.append(narrative.indicator_paragraph(rows, ind.id, view.target, category="difference", unit=unit, **kw))
    else:
        paragraphs.append(narrative.indicator_paragraph(
            rows, ind.id, view.target, unit=unit, statistic="median" if ind.kind == "median" else "mean", **kw))
    if view.is_consortium and ind.published is not None and ind.published.text:
        paragraphs.append(f"Pour mémoire, rapport national CAE-IMPACT (7 CAE, 2019-2020) : {ind.published.text}.")
    return "".join(present.paragraph_html(p) for p in paragraphs)


def breakdown_table(view: View, ind: Indicator) -> str:
    """One table of the indicator by every breakdown group, with the group test."""
    if ind.kind in ("distribution",) or not ind.breakdowns:
        return ""
    category = "difference" if ind.kind == "paired_difference" else ""
    lines = []
    tests = []
    for b in ind.breakdowns:
        rows = view.category_rows(ind.id, breakdown=b, category=category)
        if not rows:
            continue
        for row in rows:
            unit = row["unit"]
            line = {
                "Caractéristique": _breakdown_name(view, b),
                "Groupe": row["group_label"],
                "Valeur": fmt_value(row, unit) + _caution(row),
                "Intervalle de confiance à 95 %": fmt_interval(row, unit),
                "n": format_int(row["n_unweighted"]),
            }
            if view.census:  # no sampling error: no interval (the note says why)
                del line["Intervalle de confiance à 95 %"]
            lines.append(line)
        first = rows[0]
        if not is_missing(first.get("p_adjusted")):
            verdict = ("écarts significatifs" if bool(first.get("significant"))
                       else "écarts non significatifs")
            tests.append(f"{_breakdown_name(view, b)} : {verdict}")
    if not lines:
        return ""
    frame = pd.DataFrame(lines)
    note = SUPPRESSED_LEGEND + " ; * : base < 30, à interpréter avec prudence."
    if view.census:
        note += " " + census_note(view) + " Pas d'intervalle de confiance ni de test entre groupes."
    elif any(ln.get("Intervalle de confiance à 95 %") == POINT_INTERVAL for ln in lines):
        note += (f" {POINT_INTERVAL} : pas de marge d'erreur d'échantillonnage (chiffre connu par "
                 "les registres, sur lesquels les poids sont calés).")
    if tests:
        note += (" Test d'indépendance de Rao-Scott entre groupes, au seuil de 5 % après correction de "
                 "Benjamini-Hochberg : " + " ; ".join(tests) + ".")
    return present.table_html(frame, caption=f"{ind.label} — selon le profil ({view.labels[view.target]})",
                              note=note, numeric_columns=["Valeur", "n"])


_BREAKDOWN_NAMES = {"sex": "Sexe", "diploma": "Diplôme", "prior_status": "Situation avant la CAE",
                    "seniority": "Ancienneté dans la CAE", "sector": "Secteur", "age_band": "Âge",
                    "contract_stage": "Statut dans la CAE"}


def _breakdown_name(view: View, b: str) -> str:
    return _BREAKDOWN_NAMES.get(b, b)


def indicator_chart(view: View, ind: Indicator) -> str:
    """The chart of one indicator, as the national report draws it; '' when none applies."""
    common = dict(source=view.source, synthetic=view.study.synthetic,
                  caution_base=view.study.report.caution_base)
    note = None
    if ind.kind == "distribution":
        scale = view.codebook.scale_of(ind.rule["question"])
        # The codebook lists an ordered scale in questionnaire order, the most favourable answer
        # first (« Oui, tout à fait », « Fréquemment »); the diverging chart wants the least
        # favourable first: drawn on the left, and first in its legend.
        cats = charts.unfavourable_first([c.code for c in scale.choices if not c.missing])
        missing = [c.code for c in scale.choices if c.missing]
        labels = {c.code: c.label for c in scale.choices}
        targets = view.shown_targets
        data = view.select(ind.id, targets)
        if data.empty:
            return ""
        if scale.ordered:
            # Agreement and frequency scales diverge around their middle; other ordered scales
            # (age bands, diplomas, skills) are read left to right as a stacked bar.
            question_type = view.codebook.question(ind.rule["question"]).type
            if question_type not in ("likert", "frequency"):
                return distribution_table(view, ind)
            res = charts.diverging_likert(
                data, categories=cats, labels=labels, missing=missing, indicator_id=ind.id,
                order=targets, bar_labels=view.labels, title=ind.label, field=view.field(), **common)
        else:
            return distribution_table(view, ind)
    elif ind.kind == "paired_difference":
        targets = view.shown_targets
        data = view.select(ind.id, targets)
        unit = data["unit"].iloc[0] if len(data) else "eur"
        res = charts.before_after(data, indicator_id=ind.id, order=targets, bar_labels=view.labels,
                                  title=ind.label, field=view.field(), unit=unit, **common)
        if view.caes_capped:
            note = cae_spread(view, ind.id, category="difference", unit=unit,
                              lead="Évolution selon la CAE", plus=True) or None
    elif ind.kind in ("share", "any_of", "mean"):
        if not view.is_consortium:
            return ""
        targets = view.shown_targets
        data = view.select(ind.id, targets)
        data = data[data["category"] == ""]
        unit = data["unit"].iloc[0] if len(data) else "pct"
        if not view.compared_caes:
            # One dot for the consortium would repeat the paragraph above it: the spread across
            # CAEs takes the chart's place.
            spread = cae_spread(view, ind.id, unit=unit)
            return present.paragraph_html(spread) if spread else ""
        res = charts.dot_interval(data, indicator_id=ind.id, order=targets, bar_labels=view.labels,
                                  title=ind.label, field=view.field(), unit=unit,
                                  confidence_level=view.study.report.confidence_level, **common)
        note = FAMILY_NOTE
    else:
        return ""
    fig, alt = res
    return present.figure_html(fig, alt=alt, caption=ind.label, note=note)


def distribution_table(view: View, ind: Indicator) -> str:
    """A categorical distribution as a table (target and, for a CAE, the consortium)."""
    scale = view.codebook.scale_of(ind.rule["question"])
    targets = view.shown_targets
    lines = []
    for choice in scale.choices:
        line = {"Réponse": choice.label}
        for tgt in targets:
            r = view.row(ind.id, tgt, category=choice.code)
            line[view.labels[tgt]] = fmt_value(r, "pct") + _caution(r) if r is not None else "—"
        lines.append(line)
    n_line = {"Réponse": "Répondants (n)"}
    for tgt in targets:
        r = view.rows(ind.id, tgt)
        n_line[view.labels[tgt]] = format_int(r["n_unweighted"].max()) if len(r) else "—"
    lines.append(n_line)
    return present.table_html(pd.DataFrame(lines), caption=ind.label,
                              note=f"Champ : {view.field()}. Parts pondérées. {SUPPRESSED_LEGEND}.",
                              numeric_columns=[view.labels[t] for t in targets])


def findings_section(view: View, findings: list[Finding]) -> str:
    """« Ce que disent ces résultats » : each finding with the numbers of this report."""
    if not findings:
        return ""
    parts = [present.heading_html("Ce que disent ces résultats", 2)]
    for f in findings:
        supports = []
        for ind_id in f.indicator_ids:
            try:
                ind = view.codebook.indicator(ind_id)
            except KeyError:
                continue
            if ind.kind in ("distribution",):
                continue
            row = view.row(ind.id, category="difference" if ind.kind == "paired_difference" else "")
            if row is None:
                continue
            supports.append(f"{ind.label} : {fmt_value(row, row['unit'])}" + (
                f" (n = {format_int(row['n_unweighted'])})"
                if not bool(row["suppressed"]) or narrative.band_of(row) else " (non diffusé)"))
        items = "".join(f"<li>{present.esc(s)}</li>" for s in supports)
        parts.append(f'<aside class="box"><p class="box-title">« {present.esc(f.text)} »</p><ul>{items}</ul></aside>')
    return "".join(parts)


def _total_row(view: View, ind: Indicator, target: str) -> Mapping | None:
    return view.row(ind.id, target, category="difference" if ind.kind == "paired_difference" else "")


def essentials_section(view: View, findings: list[Finding]) -> str:
    """« L'essentiel » : the national report's findings, each with this report's key numbers.

    For a CAE, each indicator of a finding is given for the CAE and for the consortium; for the
    consortium, the consortium's value. Numbers are read from the report table; suppressed cells
    are shown as « s ».
    """
    parts = [present.heading_html("L'essentiel", 1, anchor="essentiel")]
    who = "des CAE du consortium" if view.is_consortium else f"de la {view.labels[view.target]}"
    parts.append(present.paragraph_html(
        "Le rapport national CAE-IMPACT a dégagé six enseignements. Pour chacun, les chiffres clés "
        f"des entrepreneurs {who}"
        + ("" if view.is_consortium else ", comparés à l'ensemble du consortium")
        + ", issus de l'enquête de la vague " + view.study.wave + "."))
    for i, f in enumerate(findings, 1):
        lines = []
        for ind_id in f.indicator_ids:
            try:
                ind = view.codebook.indicator(ind_id)
            except KeyError:
                continue
            if ind.kind == "distribution":
                continue
            row = _total_row(view, ind, view.target)
            if row is None:
                continue
            unit = row["unit"]
            line = {"Indicateur": ind.label, view.labels[view.target]: fmt_value(row, unit) + _caution(row)}
            if not view.is_consortium:
                c = _total_row(view, ind, CONSORTIUM)
                line["Consortium"] = fmt_value(c, unit) if c is not None else "—"
                line["Écart significatif ?"] = consortium_verdict(row)
            lines.append(line)
        parts.append('<section class="finding">' + present.heading_html(f"{i}. {f.text}", 2))
        if lines:
            frame = pd.DataFrame(lines)
            numeric = [c for c in frame.columns if c not in ("Indicateur", "Écart significatif ?")]
            parts.append(present.table_html(frame, numeric_columns=numeric, css_class="data essentials"))
        else:
            parts.append(present.paragraph_html("Pas d'indicateur publié pour cet enseignement."))
        parts.append("</section>")
    note = (SUPPRESSED_LEGEND + " ; * : base inférieure à "
            f"{view.study.report.caution_base} répondants, à interpréter avec prudence.")
    if not view.is_consortium:
        note += (f" Écart significatif : test t de Wald de la CAE contre {_against(view)}, au "
                 f"seuil de 5 % après correction de Benjamini-Hochberg ; {NOT_TESTED_NOTE}.")
    parts.append(present.paragraph_html(note, "note"))
    return "".join(parts)
