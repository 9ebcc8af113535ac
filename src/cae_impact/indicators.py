"""The indicator table of a study: every estimate every report prints, computed once.

``estimate_study`` reads the cleaned responses of every CAE, builds the consortium's survey
design (strata = CAEs, base weight ``N_h / n_h``, finite-population correction, then
post-stratification on sex x contract stage within each CAE from the register counts, with the
collapsing rule of :func:`cae_impact.survey.collapse_post_strata`, then trimming of extreme
weights), and estimates every indicator of the codebook:

* for every target (each CAE as a domain of the consortium design, and the consortium);
* in total and for every group of the indicator's breakdowns (sex, diploma, prior status,
  seniority…);
* with the comparisons the reports state: a CAE against the rest of the consortium (Wald t test
  on the joint linearisation), groups within a target (Rao-Scott second-order F test), and
  « before / now » pairs (design-based paired t test).

Disclosure control (:mod:`cae_impact.disclosure`) is applied to the whole study table at once,
so that a cell hidden in one CAE's report cannot be recovered from the consortium's report or
another CAE's. :func:`report_table` then takes one report's rows and controls the false
discovery rate of that report's tests (Benjamini-Hochberg): ``significant`` is true only where
the adjusted p-value is below ``fdr_alpha``.

The table's columns are CONTRACTS.md §5.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import disclosure, survey
from .codebook import Codebook, Indicator
from .config import CONSORTIUM, StudyConfig

TOTAL = "total"
COLUMNS = [
    "indicator_id", "indicator_label", "domain_id", "kind", "unit", "target", "breakdown", "group",
    "group_label", "category", "category_label", "estimate", "se", "ci_low", "ci_high",
    "n_unweighted", "n_count", "base_weighted", "comparison", "test", "p_value", "p_adjusted",
    "significant", "flag_caution", "suppressed", "suppression_reason",
]
TEST_CAE_VS_REST = "t de Wald, CAE contre le reste du consortium"
TEST_GROUPS = "Rao-Scott (F), indépendance entre groupes"
TEST_PAIRED = "t apparié, avant / maintenant"
TRIM_RATIO = 3.5
SEX_COLUMN = "sex"
STAGE_COLUMN = "contract_stage"


class EstimationError(ValueError):
    """The study cannot be estimated (no data, inconsistent registers…)."""


# --------------------------------------------------------------------------------- loading


def load_responses(study: StudyConfig, processed_root: Path) -> pd.DataFrame:
    """Concatenate the cleaned responses of every CAE of the study (configuration order)."""
    frames = []
    for cae in study.caes:
        path = processed_root / study.wave / cae.id / "responses.parquet"
        if not path.exists():
            raise EstimationError(f"{path}: cleaned data of {cae.id} missing; run the cleaning step first")
        frames.append(pd.read_parquet(path))
    data = pd.concat(frames, ignore_index=True)
    if data.empty:
        raise EstimationError("no respondent kept in any CAE of the study")
    return data


# --------------------------------------------------------------------------------- weighting


@dataclass
class Weighting:
    """The design and how its weights were built, for the method annex."""

    design: survey.SurveyDesign
    per_cae: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    kish_deff: float = float("nan")
    effective_n: float = float("nan")
    post_strata: pd.DataFrame | None = None
    n_trimmed: int = 0

    def design_frame(self) -> pd.DataFrame:
        """Per respondent: id, CAE, population N_h, base weight, post-stratum and final weight.

        With :attr:`post_strata` this is everything needed to rebuild the design elsewhere
        (``scripts/verify_with_r.R`` rebuilds it with R's ``survey`` package).
        """
        d = self.design.data
        out = pd.DataFrame({
            "respondent_id": d["respondent_id"].astype(str).to_numpy(),
            "cae_id": d["cae_id"].astype(str).to_numpy(),
            "post_stratum": d["post_stratum"].astype(str).to_numpy() if "post_stratum" in d else "",
            "weight": self.design.weights,
        })
        out.insert(2, "population", out["cae_id"].map(self.per_cae.set_index("cae_id")["population"]).astype(float))
        n = out.groupby("cae_id")["cae_id"].transform("size")
        out["base_weight"] = out["population"] / n
        return out


def _register_table(study: StudyConfig, codebook: Codebook, cae_ids: list[str]) -> pd.DataFrame | None:
    rows = []
    for cae in study.caes:
        if cae.id not in cae_ids:
            continue
        if not cae.population.by_sex_stage:
            return None
        for sex, stages in cae.population.by_sex_stage.items():
            for stage, count in stages.items():
                rows.append({
                    "cae_id": cae.id,
                    SEX_COLUMN: codebook.register_code("sex", sex),
                    STAGE_COLUMN: codebook.register_code("stage", stage),
                    "Freq": float(count),
                })
    return pd.DataFrame(rows)


def build_design(responses: pd.DataFrame, study: StudyConfig, codebook: Codebook) -> Weighting:
    """The consortium design, calibrated and trimmed, with a report of what was done.

    Rules (the method annex prints them):
    1. base weight ``N_h / n_h`` per CAE, fpc ``N_h`` (stratified sampling without replacement);
    2. post-stratification on sex x contract stage within each CAE when every CAE has register
       counts by sex and stage; a cell without respondents is merged (stage within sex, then the
       whole CAE); a CAE where a respondent lacks sex or stage keeps its base weights;
    3. trimming: no weight above 3.5 x the median weight of its CAE, the excess spread over the
       CAE's other respondents (the CAE's total is kept).
    Strata with a single respondent contribute variance as R's ``lonely.psu = "adjust"``.
    """
    population = {c.id: c.population.total for c in study.caes}
    counts = responses["cae_id"].value_counts()
    for cae_id, n in counts.items():
        if n > population[cae_id]:
            raise EstimationError(
                f"{cae_id}: {n} respondents kept but the register counts {population[cae_id]} "
                f"members (config {study.path.name}, population.total)"
            )
    data = responses.reset_index(drop=True)
    design = survey.stratified_design(data, "cae_id", population, lonely_psu="adjust")
    notes: list[str] = []
    method = {c: "pondération de base (N/n)" for c in counts.index}
    collapsed = None
    register = _register_table(study, codebook, list(counts.index))
    if register is not None:
        # Respondents without sex or stage form an « unknown » cell of their CAE whose population
        # is estimated by their base weight (m_h * N_h / n_h); the register cells are scaled down
        # by the same amount, so the CAE still sums to N_h. The other respondents are
        # post-stratified on sex x stage.
        complete = (data[SEX_COLUMN].notna() & data[STAGE_COLUMN].notna()).to_numpy()
        design = design.assign(
            _ps_sex=np.where(complete, data[SEX_COLUMN].astype(object), "?"),
            _ps_stage=np.where(complete, data[STAGE_COLUMN].astype(object), "?"),
        )
        reg = register.rename(columns={SEX_COLUMN: "_ps_sex", STAGE_COLUMN: "_ps_stage"})
        extra = []
        for cae_id, n_h in counts.items():
            m_h = int((~complete & (data["cae_id"] == cae_id).to_numpy()).sum())
            if m_h:
                unknown = m_h * population[cae_id] / n_h
                scale = (population[cae_id] - unknown) / population[cae_id]
                reg.loc[reg["cae_id"] == cae_id, "Freq"] *= scale
                extra.append({"cae_id": cae_id, "_ps_sex": "?", "_ps_stage": "?", "Freq": unknown})
                notes.append(
                    f"{study.cae(cae_id).label} : {m_h} répondant(s) sans sexe ou statut, gardés "
                    "avec leur poids de base ; les autres sont post-stratifiés."
                )
        if extra:
            reg = pd.concat([reg, pd.DataFrame(extra)], ignore_index=True)
        design, collapsed = survey.post_stratify_with_collapse(
            design, reg, stratum="cae_id", outer="_ps_sex", inner="_ps_stage"
        )
        for c in counts.index:
            method[c] = "post-stratification sexe × statut"
        for _, item in collapsed.collapsed.iterrows():
            if item["outer"] == "?":
                continue
            sex_label = codebook.scale_of(SEX_COLUMN).label(item["outer"]).lower()
            stage_label = codebook.scale_of(STAGE_COLUMN).label(item["inner"])
            merged = ("avec les autres statuts du même sexe" if "within" in str(item["reason"])
                      else "avec toute la CAE")
            notes.append(
                f"{study.cae(item['stratum']).label} : cellule « {sex_label} × {stage_label} » "
                f"({int(item['n'])} répondant(s), {item['N']:.0f} au registre) regroupée {merged}."
            )
    else:
        notes.append("Effectifs du registre par sexe et statut non fournis : pondération de base (N/n).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trimmed = survey.trim_weights(design, ratio=TRIM_RATIO)
    design = trimmed.design
    n_trimmed = len(trimmed.trimmed)
    if n_trimmed:
        notes.append(f"{n_trimmed} poids écrêtés à {TRIM_RATIO} fois le poids médian de leur CAE.")
    w = pd.Series(design.weights, index=data.index)
    rows = []
    for cae in study.caes:
        m = (data["cae_id"] == cae.id).to_numpy()
        n = int(m.sum())
        rows.append({
            "cae_id": cae.id,
            "label": cae.label,
            "population": cae.population.total,
            "respondents": n,
            "response_rate": n / cae.population.total if cae.population.total else float("nan"),
            "weighting": method.get(cae.id, "—"),
            "kish_deff": survey.kish_design_effect(w[m]) if n else float("nan"),
            "effective_n": survey.effective_sample_size(w[m]) if n else float("nan"),
            "weight_min": float(w[m].min()) if n else float("nan"),
            "weight_max": float(w[m].max()) if n else float("nan"),
        })
    return Weighting(
        design=design,
        per_cae=pd.DataFrame(rows),
        notes=notes,
        kish_deff=survey.kish_design_effect(w),
        effective_n=survey.effective_sample_size(w),
        post_strata=(collapsed.population.rename(columns={"cell": "post_stratum"})
                     if register is not None else None),
        n_trimmed=n_trimmed,
    )


# --------------------------------------------------------------------------------- variables


def _unit(codebook: Codebook, question_id: str) -> str:
    q = codebook.question(question_id)
    unit = (q.unit or "").lower()
    return "eur" if ("€" in unit or "eur" in unit) else "number"


def indicator_unit(codebook: Codebook, ind: Indicator) -> str:
    """``pct`` for shares and distributions, ``eur`` or ``number`` for numeric rules."""
    if ind.kind in ("share", "any_of", "distribution"):
        return "pct"
    question = ind.rule.get("question") or ind.rule.get("after")
    return _unit(codebook, str(question))


def share_variable(data: pd.DataFrame, codebook: Codebook, question_id: str, codes: list[str]) -> np.ndarray:
    """1 where the answer is one of ``codes``, 0 for another valid answer, NaN otherwise.

    « Ne sait pas »-type answers (``missing`` choices), unanswered and not-relevant questions
    are out of the base.

    >>> import pandas as pd
    >>> from types import SimpleNamespace as NS
    >>> scale = NS(valid_codes=["oui", "non"])
    >>> cb = NS(scale_of=lambda q: scale)
    >>> share_variable(pd.DataFrame({"q": ["oui", "non", "nsp", None]}), cb, "q", ["oui"]).tolist()
    [1.0, 0.0, nan, nan]
    """
    valid = set(codebook.scale_of(question_id).valid_codes)
    answers = data[question_id].astype(object)
    out = np.full(len(data), np.nan)
    is_valid = answers.isin(valid).to_numpy()
    out[is_valid] = answers[is_valid].isin(codes).to_numpy().astype(float)
    return out


def any_of_variable(data: pd.DataFrame, codebook: Codebook, question_id: str, codes: list[str]) -> np.ndarray:
    """1 where at least one of ``codes`` is ticked, 0 if the question was answered otherwise."""
    all_codes = codebook.scale_of(question_id).codes
    cols = [f"{question_id}__{c}" for c in all_codes if f"{question_id}__{c}" in data]
    if not cols:
        raise EstimationError(f"no column {question_id}__<code> in the cleaned data")
    ticked = data[cols].astype("boolean")
    answered = ticked.notna().any(axis=1).to_numpy()
    hit = data[[f"{question_id}__{c}" for c in codes if f"{question_id}__{c}" in data]].astype("boolean").fillna(False).any(axis=1).to_numpy()
    out = np.full(len(data), np.nan)
    out[answered] = hit[answered].astype(float)
    return out


def numeric_variable(data: pd.DataFrame, question_id: str) -> np.ndarray:
    """The numeric answers as floats, NaN where missing."""
    return pd.to_numeric(data[question_id], errors="coerce").astype(float).to_numpy()


def breakdown_groups(codebook: Codebook, question_id: str) -> list[tuple[str, str, list[str]]]:
    """(group code, French label, answer codes) of each group of a breakdown.

    The scale's report groups if it has some (diploma classes of the national report), else
    each valid choice.
    """
    scale = codebook.scale_of(question_id)
    if scale.report_groups:
        return [(g.code, g.label, list(g.codes)) for g in scale.report_groups]
    return [(c.code, c.label, [c.code]) for c in scale.choices if not c.missing]


# --------------------------------------------------------------------------------- estimation


def _row(ind: Indicator, unit: str, target: str, breakdown: str, group: str, group_label: str,
         category: str, category_label: str, est: Any, n_count: float) -> dict[str, Any]:
    lo = getattr(est, "ci_low", float("nan"))
    hi = getattr(est, "ci_high", float("nan"))
    if isinstance(est, survey.Estimate) and not isinstance(est, survey.ProportionEstimate | survey.QuantileEstimate):
        if est.n > 1 and math.isfinite(est.se):
            lo, hi = est.confint()
    return {
        "indicator_id": ind.id, "indicator_label": ind.label, "domain_id": ind.domain_id,
        "kind": ind.kind, "unit": unit, "target": target, "breakdown": breakdown, "group": group,
        "group_label": group_label, "category": category, "category_label": category_label,
        "estimate": est.estimate, "se": est.se, "ci_low": lo, "ci_high": hi,
        "n_unweighted": int(est.n), "n_count": n_count, "base_weighted": est.weighted_base,
        "comparison": "", "test": "", "p_value": float("nan"),
    }


class _Estimator:
    """Estimates of one indicator variable over domains of one design."""

    def __init__(self, design: survey.SurveyDesign, method: str, level: float):
        self.design = design
        self.method = method
        self.level = level

    def proportion(self, y: np.ndarray, mask: np.ndarray) -> tuple[Any, float]:
        base = mask & ~np.isnan(y)
        n = int(base.sum())
        if n == 0:
            return _empty(), float("nan")
        count = float(np.nansum(y[base]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = survey.proportion(self.design, y, method=self.method, level=self.level, domain=mask)
        return est, count

    def mean(self, y: np.ndarray, mask: np.ndarray) -> Any:
        if int((mask & ~np.isnan(y)).sum()) == 0:
            return _empty()
        return survey.mean(self.design, y, domain=mask)

    def median(self, y: np.ndarray, mask: np.ndarray) -> Any:
        if int((mask & ~np.isnan(y)).sum()) == 0:
            return _empty()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return survey.median(self.design, y, level=self.level, domain=mask)


def _empty() -> survey.ProportionEstimate:
    return survey.ProportionEstimate(float("nan"), float("nan"), 0.0, 0, 0.0)


def _variables(data: pd.DataFrame, codebook: Codebook, ind: Indicator) -> list[tuple[str, str, np.ndarray]]:
    """(category, category label, variable) for the indicator's rule; category '' for one value."""
    rule = ind.rule
    kind = ind.kind
    if kind == "share":
        return [("", "", share_variable(data, codebook, rule["question"], list(rule["codes"])))]
    if kind == "any_of":
        return [("", "", any_of_variable(data, codebook, rule["question"], list(rule["codes"])))]
    if kind == "distribution":
        scale = codebook.scale_of(rule["question"])
        answers = data[rule["question"]].astype(object)
        answered = answers.isin(scale.codes).to_numpy()
        out = []
        for choice in scale.choices:
            y = np.full(len(data), np.nan)
            y[answered] = (answers[answered] == choice.code).to_numpy().astype(float)
            out.append((choice.code, choice.label, y))
        return out
    if kind in ("mean", "median"):
        return [("", "", numeric_variable(data, rule["question"]))]
    raise EstimationError(f"indicator {ind.id}: rule kind {kind!r} has no estimator")


