"""Charts of the French reports: diverging Likert bars, dot-and-interval, before/after, profile.

Every chart is made for a French reader of an A4 report (17 cm of text width) and follows the
same rules:

* a title that states what the chart shows, French labels, French numbers
  (:mod:`cae_impact.core.frenchfmt`: « 85 % », « 1 250 € », « n = 74 »);
* a caption under the chart with source, field and n (« Source : enquête CAE-IMPACT 2026,
  données synthétiques ; champ : entrepreneurs de la CAE 3 ; n = 74 »), plus the notes the chart
  needs (« s : résultat non diffusé », « * : à interpréter avec prudence », reference sources);
* colour-blind-safe colours: the Okabe–Ito palette for series, ColorBrewer BrBG (brown–teal)
  for ordered scales, greys for missing answers; a series never relies on colour alone
  (position, marker shape or hatching also differ);
* disclosure: a row with ``suppressed`` true is never drawn as a value; the chart shows « s »
  instead. In a diverging bar a single suppressed category hides the whole bar, since the
  others would give it away by difference;
* determinism: figures are built with the Agg canvas under a fixed style (DejaVu Sans), and
  :func:`save_figure` writes no date, software version or random id, so the same data give
  byte-identical PNG, SVG and PDF files.

Each chart function takes the indicator table (CONTRACTS §5: ``indicator_id, target,
breakdown, group, category, estimate, ci_low, ci_high, n_unweighted, significant, flag_caution,
suppressed`` …) and returns a :class:`ChartResult`, a ``(figure, alt_text)`` pair that also
carries ``data``, the table of what was drawn (suppressed values as NaN), for an accessible
data table under the chart. The alt text is French and describes the data.

The charts are drawn with matplotlib directly (seaborn's figure-level functions have no
diverging layout and change global state); no global rcParams or backend is modified.
"""

from __future__ import annotations

import base64
import io
import math
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FixedLocator, FuncFormatter
from matplotlib.transforms import blended_transform_factory

from cae_impact.analysis.disclosure import band_text
from cae_impact.core.frenchfmt import (
    NBSP,
    format_ci,
    format_eur,
    format_n,
    format_number,
    format_pct,
    french_typography,
    is_missing,
)
from cae_impact.render.narrative import (
    CONSORTIUM,
    de,
    select_row,
    target_label,
    target_phrase,
    truthy,
)
from cae_impact.render.present import PNG_COMPRESS_LEVEL
from cae_impact.render.references import (
    DEFAULT_PROFILE_REFERENCES,
    comparability_caveat,
    get_reference,
    load_references,
    reference_value_text,
)

DPI = 200
"""Resolution of saved PNG files (print quality for an A4 report)."""
FIG_WIDTH = 6.7
"""Figure width in inches: 17 cm, the text width of an A4 page with 2 cm margins."""
DEFAULT_SOURCE = "enquête CAE-IMPACT"
SUPPRESSED_MARK = "s"
SUPPRESSED_NOTE = ("s : résultat non diffusé (trop peu de répondants, ou secret secondaire) ; "
                   "« ≥ 70 % », « < 20 % » : valeur donnée par tranche.")
CAPTION_WRAP = 118

OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermilion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
"""Okabe & Ito (2008) colour-blind-safe palette, used for series."""

# ColorBrewer BrBG, one side of the diverging scale, from the centre outwards.
_BRBG_NEG = {
    1: ["#d8b365"],
    2: ["#dfc27d", "#a6611a"],
    3: ["#dfc27d", "#bf812d", "#8c510a"],
    4: ["#f6e8c3", "#dfc27d", "#bf812d", "#8c510a"],
}
_BRBG_POS = {
    1: ["#5ab4ac"],
    2: ["#80cdc1", "#018571"],
    3: ["#80cdc1", "#35978f", "#01665e"],
    4: ["#c7eae5", "#80cdc1", "#35978f", "#01665e"],
}
NEUTRAL_COLOUR = "#d9d9d9"
MISSING_COLOURS = ["#bdbdbd", "#969696", "#737373"]
REFERENCE_COLOUR = "#999999"

STYLE: dict[str, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 8.5,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8,
    "figure.titlesize": 10.5,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "0.4",
    "axes.linewidth": 0.6,
    "xtick.color": "0.25",
    "ytick.color": "0.1",
    "ytick.major.size": 0,
    "axes.unicode_minus": True,
    "axes.formatter.use_locale": False,
    "legend.frameon": False,
    "hatch.linewidth": 0.6,
    "hatch.color": "white",
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "svg.hashsalt": "cae-impact",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "text.antialiased": True,
    "path.simplify": True,
}
"""Style applied (locally, with ``rc_context``) while a chart is built and saved."""

__all__ = [
    "PanelLine",
    "domain_panel",
    "DPI",
    "FIG_WIDTH",
    "OKABE_ITO",
    "STYLE",
    "ChartResult",
    "ProfileItem",
    "before_after",
    "caption_text",
    "dot_interval",
    "diverging_likert",
    "figure_to_data_uri",
    "profile_comparison",
    "save_figure",
]


class ChartResult(tuple):
    """The ``(figure, alt_text)`` pair returned by every chart, with the drawn data attached.

    Unpacks as two values (``fig, alt = dot_interval(...)``); ``.data`` is a DataFrame of what
    was drawn (one row per mark; ``value`` NaN where a suppressed row was not drawn).
    """

    def __new__(cls, figure: Figure, alt_text: str, data: pd.DataFrame) -> ChartResult:
        """Pair a figure with its alt text, keeping the drawn data beside them."""
        obj = super().__new__(cls, (figure, alt_text))
        obj._data = data
        return obj

    @property
    def figure(self) -> Figure:
        """The matplotlib figure."""
        return self[0]

    @property
    def alt_text(self) -> str:
        """French text describing the chart and its data, for HTML ``alt`` / accessibility."""
        return self[1]

    @property
    def data(self) -> pd.DataFrame:
        """What was drawn: keys, labels and values (NaN for suppressed rows)."""
        return self._data


@dataclass(frozen=True)
class ProfileItem:
    """One line of :func:`profile_comparison`: an indicator (and category) with its reference.

    ``reference`` is a ``ref_id`` of the national reference table, a reference row (e.g. from
    :func:`cae_impact.render.references.diploma_reference_bands`), a codebook ``Reference`` (an object
    with ``value``, ``text``, ``source``, ``field``, ``year``), or None for the indicator's
    default reference (:data:`cae_impact.render.references.DEFAULT_PROFILE_REFERENCES`), if any.
    """

    indicator_id: str
    label: str
    category: str | None = None
    reference: str | pd.Series | None = None


# --- shared helpers --------------------------------------------------------------------------


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(STYLE):
        yield


