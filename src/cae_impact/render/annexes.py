"""The report's front matter and annexes, computed from the study's files (not from notebooks).

* « L'essentiel » (:func:`cae_impact.render.chapters.essentials_section`) and « Paroles
  d'entrepreneurs » (:func:`verbatims_box`) come right after the table of contents;
* annexes A to D: method (:func:`method_annex`), data quality (:func:`data_quality_annex`),
  questionnaire (:func:`questionnaire_annex`) and provenance (:func:`provenance_annex`).

Each function takes plain inputs (the study configuration, the weighting report, cleaning logs,
the codebook, a manifest…) and returns an HTML fragment built with :mod:`cae_impact.render.present`:
every text is escaped, so nothing read from a file (a CAE label, a respondent's answer) is ever
interpreted as markup. :func:`build_front` and :func:`build_annexes` read the files of a target.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cae_impact.clean.cleaning import REASON_LABELS
from cae_impact.core.environment import git_state, package_versions
from cae_impact.core.files import sha256_file
from cae_impact.core.frenchfmt import format_date_fr, format_int, format_number, format_pct
from cae_impact.core.paths import relative_path as _rel
from cae_impact.render import present, references
from cae_impact.render.evolution import coverage_sentence, method_paragraphs
from cae_impact.spec.codebook import Codebook, load_codebook
from cae_impact.spec.config import CONSORTIUM, MAX_NAMED_CAES, StudyConfig
from cae_impact.spec.layout import target_files

VERBATIM_QUESTIONS = ("cae_change_text", "remarks")
VERBATIM_MIN_ANSWERS = 10
VERBATIM_MAX = 3
VERBATIM_LENGTH = (25, 300)
PACKAGES = ("pandas", "numpy", "scipy", "papermill", "nbconvert", "weasyprint")

SECTION_TITLES = {"profile": "Profil"}


def _box(title: str, lines: Sequence[str], css_class: str = "box") -> str:
    items = "".join(f"<li>{present.esc(line)}</li>" for line in lines)
    return f'<aside class="{present.esc(css_class)}"><p class="box-title">{present.esc(title)}</p><ul>{items}</ul></aside>'


# ----------------------------------------------------------------------------- verbatims


def select_verbatims(texts: Sequence[object], *, max_quotes: int = VERBATIM_MAX,
                     min_answers: int = VERBATIM_MIN_ANSWERS) -> list[str]:
    """Choose up to ``max_quotes`` free-text answers, deterministically; [] under ``min_answers``.

    Blank answers do not count. Answers still holding a masked personal datum (« [… masqué] »),
    very short ones (« RAS ») and very long ones are never quoted; duplicates are quoted once. The
    order is that of the SHA-256 of the text, so the choice depends on nothing but the answers.
    """
    answers = [str(t).strip() for t in texts if t is not None and not pd.isna(t) and str(t).strip()]
    if len(answers) < min_answers:
        return []
    lo, hi = VERBATIM_LENGTH
    pool = sorted({a for a in answers if lo <= len(a) <= hi and "masqu" not in a.lower() and "[" not in a})
    pool.sort(key=lambda a: hashlib.sha256(a.encode("utf-8")).hexdigest())
    return pool[:max_quotes]


# ----------------------------------------------------------------------------- annex A: method


def method_annex(study: StudyConfig, weighting: Mapping, target: str) -> str:
    """Annex A: sample, response, weighting, intervals, tests, suppression, references."""
    opts = study.report
    per_cae = pd.DataFrame(weighting.get("per_cae", []))
    parts = [present.heading_html("Annexe A — Méthode", 1, anchor="annexe-methode")]
    parts.append(present.paragraph_html(
        "En bref : tous les entrepreneurs inscrits ont été invités à répondre ; les réponses sont "
        "pondérées pour représenter l'ensemble des inscrits ; chaque chiffre est donné avec sa marge "
        "d'erreur ; un écart n'est dit net (significatif) qu'après un test qui tient compte du nombre "
        "de comparaisons faites ; les chiffres qui concerneraient moins de 5 personnes ne sont pas "
        "diffusés. Cette annexe donne le détail, avec les termes techniques, pour les lecteurs qui "
        "veulent vérifier.", "lead"))
    parts.append(present.heading_html("Échantillon et taux de réponse", 2))
    if not per_cae.empty:
        shown = per_cae if target == CONSORTIUM else per_cae[per_cae["cae_id"] == target]
        rows = [{
            "CAE": r["label"],
            "Registre": format_int(r["population"]),
            "Répondants": format_int(r["respondents"]),
            "Taux de réponse": format_pct(r["response_rate"]),
            "Effet de plan (Kish)": format_number(r["kish_deff"], 2),
            "Poids min. – max.": f"{format_number(r['weight_min'], 2)} – {format_number(r['weight_max'], 2)}",
        } for _, r in shown.iterrows()]
        cons = weighting.get("consortium") or {}
        total_pop, total_resp = int(cons.get("population", 0)), int(cons.get("respondents", 0))
        reference = weighting.get("reference")
        when = (f"Les chiffres du consortium auxquels la CAE est comparée sont ceux publiés le "
                f"{format_date_fr(reference['published'])}. " if reference else "")
        parts.append(present.paragraph_html(
            f"{when}L'enquête a été proposée à tous les entrepreneurs inscrits au registre des "
            f"{format_int(cons.get('caes', 0))} CAE du consortium ({format_int(total_pop)} personnes) ; "
            f"{format_int(total_resp)} réponses ont été retenues après nettoyage, soit un taux de "
            f"réponse de {format_pct(total_resp / total_pop if total_pop else float('nan'))}. Le "
            "poids de base d'un répondant est l'effectif de sa CAE au registre divisé par le nombre "
            "de répondants de la CAE."))
        parts.append(present.table_html(
            pd.DataFrame(rows), caption="Échantillon et pondération par CAE",
            note="Effet de plan de Kish : perte de précision due à la dispersion des poids (1 = aucune).",
            numeric_columns=["Registre", "Répondants", "Taux de réponse", "Effet de plan (Kish)", "Poids min. – max."]))
    parts.append(present.heading_html("Pondération", 2))
    cons_all = weighting.get("consortium") or {}
    methods = sorted(set(per_cae["weighting"])) if "weighting" in per_cae else []
    # cae_impact.analysis.indicators.build_design: the post-strata are the variance's strata
    # (estimation.cells_as_strata) when the weights are post-stratified, else the CAEs.
    cells = any("post-stratification" in str(m) for m in methods)
    variance = (
        "Pour le calcul des variances (linéarisation de Taylor), chaque groupe sexe × statut d'une "
        "CAE est une strate, avec sa propre correction de population finie (« groupes de réponse "
        "homogènes ») : les répondants d'un groupe sont traités comme un échantillon au hasard de "
        "ses inscrits, quel que soit le taux de réponse du groupe. C'est pourquoi un groupe d'un "
        "seul répondant est regroupé avec les autres statuts du même sexe, sauf si tous ses "
        "inscrits ont répondu."
        if cells else
        "Pour le calcul des variances (linéarisation de Taylor), chaque CAE est une strate.")
    parts.append(present.paragraph_html(
        ("Dans chaque CAE, les poids sont calés sur la répartition du registre par sexe et par statut "
         "(CAPE, CESA, associé) : " + ", ".join(methods) + ". " if cells else
         "Pondération : " + (", ".join(methods) if methods else "pondération de base (N/n)") + ". ")
        + variance + " Pour l'ensemble du consortium, l'effet de plan de Kish vaut "
        f"{format_number(cons_all.get('kish_deff', float('nan')), 2)} et la taille effective "
        f"{format_number(cons_all.get('effective_n', float('nan')), 0)}."))
    notes = [n for n in weighting.get("notes", [])
             if target == CONSORTIUM or n.startswith(study.target_label(target) + " ")]
    if notes:
        parts.append(_box("Notes de pondération", notes))
    level = format_pct(opts.confidence_level)
    # Every sentence below describes what cae_impact.estimation and cae_impact.analysis.indicators compute
    # (see the README's estimation paragraph); change them together.
    method = {
        "logit": ("sur l'échelle logit : logit de la proportion plus ou moins le quantile de Student "
                  "à d degrés de liberté fois son erreur-type (méthode « logit » de svyciprop de R)"),
        "beta": ("de Korn-Graubard (Clopper-Pearson sur la taille d'échantillon effective corrigée "
                 "des degrés de liberté, méthode « beta » de svyciprop de R)"),
    }.get(opts.interval_method, opts.interval_method)
    parts.append(present.heading_html("Intervalles de confiance", 2))
    parts.append(_box(f"Intervalles de confiance à {level}", [
        "Les variances sont estimées par linéarisation (Taylor) et tiennent compte du plan de "
        "sondage : strates (" + ("les groupes sexe × statut de chaque CAE" if cells else "les CAE")
        + "), poids, correction de population finie. d désigne les degrés de liberté du plan : les "
        "répondants de la base moins le nombre de strates dont ils font partie.",
        coverage_sentence("level"),
        f"Proportions : intervalle {method}.",
        "Proportions de 0 % ou de 100 % dans un échantillon : la variance linéarisée est nulle et "
        "la méthode précédente ne donne pas d'intervalle ; l'intervalle est alors celui de "
        "Korn-Graubard (Clopper-Pearson) sur le nombre de répondants, corrigé des degrés de "
        "liberté (convention du NCHS, que R n'applique pas).",
        "Moyennes et montants : estimation plus ou moins le quantile de Student à d degrés de "
        "liberté fois l'erreur-type ; médianes : intervalle de Woodruff (comme svyquantile de R).",
        "Évolutions avant / maintenant : différence individuelle moyenne plus ou moins le quantile "
        "de Student à d − 1 degrés de liberté fois son erreur-type (comme svyttest de R).",
        "Pas d'intervalle pour une part sur laquelle les poids d'une CAE sont calés (sexe, statut "
        "dans la CAE) : c'est le chiffre du registre, sans marge d'erreur d'échantillonnage ; ni "
        "pour une CAE où tous les entrepreneurs inscrits ont répondu : ses chiffres n'ont pas de "
        "marge d'erreur d'échantillonnage.",
    ]))
    parts.append(present.heading_html("Tests statistiques", 2))
    parts.append(_box("Tests utilisés", [
        ("CAE contre les chiffres publiés du consortium : test t de Wald sur l'écart, variance du "
         "plan de sondage de la CAE et des chiffres publiés, en tenant compte de la part de la CAE "
         "dans le consortium (le même test que la CAE contre le reste du consortium quand les "
         "chiffres publiés sont ceux des mêmes données), avec les degrés de liberté du consortium "
         "publié moins un."
         if weighting.get("reference") else
         "CAE contre le reste du consortium : test t de Wald sur la différence des estimations, "
         "variance du plan de sondage (linéarisation conjointe), d − 1 degrés de liberté (comme "
         "svyttest de R)."),
        "Ne sont pas testés contre le consortium : une part de 0 % ou de 100 % (ou une moyenne "
        "dont tous les répondants ont donné la même valeur) dans l'échantillon d'une CAE, dont la "
        "variance linéarisée est nulle : le test la traiterait comme connue sans erreur et "
        "conclurait à tort à un écart significatif ; et les variables sur lesquelles les poids "
        "sont calés (sexe, statut dans la CAE, dont la part d'associés), qui viennent des "
        "registres. Dans une CAE où tous les entrepreneurs inscrits ont répondu, le chiffre de la "
        "CAE est exact : le test ne porte que sur l'erreur d'échantillonnage du consortium.",
        "Écarts entre groupes (sexe, diplôme, situation antérieure, ancienneté…) : test "
        "d'indépendance de Rao-Scott au second ordre (statistique F, comme svychisq de R) ; pas "
        "de test quand la réponse est une variable de calage, ni dans une CAE où tous les "
        "inscrits ont répondu (les groupes y sont connus exactement).",
        "Avant / maintenant (revenus) : test t apparié sur la différence individuelle moyenne, "
        "pondéré, d − 1 degrés de liberté (comme svyttest de R). Ce test dit si le chiffre a "
        "changé ; il n'est pas reporté dans les colonnes « Écart significatif ? », qui comparent "
        "la CAE au consortium.",
        f"Comparaisons multiples : correction de Benjamini-Hochberg, taux de fausses découvertes de "
        f"{format_pct(opts.fdr_alpha)} ; un écart n'est dit significatif qu'après cette correction.",
    ]))
    parts.append(present.heading_html("Règles de diffusion (secret statistique)", 2))
    few = opts.min_cell_count - 1
    parts.append(_box("Ce qui n'est pas diffusé, et pourquoi", [
        f"Aucun pourcentage n'est donné sur moins de {opts.min_base_pct} répondants : la case est "
        "marquée « s » ;",
        f"sur {opts.min_base_pct} répondants ou plus, une part dont 0 à {few} répondants se trouvent "
        "d'un côté (ceux qui ont donné la réponse, ou ceux qui ne l'ont pas donnée) est donnée par une "
        "tranche, « moins de 2 sur 10 » ou « 9 sur 10 ou plus » : la tranche contient toujours 0 et "
        f"au moins {opts.min_cell_count} répondants de ce côté, si bien que personne ne peut savoir "
        "si aucun, un ou quelques entrepreneurs ont répondu ainsi, ni que tous l'ont fait ;",
        "une case est aussi masquée (« s », secret secondaire) quand elle permettrait, avec les autres "
        "chiffres diffusés de la vague, de retrouver une valeur masquée ou en tranche ;",
        "le nombre de répondants (n) d'une case masquée n'est pas donné, car il révélerait souvent la "
        "taille d'un groupe masquée ailleurs.",
    ]))
    parts.append(present.paragraph_html(
        f"Les résultats dont la base compte moins de {opts.caution_base} répondants sont suivis d'un "
        "astérisque (*) et sont à interpréter avec prudence."))
    parts.append(present.heading_html("Comparabilité des références nationales", 2))
    parts.append(present.paragraph_html(references.comparability_caveat()))
    return "".join(parts)


# ----------------------------------------------------------------------------- annex B: data quality


def _reason_label(code: str) -> str:
    return REASON_LABELS.get(code, code)


def cleaning_accounting(logs: Mapping[str, Mapping]) -> pd.DataFrame:
    """One column per CAE (label → cleaning_log.json), one row per line of the accounting."""
    return pd.DataFrame([{"Décompte": label, **{cae: format_int(v) for cae, v in vals.items()}}
                         for label, vals in _accounting_lines(logs)])


def _accounting_lines(logs: Mapping[str, Mapping]) -> list[tuple[str, dict[str, int]]]:
    """The lines of the cleaning accounting: (label, CAE -> count)."""
    reasons: list[str] = []
    for log in logs.values():
        for code in log["accounting"].get("set_aside", {}):
            if code not in reasons:
                reasons.append(code)
    blank_reasons: list[str] = []
    for log in logs.values():
        for code in log.get("values_blanked", {}).get("by_reason", {}):
            if code not in blank_reasons:
                blank_reasons.append(code)
    lines: list[tuple[str, dict[str, int]]] = []

    def add(label: str, get) -> None:
        lines.append((label, {cae: int(get(log) or 0) for cae, log in logs.items()}))

    add("Lignes de l'export", lambda g: g["accounting"]["raw_rows"])
    add("Réponses retenues", lambda g: g["accounting"]["kept"])
    add("Lignes écartées", lambda g: g["accounting"]["set_aside_total"])
    for code in reasons:
        add(f"\u2003dont {_reason_label(code)}", lambda g, c=code: g["accounting"].get("set_aside", {}).get(c, 0))
    add("Doublons fusionnés", lambda g: g["accounting"]["merged_duplicates"])
    add("Valeurs effacées", lambda g: g.get("values_blanked", {}).get("total", 0))
    for code in blank_reasons:
        add(f"\u2003dont {_reason_label(code)}", lambda g, c=code: g.get("values_blanked", {}).get("by_reason", {}).get(c, 0))
    add("Textes libres masqués", lambda g: g.get("free_text_masked", {}).get("texts_changed", 0))
    return lines


def secrecy_paragraph(summary: Mapping | None) -> str:
    """What the secrecy rules hid or coded in the wave and what the attack on them found."""
    if not summary or not summary.get("audit"):
        return ""
    audit = summary["audit"]
    by = summary.get("by_reason", {})
    coded = sum(v for k, v in by.items() if k.startswith("valeur en tranche"))
    count = sum(v for k, v in by.items() if k.startswith("effectif"))
    base = sum(v for k, v in by.items() if k.startswith("base"))
    second = by.get("suppression secondaire", 0)
    exposed = audit.get("exposed", 0)
    verdict = ("aucune n'est retrouvée exactement et aucune n'est enfermée entre 1 et 4 répondants."
               if exposed == 0 else
               f"{format_int(exposed)} pourraient l'être : ces chiffres n'auraient pas dû être publiés.")
    return present.paragraph_html(
        f"Secret statistique. Sur les {format_int(summary['cells'])} cases de ce rapport, "
        f"{format_int(coded)} sont données par une tranche, {format_int(count + base)} ne sont pas "
        f"diffusées parce qu'elles portent sur trop peu de répondants et {format_int(second)} au "
        "titre du secret secondaire. Une attaque par programmation linéaire sur l'ensemble des "
        "chiffres diffusés de la vague (tous les rapports et tableaux d'indicateurs, CAE et "
        "consortium) a cherché, pour chaque valeur masquée ou en tranche, la plus petite et la "
        "plus grande valeur compatibles avec tout ce qui est diffusé : " + verdict)


def data_quality_annex(logs: Mapping[str, Mapping], secrecy: Mapping | None = None) -> str:
    """Annex B: the cleaning accounting and the secrecy of the report.

    The cleaning accounting of every CAE of the report (raw = kept + set aside + merged), and
    what the secrecy rules hid and the attack on them found.
    """
    parts = [present.heading_html("Annexe B — Qualité des données", 1, anchor="annexe-qualite")]
    secrecy_html = secrecy_paragraph(secrecy)
    parts.append(present.paragraph_html(
        "Chaque export reçu d'une CAE est nettoyé selon des règles écrites et testées, sans jamais être "
        "modifié : toute ligne brute est soit retenue, soit écartée pour un motif, soit fusionnée avec "
        "un doublon, et le bilan « lignes de l'export = retenues + écartées + doublons fusionnés » est "
        "vérifié. Une valeur illisible ou hors bornes est effacée (la réponse est gardée). Les adresses "
        "électroniques et numéros de téléphone des textes libres sont masqués."))
    if not logs:
        parts.append(present.paragraph_html("Aucun journal de nettoyage disponible."))
        return "".join(parts) + secrecy_html
    frame = cleaning_accounting(logs)
    broken = [cae for cae, log in logs.items() if not log["accounting"].get("identity_holds", True)]
    note = "Source : journaux de nettoyage (cleaning_log.json) de chaque CAE."
    if broken:
        note += " Bilan non vérifié pour : " + ", ".join(broken) + "."
    if len(logs) <= MAX_NAMED_CAES:
        parts.append(present.table_html(frame, caption="Décompte du nettoyage des réponses", note=note,
                                        numeric_columns=list(logs)))
        return "".join(parts) + secrecy_html
    # A national study: one column per CAE would not fit on a page. The detail by reason is
    # given for the whole consortium, then the main counts with one row per CAE.
    totals = pd.DataFrame([{"Décompte": label, "Ensemble": format_int(sum(vals.values()))}
                           for label, vals in _accounting_lines(logs)])
    parts.append(present.table_html(totals, caption="Décompte du nettoyage des réponses (ensemble des CAE)",
                                    note=note, numeric_columns=["Ensemble"]))
    main = {"Lignes de l'export": "raw_rows", "Retenues": "kept", "Écartées": "set_aside_total",
            "Doublons fusionnés": "merged_duplicates"}
    rows = [{"CAE": cae, **{label: format_int(log["accounting"].get(key, 0) or 0) for label, key in main.items()},
             "Valeurs effacées": format_int(log.get("values_blanked", {}).get("total", 0) or 0),
             "Textes masqués": format_int(log.get("free_text_masked", {}).get("texts_changed", 0) or 0)}
            for cae, log in logs.items()]
    columns = [*main, "Valeurs effacées", "Textes masqués"]
    parts.append(present.table_html(pd.DataFrame(rows), caption="Décompte du nettoyage par CAE",
                                    note=note, numeric_columns=columns))
    return "".join(parts) + secrecy_html



# ----------------------------------------------------------------------------- annex C: questionnaire


def _answers(codebook: Codebook, q) -> str:
    if q.type in ("single", "multiple", "likert", "frequency", "yesno"):
        scale = codebook.scale_of(q.id)
        labels = " ; ".join(c.label for c in scale.choices)
        return ("Plusieurs réponses possibles : " if q.type == "multiple" else "") + labels
    if q.type == "numeric":
        bounds = ""
        if q.min is not None and q.max is not None:
            bounds = f", de {format_number(q.min)} à {format_number(q.max)}"
        return f"Nombre{' (' + q.unit + ')' if q.unit else ''}{bounds}"
    if q.type == "text":
        return "Texte libre"
    return q.type


def questionnaire_rows(codebook: Codebook) -> list[tuple[str, pd.DataFrame]]:
    """The questions of each section, in codebook order: [(section title, table)]."""
    titles = {d.id: f"{d.number}. {d.title}" for d in codebook.domains}
    sections: dict[str, list[dict[str, str]]] = {}
    for q in codebook.questions.values():
        sections.setdefault(q.section, []).append({
            "N°": "", "Question": q.text + (f" ({q.hint})" if q.hint else ""), "Réponses possibles": _answers(codebook, q)})
    out = []
    n = 0
    for section, rows in sections.items():
        for r in rows:
            n += 1
            r["N°"] = str(n)
        out.append((titles.get(section, SECTION_TITLES.get(section, section)), pd.DataFrame(rows)))
    return out


def questionnaire_annex(codebook: Codebook) -> str:
    """Annex C: every question of the questionnaire, by section, in a compact numbered list.

    The answer choices of each question are in the printable questionnaire and in the
    « Dictionnaire » sheet of indicators.xlsx: listing them here took seven pages.
    """
    parts = [present.heading_html("Annexe C — Le questionnaire", 1, anchor="annexe-questionnaire")]
    parts.append(present.paragraph_html(
        f"Questionnaire CAE-IMPACT, version {codebook.version}, commun à toutes les CAE. Les questions "
        "sont posées dans cet ordre ; certaines ne le sont qu'à une partie des répondants. Les réponses "
        "proposées à chaque question figurent dans le questionnaire imprimable diffusé avec l'enquête."))
    items = []
    for title, frame in questionnaire_rows(codebook):
        questions = "".join(f'<li value="{present.esc(r["N°"])}">{present.esc(r["Question"])}</li>'
                            for _, r in frame.iterrows())
        items.append(f'<section class="q-section"><p class="q-title">{present.esc(title)}</p>'
                     f'<ol class="questions">{questions}</ol></section>')
    parts.append(f'<div class="questionnaire-list">{"".join(items)}</div>')
    return "".join(parts)


# ----------------------------------------------------------------------------- annex D: provenance


def provenance(study: StudyConfig, codebook: Codebook, logs: Mapping[str, Mapping] | None = None,
               manifest: Mapping | None = None) -> dict:
    """What produced the report: study file, codebook version, commit, packages, raw exports' hashes.

    A ``manifest`` (``manifest.json`` beside the report) wins over what is computed here.
    """
    if manifest:
        return from_manifest(manifest, study, codebook)
    git = git_state()
    commit, dirty = git["commit"] or "inconnu", bool(git["dirty"])
    exports = []
    by_label = {cae.label: cae for cae in study.caes}
    for cae in study.caes:
        log = (logs or {}).get(cae.label) or {}
        digest = sha256_file(cae.export) if cae.export.exists() else log.get("source", {}).get("sha256", "inconnu")
        exports.append({"cae": cae.label, "file": _rel(cae.export), "sha256": digest})
    del by_label
    return {
        "study_file": _rel(study.path),
        "study": study.study,
        "wave": study.wave,
        "codebook_version": codebook.version,
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(PACKAGES, missing="absent"),
        "raw_exports": exports,
    }


def from_manifest(manifest: Mapping, study: StudyConfig, codebook: Codebook) -> dict:
    """Read a ``manifest.json`` (flat keys, or the build's ``git``/``inputs`` layout) as :func:`provenance`."""
    git = manifest.get("git") if isinstance(manifest.get("git"), Mapping) else {}
    exports = manifest.get("raw_exports")
    if exports is None:
        raw = (manifest.get("inputs") or {}).get("raw_exports") or {}
        labels = {_rel(c.export): c.label for c in study.caes}
        if isinstance(raw, Mapping):
            exports = [{"cae": labels.get(path, ""), "file": path, "sha256": digest} for path, digest in raw.items()]
        else:
            exports = list(raw)
    packages = {k: (v if v else "absent") for k, v in (manifest.get("packages") or {}).items()}
    return {
        "study_file": manifest.get("study_file") or manifest.get("study") or _rel(study.path),
        "wave": manifest.get("wave", study.wave),
        "codebook_version": manifest.get("codebook_version", codebook.version),
        "git_commit": manifest.get("git_commit", git.get("commit", "inconnu")),
        "git_dirty": manifest.get("git_dirty", git.get("dirty")),
        "packages": packages,
        "raw_exports": exports,
    }


def summarised_exports(exports: list[Mapping], own: str | None) -> list[Mapping]:
    """The exports the provenance table lists: all of them up to :data:`MAX_NAMED_CAES`.

    Beyond, the report's own CAE's exports (``own``, its label; none for the consortium) and one
    row for the others: their number and the sha256 of their sorted list of ``file<TAB>sha256``
    lines, the list itself being in the report's ``manifest.json``. A CAE's report of a
    160-CAE study would otherwise print 160 rows (five pages) of other CAEs' files.
    """
    if len(exports) <= MAX_NAMED_CAES:
        return list(exports)
    mine = [e for e in exports if own is not None and e.get("cae") == own]
    others = [e for e in exports if not (own is not None and e.get("cae") == own)]
    listing = "".join(f"{e.get('file', '')}\t{e.get('sha256', '')}\n"
                      for e in sorted(others, key=lambda e: str(e.get("file", ""))))
    return mine + [{
        "cae": f"{format_int(len(others))} {'autres ' if mine else ''}exports de CAE",
        "file": "liste et empreintes dans manifest.json (ci-contre : l'empreinte de cette liste)",
        "sha256": hashlib.sha256(listing.encode("utf-8")).hexdigest(),
    }]


def provenance_annex(prov: Mapping) -> str:
    """Annex D: the provenance of the report, as a table (from :func:`provenance` or a manifest)."""
    parts = [present.heading_html("Annexe D — Provenance", 1, anchor="annexe-provenance")]
    parts.append(present.paragraph_html(
        "Ce rapport est produit automatiquement à partir des exports des CAE, sans saisie manuelle. "
        "Les éléments ci-dessous permettent de le reproduire à l'identique et de vérifier que les "
        "fichiers reçus n'ont pas été modifiés."))
    dirty = prov.get("git_dirty")
    rows = [
        ("Fichier d'étude", prov.get("study_file", "—")),
        ("Vague", prov.get("wave", "—")),
        ("Version du questionnaire (codebook)", prov.get("codebook_version", "—")),
        ("Version du code (commit git)", str(prov.get("git_commit", "—"))
         + (" — modifications non enregistrées" if dirty else "")),
    ]
    packages = prov.get("packages") or {}
    if packages:  # one row: the versions are for re-running, not for reading
        rows.append(("Logiciels (versions)", ", ".join(f"{name} {version}" for name, version in packages.items()
                                                       if version != "absent")))
    parts.append(present.table_html(pd.DataFrame(rows, columns=["Élément", "Valeur"]),
                                    caption="Provenance du rapport", css_class="data provenance"))
    exports = prov.get("raw_exports") or []
    if exports:
        frame = pd.DataFrame([{"CAE": e.get("cae", ""), "Fichier reçu": e.get("file", ""),
                               "Empreinte SHA-256": e.get("sha256", "")} for e in exports])
        parts.append(present.table_html(
            frame, caption="Exports bruts des CAE et leur empreinte", css_class="data provenance",
            note="L'empreinte SHA-256 change si un seul octet du fichier change."))
    return "".join(parts)


# ----------------------------------------------------------------------------- assembly


def load_cleaning_logs(study: StudyConfig, target: str, processed_root: Path) -> dict[str, dict]:
    """cleaning_log.json of every CAE of the report (label → log); the consortium has them all."""
    ids = study.cae_ids if target == CONSORTIUM else [target]
    logs = {}
    for cae_id in ids:
        path = processed_root / study.wave / cae_id / "cleaning_log.json"
        if path.exists():
            logs[study.target_label(cae_id)] = json.loads(path.read_text(encoding="utf-8"))
    return logs


def build_annexes(study: StudyConfig, target: str, *, reports_root: Path, processed_root: Path,
                  codebook: Codebook | None = None, manifest_path: Path | None = None) -> str:
    """Annexes A–D of a target's report, from its files (:func:`cae_impact.run.pipeline.target_files`)."""
    cb = codebook or load_codebook(study.codebook)
    _, wpath = target_files(study, reports_root, target)
    weighting = json.loads(wpath.read_text(encoding="utf-8")) if wpath.exists() else {}
    logs = load_cleaning_logs(study, target, processed_root)
    manifest = None
    if manifest_path is not None and manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    reference = weighting.get("reference")
    prov = provenance(study, cb, logs if reference else load_cleaning_logs(study, CONSORTIUM, processed_root),
                      manifest)
    if reference and target != CONSORTIUM:
        # Compared with published figures, the report depends on its CAE's export and on them only.
        label = study.target_label(target)
        prov["raw_exports"] = [e for e in prov.get("raw_exports", []) if e.get("cae") == label] + [{
            "cae": f"Chiffres publiés du consortium ({format_date_fr(reference['published'])})",
            "file": reference.get("path", ""), "sha256": reference.get("sha256", "")}]
    prov["raw_exports"] = summarised_exports(prov.get("raw_exports") or [],
                                             None if target == CONSORTIUM else study.target_label(target))
    return "".join([
        method_annex(study, weighting, target),
        method_paragraphs(study, reports_root),
        data_quality_annex(logs, weighting.get("secrecy")),
        questionnaire_annex(cb),
        provenance_annex(prov),
    ])
