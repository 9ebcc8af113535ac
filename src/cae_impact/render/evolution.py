"""« Évolution depuis <vague> »: what a report says of the changes since the previous wave.

The changes themselves are computed from published figures by :mod:`cae_impact.analysis.waves`
(step ``changes``); this module reads a target's change rows and writes the section, its chart
and table, the line of « L'essentiel » and the method paragraphs (moved here from
``cae_impact.waves``, now :mod:`cae_impact.analysis.waves`, so that the analysis does not import the
renderers).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cae_impact.analysis.waves import (
    COMPARABILITY_FILE,
    KEY,
    SCOPE_CAE,
    SCOPE_COMMON,
    SCOPE_CONSORTIUM,
    TREND_FILE,
    target_change_file,
    waves_dir,
)
from cae_impact.core.frenchfmt import (
    MISSING,
    format_date_fr,
    format_eur,
    format_int,
    format_number,
    format_pct,
    format_points,
    french_typography,
)
from cae_impact.core.frenchfmt import french_typography as ft
from cae_impact.render.charts import OKABE_ITO, STYLE, _tick_label
from cae_impact.render.present import (
    chart_html,
    heading_html,
    paragraph_html,
    show_frame,
    table_html,
)
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, StudyConfig
from cae_impact.spec.layout import WAVES_INFO_FILE
from cae_impact.spec.parameters import ParameterError

# ============================================================================================
# 5. « Évolution depuis <vague> »: a plain HTML fragment (the report body will restyle it)
# ============================================================================================

MAX_CHART_ROWS = 12
# Coverage of the reports' 95 % intervals, measured by scripts/simulate_change_coverage.py
# (--replicates 200 --seed 2027; docs/waves.md): the demo's two populations, respondents drawn
# again with the demo's response mechanism, CAE-level shares. The method annexes quote them;
# tests/test_waves_simulation.py checks them on 20 replicates of another seed.
SIMULATED_REPLICATES = 200
SIMULATED_LEVEL_COVERAGE = 0.948
SIMULATED_CHANGE_COVERAGE = 0.945


def coverage_sentence(kind: str) -> str:
    """The annexes' sentence on the measured coverage of a level's or a change's interval."""
    what, value = (("d'une évolution contient la vraie évolution", SIMULATED_CHANGE_COVERAGE) if kind == "change"
                   else ("d'un chiffre de CAE contient la vraie valeur", SIMULATED_LEVEL_COVERAGE))
    return (f"Ce calcul a été vérifié par simulation : sur {format_int(SIMULATED_REPLICATES)} tirages "
            "répétés des répondants de l'enquête de démonstration, où les taux de réponse vont de "
            f"{format_pct(0.10)} à {format_pct(0.93)} selon le groupe sexe × statut, l'intervalle à "
            f"{format_pct(0.95)} {what} "
            f"{format_pct(value, 1)} du temps.")
MAX_LEAD = 3


@dataclass(frozen=True)
class Evolution:
    """What one report needs to say what changed: its rows, the waves, the comparability list."""

    study: StudyConfig
    target: str
    rows: pd.DataFrame
    info: dict[str, Any]
    comparability: pd.DataFrame
    trend: pd.DataFrame | None = None
    #: the study's codebook (short labels), parsed once by :func:`load_evolution` rather than once
    #: per row; read from ``study.codebook`` when None
    codebook: Any = None


def load_evolution(ctx) -> Evolution:
    """A target's change rows, the waves' description, the comparability list (and the trend)."""
    folder = waves_dir(ctx.study, ctx.reports_root)
    path = target_change_file(ctx.study, ctx.reports_root, ctx.target)
    if not path.exists():
        raise ParameterError(f"{path}: the changes since the previous wave are missing; run 'make reports' "
                             "(step changes) first")
    trend = pd.read_parquet(folder / TREND_FILE) if ctx.target == CONSORTIUM else None
    return Evolution(
        study=ctx.study, target=ctx.target, rows=pd.read_parquet(path),
        info=json.loads((folder / WAVES_INFO_FILE).read_text(encoding="utf-8")),
        comparability=pd.read_csv(folder / COMPARABILITY_FILE, keep_default_na=False),
        trend=trend, codebook=ctx.codebook,
    )


