"""The indicator table of a study: every estimate every report prints, computed once.

``estimate_study`` reads the cleaned responses of every CAE, builds the consortium's survey
design (strata = CAEs, base weight ``N_h / n_h``, finite-population correction, then
post-stratification on sex x contract stage within each CAE from the register counts, with the
collapsing rule of :func:`cae_impact.estimation.collapse_post_strata`, then trimming of extreme
weights; for the variance, the post-strata are the strata with their own fpc), and estimates every indicator of the codebook:

* for every target (each CAE as a domain of the consortium design, and the consortium);
* in total and for every group of the indicator's breakdowns (sex, diploma, prior status,
  seniority…);
* with the comparisons the reports state: a CAE against the rest of the consortium (Wald t test
  on the joint linearisation), groups within a target (Rao-Scott second-order F test), and
  « before / now » pairs (design-based paired t test).

Disclosure control (:mod:`cae_impact.analysis.disclosure`) is applied to the whole study table at once,
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
from scipy import stats

from cae_impact import estimation as survey
from cae_impact.analysis import disclosure, secrecy
from cae_impact.core.frenchfmt import format_number
from cae_impact.spec.codebook import Codebook, Indicator
from cae_impact.spec.config import CONSORTIUM, StudyConfig

TOTAL = "total"
COLUMNS = [
    "indicator_id", "indicator_label", "domain_id", "kind", "unit", "target", "breakdown", "group",
    "group_label", "category", "category_label", "estimate", "se", "ci_low", "ci_high",
    "n_unweighted", "n_count", "base_weighted", "comparison", "test", "p_value", "p_adjusted",
    "significant", "flag_caution", "suppressed", "suppression_reason", "band_low", "band_high",
]
TEST_CAE_VS_REST = "t de Wald, CAE contre le reste du consortium"
TEST_GROUPS = "Rao-Scott (F), indépendance entre groupes"
TEST_PAIRED = "t apparié, avant / maintenant"
TRIM_RATIO = 3.5
# A post-stratum of the register needs two respondents (unless every member answered): the
# post-strata are the variance's strata (estimation.cells_as_strata), and a stratum of one
# respondent has no variance of its own. Such a cell is merged as an empty one.
MIN_CELL_RESPONDENTS = 2
UNKNOWN = "?"
#: above this many CAEs the linear-programming protection is not run by the estimation (its
#: time grows with the square of the number of CAEs: 19 s at 10 CAEs, 77 s at 20, about an hour
#: and a half at 160); the rule-based suppression still applies, the reports do not claim the
#: attack's result, and ``make audit-secrecy`` attacks the published files on demand
SECRECY_AUDIT_MAX_CAES = 20
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

        When the weights are post-stratified, ``variance_stratum`` is the respondent's stratum
        for the variance (its post-stratum, see :func:`cae_impact.estimation.cells_as_strata`)
        and ``variance_population`` its fpc. This is everything needed to rebuild the design
        elsewhere: R ``svydesign(ids = ~1, strata = ~variance_stratum,
        fpc = ~variance_population, weights = ~weight)`` (strata ``~cae_id`` and fpc
        ``~population`` without post-strata);
        ``scripts/verify_with_r.R`` does it with R's ``survey`` package.
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
        if "variance_stratum" in d:
            out["variance_stratum"] = d["variance_stratum"].astype(str).to_numpy()
            out["variance_population"] = d["variance_population"].astype(float).to_numpy()
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
       counts by sex and stage; a cell with fewer than 2 respondents (unless every member
       answered) is merged (stage within sex, then the whole CAE); respondents lacking sex or stage form a cell of their CAE whose count is
       estimated by their base weights;
    3. trimming: no weight above 3.5 x the median weight of its CAE, the excess spread over the
       CAE's other respondents (the CAE's total is kept);
    4. variance: the post-strata are the strata, each with its own fpc (response-homogeneity
       groups, :func:`cae_impact.estimation.cells_as_strata`); a CAE's only respondent without
       sex or stage is a census stratum of its own; without register counts by sex and stage,
       the CAEs are the strata.
    A CAE of a single respondent contributes variance as R's ``lonely.psu = "adjust"``.
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
            design, reg, stratum="cae_id", outer="_ps_sex", inner="_ps_stage",
            min_count=MIN_CELL_RESPONDENTS, exempt_outer=(UNKNOWN,)
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
    if collapsed is not None:
        # The variance: the cells as strata with their own fpc (response-homogeneity groups); the
        # weights stay as computed above. See survey.cells_as_strata for why not R's CAE strata.
        # The one respondent of a CAE without sex or stage is its own census stratum: a stratum of
        # one has no variance of its own, and merging it with a cell of the register would give
        # the registers' shares (calibrated, exact) a sampling variance they do not have.
        fpc = collapsed.population.rename(columns={"cell": "post_stratum"})
        sizes = design.data["post_stratum"].astype(str).value_counts()
        alone = [c for c, k in sizes.items() if k == 1 and c.endswith(f"|{UNKNOWN}|{UNKNOWN}")]
        fpc.loc[fpc["post_stratum"].isin(alone), "Freq"] = 1.0
        design = survey.cells_as_strata(design, "post_stratum", fpc)
        for cell in sorted(alone):
            cae_id = cell.split("|")[0]
            notes.append(f"{study.cae(cae_id).label} : le seul répondant sans sexe ou statut forme sa propre "
                         "strate pour le calcul des variances, sans variance propre (une strate d'un seul "
                         "répondant n'en a pas).")
    n_trimmed = len(trimmed.trimmed)
    if n_trimmed:
        notes.append(f"{n_trimmed} poids écrêtés à {format_number(TRIM_RATIO, 1)} fois le poids médian "
                     "de leur CAE.")
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
    """1 where at least one of ``codes`` is ticked, 0 if the question was answered otherwise.

    The codebook's missing rule, as for :func:`share_variable`: a respondent whose only ticks
    are ``missing`` choices (« Ne sait pas ») is out of the base, not a « non »; one who ticks a
    valid choice as well is in it.

    >>> import pandas as pd
    >>> from types import SimpleNamespace as NS
    >>> scale = NS(codes=["a", "b", "nsp"], missing_codes=["nsp"])
    >>> cb = NS(scale_of=lambda q: scale)
    >>> df = pd.DataFrame({"q__a": [True, False, False, False, None],
    ...                    "q__b": [False, True, False, False, None],
    ...                    "q__nsp": [False, False, True, False, None]})
    >>> any_of_variable(df, cb, "q", ["a"]).tolist()
    [1.0, 0.0, nan, 0.0, nan]
    """
    scale = codebook.scale_of(question_id)
    all_codes = scale.codes
    cols = [f"{question_id}__{c}" for c in all_codes if f"{question_id}__{c}" in data]
    if not cols:
        raise EstimationError(f"no column {question_id}__<code> in the cleaned data")
    ticked = data[cols].astype("boolean")
    answered = ticked.notna().any(axis=1).to_numpy()
    missing_cols = [f"{question_id}__{c}" for c in scale.missing_codes if f"{question_id}__{c}" in data]
    if missing_cols:
        valid_cols = [c for c in cols if c not in missing_cols]
        only_missing = (ticked[missing_cols].fillna(False).any(axis=1).to_numpy()
                        & ~ticked[valid_cols].fillna(False).any(axis=1).to_numpy())
        answered = answered & ~only_missing
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
    """What every indicator's estimates share, computed once per study.

    The design and the interval options; each target's design (a CAE is estimated on its own
    rows, :meth:`cae_impact.estimation.SurveyDesign.rows`: the estimates and variances of a
    domain of the consortium design, as strata are independent and post-strata nested in
    them, with the degrees of freedom of the CAE's own sample); the breakdowns' groups.
    """

    def __init__(self, design: survey.SurveyDesign, method: str, level: float, data: pd.DataFrame,
                 codebook: Codebook):
        self.design = design
        self.method = method
        self.level = level
        self.data = data
        self.codebook = codebook
        cae = data["cae_id"].astype(object).to_numpy()
        codes, levels = pd.factorize(cae)
        self.cae_codes = np.asarray(codes, dtype=np.int64)
        self.cae_index = {lab: i for i, lab in enumerate(levels)}
        order = np.argsort(self.cae_codes, kind="stable")
        bounds = np.searchsorted(self.cae_codes[order], np.arange(len(levels) + 1))
        self._rows = {lab: order[bounds[i]:bounds[i + 1]] for i, lab in enumerate(levels)}
        self._targets: dict[str, tuple[survey.SurveyDesign, np.ndarray]] = {}
        self._groups: dict[str, list[tuple[str, str, np.ndarray]]] = {}
        self._group_codes: dict[str, np.ndarray] = {}

    def target(self, target: str) -> tuple[survey.SurveyDesign, np.ndarray]:
        """The target's design and the rows of the study it holds (all rows: the consortium)."""
        if target not in self._targets:
            if target == CONSORTIUM:
                self._targets[target] = (self.design, np.arange(len(self.data)))
            else:
                rows = self._rows.get(target, np.zeros(0, dtype=np.int64))
                self._targets[target] = (self.design.rows(rows) if len(rows) else self.design, rows)
        return self._targets[target]

    def groups(self, breakdown: str) -> list[tuple[str, str, np.ndarray]]:
        """(group code, label, mask over all rows) of each group of a breakdown."""
        if breakdown not in self._groups:
            answers = self.data[breakdown].astype(object)
            self._groups[breakdown] = [(code, label, answers.isin(codes).to_numpy())
                                       for code, label, codes in breakdown_groups(self.codebook, breakdown)]
        return self._groups[breakdown]

    def group_codes(self, breakdown: str) -> np.ndarray:
        """Each row's group of the breakdown as an integer code (-1: no group).

        Codes follow the order of the group codes; a later group wins where groups overlap.
        """
        if breakdown not in self._group_codes:
            groups = self.groups(breakdown)
            rank = {code: i for i, code in enumerate(sorted({code for code, _, _ in groups}))}
            out = np.full(len(self.data), -1, dtype=np.int64)
            for code, _label, mask in groups:
                out[mask] = rank[code]
            self._group_codes[breakdown] = out
        return self._group_codes[breakdown]


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
        # « Ne sait pas »-type answers leave the base, as in a share: a distribution of the
        # valid answers (its base equals the shares' base, so no difference of two published
        # bases gives the number of « Ne sait pas »)
        answered = answers.isin(scale.valid_codes).to_numpy()
        out = []
        for choice in scale.choices:
            if choice.missing:
                continue
            y = np.full(len(data), np.nan)
            y[answered] = (answers[answered] == choice.code).to_numpy().astype(float)
            out.append((choice.code, choice.label, y))
        return out
    if kind in ("mean", "median"):
        return [("", "", numeric_variable(data, rule["question"]))]
    raise EstimationError(f"indicator {ind.id}: rule kind {kind!r} has no estimator")


