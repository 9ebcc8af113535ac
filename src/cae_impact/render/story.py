"""The report as its readers read it: « L’essentiel », « La CAE en bref », the chapters.

Every number comes from the target's report table (CONTRACTS §5) through :class:`Figure`;
nothing is estimated here. What this module decides is what to say first and how:

* a chapter leads with what stands out — a difference with the consortium that the corrected
  test supports (``significant``), then a change since the entry in the CAE, then a difference
  between groups of entrepreneurs — and sums up the rest in one sentence;
* the words « nettement », « écart net » are used only for differences the test supports
  (« significatif » is explained once, in words, in « La CAE en bref »); the method's terms stay
  in the method annex;
* sentences vary with what they say (:class:`Writer` rotates the wordings of a same situation,
  so that no wording comes back more than a few times in a report);
* every chart and table of the body has its « Lecture », « Champ » and « Source » lines, and the
  base (number of respondents) of every percentage is printed beside it or under it.

The full tables (every indicator by every breakdown, with standard errors, tests and adjusted
p-values, and the reason of every suppression) are not in the body: they are in the executed
notebooks (evidence cells, :func:`evidence_frame`) and in ``indicators.xlsx``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from cae_impact.core.frenchfmt import (
    format_eur,
    format_int,
    format_number,
    format_pct,
    french_typography,
    is_missing,
)
from cae_impact.render import charts, present
from cae_impact.spec.codebook import Domain, Finding, Indicator
from cae_impact.spec.config import CONSORTIUM

from .chapters import View, cae_detail_text, fmt_value
from .narrative import band_of, de, truthy

#: a share within this many points of the comparison, without a significant test, is « proche »
CLOSE_POINTS = 3.0
#: at most this many group differences are told in a chapter
MAX_GROUP_SENTENCES = 2
#: at most this many key figures in a chapter
MAX_KEY_FIGURES = 4

NOTEBOOKS_POINTER = ("Les tableaux détaillés (chaque indicateur selon le profil des entrepreneurs, "
                     "avec marges d’erreur et tests) sont dans le fichier indicators.xlsx joint au "
                     "rapport et dans les carnets d’analyse.")

_GROUP_NOUNS = {"Une femme": "les femmes", "Un homme": "les hommes"}
_BREAKDOWN_NAMES = {"sex": "le sexe", "diploma": "le diplôme", "prior_status": "la situation avant la CAE",
                    "seniority": "l’ancienneté dans la CAE", "sector": "le secteur", "age_band": "l’âge",
                    "contract_stage": "le statut dans la CAE"}


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """« 1 indicateur », « 3 indicateurs » (``plural_form`` when the plural is not singular + s)."""
    return f"{format_int(n)} {singular if n < 2 else (plural_form or singular + 's')}"


def cap(text: str) -> str:
    """The text with its first letter in upper case."""
    return text[:1].upper() + text[1:] if text else text


def _unit_word(ind: Indicator) -> str:
    """« mois » for an indicator labelled « … (en mois) », '' otherwise."""
    label = ind.label.rstrip()
    if label.endswith(")") and "(en " in label:
        word = label[label.rindex("(en ") + 4:-1].strip()
        return "" if word.startswith("euro") else word
    return ""


def fmt_number(value: float, unit: str, ind: Indicator | None = None, *, plus: bool = False) -> str:
    """A value as the text prints it: « 62 % », « 1 472 € », « 4,0 mois »."""
    if unit == "pct":
        return format_pct(value, plus=plus)
    if unit == "eur":
        return format_eur(value, plus=plus)
    word = _unit_word(ind) if ind is not None else ""
    return format_number(value, 1, plus=plus) + (f" {word}" if word else "")


@dataclass
class Figure:
    """One indicator's total figure in a report: the target's row and the comparison's row."""

    ind: Indicator
    row: pd.Series | None
    ref: pd.Series | None = None

    @property
    def unit(self) -> str:
        """The unit of the figure (``pct``, ``eur``, ``number``)."""
        return str(self.row["unit"]) if self.row is not None else "pct"

    @property
    def hidden(self) -> bool:
        """True when the target’s figure is not published (hidden or banded) or absent."""
        return self.row is None or bool(truthy(self.row.get("suppressed"))) or is_missing(self.row.get("estimate"))

    @property
    def band(self) -> str:
        """The band of a coded figure (« moins de 2 sur 10 »), else empty."""
        return band_of(self.row) if self.row is not None else ""

    @property
    def value(self) -> float:
        """The estimate (only for a published figure)."""
        return float(self.row["estimate"])

    @property
    def n(self) -> float | None:
        """The unweighted base, None when not published."""
        n = self.row.get("n_unweighted") if self.row is not None else None
        return None if is_missing(n) else float(n)

    @property
    def ref_value(self) -> float | None:
        """The comparison’s estimate, None when absent or hidden."""
        if self.ref is None or bool(truthy(self.ref.get("suppressed"))) or is_missing(self.ref.get("estimate")):
            return None
        return float(self.ref["estimate"])

    @property
    def tested(self) -> bool:
        """True when the row carries a test against the consortium."""
        return (self.row is not None and str(self.row.get("comparison") or "") == CONSORTIUM
                and truthy(self.row.get("significant")) is not None)

    @property
    def significant(self) -> bool:
        """True when that test, corrected, is significant."""
        return self.tested and bool(truthy(self.row.get("significant")))

    @property
    def diff(self) -> float:
        """Difference with the comparison, in displayed units (points for a share)."""
        if self.hidden or self.ref_value is None:
            return float("nan")
        scale = 100.0 if self.unit == "pct" else 1.0
        return round(self.value * scale) - round(self.ref_value * scale) if self.unit == "pct" else \
            (self.value - self.ref_value)

    @property
    def verdict(self) -> str:
        """``up``/``down`` (significant), ``close``, ``apart`` (not significant), ``untested``, ``hidden``."""
        if self.hidden:
            return "hidden"
        if self.ref_value is None or not self.tested:
            return "untested"
        if self.significant:
            return "up" if self.value > self.ref_value else "down"
        if self.unit == "pct":
            return "close" if abs(self.diff) < CLOSE_POINTS else "apart"
        return "close" if abs(self.diff) <= 0.05 * max(abs(self.ref_value), 1e-9) else "apart"

    @property
    def good_news(self) -> bool | None:
        """Whether a significant difference is favourable (None: not significant, or neutral)."""
        if self.verdict not in ("up", "down") or self.ind.favourable == "none":
            return None
        return (self.verdict == "up") == (self.ind.favourable == "higher")

    def shown(self) -> str:
        """The target's value as printed (band or « s » when not published)."""
        if self.row is None:
            return "—"
        if self.hidden:
            return self.band or "non diffusé"
        return fmt_number(self.value, self.unit, self.ind)

    def ref_shown(self) -> str:
        """The comparison’s value as printed."""
        if self.ref is None:
            return ""
        return fmt_value(self.ref, self.unit) if self.ref_value is None else fmt_number(self.ref_value, self.unit, self.ind)


