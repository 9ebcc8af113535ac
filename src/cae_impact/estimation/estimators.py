"""Estimators: means, totals, proportions, distributions, quantiles, comparisons and tests.

The design-based part of every estimate (point estimate, linearisation variance with strata,
fpc, lonely PSUs and calibration residuals, domain degrees of freedom, Rao-Scott F) comes from
``svy`` (see ``docs/survey-engine.md`` for the R oracles it reproduces). What stays here is what
svy does not do the way R or the project does, each said where it is:

* the interval of a proportion from ``(p, se, df)`` (:func:`prop_interval`): R's ``beta`` uses
  ``nrow(design)`` (all rows of a calibrated design), svy the domain's rows; at p = 0 or 1 the
  project's convention (Korn-Graubard on the unweighted base);
* the quantile rule and Woodruff's back-transform (:func:`quantile`), the variance of the ECDF
  being svy's;
* the degrees of freedom and p-values of R's ``svyttest`` (``degf - 1``) for comparisons;
* a CAE against the rest of the consortium for all CAEs at once (:func:`compare_strata`),
  from svy's per-stratum variances.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
import svy
from scipy import stats

import cae_impact.estimation.domains as domains  # the module: the tests switch domains.IN_HOUSE

from .design import SurveyDesign, as_float, as_mask
from .domains import _expit, domain_means
from .likelihood import likelihood_interval

CIMethod = Literal["logit", "beta", "likelihood", "mean"]


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def t_quantile(level: float, df: float) -> float:
    """Upper (1+level)/2 quantile of Student's t with ``df`` (normal when df is infinite)."""
    a = (1.0 + level) / 2.0
    if not np.isfinite(df):
        return float(stats.norm.ppf(a))
    if df <= 0:
        return float("nan")
    return float(stats.t.ppf(a, df))


@dataclass(frozen=True)
class Estimate:
    """A design-based estimate.

    ``estimate``, ``se``, ``df`` (R's ``degf`` of the domain), ``n`` (unweighted base) and
    ``weighted_base`` (sum of the weights in the base).
    """

    estimate: float
    se: float
    df: float
    n: int
    weighted_base: float

    @property
    def var(self) -> float:
        """Variance (``se**2``)."""
        return self.se**2

    def confint(self, level: float = 0.95, df: float | None = None) -> tuple[float, float]:
        """Wald interval ``estimate -/+ t(df) * se``; ``df=None`` uses the design df."""
        q = t_quantile(level, self.df if df is None else df)
        return (self.estimate - q * self.se, self.estimate + q * self.se)


@dataclass(frozen=True)
class ProportionEstimate(Estimate):
    """A proportion with its interval (R: ``svyciprop``)."""

    ci_low: float = float("nan")
    ci_high: float = float("nan")
    method: str = "logit"
    level: float = 0.95


@dataclass(frozen=True)
class QuantileEstimate(Estimate):
    """A quantile with its Woodruff interval; ``se = (ci_high - ci_low) / (2 t)`` (R)."""

    ci_low: float = float("nan")
    ci_high: float = float("nan")
    probability: float = 0.5
    level: float = 0.95


@dataclass(frozen=True)
class Comparison:
    """Difference ``a - b`` of two domain means with a design-based t test (R ``svyttest``)."""

    estimate_a: float
    estimate_b: float
    difference: float
    se: float
    statistic: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int


@dataclass(frozen=True)
class PairedDifference:
    """Before/now means on the same respondents and the test of their mean difference."""

    before: Estimate
    after: Estimate
    difference: Estimate
    statistic: float
    df: float
    p_value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class ChisqTest:
    """Rao-Scott F test of independence in a two-way table (R: ``svychisq``, svy's ``f``).

    ``pearson`` is Pearson's X2 of the weighted table rescaled to the base; ``mean_delta`` the
    mean generalised design effect (``X2 / F / ndf``); ``table`` the weighted counts.
    """

    statistic: float
    ndf: float
    ddf: float
    p_value: float
    pearson: float
    mean_delta: float
    table: pd.DataFrame


def _prepare(design: SurveyDesign, y: Any, domain: Any) -> tuple[np.ndarray, np.ndarray]:
    yv = values(design, y)
    mask = design.domain & as_mask(domain, design.n) & ~np.isnan(yv)
    return yv, mask