def _fmt_level(value: Any, unit: str) -> str:
    if unit == "pct":
        return format_pct(value)
    if unit == "eur":
        return format_eur(value)
    return format_number(value, 1)


def _fmt_change(value: Any, unit: str) -> str:
    if unit == "pct":
        return format_points(None if pd.isna(value) else value * 100, plus=True)
    if unit == "eur":
        return format_eur(value, plus=True)
    return format_number(value, 1, plus=True)


def _fmt_interval(lo: Any, hi: Any, unit: str) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return MISSING
    return f"de {_fmt_change(lo, unit)} à {_fmt_change(hi, unit)}"


def _label(row: Mapping[str, Any]) -> str:
    label = str(row["indicator_label"])
    cat = str(row.get("category") or "")
    if cat and row.get("kind") == "paired_difference":
        label += {"before": " : avant la CAE", "after": " : aujourd’hui", "difference": ""}[cat]
    elif cat:
        label += f" : {row.get('category_label') or cat}"
    return label.replace("'", "’")


def _headline_rows(ev: Evolution) -> pd.DataFrame:
    """The report's own change rows: the CAE's, or the published consortium's; one per figure shown."""
    scope = SCOPE_CONSORTIUM if ev.target == CONSORTIUM else SCOPE_CAE
    rows = ev.rows[(ev.rows["scope"] == scope) & (ev.rows["target"] == ev.target)]
    keep = (rows["kind"] != "distribution") & ((rows["kind"] != "paired_difference") | (rows["category"] == "difference"))
    return rows[keep].copy()


def _significant(rows: pd.DataFrame) -> pd.Series:
    return rows["significant"].fillna(False).astype(bool) & ~rows["suppressed"].astype(bool)


def _wrap(label: str, width: int = 52, lines: int = 2) -> str:
    """A chart label on at most ``lines`` lines of ``width`` characters (« … » when cut)."""
    parts = textwrap.wrap(label, width)
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1].rstrip() + "…"
    return "\n".join(parts)


def trend_chart(ev: Evolution, indicator_ids: Sequence[str]):
    """The consortium's value at every wave for a few indicators (percentages)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ev.trend is None or ev.trend.empty or not indicator_ids:
        return None
    t = ev.trend[(ev.trend["target"] == CONSORTIUM) & (ev.trend["category"] == "")
                 & ev.trend["indicator_id"].isin(indicator_ids) & ~ev.trend["suppressed"].astype(bool)]
    if t.empty:
        return None
    waves_ = sorted(t["wave"].unique())
    fig, ax = plt.subplots(figsize=(7.2, 3.4), layout="constrained")
    palette = ["#0b5d7a", "#b5462f", "#1b7a4b", "#7a5c0b", "#5b3a8a", "#9aa5b1"]
    for k, (iid, g) in enumerate(t.groupby("indicator_id", sort=False)):
        g = g.set_index("wave").reindex(waves_)
        label = _short(ev, {"indicator_id": iid, "category": ""})
        ax.plot(range(len(waves_)), g["estimate"].to_numpy(float) * 100, marker="o",
                color=palette[k % len(palette)], label=_wrap(label, 80))
    ax.set_xticks(range(len(waves_)), waves_, fontsize=8)
    ax.set_ylabel("%", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7.5, loc="lower left", frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig


#: at most this many rows in the body's table of changes (all are in the evidence and indicators.xlsx)
MAX_TABLE_ROWS = 8


def _short(ev: Evolution, row: Mapping[str, Any]) -> str:
    """The indicator's short label from the codebook (« Moins isolés »), else its label."""
    codebook = ev.codebook if ev.codebook is not None else load_codebook(ev.study.codebook)
    try:
        label = codebook.indicator(str(row["indicator_id"])).short_label
    except KeyError:
        return _label(row)
    cat = str(row.get("category") or "")
    if cat and row.get("kind") != "paired_difference":
        label += f" : {row.get('category_label') or cat}"
    return label