#: how a figure stands against the consortium, by verdict: the wordings :meth:`Writer.pick`
#: rotates (``{c}``: the consortium's value as printed)
_CLAUSES = {
    "up": [", nettement plus que dans l’ensemble du consortium ({c}).",
           " : c’est nettement au-dessus du consortium ({c}).",
           ", contre {c} dans le consortium, un écart net."],
    "down": [", nettement moins que dans l’ensemble du consortium ({c}).",
             " : c’est nettement en dessous du consortium ({c}).",
             ", contre {c} dans le consortium, un écart net."],
    "close": [", comme dans l’ensemble du consortium ({c}).",
              " ; le consortium est au même niveau ({c}).",
              ", un niveau proche de celui du consortium ({c}).",
              " (consortium : {c})."],
    "apart": [" (consortium : {c}) ; l’écart n’est pas assez net pour être retenu.",
              ", contre {c} dans le consortium, un écart qui peut tenir au hasard des réponses.",
              " ({c} dans le consortium ; écart non significatif)."],
}


class Writer:
    """Words of one report: the target's phrases, and wordings rotated by situation."""

    def __init__(self, view: View, offset: int = 0):
        self.view = view
        self.used: Counter[str] = Counter()
        #: where the rotation starts: each chapter (a notebook of its own) starts at its number,
        #: so that the same situation is not worded the same way at the top of every chapter
        self.offset = offset

    @cached_property
    def where(self) -> str:
        """« de la CAE 4 », « du consortium »."""
        return "du consortium" if self.view.is_consortium else de(f"la {self.view.labels[self.view.target]}"
                                                                     if self.view.labels[self.view.target].startswith("CAE")
                                                                     else self.view.labels[self.view.target])

    @cached_property
    def name(self) -> str:
        """« la CAE 4 », « le consortium »."""
        label = self.view.labels[self.view.target]
        if self.view.is_consortium:
            return "le consortium"
        return f"la {label}" if label.startswith("CAE") else label

    def pick(self, situation: str, options: Sequence[str]) -> str:
        """The next wording of a situation (deterministic: the k-th use takes the k-th option)."""
        k = self.used[situation] + self.offset
        self.used[situation] += 1
        return options[k % len(options)]

    # -- a figure in words -------------------------------------------------------------------

    def who(self, ind: Indicator, *, with_target: bool = True) -> str:
        """« entrepreneurs de la CAE 4 » (the indicator’s population, with or without the target)."""
        pop = ind.population or "entrepreneurs"
        return f"{pop} {self.where}" if with_target else pop

    def subject(self, f: Figure, *, with_n: bool = True, with_target: bool = True,
                vary: bool = False) -> str:
        """« 62 % des entrepreneurs de la CAE 4 (55 répondants) jugent … » (a share).

        ``vary``: the running text rotates three word orders (« Dans la CAE 4, 62 % des
        entrepreneurs … », « Parmi les entrepreneurs de la CAE 4 (55 répondants), 62 % … »).
        """
        n = f" ({format_int(f.n)} répondants)" if with_n and f.n is not None else ""
        value = f.band if f.hidden else format_pct(f.value)
        statement = f.ind.statement or f"sont concernés ({f.ind.short_label.lower()})"
        if vary and with_target:
            pop = f.ind.population or "entrepreneurs"
            form = self.pick("subject", ["plain", "dans", "parmi"])
            if form == "dans":
                return f"dans {self.name}, {value} des {pop}{n} {statement}"
            if form == "parmi":
                return f"parmi les {pop} {self.where}{n}, {value} {statement}"
        return f"{value} des {self.who(f.ind, with_target=with_target)}{n} {statement}"

    def quantity(self, f: Figure, *, with_n: bool = True) -> str:
        """« le délai médian … est de 4,0 mois pour les entrepreneurs de la CAE 4 (48 répondants) »."""
        n = f" ({format_int(f.n)} répondants)" if with_n and f.n is not None else ""
        what = f.ind.statement or f.ind.short_label.lower()
        return f"{what} est de {f.shown()} pour les {self.who(f.ind)}{n}"

    def figure_sentence(self, f: Figure, *, with_n: bool = True) -> str:
        """One sentence: the target's figure and how it stands against the comparison."""
        if f.hidden and not f.band:
            return self.pick("hidden", [
                f"Pour « {f.ind.short_label} », le chiffre {self.where} n’est pas diffusé : trop peu de "
                "personnes sont concernées.",
                f"« {f.ind.short_label} » : chiffre non diffusé pour {self.name}, faute d’un nombre "
                "suffisant de répondants."])
        base = cap(self.subject(f, with_n=with_n, vary=True) if f.unit == "pct"
                   else self.quantity(f, with_n=with_n))
        c = f.ref_shown()
        verdict = f.verdict
        if self.view.is_consortium or f.ref is None:
            return base + "."
        if f.hidden:
            return f"{base} (consortium : {c})."
        if verdict in _CLAUSES:
            return base + self.pick(verdict, _CLAUSES[verdict]).format(c=c)
        return base + f" (consortium : {c})."

    def title_phrase(self, f: Figure) -> str:
        """The chapter title's finding: the figure without bases, and its verdict in two words."""
        if f.unit == "pct":
            text = self.subject(f, with_n=False, with_target=False)
        else:
            text = f"{f.ind.statement or f.ind.short_label.lower()} : {f.shown()}"
        if not self.view.is_consortium and f.verdict in ("up", "down"):
            text += (", nettement plus que dans le consortium" if f.verdict == "up"
                     else ", nettement moins que dans le consortium")
        return cap(text)


# --- figures of a report ------------------------------------------------------------------------


def figure_of(view: View, ind: Indicator, target: str | None = None) -> Figure:
    """The total figure of an indicator for the report's target (or ``target``) and its comparison."""
    category = "difference" if ind.kind == "paired_difference" else ""
    tgt = target or view.target
    row = view.row(ind.id, tgt, category=category)
    ref = view.row(ind.id, CONSORTIUM, category=category) if tgt != CONSORTIUM else None
    return Figure(ind, row, ref)


def domain_indicators(view: View, domain: Domain) -> list[Indicator]:
    """The indicators of a domain that a chapter tells (every kind but distributions)."""
    return [i for i in view.codebook.indicators if i.domain_id == domain.id and i.kind != "distribution"]


def _finding_ids(view: View) -> list[str]:
    return [i for f in view.codebook.findings for i in f.indicator_ids]


def key_figures(view: View, figures: Sequence[Figure]) -> list[Figure]:
    """2-4 figures of a chapter: the significant differences first, then the national findings'."""
    published = [f for f in figures if not f.hidden and f.ind.kind != "paired_difference"]
    ordered = sorted(
        published,
        key=lambda f: (0 if f.verdict in ("up", "down") else 1,
                       -abs(f.diff) if f.verdict in ("up", "down") else 0,
                       1 if f.ind.favourable == "none" and view.is_consortium else 0,
                       0 if f.ind.id in _finding_ids(view) else 1))
    return ordered[:MAX_KEY_FIGURES]


def lead_figure(view: View, figures: Sequence[Figure]) -> Figure | None:
    """The figure a chapter's title states."""
    keys = key_figures(view, figures)
    return keys[0] if keys else None


# --- groups -------------------------------------------------------------------------------------