def values(design: SurveyDesign, y: Any) -> np.ndarray:
    """``y`` (a column name or values) as floats, NaN for missing."""
    if isinstance(y, str):
        return as_float(design.data[y])
    arr = as_float(y)
    if arr.shape != (design.n,):
        raise ValueError(f"values have shape {arr.shape}, expected ({design.n},)")
    return arr


def _one(design: SurveyDesign, yv: np.ndarray, mask: np.ndarray, statistic: str = "mean") -> Estimate:
    r = domain_means(design, np.where(mask, yv, np.nan)[:, None], mask[:, None], statistic=statistic)
    return Estimate(float(r["estimate"][0, 0]), float(r["se"][0, 0]), float(r["df"][0, 0]),
                    int(r["n"][0, 0]), float(r["weighted_base"][0, 0]))


def mean(design: SurveyDesign, y: Any, *, domain: Any = None) -> Estimate:
    """Weighted mean of ``y`` over the domain (R: ``svymean``; missing ``y`` out of the base)."""
    yv, mask = _prepare(design, y, domain)
    return _one(design, yv, mask)


def total(design: SurveyDesign, y: Any, *, domain: Any = None) -> Estimate:
    """Weighted total of ``y`` over the domain (R: ``svytotal``)."""
    yv, mask = _prepare(design, y, domain)
    return _one(design, yv, mask, "total")


# ---------------------------------------------------------------------------------------------
# Proportions and distributions
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _t_ppf(q: float, df: float) -> float:
    return float(stats.t.ppf(q, df))


