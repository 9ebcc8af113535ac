"""Write the five pipeline notebooks, numbered in pipeline order (run once; afterwards the .ipynb files are the source).

Kept so that the notebooks' skeleton (same headings, parameters cell, validation cell) can be
regenerated consistently; edit the notebooks themselves in JupyterLab for content changes.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"display_name": "Python (CAE-IMPACT)", "language": "python", "name": "cae-impact"}


def nb(cells):
    n = new_notebook(cells=cells)
    n.metadata["kernelspec"] = KERNELSPEC
    n.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(n.cells):
        c.id = f"cell-{i:02d}"
    return n


def params(src):
    return new_code_cell(src, metadata={"tags": ["parameters", "remove-cell"]})


def hidden(src):
    return new_code_cell(src, metadata={"tags": ["remove-cell"]})


def shown(src):
    return new_code_cell(src)


def evidence(src):
    """A cell the reviewer sees in the executed notebook and the report leaves out."""
    return new_code_cell(src, metadata={"tags": ["evidence"]})


def evidence_note(text):
    return new_markdown_cell(text, metadata={"tags": ["evidence"]})


cleaning = nb([
    new_markdown_cell(
        "# Étape 01 — Nettoyage des réponses d'une CAE\n\n"
        "Lit l'export brut de l'outil d'enquête de la CAE (jamais modifié), le convertit au "
        "référentiel, applique les règles de nettoyage documentées dans `docs/cleaning-rules.md`, "
        "pseudonymise, et écrit `data/processed/<vague>/<cae>/`. Chaque ligne brute est comptée : "
        "conservée, écartée (avec sa raison) ou fusionnée comme doublon.",
        metadata={"tags": ["remove-cell"]},
    ),
    params(
        'study: str = "config/study.yaml"  # study configuration, relative to the project root\n'
        'cae: str = "cae-1"  # CAE id from the study configuration\n'
        'processed_root: str = "data/processed"  # root of the cleaned data (relative to the project root)\n'
    ),
    hidden(
        "from cae_impact.run import pipeline\n\n"
        "ctx = pipeline.cleaning_context(study=study, cae=cae, processed_root=processed_root)\n"
        "ctx"
    ),
    shown("result = pipeline.run_cleaning(ctx)\npipeline.show_cleaning_summary(ctx, result)"),
    shown("pipeline.show_quarantine(ctx, result)"),
    hidden("pipeline.save_cleaning(ctx, result)"),
])

effect = nb([
    new_markdown_cell(
        "<!-- Étape 03 : analyse des domaines d'effet pour une cible (une CAE ou le consortium), "
        "un chapitre du rapport par domaine. Les chiffres, textes et graphiques viennent de "
        "fonctions testées de src/cae_impact. -->",
        metadata={"tags": ["remove-cell"]},
    ),
    params(
        'study: str = "config/study.yaml"  # study configuration, relative to the project root\n'
        'target: str = "cae-1"  # a CAE id from the study configuration, or "consortium"\n'
        'processed_root: str = "data/processed"  # root of the cleaned data\n'
        'reports_root: str = "reports"  # root of the reports (indicator tables are saved there)\n'
    ),
    hidden(
        "from cae_impact.run import pipeline\n\n"
        "ctx = pipeline.effect_context(study=study, target=target,\n"
        "                              processed_root=processed_root, reports_root=reports_root)\n"
        "ctx"
    ),
    shown("analyses = pipeline.analyse_domains(ctx)  # every effect domain of the codebook, in order\n"
          "for analysis in analyses:\n"
          "    pipeline.show_chapter(ctx, analysis)"),
    evidence_note(
        "## Pièces justificatives (hors rapport)\n\n"
        "Les cellules suivantes ne sont pas reprises dans le rapport : elles donnent, pour chaque "
        "indicateur de chaque domaine, sa règle dans le référentiel et ses résultats non arrondis "
        "(estimation, erreur type, intervalle, effectifs, test, p-values brute et ajustée, motif "
        "de non-diffusion)."
    ),
    evidence("for analysis in analyses:\n    pipeline.show_evidence(ctx, analysis)"),
    evidence_note(
        "### Le chiffre de tête recalculé\n\n"
        "Pour chaque domaine, la part qui titre le chapitre est recalculée depuis les données "
        "nettoyées avec l’API publique d’estimation (`cae_impact.estimation`) ; la cellule échoue si "
        "elle diffère du chiffre publié."
    ),
    evidence("design = pipeline.headline_design(ctx)  # the weights built again from the cleaned data\n"
             "for analysis in analyses:\n"
             "    pipeline.recompute_headline(ctx, analysis, design)"),
])

profile = nb([
    new_markdown_cell(
        "<!-- Étape 04 : profil des entrepreneurs d'une cible, comparé au consortium et aux "
        "références nationales. -->",
        metadata={"tags": ["remove-cell"]},
    ),
    params(
        'study: str = "config/study.yaml"  # study configuration, relative to the project root\n'
        'target: str = "cae-1"  # a CAE id from the study configuration, or "consortium"\n'
        'processed_root: str = "data/processed"  # root of the cleaned data\n'
        'reports_root: str = "reports"  # root of the reports (indicator tables are saved there)\n'
    ),
    hidden(
        "from cae_impact.run import pipeline\n\n"
        "ctx = pipeline.profile_context(study=study, target=target,\n"
        "                               processed_root=processed_root, reports_root=reports_root)\n"
        "ctx"
    ),
    shown("profile = pipeline.analyse_profile(ctx)\npipeline.show_front(ctx, profile)"),
    shown("pipeline.show_profile(ctx, profile)"),
    evidence_note(
        "## Pièces justificatives (hors rapport)\n\n"
        "Échantillon, taux de réponse, pondération, et la répartition des entrepreneurs sur chaque "
        "question de profil : ces cellules ne sont pas reprises dans le rapport."
    ),
    evidence("pipeline.show_profile_evidence(ctx, profile)"),
])

evolution = nb([
    new_markdown_cell(
        "<!-- Étape 05 : évolution d'une cible (une CAE ou le consortium) depuis la vague précédente, "
        "à partir des chiffres publiés de cette vague (src/cae_impact/analysis/waves.py, src/cae_impact/render/evolution.py). -->",
        metadata={"tags": ["remove-cell"]},
    ),
    params(
        'study: str = "config/study-2027.yaml"  # study configuration (with previous_waves), relative to the project root\n'
        'target: str = "cae-1"  # a CAE id from the study configuration, or "consortium"\n'
        'processed_root: str = "data/processed"  # root of the cleaned data\n'
        'reports_root: str = "reports"  # root of the reports\n'
    ),
    hidden(
        "from cae_impact.run import pipeline\nfrom cae_impact.render import evolution\n\n"
        "ctx = pipeline.profile_context(study=study, target=target,\n"
        "                               processed_root=processed_root, reports_root=reports_root)\n"
        "ctx"
    ),
    shown("evolution.show_evolution(ctx)"),
    evidence_note(
        "## Pièces justificatives (hors rapport)\n\n"
        "Chaque évolution non arrondie (valeurs des deux vagues, erreurs-types, degrés de liberté, "
        "intervalle, p-values brute et ajustée, motif de non-diffusion) et la comparabilité des "
        "indicateurs entre les deux versions du référentiel."
    ),
    evidence("evolution.show_evolution_evidence(ctx)"),
])

estimation = nb([
    new_markdown_cell(
        "# Étape 02 — Pondération et estimation de la vague\n\n"
        "Estime chaque indicateur de chaque cible à partir des données nettoyées de toutes les CAE "
        "(plan de sondage, pondération, secret statistique appliqué à toute la vague), écrit "
        "`reports/<vague>/_study/`, puis montre ce qu’un statisticien d’enquête vérifie : registre, "
        "répondants et taux de réponse, post-strates après regroupement, poids écrêtés, marges "
        "pondérées contre le registre, distribution des poids, effets de plan, et ce que le secret "
        "statistique a masqué ou codé, et pourquoi. Tout est lu dans les fichiers écrits par "
        "l’estimation ; seuls des agrégats sont montrés (aucun identifiant de répondant)."
    ),
    params(
        'study: str = "config/study.yaml"  # study configuration, relative to the project root\n'
        'processed_root: str = "data/processed"  # root of the cleaned data (every CAE of the study)\n'
        'reports_root: str = "reports"  # root of the reports (the estimation writes <wave>/_study/ there)\n'
    ),
    hidden(
        "from cae_impact.run import pipeline\nfrom cae_impact.render import audit\n\n"
        "ctx = audit.estimation_context(study=study, processed_root=processed_root, reports_root=reports_root)\n"
        "ctx"
    ),
    new_markdown_cell("## Estimation\n\n"
                      "`pipeline.run_estimation` : le calcul que les rapports impriment, et les fichiers "
                      "qu’il écrit."),
    shown("pipeline.run_estimation(ctx.study, ctx.processed_root, ctx.reports_root)\n"
          "outputs = audit.load_outputs(ctx.study_dir)\n"
          "audit.show_written(ctx)"),
    new_markdown_cell("## Registre, répondants et taux de réponse"),
    shown("audit.show_response(outputs)"),
    new_markdown_cell("## Post-strates après regroupement"),
    shown("audit.show_post_strata(outputs)"),
    new_markdown_cell("## Poids écrêtés"),
    shown("audit.show_trimming(outputs)"),
    new_markdown_cell("## Marges pondérées contre le registre\n\n"
                      "La cellule échoue, et l’estimation avec elle, si une marge ne retrouve pas le registre."),
    shown("margins = audit.weighted_margins(outputs)\n"
          "audit.show_margins(margins)\n"
          "assert audit.margins_match(margins), \"les totaux pondérés ne retrouvent pas le registre\""),
    new_markdown_cell("## Distribution des poids"),
    shown("audit.show_weights(outputs)"),
    new_markdown_cell("## Effets de plan (Kish) et tailles effectives"),
    shown("audit.show_design_effects(outputs)"),
    new_markdown_cell("## Secret statistique\n\n"
                      "Cellules masquées (effectif ou base trop faibles), publiées en tranche, ou masquées "
                      "en suppression secondaire, par cible et par motif ; puis le verdict de l’attaque "
                      "par programmation linéaire sur tous les chiffres publiés."),
    shown("audit.show_secrecy(outputs)"),
])

for name, n in [("01_cleaning", cleaning), ("02_estimation", estimation), ("03_effect", effect),
                ("04_profile", profile), ("05_evolution", evolution)]:
    nbformat.write(n, ROOT / "notebooks" / f"{name}.ipynb")
    print("wrote", name)