def _response_codes(data: pd.DataFrame, codebook: Codebook, ind: Indicator,
                    variables: list[tuple[str, str, np.ndarray]]) -> np.ndarray:
    """The answer tested against the breakdown groups, as integer codes (-1: out of the base).

    The choice for a distribution, 0/1 otherwise; codes follow the order of the answers' labels.
    """
    if ind.kind == "distribution":
        scale = codebook.scale_of(ind.rule["question"])
        answers = data[ind.rule["question"]].astype(object)
        levels = sorted(set(scale.valid_codes))
        rank = {code: i for i, code in enumerate(levels)}
        out = np.full(len(data), -1, dtype=np.int64)
        valid = answers.isin(levels).to_numpy()
        out[valid] = [rank[a] for a in answers[valid]]
        return out
    y = variables[0][2]
    return np.where(np.isnan(y), -1, np.where(y == 1, 1, 0)).astype(np.int64)


_PAIRED_LABELS = {"before": "Avant l'entrée en CAE", "after": "Aujourd'hui", "difference": "Évolution"}


def estimate_indicator(est: _Estimator, data: pd.DataFrame, codebook: Codebook, ind: Indicator,
                       targets: list[str]) -> list[dict[str, Any]]:
    """Every row of one indicator: each target, in total and by breakdown group, with tests.

    A CAE's estimates use its own rows only; its comparison with the rest of the consortium
    uses the whole design (it is about the whole consortium). p-values of the group tests and
    « before / now » tests are computed together at the end (the same numbers as one by one).
    """
    unit = indicator_unit(codebook, ind)
    rows: list[dict[str, Any]] = []
    paired = ind.kind == "paired_difference"
    variables = [] if paired else _variables(data, codebook, ind)
    if paired:
        before_all = numeric_variable(data, ind.rule["before"])
        after_all = numeric_variable(data, ind.rule["after"])
    else:
        Y_all = np.column_stack([v[2] for v in variables])
    pending_t: list[tuple[dict[str, Any], float, float]] = []  # paired tests: (row, t, df)
    pending_f: list[tuple[list[dict[str, Any]], float, float, float]] = []  # group tests
    tested = ind.kind in ("share", "any_of", "mean")
    if tested:
        valid0 = ~np.isnan(variables[0][2])
        n_valid = np.bincount(est.cae_codes[valid0], minlength=len(est.cae_index))
        n_valid_all = int(valid0.sum())
    resp_codes = (_response_codes(data, codebook, ind, variables)
                  if ind.kind in ("share", "any_of", "distribution") and ind.breakdowns else None)
    # No test of an answer the weights are calibrated on (sex, contract stage: see build_design),
    # nor of a share of it: its value in a CAE is the registers', not a sample result.
    calibrated = _calibrated_answer(est.design, codebook, ind)
    if calibrated:
        tested = False
        resp_codes = None
    census = census_targets(est.design)
    compared: dict[str, float] = {}
    if tested:
        # each CAE against the rest of the consortium (one test per value), all CAEs at once
        eligible = []
        for target in targets:
            k = est.cae_index.get(target, -1) if target != CONSORTIUM else -1
            if k >= 0 and n_valid[k] >= 2 and n_valid_all - n_valid[k] >= 2:
                eligible.append(target)
        comps = survey.compare_strata(est.design, variables[0][2], eligible, level=est.level, by="cae_id")
        compared = {t: c.p_value for t, c in zip(eligible, comps, strict=True)}
    # Each target on its own design (a CAE: its rows only, so that its figures do not change by
    # a bit when another CAE's data change, which keeps the other reports' files identical),
    # all its domains (total, groups) in one svy sample.
    for target in targets:
        design, trows = est.target(target)
        if not len(trows):
            continue
        tmask = np.ones(len(trows), dtype=bool)
        domains: list[tuple[str, str, str, np.ndarray]] = [(TOTAL, "", "", tmask)]
        for b in ind.breakdowns:
            for code, label, gmask in est.groups(b):
                domains.append((b, code, label, gmask[trows]))
        first_row = len(rows)
        D = np.column_stack([d[3] for d in domains])
        if paired:
            Y3 = np.column_stack([before_all[trows], after_all[trows], after_all[trows] - before_all[trows]])
            res = survey.domain_means(design, np.where(np.isnan(Y3).any(axis=1)[:, None], np.nan, Y3), D)
            for i, (breakdown, group, glabel, _mask) in enumerate(domains):
                rows.extend(_paired_rows(est, ind, unit, target, breakdown, group, glabel,
                                         {k: v[i] for k, v in res.items()}, pending_t))
        else:
            rows.extend(_value_rows(est, design, ind, unit, target, domains, variables, Y_all[trows]))
        # Tests: the CAE against the rest of the consortium (one per value), groups within target.
        if target in census:
            _census_rows(rows[first_row:])
        if target in compared:
            total_row = next(r for r in rows[first_row:] if r["breakdown"] == TOTAL and r["category"] == "")
            if not degenerate_variance(total_row, census=target in census):
                total_row.update(comparison=CONSORTIUM, test=TEST_CAE_VS_REST, p_value=compared[target])
        if resp_codes is not None and target not in census:
            stats_b = _groups_tests(design, resp_codes[trows], [est.group_codes(b)[trows] for b in ind.breakdowns])
            for b, stat in zip(ind.breakdowns, stats_b, strict=True):
                members = [r for r in rows[first_row:] if r["breakdown"] == b]
                for r in members:
                    r.update(comparison="groups", test=TEST_GROUPS, p_value=float("nan"))
                if stat is not None:
                    pending_f.append((members, *stat))
    if pending_t:
        t = np.array([x[1] for x in pending_t])
        df = np.array([x[2] for x in pending_t])
        ok = np.isfinite(t) & (df > 0)
        p = np.full(len(t), np.nan)
        if ok.any():
            p[ok] = 2 * stats.t.sf(np.abs(t[ok]), df[ok])
        for (row, _, _), pv in zip(pending_t, p, strict=True):
            row["p_value"] = float(pv)
    if pending_f:
        pv = stats.f.sf(np.array([x[1] for x in pending_f]), np.array([x[2] for x in pending_f]),
                        np.array([x[3] for x in pending_f]))
        for (members, *_), p in zip(pending_f, np.atleast_1d(pv), strict=True):
            for r in members:
                r["p_value"] = float(p)
    return rows