@dataclass
class GroupGap:
    """A breakdown whose groups differ significantly on an indicator, with its extreme groups."""

    ind: Indicator
    breakdown: str
    high: pd.Series
    low: pd.Series

    @property
    def gap(self) -> float:
        """The difference between the extreme groups."""
        return abs(float(self.high["estimate"]) - float(self.low["estimate"]))


def group_gaps(view: View, indicators: Sequence[Indicator], target: str | None = None) -> list[GroupGap]:
    """Significant differences between groups (test of the breakdown), largest first."""
    out = []
    for ind in indicators:
        category = "difference" if ind.kind == "paired_difference" else ""
        for b in ind.breakdowns:
            rows = view.category_rows(ind.id, target, breakdown=b, category=category)
            if not rows or truthy(rows[0].get("significant")) is not True:
                continue
            shown = [r for r in rows if not bool(truthy(r.get("suppressed"))) and not is_missing(r.get("estimate"))]
            if len(shown) < 2:
                continue
            shown.sort(key=lambda r: float(r["estimate"]))
            out.append(GroupGap(ind, b, shown[-1], shown[0]))
    scale = {"pct": 1.0}
    out.sort(key=lambda g: -g.gap * scale.get(str(g.high["unit"]), 0.001))
    return out


def _group_noun(label: str) -> str:
    return _GROUP_NOUNS.get(label, f"le groupe « {label} »")


def group_sentence(w: Writer, g: GroupGap) -> str:
    """One sentence on a breakdown whose groups differ significantly, with its extreme groups.

    The test is over all the groups of the breakdown; the sentence says that the answers differ
    by it, and gives the lowest and highest of the published groups (hidden groups are not
    named), without claiming that these two groups differ from each other.
    """
    unit = str(g.high["unit"])
    hi = fmt_number(float(g.high["estimate"]), unit, g.ind)
    lo = fmt_number(float(g.low["estimate"]), unit, g.ind)
    hn, ln = format_int(g.high["n_unweighted"]), format_int(g.low["n_unweighted"])
    by = _BREAKDOWN_NAMES.get(g.breakdown, g.breakdown)
    a, b = _group_noun(str(g.high["group_label"])), _group_noun(str(g.low["group_label"]))
    return w.pick("group", [
        f"Les réponses à « {g.ind.short_label} » diffèrent nettement selon {by} : de {lo} pour {b} "
        f"({ln} répondants) à {hi} pour {a} ({hn}).",
        f"Selon {by}, « {g.ind.short_label} » varie nettement : {hi} pour {a} ({hn} répondants), "
        f"{lo} pour {b} ({ln}).",
        f"« {g.ind.short_label} » n’est pas le même selon {by}, un écart net : de {lo} ({b}, {ln} "
        f"répondants) à {hi} ({a}, {hn}).",
    ])


def told_gaps(gaps: Sequence[GroupGap]) -> list[GroupGap]:
    """The group differences worth a sentence: the published groups differ by 5 points (or 5 %) at least.

    A significant test whose published groups are close means the difference lies with groups
    that are hidden: it is left to the detailed tables.
    """
    out = []
    for g in gaps:
        unit = str(g.high["unit"])
        if unit == "pct":
            wide = g.gap >= 0.05
        else:
            wide = g.gap >= 0.05 * max(abs(float(g.high["estimate"])), abs(float(g.low["estimate"])), 1e-9)
        if wide:
            out.append(g)
    return out


# --- change since the entry in the CAE ----------------------------------------------------------


def change_sentence(w: Writer, view: View, ind: Indicator, target: str | None = None) -> str:
    """« Depuis leur entrée dans la CAE, le revenu mensuel net moyen … est passé de … à … »."""
    tgt = target or view.target
    before = view.row(ind.id, tgt, category="before")
    after = view.row(ind.id, tgt, category="after")
    diff = view.row(ind.id, tgt, category="difference")
    if diff is None or bool(truthy(diff.get("suppressed"))) or is_missing(diff.get("estimate")):
        return ""
    unit = str(diff["unit"])
    d = float(diff["estimate"])
    n = format_int(diff["n_unweighted"])
    what = ind.statement or ind.short_label.lower()
    span = ""
    if before is not None and after is not None and not is_missing(before.get("estimate")) \
            and not is_missing(after.get("estimate")):
        span = (f" de {fmt_number(float(before['estimate']), unit, ind)} à "
                f"{fmt_number(float(after['estimate']), unit, ind)}")
    who = "entrepreneurs du consortium" if tgt == CONSORTIUM else f"entrepreneurs {w.where}"
    sig = truthy(diff.get("significant"))
    amount = fmt_number(abs(d), unit, ind)
    if sig:
        move = "une hausse nette" if d > 0 else "une baisse nette"
        return (f"Depuis leur entrée dans la CAE, {what} des {who} ({n} répondants) est passé{span}, "
                f"soit {move} de {amount}.")
    return (f"Depuis leur entrée dans la CAE, {what} des {who} ({n} répondants) est passé{span} ; "
            f"cet écart de {amount} n’est pas assez net pour conclure à une évolution.")


# --- the chapter chart ----------------------------------------------------------------------------


def champ_of_bases(view: View, figures: Sequence[Figure], target_label: str) -> str:
    """The « Champ » line of a chart: the target’s respondents and their bases."""
    ns = [f.n for f in figures if f.n is not None]
    if not ns:
        return ""
    lo, hi = int(min(ns)), int(max(ns))
    bases = f"{format_int(lo)} répondants" if lo == hi else f"de {format_int(lo)} à {format_int(hi)} répondants selon l’indicateur"
    return f"{view.field()} ayant répondu à la question ({bases})"


def source_line(view: View) -> str:
    """The « Source » line: the survey and its wave (synthetic data said)."""
    text = f"enquête CAE-IMPACT, vague {view.study.wave}"
    return text + (" (données synthétiques)" if view.study.synthetic else "")


def panel_chart(w: Writer, view: View, figures: Sequence[Figure], *, title: str,
                explain: bool = True) -> str:
    """Every share of the chapter: the target's dot and interval, the consortium's diamond."""
    shares = [f for f in figures if f.unit == "pct" and f.ind.kind != "paired_difference"]
    if len(shares) < 2:
        return ""
    lines = []
    for f in shares:
        hidden = f.hidden
        lines.append(charts.PanelLine(
            label=f.ind.short_label,
            value=None if hidden else f.value,
            low=None if hidden or is_missing(f.row.get("ci_low")) else float(f.row["ci_low"]),
            high=None if hidden or is_missing(f.row.get("ci_high")) else float(f.row["ci_high"]),
            n=f.n, reference=f.ref_value, significant=f.significant,
            band=charts_band(f)))
    label = view.labels[view.target] if not view.is_consortium else "Consortium"
    fig, alt = charts.domain_panel(lines, target_label=label,
                                   reference_label=None if view.is_consortium else "Consortium",
                                   caution_base=view.study.report.caution_base)
    first = next((f for f in shares if not f.hidden), None)
    lecture = None
    if first is not None:
        lecture = cap(w.subject(first, with_n=False)) + (
            f" ; dans l’ensemble du consortium, c’est {first.ref_shown()}." if first.ref is not None else ".")
        lecture += (" Le trait autour du point montre la marge d’erreur due à l’échantillon."
                    if explain and not view.census else "")
    champ = champ_of_bases(view, shares, label)
    if not view.is_consortium:
        ns = [float(f.ref["n_unweighted"]) for f in shares if f.ref is not None and not is_missing(f.ref.get("n_unweighted"))]
        if ns:
            champ += (f" ; consortium : de {format_int(min(ns))} à {format_int(max(ns))} répondants"
                      if min(ns) != max(ns) else f" ; consortium : {format_int(ns[0])} répondants")
    note = None
    if any(f.n is not None and f.n < view.study.report.caution_base for f in shares):
        note = f"* Moins de {view.study.report.caution_base} répondants : chiffre à lire avec prudence."
    return present.chart_html(fig, alt=french_typography(alt), title=title, lecture=lecture,
                              champ=champ + ".", source=source_line(view) + ".", note=note)


