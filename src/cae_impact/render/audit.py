"""What a survey statistician checks after the estimation, read from the files it wrote.

Notebook 02 (``notebooks/02_estimation.ipynb``, executed once per wave by the build's
estimation step) runs :func:`cae_impact.run.pipeline.run_estimation`, then shows, through this
module, the diagnostics of the weighting and of the disclosure control: register counts,
respondents and response rates per CAE; the post-strata after collapsing; the trimmed weights;
the weighted margins against the registers; the distribution of the weights; Kish's design
effects and effective sizes; what the statistical secrecy hid, banded or suppressed in second
place, and the verdict of the linear-programming attack.

Everything here is read from the files the estimation writes under ``reports/<wave>/_study/``
(``weighting.json``, ``design.csv``, ``post_strata.csv``, ``secrecy_audit.csv``,
``estimates.parquet``), never from the estimation's objects: the diagnostics check what was
published, whatever engine computed it. Only aggregates are shown (``design.csv`` holds a
pseudonymous id per respondent; no id is ever displayed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cae_impact.analysis.indicators import (
    TRIM_RATIO,  # the estimation's trimming rule, declared once there
)
from cae_impact.core.files import sha256_file
from cae_impact.core.frenchfmt import format_number
from cae_impact.render import present
from cae_impact.spec.config import CONSORTIUM, StudyConfig
from cae_impact.spec.layout import ESTIMATES_FILE, WEIGHTING_FILE
from cae_impact.spec.parameters import ParameterError, _path, _study

#: relative tolerance of the margins: a CAE's weighted total must equal its register count
MARGIN_TOLERANCE = 1e-6

#: categories of a secrecy reason (``suppression_reason`` starts with these words)
SECRECY_KINDS = (
    ("effectif <", "masquée (effectif)"),
    ("base <", "masquée (base)"),
    ("valeur en tranche", "en tranche"),
    ("suppression secondaire", "secondaire"),
)

DESIGN_FILE = "design.csv"
POST_STRATA_FILE = "post_strata.csv"
SECRECY_AUDIT_FILE = "secrecy_audit.csv"


# ------------------------------------------------------------------------------ context, files


@dataclass(frozen=True)
class EstimationContext:
    """Validated parameters of notebook 02 (one wave of a study)."""

    study: StudyConfig
    processed_root: Path
    reports_root: Path

    @property
    def study_dir(self) -> Path:
        """``reports/<wave>/_study/``."""
        return self.reports_root / self.study.wave / "_study"

    def __repr__(self) -> str:
        return f"EstimationContext(wave={self.study.wave!r}, caes={len(self.study.caes)})"

    def _repr_html_(self) -> str:
        return f"<p>Estimation : vague {self.study.wave}, {len(self.study.caes)} CAE</p>"


def estimation_context(*, study: str, processed_root: str, reports_root: str) -> EstimationContext:
    """Validate notebook 02's parameters: the study, and every CAE's cleaned data present."""
    st = _study(study)
    processed = _path(processed_root, "processed_root")
    reports = _path(reports_root, "reports_root")
    missing = [c for c in st.cae_ids if not (processed / st.wave / c / "responses.parquet").exists()]
    if missing:
        raise ParameterError(
            f"cleaned data missing for {', '.join(missing)} under {processed / st.wave}: "
            "run 'make data-processed' (notebook 01) first")
    return EstimationContext(st, processed, reports)


@dataclass
class StudyOutputs:
    """The files of ``reports/<wave>/_study/`` the diagnostics read."""

    folder: Path
    weighting: dict
    design: pd.DataFrame
    post_strata: pd.DataFrame | None
    secrecy_audit: pd.DataFrame | None
    estimates: pd.DataFrame

    @property
    def per_cae(self) -> pd.DataFrame:
        """One row per CAE: register count, respondents, response rate, design effect."""
        return pd.DataFrame(self.weighting.get("per_cae", []))


def load_outputs(folder: Path) -> StudyOutputs:
    """Read the estimation's files from ``folder`` (``reports/<wave>/_study/``)."""
    folder = Path(folder)
    weighting = json.loads((folder / WEIGHTING_FILE).read_text(encoding="utf-8"))
    design = pd.read_csv(folder / DESIGN_FILE, dtype={"respondent_id": str, "cae_id": str, "post_stratum": str},
                         keep_default_na=False, na_values=[])
    ps = folder / POST_STRATA_FILE
    post_strata = pd.read_csv(ps, dtype={"post_stratum": str}, keep_default_na=False) if ps.exists() else None
    sa = folder / SECRECY_AUDIT_FILE
    audit = pd.read_csv(sa, dtype={"group": str, "category": str}, keep_default_na=False) if sa.exists() else None
    estimates = pd.read_parquet(folder / ESTIMATES_FILE)
    return StudyOutputs(folder, weighting, design, post_strata, audit, estimates)