def _n_text(row: Mapping[str, Any]) -> str:
    """« 57 et 56 répondants »: the bases of the two waves."""
    a, b = row.get("previous_n_unweighted"), row.get("current_n_unweighted")
    if pd.isna(a) or pd.isna(b):
        return ""
    return f"{format_int(a)} et {format_int(b)} répondants"


def _verdict(row: Mapping[str, Any]) -> str:
    """« hausse nette », « baisse nette », « pas d’évolution nette », « non testée », « non diffusée »."""
    if bool(row["suppressed"]):
        return "non diffusée"
    sig = row.get("significant")
    if pd.isna(sig) or not bool(row.get("tested", True)):
        return "non testée"
    if bool(sig):
        return "hausse nette" if float(row["change"]) > 0 else "baisse nette"
    return "pas d’évolution nette"


def _moves(ev: Evolution) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the report's shown change rows, the significant ones largest first)."""
    rows = _headline_rows(ev)
    shown = rows[~rows["suppressed"].astype(bool)]
    sig = shown[_significant(shown)]
    return shown, sig.reindex(sig["change"].abs().sort_values(ascending=False).index)


def evolution_lead(ev: Evolution) -> list[str]:
    """What moved first (significant changes, largest first, with both bases), then the rest."""
    prev, cur = ev.info["previous_wave"], ev.info["wave"]
    shown, sig = _moves(ev)
    n = len(shown)
    if sig.empty:
        return [french_typography(
            f"Entre {prev} et {cur}, aucun des {n} indicateurs comparables n’a bougé nettement : les "
            "écarts observés restent dans la marge d’erreur des deux enquêtes. Le graphique montre les "
            "plus grands.")]
    forms = [
        "Depuis {prev}, « {x} » a nettement {verb} : de {a} à {b} ({d} ; {n}).",
        "« {x} » {verb2} nettement entre {prev} et {cur} : {a}, puis {b} ({d} ; {n}).",
        "En {cur}, « {x} » atteint {b}, contre {a} en {prev} : {what} ({n}).",
    ]
    out = []
    for k, (_, r) in enumerate(sig.head(MAX_LEAD).iterrows()):
        up = float(r["change"]) > 0
        out.append(forms[k % len(forms)].format(
            prev=prev, cur=cur, x=_short(ev, r), verb="augmenté" if up else "diminué",
            verb2="progresse" if up else "recule", a=_fmt_level(r["previous_estimate"], r["unit"]),
            b=_fmt_level(r["current_estimate"], r["unit"]), d=_fmt_change(r["change"], r["unit"]),
            n=_n_text(r), what=("une hausse nette de " if up else "une baisse nette de ")
            + _fmt_change(abs(r["change"]), r["unit"]).lstrip("+")))
    more = len(sig) - MAX_LEAD
    if more > 0:
        out.append(f"{more} autre{'s' if more > 1 else ''} indicateur{'s' if more > 1 else ''} "
                   f"{'ont' if more > 1 else 'a'} aussi nettement bougé (tableau ci-dessous).")
    rest = n - len(sig)
    if rest > 0:
        out.append(f"Les {rest} autres indicateurs comparables n’ont pas bougé nettement : leurs écarts "
                   "restent dans la marge d’erreur des deux enquêtes.")
    return [french_typography(" ".join(out))]


def _title(ev: Evolution) -> str:
    prev = ev.info["previous_wave"]
    _, sig = _moves(ev)
    if sig.empty:
        return f"Évolution depuis {prev} : pas de changement net"
    r = sig.iloc[0]
    word = "en hausse" if float(r["change"]) > 0 else "en baisse"
    more = len(sig) - 1
    tail = (f", et {more} autre{'s' if more > 1 else ''} évolution{'s' if more > 1 else ''} "
            f"nette{'s' if more > 1 else ''}") if more else ""
    return f"Évolution depuis {prev} : « {_short(ev, r)} » {word} ({_fmt_change(r['change'], r['unit'])}){tail}"