def calibration_questions(design: survey.SurveyDesign, codebook: Codebook) -> set[str]:
    """The questions the weights are calibrated on: the register's (sex, contract stage).

    Empty when the design is not post-stratified (no register counts by sex and stage).
    """
    if "post_stratum" not in design.data.columns and not design.calibrated:
        return set()
    return {str(m["question"]) for m in codebook.register_mapping.values()}


def _calibrated_answer(design: survey.SurveyDesign, codebook: Codebook, ind: Indicator) -> bool:
    """True when the indicator's answer is a calibration variable (the share of associés)."""
    questions = {ind.rule.get("question"), ind.rule.get("before"), ind.rule.get("after")}
    return bool(questions & calibration_questions(design, codebook))


def census_targets(design: survey.SurveyDesign) -> set[str]:
    """The CAEs where every registered entrepreneur answered (n = N): censuses.

    A CAE is a census when every stratum of it is (the strata are the CAEs, or the post-strata
    nested in them).
    """
    if design.popsize is None:
        return set()
    n_h = design.n_psu.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        done = (design.popsize - n_h) / design.popsize < 1e-7
    cae = design.data["cae_id"].astype(str).to_numpy() if "cae_id" in design.data else None
    if cae is None:
        return {str(lab) for lab, c in zip(design.strata_levels, done, strict=True) if c}
    census = pd.Series(done[design.strata]).groupby(cae).all()
    return {str(k) for k, v in census.items() if v}