def charts_band(f: Figure) -> str:
    """The short band of a banded figure for a chart (« < 20 % »), else empty."""
    return band_of(f.row, short=True) if f.row is not None and f.hidden else ""


# --- key figures table ------------------------------------------------------------------------------

_VERDICT_WORDS = {"up": "nettement plus élevé", "down": "nettement plus bas", "close": "pas d’écart net",
                  "apart": "pas d’écart net", "untested": "non comparé", "hidden": "non comparé"}


def key_figures_table(w: Writer, view: View, keys: Sequence[Figure], domain: Domain) -> str:
    """The table of a chapter’s key figures, with its Lecture/Champ/Source lines."""
    if not keys:
        return ""
    label = view.labels[view.target]
    rows = []
    for f in keys:
        line = {"Indicateur": f.ind.short_label, label: f.shown(), "Répondants": format_int(f.n) if f.n else ""}
        if not view.is_consortium:
            line["Consortium"] = f.ref_shown()
            line["Écart avec le consortium"] = _VERDICT_WORDS[f.verdict]
        else:
            line["Selon la CAE"] = cae_range(view, f.ind)
            pub = f.ind.published
            line["Rapport national 2019-2020"] = pub.text if pub is not None and pub.text else "non publié"
        rows.append(line)
    frame = pd.DataFrame(rows)
    first = keys[0]
    if first.unit == "pct":
        lecture = cap(w.subject(first, with_n=False)) + "."
    else:
        lecture = cap(w.quantity(first, with_n=False)) + "."
    champ = (f"entrepreneurs {w.where} ayant répondu à chaque question"
             + ("" if view.is_consortium else " ; ensemble des entrepreneurs du consortium"))
    note = None
    if not view.is_consortium:
        note = ("Écart net : différence avec le consortium trop grande pour tenir au hasard des "
                "réponses. Non comparé : chiffre connu par le registre, ou non diffusé.")
    else:
        note = ("Selon la CAE : chiffres de la CAE la plus basse et de la plus haute, parmi celles dont "
                "le chiffre est diffusé. Rapport national : expérimentation de 2019-2020 sur 7 CAE, "
                "pour mémoire (autres CAE, autre questionnaire).")
    numeric = [c for c in frame.columns if c not in ("Indicateur", "Écart avec le consortium",
                                                        "Rapport national 2019-2020")]
    return present.table_html(frame, caption=f"Chiffres clés — {domain.short_title}", note=note,
                              numeric_columns=numeric,
                              lecture=lecture, champ=champ + ".", source=source_line(view) + ".")


def cae_range(view: View, ind: Indicator) -> str:
    """« de 41 % à 93 % »: the lowest and highest published CAE figures, or « non diffusé »."""
    category = "difference" if ind.kind == "paired_difference" else ""
    values = []
    for cae in view.study.cae_ids:
        r = view.row(ind.id, cae, category=category)
        if r is not None and not bool(truthy(r.get("suppressed"))) and not is_missing(r.get("estimate")):
            values.append(float(r["estimate"]))
    if len(values) < 2:
        return "non diffusé"
    unit = "pct" if ind.kind in ("share", "any_of") else ("eur" if "euro" in ind.label else "number")
    return f"de {fmt_number(min(values), unit, ind)} à {fmt_number(max(values), unit, ind)}"


# --- CAEs in the consortium report ------------------------------------------------------------------


def cae_differences(view: View, ind: Indicator) -> list[tuple[str, str, pd.Series]]:
    """(cae, ``up``/``down``, row) for each CAE whose figure differs significantly from the rest."""
    out = []
    category = "difference" if ind.kind == "paired_difference" else ""
    if category:
        return out
    for cae in view.compared_caes:
        r = view.row(ind.id, cae, category=category)
        if r is None or bool(truthy(r.get("suppressed"))) or is_missing(r.get("estimate")):
            continue
        if str(r.get("comparison") or "") != CONSORTIUM or truthy(r.get("significant")) is not True:
            continue
        c = view.row(ind.id, CONSORTIUM, category=category)
        direction = "up" if c is not None and float(r["estimate"]) > float(c["estimate"]) else "down"
        out.append((cae, direction, r))
    return out


def cae_sentence(w: Writer, view: View, ind: Indicator, diffs) -> str:
    """One sentence naming the CAEs that differ significantly from the rest on an indicator."""
    parts = []
    for cae, direction, r in diffs[:4]:
        where = "au-dessus" if direction == "up" else "en dessous"
        parts.append(f"la {view.labels[cae]} {where} ({fmt_value(r, str(r['unit']))}, "
                     f"{format_int(r['n_unweighted'])} répondants)")
    listed = ", ".join(parts[:-1]) + (" et " if len(parts) > 1 else "") + parts[-1]
    more = f" ; {plural(len(diffs) - 4, 'autre CAE', 'autres CAE')} également" if len(diffs) > 4 else ""
    if len(diffs) == 1:
        return w.pick("one-cae", [
            f"Sur « {ind.short_label} », une CAE se distingue nettement du reste du consortium : {listed}.",
            f"Pour « {ind.short_label} », {listed} s’écarte nettement des autres CAE.",
        ])
    return w.pick("caes", [
        f"Sur « {ind.short_label} », des CAE se distinguent nettement du reste du consortium : {listed}{more}.",
        f"« {ind.short_label} » varie nettement d’une CAE à l’autre : {listed}{more}.",
        f"Pour « {ind.short_label} », {listed} s’écartent nettement des autres CAE{more}.",
    ])