def _champ(ev: Evolution) -> str:
    prev, cur = ev.info["previous_wave"], ev.info["wave"]
    who = ("entrepreneurs des CAE du consortium" if ev.target == CONSORTIUM
           else f"entrepreneurs de la {ev.study.target_label(ev.target)}")
    return (f"{who} ayant répondu à l’enquête de {prev} et à celle de {cur} (deux échantillons ; une "
            "partie des entrepreneurs a répondu aux deux).")


def _source(ev: Evolution) -> str:
    prev, cur = ev.info["previous_wave"], ev.info["wave"]
    synth = " (données synthétiques)" if ev.study.synthetic else ""
    published = ev.info.get("previous_published") or ""
    when = f" (chiffres publiés le {format_date_fr(published)})" if published else ""
    return f"enquêtes CAE-IMPACT {prev}{when} et {cur}{synth}."


def change_panel(ev: Evolution):
    """The largest changes of the percentages, a bar each with its margin of error: (fig, alt, rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    from matplotlib.figure import Figure as MplFigure

    rows = _headline_rows(ev)
    rows = rows[(rows["unit"] == "pct") & ~rows["suppressed"].astype(bool) & rows["change"].notna()]
    if rows.empty:
        return None, "", rows
    rows = rows.reindex(rows["change"].abs().sort_values(ascending=False).index).head(MAX_CHART_ROWS)
    sig = _significant(rows).to_numpy()
    with matplotlib.rc_context(STYLE):
        fig = MplFigure(figsize=(6.7, 0.36 * len(rows) + 0.8), layout="constrained")
        ax = fig.add_subplot()
        y = np.arange(len(rows))
        ch = rows["change"].to_numpy(float) * 100
        lo = rows["ci_low"].to_numpy(float) * 100
        hi = rows["ci_high"].to_numpy(float) * 100
        colours = np.where(sig, np.where(ch > 0, OKABE_ITO["bluish_green"], OKABE_ITO["vermilion"]), "#b8c2cc")
        ax.barh(y, ch, color=colours, height=0.55)
        ok = ~np.isnan(lo)
        ax.errorbar(ch[ok], y[ok], xerr=[ch[ok] - lo[ok], hi[ok] - ch[ok]], fmt="none", ecolor="0.25",
                    elinewidth=0.8, capsize=2)
        ax.axvline(0, color="0.2", linewidth=0.8)
        ax.set_yticks(y, [_tick_label(_short(ev, r), None, False, width=34) for _, r in rows.iterrows()])
        ax.set_ylim(len(rows) - 0.5, -0.6)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: ("+" if v > 0 else "") + f"{v:.0f}".replace("-", "\u2212") + " pts"))
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.spines["left"].set_visible(False)
    alt = french_typography("Barres horizontales, évolution en points : " + " ; ".join(
        f"{_short(ev, r)} {_fmt_change(r['change'], r['unit'])}" for _, r in rows.iterrows()) + ".")
    return fig, alt, rows


def essentials_line(ev: Evolution) -> str:
    """One sentence for « L’essentiel »: the clear changes since the previous wave, or none."""
    prev, cur = ev.info["previous_wave"], ev.info["wave"]
    if ev.target != CONSORTIUM and ev.target not in ev.info.get("common_caes", []):
        return f"Première participation à l’enquête en {cur} : pas encore d’évolution à mesurer."
    shown, sig = _moves(ev)
    if sig.empty:
        return (f"Aucun des {len(shown)} indicateurs comparables n’a bougé nettement depuis {prev} "
                "(chapitre « Évolution »).")
    bits = [f"« {_short(ev, r)} » {_fmt_change(r['change'], r['unit'])}" for _, r in sig.head(3).iterrows()]
    more = len(sig) - 3
    tail = f" et {more} autre{'s' if more > 1 else ''}" if more > 0 else ""
    return (f"{len(sig)} évolution{'s' if len(sig) > 1 else ''} nette{'s' if len(sig) > 1 else ''} sur "
            f"{len(shown)} indicateurs comparables : {', '.join(bits)}{tail} ; les autres n’ont pas bougé "
            "nettement.")


def evolution_section(ev: Evolution) -> str:
    """« Évolution depuis <vague> » in the report's style.

    A title stating what moved, what moved first, one chart of the largest changes and a short
    table, each with its « Lecture / Champ / Source » lines; the full table is in the notebook's
    evidence and in indicators.xlsx, the indicators not compared in the method annex.
    """
    prev, cur = ev.info["previous_wave"], ev.info["wave"]
    if ev.target != CONSORTIUM and ev.target not in ev.info.get("common_caes", []):
        label = ev.study.target_label(ev.target)
        return heading_html(ft(f"Évolution depuis {prev} : première participation"), 1, "evolution") + \
            paragraph_html(ft(
                f"La {label} participe pour la première fois à l’enquête en {cur} : il n’y a pas encore "
                f"d’évolution à mesurer. Ses chiffres de {cur} serviront de point de départ à la prochaine "
                "enquête."))
    parts = [heading_html(ft(_title(ev)), 1, "evolution")]
    parts += [paragraph_html(s) for s in evolution_lead(ev)]
    fig, alt, drawn = change_panel(ev)
    if fig is not None:
        first = drawn.iloc[0]
        parts.append(chart_html(
            fig, alt=alt, title=ft(f"Les plus grands écarts entre {prev} et {cur}, en points"),
            lecture=ft(f"« {_short(ev, first)} » : {_fmt_level(first['previous_estimate'], 'pct')} en {prev}, "
                       f"{_fmt_level(first['current_estimate'], 'pct')} en {cur}, soit "
                       f"{_fmt_change(first['change'], 'pct')}. Une barre en couleur est une évolution nette "
                       "(vert : hausse, orangé : baisse) ; le trait donne la marge d’erreur de l’écart."),
            champ=ft(_champ(ev)), source=ft(_source(ev))))
    shown, sig = _moves(ev)
    table_rows = pd.concat([sig, shown.reindex(shown["change"].abs().sort_values(ascending=False).index)])
    table_rows = table_rows[~table_rows.index.duplicated()].head(MAX_TABLE_ROWS)
    lines = [{"Indicateur": _short(ev, r), prev: _fmt_level(r["previous_estimate"], r["unit"]),
              cur: _fmt_level(r["current_estimate"], r["unit"]), "Évolution": _fmt_change(r["change"], r["unit"]),
              "Répondants": _n_text(r).replace(" répondants", ""), "Verdict": _verdict(r)}
             for _, r in table_rows.iterrows()]
    if lines:
        first = table_rows.iloc[0]
        parts.append(table_html(
            pd.DataFrame(lines), caption=ft(f"Les évolutions nettes et les plus grands écarts, {prev}-{cur}"),
            numeric_columns=[prev, cur, "Évolution", "Répondants"],
            note=ft(f"Évolution : valeur de {cur} moins valeur de {prev} (en points pour les parts). Hausse ou "
                    "baisse nette : écart trop grand pour tenir au hasard des réponses, compte tenu du nombre "
                    "d’indicateurs comparés. Non testée : chiffre connu par les registres. Toutes les "
                    "évolutions sont dans le fichier indicators.xlsx."),
            lecture=ft(f"« {_short(ev, first)} » passe de {_fmt_level(first['previous_estimate'], first['unit'])} "
                       f"en {prev} à {_fmt_level(first['current_estimate'], first['unit'])} en {cur}."),
            champ=ft(_champ(ev)), source=ft(_source(ev))))
    nc = _not_compared(ev)
    if len(nc):
        parts.append(paragraph_html(ft(
            f"{len(nc)} indicateur{'s ne sont' if len(nc) > 1 else ' n’est'} pas comparé{'s' if len(nc) > 1 else ''} "
            f"entre {prev} et {cur} (question ou réponses modifiées) : la liste et les raisons sont dans "
            "l’annexe sur la méthode."), "note"))
    if ev.target == CONSORTIUM:
        parts += _consortium_parts(ev)
    return "".join(parts)


def _not_compared(ev: Evolution) -> pd.DataFrame:
    return ev.comparability[~ev.comparability["comparable"].astype(str).isin(["True", "true", "1"])]


def linkage_sentence(study, reports_root) -> str:
    """What the respondents of both waves say of the change's standard error (waves.json)."""
    path = waves_dir(study, reports_root) / WAVES_INFO_FILE
    link = json.loads(path.read_text(encoding="utf-8")).get("linkage") if path.exists() else None
    if not link:
        return ("Les réponses de l’enquête précédente n’étant pas disponibles ici, le nombre "
                "d’entrepreneurs ayant répondu aux deux enquêtes n’a pas été vérifié.")
    said = (f"{format_number(link['linked'], 0)} entrepreneurs des CAE présentes aux deux enquêtes ont "
            f"répondu aux deux (même pseudonyme), pour {format_number(link['expected'], 0)} attendus si "
            "chacun répondait ou non indépendamment d’une enquête à l’autre")
    if link["p_fewer"] < 0.05:
        return (f"Seulement {said[0].lower()}{said[1:]} : les répondants de cette enquête évitent ceux de "
                "la précédente, et les erreurs-types des évolutions peuvent être trop petites.")
    return f"{said} : le calcul de l’erreur-type est donc exact ou prudent."