def _paired_rows(est: _Estimator, ind: Indicator, unit: str, data: pd.DataFrame, target: str,
                 breakdown: str, group: str, group_label: str, mask: np.ndarray) -> list[dict[str, Any]]:
    before = numeric_variable(data, ind.rule["before"])
    after = numeric_variable(data, ind.rule["after"])
    base = mask & ~np.isnan(before) & ~np.isnan(after)
    labels = {"before": "Avant l'entrée en CAE", "after": "Aujourd'hui", "difference": "Évolution"}
    if int(base.sum()) < 2:
        return [_row(ind, unit, target, breakdown, group, group_label, k, v, _empty(), float("nan")) for k, v in labels.items()]
    res = survey.paired_difference(est.design, before, after, level=est.level, domain=mask)
    rows = [
        _row(ind, unit, target, breakdown, group, group_label, "before", labels["before"], res.before, float("nan")),
        _row(ind, unit, target, breakdown, group, group_label, "after", labels["after"], res.after, float("nan")),
        _row(ind, unit, target, breakdown, group, group_label, "difference", labels["difference"], res.difference, float("nan")),
    ]
    rows[2]["ci_low"], rows[2]["ci_high"] = res.ci_low, res.ci_high
    rows[2]["comparison"] = "before"
    rows[2]["test"] = TEST_PAIRED
    rows[2]["p_value"] = res.p_value
    return rows


