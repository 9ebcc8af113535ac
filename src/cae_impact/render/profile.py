"""The profile chapter: who answered, how they were weighted, who the entrepreneurs are.

Built from the weighting report of the estimation step and the ``profile_<question>``
distributions of the report table; the comparison with all French business creators uses the
national reference table (``data/external/national_references.csv``) and always prints its
source, field and the comparability caveat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cae_impact.core.frenchfmt import format_int, format_number, format_pct, french_typography
from cae_impact.render import charts, present, references, story
from cae_impact.spec.config import CONSORTIUM

from .chapters import SUPPRESSED_LEGEND, View, cae_detail_text, census_note, fmt_value

PROFILE_ITEMS = (
    ("women_share", "Femmes"),
    ("under40_share", "Moins de 40 ans"),
    ("bac3plus_share", "Diplômés Bac\u00a0+\u00a03 ou plus"),
    ("former_jobseeker_share", "Demandeurs d’emploi ou au RSA avant la CAE"),
)


def sample_section(view: View, weighting: dict) -> str:
    """Heading, response table and the weighting notes.

    The table has a line per CAE of :attr:`View.shown_targets`: when the consortium's report
    does not name its CAEs, only the consortium's line, and the note gives the spread across CAEs.
    """
    parts = [present.heading_html("Profil des entrepreneurs et échantillon", 1, anchor="profil")]
    all_ = pd.DataFrame(weighting["per_cae"])
    per_cae = all_[all_["cae_id"].isin(view.compared_caes)]
    rows = [{
        "CAE": r["label"],
        "Entrepreneurs (registre)": format_int(r["population"]),
        "Répondants retenus": format_int(r["respondents"]),
        "Taux de réponse": format_pct(r["response_rate"]),
        "Taille effective": format_number(r["effective_n"], 0),
    } for _, r in per_cae.iterrows()]
    if view.is_consortium:
        rows.append({
            "CAE": "Consortium",
            "Entrepreneurs (registre)": format_int(all_["population"].sum()),
            "Répondants retenus": format_int(all_["respondents"].sum()),
            "Taux de réponse": format_pct(all_["respondents"].sum() / all_["population"].sum()),
            "Taille effective": format_number(weighting["consortium"]["effective_n"], 0),
        })
    who = "des CAE du consortium" if view.is_consortium else f"de la {view.labels[view.target]}"
    parts.append(present.paragraph_html(
        f"L'enquête a été proposée à l'ensemble des entrepreneurs {who}. Les réponses sont "
        "pondérées pour représenter tous les entrepreneurs inscrits au registre : chaque CAE "
        "compte pour son effectif réel, et, dans chaque CAE, les répondants sont redressés sur "
        "la répartition du registre par sexe et par statut (CAPE, CESA, associé), les profils "
        "qui répondent le moins comptant davantage. La taille effective indique la précision "
        "d'un échantillon aléatoire simple équivalent."))
    census = census_note(view)
    if census:
        parts.append(present.paragraph_html(census))
    detail = cae_detail_text(view)
    if detail:
        parts.append(present.paragraph_html(detail))
    note = "Taille effective : formule de Kish, après pondération."
    if view.caes_capped:
        note += " " + _response_spread(all_)
    parts.append(present.table_html(pd.DataFrame(rows), caption="Population, répondants et taux de réponse",
                                    note=note,
                                    numeric_columns=["Entrepreneurs (registre)", "Répondants retenus",
                                                     "Taux de réponse", "Taille effective"]))
    notes = [n for n in weighting.get("notes", [])
             if view.is_consortium or n.startswith(view.labels[view.target] + " ")]
    if view.caes_capped:
        notes = _study_wide_notes(view, notes)
    if notes:
        parts.append('<aside class="box"><p class="box-title">Notes de pondération</p><ul>'
                     + "".join(f"<li>{present.esc(n)}</li>" for n in notes) + "</ul></aside>")
    return "".join(parts)


def _response_spread(per_cae: pd.DataFrame) -> str:
    """« Selon la CAE : de 12 à 140 répondants retenus (médiane 58), taux de réponse … », no CAE named."""
    resp = per_cae["respondents"].to_numpy(dtype=float)
    rate = per_cae["response_rate"].dropna().to_numpy(dtype=float)
    text = (f"Selon la CAE ({format_int(len(per_cae))} CAE) : de {format_int(resp.min())} à "
            f"{format_int(resp.max())} répondants retenus (médiane {format_number(np.median(resp), 0)})")
    if len(rate):
        text += (f", taux de réponse de {format_pct(rate.min())} à {format_pct(rate.max())} "
                 f"(médiane {format_pct(np.median(rate))})")
    return french_typography(text + ".")


def _study_wide_notes(view: View, notes: list[str]) -> list[str]:
    """The notes about the whole study, and one line counting the CAEs with a note of their own."""
    labels = [view.labels[c] + " " for c in view.study.cae_ids]
    own = {lab for n in notes for lab in labels if n.startswith(lab)}
    kept = [n for n in notes if not any(n.startswith(lab) for lab in labels)]
    if own:
        kept.append(french_typography(
            f"Des notes de pondération propres à une CAE concernent {format_int(len(own))} CAE ; "
            "elles figurent dans le rapport de chacune."))
    return kept


def national_comparison(view: View) -> str:
    """Profile of the target vs the consortium vs all French business creators, with caveat."""
    parts = [present.heading_html("Comparaison avec l'ensemble des créateurs d'entreprise", 2)]
    parts.append(present.paragraph_html(references.comparability_caveat()))
    items = [charts.ProfileItem(ind, label) for ind, label in PROFILE_ITEMS
             if not view.select(ind, breakdown=None).empty]
    if items:
        res = charts.profile_comparison(
            view.table, items, target=view.target, target_labels=view.labels,
            title=f"Profil des entrepreneurs — {view.labels[view.target]}",
            source=view.source, field=view.field(), synthetic=view.study.synthetic,
            caution_base=view.study.report.caution_base)
        fig, alt = res
        parts.append(present.figure_html(fig, alt=alt, caption="Profil comparé aux références nationales"))
    return "".join(parts)


def variable_table(view: View, variable: str) -> str:
    """Distribution of one profile question for the target and, for a CAE, the consortium."""
    ind_id = f"profile_{variable}"
    if view.select(ind_id).empty:
        return ""
    q = view.codebook.question(variable)
    scale = view.codebook.scale_of(variable)
    targets = [view.target] if view.is_consortium else [view.target, CONSORTIUM]
    lines = []
    missing = [c.label for c in scale.choices if c.missing]
    for choice in scale.choices:
        if choice.missing:  # out of the base of the distribution, as in a share
            continue
        line = {"Réponse": choice.label}
        for tgt in targets:
            r = view.row(ind_id, tgt, category=choice.code)
            line[view.labels[tgt]] = fmt_value(r, "pct") if r is not None else "—"
        lines.append(line)
    n = view.rows(ind_id)["n_unweighted"].max()
    left_out = (" Les réponses « " + " », « ".join(missing) + " » ne sont pas comptées."
                if missing else "")
    note = (f"Champ : {view.field()} ; n = {format_int(n)} répondants à la question.{left_out} "
            f"{SUPPRESSED_LEGEND}. Parts pondérées.")
    return present.table_html(
        pd.DataFrame(lines), caption=q.text, note=note, numeric_columns=[view.labels[t] for t in targets])


#: the profile questions of the chapter's table (the others are in the notebooks' evidence)
CHAPTER_TABLE_QUESTIONS = ("contract_stage", "seniority", "prior_status")


def profile_chapter(view: View) -> str:
    """The profile chapter: a title with the key numbers, one chart, one table.

    The chart sets the target against the consortium and the French references; the table gives
    the entrepreneurs' situation in the CAE.
    """
    w = story.Writer(view)
    figs = {ind: story.figure_of(view, view.codebook.indicator(ind))
            for ind, _ in PROFILE_ITEMS if _has(view, ind)}
    bits = []
    for ind, label in (("women_share", "de femmes"), ("under40_share", "de moins de 40 ans"),
                       ("bac3plus_share", "de diplômés du supérieur long (Bac + 3 ou plus)")):
        f = figs.get(ind)
        if f is not None and not f.hidden:
            bits.append(f"{format_pct(f.value)} {label}")
    who = "du consortium" if view.is_consortium else w.where
    title = "Profil des entrepreneurs"
    if bits:
        title += " : " + ", ".join(bits[:-1]) + (" et " if len(bits) > 1 else "") + bits[-1]
    parts = [present.heading_html(french_typography(title), 1, anchor="profil")]
    sentences = []
    for ind in ("women_share", "under40_share", "bac3plus_share", "former_jobseeker_share"):
        f = figs.get(ind)
        if f is not None:
            sentences.append(w.figure_sentence(f))
    intro = (f"Qui sont les entrepreneurs {who} ? Leur profil est comparé "
             + ("" if view.is_consortium else "à celui du consortium et ")
             + "à celui de l’ensemble des créateurs d’entreprise en France (INSEE), qui n’est "
             "qu’un repère : ces créateurs ne sont pas des entrepreneurs salariés.")
    parts.append(present.paragraph_html(french_typography(intro)))
    if sentences:
        parts.append(present.paragraph_html(french_typography(" ".join(sentences))))
    detail = cae_detail_text(view)
    if detail:
        parts.append(present.paragraph_html(detail))
    items = [charts.ProfileItem(ind, label) for ind, label in PROFILE_ITEMS if _has(view, ind)]
    if items:
        fig, alt = charts.profile_comparison(
            view.table, items, target=view.target, target_labels=view.labels,
            title="", source=view.source, field=view.field(), synthetic=view.study.synthetic,
            caution_base=view.study.report.caution_base, bare=True)
        first = figs.get("women_share")
        lecture = (story.cap(w.subject(first, with_n=False)) + "." if first is not None and not first.hidden
                   else None)
        ns = [f.n for f in figs.values() if f.n is not None]
        champ = f"{view.field()} ayant répondu" + (
            f" (de {format_int(min(ns))} à {format_int(max(ns))} répondants selon la question)" if ns else "")
        parts.append(present.chart_html(
            fig, alt=french_typography(alt),
            title=french_typography(f"Le profil des entrepreneurs {who} face aux repères nationaux"),
            lecture=lecture, champ=champ + ".",
            source=story.source_line(view) + " ; INSEE, Sine et statistiques de créations d’entreprises "
                   "(repères nationaux, voir l’annexe)."))
    parts.append(situation_table(view))
    return "".join(p for p in parts if p)


def _has(view: View, ind: str) -> bool:
    try:
        view.codebook.indicator(ind)
    except KeyError:
        return False
    return not view.select(ind, breakdown=None).empty


def situation_table(view: View) -> str:
    """Statut, ancienneté et situation avant la CAE : the target (and the consortium), one table."""
    targets = [view.target] if view.is_consortium else [view.target, CONSORTIUM]
    lines = []
    ns = {t: [] for t in targets}
    for variable in CHAPTER_TABLE_QUESTIONS:
        ind_id = f"profile_{variable}"
        if view.select(ind_id).empty:
            continue
        q = view.codebook.question(variable)
        scale = view.codebook.scale_of(variable)
        first = True
        for choice in scale.choices:
            if choice.missing:
                continue
            line = {"Caractéristique": _QUESTION_NAMES.get(variable, q.text) if first else "",
                    "Réponse": choice.label}
            first = False
            for tgt in targets:
                r = view.row(ind_id, tgt, category=choice.code)
                line[view.labels[tgt]] = fmt_value(r, "pct") if r is not None else "—"
            lines.append(line)
        for tgt in targets:
            rows = view.rows(ind_id, tgt)
            if len(rows):
                ns[tgt].append(rows["n_unweighted"].max())
    if not lines:
        return ""
    champ = "; ".join(
        f"{view.field(t)} ({format_int(min(v))} répondants)" if v and min(v) == max(v) else
        f"{view.field(t)} (de {format_int(min(v))} à {format_int(max(v))} répondants selon la question)"
        for t, v in ns.items() if v)
    first = lines[0]
    lecture = (f"{first[view.labels[view.target]]} des entrepreneurs "
               f"{'du consortium' if view.is_consortium else 'de la ' + view.labels[view.target]} "
               f"sont au stade « {first['Réponse']} ».")
    return present.table_html(
        pd.DataFrame(lines), caption="Situation des entrepreneurs dans la CAE", note=SUPPRESSED_LEGEND + ".",
        numeric_columns=[view.labels[t] for t in targets], lecture=french_typography(lecture),
        champ=champ + ".", source=f"enquête CAE-IMPACT, vague {view.study.wave}"
        + (" (données synthétiques)." if view.study.synthetic else "."))


_QUESTION_NAMES = {"contract_stage": "Statut dans la CAE", "seniority": "Ancienneté",
                   "prior_status": "Situation avant la CAE", "sector": "Secteur d’activité"}