def method_paragraphs(study, reports_root) -> str:
    """The method annex's part on the changes since the previous wave ('' for a first wave)."""
    if not getattr(study, "previous_waves", None):
        return ""
    path = waves_dir(study, reports_root) / COMPARABILITY_FILE
    if not path.exists():
        return ""
    comp = pd.read_csv(path, keep_default_na=False)
    nc = comp[~comp["comparable"].astype(str).isin(["True", "true", "1"])]
    parts = [heading_html(ft("Évolutions depuis l’enquête précédente"), 2),
             paragraph_html(ft(
                 "Une évolution est la différence entre le chiffre de cette enquête et celui publié à "
                 "l’enquête précédente (les chiffres publiés, secret statistique déjà appliqué ; de "
                 "l’enquête précédente, seuls les pseudonymes des répondants sont relus, pour compter ceux "
                 "qui ont répondu aux deux). Son erreur-type est la racine "
                 "de la somme des carrés des erreurs-types des deux enquêtes (enquêtes traitées comme "
                 "indépendantes, degrés de liberté de Welch) ; une simulation montre que ce calcul est "
                 "exact ou prudent quand les entrepreneurs déjà interrogés ne répondent pas moins souvent "
                 "que les autres. Les tests d’une même vague sont corrigés ensemble "
                 "(Benjamini-Hochberg) ; une évolution n’est dite nette qu’après cette correction. Une "
                 "évolution n’est pas publiée quand l’un des deux chiffres ne l’est pas ; les chiffres "
                 "des registres (sexe, statut) ne sont pas testés. " + coverage_sentence("change")))]
    parts.append(paragraph_html(ft(linkage_sentence(study, reports_root))))
    if len(nc):
        items = "; ".join(f"{str(r['indicator_label']).replace(chr(39), '’')} ({r['reason']})" for _, r in nc.iterrows())
        parts.append(paragraph_html(ft(
            "Un indicateur n’est comparé que si ses questions, ses réponses possibles et les personnes "
            "interrogées sont les mêmes aux deux enquêtes, ou si le référentiel dit explicitement comment "
            f"passer de l’un à l’autre. Indicateurs non comparés : {items}.")))
    return "".join(parts)