def estimate_indicator(est: _Estimator, data: pd.DataFrame, codebook: Codebook, ind: Indicator,
                       targets: list[str]) -> list[dict[str, Any]]:
    """Every row of one indicator: each target, in total and by breakdown group, with tests."""
    unit = indicator_unit(codebook, ind)
    cae = data["cae_id"].astype(object).to_numpy()
    rows: list[dict[str, Any]] = []
    variables = [] if ind.kind == "paired_difference" else _variables(data, codebook, ind)
    for target in targets:
        tmask = np.ones(len(data), bool) if target == CONSORTIUM else (cae == target)
        if not tmask.any():
            continue
        domains: list[tuple[str, str, str, np.ndarray]] = [(TOTAL, "", "", tmask)]
        for b in ind.breakdowns:
            answers = data[b].astype(object)
            for code, label, codes in breakdown_groups(codebook, b):
                domains.append((b, code, label, tmask & answers.isin(codes).to_numpy()))
        for breakdown, group, glabel, mask in domains:
            if ind.kind == "paired_difference":
                rows.extend(_paired_rows(est, ind, unit, data, target, breakdown, group, glabel, mask))
                continue
            for category, clabel, y in variables:
                if ind.kind in ("share", "any_of", "distribution"):
                    e, count = est.proportion(y, mask)
                elif ind.kind == "mean":
                    e, count = est.mean(y, mask), float("nan")
                else:
                    e, count = est.median(y, mask), float("nan")
                rows.append(_row(ind, unit, target, breakdown, group, glabel, category, clabel, e, count))
        # Tests: the CAE against the rest of the consortium (one per value), groups within target.
        if target != CONSORTIUM and ind.kind in ("share", "any_of", "mean"):
            y = variables[0][2]
            if int((~np.isnan(y) & tmask).sum()) >= 2 and int((~np.isnan(y) & ~tmask).sum()) >= 2:
                comp = survey.compare_stratum(est.design, y, target, level=est.level)
                total_row = next(r for r in rows if r["target"] == target and r["breakdown"] == TOTAL and r["category"] == "")
                total_row.update(comparison=CONSORTIUM, test=TEST_CAE_VS_REST, p_value=comp.p_value)
        if ind.kind in ("share", "any_of", "distribution"):
            for b in ind.breakdowns:
                p = _groups_test(est.design, data, codebook, ind, b, tmask)
                for r in rows:
                    if r["target"] == target and r["breakdown"] == b:
                        r.update(comparison="groups", test=TEST_GROUPS, p_value=p)
    return rows