def degenerate_variance(row: dict[str, Any] | pd.Series, *, census: bool = False) -> bool:
    """True when a CAE's estimate has a zero variance that is not a census's.

    A share of 0 % or 100 % (or a mean whose respondents all gave the same value) has a
    linearisation variance of 0 in a sample: the Wald test of the CAE against the rest (or
    against a published figure) would then treat the CAE's value as known exactly, and its
    p-value collapses (1e-40 for 10 respondents at 100 %). Such a difference is not tested. In a
    census the variance is truly 0 (the CAE's value is known): the test, against the rest's
    sampling error only, is valid.
    """
    if census:
        return False
    se, est = row.get("se"), row.get("estimate")
    if se is None or est is None or pd.isna(se) or pd.isna(est):
        return False
    return float(se) <= survey.ZERO_SE * max(abs(float(est)), 1.0)


def _census_rows(rows: list[dict[str, Any]]) -> None:
    """A census CAE's rows: no sampling error, so the interval is the estimate itself.

    (At 0 % or 100 % the interval of a sample is Korn-Graubard's; in a census it is not one.)
    """
    for r in rows:
        if r["n_unweighted"] > 0 and not pd.isna(r["estimate"]):
            r["se"] = 0.0
            r["ci_low"] = r["ci_high"] = r["estimate"]