def cae_chart(view: View, ind: Indicator) -> str:
    """The CAE-by-CAE chart of an indicator (consortium report)."""
    if not view.compared_caes or ind.kind not in ("share", "any_of", "mean", "median"):
        return ""
    data = view.select(ind.id, view.shown_targets)
    data = data[data["category"] == ""]
    if data.empty:
        return ""
    unit = str(data["unit"].iloc[0])
    fig, alt = charts.dot_interval(data, indicator_id=ind.id, order=view.shown_targets, bar_labels=view.labels,
                                   title=ind.short_label, field=view.field(), unit=unit,
                                   confidence_level=view.study.report.confidence_level,
                                   source=view.source, synthetic=view.study.synthetic,
                                   caution_base=view.study.report.caution_base, bare=True)
    c = view.row(ind.id, CONSORTIUM)
    ns = data[data["target"] != CONSORTIUM]["n_unweighted"].dropna()
    champ = "entrepreneurs de chaque CAE du consortium ayant répondu à la question"
    if len(ns):
        champ += f" (de {format_int(ns.min())} à {format_int(ns.max())} répondants selon la CAE)"
    lecture = None
    if c is not None and not is_missing(c.get("estimate")):
        lecture = (f"dans l’ensemble du consortium, « {ind.short_label} » concerne "
                   f"{fmt_value(c, unit)} des {ind.population or 'entrepreneurs'} "
                   f"({format_int(c['n_unweighted'])} répondants). Une CAE en vermillon s’écarte "
                   "nettement du reste du consortium.") if unit == "pct" else (
                   f"dans l’ensemble du consortium : {fmt_value(c, unit)} ({format_int(c['n_unweighted'])} répondants).")
    note = ("Une CAE peut s’écarter nettement ici et pas dans son propre rapport, ou l’inverse : "
            "chaque rapport tient compte du nombre de comparaisons qu’il fait.")
    return present.chart_html(fig, alt=french_typography(alt), title=f"{ind.short_label} : chaque CAE face au consortium",
                              lecture=cap(lecture) if lecture else None, champ=champ + ".",
                              source=source_line(view) + ".", note=note)


# --- a chapter ----------------------------------------------------------------------------------------


def chapter_html(view: View, domain: Domain, *, writer: Writer | None = None,
                 verbatims: Sequence[str] = (), verbatim_question: str = "") -> str:
    """One chapter: a title stating its finding, what stands out, key figures, one or two charts."""
    w = writer or Writer(view, offset=domain.number)
    inds = domain_indicators(view, domain)
    figures = [figure_of(view, i) for i in inds]
    lead = lead_figure(view, figures)
    heading = f"{domain.number}. {domain.short_title}"
    if lead is not None:
        heading += " : " + w.title_phrase(lead)
    parts = [present.heading_html(french_typography(heading), 1, anchor=f"domaine-{domain.number}"),
             present.paragraph_html(f"{domain.title}. {domain.description}", "chapter-intro")]
    detail = cae_detail_text(view, short=True)
    if detail:
        parts.append(present.paragraph_html(detail, "note"))
    paragraphs = _chapter_text(w, view, figures, inds)
    parts.extend(present.paragraph_html(french_typography(p)) for p in paragraphs)
    parts.append(key_figures_table(w, view, key_figures(view, figures), domain))
    chart_title = _panel_title(w, view, figures, domain)
    parts.append(panel_chart(w, view, figures, title=french_typography(chart_title),
                             explain=domain.number == 1))
    parts.append(second_chart(w, view, inds, figures))
    if verbatims:
        parts.append(verbatim_box(verbatims, verbatim_question))
    return "".join(p for p in parts if p)


def _panel_title(w: Writer, view: View, figures: Sequence[Figure], domain: Domain) -> str:
    shares = [f for f in figures if f.unit == "pct" and f.ind.kind != "paired_difference"]
    if view.is_consortium:
        top = max((f for f in shares if not f.hidden), key=lambda f: f.value, default=None)
        if top is None:
            return domain.short_title
        return (f"{domain.short_title} : de {format_pct(min(f.value for f in shares if not f.hidden))} à "
                f"{format_pct(top.value)} des entrepreneurs du consortium selon l’indicateur")
    up = sum(f.verdict == "up" for f in shares)
    down = sum(f.verdict == "down" for f in shares)
    label = view.labels[view.target]
    if not up and not down:
        return f"{domain.short_title} : la {label} au niveau du consortium sur les {len(shares)} indicateurs"
    bits = []
    if up:
        bits.append(plural(up, "indicateur nettement plus élevé", "indicateurs nettement plus élevés"))
    if down:
        bits.append(plural(down, "indicateur nettement plus bas", "indicateurs nettement plus bas"))
    return (f"{domain.short_title} : sur {len(shares)} indicateurs, " + " et ".join(bits)
            + f" dans la {label} que dans le consortium")


def _chapter_text(w: Writer, view: View, figures: Sequence[Figure], inds: Sequence[Indicator]) -> list[str]:
    out: list[str] = []
    told: set[str] = set()
    if not view.is_consortium:
        sig = sorted([f for f in figures if f.verdict in ("up", "down")], key=lambda f: -abs(f.diff))
        if sig:
            out.append(" ".join(w.figure_sentence(f) for f in sig[:3]))
            told.update(f.ind.id for f in sig[:3])
            if len(sig) > 3:
                more = len(sig) - 3
                out[-1] += (" Un autre indicateur du chapitre s’écarte" if more == 1 else
                            f" {plural(more, 'autre indicateur')} du chapitre s’écartent") + \
                    " aussi nettement du consortium (voir le graphique)."
                told.update(f.ind.id for f in sig)
    else:
        lines = []
        for f in figures:
            diffs = cae_differences(view, f.ind)
            if diffs:
                lines.append((len(diffs), f.ind, diffs))
        lines.sort(key=lambda t: -t[0])
        keys = key_figures(view, figures)
        if keys:
            out.append(" ".join(w.figure_sentence(f) for f in keys[:2]))
            told.update(f.ind.id for f in keys[:2])
        if lines:
            out.append(" ".join(cae_sentence(w, view, ind, diffs) for _, ind, diffs in lines[:2]))
    changes = [change_sentence(w, view, i) for i in inds if i.kind == "paired_difference"]
    changes = [c for c in changes if c]
    if changes:
        out.append(" ".join(changes))
        told.update(i.id for i in inds if i.kind == "paired_difference")
    gaps = told_gaps(group_gaps(view, inds))
    if gaps:
        text = " ".join(group_sentence(w, g) for g in gaps[:MAX_GROUP_SENTENCES])
        if len(gaps) > MAX_GROUP_SENTENCES:
            more = len(gaps) - MAX_GROUP_SENTENCES
            count = "un autre" if more == 1 else plural(more, "autre", "autres")
            text += " " + cap(w.pick("more-gaps", [
                f"{count} écart{'s' if more > 1 else ''} net{'s' if more > 1 else ''} selon le profil "
                "des entrepreneurs figure" + ("nt" if more > 1 else "") + " dans les tableaux détaillés.",
                f"les tableaux détaillés donnent {count} écart{'s' if more > 1 else ''} "
                f"net{'s' if more > 1 else ''} entre groupes d’entrepreneurs.",
                f"on trouvera {count} écart{'s' if more > 1 else ''} net{'s' if more > 1 else ''} selon "
                "le profil dans les tableaux détaillés.",
            ]))
        out.append(text)
    rest = [f for f in figures if f.ind.id not in told and f.ind.kind != "paired_difference"]
    shown_rest = [f for f in rest if not f.hidden]
    hidden = [f for f in rest if f.hidden and not f.band]
    if not view.is_consortium:
        if not any(f.verdict in ("up", "down") for f in figures):
            keys = [f for f in key_figures(view, figures)][:2]
            lead = w.pick("none", [
                f"Aucun des {len(figures)} indicateurs du chapitre ne distingue nettement {w.name} du consortium.",
                f"Sur ce domaine, {w.name} ne s’écarte nettement du consortium sur aucun des {len(figures)} indicateurs.",
                f"Les {len(figures)} indicateurs de ce domaine placent {w.name} au niveau du consortium, aux aléas des réponses près.",
            ])
            out.insert(0, lead + " " + " ".join(w.figure_sentence(f) for f in keys))
        elif shown_rest:
            out.append(w.pick("rest", [
                f"Sur les {len(shown_rest)} autres indicateurs du chapitre, {w.name} ne se distingue pas nettement du consortium.",
                f"Pour les {len(shown_rest)} autres indicateurs, les écarts avec le consortium sont faibles ou trop incertains pour être retenus.",
                f"Les {len(shown_rest)} autres indicateurs du chapitre sont proches de ceux du consortium, ou trop incertains pour conclure.",
            ]))
    elif not out:
        out.append("Aucune CAE ne s’écarte nettement du reste du consortium sur les indicateurs de ce chapitre.")
    if hidden:
        out.append(("Un indicateur n’est pas diffusé" if len(hidden) == 1 else
                    f"{plural(len(hidden), 'indicateur')} ne sont pas diffusés")
                   + f" pour {w.name}, faute d’un nombre suffisant de répondants.")
    return out