def _groups_test(design: survey.SurveyDesign, data: pd.DataFrame, codebook: Codebook,
                 ind: Indicator, breakdown: str, tmask: np.ndarray) -> float:
    """Rao-Scott test of independence between the indicator's answer and the breakdown groups."""
    group_of = pd.Series(pd.NA, index=data.index, dtype=object)
    answers = data[breakdown].astype(object)
    for code, _label, codes in breakdown_groups(codebook, breakdown):
        group_of[answers.isin(codes)] = code
    if ind.kind == "distribution":
        scale = codebook.scale_of(ind.rule["question"])
        resp = data[ind.rule["question"]].astype(object).where(lambda s: s.isin(scale.valid_codes))
    else:
        y = _variables(data, codebook, ind)[0][2]
        resp = pd.Series(np.where(np.isnan(y), None, np.where(y == 1, "1", "0")), index=data.index, dtype=object)
    ok = tmask & group_of.notna().to_numpy() & resp.notna().to_numpy()
    if ok.sum() < 4 or group_of[ok].nunique() < 2 or resp[ok].nunique() < 2:
        return float("nan")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = survey.chisq_test(design.assign(_row_v=resp.where(ok, None), _col_v=group_of.where(ok, None)),
                                    "_row_v", "_col_v", domain=ok)
        return float(res.p_value)
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
        return float("nan")