@functools.lru_cache(maxsize=4096)
def _beta_interval(p: float, n_eff: float, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    lo = 0.0 if p <= 0 else float(stats.beta.ppf(alpha / 2, n_eff * p, n_eff * (1 - p) + 1))
    hi = 1.0 if p >= 1 else float(stats.beta.ppf(1 - alpha / 2, n_eff * p + 1, n_eff * (1 - p)))
    return lo, hi


def prop_interval(p: float, se: float, *, method: str, level: float, df: float, n_rows: int,
                  n_obs: int) -> tuple[float, float]:
    """Interval of a proportion from svy's ``(p, se, df)``, as R ``svyciprop`` computes it.

    ``logit``: ``expit(logit(p) -/+ t(df) se / (p (1 - p)))``, R's Wald interval of the
    quasi-binomial ``svyglm`` (whose coefficient is ``logit(p)`` and variance
    ``se^2 / (p(1-p))^2``), the same formula as svy's. ``beta``: Korn-Graubard with R's
    effective sample size ``p(1-p)/se^2 * (qt(alpha/2, nrow-1)/qt(alpha/2, df))^2``, where
    ``nrow`` is R's ``nrow(design)`` (``n_rows``: all rows of a calibrated design; svy uses the
    domain's rows, the same number on uncalibrated designs). ``mean``: Wald on the proportion
    scale. At p = 0 or 1 (variance 0) R's intervals collapse: the project then gives the
    Korn-Graubard interval with the effective sample size set to the unweighted base ``n_obs``
    (NCHS convention). A zero variance inside (0, 1) is a census: the interval is the estimate.
    """
    alpha = 1.0 - level
    if not (np.isfinite(p) and np.isfinite(se)):
        return float("nan"), float("nan")
    if p <= 0.0 or p >= 1.0:
        if n_obs <= 0:
            return float("nan"), float("nan")
        n_eff = float(n_obs)
        if n_rows > 1 and df > 0:
            n_eff *= (_t_ppf(alpha / 2, n_rows - 1) / _t_ppf(alpha / 2, df)) ** 2
        return _beta_interval(p, n_eff, level)
    if se <= 0.0:
        return p, p
    q = t_quantile(level, df)
    if method == "mean":
        return p - q * se, p + q * se
    if method == "beta":
        n_eff = p * (1 - p) / se**2 * (_t_ppf(alpha / 2, n_rows - 1) / _t_ppf(alpha / 2, df)) ** 2
        return _beta_interval(p, n_eff, level)
    if method == "logit":
        eta, s = math.log(p / (1 - p)), se / (p * (1 - p))
        return _expit(eta - q * s), _expit(eta + q * s)
    raise ValueError(f"unknown interval method {method!r}")


def proportion(design: SurveyDesign, y: Any, *, method: CIMethod = "logit", level: float = 0.95,
               domain: Any = None) -> ProportionEstimate:
    """Proportion of a 0/1 ``y`` (missing out of the base) with its interval (R: ``svyciprop``).

    Methods ``logit`` (default), ``beta``, ``mean`` (:func:`prop_interval`) and ``likelihood``
    (:mod:`.likelihood`, in house: svy has none).
    """
    if method not in ("logit", "beta", "likelihood", "mean"):
        raise ValueError(f"unknown interval method {method!r}")
    yv, mask = _prepare(design, y, domain)
    if ((yv[mask] < 0) | (yv[mask] > 1)).any():
        raise ValueError("a proportion needs values in [0, 1]")
    e = _one(design, yv, mask)
    if method == "likelihood" and 0 < e.estimate < 1 and e.se > 0:
        lo, hi = likelihood_interval(design, np.where(mask, yv, 0.0), mask, df=e.df, level=level)
        return ProportionEstimate(e.estimate, e.se, e.df, e.n, e.weighted_base, lo, hi, method, level)
    lo, hi = prop_interval(e.estimate, e.se, method=method, level=level, df=e.df,
                           n_rows=design.r_rows(mask), n_obs=e.n)
    return ProportionEstimate(e.estimate, e.se, e.df, e.n, e.weighted_base, lo, hi, method, level)


def domain_proportions(design: SurveyDesign, Y: np.ndarray, D: np.ndarray, *, method: str = "logit",
                       level: float = 0.95) -> list[ProportionEstimate]:
    """:func:`proportion` of every column ``j`` of ``Y`` in the domain ``D[:, j]`` (paired)."""
    res = domain_means(design, Y, D)
    out = []
    for j in range(Y.shape[1]):
        p, se, df = (float(res[k][j, j]) for k in ("estimate", "se", "df"))
        n = int(res["n"][j, j])
        lo, hi = prop_interval(p, se, method=method, level=level, df=df,
                               n_rows=design.r_rows(D[:, j] & ~np.isnan(Y[:, j])), n_obs=n)
        out.append(ProportionEstimate(p, se, df, n, float(res["weighted_base"][j, j]), lo, hi,
                                      method, level))
    return out


def distribution(design: SurveyDesign, column: Any, *, levels: list | None = None,
                 method: CIMethod = "logit", level: float = 0.95, domain: Any = None) -> pd.DataFrame:
    """Share of every level of a categorical variable (R: ``svymean(~factor(x))``).

    Columns ``level, estimate, se, ci_low, ci_high, n, base_n, weighted_base, df``.
    """
    col = design.data[column] if isinstance(column, str) else pd.Series(column)
    col = col.reset_index(drop=True)
    valid = design.domain & as_mask(domain, design.n) & col.notna().to_numpy()
    if levels is None:
        levels = sorted(pd.unique(col[valid]).tolist())
    Y = np.column_stack([np.where(valid, (col == lev).fillna(False).to_numpy(dtype=float), np.nan)
                         for lev in levels])
    res = domain_means(design, Y, valid[:, None])
    out = []
    for j, lev in enumerate(levels):
        p, se, df = (float(res[k][0, j]) for k in ("estimate", "se", "df"))
        lo, hi = prop_interval(p, se, method=method, level=level, df=df,
                               n_rows=design.r_rows(valid), n_obs=int(valid.sum()))
        out.append({"level": lev, "estimate": p, "se": se, "ci_low": lo, "ci_high": hi,
                    "n": int(np.nansum(Y[:, j])), "base_n": int(valid.sum()),
                    "weighted_base": float(res["weighted_base"][0, j]), "df": df})
    return pd.DataFrame(out)


def by(design: SurveyDesign, y: Any, by_column: str, *,
       statistic: Literal["mean", "total", "proportion"] = "mean", method: CIMethod = "logit",
       level: float = 0.95, domain: Any = None) -> pd.DataFrame:
    """Estimates for every level of ``by_column`` (R: ``svyby``), every group a domain."""
    col = design.data[by_column].reset_index(drop=True)
    yv, base = _prepare(design, y, domain)
    groups = sorted(pd.unique(col[base & col.notna().to_numpy()]).tolist())
    D = np.column_stack([base & (col == g).fillna(False).to_numpy(dtype=bool) for g in groups])
    res = domain_means(design, np.where(base, yv, np.nan)[:, None], D,
                       statistic="total" if statistic == "total" else "mean")
    rows = []
    for i, g in enumerate(groups):
        row = {by_column: g, "estimate": res["estimate"][i, 0], "se": res["se"][i, 0],
               "df": res["df"][i, 0], "n": int(res["n"][i, 0]),
               "weighted_base": res["weighted_base"][i, 0]}
        if statistic == "proportion":
            row["ci_low"], row["ci_high"] = prop_interval(
                row["estimate"], row["se"], method=method, level=level, df=row["df"],
                n_rows=design.r_rows(D[:, i]), n_obs=row["n"])
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Quantiles
# ---------------------------------------------------------------------------------------------


def qrule(x: np.ndarray, w: np.ndarray, p: float, rule: str = "math") -> float:
    """R ``survey:::qrule_math`` / ``qrule_school`` (hf1 / hf2 of the weighted ECDF).

    ``math``: the smallest value whose weighted ECDF reaches ``p`` (for ``p`` below the first
    jump R returns the second order statistic, an off-by-one; this returns the first).
    ``school``: the average of the two values when the ECDF equals ``p`` exactly.
    """
    keep = w != 0
    x, w = x[keep], w[keep]
    if len(x) == 0 or not np.isfinite(p):
        return float("nan")
    order = np.argsort(x, kind="stable")
    xs, cumw = x[order], np.cumsum(w[order])
    le = np.flatnonzero(cumw <= p * w.sum())
    if len(le) == 0:
        return float(xs[0])
    pos = le[-1]
    nxt = min(pos + 1, len(xs) - 1)
    exact = p - cumw[pos] / w.sum() <= 0
    if rule == "math":
        return float(xs[pos] if exact else xs[nxt])
    if rule == "school":
        return float((xs[pos] + xs[nxt]) / 2 if exact else xs[nxt])
    raise ValueError(f"unknown quantile rule {rule!r}")


def domain_quantiles(design: SurveyDesign, y: np.ndarray, D: np.ndarray, p: float, *, level: float = 0.95,
                     rule: Literal["math", "school"] = "math") -> list[QuantileEstimate | None]:
    """Quantile of ``y`` in each domain of ``D``, with a Woodruff interval (R ``svyquantile``).

    R's defaults ``qrule="math"`` and ``interval.type="mean"``: the share ``F(q)`` of the base
    at or below the estimate gets svy's linearisation variance (all domains in one svy call)
    and a t interval with the domain df; its bounds are mapped back through the rule (NaN
    outside [0, 1]); ``se = (upper - lower) / (2 t)``. svy's own ``quantile`` interpolates
    (another rule), hence the rule here. None for a domain without a valid ``y``.
    """
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    y = np.asarray(y, dtype=float)
    D = np.asarray(D, dtype=bool).reshape(design.n, -1) & design.domain[:, None] & ~np.isnan(y)[:, None]
    qhat = [qrule(y[D[:, j]], design.weights[D[:, j]], p, rule) if D[:, j].any() else float("nan")
            for j in range(D.shape[1])]
    F = np.where(D, (y[:, None] <= np.array(qhat)[None, :]).astype(float), np.nan)
    res = domain_means(design, F, D, paired=True)
    out: list[QuantileEstimate | None] = []
    for j, q0 in enumerate(qhat):
        if not D[:, j].any():
            out.append(None)
            continue
        x, w = y[D[:, j]], design.weights[D[:, j]]
        est, se, df = (float(res[k][j, 0]) for k in ("estimate", "se", "df"))
        q = t_quantile(level, df)
        plo, phi = est - q * se, est + q * se
        lo = float("nan") if (np.isnan(plo) or plo < 0) else qrule(x, w, float(plo), rule)
        hi = float("nan") if (np.isnan(phi) or phi > 1) else qrule(x, w, float(phi), rule)
        out.append(QuantileEstimate(q0, (hi - lo) / (2 * q), df, int(res["n"][j, 0]),
                                    float(res["weighted_base"][j, 0]), lo, hi, p, level))
    return out


def quantile(design: SurveyDesign, y: Any, p: float, *, level: float = 0.95,
             rule: Literal["math", "school"] = "math", domain: Any = None) -> QuantileEstimate:
    """Quantile of ``y`` over the domain with a Woodruff interval (:func:`domain_quantiles`)."""
    yv, mask = _prepare(design, y, domain)
    (q,) = domain_quantiles(design, np.where(mask, yv, np.nan), mask[:, None], p, level=level, rule=rule)
    if q is None:
        nan = float("nan")
        return QuantileEstimate(nan, nan, nan, 0, 0.0, nan, nan, p, level)
    return q


def median(design: SurveyDesign, y: Any, *, level: float = 0.95,
           rule: Literal["math", "school"] = "math", domain: Any = None) -> QuantileEstimate:
    """:func:`quantile` at ``p = 0.5``."""
    return quantile(design, y, 0.5, level=level, rule=rule, domain=domain)


# ---------------------------------------------------------------------------------------------
# Design effects
# ---------------------------------------------------------------------------------------------


def design_effect(design: SurveyDesign, y: Any, *, domain: Any = None) -> float:
    """Design effect of the mean (R ``svymean(deff = TRUE)``).

    The variance over that of an SRS without replacement of the same size,
    ``s2 (N_hat - n) / (N_hat n)``.
    """
    yv, mask = _prepare(design, y, domain)
    est = _one(design, yv, mask)
    nobs = int(mask.sum())
    w = np.where(mask, design.weights, 0.0)
    psum = w.sum()
    if nobs < 2 or psum < nobs:
        return float("nan")
    s2 = nobs / (nobs - 1) * float((w * (np.where(mask, yv, 0.0) - est.estimate) ** 2).sum() / psum)
    vsrs = s2 * (psum - nobs) / (psum * nobs)
    return est.var / vsrs if vsrs > 0 else float("nan")


def kish_design_effect(weights: Any) -> float:
    """Kish's design effect due to unequal weights: ``n sum(w^2) / sum(w)^2``."""
    w = as_float(np.asarray(weights))
    w = w[np.isfinite(w) & (w != 0)]
    return float(len(w) * (w**2).sum() / w.sum() ** 2) if len(w) else float("nan")


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size ``sum(w)^2 / sum(w^2)``."""
    w = as_float(np.asarray(weights))
    w = w[np.isfinite(w) & (w != 0)]
    return float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0


# ---------------------------------------------------------------------------------------------
# Comparisons and tests
# ---------------------------------------------------------------------------------------------

ZERO_SE = 1e-9


def testable(se: float, ma: float, mb: float) -> bool:
    """False when the SE of a difference is zero up to rounding.

    A calibration variable: its difference is a fact of the registers, not a sampling result,
    and is not tested.
    """
    return se > ZERO_SE * max(abs(ma), abs(mb), 1.0)


def _t_test(diff: float, se: float, df: float, ma: float, mb: float, level: float
            ) -> tuple[float, float, float, float]:
    t = diff / se if testable(se, ma, mb) else float("nan")
    p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) and df > 0 else float("nan")
    q = t_quantile(level, df)
    return t, p, diff - q * se, diff + q * se


def compare_domains(design: SurveyDesign, y: Any, domain_a: Any, domain_b: Any = None, *,
                    level: float = 0.95, domain: Any = None) -> Comparison:
    """Difference of the means of two disjoint domains (R: ``svyttest(y ~ group)``).

    svy estimates both means and the SE of their difference (a contrast: the covariance
    through strata, PSUs and calibration included); the t test uses ``degf - 1`` df of the two
    domains, as R's ``svyttest``. ``domain_b`` defaults to the rest of the base.
    """
    yv, valid = _prepare(design, y, domain)
    a = valid & as_mask(domain_a, design.n)
    b = valid & (~as_mask(domain_a, design.n) if domain_b is None else as_mask(domain_b, design.n))
    if (a & b).any():
        raise ValueError("the two domains overlap")
    nan = float("nan")
    if not a.any() or not b.any():
        return Comparison(nan, nan, nan, nan, nan, nan, nan, nan, nan, int(a.sum()), int(b.sum()))
    group = pl.Series(np.where(a, "a", "b")).set(pl.Series(~(a | b)), None)
    sample = design.sample({"__y": pl.Series(np.where(a | b, yv, np.nan), nan_to_null=True),
                            "__g": group})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sample.estimation.mean("__y", by="__g", drop_nulls=True)
        con = res.contrast(svy.estd("a") - svy.estd("b")).to_polars()
    t = res.to_polars().sort("__g")
    ma, mb = (float(v) for v in t["est"].to_list())
    diff, se = float(con["est"][0]), float(con["se"][0])
    df = float(design.degf(a | b) - 1)
    stat, p, lo, hi = _t_test(diff, se, df, ma, mb, level)
    return Comparison(ma, mb, diff, se, stat, df, p, lo, hi, int(a.sum()), int(b.sum()))


def compare_stratum(design: SurveyDesign, y: Any, stratum: Any, *, level: float = 0.95,
                    domain: Any = None) -> Comparison:
    """A CAE (stratum label) against the rest of the consortium (:func:`compare_domains`)."""
    codes = np.flatnonzero(design.strata_levels == stratum)
    if len(codes) != 1:
        raise ValueError(f"unknown stratum {stratum!r}")
    return compare_domains(design, y, design.strata == codes[0], level=level, domain=domain)


def _cells_nested_in_strata(design: SurveyDesign) -> bool:
    """Whether every calibration cell lies within one stratum (CAE x sex x stage post-strata)."""
    if design.calibration is None:
        return True
    return all(pd.DataFrame({"c": c, "h": design.strata}).drop_duplicates()["c"].is_unique
               for c in design.calibration.cells)


def compare_strata(design: SurveyDesign, y: Any, strata: list, *, level: float = 0.95,
                   by: str | None = None) -> list[Comparison]:
    """:func:`compare_stratum` for several strata (CAEs) at once.

    With ``by``, a column of the design's data that groups the strata (the CAE of each
    post-stratum, when the post-strata are the variance strata), ``strata`` are values of that
    column: each group is compared with the rest (strata must be nested in the groups).

    Strata are sampled independently and the calibration cells are nested in them, so a CAE's
    mean and the mean of the rest have no covariance and each variance is a sum of per-stratum
    contributions. svy gives, in one call, each stratum's variance of the totals of ``u = y``,
    ``v = 1`` and ``u + v`` over the base (``y`` centred first, for precision); the variance of a
    domain mean ``m`` with weight ``W`` over a set of strata is then
    ``sum_h (V_h(u) - 2 m C_h(u, v) + m^2 V_h(v)) / W^2``. The same numbers as
    :func:`compare_stratum`, in time linear in the number of strata. Designs where strata do not
    add up fall back to :func:`compare_stratum`: clustered ones, those calibrated on cells that
    cross strata (raked on sex), and uncalibrated ones with a single-respondent stratum under
    ``lonely_psu="adjust"``/``"average"`` (R centres it at the grand mean or averages the
    strata; calibrated on cells within strata, its one respondent has no variance).
    """
    H = len(design.strata_levels)
    if by is None:
        group_of = np.arange(H)
        group_levels = np.asarray(design.strata_levels, dtype=object)
    else:
        pairs = pd.DataFrame({"h": design.strata, "g": design.data[by].astype(str).to_numpy()}).drop_duplicates()
        if pairs["h"].duplicated().any():
            raise ValueError(f"strata are not nested in {by!r}")
        codes, group_levels = pd.factorize(pairs["g"], sort=True)
        group_of = np.zeros(H, dtype=np.int64)
        group_of[pairs["h"].to_numpy()] = codes
        group_levels = np.asarray(group_levels, dtype=object)
    lonely = (design.n_psu == 1) & (design.popsize != 1 if design.popsize is not None else True)
    if (design.clustered or not _cells_nested_in_strata(design)
            or (lonely.any() and not design.calibrated and design.lonely_psu in ("adjust", "average"))):
        if by is None:
            return [compare_stratum(design, y, s, level=level) for s in strata]
        col = design.data[by].astype(str).to_numpy()
        return [compare_domains(design, y, col == str(s), level=level) for s in strata]
    yv, valid = _prepare(design, y, None)
    w = design.weights
    W_h = np.bincount(design.strata, weights=np.where(valid, w, 0.0), minlength=H)
    centre = float((w * np.where(valid, yv, 0.0)).sum() / W_h.sum()) if W_h.sum() > 0 else 0.0
    yc = np.where(valid, yv - centre, np.nan)
    T_h = np.bincount(design.strata, weights=np.where(valid, w * yc, 0.0), minlength=H)
    one = np.where(valid, 1.0, np.nan)
    Y = np.column_stack([yc, one, yc + one])
    ix = domains._index(design) if domains.IN_HOUSE else None
    if ix is not None:  # each stratum's share of the variance of the totals (cells nested in strata)
        V = np.zeros((H, 3))
        V[ix.s_present] = domains._variances(ix, domains._calibrated(design, ix, np.where(valid[:, None], w[:, None] * Y, 0.0)))
    else:
        D = np.column_stack([design.strata == h for h in range(H)])
        res = domain_means(design, Y, D, statistic="total")
        V = np.nan_to_num(res["se"] ** 2)  # H x 3: V(u), V(v), V(u + v)
    Vu, Vv, C = V[:, 0], V[:, 1], (V[:, 2] - V[:, 0] - V[:, 1]) / 2
    n_h = np.bincount(design.strata, weights=valid.astype(float), minlength=H)
    if by is not None:  # strata are independent: a group's share is the sum of its strata's
        G = len(group_levels)
        W_h, T_h, n_h, Vu, Vv, C = (np.bincount(group_of, weights=a, minlength=G)
                                    for a in (W_h, T_h, n_h, Vu, Vv, C))
        H = G
    df = float(design.degf(valid) - 1)
    nan = float("nan")
    out = []
    for label in strata:
        codes = np.flatnonzero(group_levels == (label if by is None else str(label)))
        if len(codes) != 1:
            raise ValueError(f"unknown stratum {label!r}")
        h = int(codes[0])
        n_a, n_b = int(n_h[h]), int(n_h.sum() - n_h[h])
        Wa, Wb = W_h[h], W_h.sum() - W_h[h]
        if Wa <= 0 or Wb <= 0:
            out.append(Comparison(nan, nan, nan, nan, nan, nan, nan, nan, nan, n_a, n_b))
            continue
        ma, mb = T_h[h] / Wa, (T_h.sum() - T_h[h]) / Wb
        va = (Vu[h] - 2 * ma * C[h] + ma**2 * Vv[h]) / Wa**2
        rest = np.arange(H) != h
        vb = (Vu[rest].sum() - 2 * mb * C[rest].sum() + mb**2 * Vv[rest].sum()) / Wb**2
        se = math.sqrt(max(va + vb, 0.0))
        diff = float(ma - mb)
        stat, p, lo, hi = _t_test(diff, se, df, ma + centre, mb + centre, level)
        out.append(Comparison(float(ma + centre), float(mb + centre), diff, se, stat, df, p, lo, hi,
                              n_a, n_b))
    return out


def paired_difference(design: SurveyDesign, before: Any, after: Any, *, level: float = 0.95,
                      domain: Any = None) -> PairedDifference:
    """Mean change ``after - before`` on respondents who answered both.

    R: one-sample ``svyttest`` of the difference, df = ``degf - 1``; the three means share the
    base.
    """
    bv, av = values(design, before), values(design, after)
    base = design.domain & as_mask(domain, design.n) & ~np.isnan(bv) & ~np.isnan(av)
    Y = np.where(base[:, None], np.column_stack([bv, av, av - bv]), np.nan)
    res = domain_means(design, Y, base[:, None])
    e_b, e_a, e_d = (Estimate(float(res["estimate"][0, j]), float(res["se"][0, j]),
                              float(res["df"][0, j]), int(res["n"][0, j]),
                              float(res["weighted_base"][0, j])) for j in range(3))
    df = float(e_d.df - 1)
    t = e_d.estimate / e_d.se if e_d.se > 0 else float("nan")
    p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) and df > 0 else float("nan")
    q = t_quantile(level, df)
    return PairedDifference(e_b, e_a, e_d, t, df, p, e_d.estimate - q * e_d.se, e_d.estimate + q * e_d.se)


def rao_scott(design: SurveyDesign, resp: np.ndarray, groups: list[np.ndarray], *,
              domain: Any = None) -> list[tuple[float, float, float] | None]:
    """Rao-Scott F tests of ``resp`` against each of ``groups`` (R: ``svychisq``).

    ``resp`` and every ``groups[b]`` are integer codes, -1 out of the base. Returns
    ``(F, ndf, ddf)`` per table (None when a table has fewer than two levels either way), all
    from one svy sample. svy's ``tabulate(...).stats.f`` gives R's F and numerator df ``d0``
    (the rows out of a table's base form a domain, ``where``, and stay in the design). The
    denominator df is R's ``d0 * nu``, ``nu`` = PSUs - strata of the design as R holds it
    (every row of a calibrated design, the domain's rows otherwise, rows with a missing answer
    included); svy counts only the rows in the table's base, hence ``ddf`` computed here.
    On the project's designs F and ``d0`` are computed with numpy (:func:`domains._rao_scott_in_house`,
    the same numbers as svy's), every table from one covariance matrix product.
    """
    resp = np.asarray(resp)
    keep = design.domain & as_mask(domain, design.n)
    r_rows = np.ones(design.n, dtype=bool) if design.calibrated else keep
    nu = design.degf(r_rows)
    columns: dict[str, Any] = {"__r": np.where(resp >= 0, resp, 0).astype(np.int64)}
    todo = []
    for b, g in enumerate(groups):
        g = np.asarray(g)
        valid = keep & (resp >= 0) & (g >= 0)
        if len(np.unique(resp[valid])) < 2 or len(np.unique(g[valid])) < 2:
            continue
        columns[f"__c{b}"] = np.where(valid, g, 0).astype(np.int64)
        columns[f"__v{b}"] = valid
        todo.append(b)
    out: list[tuple[float, float, float] | None] = [None] * len(groups)
    if not todo:
        return out
    ix = domains._index(design) if domains.IN_HOUSE else None
    if ix is not None:
        for b in todo:
            f, ndf = domains._rao_scott_in_house(design, ix, resp, np.asarray(groups[b]), columns[f"__v{b}"])
            out[b] = (f, ndf, ndf * nu)
        return out
    sample = design.sample(columns)
    for b in todo:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = sample.categorical.tabulate("__r", f"__c{b}", where=svy.col(f"__v{b}")).stats.f
        out[b] = (float(f.value), float(f.df_num), float(f.df_num) * nu)
    return out


def chisq_test(design: SurveyDesign, row: Any, col: Any, *, domain: Any = None) -> ChisqTest:
    """Rao-Scott F test of independence of two categorical variables (:func:`rao_scott`).

    Rows with a missing value in either variable are out of the base.
    """
    rs = (design.data[row] if isinstance(row, str) else pd.Series(row)).reset_index(drop=True)
    cs = (design.data[col] if isinstance(col, str) else pd.Series(col)).reset_index(drop=True)
    valid = design.domain & as_mask(domain, design.n) & rs.notna().to_numpy() & cs.notna().to_numpy()
    rlev, clev = sorted(pd.unique(rs[valid]).tolist()), sorted(pd.unique(cs[valid]).tolist())
    if len(rlev) < 2 or len(clev) < 2:
        raise ValueError("need at least two levels in each variable")
    ri = np.where(valid, pd.Categorical(rs, categories=rlev).codes, -1)
    ci = np.where(valid, pd.Categorical(cs, categories=clev).codes, -1)
    (res,) = rao_scott(design, ri, [ci], domain=domain)
    f, ndf, ddf = res
    w = np.where(valid, design.weights, 0.0)
    tab = np.zeros((len(rlev), len(clev)))
    np.add.at(tab, (ri[valid], ci[valid]), w[valid])
    n = int(valid.sum())
    scaled = tab * n / tab.sum()
    expected = np.outer(scaled.sum(axis=1), scaled.sum(axis=0)) / scaled.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        x2 = float(np.nansum((scaled - expected) ** 2 / expected))
    k = (len(rlev) - 1) * (len(clev) - 1)
    table = pd.DataFrame(tab, index=pd.Index(rlev, name=str(row) if isinstance(row, str) else "row"),
                         columns=pd.Index(clev, name=str(col) if isinstance(col, str) else "col"))
    return ChisqTest(f, ndf, ddf, float(stats.f.sf(f, ndf, ddf)), x2, x2 / f / k, table)


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R ``p.adjust(p, "BH")``).

    scipy's ``false_discovery_control``; NaN stay NaN and are not counted.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out