def _consortium_parts(ev: Evolution) -> list[str]:
    prev, cur = ev.info["previous_wave"], ev.info["wave"]
    parts = []
    joined = [x["label"] for x in ev.info.get("joined", [])]
    left = [x["label"] for x in ev.info.get("left", [])]
    if joined or left:
        said = []
        if joined:
            said.append(f"{', '.join(joined)} {'ont' if len(joined) > 1 else 'a'} rejoint l’enquête en {cur}")
        if left:
            said.append(f"{', '.join(left)} n’{'ont' if len(left) > 1 else 'a'} pas participé en {cur}")
        parts.append(paragraph_html(ft(
            f"Le consortium n’est pas tout à fait le même aux deux dates : {' ; '.join(said)}. Les évolutions "
            f"ci-dessus comparent le consortium de {prev} à celui de {cur} ; le tableau suivant les calcule "
            f"aussi sur les seules CAE présentes aux deux enquêtes ({len(ev.info.get('common_caes', []))} CAE), "
            "ce qui isole ce qui a changé dans ces CAE de l’effet de l’arrivée ou du départ d’une CAE.")))
        both = ev.rows[(ev.rows["target"] == CONSORTIUM)]
        shown, sig = _moves(ev)
        top = pd.concat([sig, shown.reindex(shown["change"].abs().sort_values(ascending=False).index)])
        top = top[~top.index.duplicated()].head(MAX_TABLE_ROWS)
        full = top.set_index(KEY)
        com = both[both["scope"] == SCOPE_COMMON].set_index(KEY)
        lines = []
        for key, r in full.iterrows():
            if key not in com.index:
                continue
            c = com.loc[key]
            rr = r.to_dict() | {"indicator_id": key[0], "category": key[1]}
            lines.append({
                "Indicateur": _short(ev, rr),
                "Tout le consortium": "s" if r["suppressed"] else _fmt_change(r["change"], r["unit"]),
                "CAE des deux enquêtes": "s" if c["suppressed"] else _fmt_change(c["change"], c["unit"]),
                "Verdict (CAE des deux enquêtes)": _verdict(c.to_dict() | {"tested": not pd.isna(c["significant"])}),
            })
        if lines:
            title = ft(f"Les évolutions du consortium, avec et sans les CAE arrivées ou parties entre {prev} et {cur}")
            parts.append(table_html(
                pd.DataFrame(lines), caption=title,
                note=ft("« s » : non calculable sans un chiffre couvert par le secret statistique, ou médiane."),
                lecture=ft("la première colonne compare les deux consortiums tels que publiés ; la deuxième, "
                           "les mêmes CAE aux deux dates."),
                champ=ft(_champ(ev)), source=ft(_source(ev)),
                numeric_columns=["Tout le consortium", "CAE des deux enquêtes"]))
    rows = _headline_rows(ev)
    rows = rows[(rows["unit"] == "pct") & ~rows["suppressed"].astype(bool)]
    top = rows.reindex(rows["change"].abs().sort_values(ascending=False).index).head(5)["indicator_id"].tolist()
    fig = trend_chart(ev, top)
    if fig is not None:
        waves_ = ", ".join(ev.info.get("waves", []))
        title = ft(f"Les indicateurs du consortium qui ont le plus bougé, à chaque enquête ({waves_})")
        parts.append(chart_html(
            fig, alt=title, title=title,
            lecture=ft("chaque point est la valeur du consortium à une enquête ; les cinq indicateurs en "
                       "pourcentage dont l’écart est le plus grand sont montrés."),
            champ=ft("entrepreneurs des CAE du consortium à chaque enquête."), source=ft(_source(ev))))
    return parts


def show_evolution(ctx) -> None:
    """Display « Évolution depuis <vague> » for the notebook's target."""
    from IPython.display import HTML, display

    display(HTML(evolution_section(load_evolution(ctx))))


def show_evolution_evidence(ctx) -> None:
    """For the reviewer (not in the report): every change row, unformatted, and the comparability."""
    from IPython.display import Markdown, display

    ev = load_evolution(ctx)
    display(Markdown(f"### Pièces justificatives — évolutions {ev.info['previous_wave']}-{ev.info['wave']}"))
    show_frame(ev.rows.reset_index(drop=True))
    display(Markdown("Comparabilité des indicateurs entre les deux versions du référentiel :"))
    show_frame(ev.comparability)