def _value_rows(est: _Estimator, design: survey.SurveyDesign, ind: Indicator, unit: str, target: str,
                domains: list[tuple[str, str, str, np.ndarray]],
                variables: list[tuple[str, str, np.ndarray]], Y: np.ndarray) -> list[dict[str, Any]]:
    """The rows of a share, distribution, mean or median for one target, on its own design.

    Every domain x value, the domains estimated together (one svy sample).
    """
    D = np.column_stack([d[3] for d in domains])
    valid = ~np.isnan(Y)
    n_base = D.T.astype(float) @ valid.astype(float)  # domains x values
    ests: list[list[Any]] = [[_empty()] * Y.shape[1] for _ in domains]
    counts = np.full(n_base.shape, np.nan)
    if (n_base > 0).any():
        if ind.kind in ("share", "any_of", "distribution", "mean"):
            res = survey.domain_means(design, Y, D)
            share = ind.kind != "mean"
            if share:
                # respondents in the cell: a sum of 0/1 values, exact in any order
                counts = D.T.astype(float) @ np.where(valid, Y, 0.0)
            for i in range(len(domains)):
                for j in range(Y.shape[1]):
                    if n_base[i, j] <= 0:
                        continue
                    p, se, df = (float(res[k][i, j]) for k in ("estimate", "se", "df"))
                    n, wb = int(res["n"][i, j]), float(res["weighted_base"][i, j])
                    if share:
                        lo, hi = survey.prop_interval(
                            p, se, method=est.method, level=est.level, df=df,
                            n_rows=design.r_rows(D[:, i] & valid[:, j]), n_obs=n)
                        ests[i][j] = survey.ProportionEstimate(p, se, df, n, wb, lo, hi, est.method, est.level)
                    else:
                        ests[i][j] = survey.Estimate(p, se, df, n, wb)
        elif ind.kind == "median":
            quantiles = survey.domain_quantiles(design, Y[:, 0], D, 0.5, level=est.level)
            for i, q in enumerate(quantiles):
                if n_base[i, 0] > 0 and q is not None:
                    ests[i][0] = q
        else:  # pragma: no cover - _variables rejects other kinds
            raise EstimationError(f"indicator {ind.id}: rule kind {ind.kind!r} has no estimator")
    out = []
    for i, (breakdown, group, glabel, _mask) in enumerate(domains):
        for j, (category, clabel, _y) in enumerate(variables):
            out.append(_row(ind, unit, target, breakdown, group, glabel, category, clabel, ests[i][j],
                            counts[i, j]))
    return out