def _new_figure(height: float) -> Figure:
    fig = Figure(figsize=(FIG_WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(h_pad=0.06, w_pad=0.06, hspace=0.02, wspace=0.03)
    return fig


def _wrap(text: str, width: int) -> str:
    return "\n".join(
        textwrap.wrap(text, width=width, break_on_hyphens=False, break_long_words=False)
    )


def _text_width_pt(text: str, size: float, weight: str = "normal") -> float:
    """Width of one line of text in points, in the charts' font (DejaVu Sans)."""
    prop = FontProperties(family=STYLE["font.sans-serif"], size=size, weight=weight)
    width, _, _ = TextToPath().get_text_width_height_descent(text, prop, ismath=False)
    return float(width)


def wrap_to_width(text: str, width_pt: float, size: float, weight: str = "normal") -> str:
    """Wrap ``text`` between words so that no line is wider than ``width_pt`` points.

    Characters-per-line wrapping clipped bold titles at the right margin (« …numérique, p »):
    a line is measured in the font it is drawn in. A single word wider than the line stays whole.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and _text_width_pt(candidate, size, weight) > width_pt:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


# Room the title leaves on the right of the figure, in points (the legend's border and padding,
# the constrained layout's pads, and rounding).
TITLE_MARGIN_PT = 24.0
TITLE_SIZE = 10.5


def clipped_texts(fig: Figure, tolerance_px: float = 0.5) -> list[str]:
    """The visible texts of a drawn figure that go past its edges (titles, labels, captions)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    out = []
    for artist in fig.findobj(Text):
        if not artist.get_visible() or not artist.get_text().strip():
            continue
        ext = artist.get_window_extent(renderer)
        if (ext.x0 < box.x0 - tolerance_px or ext.x1 > box.x1 + tolerance_px
                or ext.y0 < box.y0 - tolerance_px or ext.y1 > box.y1 + tolerance_px):
            out.append(artist.get_text())
    return out


def _bar_record(key: str, by: str, bar_labels: Mapping[str, str] | None, sub: pd.DataFrame, n: int | None,
                caution_base: int, suppressed: bool) -> dict[str, Any]:
    """What every bar (or line) of a chart by target or group records: key, label, base, flags."""
    return {"key": key, "label": _bar_label(key, by, bar_labels), "n": n,
            "caution": _caution(sub, n, caution_base), "suppressed": suppressed}


def _bar_caption(by: str, target: str | None, bar_labels: Mapping[str, str] | None, n_text: int | str | None, *,
                 source: str, field: str | None, synthetic: bool, notes: Sequence[str]) -> str:
    """The caption of a chart by target or group (its field defaults to what the bars are)."""
    return caption_text(source=source, field=field or _default_field(by, target, bar_labels), n=n_text,
                        synthetic=synthetic, notes=notes)


def _segment(ax: Any, i: float, v: float, left: float, height: float, colour: Any) -> None:
    """One segment of a stacked horizontal bar."""
    ax.barh(i, v, left=left, height=height, color=colour, edgecolor="white", linewidth=0.6)


def _value_label(ax: Any, v: float, y: float, text: str) -> None:
    """The printed value at the end of a horizontal bar of length ``v``."""
    ax.text(v + 0.008, y, text, ha="left", va="center", fontsize=7, color="0.15")


def _drawn_codes(bar: Mapping[str, Any], codes: Sequence[str], *, suppressed: bool) -> list[dict[str, Any]]:
    """The drawn values of a stacked bar, one per answer code (NaN when the bar is hidden)."""
    return [{"key": bar["key"], "label": bar["label"], "category": code,
             "value": np.nan if suppressed else bar["values"][code], "suppressed": suppressed} for code in codes]


def caption_text(
    *,
    source: str = DEFAULT_SOURCE,
    field: str,
    n: int | str | None = None,
    synthetic: bool = True,
    notes: Sequence[str] = (),
    width: int = CAPTION_WRAP,
) -> str:
    """Build the caption printed under a chart.

    « Source : enquête CAE-IMPACT 2026, données synthétiques ; champ : entrepreneurs de la
    CAE 3 ; n = 74 », then one line per note. ``n`` is a count (printed « n = 74 ») or a text.
    Lines are wrapped to ``width`` characters; French typography is applied.
    """
    first = f"Source : {source}"
    if synthetic:
        first += ", données synthétiques"
    first += f" ; champ : {field}"
    if n is not None and not (isinstance(n, float) and math.isnan(n)):
        first += " ; " + (format_n(n) if not isinstance(n, str) else n)
    first += "."
    lines = [first, *[note for note in notes if note]]
    return "\n".join(_wrap(french_typography(line), width) for line in lines)


def _finish(
    fig: Figure,
    title: str,
    caption: str,
    handles: Sequence[Any],
    names: Sequence[str],
    **legend_kw: Any,
) -> None:
    """Put the title, the legend (under the title) and the caption on a chart.

    The title is the legend's title, so that the constrained layout reserves room for both
    (a figure suptitle and an outside legend would overlap); the caption is the figure's
    ``supxlabel``, left-aligned under the axes.
    """
    legend_kw.setdefault("ncols", len(handles))
    legend_kw.setdefault("fontsize", 7.5)
    fig.legend(
        handles,
        names,
        loc="outside upper left",
        title=wrap_to_width(french_typography(title), fig.get_figwidth() * 72 - TITLE_MARGIN_PT,
                            TITLE_SIZE, "bold") if title else None,
        alignment="left",
        title_fontproperties={"weight": "bold", "size": TITLE_SIZE},
        borderaxespad=0.2,
        borderpad=0.2,
        **legend_kw,
    )
    if caption:
        fig.supxlabel(caption, x=0.01, ha="left", fontsize=7, color="0.3", linespacing=1.35)


def _pct_formatter(decimals: int = 0, absolute: bool = False) -> FuncFormatter:
    def fmt(x: float, _pos: int) -> str:
        return format_pct(abs(x) if absolute else x, decimals)

    return FuncFormatter(fmt)


def _eur_formatter() -> FuncFormatter:
    return FuncFormatter(lambda x, _pos: format_eur(x))


def _flag(value: Any) -> bool:
    return bool(truthy(value))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: the indicator table lacks columns {missing}")


def _natural_key(key: str) -> tuple:
    parts = re.split(r"(\d+)", str(key))
    return tuple(int(p) if p.isdigit() else p for p in parts)


def _one_indicator(df: pd.DataFrame, indicator_id: str | None, what: str) -> pd.DataFrame:
    if indicator_id is not None:
        rows = df[df["indicator_id"] == indicator_id]
        if rows.empty:
            raise ValueError(f"{what}: no row for indicator {indicator_id!r}")
        return rows
    ids = df["indicator_id"].dropna().unique()
    if len(ids) != 1:
        raise ValueError(f"{what}: pass indicator_id, the table holds {len(ids)} indicators")
    return df


def _is_total(value: Any) -> bool:
    return is_missing(value) or str(value) in ("", "total")


def _select_bars(
    rows: pd.DataFrame, by: str, target: str | None, breakdown: str, what: str
) -> tuple[pd.DataFrame, str]:
    """Rows of the bars and the column naming a bar (``target`` or ``group``)."""
    if by == "target":
        if "breakdown" in rows.columns:
            rows = rows[rows["breakdown"].map(_is_total)]
        return rows, "target"
    if by == "group":
        if target is None:
            raise ValueError(f"{what}: by='group' needs target=")
        rows = rows[(rows["target"] == target) & (rows["breakdown"] == breakdown)]
        if rows.empty:
            raise ValueError(f"{what}: no row for target {target!r}, breakdown {breakdown!r}")
        return rows, "group"
    raise ValueError(f"{what}: by must be 'target' or 'group', not {by!r}")


def _bar_order(keys: Sequence[str], by: str, order: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(str(k) for k in keys))
    if order is not None:
        return [k for k in order if k in present] + [k for k in present if k not in order]
    if by == "target":
        others = sorted((k for k in present if k != CONSORTIUM), key=_natural_key)
        return others + ([CONSORTIUM] if CONSORTIUM in present else [])
    return present


def _split_bars(rows: pd.DataFrame, key_col: str) -> dict[str, pd.DataFrame]:
    """The rows of each bar by key, in table order (one grouping rather than a filter per bar)."""
    return {str(k): g for k, g in rows.groupby(rows[key_col].astype(str), sort=False)}


def _bar_label(key: str, by: str, labels: Mapping[str, str] | None) -> str:
    if labels and key in labels:
        return labels[key]
    return target_label(key) if by == "target" else str(key)


def _n_of(rows: pd.DataFrame) -> float | None:
    if "n_unweighted" not in rows.columns:
        return None
    vals = pd.to_numeric(rows["n_unweighted"], errors="coerce").dropna()
    return float(vals.max()) if not vals.empty else None


def _caution(rows: pd.DataFrame, n: float | None, caution_base: int) -> bool:
    small = n is not None and n < caution_base
    flagged = "flag_caution" in rows.columns and any(_flag(v) for v in rows["flag_caution"])
    return small or flagged


def _tick_label(label: str, n: float | None, caution: bool, width: int = 22) -> str:
    text = _wrap(label, width) + ("*" if caution else "")
    if n is not None:
        text += "\n" + format_n(n)
    return text


def _caution_note(caution_base: int) -> str:
    return (
        f"* : base inférieure à {caution_base} répondants ou précision limitée, "
        "résultat à interpréter avec prudence."
    )


def _text_colour(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def _default_field(by: str, target: str | None, labels: Mapping[str, str] | None) -> str:
    if by == "group" and target is not None:
        return "entrepreneurs " + _de_phrase(target, labels)
    return "entrepreneurs des CAE de l'étude"


def _de_phrase(target: str, labels: Mapping[str, str] | None) -> str:
    return de(target_phrase(target, labels))


def _value_fmt(unit: str, decimals: int):
    if unit == "pct":
        return lambda v: format_pct(v, decimals)
    if unit == "eur":
        return lambda v: format_eur(v, decimals)
    return lambda v: format_number(v, decimals)


# --- diverging Likert ------------------------------------------------------------------------


def unfavourable_first(codes_in_questionnaire_order: Sequence[str]) -> list[str]:
    """The choices of an ordered scale as :func:`diverging_likert` takes them.

    Questionnaires (and the codebook) list an agreement or frequency scale from its most
    favourable answer; the diverging chart draws the unfavourable answers left of zero and the
    favourable ones right, its legend read in the same order, so it wants the least favourable
    first.

    >>> unfavourable_first(["frequemment", "regulierement", "rarement", "jamais"])
    ['jamais', 'rarement', 'regulierement', 'frequemment']
    """
    return list(reversed(list(codes_in_questionnaire_order)))


def diverging_likert(
    df: pd.DataFrame,
    *,
    bare: bool = False,
    categories: Sequence[str],
    labels: Mapping[str, str] | None = None,
    neutral: str | None = None,
    n_negative: int | None = None,
    missing: Sequence[str] = (),
    indicator_id: str | None = None,
    by: str = "target",
    target: str | None = None,
    breakdown: str = "total",
    order: Sequence[str] | None = None,
    bar_labels: Mapping[str, str] | None = None,
    title: str | None = None,
    source: str = DEFAULT_SOURCE,
    field: str | None = None,
    synthetic: bool = True,
    caution_base: int = 30,
    decimals: int = 0,
) -> ChartResult:
    """Diverging stacked bars of an ordered scale (Likert, frequency), one bar per target or group.

    Meaning of the arguments:

    df
        Distribution rows of the indicator table: ``indicator_id, target, breakdown, group,
        category, estimate, n_unweighted, suppressed`` (``flag_caution`` used when present).
        ``estimate`` is the share of each choice among all answers, missing choices included
        (the ``distribution`` rule), so the bar and the missing panel add up to 100 %.
        ``n_unweighted`` is the bar's unweighted base (the largest value of its rows is shown).
    categories
        Choice codes of the valid answers, **from the most negative to the most positive**.
    labels
        Choice code → French label (for the legend); the code is shown when absent.
    neutral
        Code of a middle choice, drawn centred on zero in grey (must be in ``categories``).
    n_negative
        How many of ``categories`` (neutral excluded) go left of zero; default half.
    missing
        Codes of the missing choices (« Ne sait pas »), drawn apart in a panel on the right.
    by, target, breakdown
        ``by="target"``: one bar per target (the ``total`` rows), the consortium last;
        ``by="group"``: one bar per group of ``breakdown`` within ``target``.
    order, bar_labels
        Order of the bars (keys) and key → label; defaults to CAE 1 … CAE n, consortium last.
    title, source, field, synthetic
        Title (what the chart shows), survey source, field and the synthetic-data mention of
        the caption.

    A bar with any suppressed row is not drawn (« s »): its other categories would reveal the
    suppressed one by difference.
    """
    what = "diverging_likert"
    _require(df, ["indicator_id", "target", "category", "estimate", "suppressed"], what)
    labels = dict(labels or {})
    categories = [str(c) for c in categories]
    missing = [str(c) for c in missing]
    if neutral is not None and neutral not in categories:
        raise ValueError(f"{what}: neutral {neutral!r} is not in categories")
    valid = [c for c in categories if c != neutral]
    n_neg = len(valid) // 2 if n_negative is None else int(n_negative)
    if not 0 <= n_neg <= len(valid):
        raise ValueError(f"{what}: n_negative={n_neg} out of range")
    neg, pos = valid[:n_neg], valid[n_neg:]
    if len(neg) > 4 or len(pos) > 4:
        raise ValueError(f"{what}: at most 4 categories on each side of the scale")

    rows = _one_indicator(df, indicator_id, what)
    rows, key_col = _select_bars(rows, by, target, breakdown, what)
    known = set(categories) | set(missing)
    unknown = sorted({str(c) for c in rows["category"].dropna()} - known)
    if unknown:
        raise ValueError(f"{what}: categories {unknown} are neither in categories nor missing")
    keys = _bar_order(rows[key_col].astype(str).tolist(), by, order)

    neg_colours = dict(zip(reversed(neg), _BRBG_NEG.get(len(neg), []), strict=False))
    pos_colours = dict(zip(pos, _BRBG_POS.get(len(pos), []), strict=False))
    colours = {**neg_colours, **pos_colours}
    if neutral is not None:
        colours[neutral] = NEUTRAL_COLOUR
    for i, code in enumerate(missing):
        colours[code] = MISSING_COLOURS[i % len(MISSING_COLOURS)]

    bars = []
    by_key = _split_bars(rows, key_col)
    for key in keys:
        sub = by_key.get(key, rows.iloc[:0])
        n = _n_of(sub)
        suppressed = any(_flag(v) for v in sub["suppressed"])
        values: dict[str, float] = {}
        if not suppressed:
            first: dict[str, float] = {}  # first estimate of each category
            for code, est in zip(sub["category"].astype(str), sub["estimate"], strict=True):
                first.setdefault(code, est)
            for code in categories + missing:
                values[code] = float(first[code]) if code in first else 0.0
        bars.append({**_bar_record(key, by, bar_labels, sub, n, caution_base, suppressed), "values": values})

    def half_neutral(b: dict) -> float:
        return b["values"].get(neutral, 0.0) / 2 if neutral else 0.0

    extent = 0.0
    for b in bars:
        if b["suppressed"]:
            continue
        h = half_neutral(b)
        extent = max(
            extent, h + sum(b["values"][c] for c in neg), h + sum(b["values"][c] for c in pos)
        )
    lim = min(1.0, max(0.4, math.ceil(round((extent + 0.03) * 5, 6)) / 5))
    miss_max = max(
        [sum(b["values"].get(c, 0.0) for c in missing) for b in bars if not b["suppressed"]] or [0]
    )

    notes = []
    if any(b["suppressed"] for b in bars):
        notes.append(SUPPRESSED_NOTE)
    if any(b["caution"] for b in bars):
        notes.append(_caution_note(caution_base))
    notes.append(
        "Réponses défavorables à gauche de l'axe, favorables à droite"
        + (" ; la réponse médiane est centrée sur l'axe." if neutral else ".")
    )
    if by == "target":
        n_text = "effectif de répondants (n) indiqué sous chaque libellé"
    else:
        ind_id = str(rows["indicator_id"].iloc[0])
        own = df[(df["indicator_id"] == ind_id) & (df["target"] == target)]
        if "breakdown" in own.columns:
            own = own[own["breakdown"].map(_is_total)]
        n_text = _n_of(own)
    caption = _bar_caption(by, target, bar_labels, n_text, source=source, field=field, synthetic=synthetic,
                           notes=notes)
    ind_label = _indicator_label(rows)
    if title is None:
        title = f"{ind_label} : répartition des réponses" + (", par CAE" if by == "target" else "")

    k = len(bars)
    legend_codes = categories + missing
    per_entry = max(10, int((430 / max(1, len(legend_codes)) - 24) / 4.1))
    legend_lines = max(len(_wrap(labels.get(c, c), per_entry).split("\n")) for c in legend_codes)
    height = 1.25 + 0.46 * k + 0.13 * legend_lines + 0.13 * caption.count("\n")
    drawn: list[dict] = []
    with _style():
        fig = _new_figure(height)
        if missing:
            ax, axm = fig.subplots(1, 2, sharey=True, width_ratios=[5.2, 1])
        else:
            ax, axm = fig.subplots(1, 1), None
        y = np.arange(k)
        bar_h = 0.62
        for i, b in enumerate(bars):
            if b["suppressed"]:
                ax.text(
                    0,
                    i,
                    SUPPRESSED_MARK,
                    ha="center",
                    va="center",
                    fontsize=9,
                    style="italic",
                    color="0.25",
                    zorder=4,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
                )
                if axm is not None:
                    axm.text(
                        0.02,
                        i,
                        SUPPRESSED_MARK,
                        ha="left",
                        va="center",
                        fontsize=9,
                        style="italic",
                        color="0.25",
                        transform=blended_transform_factory(axm.transAxes, axm.transData),
                    )
                drawn += _drawn_codes(b, legend_codes, suppressed=True)
                continue
            h = half_neutral(b)
            segments: list[tuple[str, float, float]] = []
            left = -h
            for code in reversed(neg):
                v = b["values"][code]
                left -= v
                segments.append((code, left, v))
            if neutral is not None:
                segments.append((neutral, -h, 2 * h))
            start = h
            for code in pos:
                v = b["values"][code]
                segments.append((code, start, v))
                start += v
            for code, lft, v in segments:
                if v <= 0:
                    continue
                _segment(ax, i, v, lft, bar_h, colours[code])
                if v >= 0.075:
                    ax.text(
                        lft + v / 2,
                        i,
                        format_pct(v, decimals),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=_text_colour(colours[code]),
                    )
            if axm is not None:
                lft = 0.0
                for code in missing:
                    v = b["values"][code]
                    if v > 0:
                        _segment(axm, i, v, lft, bar_h, colours[code])
                    lft += v
                axm.text(
                    lft + 0.01,
                    i,
                    format_pct(lft, decimals),
                    ha="left",
                    va="center",
                    fontsize=7,
                    color="0.2",
                )
            drawn += _drawn_codes(b, legend_codes, suppressed=False)
        ax.axvline(0, color="0.2", linewidth=0.8)
        ax.set_xlim(-lim, lim)
        ticks = [t for t in np.round(np.arange(-1.0, 1.0001, 0.2), 2) if abs(t) <= lim + 1e-9]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(_pct_formatter(0, absolute=True))
        ax.set_yticks(y, [_tick_label(b["label"], b["n"], b["caution"]) for b in bars])
        ax.set_ylim(k - 0.5, -0.5)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        if by == "target" and k > 1 and keys[-1] == CONSORTIUM:
            ax.axhline(k - 1.5, color="0.6", linewidth=0.6, linestyle=":")
        if axm is not None:
            axm.set_xlim(0, max(0.12, miss_max * 1.9 + 0.06))
            axm.set_xticks([])
            axm.spines["left"].set_visible(False)
            axm.spines["bottom"].set_visible(False)
            axm.tick_params(axis="y", left=False, labelleft=False)
            miss_title = " / ".join(labels.get(c, c) for c in missing)
            axm.set_title(_wrap(miss_title, 14), fontsize=7.5, color="0.3")
            if by == "target" and k > 1 and keys[-1] == CONSORTIUM:
                axm.axhline(k - 1.5, color="0.6", linewidth=0.6, linestyle=":")
        handles = [Patch(facecolor=colours[c], edgecolor="white") for c in legend_codes]
        _finish(
            fig,
            "" if bare else title,
            "" if bare else caption,
            handles,
            [_wrap(labels.get(c, c), per_entry) for c in legend_codes],
            handlelength=1.2,
            columnspacing=1.0,
            handletextpad=0.4,
        )

    alt = _likert_alt(title, bars, categories, missing, labels, neutral, decimals)
    return ChartResult(fig, alt, pd.DataFrame(drawn))


def _indicator_label(rows: pd.DataFrame) -> str:
    if "indicator_label" in rows.columns:
        vals = rows["indicator_label"].dropna()
        if not vals.empty:
            return str(vals.iloc[0])
    return str(rows["indicator_id"].iloc[0])


def _likert_alt(title, bars, categories, missing, labels, neutral, decimals) -> str:
    parts = [f"Graphique en barres divergentes : {title}."]
    parts.append(
        "Chaque barre répartit les réponses, des plus défavorables à gauche de l'axe central "
        "aux plus favorables à droite"
        + ("; les réponses sans avis exploitable sont présentées à part." if missing else ".")
    )
    for b in bars:
        head = b["label"] + (f" ({format_n(b['n'])})" if b["n"] is not None else "")
        if b["suppressed"]:
            parts.append(f"{head} : résultat non diffusé (secret statistique).")
            continue
        items = ", ".join(
            f"{labels.get(c, c)} {format_pct(b['values'][c], decimals)}" for c in categories
        )
        miss = ", ".join(
            f"{labels.get(c, c)} {format_pct(b['values'][c], decimals)}" for c in missing
        )
        parts.append(f"{head} : {items}" + (f" ; {miss}." if miss else "."))
    return french_typography(" ".join(parts))


# --- dot and interval ------------------------------------------------------------------------


def _mark_suppressed_row(ax: Any, i: int, transform: Any, value_x: float, band: str = "") -> None:
    """Mark a row whose value is not published.

    « s » (or the band of a coded row, « ≥ 90 % ») at the start of row ``i`` and in its value
    column.
    """
    mark = band or SUPPRESSED_MARK
    ax.text(0.01, i, mark, transform=transform, ha="left", va="center",
            style="italic", color="0.25", fontsize=9)
    ax.text(value_x, i, mark, transform=transform, ha="left", va="center",
            style="italic", color="0.25")


def dot_interval(
    df: pd.DataFrame,
    *,
    bare: bool = False,
    indicator_id: str | None = None,
    category: str | None = None,
    by: str = "target",
    target: str | None = None,
    breakdown: str = "total",
    reference_target: str = CONSORTIUM,
    order: Sequence[str] | None = None,
    bar_labels: Mapping[str, str] | None = None,
    title: str | None = None,
    source: str = DEFAULT_SOURCE,
    field: str | None = None,
    synthetic: bool = True,
    caution_base: int = 30,
    decimals: int = 0,
    unit: str = "pct",
    confidence_level: float = 0.95,
) -> ChartResult:
    """Dot-and-interval chart of one estimate across CAEs (or groups), with a reference line.

    Meaning of the arguments:

    df
        Indicator table rows: ``indicator_id, target, breakdown, group, category, estimate,
        ci_low, ci_high, n_unweighted, suppressed``; ``significant`` and ``flag_caution`` used
        when present (``significant`` is the test against the reference, corrected upstream).
    indicator_id, category
        The estimate to draw (``category`` for one choice of a distribution).
    by, target, breakdown
        ``by="target"``: one line per target, the reference (``reference_target``, the
        consortium) drawn last and as a dashed vertical line; ``by="group"``: one line per group
        of ``breakdown`` within ``target``, the reference being the target's total.
    unit
        ``pct`` (axis 0–100 %) or ``eur`` / ``number`` (axis from the data).

    Suppressed rows are not drawn: the line shows « s ». Value labels (« 85 % ») are printed
    in a column on the right; ``*`` marks a base under ``caution_base``.
    """
    what = "dot_interval"
    _require(df, ["indicator_id", "target", "estimate", "ci_low", "ci_high", "suppressed"], what)
    rows = _one_indicator(df, indicator_id, what)
    ind = str(rows["indicator_id"].iloc[0])
    if "category" in rows.columns:
        if category is None:
            rows = rows[rows["category"].map(lambda v: is_missing(v) or str(v) == "")]
        else:
            rows = rows[rows["category"].astype(str) == category]
    if by == "group":
        ref_row = (
            select_row(df, ind, target, breakdown="total", category=category) if target else None
        )
        ref_label = "Ensemble " + _de_phrase(target, bar_labels) if target else None
    else:
        ref_row = select_row(df, ind, reference_target, category=category)
        ref_label = _bar_label(reference_target, "target", bar_labels)
    rows, key_col = _select_bars(rows, by, target, breakdown, what)
    if by == "target":
        rows = rows[rows["target"] != reference_target]
    keys = _bar_order(rows[key_col].astype(str).tolist(), by, order)
    fmt = _value_fmt(unit, decimals)

    lines = []
    by_key = _split_bars(rows, key_col)
    for key in keys:
        r = by_key.get(key, rows.iloc[:0]).iloc[0]
        lines.append(_line_record(r, key, _bar_label(key, by, bar_labels), caution_base, False))
    if ref_row is not None:
        lines.append(_line_record(ref_row, "reference", ref_label, caution_base, True))
    ref_value = None
    if ref_row is not None and not _flag(ref_row.get("suppressed")):
        ref_value = float(ref_row["estimate"])

    any_sig = any(ln["significant"] for ln in lines if not ln["reference"])
    notes = []
    level = format_pct(confidence_level)
    notes.append(f"Trait horizontal : intervalle de confiance à {level}.")
    if any(ln["suppressed"] for ln in lines):
        notes.append(SUPPRESSED_NOTE)
    if any(ln["caution"] for ln in lines):
        notes.append(_caution_note(caution_base))
    if any_sig:
        if by == "group" and target:
            ref_phrase = "l'ensemble " + _de_phrase(target, bar_labels)
        else:
            ref_phrase = target_phrase(reference_target, bar_labels)
        notes.append(
            f"Losange : écart statistiquement significatif avec {ref_phrase} "
            "(tests corrigés par la méthode de Benjamini-Hochberg)."
        )
    if by == "target":
        n_text = "effectif de répondants (n) indiqué sous chaque libellé"
    else:
        n_text = lines[-1]["n"] if lines and lines[-1]["reference"] else None
    caption = _bar_caption(by, target, bar_labels, n_text, source=source, field=field, synthetic=synthetic,
                           notes=notes)
    if title is None:
        title = _indicator_label(rows) + (", par CAE" if by == "target" else "")

    k = len(lines)
    height = 1.2 + 0.36 * k + 0.13 * caption.count("\n")
    drawn = []
    with _style():
        fig = _new_figure(height)
        ax = fig.subplots(1, 1)
        right = blended_transform_factory(ax.transAxes, ax.transData)
        for i, ln in enumerate(lines):
            if ln["suppressed"]:
                _mark_suppressed_row(ax, i, right, 1.02, ln.get("band", ""))
                drawn.append(
                    {
                        "key": ln["key"],
                        "label": ln["label"],
                        "value": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "suppressed": True,
                    }
                )
                continue
            if ln["reference"]:
                colour, marker, size = "0.15", "s", 5.5
            elif ln["significant"]:
                colour, marker, size = OKABE_ITO["vermilion"], "D", 6
            else:
                colour, marker, size = OKABE_ITO["blue"], "o", 6
            if ln["lo"] is not None and ln["hi"] is not None:
                ax.hlines(i, ln["lo"], ln["hi"], color=colour, linewidth=1.6, alpha=0.85)
            ax.plot(
                [ln["est"]],
                [i],
                marker=marker,
                color=colour,
                markersize=size,
                linestyle="none",
                zorder=3,
            )
            ax.text(
                1.02,
                i,
                fmt(ln["est"]) + ("*" if ln["caution"] else ""),
                transform=right,
                ha="left",
                va="center",
                fontsize=8,
                fontweight="bold" if ln["reference"] else "normal",
            )
            drawn.append(
                {
                    "key": ln["key"],
                    "label": ln["label"],
                    "value": ln["est"],
                    "ci_low": ln["lo"],
                    "ci_high": ln["hi"],
                    "suppressed": False,
                }
            )
        if ref_value is not None:
            ax.axvline(ref_value, color="0.15", linestyle=(0, (4, 3)), linewidth=0.8, zorder=1)
        if unit == "pct":
            ax.set_xlim(0, 1)
            ax.xaxis.set_major_locator(FixedLocator(np.round(np.arange(0, 1.0001, 0.2), 2)))
            ax.xaxis.set_major_formatter(_pct_formatter(0))
        else:
            vals = [
                v
                for ln in lines
                if not ln["suppressed"]
                for v in (ln["est"], ln["lo"], ln["hi"])
                if v is not None
            ]
            top = max(vals) * 1.1 if vals else 1
            ax.set_xlim(0, top)
            ax.xaxis.set_major_formatter(
                _eur_formatter() if unit == "eur" else FuncFormatter(lambda x, _p: format_number(x))
            )
        ax.set_yticks(range(k), [_tick_label(ln["label"], ln["n"], ln["caution"]) for ln in lines])
        for lbl, ln in zip(ax.get_yticklabels(), lines, strict=True):
            if ln["reference"]:
                lbl.set_fontweight("bold")
        ax.set_ylim(k - 0.5, -0.6)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        if ref_row is not None and k > 1:
            ax.axhline(k - 1.5, color="0.6", linewidth=0.6, linestyle=":")
        handles = [Line2D([], [], color=OKABE_ITO["blue"], marker="o", linewidth=1.6, markersize=5)]
        names = ["Estimation et intervalle de confiance"]
        if any_sig:
            handles.append(
                Line2D(
                    [], [], color=OKABE_ITO["vermilion"], marker="D", linewidth=1.6, markersize=5
                )
            )
            names.append("Écart significatif avec la référence")
        if ref_value is not None:
            handles.append(Line2D([], [], color="0.15", linestyle=(0, (4, 3)), linewidth=0.8))
            names.append(f"{ref_label} : {fmt(ref_value)}")
        _finish(fig, "" if bare else title, "" if bare else caption, handles, names, handlelength=2.0, columnspacing=1.2)

    alt = _dot_alt(title, lines, ref_label, ref_value, fmt, decimals, unit, level)
    return ChartResult(fig, alt, pd.DataFrame(drawn))


def _num(v: Any) -> float | None:
    return None if is_missing(v) else float(v)


def _line_record(r: pd.Series, key: str, label: str, caution_base: int, reference: bool) -> dict:
    n = _num(r.get("n_unweighted"))
    suppressed = _flag(r.get("suppressed"))
    return {
        "key": key,
        "label": label,
        "n": n,
        "suppressed": suppressed,
        "band": band_text(_num(r.get("band_low")), _num(r.get("band_high")), short=True)
        if suppressed else "",
        "est": None if suppressed else _num(r["estimate"]),
        "lo": None if suppressed else _num(r.get("ci_low")),
        "hi": None if suppressed else _num(r.get("ci_high")),
        "significant": (not suppressed) and _flag(r.get("significant")),
        "caution": (n is not None and n < caution_base) or _flag(r.get("flag_caution")),
        "reference": reference,
    }


def _dot_alt(title, lines, ref_label, ref_value, fmt, decimals, unit, level) -> str:
    parts = [f"Graphique en points avec intervalles de confiance à {level} : {title}."]
    if ref_value is not None:
        parts.append(f"Ligne de référence : {ref_label}, {fmt(ref_value)}.")
    for ln in lines:
        head = ln["label"] + (f" ({format_n(ln['n'])})" if ln["n"] is not None else "")
        if ln["suppressed"]:
            parts.append(f"{head} : résultat non diffusé (secret statistique).")
            continue
        text = f"{head} : {fmt(ln['est'])}"
        if ln["lo"] is not None and ln["hi"] is not None and ln["lo"] == ln["hi"]:
            text += ", sans marge d'erreur d'échantillonnage"  # a census or a calibrated figure
        elif ln["lo"] is not None and ln["hi"] is not None:
            text += (
                f", intervalle {format_ci(ln['lo'], ln['hi'], decimals, style='prose', kind=unit)}"
            )
        if ln["significant"]:
            text += ", écart significatif avec la référence"
        if ln["caution"]:
            text += ", à interpréter avec prudence"
        parts.append(text + ".")
    return french_typography(" ".join(parts))


# --- before / after --------------------------------------------------------------------------


def before_after(
    df: pd.DataFrame,
    *,
    bare: bool = False,
    indicator_id: str | None = None,
    by: str = "target",
    target: str | None = None,
    breakdown: str = "total",
    before: str = "before",
    after: str = "after",
    difference: str = "difference",
    order: Sequence[str] | None = None,
    bar_labels: Mapping[str, str] | None = None,
    before_label: str = "Avant l'entrée dans la CAE",
    after_label: str = "Aujourd'hui",
    title: str | None = None,
    source: str = DEFAULT_SOURCE,
    field: str | None = None,
    synthetic: bool = True,
    caution_base: int = 30,
    decimals: int = 0,
    unit: str = "eur",
) -> ChartResult:
    """Dumbbell chart of paired values (e.g. monthly income before entering the CAE and now).

    Meaning of the arguments:

    df
        Rows of a ``paired_difference`` indicator: ``indicator_id, target, breakdown, group,
        category, estimate, n_unweighted, suppressed``, where ``category`` is ``before``,
        ``after`` (the two means) and optionally ``difference`` (mean of after − before, whose
        ``significant`` flag is shown: the gap is printed in bold when significant).
    before, after, difference
        The ``category`` values of the three kinds of rows.
    unit
        ``eur`` (default, axis in euros) or ``number``.

    A line with its before or after row suppressed is not drawn (« s »), and neither is its gap.
    """
    what = "before_after"
    _require(df, ["indicator_id", "target", "category", "estimate", "suppressed"], what)
    rows = _one_indicator(df, indicator_id, what)
    rows, key_col = _select_bars(rows, by, target, breakdown, what)
    keys = _bar_order(rows[key_col].astype(str).tolist(), by, order)
    fmt = _value_fmt(unit, decimals)
    fmt_plus = (
        (lambda v: format_eur(v, decimals, plus=True))
        if unit == "eur"
        else (lambda v: format_number(v, decimals, plus=True))
    )

    lines = []
    by_key = _split_bars(rows, key_col)
    for key in keys:
        sub = by_key.get(key, rows.iloc[:0])
        cat = sub["category"].astype(str)
        b, a, d = sub[cat == before], sub[cat == after], sub[cat == difference]
        n = _n_of(sub[cat.isin([before, after])])
        suppressed = b.empty or a.empty or any(_flag(v) for v in sub["suppressed"])
        diff_row = d.iloc[0] if not d.empty else None
        lines.append(
            {
                **_bar_record(key, by, bar_labels, sub, n, caution_base, suppressed),
                "before": None if suppressed else _num(b["estimate"].iloc[0]),
                "after": None if suppressed else _num(a["estimate"].iloc[0]),
                "diff": None if suppressed or diff_row is None else _num(diff_row["estimate"]),
                "significant": (not suppressed)
                and diff_row is not None
                and _flag(diff_row.get("significant")),
                # no verdict where this report did not test the change (the consortium's change
                # in a CAE's report: its test is in the consortium's report)
                "tested": (not suppressed)
                and diff_row is not None
                and truthy(diff_row.get("significant")) is not None,
            }
        )

    notes = []
    if any(ln["significant"] for ln in lines):
        notes.append(
            "Écart en gras : statistiquement significatif (tests corrigés par la "
            "méthode de Benjamini-Hochberg)."
        )
    untested = [ln["label"] for ln in lines if ln["diff"] is not None and not ln["tested"]]
    if untested and len(untested) < len(lines):
        notes.append(
            "Écart non testé dans ce rapport pour : " + ", ".join(untested) + " (son test figure "
            "dans le rapport qui le concerne)."
        )
    if any(ln["suppressed"] for ln in lines):
        notes.append(SUPPRESSED_NOTE)
    if any(ln["caution"] for ln in lines):
        notes.append(_caution_note(caution_base))
    notes.append("Valeurs moyennes déclarées par les mêmes personnes pour les deux dates.")
    if by == "target":
        n_text = "effectif de répondants (n) indiqué sous chaque libellé"
    else:
        total = select_row(df, str(rows["indicator_id"].iloc[0]), target, category=after)
        n_text = _num(total.get("n_unweighted")) if total is not None else None
    caption = _bar_caption(by, target, bar_labels, n_text, source=source, field=field, synthetic=synthetic,
                           notes=notes)
    if title is None:
        title = _indicator_label(rows) + " : avant l'entrée dans la CAE et aujourd'hui"

    k = len(lines)
    height = 1.25 + 0.38 * k + 0.13 * caption.count("\n")
    c_before, c_after = OKABE_ITO["orange"], OKABE_ITO["blue"]
    drawn = []
    with _style():
        fig = _new_figure(height)
        ax = fig.subplots(1, 1)
        right = blended_transform_factory(ax.transAxes, ax.transData)
        vals = [v for ln in lines for v in (ln["before"], ln["after"]) if v is not None]
        top = _nice_ceiling(max(vals) * 1.18) if vals else 1.0
        pad = top * 0.015
        for i, ln in enumerate(lines):
            if ln["suppressed"]:
                _mark_suppressed_row(ax, i, right, 1.03)
                drawn.append(
                    {
                        "key": ln["key"],
                        "label": ln["label"],
                        "before": np.nan,
                        "after": np.nan,
                        "difference": np.nan,
                        "suppressed": True,
                    }
                )
                continue
            b, a = ln["before"], ln["after"]
            ax.hlines(i, min(a, b), max(a, b), color="0.7", linewidth=2.4, zorder=1)
            ax.plot(
                [b],
                [i],
                marker="o",
                markersize=7,
                color=c_before,
                linestyle="none",
                markeredgecolor="white",
                markeredgewidth=0.6,
                zorder=3,
            )
            ax.plot(
                [a],
                [i],
                marker="D",
                markersize=6.5,
                color=c_after,
                linestyle="none",
                markeredgecolor="white",
                markeredgewidth=0.6,
                zorder=3,
            )
            lo_v, hi_v = (b, a) if b <= a else (a, b)
            ax.text(
                lo_v - pad * 2.2, i, fmt(lo_v), ha="right", va="center", fontsize=7.5, color="0.2"
            )
            ax.text(
                hi_v + pad * 2.2, i, fmt(hi_v), ha="left", va="center", fontsize=7.5, color="0.2"
            )
            if ln["diff"] is not None:
                ax.text(
                    1.03,
                    i,
                    fmt_plus(ln["diff"]),
                    transform=right,
                    ha="left",
                    va="center",
                    fontsize=8,
                    fontweight="bold" if ln["significant"] else "normal",
                )
            drawn.append(
                {
                    "key": ln["key"],
                    "label": ln["label"],
                    "before": b,
                    "after": a,
                    "difference": ln["diff"] if ln["diff"] is not None else np.nan,
                    "suppressed": False,
                }
            )
        if any(ln["diff"] is not None for ln in lines):
            ax.text(
                1.03,
                -0.75,
                "Écart",
                transform=right,
                ha="left",
                va="bottom",
                fontsize=7.5,
                color="0.3",
            )
        ax.set_xlim(0, top)
        ax.xaxis.set_major_formatter(
            _eur_formatter() if unit == "eur" else FuncFormatter(lambda x, _p: format_number(x))
        )
        ax.set_yticks(range(k), [_tick_label(ln["label"], ln["n"], ln["caution"]) for ln in lines])
        ax.set_ylim(k - 0.5, -0.6)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        if by == "target" and k > 1 and keys[-1] == CONSORTIUM:
            ax.axhline(k - 1.5, color="0.6", linewidth=0.6, linestyle=":")
        handles = [
            Line2D([], [], marker="o", color=c_before, linestyle="none", markersize=6),
            Line2D([], [], marker="D", color=c_after, linestyle="none", markersize=5.5),
        ]
        _finish(fig, "" if bare else title, "" if bare else caption, handles, [before_label, after_label])

    alt = _before_after_alt(title, lines, before_label, after_label, fmt, fmt_plus)
    return ChartResult(fig, alt, pd.DataFrame(drawn))


def _nice_ceiling(x: float) -> float:
    if x <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(x))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * mag >= x:
            return step * mag
    return 10 * mag


def _before_after_alt(title, lines, before_label, after_label, fmt, fmt_plus) -> str:
    parts = [
        f"Graphique en haltères : {title}. Pour chaque ligne, un point pour "
        f"« {before_label} » et un losange pour « {after_label} »."
    ]
    for ln in lines:
        head = ln["label"] + (f" ({format_n(ln['n'])})" if ln["n"] is not None else "")
        if ln["suppressed"]:
            parts.append(f"{head} : résultat non diffusé (secret statistique).")
            continue
        text = f"{head} : {fmt(ln['before'])} avant, {fmt(ln['after'])} aujourd'hui"
        if ln["diff"] is not None:
            text += f", écart moyen {fmt_plus(ln['diff'])}"
            if ln.get("tested", True):
                text += " (significatif)" if ln["significant"] else " (non significatif)"
        parts.append(text + ".")
    return french_typography(" ".join(parts))


# --- profile comparison ----------------------------------------------------------------------


def profile_comparison(
    df: pd.DataFrame,
    items: Sequence[ProfileItem],
    *,
    bare: bool = False,
    target: str,
    consortium: str = CONSORTIUM,
    references: pd.DataFrame | None = None,
    target_labels: Mapping[str, str] | None = None,
    reference_label: str = "Référence nationale",
    title: str | None = None,
    source: str = DEFAULT_SOURCE,
    field: str | None = None,
    synthetic: bool = True,
    caution_base: int = 30,
    decimals: int = 0,
) -> ChartResult:
    """Grouped horizontal bars: the target's profile vs the consortium vs a national reference.

    Meaning of the arguments:

    df
        Indicator table rows (``total`` breakdown) of the profile shares: ``indicator_id,
        target, breakdown, category, estimate, n_unweighted, suppressed`` (``flag_caution``
        used when present), for ``target`` and ``consortium``.
    items
        The lines of the chart, top to bottom (:class:`ProfileItem`: indicator, category, French
        label and national reference).
    target, consortium
        The CAE shown and the consortium; when ``target == consortium`` only two bars per line.
    ``references``
        The national reference table (default :func:`cae_impact.render.references.load_references`).

    The caption prints the survey source, each national reference's source and field, and the
    comparability caveat (a comparison of populations, not a counterfactual). A suppressed
    estimate is not drawn (« s »); a line without reference shows « n. d. » (non disponible).
    """
    what = "profile_comparison"
    _require(df, ["indicator_id", "target", "estimate", "suppressed"], what)
    if not items:
        raise ValueError(f"{what}: no items")
    refs = references
    series = [target] if target == consortium else [target, consortium]
    series_labels = [target_label(s, target_labels) for s in series]
    records = []
    used_refs = []
    for item in items:
        rec = {"item": item, "values": {}, "ref": None}
        for s in series:
            row = select_row(df, item.indicator_id, s, category=item.category)
            rec["values"][s] = row
        ref = item.reference
        if ref is None and item.indicator_id in DEFAULT_PROFILE_REFERENCES:
            ref = DEFAULT_PROFILE_REFERENCES[item.indicator_id]
        if isinstance(ref, str):
            if refs is None:
                refs = load_references()
            ref = get_reference(ref, refs)
        elif ref is not None and not isinstance(ref, pd.Series):
            ref = _reference_from_object(ref)
        if ref is not None:
            rec["ref"] = ref
            used_refs.append(ref)
        records.append(rec)

    ns = {s: [] for s in series}
    caution_any = False
    suppressed_any = False
    for rec in records:
        for s in series:
            row = rec["values"][s]
            if row is None:
                continue
            n = _num(row.get("n_unweighted"))
            if n is not None:
                ns[s].append(n)
            if _flag(row.get("suppressed")):
                suppressed_any = True
            elif (n is not None and n < caution_base) or _flag(row.get("flag_caution")):
                caution_any = True

    def n_span(values: list[float]) -> str | None:
        if not values:
            return None
        lo, hi = min(values), max(values)
        return (
            format_n(lo) if lo == hi else f"n{NBSP}={NBSP}{format_number(lo)} à {format_number(hi)}"
        )

    def lower_first(text: str) -> str:
        return text[0].lower() + text[1:] if text.startswith("Ensemble") else text

    n_parts = [
        f"{n_span(ns[s])} ({lower_first(target_label(s, target_labels))})"
        for s in series
        if n_span(ns[s])
    ]
    notes = []
    if used_refs:
        notes.extend(_reference_notes(records))
        notes.append(comparability_caveat(short=True))
        if any(bool(r.get("approximate", False)) for r in used_refs):
            notes.append("≈ : valeur approchée, publiée en toutes lettres par la source.")
    if suppressed_any:
        notes.append(SUPPRESSED_NOTE)
    if caution_any:
        notes.append(_caution_note(caution_base))
    if any(rec["ref"] is None for rec in records):
        notes.append("n.\u00a0d. : pas de référence nationale disponible.")
    caption = caption_text(
        source=source,
        field=field or ("entrepreneurs " + _de_phrase(target, target_labels)),
        n=" ; ".join(n_parts) if n_parts else None,
        synthetic=synthetic,
        notes=notes,
    )
    if title is None:
        title = (
            "Profil des entrepreneurs "
            + _de_phrase(target, target_labels)
            + (" comparé à l'ensemble du consortium" if target != consortium else "")
            + " et aux références nationales"
        )

    colours = [OKABE_ITO["blue"], OKABE_ITO["orange"]][: len(series)]
    n_bars = len(series) + 1
    bar_h = 0.8 / n_bars
    k = len(records)
    height = 1.2 + (0.16 * n_bars + 0.12) * k + 0.13 * caption.count("\n")
    drawn = []
    with _style():
        fig = _new_figure(height)
        ax = fig.subplots(1, 1)
        for i, rec in enumerate(records):
            item = rec["item"]
            for j, s in enumerate(series):
                yy = i - 0.4 + bar_h * (j + 0.5)
                row = rec["values"][s]
                base = {"item": item.label, "series": series_labels[j]}
                if row is None or _flag(row.get("suppressed")) or is_missing(row.get("estimate")):
                    mark = (
                        SUPPRESSED_MARK if row is not None and _flag(row.get("suppressed")) else "—"
                    )
                    ax.text(
                        0.005,
                        yy,
                        mark,
                        ha="left",
                        va="center",
                        fontsize=7.5,
                        style="italic",
                        color="0.25",
                    )
                    drawn.append({**base, "value": np.nan, "suppressed": mark == SUPPRESSED_MARK})
                    continue
                v = float(row["estimate"])
                n = _num(row.get("n_unweighted"))
                caution = (n is not None and n < caution_base) or _flag(row.get("flag_caution"))
                ax.barh(yy, v, height=bar_h * 0.92, color=colours[j], edgecolor="none")
                _value_label(ax, v, yy, format_pct(v, decimals) + ("*" if caution else ""))
                drawn.append({**base, "value": v, "suppressed": False})
            yy = i - 0.4 + bar_h * (len(series) + 0.5)
            ref = rec["ref"]
            base = {"item": item.label, "series": reference_label}
            if ref is None:
                ax.text(
                    0.005,
                    yy,
                    "n.\u00a0d.",
                    ha="left",
                    va="center",
                    fontsize=7,
                    color="0.35",
                    style="italic",
                )
                drawn.append({**base, "value": np.nan, "suppressed": False})
            else:
                v = float(ref["value"])
                ax.barh(
                    yy,
                    v,
                    height=bar_h * 0.92,
                    color=REFERENCE_COLOUR,
                    hatch="////",
                    edgecolor="white",
                    linewidth=0,
                )
                _value_label(ax, v, yy, reference_value_text(ref, decimals))
                drawn.append({**base, "value": v, "suppressed": False})
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_locator(FixedLocator(np.round(np.arange(0, 1.0001, 0.2), 2)))
        ax.xaxis.set_major_formatter(_pct_formatter(0))
        ax.set_yticks(range(k), [_wrap(rec["item"].label, 24) for rec in records])
        ax.set_ylim(k - 0.5, -0.5)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        for i in range(1, k):
            ax.axhline(i - 0.5, color="0.88", linewidth=0.5)
        handles = [Patch(facecolor=c) for c in colours]
        handles.append(Patch(facecolor=REFERENCE_COLOUR, hatch="////", edgecolor="white"))
        _finish(fig, "" if bare else title, "" if bare else caption, handles, [*series_labels, reference_label], handlelength=1.4)

    alt = _profile_alt(
        title, records, series, series_labels, reference_label, decimals, caution_base
    )
    return ChartResult(fig, alt, pd.DataFrame(drawn))


def _field_text(field: str) -> str:
    """A field put after « champ : », lower-cased unless it starts with an acronym."""
    if len(field) > 1 and field[0].isupper() and field[1].islower():
        return field[0].lower() + field[1:]
    return field


def _reference_notes(records: list[dict]) -> list[str]:
    """Caption lines naming each national reference's source and field.

    One source: « Référence nationale : <source>, champ : <field>. » Several: one line each,
    saying which lines of the chart it serves (« Femmes, Bac+2 : <source>, champ : <field>. »).
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for rec in records:
        ref = rec["ref"]
        if ref is None:
            continue
        key = (str(ref["source"]), _field_text(str(ref["field"])))
        groups.setdefault(key, []).append(rec["item"].label)
    if len(groups) == 1:
        (source, field), _ = next(iter(groups.items()))
        return [f"Référence nationale : {source}, champ : {field}."]
    lines = ["Références nationales :"]
    lines += [
        f"– {', '.join(labels)} : {source}, champ : {field}."
        for (source, field), labels in groups.items()
    ]
    return lines


def _reference_from_object(obj: Any) -> pd.Series:
    """Turn a codebook ``Reference`` (value, text, label, year, field, source) into a row."""
    text = str(getattr(obj, "text", "") or "")
    exact = re.fullmatch(r"\s*\d+(?:[,.]\d+)?\s*%\s*", text) is not None
    return pd.Series(
        {
            "value": float(obj.value),
            "value_as_published": text or format_pct(obj.value),
            "approximate": bool(text) and not exact,
            "label": getattr(obj, "label", ""),
            "source": str(obj.source),
            "field": str(getattr(obj, "field", "")),
            "year": getattr(obj, "year", None),
        }
    )


def _profile_alt(
    title, records, series, series_labels, reference_label, decimals, caution_base
) -> str:
    parts = [f"Graphique en barres groupées : {title}."]
    for rec in records:
        bits = []
        for s, lab in zip(series, series_labels, strict=True):
            row = rec["values"][s]
            if row is None or is_missing(row.get("estimate")) and not _flag(row.get("suppressed")):
                bits.append(f"{lab} : non disponible")
            elif _flag(row.get("suppressed")):
                bits.append(f"{lab} : résultat non diffusé (secret statistique)")
            else:
                bits.append(f"{lab} : {format_pct(row['estimate'], decimals)}")
        ref = rec["ref"]
        if ref is None:
            bits.append(f"{reference_label} : non disponible")
        else:
            bits.append(
                f"{reference_label} : {reference_value_text(ref, decimals)} "
                f"({ref['source']}, champ : {ref['field']})"
            )
        parts.append(f"{rec['item'].label} — " + " ; ".join(bits) + ".")
    return french_typography(" ".join(parts))


# --- output ----------------------------------------------------------------------------------

_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}


def save_figure(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Save a figure deterministically (PNG, SVG or PDF after the suffix); return the path.

    No date, software version or random id is written (fixed ``svg.hashsalt``, metadata
    removed), so the same figure gives byte-identical files. Parent folders are created.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in _METADATA:
        raise ValueError(f"unsupported figure format {fmt!r}: use .png, .svg or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    _save(fig, buf, fmt, dpi)
    path.write_bytes(buf.getvalue())
    return path


def _save(fig: Figure, target: Any, fmt: str, dpi: int) -> None:
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    extra = {"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}} if fmt == "png" else {}
    with _style():
        fig.savefig(target, format=fmt, dpi=dpi, metadata=_METADATA[fmt], facecolor="white", **extra)


def figure_to_data_uri(fig: Figure, *, fmt: str = "png", dpi: int = 150) -> str:
    """Encode a figure as a ``data:`` URI for a self-contained HTML report (PNG or SVG)."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"unsupported data URI format {fmt!r}: use png or svg")
    buf = io.BytesIO()
    _save(fig, buf, fmt, dpi)
    mime = "image/png" if fmt == "png" else "image/svg+xml"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- the chapter chart: every share of a domain, target against its comparison -------------------


@dataclass(frozen=True)
class PanelLine:
    """One line of :func:`domain_panel`: an indicator's share for the target and its comparison.

    ``value``/``low``/``high`` are None when the target's figure is not published (``band``
    then holds its band, e.g. « < 20 % », or is empty for a hidden figure); ``reference`` is the
    comparison's share (the consortium), None when absent or hidden; ``significant`` is the
    corrected test of the target against it (None when not tested).
    """

    label: str
    value: float | None
    low: float | None
    high: float | None
    n: float | None
    reference: float | None = None
    significant: bool | None = None
    band: str = ""


def domain_panel(lines: Sequence[PanelLine], *, target_label: str, reference_label: str | None,
                 caution_base: int = 30) -> ChartResult:
    """Dots with intervals, one line per indicator: the target, and its comparison as a diamond.

    The chart carries no title and no source (the report prints them as text above and under
    it). A line whose difference with the comparison is significant is drawn in vermilion, the
    others in blue; a figure not published shows its band or « s » and no dot.
    """
    k = len(lines)
    with _style():
        fig = _new_figure(0.42 * k + 0.75)
        ax = fig.add_subplot()
        right = ax.get_yaxis_transform()
        drawn = []
        any_sig = False
        for i, ln in enumerate(lines):
            if ln.reference is not None:
                ax.plot([ln.reference], [i], marker="D", markersize=6.5, markerfacecolor="white",
                        markeredgecolor="0.2", markeredgewidth=1.1, linestyle="none", zorder=4)
            if ln.value is None:
                _mark_suppressed_row(ax, i, right, 1.02, ln.band)
                drawn.append({"label": ln.label, "value": np.nan, "reference": ln.reference})
                continue
            sig = bool(ln.significant)
            any_sig |= sig
            colour = OKABE_ITO["vermilion"] if sig else OKABE_ITO["blue"]
            if ln.low is not None and ln.high is not None and ln.high > ln.low:
                ax.hlines(i, ln.low, ln.high, color=colour, linewidth=2.2, alpha=0.55, zorder=2)
            ax.plot([ln.value], [i], marker="o", color=colour, markersize=6.5, linestyle="none", zorder=5)
            caution = ln.n is not None and ln.n < caution_base
            ax.text(1.02, i, format_pct(ln.value) + ("*" if caution else ""), transform=right,
                    ha="left", va="center", fontsize=8.5, fontweight="bold", color=colour)
            drawn.append({"label": ln.label, "value": ln.value, "reference": ln.reference})
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_locator(FixedLocator(np.round(np.arange(0, 1.0001, 0.2), 2)))
        ax.xaxis.set_major_formatter(_pct_formatter(0))
        # The bases are printed under the chart, as text (« Champ »), not in the image.
        labels = [_tick_label(ln.label, None, ln.n is not None and ln.n < caution_base, width=34)
                  for ln in lines]
        ax.set_yticks(range(k), labels)
        ax.set_ylim(k - 0.5, -0.6)
        ax.spines["left"].set_visible(False)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        handles = [Line2D([], [], color=OKABE_ITO["blue"], marker="o", linewidth=2.2, markersize=5)]
        names = [f"{target_label} (et marge d’erreur)"]
        if any_sig:
            handles.append(Line2D([], [], color=OKABE_ITO["vermilion"], marker="o", linewidth=2.2,
                                  markersize=5))
            names.append("écart net avec " + ("le " + reference_label.lower()
                                               if reference_label == "Consortium" else reference_label))
        if reference_label and any(ln.reference is not None for ln in lines):
            handles.append(Line2D([], [], marker="D", markerfacecolor="white", markeredgecolor="0.2",
                                  linestyle="none", markersize=5.5))
            names.append(reference_label)
        _finish(fig, "", "", handles, names, handlelength=1.8, columnspacing=1.2)
    alt_parts = []
    for ln in lines:
        if ln.value is None:
            alt_parts.append(f"{ln.label} : {ln.band or 'non diffusé'}")
        else:
            ref = f" ({reference_label} : {format_pct(ln.reference)})" if ln.reference is not None else ""
            alt_parts.append(f"{ln.label} : {format_pct(ln.value)}{ref}")
    alt = french_typography(f"Graphique en points, {target_label} : " + " ; ".join(alt_parts) + ".")
    return ChartResult(fig, alt, pd.DataFrame(drawn))