PROFILE_DOMAIN = "profile"


def profile_indicators(codebook: Codebook) -> list[Indicator]:
    """The distribution of every profile question, as indicators of the report's profile chapter.

    Their ids are ``profile_<question id>``; they have no breakdown (the profile itself).
    """
    out = []
    for qid in codebook.profile_question_ids:
        q = codebook.question(qid)
        out.append(Indicator(
            id=f"profile_{qid}", domain_id=PROFILE_DOMAIN, label=q.text, question_ids=(qid,),
            rule={"kind": "distribution", "question": qid}, breakdowns=(),
        ))
    return out


@dataclass
class StudyEstimates:
    """The study-wide indicator table (disclosure applied) and the weighting behind it."""

    table: pd.DataFrame
    weighting: Weighting


def estimate_study(responses: pd.DataFrame, study: StudyConfig, codebook: Codebook,
                   indicators: list[Indicator] | None = None) -> StudyEstimates:
    """Estimate every indicator for every target; apply disclosure control study-wide."""
    weighting = build_design(responses, study, codebook)
    data = responses.reset_index(drop=True)
    est = _Estimator(weighting.design, study.report.interval_method, study.report.confidence_level)
    targets = [t for t in study.targets if t == CONSORTIUM or (data["cae_id"] == t).any()]
    rows: list[dict[str, Any]] = []
    todo = list(indicators if indicators is not None else codebook.indicators)
    if indicators is None:
        todo += profile_indicators(codebook)
    for ind in todo:
        rows.extend(estimate_indicator(est, data, codebook, ind, targets))
    table = pd.DataFrame(rows)
    table["p_adjusted"] = np.nan
    table["significant"] = pd.array([pd.NA] * len(table), dtype="boolean")
    opts = study.report
    table = disclosure.apply_disclosure_control(
        table, min_count=opts.min_cell_count, min_base_pct=opts.min_base_pct,
        caution_base=opts.caution_base, consortium=CONSORTIUM, count_col="n_count",
        base_col="n_unweighted",
    )
    return StudyEstimates(table=table[COLUMNS].reset_index(drop=True), weighting=weighting)