def written_files(folder: Path) -> pd.DataFrame:
    """The files the estimation wrote: name, size, sha256 (the digests the manifests record)."""
    rows = [{"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".")]
    return pd.DataFrame(rows, columns=["file", "bytes", "sha256"])


# ------------------------------------------------------------------------------ response


def response_table(outputs: StudyOutputs) -> pd.DataFrame:
    """Register count, respondents and response rate per CAE, and the consortium's total."""
    per = outputs.per_cae
    out = per[["cae_id", "label", "population", "respondents", "response_rate", "weighting"]].copy()
    total = {"cae_id": CONSORTIUM, "label": "Consortium", "population": per["population"].sum(),
             "respondents": per["respondents"].sum(),
             "response_rate": per["respondents"].sum() / per["population"].sum(), "weighting": ""}
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    out["population"] = out["population"].astype(int)
    out["respondents"] = out["respondents"].astype(int)
    return out


# ------------------------------------------------------------------------------ post-strata


def _split_label(label: str) -> tuple[str, str, str]:
    parts = str(label).split("|")
    return (parts + ["", "", ""])[:3] if len(parts) != 3 else (parts[0], parts[1], parts[2])


def _collapse_kind(sex: str, stage: str) -> str:
    if sex == "?":
        return "répondants sans sexe ou statut (poids de base)"
    if sex == "*":
        return "toute la CAE (sexe et statut regroupés)"
    if stage == "*":
        return "statuts regroupés dans le sexe"
    return ""


def post_strata_table(outputs: StudyOutputs) -> pd.DataFrame:
    """The post-strata after collapsing: register count, respondents, weight, what was merged.

    A label ``cae|sex|stage`` is a cell of the register; ``cae|sex|*`` a sex whose contract
    stages were merged (a cell had no respondent); ``cae|*|*`` a CAE post-stratified as a whole
    (its base weights unchanged); ``cae|?|?`` the respondents without sex or stage, kept with
    their base weights. ``weight`` is the post-stratified weight before trimming (register
    count / respondents of the cell).
    """
    cols = ["cae_id", "post_stratum", "sex", "stage", "register", "respondents", "weight", "collapsed"]
    if outputs.post_strata is None:
        return pd.DataFrame(columns=cols)
    n = outputs.design.groupby("post_stratum").size()
    rows = []
    for r in outputs.post_strata.itertuples(index=False):
        cae, sex, stage = _split_label(r.post_stratum)
        resp = int(n.get(r.post_stratum, 0))
        rows.append({"cae_id": cae, "post_stratum": r.post_stratum, "sex": sex, "stage": stage,
                     "register": float(r.Freq), "respondents": resp,
                     "weight": float(r.Freq) / resp if resp else float("nan"),
                     "collapsed": _collapse_kind(sex, stage)})
    return pd.DataFrame(rows, columns=cols)


def collapse_notes(outputs: StudyOutputs) -> list[str]:
    """The estimation's own sentences on merged cells and respondents without sex or stage."""
    return [n for n in outputs.weighting.get("notes", [])
            if "regroupée" in n or "sans sexe" in n or "calcul des variances" in n]


# ------------------------------------------------------------------------------ trimming


def _weights_before_trimming(outputs: StudyOutputs) -> pd.Series:
    """Each respondent's weight after post-stratification, before trimming (register / n of its cell)."""
    d = outputs.design
    if outputs.post_strata is None or not d["post_stratum"].astype(str).str.len().any():
        return d["base_weight"].astype(float)
    freq = outputs.post_strata.set_index("post_stratum")["Freq"].astype(float)
    n = d.groupby("post_stratum")["post_stratum"].transform("size").astype(float)
    return d["post_stratum"].map(freq).astype(float) / n


def trimming_table(outputs: StudyOutputs, ratio: float = TRIM_RATIO) -> pd.DataFrame:
    """Per CAE: the cap (``ratio`` x median weight), how many weights were trimmed and by how much.

    A weight is trimmed when it ends at its CAE's cap. ``excess`` is what the trimmed weights
    lost (their weight before minus after), given to the CAE's other respondents: the CAE's
    total is unchanged. ``largest_before`` / ``largest_after``: the CAE's largest weight.
    """
    d = outputs.design.assign(before=_weights_before_trimming(outputs).to_numpy())
    rows = []
    for cae, g in d.groupby("cae_id", sort=False):
        before = g["before"].to_numpy(float)
        after = g["weight"].to_numpy(float)
        cap = ratio * float(np.median(before[before > 0])) if (before > 0).any() else float("nan")
        trimmed = np.isclose(after, cap, rtol=1e-9, atol=0) & (before > 0)
        rows.append({
            "cae_id": cae, "respondents": len(g), "median_weight": float(np.median(before)), "cap": cap,
            "trimmed": int(trimmed.sum()),
            "largest_before": float(before.max()), "largest_after": float(after.max()),
            "excess": float((before[trimmed] - after[trimmed]).sum()),
            "excess_share": float((before[trimmed] - after[trimmed]).sum() / before.sum()),
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ margins


def weighted_margins(outputs: StudyOutputs) -> pd.DataFrame:
    """Weighted totals against the register: each CAE, then each post-stratum.

    ``level`` is ``cae`` or ``post_stratum``; ``gap`` = weighted - register; ``trimmed_cae``
    says whether the CAE had weights trimmed (trimming keeps the CAE's total, a post-stratum's
    only approximately).
    """
    d = outputs.design
    per = outputs.per_cae.set_index("cae_id")
    trim = trimming_table(outputs).set_index("cae_id")["trimmed"]
    rows = []
    sums = d.groupby("cae_id")["weight"].sum()
    for cae, reg in per["population"].items():
        rows.append({"level": "cae", "cae_id": cae, "cell": cae, "register": float(reg),
                     "weighted": float(sums.get(cae, 0.0)), "trimmed_cae": bool(trim.get(cae, 0) > 0)})
    if outputs.post_strata is not None:
        ps_sums = d.groupby("post_stratum")["weight"].sum()
        for r in outputs.post_strata.itertuples(index=False):
            cae = _split_label(r.post_stratum)[0]
            rows.append({"level": "post_stratum", "cae_id": cae, "cell": r.post_stratum,
                         "register": float(r.Freq), "weighted": float(ps_sums.get(r.post_stratum, 0.0)),
                         "trimmed_cae": bool(trim.get(cae, 0) > 0)})
    out = pd.DataFrame(rows, columns=["level", "cae_id", "cell", "register", "weighted", "trimmed_cae"])
    out["gap"] = out["weighted"] - out["register"]
    out["relative_gap"] = out["gap"] / out["register"].where(out["register"] != 0)
    return out


def margins_match(margins: pd.DataFrame, tolerance: float = MARGIN_TOLERANCE) -> bool:
    """True when the weighted totals reproduce the register (relative ``tolerance``).

    Every CAE's total must equal its register count, and every post-stratum's too in the CAEs
    without trimmed weights.
    """
    must = (margins["level"] == "cae") | ~margins["trimmed_cae"]
    gaps = margins.loc[must, "relative_gap"].abs().fillna(margins.loc[must, "gap"].abs())
    return bool((gaps <= tolerance).all())


# ------------------------------------------------------------------------------ weights


QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def weight_quantiles(outputs: StudyOutputs) -> pd.DataFrame:
    """Quantiles of the final weights per CAE and for the consortium.

    Respondents, mean, min, p10, p25, median, p75, p90, max, and ``max_over_min``.
    """
    d = outputs.design
    names = {0.0: "min", 0.1: "p10", 0.25: "p25", 0.5: "median", 0.75: "p75", 0.9: "p90", 1.0: "max"}
    rows = []
    groups = [*d.groupby("cae_id", sort=False), (CONSORTIUM, d)]
    for cae, g in groups:
        w = g["weight"].to_numpy(float)
        row = {"cae_id": cae, "respondents": len(w), "mean": float(w.mean())}
        row.update({names[q]: float(np.quantile(w, q)) for q in QUANTILES})
        row["max_over_min"] = float(w.max() / w.min()) if w.min() > 0 else float("inf")
        rows.append(row)
    return pd.DataFrame(rows)


def weights_figure(outputs: StudyOutputs):
    """A box plot of the final weights of each CAE (one line per CAE, the cap marked)."""
    matplotlib.use("Agg")
    d = outputs.design
    caes = list(dict.fromkeys(d["cae_id"]))
    labels = dict(zip(outputs.per_cae["cae_id"], outputs.per_cae["label"], strict=True))
    data = [d.loc[d["cae_id"] == c, "weight"].to_numpy(float) for c in caes]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(caes) + 1.4))
    ax.boxplot(data, orientation="horizontal", whis=(0, 100), widths=0.5)
    trim = trimming_table(outputs).set_index("cae_id")["cap"]
    for i, c in enumerate(caes, 1):
        ax.plot([trim[c]], [i], marker="|", markersize=14, color="#b22222")
    ax.set_yticks(range(1, len(caes) + 1), [labels.get(c, c) for c in caes])
    ax.invert_yaxis()
    ax.set_xlabel("Poids final (entrepreneurs représentés par un répondant)")
    ax.set_title("Distribution des poids par CAE (trait rouge : plafond d’écrêtage)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def design_effects(outputs: StudyOutputs) -> pd.DataFrame:
    """Kish's design effect and effective size per CAE and for the consortium.

    ``n Σw² / (Σw)²`` and ``(Σw)² / Σw²`` recomputed from ``design.csv``, beside the values of
    ``weighting.json`` (``*_recorded``).
    """
    d = outputs.design
    per = outputs.per_cae.set_index("cae_id")
    rows = []
    for cae, g in [*d.groupby("cae_id", sort=False), (CONSORTIUM, d)]:
        w = g["weight"].to_numpy(float)
        deff = len(w) * float((w ** 2).sum()) / float(w.sum()) ** 2
        if cae == CONSORTIUM:
            recorded, recorded_n = outputs.weighting.get("kish_deff"), outputs.weighting.get("effective_n")
        else:
            recorded, recorded_n = per.loc[cae, "kish_deff"], per.loc[cae, "effective_n"]
        rows.append({"cae_id": cae, "respondents": len(w), "kish_deff": deff, "effective_n": len(w) / deff,
                     "kish_deff_recorded": float(recorded), "effective_n_recorded": float(recorded_n)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ secrecy


def secrecy_kind(reason: Any) -> str:
    """« masquée (effectif) », « masquée (base) », « en tranche », « secondaire », or « publiée »."""
    text = "" if reason is None or (isinstance(reason, float) and np.isnan(reason)) else str(reason)
    for prefix, kind in SECRECY_KINDS:
        if text.startswith(prefix):
            return kind
    return "publiée" if not text else "autre"


def secrecy_by_target(table: pd.DataFrame) -> pd.DataFrame:
    """Cells of each target by what the secrecy did to them (one column per kind, then the total).

    ``table`` is the study table (``estimates.parquet``) or a published table of the same
    columns; each target's own rows only.
    """
    kinds = ["publiée", *[k for _, k in SECRECY_KINDS]]
    kind = table["suppression_reason"].map(secrecy_kind)
    out = pd.crosstab(table["target"], kind).reindex(columns=kinds, fill_value=0)
    out = out.reindex(columns=[*kinds, *[c for c in out.columns if c not in kinds]], fill_value=0)
    out["cells"] = out.sum(axis=1)
    out.columns.name = None
    return out.reset_index()


def secrecy_reasons(table: pd.DataFrame) -> pd.DataFrame:
    """Cells per target and exact reason (``suppression_reason``), the published ones left out."""
    reason = table["suppression_reason"].fillna("").astype(str)
    hidden = table[reason != ""]
    out = (hidden.groupby(["target", "suppression_reason"]).size().rename("cells").reset_index())
    return out.sort_values(["target", "cells"], ascending=[True, False]).reset_index(drop=True)


def attack_verdict(outputs: StudyOutputs) -> dict:
    """The verdict of the linear-programming attack.

    What ``weighting.json`` records, checked against ``secrecy_audit.csv`` (one row per hidden
    count attacked); ``recorded`` is None when the attack was not run.
    """
    summary = (outputs.weighting.get("secrecy") or {}).get("audit")
    cells = outputs.secrecy_audit
    found = None
    if cells is not None:
        exposed = cells["exposed"].astype(str).str.lower().isin(["true", "1"])
        found = {"hidden_counts": int(len(cells)), "pinned": int((cells["why"] == "pinned").sum()),
                 "bounded_1_4": int((cells["why"] == "bounded in 1-4").sum()), "exposed": int(exposed.sum())}
    return {"recorded": summary, "from_file": found,
            "consistent": summary is None or found is None
            or all(summary.get(k) == v for k, v in found.items())}


def attack_by_target(outputs: StudyOutputs) -> pd.DataFrame:
    """Per target: hidden counts attacked, how many exposed, the narrowest range the attacker got."""
    cells = outputs.secrecy_audit
    cols = ["target", "hidden_counts", "exposed", "narrowest_range"]
    if cells is None or cells.empty:
        return pd.DataFrame(columns=cols)
    c = cells.assign(exposed=cells["exposed"].astype(str).str.lower().isin(["true", "1"]),
                     width=cells["count_max"].astype(float) - cells["count_min"].astype(float))
    out = c.groupby("target").agg(hidden_counts=("width", "size"), exposed=("exposed", "sum"),
                                  narrowest_range=("width", "min")).reset_index()
    out["exposed"] = out["exposed"].astype(int)
    return out[cols]


# ------------------------------------------------------------------------------ display


def _md(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


def _frame(frame: pd.DataFrame) -> None:
    """A table, as HTML only (:func:`cae_impact.render.present.show_frame`).

    Its text form put a margin and its register count side by side (« 180.0000  180.000000 »),
    which the personal-data scan of the published notebooks read as a phone number: every
    national build stopped at the scan.
    """
    present.show_frame(frame)


def _fr(x: float, digits: int = 0) -> str:
    return format_number(x, digits)


def show_written(ctx: EstimationContext) -> None:
    """The files the estimation wrote, with their sha256."""
    files = written_files(ctx.study_dir)
    _md(f"L’estimation a écrit **{len(files)} fichiers** dans `reports/{ctx.study.wave}/_study/` "
        "(leurs empreintes sha256 sont celles que les manifestes des rapports enregistrent).")
    _frame(files)


def show_response(outputs: StudyOutputs) -> None:
    """Register count, respondents and response rate per CAE."""
    t = response_table(outputs)
    tot = t.iloc[-1]
    _md(f"Le consortium compte **{_fr(tot['population'])} entrepreneurs** au registre ; "
        f"**{_fr(tot['respondents'])}** ont donné une réponse retenue, soit un taux de réponse de "
        f"**{_fr(100 * tot['response_rate'], 1)} %** (de {_fr(100 * t['response_rate'].iloc[:-1].min(), 1)} % "
        f"à {_fr(100 * t['response_rate'].iloc[:-1].max(), 1)} % selon la CAE). Poids de base = "
        "registre / répondants de la CAE.")
    _frame(t)


def show_post_strata(outputs: StudyOutputs) -> None:
    """The post-strata after collapsing, the merged ones first, and the estimation's notes."""
    t = post_strata_table(outputs)
    if t.empty:
        _md("Pas de post-stratification : le registre ne donne pas les effectifs par sexe et statut, "
            "les poids sont les poids de base (registre / répondants).")
        return
    merged = t[t["collapsed"].str.startswith(("statuts", "toute"))]
    unknown = t[t["sex"] == "?"]
    _md(f"**{len(t)} post-strates** (CAE × sexe × statut du registre) après regroupement : "
        f"**{len(merged)}** issues d’un regroupement, {len(unknown)} de répondants sans sexe ou statut. "
        "Une cellule du registre sans répondant ou d’un seul est regroupée avec les "
        "autres statuts du même sexe (`cae|sexe|*`), puis, si cela ne suffit pas, avec toute la CAE "
        "(`cae|*|*`) ; les répondants sans sexe ou statut forment une cellule `cae|?|?` qui garde "
        "ses poids de base. `weight` = registre / répondants de la cellule, avant écrêtage. "
        "Pour les variances, chaque post-strate est une strate avec sa propre correction de population "
        "finie (`variance_stratum`, `variance_population` de `design.csv`) : c’est pourquoi une cellule "
        "d’un seul répondant est regroupée comme une cellule vide (sauf si tous ses inscrits ont répondu), "
        "et le seul répondant sans sexe ou statut d’une CAE forme une strate recensée, sans variance.")
    notes = collapse_notes(outputs)
    if notes:
        _md("Ce que l’estimation en dit (notes de pondération des rapports) :\n\n"
            + "\n".join(f"- {n}" for n in notes))
    _frame(t.sort_values(["collapsed", "cae_id", "post_stratum"], key=lambda s: s if s.name != "collapsed"
                         else s.eq("")).reset_index(drop=True))


def show_trimming(outputs: StudyOutputs) -> None:
    """How many weights were trimmed, where, and by how much."""
    t = trimming_table(outputs)
    recorded = int(outputs.weighting.get("n_trimmed", 0))
    found = int(t["trimmed"].sum())
    _md(f"Règle : aucun poids au-dessus de {_fr(TRIM_RATIO, 1)} fois le poids médian de sa CAE ; "
        "l’excédent est réparti sur les autres répondants de la CAE, dont le total ne change pas. "
        f"**{found} poids écrêtés** (l’estimation en annonce {recorded}"
        f"{'' if found == recorded else ' : ÉCART, à examiner'}).")
    _frame(t)


def show_margins(margins: pd.DataFrame) -> None:
    """The weighted totals against the register, CAE by CAE then cell by cell."""
    cae = margins[margins["level"] == "cae"]
    worst = cae["relative_gap"].abs().max()
    trimmed = sorted(margins.loc[margins["trimmed_cae"], "cae_id"].unique())
    gap = f"{worst:.1e}".replace(".", ",")
    where = f" : ici {', '.join(trimmed)}." if trimmed else " : aucune ici."
    _md(f"Le total pondéré de chaque CAE doit être son effectif au registre : écart relatif maximal "
        f"{gap}. Chaque post-strate doit aussi retrouver son effectif, sauf dans une CAE dont des "
        "poids ont été écrêtés (l’écrêtage garde le total de la CAE, pas celui de chaque cellule)"
        + where)
    _frame(margins)


def show_weights(outputs: StudyOutputs) -> None:
    """Quantiles of the weights per CAE, then the box plot."""
    q = weight_quantiles(outputs)
    _md("Quantiles des poids finals par CAE (un poids = le nombre d’entrepreneurs du registre qu’un "
        "répondant représente) ; `max_over_min` : rapport du plus grand au plus petit poids.")
    _frame(q)
    present.show_figure(weights_figure(outputs), alt="Boîtes à moustaches des poids par CAE",
                        caption="Distribution des poids finals par CAE (du minimum au maximum)")


def show_design_effects(outputs: StudyOutputs) -> None:
    """Kish's design effects and effective sizes, recomputed and as recorded."""
    t = design_effects(outputs)
    cons = t.iloc[-1]
    _md(f"Effet de plan de Kish dû à l’inégalité des poids, 1 + CV² des poids : **{_fr(cons['kish_deff'], 2)}** "
        f"pour le consortium (taille effective {_fr(cons['effective_n'])} pour {_fr(cons['respondents'])} "
        "répondants ; il inclut l’écart de poids entre CAE). Recalculé ici depuis `design.csv` ; "
        "les colonnes `_recorded` sont celles de `weighting.json`, que les rapports impriment.")
    _frame(t)


def show_secrecy(outputs: StudyOutputs) -> None:
    """Cells hidden, banded and suppressed in second place per target, by reason; the attack."""
    by_target = secrecy_by_target(outputs.estimates)
    total = by_target.drop(columns="target").sum()
    _md(f"Sur **{_fr(total['cells'])} cellules** de la vague : {_fr(total['masquée (effectif)'])} masquées "
        f"pour un effectif trop faible, {_fr(total['masquée (base)'])} pour une base trop faible, "
        f"{_fr(total['en tranche'])} publiées en tranche, {_fr(total['secondaire'])} masquées en "
        "suppression secondaire (pour qu’on ne les retrouve pas par différence). Par cible :")
    _frame(by_target)
    _md("Par motif exact (`suppression_reason`), tel que les tableaux publiés l’écrivent :")
    _frame(secrecy_reasons(outputs.estimates))
    verdict = attack_verdict(outputs)
    rec = verdict["recorded"]
    if rec is None:
        _md("**Attaque par programmation linéaire : non exécutée avec l’estimation** (trop de CAE) ; "
            "`make audit-secrecy` la rejoue sur les fichiers publiés.")
        return
    ok = not rec.get("exposed")
    _md(f"**Attaque par programmation linéaire** sur chaque effectif masqué ou en tranche : "
        f"{_fr(rec['hidden_counts'])} effectifs attaqués par {_fr(rec['linear_programs'])} programmes "
        f"linéaires ; {rec['pinned']} retrouvés exactement, {rec['bounded_1_4']} enfermés entre 1 et 4. "
        f"Verdict : **{'aucun effectif exposé' if ok else 'des effectifs sont exposés'}**"
        f"{'' if verdict['consistent'] else ' (ATTENTION : secrecy_audit.csv ne donne pas les mêmes comptes)'}. "
        "Par cible, l’intervalle le plus étroit qu’obtient l’attaquant :")
    _frame(attack_by_target(outputs))