def _paired_rows(est: _Estimator, ind: Indicator, unit: str, target: str, breakdown: str, group: str,
                 group_label: str, res: dict[str, np.ndarray],
                 pending: list[tuple[dict[str, Any], float, float]]) -> list[dict[str, Any]]:
    """Before / now / difference rows of a paired indicator in one domain (test p-value pending).

    ``res``: the domain's means of before, now and their difference on the common base (svy);
    the test is R's one-sample ``svyttest`` of the difference (df = ``degf - 1``).
    """
    labels = _PAIRED_LABELS
    if int(res["n"][2]) < 2:
        return [_row(ind, unit, target, breakdown, group, group_label, k, v, _empty(), float("nan")) for k, v in labels.items()]
    b, a, d = (survey.Estimate(float(res["estimate"][j]), float(res["se"][j]), float(res["df"][j]),
                               int(res["n"][j]), float(res["weighted_base"][j])) for j in range(3))
    df = d.df - 1
    t = d.estimate / d.se if d.se > 0 else float("nan")
    q = survey.t_quantile(est.level, df)
    rows = [
        _row(ind, unit, target, breakdown, group, group_label, "before", labels["before"], b, float("nan")),
        _row(ind, unit, target, breakdown, group, group_label, "after", labels["after"], a, float("nan")),
        _row(ind, unit, target, breakdown, group, group_label, "difference", labels["difference"], d, float("nan")),
    ]
    rows[2]["ci_low"], rows[2]["ci_high"] = d.estimate - q * d.se, d.estimate + q * d.se
    rows[2]["comparison"] = "before"
    rows[2]["test"] = TEST_PAIRED
    rows[2]["p_value"] = float("nan")
    pending.append((rows[2], t, df))
    return rows


def _groups_tests(design: survey.SurveyDesign, resp: np.ndarray, groups: list[np.ndarray]
                  ) -> list[tuple[float, float, float] | None]:
    """Rao-Scott tests of independence of the indicator's answer and each breakdown's groups.

    Within the target: ``(F, ndf, ddf)`` per breakdown, or None when it cannot be computed
    (p-value NaN): fewer than 4 respondents, two groups or two answers.
    """
    usable = []
    for g in groups:
        ok = (g >= 0) & (resp >= 0)
        usable.append(ok.sum() >= 4 and len(np.unique(g[ok])) > 1 and len(np.unique(resp[ok])) > 1)
    if not any(usable):
        return [None] * len(groups)
    try:
        got = survey.rao_scott(design, resp, [g if u else np.full_like(g, -1)
                                              for g, u in zip(groups, usable, strict=True)])
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
        return [None] * len(groups)
    return [x if x is not None and all(np.isfinite(x)) else None for x in got]


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
    """The study-wide indicator table (disclosure applied) and what it rests on.

    The weighting behind it, and the secrecy audit of the published table
    (:mod:`cae_impact.analysis.secrecy`).
    """

    table: pd.DataFrame
    weighting: Weighting
    audit: secrecy.AuditResult | None = None