def report_rows(table: pd.DataFrame, target: str) -> pd.Series:
    """Which rows of the study table a target's report shows.

    A CAE's report: its own rows and the consortium's totals (the reference). The consortium's
    report: its rows and every CAE's totals (the comparison of CAE 1 … CAE n).
    """
    if target == CONSORTIUM:
        return (table["target"] == CONSORTIUM) | (table["breakdown"] == TOTAL)
    return (table["target"] == target) | ((table["target"] == CONSORTIUM) & (table["breakdown"] == TOTAL))


def report_table(table: pd.DataFrame, target: str, fdr_alpha: float = 0.05) -> pd.DataFrame:
    """One report's rows, its tests adjusted together (Benjamini-Hochberg), ``significant`` set.

    The family of a CAE report is its comparisons with the consortium, its group tests and
    its before/now tests; the consortium report's family is every CAE-against-the-rest test,
    its group tests and its before/now tests. A test repeated on several rows (a group test on
    each group's row) counts once.
    """
    out = table[report_rows(table, target)].copy().reset_index(drop=True)
    tested = out["p_value"].notna()
    if target == CONSORTIUM:
        tested &= (out["target"] != CONSORTIUM) | (out["comparison"] != CONSORTIUM)
    else:
        tested &= out["target"] == target
    keys = out.loc[tested, ["indicator_id", "target", "breakdown", "group", "test", "category"]].astype(str)
    one_test = out.loc[tested, "comparison"] == "groups"  # one Rao-Scott test for all groups
    keys.loc[one_test, "category"] = ""
    keys.loc[one_test, "group"] = ""
    family = keys.drop_duplicates()
    pvals = out.loc[family.index, "p_value"].to_numpy(dtype=float)
    adjusted = pd.Series(survey.benjamini_hochberg(pvals), index=family.index)
    key_to_adj = {tuple(family.loc[i]): adjusted[i] for i in family.index}
    out["p_adjusted"] = np.nan
    for i in out.index[tested]:
        out.at[i, "p_adjusted"] = key_to_adj[tuple(keys.loc[i])]
    sig = out["p_adjusted"] < fdr_alpha
    out["significant"] = pd.array(np.where(out["p_adjusted"].notna(), sig, None), dtype="boolean")
    return out