def second_chart(w: Writer, view: View, inds: Sequence[Indicator], figures: Sequence[Figure]) -> str:
    """A change since the entry (before / now), a CAE-by-CAE chart, or an answer scale."""
    if view.is_consortium:
        lead = lead_figure(view, figures)
        return cae_chart(view, lead.ind) if lead is not None else ""
    for ind in inds:
        if ind.kind == "paired_difference":
            html = before_after_chart(view, ind)
            if html:
                return html
    for ind in view.codebook.indicators:
        if ind.domain_id == inds[0].domain_id if inds else False:
            if ind.kind == "distribution":
                html = likert_chart(view, ind)
                if html:
                    return html
    return ""


def before_after_chart(view: View, ind: Indicator) -> str:
    """The « entrée dans la CAE / aujourd’hui » chart of a change, with its lines."""
    targets = view.shown_targets
    data = view.select(ind.id, targets)
    if data.empty:
        return ""
    unit = str(data["unit"].iloc[0])
    fig, alt = charts.before_after(data, indicator_id=ind.id, order=targets, bar_labels=view.labels,
                                   title=ind.label, field=view.field(), unit=unit, source=view.source,
                                   synthetic=view.study.synthetic, caution_base=view.study.report.caution_base,
                                   bare=True)
    diff = view.row(ind.id, category="difference")
    if diff is None or bool(truthy(diff.get("suppressed"))):
        title = f"{ind.short_label} : entrée dans la CAE et aujourd’hui"
    else:
        d = float(diff["estimate"])
        title = (f"{cap(ind.statement or ind.short_label)} : {fmt_number(d, unit, ind, plus=True)} "
                 "entre l’entrée dans la CAE et aujourd’hui")
    n = view.row(ind.id, category="difference")
    champ = f"{view.field()} ayant répondu aux deux questions"
    if n is not None and not is_missing(n.get("n_unweighted")):
        champ += f" ({format_int(n['n_unweighted'])} répondants)"
    lecture = ("le premier point donne la situation déclarée à l’entrée dans la CAE, le second la "
               "situation aujourd’hui ; les deux réponses sont celles des mêmes entrepreneurs.")
    note = None
    if not view.is_consortium:
        note = ("L’évolution du consortium est donnée pour repère ; elle est testée dans le rapport "
                "du consortium, pas dans celui-ci.")
    return present.chart_html(fig, alt=french_typography(alt), title=french_typography(title),
                              lecture=cap(lecture), champ=champ + ".", source=source_line(view) + ".",
                              note=note)


def likert_chart(view: View, ind: Indicator) -> str:
    """The diverging chart of an agreement or frequency scale (unfavourable left)."""
    scale = view.codebook.scale_of(ind.rule["question"])
    q = view.codebook.question(ind.rule["question"])
    if not scale.ordered or q.type not in ("likert", "frequency"):
        return ""
    cats = charts.unfavourable_first([c.code for c in scale.choices if not c.missing])
    missing = [c.code for c in scale.choices if c.missing]
    labels = {c.code: c.label for c in scale.choices}
    targets = view.shown_targets
    data = view.select(ind.id, targets)
    if data.empty:
        return ""
    fig, alt = charts.diverging_likert(data, categories=cats, labels=labels, missing=missing,
                                       indicator_id=ind.id, order=targets, bar_labels=view.labels,
                                       title=ind.label, field=view.field(), source=view.source,
                                       synthetic=view.study.synthetic,
                                       caution_base=view.study.report.caution_base, bare=True)
    rows = view.rows(ind.id)
    n = rows["n_unweighted"].max() if len(rows) else None
    champ = f"{view.field()} ayant répondu à la question"
    if n is not None and not is_missing(n):
        champ += f" ({format_int(n)} répondants)"
    lecture = (f"réponses à la question « {q.text} » ; les réponses les moins favorables sont à gauche, "
               "les plus favorables à droite.")
    return present.chart_html(fig, alt=french_typography(alt), title=french_typography(likert_title(view, ind)),
                              lecture=cap(lecture), champ=champ + ".", source=source_line(view) + ".")