def secrecy_inputs(codebook: Codebook) -> dict[str, Any]:
    """What the secrecy attack needs beside the table.

    Every indicator's rule by id (profile indicators included) and the answer codes of each
    breakdown group.
    """
    inds = {i.id: i for i in [*codebook.indicators, *profile_indicators(codebook)]}
    group_codes: dict[tuple[str, str], list[str]] = {}
    for breakdown in {b for i in codebook.indicators for b in i.breakdowns}:
        for code, _label, codes in breakdown_groups(codebook, breakdown):
            group_codes[(breakdown, code)] = list(codes)
    return {"indicators": inds, "group_codes": group_codes}


def estimate_study(responses: pd.DataFrame, study: StudyConfig, codebook: Codebook,
                   indicators: list[Indicator] | None = None) -> StudyEstimates:
    """Estimate every indicator for every target; apply disclosure control study-wide.

    The secrecy audit (a linear-programming attack on every published count) runs on the
    result and hides further cells until no hidden count can be pinned or enclosed in 1 to 4.
    """
    weighting = build_design(responses, study, codebook)
    data = responses.reset_index(drop=True)
    est = _Estimator(weighting.design, study.report.interval_method, study.report.confidence_level,
                     data, codebook)
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
    sizes = data["cae_id"].astype(str).value_counts().to_dict()
    sizes[CONSORTIUM] = len(data)
    inputs = secrecy_inputs(codebook)
    found: list[secrecy.AuditResult] = []

    def protect(flagged: pd.DataFrame) -> pd.DataFrame:
        out, audit = secrecy.protect_table(
            flagged, codebook, inputs["indicators"], consortium=CONSORTIUM,
            min_count=opts.min_cell_count, sample_sizes=sizes, group_codes=inputs["group_codes"],
            reason=disclosure.REASON_SECONDARY, min_base=opts.min_base_pct)
        found.append(audit)
        return out

    n_caes = int(data["cae_id"].nunique())
    table = disclosure.apply_disclosure_control(
        table, min_count=opts.min_cell_count, min_base_pct=opts.min_base_pct,
        caution_base=opts.caution_base, consortium=CONSORTIUM, count_col="n_count",
        base_col="n_unweighted", protect=protect if n_caes <= SECRECY_AUDIT_MAX_CAES else None,
    )
    audit = found[0] if found else None
    if audit is not None and not audit.exposed.empty:
        shown = "; ".join(
            f"{r.indicator_id} ({r.target}, {r.breakdown} {r.group} {r.category}): "
            f"{r.count_min:.0f} à {r.count_max:.0f}" for r in audit.exposed.head(5).itertuples())
        raise EstimationError(
            f"secret statistique : {len(audit.exposed)} case(s) masquée(s) retrouvable(s) par une "
            f"attaque par programmation linéaire sur les chiffres publiés ({shown}); rien n'est "
            "publié (cae_impact.analysis.secrecy)")
    return StudyEstimates(table=table[COLUMNS].reset_index(drop=True), weighting=weighting,
                          audit=audit)


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
    key_to_adj = dict(zip(family.itertuples(index=False, name=None), adjusted.to_numpy(), strict=True))
    p_adjusted = np.full(len(out), np.nan)
    p_adjusted[np.flatnonzero(tested.to_numpy())] = [key_to_adj[k] for k in keys.itertuples(index=False, name=None)]
    out["p_adjusted"] = p_adjusted
    sig = out["p_adjusted"] < fdr_alpha
    out["significant"] = pd.array(np.where(out["p_adjusted"].notna(), sig, None), dtype="boolean")
    return out