def _fix_zip_timestamps(path: Path) -> None:
    """Rewrite a zip container (XLSX) with fixed member dates, so equal content gives equal bytes.

    openpyxl stamps the save time into the zip members and into docProps/core.xml (modified).
    """
    import re
    import zipfile

    with zipfile.ZipFile(path) as src:
        members = [(info, src.read(info.filename)) for info in src.infolist()]
    members = [
        (info, re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
         if info.filename == "docProps/core.xml" else data)
        for info, data in members
    ]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in members:
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)


def write_indicator_files(table: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """Write ``indicators.csv`` (UTF-8, comma-separated) and ``indicators.xlsx`` atomically.

    Text cells that a spreadsheet would read as a formula are neutralised.
    """
    from .privacy import neutralise_frame
    from .report import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    safe = neutralise_frame(table)
    csv_path = folder / "indicators.csv"
    write_atomic(csv_path, safe.to_csv(index=False, float_format="%.10g", lineterminator="\n"))
    xlsx_path = folder / "indicators.xlsx"
    tmp = folder / ".indicators.xlsx.tmp"
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        safe.to_excel(writer, index=False, sheet_name="indicateurs")
        writer.book.properties.creator = "cae-impact"
        import datetime as dt

        fixed = dt.datetime(2000, 1, 1)
        writer.book.properties.created = fixed
        writer.book.properties.modified = fixed
    _fix_zip_timestamps(tmp)
    tmp.replace(xlsx_path)
    return csv_path, xlsx_path