def likert_title(view: View, ind: Indicator) -> str:
    """« Fréquence des échanges … : 58 % répondent « Fréquemment » ou « Régulièrement » ».

    The favourable half of the scale is its first half in questionnaire order (the codebook
    lists the most favourable answer first); the share is the sum of the published categories,
    and the title is the indicator's label alone when one of them is hidden.
    """
    scale = view.codebook.scale_of(ind.rule["question"])
    answers = [c for c in scale.choices if not c.missing]
    favourable = answers[: len(answers) // 2]
    total = 0.0
    for c in favourable:
        r = view.row(ind.id, category=c.code)
        if r is None or bool(truthy(r.get("suppressed"))) or is_missing(r.get("estimate")):
            return ind.label
        total += float(r["estimate"])
    names = " ou ".join(f"« {c.label} »" for c in favourable)
    who = "des entrepreneurs du consortium" if view.is_consortium else f"des entrepreneurs {Writer(view).where}"
    return f"{ind.short_label} : {format_pct(total)} {who} répondent {names}"


def verbatim_box(quotes: Sequence[str], question: str) -> str:
    """« Paroles d’entrepreneurs »: quotes shown as plain (escaped) text."""
    items = "".join(f'<blockquote class="verbatim"><p>« {present.esc(q)} »</p></blockquote>' for q in quotes)
    intro = (f"Réponses libres à la question « {question.strip()} », citées telles quelles (données "
             "personnelles masquées).")
    return (f'<aside class="box verbatims"><p class="box-title">Paroles d’entrepreneurs</p>{items}'
            f'<p class="note">{present.esc(french_typography(intro))}</p></aside>')


# --- « L’essentiel » ----------------------------------------------------------------------------------


def essentials_html(view: View, writer: Writer | None = None, evolution: str = "") -> str:
    """One page: the six findings as sentences with this report's key number, strengths, cautions.

    ``evolution``: for a later wave, one sentence on what moved since the previous one
    (:func:`cae_impact.render.evolution.essentials_line`), given last.
    """
    w = writer or Writer(view)
    parts = [present.heading_html("L’essentiel", 1, anchor="essentiel")]
    who = "des CAE du consortium" if view.is_consortium else w.where
    intro = (f"Ce que disent les entrepreneurs {who} en {view.study.wave}, sur les six enseignements "
             "de la méthode CAE-IMPACT" + ("" if view.is_consortium else ", comparés à l’ensemble du consortium") + ".")
    parts.append(present.paragraph_html(french_typography(intro), "lead"))
    items = []
    for finding in view.codebook.findings:
        sentence = finding_sentence(w, view, finding)
        if sentence:
            items.append(f"<li><strong>{present.esc(finding.short or finding.text)}.</strong> "
                         f"{present.esc(french_typography(sentence))}</li>")
    if evolution:
        since = view.study.previous_waves[-1].wave if getattr(view.study, "previous_waves", None) else ""
        items.append(f"<li><strong>{present.esc('Évolution' + (f' depuis {since}' if since else ''))}.</strong> "
                     f"{present.esc(french_typography(evolution))}</li>")
    parts.append(f'<ul class="essentials">{"".join(items)}</ul>')
    strengths, cautions = strengths_and_cautions(w, view)
    if strengths:
        parts.append('<aside class="box strengths"><p class="box-title">Points forts</p><ul>'
                     + "".join(f"<li>{present.esc(french_typography(s))}</li>" for s in strengths) + "</ul></aside>")
    parts.append('<aside class="box cautions"><p class="box-title">Points de vigilance</p><ul>'
                 + "".join(f"<li>{present.esc(french_typography(s))}</li>" for s in cautions) + "</ul></aside>")
    return "".join(parts)


def finding_sentence(w: Writer, view: View, finding: Finding) -> str:
    """The sentence of one finding in « L’essentiel »: its key figure(s) against the consortium."""
    figures = []
    for iid in finding.indicator_ids:
        try:
            ind = view.codebook.indicator(iid)
        except KeyError:
            continue
        if ind.kind == "distribution":
            continue
        figures.append(figure_of(view, ind))
    if not figures:
        return ""
    changes = [f for f in figures if f.ind.kind == "paired_difference"]
    figures = [f for f in figures if f.ind.kind != "paired_difference"]
    keys = key_figures(view, figures)
    if not keys:
        return "Les chiffres de ce thème ne sont pas diffusés (trop peu de répondants)."
    chosen = keys[:1]  # one figure a finding; a second only when the first is not a difference
    if len(keys) > 1 and keys[1].verdict in ("up", "down") and keys[0].verdict not in ("up", "down"):
        chosen = keys[:2]
    text = " ".join(w.figure_sentence(f) for f in chosen)
    if changes and finding.id == "f3":
        c = change_sentence(w, view, changes[0].ind)
        if c:
            text += " " + c
    return text


def strengths_and_cautions(w: Writer, view: View) -> tuple[list[str], list[str]]:
    """« Points forts » and « Points de vigilance » of « L’essentiel »."""
    strengths, cautions = [], []
    inds = [i for i in view.codebook.indicators if i.kind != "distribution"]
    figures = [figure_of(view, i) for i in inds]
    if not view.is_consortium:
        for f in sorted(figures, key=lambda f: -abs(f.diff) if f.verdict in ("up", "down") else 0):
            if f.good_news is True:
                strengths.append(f"{f.ind.short_label} : {f.shown()} contre {f.ref_shown()} dans le consortium.")
            elif f.good_news is False:
                cautions.append(f"{f.ind.short_label} : {f.shown()} contre {f.ref_shown()} dans le consortium.")
        strengths, cautions = strengths[:3], cautions[:3]
        if not cautions:
            cautions.append(f"Aucun indicateur ne place {w.name} nettement en retrait du consortium.")
    else:
        spread = []
        for f in figures:
            d = cae_differences(view, f.ind)
            if d:
                spread.append((len(d), f.ind))
        spread.sort(key=lambda t: -t[0])
        for k, ind in spread[:3]:
            cautions.append(f"« {ind.short_label} » : {plural(k, 'CAE', 'CAE')} "
                            f"{'s’écartent' if k > 1 else 's’écarte'} nettement du reste du consortium.")
    small = [f for f in figures if f.n is not None and f.n < view.study.report.caution_base and not f.hidden]
    if small:
        cautions.append((f"{plural(len(small), 'chiffre')} reposent" if len(small) > 1 else "Un chiffre repose")
                        + f" sur moins de {view.study.report.caution_base} répondants : à lire avec prudence.")
    hidden = [f for f in figures if f.hidden]
    if hidden:
        cautions.append((f"{plural(len(hidden), 'chiffre')} ne sont pas publiés ou sont donnés" if len(hidden) > 1
                         else "Un chiffre n’est pas publié ou est donné") + " par tranche, pour "
                        "qu’aucun entrepreneur ne puisse être reconnu.")
    cautions.append("L’enquête recueille ce que disent les entrepreneurs : elle mesure une situation et "
                    "des avis, pas ce qu’ils seraient devenus sans la CAE.")
    return strengths, cautions


# --- « La CAE en bref » -----------------------------------------------------------------------------


def brief_html(view: View, weighting: Mapping, context_html: str = "") -> str:
    """Register, response, sectors; the editorial context; five plain lines on the method."""
    w = Writer(view)
    title = "Le consortium en bref" if view.is_consortium else f"La {view.labels[view.target]} en bref"
    parts = [present.heading_html(title, 1, anchor="en-bref")]
    per = pd.DataFrame(weighting.get("per_cae", []))
    if view.is_consortium:
        pop, resp = float(per["population"].sum()), float(per["respondents"].sum())
        head = (f"Les {format_int(len(per))} CAE du consortium comptaient {format_int(pop)} entrepreneurs "
                f"inscrits ; {format_int(resp)} ont répondu à l’enquête de {view.study.wave}, soit "
                f"{format_pct(resp / pop)}.")
    else:
        r = per[per["cae_id"] == view.target].iloc[0] if len(per) else None
        head = "" if r is None else (
            f"{cap(w.name)} comptait {format_int(r['population'])} entrepreneurs inscrits à son registre ; "
            f"{format_int(r['respondents'])} ont répondu à l’enquête de {view.study.wave}, soit "
            f"{format_pct(r['response_rate'])}.")
    sectors = top_sectors(view)
    if sectors:
        head += f" Leurs principaux secteurs d’activité : {sectors}."
    parts.append(present.paragraph_html(french_typography(head), "lead"))
    if context_html:
        parts.append(f'<div class="editorial context">{context_html}</div>')
    lines = method_lines(view)
    parts.append('<aside class="box method-lines"><p class="box-title">Comment les chiffres ont été '
                 'établis, et ce qu’ils ne disent pas</p><ol>'
                 + "".join(f"<li>{present.esc(french_typography(x))}</li>" for x in lines) + "</ol></aside>")
    return "".join(parts)


def top_sectors(view: View, k: int = 3) -> str:
    """The three main sectors of the target, with their shares and base."""
    rows = view.rows("profile_sector")
    if rows.empty:
        return ""
    shown = rows[(~rows["suppressed"].fillna(False).astype(bool)) & rows["estimate"].notna()]
    shown = shown[shown["category_label"].astype(str) != "Autre secteur"].sort_values("estimate", ascending=False)
    if shown.empty:
        return ""
    bits = [f"{str(r['category_label'])[:1].lower()}{str(r['category_label'])[1:]} ({format_pct(r['estimate'])})"
            for _, r in shown.head(k).iterrows()]
    n = format_int(rows["n_unweighted"].max())
    return "; ".join(bits) + f" ({n} répondants)"


def method_lines(view: View) -> list[str]:
    """Five plain lines on how the figures were made and what they cannot say."""
    min_count = view.study.report.min_cell_count
    lines = [
        "Tous les entrepreneurs inscrits ont été invités à répondre ; les réponses sont pondérées "
        "pour que chaque profil (sexe, statut dans la CAE) compte selon son poids réel au registre.",
        "Chaque chiffre est une estimation : la marge d’erreur, dessinée sur les graphiques, dit "
        "dans quelle fourchette se situe très probablement la valeur pour l’ensemble des inscrits.",
        "Un écart est dit net (ou « significatif ») quand il est trop grand pour s’expliquer par le "
        "seul hasard des réponses ; les autres écarts ne sont pas commentés comme des différences.",
        f"Un chiffre qui concernerait moins de {min_count} personnes n’est pas publié ou est donné "
        "par tranche (« moins de 2 sur 10 ») : personne ne peut être reconnu.",
        "Les réponses disent ce que vivent et pensent les entrepreneurs ; elles ne permettent pas "
        "de savoir ce qu’ils seraient devenus sans la CAE. La méthode détaillée est en annexe.",
    ]
    if view.census:
        lines[1] = ("Tous les entrepreneurs inscrits ont répondu : les chiffres n’ont pas de marge "
                    "d’erreur due à l’échantillon.")
    return lines


# --- the consortium's closing sections -----------------------------------------------------------------


def synthesis_html(view: View) -> str:
    """Consortium report: for each domain and CAE, the indicators nettement above / below the rest."""
    if not view.compared_caes:
        return ""
    rows = []
    for d in view.codebook.domains:
        line = {"Domaine": f"{d.number}. {d.short_title}"}
        for cae in view.compared_caes:
            up = down = 0
            for ind in domain_indicators(view, d):
                for c, direction, _ in cae_differences(view, ind):
                    if c == cae:
                        up += direction == "up"
                        down += direction == "down"
            line[view.labels[cae].replace(" ", "\u00a0")] = " ".join(x for x in (f"+{up}" if up else "", f"−{down}" if down else "") if x) or "0"
        rows.append(line)
    frame = pd.DataFrame(rows)
    parts = [present.heading_html("Synthèse : les CAE face au consortium", 1, anchor="synthese"),
             present.paragraph_html(french_typography(
                 "Pour chaque domaine et chaque CAE, le nombre d’indicateurs où la CAE se situe nettement "
                 "au-dessus (+) ou en dessous (−) du reste du consortium. Un écart n’est pas un "
                 "classement : les CAE n’accueillent pas les mêmes publics, et un chiffre plus élevé "
                 "n’est pas toujours meilleur (part de femmes, délai avant la première facture)."))]
    parts.append(present.table_html(
        frame, caption="Écarts nets de chaque CAE avec le reste du consortium, par domaine",
        numeric_columns=[view.labels[c].replace(" ", "\u00a0") for c in view.compared_caes],
        lecture=french_typography("« +2 » : deux indicateurs du domaine sont nettement plus élevés dans la CAE que dans le reste du consortium ; « +1 −1 » : un plus élevé, un plus bas ; « 0 » : aucun écart net."),
        champ="entrepreneurs des CAE du consortium.", source=source_line(view) + "."))
    return "".join(parts)


def national_memo_html(view: View) -> str:
    """Consortium report: the 2019-2020 national figures beside this wave's, for memory (not tested)."""
    rows = []
    for ind in view.codebook.indicators:
        if ind.published is None or not ind.published.text or ind.kind == "distribution":
            continue
        f = figure_of(view, ind)
        rows.append({"Indicateur": ind.short_label, "Rapport national 2019-2020": ind.published.text,
                     f"Consortium {view.study.wave}": f.shown(),
                     "Répondants": format_int(f.n) if f.n else ""})
    if not rows:
        return ""
    parts = [present.heading_html("Pour mémoire : le rapport national de 2019-2020", 1, anchor="pour-memoire"),
             present.paragraph_html(french_typography(
                 "Le rapport national de l’expérimentation CAE-IMPACT (7 CAE, 2019-2020) a publié les "
                 "chiffres ci-dessous. Ils sont rappelés pour mémoire : ils portent sur d’autres CAE, à "
                 "une autre date, avec un autre questionnaire ; ils ne sont pas comparés par un test."))]
    parts.append(present.table_html(
        pd.DataFrame(rows), caption="Chiffres du rapport national et de cette enquête", css_class="data compact",
        numeric_columns=[f"Consortium {view.study.wave}", "Répondants"],
        lecture=french_typography(f"{rows[0]['Indicateur']} : « {rows[0]['Rapport national 2019-2020']} » dans le rapport national ; {rows[0][f'Consortium {view.study.wave}']} dans le consortium en {view.study.wave}."),
        champ="entrepreneurs des CAE du consortium ; rapport national : entrepreneurs des 7 CAE de l’expérimentation.",
        source=source_line(view) + " ; Coopérer Pour Entreprendre et Ellyx, rapport national CAE-IMPACT."))
    return "".join(parts)


def takeaways_html(view: View, takeaways: str) -> str:
    """« Ce que la CAE en retient », as the CAE wrote it (inert HTML), or ''."""
    if not takeaways:
        return ""
    title = "Ce que le consortium en retient" if view.is_consortium else "Ce que la CAE en retient"
    return present.heading_html(title, 1, anchor="retient") + f'<div class="editorial takeaways">{takeaways}</div>'


# --- evidence (the notebooks, not the report) ----------------------------------------------------------

EVIDENCE_COLUMNS = ["target", "breakdown", "group_label", "category", "estimate", "se", "ci_low", "ci_high",
                    "n_unweighted", "n_count", "base_weighted", "comparison", "test", "p_value",
                    "p_adjusted", "significant", "flag_caution", "suppressed", "suppression_reason",
                    "band_low", "band_high"]


def evidence_frame(view: View, ind: Indicator) -> pd.DataFrame:
    """Every row of an indicator in this report, unformatted (hidden cells are blank upstream)."""
    rows = view.select(ind.id, view.shown_targets, breakdown=None)
    cols = [c for c in EVIDENCE_COLUMNS if c in rows.columns]
    return rows[cols].reset_index(drop=True)


def rule_text(ind: Indicator) -> str:
    """The indicator's rule from the codebook, in one line."""
    rule = dict(ind.rule)
    return "; ".join(f"{k}: {v}" for k, v in rule.items())


def figure_list(view: View) -> pd.DataFrame:
    """The total figures of every indicator as the chapters use them (verdict, difference), for audit."""
    out = []
    for ind in view.codebook.indicators:
        if ind.kind == "distribution":
            continue
        f = figure_of(view, ind)
        out.append({"indicator_id": ind.id, "domain": ind.domain_id, "shown": f.shown(),
                    "estimate": np.nan if f.hidden else f.value, "n": f.n,
                    "consortium": f.ref_value, "verdict": f.verdict})
    return pd.DataFrame(out)
