"""Design-based estimation for the CAE-IMPACT surveys, by Taylor linearisation.

What this module does
---------------------
Every estimate published by the project (a share, a mean, a distribution, a median, a
comparison) is a design-based estimate: the respondents of each CAE (business and employment
cooperative) are treated as a sample from that CAE's membership register, the CAEs are the
strata, the base weight of a respondent is ``N_h / n_h`` and the finite population correction
uses ``N_h``. Weights may then be calibrated (post-stratification on sex x contract stage within
CAE, or raking) and trimmed. Standard errors come from the linearisation (influence-function)
variance estimator of a stratified (optionally one-stage clustered) sample without replacement.

Reference implementation and why it is re-implemented here
----------------------------------------------------------
The reference is R's ``survey`` package (T. Lumley), version 4.1.1. Every number it produces on
the project's oracles (``tests/fixtures/oracles``, copied from ``../shared/oracles``) is reproduced
here to a relative 1e-6 or better (``tests/test_survey_oracles.py``). The code mirrors R's
algorithms, including their documented quirks, and names the R function it mirrors:

* ``svyrecvar``/``onestage``/``onestrat`` (variance of a stratified, one-stage design with fpc and
  the ``lonely.psu`` options) -> :meth:`SurveyDesign.vcov`;
* ``svymean``, ``svytotal``, ``svyby``, ``svyciprop`` (``logit``, ``beta``, ``likelihood``,
  ``mean``), ``svyquantile`` (``qrule="math"``, Woodruff ``interval.type="mean"``),
  ``svychisq`` (Rao-Scott ``"F"`` and ``"Chisq"``), ``svyttest``, ``postStratify``, ``rake``,
  ``trimWeights`` (for the idea; the project's rule differs, see :func:`trim_weights`),
  ``p.adjust(method = "BH")``.

The Python survey package ``samplics`` (0.6.1) was measured (``../shared/design/MEASURED.md``):
it reproduces R's means, totals and proportions but not the standard errors after
post-stratification or raking, because it treats the adjusted weights as fixed. R linearises
the calibration: the influence values are replaced by their residuals from the calibration
model (within-post-stratum means for ``postStratify``; iterated margin means for ``rake``).
On the toy consortium this is the difference between SE 0.0800 (right) and 0.0896 (weights
treated as fixed). statsmodels' ``DescrStatsW`` gives frequency-weight, not design-based, errors.
Hence this module: numpy/scipy only, and checked number for number against R (every oracle
number to <= 3e-12 relative, the print precision, except two point estimates noted below).
For ``svyciprop``'s ``logit`` and ``likelihood`` methods R fits a quasi-binomial ``svyglm``;
the ``likelihood`` interval depends, at the 1e-6 level, on the working weights of the
penultimate IRLS iterate, so ``glm.fit``'s iterations are replicated (``_svyglm_logit``).

Deviations from R, all deliberate and documented where they occur
------------------------------------------------------------------
* :func:`proportion` reports the weighted mean as the estimate; R's ``logit``/``likelihood``
  report ``expit`` of the glm coefficient, which differs by the glm tolerance (5e-10 on the
  oracle). The interval bounds are R's.
* At an estimated proportion of exactly 0 or 1 the linearisation variance is 0 and R's
  intervals degenerate; :func:`proportion` then returns the Korn-Graubard interval with the
  effective sample size set to the unweighted base (NCHS convention).
* When ``glm.fit``'s IRLS for ``svyciprop(method = "logit")`` overshoots past ``|eta| > 30``
  (small domains of a calibrated design: rescaled prior weights ~100), R returns 0 [0, 0] or
  NaN; :func:`_irls_logit` restarts from ``qlogis(p)`` instead (R: ``svyglm(..., start =)``).
* ``qrule="math"`` for ``p`` below the first jump of the weighted ECDF returns the smallest
  value (R returns the second one, an off-by-one in ``survey:::qrule_math``).
* :func:`rake` takes R's ``control`` semantics: ``epsilon < 1`` is relative to the sum of the
  weights, ``epsilon >= 1`` absolute (R's default ``control`` is ``maxit=10, epsilon=1``,
  which stops long before convergence; this module's defaults are ``1e-10`` and ``100``).

Conventions
-----------
* Missing values of the analysed variable are excluded from the base, which makes the base a
  domain (R: ``na.rm = TRUE`` subsets the design): the variance is computed on the full design,
  with zero influence outside the domain, exactly as R does for a subset design.
* Degrees of freedom are R's ``degf()`` of the analysed (sub)design: number of PSUs with non-zero
  weight minus number of strata with non-zero weight. Intervals use Student's t with these df,
  as ``svyciprop`` does; a CAE domain therefore has ``n_h - 1`` df.
* ``lonely_psu`` (a stratum with a single sampled PSU, e.g. a CAE with one respondent) follows
  R's ``options(survey.lonely.psu)``: ``"fail"`` (R's default: raise :class:`LonelyPSUError`),
  ``"remove"`` and ``"certainty"`` (the stratum contributes no variance), ``"adjust"`` (the PSU
  is centred at zero, i.e. the grand mean of the influence values, instead of its stratum mean)
  and ``"average"`` (the stratum gets the average variance of the other strata). A stratum
  that is fully enumerated (``n_h = N_h``) contributes zero variance whatever the option.
* R designs that are subsets of *calibrated* designs keep all rows (weights set to zero) while
  subsets of uncalibrated designs drop rows; the few quantities that depend on the number of
  rows (``nrow()`` in the Korn-Graubard df correction, the profile-likelihood interval, the
  Rao-Scott test) follow the same rule here (see ``SurveyDesign._r_rows``).
* The domain estimates of a stratum (a CAE) can be computed from that stratum's rows alone
  (:func:`design_span`, the ``span_*`` functions, :func:`compare_strata`): the same numbers as
  the whole-design functions, bit for bit, in time proportional to the stratum, which makes a
  study of many CAEs linear in their number (see the section "Row spans" below).
* Sums of squares of more than 10,000 influence values are added by chunks of 8,192
  (:func:`_sumsq`): a longer BLAS ``ddot`` is split over threads, which makes its last bits
  depend on the number of CPUs. Up to 10,000 values nothing changes.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "LonelyPSUError",
    "SurveyDesign",
    "restrict_rows",
    "Estimate",
    "ProportionEstimate",
    "QuantileEstimate",
    "Comparison",
    "PairedDifference",
    "ChisqTest",
    "CollapsedCells",
    "TrimResult",
    "RakeResult",
    "svydesign",
    "base_weights",
    "stratified_design",
    "mean",
    "total",
    "proportion",
    "distribution",
    "by",
    "quantile",
    "median",
    "design_effect",
    "kish_design_effect",
    "effective_sample_size",
    "post_stratify",
    "collapse_post_strata",
    "post_stratify_with_collapse",
    "rake",
    "rake_with_report",
    "trim_weights",
    "compare_domains",
    "compare_stratum",
    "chisq_test",
    "paired_difference",
    "benjamini_hochberg",
]

LonelyPSU = Literal["fail", "remove", "certainty", "adjust", "average"]
CIMethod = Literal["logit", "beta", "likelihood", "mean"]
_LONELY = ("fail", "remove", "certainty", "adjust", "average")


class LonelyPSUError(ValueError):
    """A stratum has a single sampled PSU and ``lonely_psu="fail"`` (R's default)."""


# ---------------------------------------------------------------------------------------------
# Design object
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _PostStratum:
    """One ``postStratify`` step, as R stores it in ``design$postStrata``.

    ``index`` is the post-stratum of every row (R's ``index``), ``weights`` the weights right
    after the step (``attr(index, "weights")``), ``old_weights`` those right before it
    (``attr(index, "oldweights")``).
    """

    index: np.ndarray
    weights: np.ndarray
    old_weights: np.ndarray


@dataclass(frozen=True, eq=False)
class _Raking:
    """A ``rake`` result, as R stores it.

    The margins' post-strata of the final pass, each with the weights right after that margin
    was matched in that pass.
    """

    margins: tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True, eq=False)
class SurveyDesign:
    """A stratified, optionally one-stage clustered, sample design (R: ``survey.design2``).

    Build it with :func:`svydesign` or, for the project, :func:`stratified_design`; do not call
    the constructor. Instances are immutable: calibration, trimming and :meth:`subset` return
    new designs.

    Attributes:
        data: the respondents (index reset to 0..n-1).
        weights: current weights (0 outside a domain made by :meth:`subset`).
        strata: stratum code of every row; ``strata_levels[code]`` is its label.
        psu: PSU code of every row (a row is its own PSU when there are no clusters).
        psu_stratum: stratum code of every PSU.
        n_psu: number of sampled PSUs of every stratum, in the full design (R's ``sampsize``).
        popsize: number of population PSUs of every stratum (R's ``popsize``), or None
            (sampling with replacement, no fpc).
        lonely_psu: treatment of single-PSU strata (see the module docstring).
        calibration: calibration steps whose residuals enter the variance.
        domain: rows kept by :meth:`subset`.
        strata_col, cluster_col: the column names used, for reference.

    """

    data: pd.DataFrame
    weights: np.ndarray
    strata: np.ndarray
    strata_levels: np.ndarray
    psu: np.ndarray
    psu_stratum: np.ndarray
    n_psu: np.ndarray
    popsize: np.ndarray | None
    lonely_psu: str = "fail"
    calibration: tuple[_PostStratum | _Raking, ...] = ()
    domain: np.ndarray = field(default=None)  # type: ignore[assignment]
    strata_col: str | None = None
    cluster_col: str | None = None

    # -- basic facts ---------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of rows (respondents) of the design, zero-weight rows included."""
        return len(self.data)

    @property
    def calibrated(self) -> bool:
        """Whether post-stratification or raking has been applied."""
        return bool(self.calibration)

    def degf(self, mask: np.ndarray | None = None) -> int:
        """R's ``degf()``: PSUs minus strata among rows with non-zero weight (within ``mask``)."""
        keep = self.weights != 0
        if mask is not None:
            keep = keep & mask
        return int(len(np.unique(self.psu[keep])) - len(np.unique(self.strata[keep])))

    def _r_rows(self, mask: np.ndarray) -> np.ndarray:
        """Rows R keeps in ``subset(design, mask)``: all for calibrated designs, else ``mask``."""
        if self.calibrated:
            return np.ones(self.n, dtype=bool)
        return mask

    def subset(self, mask: Any) -> SurveyDesign:
        """Domain of the design (R: ``subset(design, ...)``).

        Weights outside ``mask`` become 0; the design (strata, PSUs, fpc, calibration) is kept
        whole, so variances are domain variances.
        """
        m = _as_mask(mask, self.n)
        return replace(self, weights=np.where(m, self.weights, 0.0), domain=self.domain & m)

    def assign(self, **columns: Any) -> SurveyDesign:
        """Return the design with columns added to (or replaced in) ``data``, rows unchanged."""
        data = self.data.copy()
        for name, values in columns.items():
            values = values.to_numpy() if isinstance(values, pd.Series) else values
            data[name] = values
        return replace(self, data=data)

    def column(self, name: str) -> pd.Series:
        """The column ``name`` of the design's data."""
        return self.data[name]

    # -- variance ------------------------------------------------------------------------------
    def vcov(self, scores: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """Linearisation variance of the totals of ``scores`` (n x k influence values).

        Mirrors R ``svyrecvar`` + ``multistage``/``onestage``/``onestrat`` for one stage:
        (1) the scores are replaced by their calibration residuals, in the order the
        calibrations were made (``postStratify``: minus the post-stratum mean of
        ``x * oldw / w`` weighted by ``oldw``, times ``w``; ``rake``: ten sweeps of minus the
        margin mean of ``x / w`` times ``w``); (2) they are summed by PSU; (3) in each stratum
        the PSU totals are centred at their mean over the ``n_h`` sampled PSUs and their sum of
        squares is scaled by ``(1 - n_h/N_h) * n_h / (n_h - 1)``. ``active`` marks the rows of
        the analysed domain (strata without an active row are left out, as R drops them from an
        uncalibrated subset). Proven by the oracle lines "dstrat svymean api00", "dclus1
        svymean api00", "dclus1 postStratify(stype)" and "rake(coop; sex)".
        """
        x = np.array(scores, dtype=float, copy=True)
        if x.ndim == 1:
            x = x[:, None]
        if active is None:
            active = self.weights != 0
        if not self.calibrated:
            x[~active] = 0.0
        for step in self.calibration:
            if isinstance(step, _PostStratum):
                psw = step.weights.copy()
                oldw = step.old_weights
                psw[(psw == 0) & (oldw == 0)] = 1.0
                ncell = int(step.index.max()) + 1
                den = np.bincount(step.index, weights=oldw, minlength=ncell)
                for j in range(x.shape[1]):
                    num = np.bincount(step.index, weights=x[:, j] * oldw / psw, minlength=ncell)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        means = num / den
                    x[:, j] -= means[step.index] * psw
            else:
                for _ in range(10):  # R: for(iterations in 1:10)
                    for idx, psw in step.margins:
                        ncell = int(idx.max()) + 1
                        cnt = np.bincount(idx, minlength=ncell)
                        for j in range(x.shape[1]):
                            sums = np.bincount(idx, weights=x[:, j] / psw, minlength=ncell)
                            x[:, j] -= psw * (sums / np.maximum(cnt, 1))[idx]
        return self._stratified_variance(x, active)

    def _stratified_variance(self, x: np.ndarray, active: np.ndarray) -> np.ndarray:
        k = x.shape[1]
        npsu_total = len(self.psu_stratum)
        tot = np.empty((npsu_total, k))
        for j in range(k):
            tot[:, j] = np.bincount(self.psu, weights=x[:, j], minlength=npsu_total)
        nstrat_all = len(self.strata_levels)
        present_rows = self._r_rows(active)
        present = np.zeros(nstrat_all, dtype=bool)
        present[np.unique(self.strata[present_rows])] = True
        # PSUs holding at least one row R keeps (R's nsubset)
        psu_has = np.zeros(npsu_total, dtype=bool)
        psu_has[np.unique(self.psu[present_rows])] = True
        nsub = np.bincount(self.psu_stratum, weights=psu_has.astype(float), minlength=nstrat_all)
        n_h = self.n_psu.astype(float)
        if self.popsize is None:
            f = np.ones(nstrat_all)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                f = np.where(np.isinf(self.popsize), 1.0, (self.popsize - n_h) / self.popsize)
        scale = np.where(n_h > 1, f * n_h / np.maximum(n_h - 1, 1), f)
        census = f < 1e-7
        lonely = present & (n_h == 1) & ~census
        ordinary = present & (n_h > 1) & ~census
        ps = self.psu_stratum
        # centring at the stratum mean over all n_h sampled PSUs (zeros for PSUs outside the
        # domain: R pads them in onestrat)
        sums = np.zeros((nstrat_all, k))
        for j in range(k):
            sums[:, j] = np.bincount(ps, weights=tot[:, j], minlength=nstrat_all)
        centred = tot - (sums / np.maximum(n_h, 1)[:, None])[ps]
        use = ordinary[ps]
        c = centred[use] * np.sqrt(scale[ps][use])[:, None]
        v = np.array([[_sumsq(np.ascontiguousarray(c[:, 0]))]]) if k == 1 else c.T @ c
        n_na = 0
        if lonely.any():
            mode = self.lonely_psu
            for h in np.flatnonzero(lonely):
                label = self.strata_levels[h]
                if mode == "fail":
                    raise LonelyPSUError(
                        f"Stratum {label!r} has only one PSU (one respondent): choose "
                        "lonely_psu='remove', 'certainty', 'adjust' or 'average'."
                    )
                if mode == "average":
                    n_na += 1
                    continue
                sel = ps == h
                centre = not (mode == "adjust" and nsub[h] <= 1)
                xh = centred[sel] if centre else tot[sel]
                xh = xh * math.sqrt(scale[h])
                v = v + xh.T @ xh
        nstrat = int(present.sum())
        nok = nstrat - n_na
        if n_na:
            if nok == 0:
                return np.full((k, k), np.nan)
            v = v * nstrat / nok
        return v


def _as_mask(mask: Any, n: int) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    if isinstance(mask, pd.Series):
        arr = mask.astype("boolean").fillna(False).to_numpy(dtype=bool)
    else:
        arr = np.asarray(mask)
        if arr.dtype == object:
            arr = pd.Series(arr).astype("boolean").fillna(False).to_numpy(dtype=bool)
        arr = arr.astype(bool)
    if arr.shape != (n,):
        raise ValueError(f"mask has shape {arr.shape}, expected ({n},)")
    return arr


def _as_float(values: Any) -> np.ndarray:
    """Values as a float array with NaN for missing (pandas nullable dtypes accepted)."""
    if isinstance(values, pd.Series):
        s = values
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiu":
            return s.to_numpy(dtype=float)
        if s.dtype == bool or str(s.dtype) == "boolean":
            s = s.astype("Float64")
        return (
            pd.to_numeric(s, errors="raise")
            .astype("Float64")
            .to_numpy(dtype=float, na_value=np.nan)
        )
    arr = np.asarray(values)
    if arr.dtype == object:
        return _as_float(pd.Series(arr))
    return arr.astype(float)


def _values(design: SurveyDesign, y: Any) -> np.ndarray:
    if isinstance(y, str):
        return _as_float(design.data[y])
    arr = _as_float(y)
    if arr.shape != (design.n,):
        raise ValueError(f"values have shape {arr.shape}, expected ({design.n},)")
    return arr


def _column(design: SurveyDesign, y: Any) -> pd.Series:
    if isinstance(y, str):
        return design.data[y].reset_index(drop=True)
    s = pd.Series(y).reset_index(drop=True)
    if len(s) != design.n:
        raise ValueError(f"values have length {len(s)}, expected {design.n}")
    return s


def svydesign(
    data: pd.DataFrame,
    *,
    strata: str | None = None,
    clusters: str | None = None,
    weights: str | Sequence[float] | np.ndarray | None = None,
    fpc: str | Sequence[float] | np.ndarray | None = None,
    lonely_psu: LonelyPSU = "fail",
) -> SurveyDesign:
    """Build a design (R: ``svydesign(id = ~clusters or ~1, strata, weights, fpc)``).

    Args:
        data: one row per respondent.
        strata: column of stratum labels (the CAE), or None for an unstratified design.
        clusters: column of (one-stage) cluster ids, or None when every row is its own PSU.
            Clusters must be nested in strata (R's ``check.strata``).
        weights: column name or values of the sampling weights. If None, weights are
            ``popsize / sampsize`` from ``fpc`` (as R does).
        fpc: column name or values, constant within stratum, with R's semantics: values > 1
            are the population number of PSUs of the stratum; values <= 1 are sampling
            fractions (population = sampled PSUs / fraction). None: no finite population
            correction (with-replacement variance).
        lonely_psu: single-PSU strata, see the module docstring (R's default ``"fail"``).

    Returns:
        a :class:`SurveyDesign`.

    """
    if lonely_psu not in _LONELY:
        raise ValueError(f"lonely_psu must be one of {_LONELY}")
    df = data.reset_index(drop=True)
    n = len(df)
    if n == 0:
        raise ValueError("empty data")
    if strata is None:
        s_codes = np.zeros(n, dtype=np.int64)
        s_levels = np.array(["1"], dtype=object)
    else:
        if df[strata].isna().any():
            raise ValueError(f"missing values in strata column {strata!r}")
        s_codes, s_levels = pd.factorize(df[strata], sort=True)
        s_codes = s_codes.astype(np.int64)
        s_levels = np.asarray(s_levels, dtype=object)
    if clusters is None:
        psu = np.arange(n, dtype=np.int64)
    else:
        if df[clusters].isna().any():
            raise ValueError(f"missing values in cluster column {clusters!r}")
        psu, _ = pd.factorize(df[clusters], sort=True)
        psu = psu.astype(np.int64)
    npsu_total = int(psu.max()) + 1
    psu_stratum = np.full(npsu_total, -1, dtype=np.int64)
    psu_stratum[psu] = s_codes
    # nesting check (R: "Clusters not nested in strata at top level")
    pairs = pd.DataFrame({"p": psu, "s": s_codes}).drop_duplicates()
    if pairs["p"].duplicated().any():
        raise ValueError("clusters are not nested in strata")
    if npsu_total == 1:
        raise ValueError("design has only one primary sampling unit")
    nstrat = len(s_levels)
    n_psu = np.bincount(psu_stratum, minlength=nstrat).astype(np.int64)

    popsize: np.ndarray | None = None
    if fpc is not None:
        fv = _as_float(df[fpc]) if isinstance(fpc, str) else _as_float(np.asarray(fpc))
        if fv.shape != (n,) or np.isnan(fv).any():
            raise ValueError("fpc must have one non-missing value per row")
        is_pop = bool((fv > 1).any())
        if is_pop and not (fv >= 1).all():
            raise ValueError("fpc must be all >= 1 (population sizes) or all <= 1 (fractions)")
        popsize = np.zeros(nstrat)
        for h in range(nstrat):
            vals = np.unique(fv[s_codes == h])
            if len(vals) != 1:
                raise ValueError(f"fpc varies within stratum {s_levels[h]!r}")
            popsize[h] = vals[0] if is_pop else n_psu[h] / vals[0]
        if (popsize < n_psu).any():
            raise ValueError("fpc implies more than 100% sampling in some strata")

    if weights is None:
        if popsize is None:
            raise ValueError("give weights or fpc")
        w = (popsize / n_psu)[s_codes].astype(float)
    else:
        w = _as_float(df[weights]) if isinstance(weights, str) else _as_float(np.asarray(weights))
        if w.shape != (n,) or np.isnan(w).any():
            raise ValueError("weights must have one non-missing value per row")
        if (w < 0).any():
            raise ValueError("negative weights")
    return SurveyDesign(
        data=df,
        weights=w.astype(float),
        strata=s_codes,
        strata_levels=s_levels,
        psu=psu,
        psu_stratum=psu_stratum,
        n_psu=n_psu,
        popsize=popsize,
        lonely_psu=lonely_psu,
        calibration=(),
        domain=np.ones(n, dtype=bool),
        strata_col=strata,
        cluster_col=clusters,
    )


def base_weights(
    df: pd.DataFrame, strata_col: str, population: Mapping[Hashable, float]
) -> pd.Series:
    """Base weights of the project: ``N_h / n_h`` for a respondent of CAE ``h``.

    Args:
        df: respondents.
        strata_col: column holding the CAE id.
        population: CAE id -> number of members ``N_h`` (from the register).

    Returns:
        a float Series aligned on ``df.index``.

    Raises:
        ValueError: a CAE of ``df`` has no population, or ``N_h < n_h``.

    """
    counts = df[strata_col].value_counts()
    missing = sorted(set(counts.index) - set(population), key=str)
    if missing:
        raise ValueError(f"no population size for {missing}")
    out = {}
    for h, n_h in counts.items():
        big_n = float(population[h])
        if big_n < n_h:
            raise ValueError(
                f"population of {h!r} ({big_n:g}) is smaller than its {n_h} respondents"
            )
        out[h] = big_n / n_h
    return df[strata_col].map(out).astype(float)


def stratified_design(
    df: pd.DataFrame,
    strata_col: str,
    population: Mapping[Hashable, float],
    *,
    lonely_psu: LonelyPSU = "fail",
) -> SurveyDesign:
    """The project's design: strata = CAEs, weight ``N_h/n_h``, fpc ``N_h`` (CONTRACTS §4).

    Equivalent to R ``svydesign(id=~1, strata=~cae, weights=~N/n, fpc=~N)``.
    """
    w = base_weights(df, strata_col, population)
    fpc = df[strata_col].map({k: float(v) for k, v in population.items()}).astype(float)
    return svydesign(
        df, strata=strata_col, weights=w.to_numpy(), fpc=fpc.to_numpy(), lonely_psu=lonely_psu
    )


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _tq(level: float, df: float) -> float:
    """Upper (1+level)/2 quantile of Student's t with ``df`` (normal when df is infinite).

    Cached: a study asks for the same few (level, df) pairs thousands of times and scipy's
    quantile costs about 0.2 ms a call.
    """
    a = (1.0 + level) / 2.0
    if not np.isfinite(df):
        return float(stats.norm.ppf(a))
    if df <= 0:
        return float("nan")
    return float(stats.t.ppf(a, df))


@functools.lru_cache(maxsize=4096)
def _t_ppf(q: float, df: float) -> float:
    """``stats.t.ppf(q, df)``, cached (see :func:`_tq`)."""
    return stats.t.ppf(q, df)


@dataclass(frozen=True)
class Estimate:
    """A design-based estimate.

    Attributes:
        estimate: the point estimate.
        se: its linearisation standard error.
        df: design degrees of freedom of the analysed (sub)design (R's ``degf``).
        n: unweighted number of respondents in the base.
        weighted_base: sum of the weights in the base (estimated population of the base).

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
        """Wald interval ``estimate -/+ t(df) * se``; ``df=None`` uses the design df.

        (R's ``confint(svymean(...))`` defaults to ``df = Inf``, the normal quantile.)
        """
        q = _tq(level, self.df if df is None else df)
        return (self.estimate - q * self.se, self.estimate + q * self.se)


@dataclass(frozen=True)
class ProportionEstimate(Estimate):
    """A proportion with its interval (R: ``svyciprop``).

    Attributes:
        ci_low, ci_high: interval bounds.
        method: ``logit``, ``beta``, ``likelihood`` or ``mean``.
        level: confidence level.

    """

    ci_low: float = float("nan")
    ci_high: float = float("nan")
    method: str = "logit"
    level: float = 0.95


@dataclass(frozen=True)
class QuantileEstimate(Estimate):
    """A quantile with its Woodruff interval (R: ``svyquantile``).

    ``se`` is R's interval-derived SE ``(ci_high - ci_low) / (2 t)``.
    """

    ci_low: float = float("nan")
    ci_high: float = float("nan")
    probability: float = 0.5
    level: float = 0.95


@dataclass(frozen=True)
class Comparison:
    """Difference between two domains (a - b) with a design-based Wald t test.

    Attributes:
        estimate_a, estimate_b: domain means (or proportions).
        difference: ``estimate_a - estimate_b``.
        se: SE of the difference from the joint linearisation (covariance included).
        statistic: ``difference / se``; df: its degrees of freedom; p_value: two-sided.
        ci_low, ci_high: t interval of the difference.
        n_a, n_b: unweighted bases.

    """

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
    """Before/now comparison on the same respondents (R: ``svyttest(I(after-before)~0)``).

    Attributes:
        before, after: means on the common base (both answered).
        difference: mean of ``after - before`` with its SE.
        statistic, df, p_value: one-sample design-based t test of a zero mean difference.
        ci_low, ci_high: t interval of the mean difference.

    """

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
    """Rao-Scott test of independence in a two-way table (R: ``svychisq``).

    Attributes:
        statistic: the F statistic (``"F"``) or the first-order corrected chi-square
            ``X2 / mean(delta)`` (``"Chisq"``).
        ndf, ddf: numerator and denominator df of the F (``ddf`` is inf for ``"Chisq"``).
        p_value: p-value.
        pearson: Pearson's X2 on the weighted table rescaled to the sample size.
        deltas: eigenvalues of the generalised design-effect matrix.
        method: ``"F"`` or ``"Chisq"``.
        table: the weighted table (estimated population counts).

    """

    statistic: float
    ndf: float
    ddf: float
    p_value: float
    pearson: float
    deltas: np.ndarray
    method: str
    table: pd.DataFrame


# ---------------------------------------------------------------------------------------------
# Means, totals, proportions
# ---------------------------------------------------------------------------------------------


def _prepare(design: SurveyDesign, y: Any, domain: Any) -> tuple[np.ndarray, np.ndarray]:
    yv = _values(design, y)
    mask = design.domain & _as_mask(domain, design.n) & ~np.isnan(yv) & (design.weights != 0)
    return np.where(mask, yv, 0.0), mask


def _mean_core(
    design: SurveyDesign, Y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted means of the columns of Y over ``mask`` and their covariance matrix (R svymean)."""
    w = np.where(mask, design.weights, 0.0)
    psum = w.sum()
    if psum <= 0:
        k = Y.shape[1]
        return np.full(k, np.nan), np.full((k, k), np.nan), 0.0
    avg = (w[:, None] * Y).sum(axis=0) / psum
    scores = (Y - avg) * (w / psum)[:, None]
    return avg, design.vcov(scores, mask), psum


def mean(design: SurveyDesign, y: Any, *, domain: Any = None) -> Estimate:
    """Weighted mean of ``y`` (column name or values) over the domain (R: ``svymean``).

    Missing ``y`` are left out of the base. Oracle: "dstrat svymean api00", "dclus1 svymean
    api00", "svymean ca".
    """
    yv, mask = _prepare(design, y, domain)
    avg, v, psum = _mean_core(design, yv[:, None], mask)
    se = math.sqrt(max(v[0, 0], 0.0)) if np.isfinite(v[0, 0]) else float("nan")
    return Estimate(float(avg[0]), se, design.degf(mask), int(mask.sum()), float(psum))


def total(design: SurveyDesign, y: Any, *, domain: Any = None) -> Estimate:
    """Weighted total of ``y`` over the domain (R: ``svytotal``).

    Oracle: "dstrat svytotal enroll".
    """
    yv, mask = _prepare(design, y, domain)
    w = np.where(mask, design.weights, 0.0)
    scores = (yv * w)[:, None]
    v = design.vcov(scores, mask)
    return Estimate(
        float(scores.sum()),
        float(math.sqrt(max(v[0, 0], 0.0))),
        design.degf(mask),
        int(mask.sum()),
        float(w.sum()),
    )


def _expit(x: float) -> float:
    return float(1.0 / (1.0 + math.exp(-x))) if x >= 0 else float(math.exp(x) / (1.0 + math.exp(x)))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@functools.lru_cache(maxsize=4096)
def _beta_interval(p: float, n_eff: float, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    lo = 0.0 if p <= 0 else float(stats.beta.ppf(alpha / 2, n_eff * p, n_eff * (1 - p) + 1))
    hi = 1.0 if p >= 1 else float(stats.beta.ppf(1 - alpha / 2, n_eff * p + 1, n_eff * (1 - p)))
    return lo, hi


@dataclass(frozen=True)
class _GlmFit:
    """What R's ``svyglm(y ~ 1, family = quasibinomial)`` holds that ``svyciprop`` uses."""

    coef: float  # final IRLS coefficient (logit scale)
    var: float  # design-based variance of coef (svy.varcoef: Ainv B Ainv)
    naive_var: float  # summary.glm()$cov.unscaled: 1 / sum of the working weights
    deviance: float
    dispersion: float  # summary.svyglm: svyvar of the Pearson residuals
    y: np.ndarray  # model rows (positive weight)
    prior: np.ndarray  # prior weights, rescaled to mean 1 over the design's rows


def _binomial_deviance(y: np.ndarray, mu: float, prior: np.ndarray) -> float:
    """R ``binomial()$dev.resids`` summed: ``2 wt (y log(y/mu) + (1-y) log((1-y)/(1-mu)))``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
        t2 = np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1.0) / (1 - mu)), 0.0)
    return float(2.0 * (prior * (t1 + t2)).sum())


# R's C logit link (src/library/stats/src/family.c): ``logit_linkinv`` and ``logit_mu_eta``
# cap the linear predictor at +-30 (THRESH). Beyond it R's glm.fit iterates are meaningless:
# mu is pinned at DBL_EPSILON/(1 + DBL_EPSILON) or 1/(1 + DBL_EPSILON), d mu/d eta is
# DBL_EPSILON and the next Newton step is of order 1/DBL_EPSILON (R ends at |coef| ~ 1e15).
_ETA_CAP = 30.0


def _irls_logit(
    y: np.ndarray, prior: np.ndarray, *, restart: bool = True
) -> tuple[float, np.ndarray, float]:
    """``glm.fit``'s IRLS for ``y ~ 1`` (quasibinomial).

    Returns the final coefficient, the working weights of the penultimate iterate and the
    deviance (see :func:`_svyglm_logit`).

    From the second iteration on, every fitted value is the same ``m = expit(coef)``; for a 0/1
    ``y`` the working response then takes two values and the deviance terms two values, which
    are computed once as scalars (the same IEEE operations as element by element; numpy's
    ``log`` is called on them as on the arrays). :func:`_irls_logit_reference` is the
    element-by-element version, kept for non-binary ``y`` and for the tests.

    Divergence (deliberate deviation from R): with large rescaled prior weights (a small
    domain of a calibrated design, whose rows all stay in R's subset) the start
    ``mu = (w y + 0.5)/(w + 1)`` is close to 0/1 and the plain Newton steps can overshoot past
    ``|eta| > 30``. R's glm.fit does not recover there (its link caps ``eta`` at +-30, the
    deviance stays finite so no step-halving happens, and the next step is ~1/DBL_EPSILON):
    ``svyciprop(method = "logit")`` returns 0 with interval [0, 0], or NaN. When an iterate
    leaves [-30, 30] while the weighted mean ``p`` is strictly inside (0, 1), the IRLS is
    restarted, as ``glm.fit(start = qlogis(p))`` (R: ``svyglm(y ~ 1, design,
    family = quasibinomial, start = qlogis(coef(svymean(~y, design))))``), which converges at
    once; the interval is then R's ``svyciprop(method = "xlogit")`` to rounding.
    ``restart=False`` gives the plain iterates.
    """
    y1 = y == 1
    if not (y1 | (y == 0)).all():
        return _irls_logit_reference(y, prior, restart=restart)
    add = np.add.reduce
    mu = (prior * y + 0.5) / (prior + 1.0)
    one_mu = 1 - mu
    eta = np.log(mu / one_mu)
    # _binomial_deviance at the start: log(y / mu) where y = 1, log((1 - y) / (1 - mu)) where 0
    devold = float(2.0 * add(prior * np.log(np.where(y1, 1.0 / mu, 1.0 / one_mu))))
    # first iteration, element by element
    mu_eta = mu * one_mu
    work = prior * mu_eta
    coef = float(add(work * (eta + (y - mu) / mu_eta)) / add(work))
    if restart and not abs(coef) <= _ETA_CAP:
        start = _logit_start(y, prior)
        if start is not None:
            return _irls_logit_scalar(y1, prior, start, 25)
    m = _expit(coef)
    dev = _binary_deviance(y1, m, prior)
    if abs(dev - devold) / (abs(dev) + 0.1) < 1e-8:
        return coef, work, dev
    return _irls_logit_scalar(y1, prior, coef, 24, m=m, devold=dev, restart=restart, y=y)


def _logit_start(y: np.ndarray, prior: np.ndarray) -> float | None:
    """``qlogis`` of the weighted mean of ``y``, or None when it is 0 or 1 (or undefined)."""
    p = float(np.add.reduce(prior * y) / np.add.reduce(prior))
    return math.log(p / (1.0 - p)) if 0.0 < p < 1.0 else None


def _irls_logit_scalar(
    y1: np.ndarray,
    prior: np.ndarray,
    coef: float,
    maxit: int,
    *,
    m: float | None = None,
    devold: float | None = None,
    restart: bool = False,
    y: np.ndarray | None = None,
) -> tuple[float, np.ndarray, float]:
    """``glm.fit``'s iterations for a 0/1 ``y`` once every fitted value is ``expit(coef)``.

    Without ``m``/``devold``: ``glm.fit(start = coef)`` (``eta = start``, ``mu = linkinv(eta)``,
    ``devold`` its deviance). With ``restart``, an iterate outside [-30, 30] restarts from
    :func:`_logit_start` (see :func:`_irls_logit`).
    """
    add = np.add.reduce
    if m is None:
        m = _expit(coef)
        devold = _binary_deviance(y1, m, prior)
    work = prior
    dev = devold
    for _ in range(maxit):  # glm.control(maxit = 25)
        diverged = m != m  # NaN: the iterations can no longer change anything
        mu_eta = m * (1 - m)
        if mu_eta > 0:
            z1, z0 = coef + (1 - m) / mu_eta, coef + (0.0 - m) / mu_eta
        else:  # m is 0, 1 or NaN: numpy's division (inf, NaN), as element by element
            mu_eta = np.float64(mu_eta)
            with np.errstate(divide="ignore", invalid="ignore"):
                z1, z0 = coef + (1 - np.float64(m)) / mu_eta, coef + (0.0 - np.float64(m)) / mu_eta
        work = prior * mu_eta
        coef = float(add(work * np.where(y1, z1, z0)) / add(work))
        if restart and not abs(coef) <= _ETA_CAP:
            start = _logit_start(y, prior)
            if start is not None:
                return _irls_logit_scalar(y1, prior, start, 25)
        m = _expit(coef)
        dev = _binary_deviance(y1, m, prior)
        if diverged and coef != coef:
            # NaN fitted values (the iteration diverged: no step-halving here, unlike R's
            # glm.fit): every later iteration gives these same NaN coefficient, working weights
            # and deviance, and none meets the convergence test
            break
        if abs(dev - devold) / (abs(dev) + 0.1) < 1e-8:
            break
        devold = dev
    return coef, work, dev


def _binary_deviance(y1: np.ndarray, m: float, prior: np.ndarray) -> float:
    """:func:`_binomial_deviance` for ``y`` in {0, 1} (``y1``: where ``y`` is 1)."""
    if 0.0 < m < 1.0:
        l1, l0 = np.log(np.array([1.0 / m, 1.0 / (1 - m)]))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            l1, l0 = np.log(np.array([1.0, 1.0]) / np.array([m, 1 - m]))
    return float(2.0 * np.add.reduce(prior * np.where(y1, l1, l0)))


def _irls_logit_reference(
    y: np.ndarray, prior: np.ndarray, *, restart: bool = True, start: float | None = None
) -> tuple[float, np.ndarray, float]:
    """:func:`_irls_logit` element by element, for any ``y`` in [0, 1].

    ``start``: ``glm.fit(start = start)`` instead of the ``mustart`` of ``binomial()``.
    """
    if start is None:
        mu = (prior * y + 0.5) / (prior + 1.0)
        eta = np.log(mu / (1 - mu))
    else:
        eta = np.full_like(y, start)
        mu = np.full_like(y, _expit(start))
    devold = float(
        2.0
        * (
            prior
            * (
                np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
                + np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1.0) / (1 - mu)), 0.0)
            )
        ).sum()
    )
    coef = float("nan")
    work = prior
    dev = devold
    for _ in range(25):  # glm.control(maxit = 25)
        mu_eta = mu * (1 - mu)
        z = eta + (y - mu) / mu_eta
        work = prior * mu_eta  # w^2 of glm.fit, kept as the fit's working weights
        coef = float((work * z).sum() / work.sum())
        if restart and start is None and not abs(coef) <= _ETA_CAP:
            st = _logit_start(y, prior)
            if st is not None:
                return _irls_logit_reference(y, prior, start=st)
        eta = np.full_like(y, coef)
        m = _expit(coef)
        mu = np.full_like(y, m)
        dev = _binomial_deviance(y, m, prior)
        if abs(dev - devold) / (abs(dev) + 0.1) < 1e-8:
            break
        devold = dev
    return coef, work, dev


def _glm_dispersion(y: np.ndarray, m: float, wm: np.ndarray) -> float:
    """``summary.svyglm``'s dispersion: ``svyvar`` of the Pearson residuals."""
    n_model = len(y)
    r = (y - m) / math.sqrt(m * (1 - m))
    rbar = (wm * r).sum() / wm.sum()
    return (
        n_model / (n_model - 1) * float((wm * (r - rbar) ** 2).sum() / wm.sum())
        if n_model > 1
        else 1.0
    )


def _svyglm_logit(design: SurveyDesign, yv: np.ndarray, mask: np.ndarray) -> _GlmFit:
    """Replica of ``svyglm(y ~ 1, design, family = quasibinomial)`` for ``svyciprop``.

    ``glm.fit``'s IRLS is followed step by step (start ``mu = (w y + 0.5)/(w + 1)``, stop when
    the relative change of deviance is below 1e-8): R's returned working weights are those of
    the penultimate iterate, and ``confint(method = "likelihood")`` depends on them through
    ``naive.cov`` at the 1e-6 level. With this replica the oracle's logit estimate
    (0.827948011002, not the exact mean 0.827948011416) and the likelihood bounds are matched
    to 1e-12. The design variance is ``svy.varcoef``: ``Ainv B Ainv`` with ``B`` the
    linearisation variance of the estimating function (calibration residuals included).
    """
    rows = design._r_rows(mask)
    w_all = np.where(mask, design.weights, 0.0)
    scale = w_all[rows].mean()  # rescale = TRUE: weights / mean(weights) over the design rows
    model = mask & (w_all > 0)
    y = yv[model]
    prior = w_all[model] / scale
    coef, work, dev = _irls_logit(y, prior)
    m = _expit(coef)
    estfun = np.zeros(design.n)
    estfun[model] = (y - m) / (m * (1 - m)) * work
    b = float(design.vcov(estfun[:, None], mask)[0, 0])
    ainv = 1.0 / work.sum()
    disp = _glm_dispersion(y, m, w_all[model])
    return _GlmFit(coef, ainv * b * ainv, ainv, dev, disp, y, prior)


def _ci_proportion(
    p: float,
    var: float,
    *,
    method: str,
    level: float,
    df: float,
    n_rows: int,
    n_obs: int,
    glm: Any = None,
) -> tuple[float, float]:
    """Interval of a proportion exactly as R ``svyciprop`` computes it.

    ``n_rows`` is R's ``nrow(design)``; ``glm`` is a zero-argument callable returning the
    :class:`_GlmFit` (needed by ``logit`` and ``likelihood``). At ``p`` in {0, 1} the
    linearisation variance is 0 and every R method collapses to a point or fails; this
    function then returns the Korn-Graubard interval with the effective sample size set to the
    unweighted base ``n_obs`` (the NCHS convention), which R does not do.
    """
    alpha = 1.0 - level
    if not (np.isfinite(p) and np.isfinite(var)):
        return float("nan"), float("nan")
    if p <= 0.0 or p >= 1.0:
        if n_obs <= 0:
            return float("nan"), float("nan")
        n_eff = float(n_obs)
        if n_rows > 1 and df > 0:
            n_eff *= (_t_ppf(alpha / 2, n_rows - 1) / _t_ppf(alpha / 2, df)) ** 2
        return _beta_interval(p, n_eff, level)
    if var <= 0.0:
        return p, p  # census: no sampling error
    if method == "mean":
        # R: confint(svymean(...), df = degf(design)); oracle "method=mean"
        q = _tq(level, df)
        se = math.sqrt(var)
        return p - q * se, p + q * se
    if method == "beta":
        # R: n.eff <- p(1-p)/var * (qt(alpha/2, nrow-1)/qt(alpha/2, degf))^2; oracle "method=beta"
        n_eff = p * (1 - p) / var
        n_eff *= (_t_ppf(alpha / 2, n_rows - 1) / _t_ppf(alpha / 2, df)) ** 2
        return _beta_interval(p, n_eff, level)
    if method == "logit":
        # R: expit(confint(svyglm(y~1, quasibinomial), method = "Wald", ddf = degf)), i.e.
        # coef -/+ qt(1 - alpha/2, degf) * SE on the logit scale. Oracle "method=logit" and
        # "svyciprop agree logit".
        fit = glm()
        q = _tq(level, df)
        se_b = math.sqrt(fit.var)
        return _expit(fit.coef - q * se_b), _expit(fit.coef + q * se_b)
    if method == "likelihood":
        return _profile_likelihood_ci(glm(), df=df, level=level)
    raise ValueError(f"unknown interval method {method!r}")


def proportion(
    design: SurveyDesign,
    y: Any,
    *,
    method: CIMethod = "logit",
    level: float = 0.95,
    domain: Any = None,
    df: float | None = None,
) -> ProportionEstimate:
    """Proportion of ``y`` (0/1 or boolean, missing left out of the base) with its interval.

    R: ``svyciprop(~y, subset(design, domain & !is.na(y)), method, level, df = degf(...))``.
    Methods: ``logit`` (default; t quantile with design df on the logit scale), ``beta``
    (Korn-Graubard with R's df-adjusted effective sample size), ``likelihood`` (Rao-Scott
    scaled profile likelihood, with R/MASS's spline-interpolated profile) and ``mean`` (Wald on
    the proportion scale). The estimate is the weighted mean (R's ``logit`` and ``likelihood``
    report ``expit`` of the glm coefficient, equal to it within the glm tolerance, about 1e-9).
    Oracle: the four "dstrat svyciprop" lines and the toy "svyciprop" lines.
    """
    if method not in ("logit", "beta", "likelihood", "mean"):
        raise ValueError(f"unknown interval method {method!r}")
    yv, mask = _prepare(design, y, domain)
    if ((yv[mask] < 0) | (yv[mask] > 1)).any():
        raise ValueError("a proportion needs values in [0, 1]")
    avg, v, psum = _mean_core(design, yv[:, None], mask)
    p, var = float(avg[0]), float(v[0, 0])
    ddf = float(design.degf(mask)) if df is None else float(df)
    rows = design._r_rows(mask)
    lo, hi = _ci_proportion(
        p,
        var,
        method=method,
        level=level,
        df=ddf,
        n_rows=int(rows.sum()),
        n_obs=int(mask.sum()),
        glm=lambda: _svyglm_logit(design, yv, mask),
    )
    return ProportionEstimate(
        p, math.sqrt(max(var, 0.0)), ddf, int(mask.sum()), float(psum), lo, hi, method, level
    )


# -- profile likelihood (R confint.svyglm(method="likelihood") -> MASS profile.glm) ---------


def _fmm_spline_coef(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Port of R's ``fmm_spline`` (src/library/stats/src/splines.c).

    Forsythe, Malcolm and Moler cubic spline: end third derivatives matched to the cubics
    through the four end points.
    """
    n = len(x)
    b = np.zeros(n)
    c = np.zeros(n)
    d = np.zeros(n)
    if n < 2:
        raise ValueError("spline needs two points")
    if n < 3:
        t = (y[1] - y[0]) / (x[1] - x[0])
        b[:] = t
        return b, c, d
    nm1 = n - 1
    d[0] = x[1] - x[0]
    c[1] = (y[1] - y[0]) / d[0]
    for i in range(1, nm1):
        d[i] = x[i + 1] - x[i]
        b[i] = 2.0 * (d[i - 1] + d[i])
        c[i + 1] = (y[i + 1] - y[i]) / d[i]
        c[i] = c[i + 1] - c[i]
    b[0] = -d[0]
    b[nm1] = -d[n - 2]
    c[0] = c[nm1] = 0.0
    if n > 3:
        c[0] = c[2] / (x[3] - x[1]) - c[1] / (x[2] - x[0])
        c[nm1] = c[n - 2] / (x[nm1] - x[n - 3]) - c[n - 3] / (x[n - 2] - x[n - 4])
        c[0] = c[0] * d[0] * d[0] / (x[3] - x[0])
        c[nm1] = -c[nm1] * d[n - 2] * d[n - 2] / (x[nm1] - x[n - 4])
    for i in range(1, n):
        t = d[i - 1] / b[i - 1]
        b[i] = b[i] - t * d[i - 1]
        c[i] = c[i] - t * c[i - 1]
    c[nm1] = c[nm1] / b[nm1]
    for i in range(n - 2, -1, -1):
        c[i] = (c[i] - d[i] * c[i + 1]) / b[i]
    b[nm1] = (y[nm1] - y[n - 2]) / d[n - 2] + d[n - 2] * (c[n - 2] + 2.0 * c[nm1])
    for i in range(nm1):
        b[i] = (y[i + 1] - y[i]) / d[i] - d[i] * (c[i + 1] + 2.0 * c[i])
        d[i] = (c[i + 1] - c[i]) / d[i]
        c[i] = 3.0 * c[i]
    c[nm1] = 3.0 * c[nm1]
    d[nm1] = d[n - 2]
    return b, c, d


def _spline_eval(
    u: np.ndarray, x: np.ndarray, y: np.ndarray, coef: tuple[np.ndarray, ...]
) -> np.ndarray:
    """R's ``spline_eval`` for the fmm method."""
    b, c, d = coef
    i = np.searchsorted(x, u, side="right") - 1
    i = np.clip(i, 0, len(x) - 1)
    dx = u - x[i]
    return y[i] + dx * (b[i] + dx * (c[i] + dx * d[i]))


def _profile_likelihood_ci(fit: _GlmFit, *, df: float, level: float) -> tuple[float, float]:
    """``svyciprop(method="likelihood")``, step by step as R computes it.

    ``confint.svyglm(method = "likelihood", ddf = degf)`` rescales the level by the design
    effect ``lambda = cov.unscaled / naive.cov`` of the coefficient
    (``level' = 1 - 2 pnorm(qt((1-level)/2, ddf) sqrt(lambda))``) and calls MASS's
    ``profile.glm``: steps of ``del = zmax/5`` design SEs from the estimate, at most 9 each
    side, until the signed root ``z`` of (deviance change / dispersion) passes ``zmax =
    sqrt(qf(1 - alpha, 1, n - 1))`` with ``alpha = (1 - level')/4``; then
    ``confint.profile.glm``: ``spline()`` (fmm, ``3 x`` points) of ``z`` against the coefficient
    and linear ``approx()`` at ``qnorm((1 -/+ level')/2)``. Oracle: "dstrat svyciprop yes
    method=likelihood" (matched to 1e-12).
    """
    b0 = fit.coef
    se_b = math.sqrt(fit.var)
    lam = fit.var / fit.naive_var
    tq = stats.t.ppf((1 - level) / 2, df) if np.isfinite(df) else stats.norm.ppf((1 - level) / 2)
    level2 = 1 - 2 * stats.norm.cdf(tq * math.sqrt(lam))
    alpha = (1 - level2) / 4
    zmax = math.sqrt(stats.f.ppf(1 - alpha, 1, len(fit.y) - 1))
    delta = zmax / 5
    bs = [b0]
    zs = [0.0]
    for sgn in (-1.0, 1.0):
        step = 0
        z = 0.0
        while True:
            step += 1
            if not (step < 10 and abs(z) < zmax):  # while((step <- step + 1) < maxsteps && ...)
                break
            bi = b0 + sgn * step * delta * se_b
            zz = (_binomial_deviance(fit.y, _expit(bi), fit.prior) - fit.deviance) / fit.dispersion
            zz = max(zz, 0.0)
            z = sgn * math.sqrt(zz)
            bs.append(bi)
            zs.append(z)
    order = np.argsort(bs)
    xs = np.asarray(bs)[order]
    ys = np.asarray(zs)[order]
    coef = _fmm_spline_coef(xs, ys)
    xout = np.linspace(xs[0], xs[-1], 3 * len(xs))
    yout = _spline_eval(xout, xs, ys, coef)
    a = (1 - level2) / 2
    o = np.argsort(yout, kind="stable")
    ysorted, xsorted = yout[o], xout[o]
    res = []
    for c in stats.norm.ppf([a, 1 - a]):
        if c < ysorted[0] or c > ysorted[-1]:
            res.append(float("nan"))  # approx(rule = 1): outside the profile
        else:
            res.append(_expit(float(np.interp(c, ysorted, xsorted))))
    return res[0], res[1]


# ---------------------------------------------------------------------------------------------
# Distributions, domains
# ---------------------------------------------------------------------------------------------


def distribution(
    design: SurveyDesign,
    column: Any,
    *,
    levels: Sequence[Hashable] | None = None,
    method: CIMethod = "logit",
    level: float = 0.95,
    domain: Any = None,
) -> pd.DataFrame:
    """Share of every level of a categorical variable (R: ``svymean(~factor(x))`` + intervals).

    Args:
        design: the design.
        column: column name or values (strings, categories, numbers); missing values are out
            of the base.
        levels: levels to report, in this order (default: sorted observed levels). Levels
            absent from the base get estimate 0.
        method: interval method of every share, as :func:`proportion`.
        level: confidence level.
        domain: subpopulation mask.

    Returns:
        DataFrame with columns ``level, estimate, se, ci_low, ci_high, n, base_n,
        weighted_base, df``; ``n`` is the unweighted count of the level, ``base_n`` that of the
        base. Oracle: "svymean factor(q1) levels 1..4".

    """
    col = _column(design, column)
    valid = (
        design.domain & _as_mask(domain, design.n) & col.notna().to_numpy() & (design.weights != 0)
    )
    if levels is None:
        levels = sorted(pd.unique(col[valid]).tolist())
    levels = list(levels)
    Y = np.zeros((design.n, len(levels)))
    for j, lev in enumerate(levels):
        Y[:, j] = ((col == lev).fillna(False).to_numpy(dtype=bool) & valid).astype(float)
    avg, v, psum = _mean_core(design, Y, valid)
    ddf = float(design.degf(valid))
    rows = design._r_rows(valid)
    out = []
    for j, lev in enumerate(levels):
        p, var = float(avg[j]), float(v[j, j])
        lo, hi = _ci_proportion(
            p,
            var,
            method=method,
            level=level,
            df=ddf,
            n_rows=int(rows.sum()),
            n_obs=int(valid.sum()),
            glm=lambda j=j: _svyglm_logit(design, Y[:, j], valid),
        )
        out.append(
            {
                "level": lev,
                "estimate": p,
                "se": math.sqrt(max(var, 0.0)),
                "ci_low": lo,
                "ci_high": hi,
                "n": int(Y[:, j].sum()),
                "base_n": int(valid.sum()),
                "weighted_base": float(psum),
                "df": ddf,
            }
        )
    return pd.DataFrame(out)


def by(
    design: SurveyDesign,
    y: Any,
    by_column: str,
    *,
    statistic: Literal["mean", "total", "proportion"] = "mean",
    method: CIMethod = "logit",
    level: float = 0.95,
    domain: Any = None,
) -> pd.DataFrame:
    """Estimates for every level of ``by_column`` (R: ``svyby(~y, ~by, design, svymean)``).

    Every group is a domain: its SE is computed on the full design (zero influence outside
    the group), not by treating the group as a separate sample. Returns a DataFrame with
    columns ``<by_column>, estimate, se, df, n, weighted_base`` (plus ``ci_low, ci_high`` for
    proportions), groups in sorted order. Oracle: "dstrat svyby api00 by stype" and "svyby agree
    by coop".
    """
    col = _column(design, by_column)
    base = design.domain & _as_mask(domain, design.n) & (design.weights != 0)
    groups = sorted(pd.unique(col[base & col.notna().to_numpy()]).tolist())
    rows = []
    for g in groups:
        dm = base & (col == g).fillna(False).to_numpy(dtype=bool)
        if statistic == "mean":
            e = mean(design, y, domain=dm)
        elif statistic == "total":
            e = total(design, y, domain=dm)
        elif statistic == "proportion":
            e = proportion(design, y, domain=dm, method=method, level=level)
        else:
            raise ValueError(f"unknown statistic {statistic!r}")
        row = {
            by_column: g,
            "estimate": e.estimate,
            "se": e.se,
            "df": e.df,
            "n": e.n,
            "weighted_base": e.weighted_base,
        }
        if isinstance(e, ProportionEstimate):
            row["ci_low"], row["ci_high"] = e.ci_low, e.ci_high
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Quantiles
# ---------------------------------------------------------------------------------------------


def _qrule(x: np.ndarray, w: np.ndarray, p: float, rule: str) -> float:
    """R ``survey:::qrule_math`` / ``qrule_school`` (hf1 / hf2 of the weighted ECDF).

    ``math``: the smallest value whose weighted ECDF reaches ``p`` (exactly R's rule, except
    that for ``p`` below the first jump R returns the second order statistic; this returns the
    first, the mathematically defined value). ``school``: the average of the two values when
    the ECDF equals ``p`` exactly.
    """
    keep = w != 0
    x, w = x[keep], w[keep]
    if len(x) == 0 or not np.isfinite(p):
        return float("nan")
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cumw = np.cumsum(w[order])
    sw = w.sum()
    le = np.flatnonzero(cumw <= p * sw)
    if len(le) == 0:
        return float(xs[0])
    pos = le[-1]
    posnext = min(pos + 1, len(xs) - 1)
    wlow = p - cumw[pos] / sw
    if rule == "math":
        return float(xs[pos] if wlow <= 0 else xs[posnext])
    if rule == "school":
        return float((xs[pos] + xs[posnext]) / 2 if wlow <= 0 else xs[posnext])
    raise ValueError(f"unknown quantile rule {rule!r}")


def quantile(
    design: SurveyDesign,
    y: Any,
    p: float,
    *,
    level: float = 0.95,
    rule: Literal["math", "school"] = "math",
    domain: Any = None,
) -> QuantileEstimate:
    """Quantile of ``y`` with a Woodruff interval (R ``svyquantile`` defaults).

    R 4.1 default: ``qrule = "math"`` (inverse of the weighted ECDF, lower value) and
    ``interval.type = "mean"``: the proportion ``F(q_hat)`` of the base at or below the
    estimate gets a Wald interval with ``t(degf)``; its bounds are mapped back through the
    quantile rule (NaN if outside [0, 1]); ``se = (upper - lower) / (2 t)``. No R oracle exists
    for this function: ``tests/test_survey_oracles.py`` checks a hand-computed case.
    """
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    yv, mask = _prepare(design, y, domain)
    x = yv[mask]
    w = design.weights[mask]
    qhat = _qrule(x, w, p, rule)
    ind = np.where(mask, (yv <= qhat).astype(float), 0.0)
    avg, v, psum = _mean_core(design, ind[:, None], mask)
    ddf = float(design.degf(mask))
    q = _tq(level, ddf)
    se_p = math.sqrt(max(v[0, 0], 0.0))
    plo, phi = avg[0] - q * se_p, avg[0] + q * se_p
    lo = float("nan") if (np.isnan(plo) or plo < 0) else _qrule(x, w, float(plo), rule)
    hi = float("nan") if (np.isnan(phi) or phi > 1) else _qrule(x, w, float(phi), rule)
    se = (hi - lo) / (2 * q)
    return QuantileEstimate(qhat, se, ddf, int(mask.sum()), float(psum), lo, hi, p, level)


def median(
    design: SurveyDesign,
    y: Any,
    *,
    level: float = 0.95,
    rule: Literal["math", "school"] = "math",
    domain: Any = None,
) -> QuantileEstimate:
    """Median of ``y``: :func:`quantile` at ``p = 0.5``."""
    return quantile(design, y, 0.5, level=level, rule=rule, domain=domain)


# ---------------------------------------------------------------------------------------------
# Design effects
# ---------------------------------------------------------------------------------------------


def design_effect(design: SurveyDesign, y: Any, *, domain: Any = None) -> float:
    """Design effect of the mean of ``y`` (R: ``svymean(..., deff = TRUE)``).

    ``deff = var_design / var_srs`` with ``var_srs = s2 * (N_hat - n) / (N_hat * n)``, ``s2``
    the weighted variance with divisor ``n - 1`` (R ``svyvar``), ``N_hat`` the weighted base
    and ``n`` the unweighted base: the variance of a simple random sample without replacement
    of the same size.
    """
    yv, mask = _prepare(design, y, domain)
    est = mean(design, y, domain=domain)
    nobs = int(mask.sum())
    if nobs < 2:
        return float("nan")
    w = np.where(mask, design.weights, 0.0)
    psum = w.sum()
    s2 = nobs / (nobs - 1) * float((w * (yv - est.estimate) ** 2).sum() / psum)
    if psum < nobs:
        return float("nan")
    vsrs = s2 * (psum - nobs) / (psum * nobs)
    return est.var / vsrs if vsrs > 0 else float("nan")


def kish_design_effect(weights: Any) -> float:
    """Kish's design effect due to unequal weights: ``n * sum(w^2) / sum(w)^2 = 1 + cv^2``."""
    w = _as_float(np.asarray(weights))
    w = w[np.isfinite(w) & (w != 0)]
    if len(w) == 0:
        return float("nan")
    return float(len(w) * (w**2).sum() / w.sum() ** 2)


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size ``sum(w)^2 / sum(w^2)`` (= n / Kish deff)."""
    w = _as_float(np.asarray(weights))
    w = w[np.isfinite(w) & (w != 0)]
    if len(w) == 0:
        return 0.0
    return float(w.sum() ** 2 / (w**2).sum())


# ---------------------------------------------------------------------------------------------
# Calibration: post-stratification, collapsing, raking, trimming
# ---------------------------------------------------------------------------------------------


def _cells(data: pd.DataFrame, cols: Sequence[str]) -> list[tuple]:
    for c in cols:
        if data[c].isna().any():
            raise ValueError(f"missing values in calibration variable {c!r}")
    return list(zip(*[data[c].tolist() for c in cols], strict=True))


def _population_dict(cols: Sequence[str], population: Any) -> dict[tuple, float]:
    """Population table -> {cell tuple: count}.

    Accepts a DataFrame with ``cols`` + ``Freq`` (R's format), a Series indexed by the cells, or
    a mapping (scalar keys for one column).
    """
    if isinstance(population, pd.DataFrame):
        if "Freq" not in population.columns or not set(cols) <= set(population.columns):
            raise ValueError(f"population table needs columns {list(cols)} and 'Freq'")
        keys = _cells(population, cols)
        vals = population["Freq"].astype(float).tolist()
        out: dict[tuple, float] = {}
        for k, v in zip(keys, vals, strict=True):
            if k in out:
                raise ValueError(f"duplicate population cell {k}")
            out[k] = v
        return out
    if isinstance(population, pd.Series):
        population = population.to_dict()
    if isinstance(population, Mapping):
        out = {}
        for k, v in population.items():
            key = k if isinstance(k, tuple) else (k,)
            if len(key) != len(cols):
                raise ValueError(f"population key {k!r} does not match {list(cols)}")
            out[key] = float(v)
        return out
    raise TypeError("population must be a DataFrame, Series or mapping")


def post_stratify(
    design: SurveyDesign,
    cols: str | Sequence[str],
    population_table: Any,
    *,
    partial: bool = False,
) -> SurveyDesign:
    """Post-stratify the weights to known population counts (R: ``postStratify``).

    Every respondent's weight is multiplied by ``N_c / N_hat_c`` of its cell ``c`` (cells =
    combinations of ``cols``). The design records the step so that variances use the
    residuals of the influence values from their within-cell means (weighted by the weights
    before the step), as R does. Oracle: "dclus1 postStratify(stype)" and "postStratify(coop x
    sex)" (SE 0.0800, not the 0.0896 of fixed weights).

    Args:
        design: the design to calibrate.
        cols: calibration variable(s), columns of ``design.data``.
        population_table: DataFrame with ``cols`` + ``Freq``, or a mapping cell -> count
            (a scalar key for one column, tuples for several).
        partial: ignore population cells with no respondent (R's ``partial=TRUE``) instead of
            raising; see :func:`collapse_post_strata` for the project's rule.

    Raises:
        ValueError: a sample cell is absent from the population (or has count 0), or a
            populated cell has no respondent and ``partial`` is False.

    """
    cols = [cols] if isinstance(cols, str) else list(cols)
    pop = _population_dict(cols, population_table)
    keys = _cells(design.data, cols)
    codes, uniq = pd.factorize(pd.Series(keys, dtype=object))
    codes = np.asarray(codes, dtype=np.int64)
    uniq_keys = [tuple(k) for k in uniq]
    w = design.weights
    sample_tot = np.bincount(codes, weights=w, minlength=len(uniq_keys))
    only_sample = [
        k for k, t in zip(uniq_keys, sample_tot, strict=True) if t > 0 and pop.get(k, 0) == 0
    ]
    if only_sample:
        raise ValueError(f"cells in sample absent from population: {only_sample}")
    present = {k for k, t in zip(uniq_keys, sample_tot, strict=True) if t > 0}
    only_pop = [k for k, v in pop.items() if v > 0 and k not in present]
    if only_pop and not partial:
        raise ValueError(
            f"population cells without respondents: {only_pop} (collapse them, see "
            "collapse_post_strata, or use partial=True)"
        )
    reweight = np.array(
        [
            pop.get(k, np.nan) / t if t > 0 else 1.0
            for k, t in zip(uniq_keys, sample_tot, strict=True)
        ]
    )
    new_w = w * reweight[codes]
    step = _PostStratum(index=codes, weights=new_w, old_weights=w.copy())
    return replace(design, weights=new_w, calibration=design.calibration + (step,))


@dataclass(frozen=True)
class CollapsedCells:
    """Outcome of :func:`collapse_post_strata`.

    Attributes:
        labels: post-stratum label of every respondent (``"<stratum>|<outer>|<inner>"`` with
            ``*`` for a collapsed level), aligned with the data's rows.
        population: population table of the final cells (columns ``cell``, ``Freq``).
        collapsed: one row per original register cell that was merged: ``stratum, outer,
            inner, n, N, cell, reason``.

    """

    labels: pd.Series
    population: pd.DataFrame
    collapsed: pd.DataFrame


def collapse_post_strata(
    data: pd.DataFrame,
    population: pd.DataFrame,
    *,
    stratum: str,
    outer: str,
    inner: str,
    min_count: int = 1,
) -> CollapsedCells:
    """The project's rule for post-strata without enough respondents.

    Cells are ``stratum x outer x inner`` (CAE x sex x contract stage). A cell is *deficient*
    when it has fewer than ``min_count`` respondents while the register counts members in it,
    or has respondents while the register counts none. Rule:

    1. in a (stratum, outer) group holding a deficient cell, the ``inner`` levels are merged:
       the group becomes one cell ``stratum|outer|*`` (stage collapsed within sex);
    2. if that merged group is still deficient, the whole stratum becomes one cell
       ``stratum|*|*``: post-stratification then leaves that CAE's base weights unchanged
       (they already sum to ``N_h``);
    3. strata of the register without any respondent are dropped from the table (they are not
       in the sample, the design does not represent them).

    Args:
        data: respondents with the three columns (no missing values).
        stratum: column of the stratum (the CAE).
        outer: column of the variable kept longest (sex).
        inner: column of the variable collapsed first (contract stage).
        population: register counts, columns ``stratum, outer, inner, Freq``.
        min_count: smallest acceptable number of respondents in a cell (1 = only empty
            cells are collapsed).

    Returns:
        :class:`CollapsedCells`; ``collapsed`` lists what was merged and why.

    """
    cols = [stratum, outer, inner]
    for c in cols:
        if data[c].isna().any():
            raise ValueError(f"missing values in {c!r}: impute or drop before post-stratifying")
    pop = population.groupby(cols, dropna=False)["Freq"].sum().astype(float)
    samp = data.groupby(cols).size().astype(float)
    allcells = pop.index.union(samp.index)
    pop = pop.reindex(allcells, fill_value=0.0)
    samp = samp.reindex(allcells, fill_value=0.0)

    def deficient(n: float, big_n: float) -> bool:
        return (big_n > 0 and n < min_count) or (n > 0 and big_n <= 0)

    cell_of: dict[tuple, str] = {}
    records = []
    sampled_strata = set(data[stratum].unique().tolist())
    for s in sorted({k[0] for k in allcells}, key=str):
        keys_s = [k for k in allcells if k[0] == s]
        if s not in sampled_strata:
            for k in keys_s:
                records.append(
                    {
                        "stratum": k[0],
                        "outer": k[1],
                        "inner": k[2],
                        "n": 0,
                        "N": pop[k],
                        "cell": None,
                        "reason": "stratum without respondents",
                    }
                )
            continue
        groups: dict[Any, list[tuple]] = {}
        for k in keys_s:
            groups.setdefault(k[1], []).append(k)
        stratum_level = False
        group_label: dict[Any, str] = {}
        for o, ks in groups.items():
            if any(deficient(samp[k], pop[k]) for k in ks):
                n_o = sum(samp[k] for k in ks)
                big_n_o = sum(pop[k] for k in ks)
                if deficient(n_o, big_n_o):
                    stratum_level = True
                group_label[o] = f"{s}|{o}|*"
        for o, ks in groups.items():
            for k in ks:
                if stratum_level:
                    lab = f"{s}|*|*"
                    reason = "stage and sex collapsed: too few respondents in the sex group"
                elif o in group_label:
                    lab = group_label[o]
                    reason = "stage collapsed within sex"
                else:
                    lab = f"{s}|{o}|{k[2]}"
                    reason = ""
                cell_of[k] = lab
                if reason and (samp[k] > 0 or pop[k] > 0):
                    records.append(
                        {
                            "stratum": k[0],
                            "outer": k[1],
                            "inner": k[2],
                            "n": int(samp[k]),
                            "N": pop[k],
                            "cell": lab,
                            "reason": reason,
                        }
                    )
    labels = pd.Series(
        [cell_of[k] for k in _cells(data, cols)], index=data.index, name="post_stratum"
    )
    table: dict[str, float] = {}
    for k, lab in cell_of.items():
        table[lab] = table.get(lab, 0.0) + float(pop[k])
    popdf = pd.DataFrame({"cell": list(table), "Freq": list(table.values())})
    popdf = popdf[popdf["Freq"] > 0].reset_index(drop=True)
    collapsed = pd.DataFrame(
        records, columns=["stratum", "outer", "inner", "n", "N", "cell", "reason"]
    )
    return CollapsedCells(labels=labels, population=popdf, collapsed=collapsed)


def post_stratify_with_collapse(
    design: SurveyDesign,
    population: pd.DataFrame,
    *,
    stratum: str,
    outer: str,
    inner: str,
    min_count: int = 1,
    label_column: str = "post_stratum",
) -> tuple[SurveyDesign, CollapsedCells]:
    """Collapse deficient cells, then post-stratify on the resulting cells.

    :func:`collapse_post_strata` then :func:`post_stratify`. Returns the calibrated design
    (with a ``label_column`` column) and the collapsing report.
    """
    res = collapse_post_strata(
        design.data, population, stratum=stratum, outer=outer, inner=inner, min_count=min_count
    )
    d2 = design.assign(**{label_column: res.labels.to_numpy()})
    table = res.population.rename(columns={"cell": label_column})
    return post_stratify(d2, label_column, table), res


@dataclass(frozen=True)
class RakeResult:
    """Outcome of :func:`rake_with_report`.

    The design, whether R's stopping rule was met, the number of passes and the last maximum
    absolute change of the cross-classified table.
    """

    design: SurveyDesign
    converged: bool
    passes: int
    delta: float


def _margins_list(margins: Any) -> list[tuple[list[str], Any]]:
    if isinstance(margins, Mapping):
        return [([k] if isinstance(k, str) else list(k), v) for k, v in margins.items()]
    out = []
    for cols, table in margins:
        out.append(([cols] if isinstance(cols, str) else list(cols), table))
    return out


def rake_with_report(
    design: SurveyDesign,
    margins: Any,
    *,
    epsilon: float = 1e-10,
    maxit: int = 100,
) -> RakeResult:
    """Rake (iterative proportional fitting) to population margins, as R ``rake()`` does.

    Each pass post-stratifies on every margin in turn; after each pass the table of weights
    cross-classified by all margin variables is compared with the previous pass and the loop
    stops when its largest absolute change is below ``epsilon`` (R's ``control$epsilon``:
    when ``epsilon < 1`` it is relative, multiplied by the sum of the weights) or after
    ``maxit`` passes. The margins' post-strata of the last pass, each with the weights right
    after it, are kept for the variance (R's "raking" calibration: ten sweeps of margin
    residuals). Oracle: "dclus1 rake(stype, sch.wide)" (``epsilon=1e-10, maxit=100``) and
    "rake(coop; sex)" (which R ran with its default control ``maxit=10, epsilon=1``).

    Args:
        design: the design to rake.
        margins: mapping ``column -> population`` (population as accepted by
            :func:`post_stratify`) or a list of ``(column(s), population)``.
        epsilon: stopping threshold (R's semantics, see above).
        maxit: maximum number of passes.

    """
    mlist = _margins_list(margins)
    if not mlist:
        raise ValueError("no margins")
    eps = epsilon * float(design.weights.sum()) if epsilon < 1 else epsilon
    allcols: list[str] = []
    for cols, _ in mlist:
        allcols += [c for c in cols if c not in allcols]
    cross = np.asarray(pd.factorize(pd.Series(_cells(design.data, allcols), dtype=object))[0])
    ncross = int(cross.max()) + 1

    def table(w: np.ndarray) -> np.ndarray:
        return np.bincount(cross, weights=w, minlength=ncross)

    base_cal = design.calibration
    old = table(design.weights)
    cur = design
    it = 0
    converged = False
    delta = float("nan")
    while it < maxit:
        cur = replace(cur, calibration=())
        for cols, pop in mlist:
            cur = post_stratify(cur, cols, pop)
        new = table(cur.weights)
        delta = float(np.abs(old - new).max())
        if delta < eps:
            converged = True
            break
        old = new
        it += 1
    steps = cur.calibration
    raking = _Raking(margins=tuple((s.index, s.weights) for s in steps))  # type: ignore[union-attr]
    out = replace(cur, calibration=base_cal + (raking,))
    if not converged:
        warnings.warn(
            f"raking did not converge after {maxit} iterations", RuntimeWarning, stacklevel=2
        )
    return RakeResult(out, converged, it + 1 if converged else it, delta)


def rake(
    design: SurveyDesign, margins: Any, epsilon: float = 1e-10, maxit: int = 100
) -> SurveyDesign:
    """Raked design (see :func:`rake_with_report`, which also says whether it converged)."""
    return rake_with_report(design, margins, epsilon=epsilon, maxit=maxit).design


@dataclass(frozen=True)
class TrimResult:
    """Outcome of :func:`trim_weights`.

    Attributes:
        design: the design with trimmed weights.
        trimmed: the respondents whose weight was capped (``row, stratum, weight_before,
            weight_after``).
        caps: cap of every stratum.
        iterations: cap-and-redistribute rounds used.

    """

    design: SurveyDesign
    trimmed: pd.DataFrame
    caps: pd.Series
    iterations: int


def trim_weights(design: SurveyDesign, *, ratio: float = 3.5, maxit: int = 50) -> TrimResult:
    """Trim extreme weights within each stratum (CAE), keeping every stratum's total.

    Rule: in stratum ``h`` the cap is ``ratio x`` the median of its (non-zero) weights. Weights
    above the cap are set to the cap and the excess is given to the other respondents of the
    same stratum in proportion to their weights; this is repeated until no weight exceeds the
    cap. Each CAE's weighted total is therefore unchanged; post-stratification totals within the
    CAE hold only approximately afterwards. As R's ``trimWeights``, the calibration structure is
    kept for the variance and the trimmed weights are otherwise treated as fixed.

    Raises:
        ValueError: the cap is infeasible (``n_h x cap < total_h``).

    """
    if ratio <= 1:
        raise ValueError("ratio must exceed 1")
    w = design.weights.copy()
    caps = {}
    trimmed_rows = []
    iterations = 0
    for h, label in enumerate(design.strata_levels):
        sel = (design.strata == h) & (w > 0)
        if not sel.any():
            continue
        wh = w[sel]
        cap = ratio * float(np.median(wh))
        caps[label] = cap
        tot = wh.sum()
        if cap * len(wh) < tot * (1 - 1e-12):
            raise ValueError(f"cap {cap:g} infeasible in stratum {label!r}")
        before = wh.copy()
        capped = np.zeros(len(wh), dtype=bool)
        for it in range(1, maxit + 1):
            over = (wh > cap * (1 + 1e-12)) & ~capped
            if not over.any():
                break
            iterations = max(iterations, it)
            capped |= over
            wh = np.where(capped, cap, wh)
            free = ~capped
            excess = tot - wh.sum()
            if free.any():
                wh[free] = wh[free] * (1 + excess / wh[free].sum())
        idx = np.flatnonzero(sel)
        for i in np.flatnonzero(capped):
            trimmed_rows.append(
                {
                    "row": int(idx[i]),
                    "stratum": label,
                    "weight_before": float(before[i]),
                    "weight_after": float(wh[i]),
                }
            )
        w[sel] = wh
    trimmed = pd.DataFrame(
        trimmed_rows, columns=["row", "stratum", "weight_before", "weight_after"]
    )
    return TrimResult(replace(design, weights=w), trimmed, pd.Series(caps, name="cap"), iterations)


# ---------------------------------------------------------------------------------------------
# Comparisons and tests
# ---------------------------------------------------------------------------------------------


def compare_domains(
    design: SurveyDesign,
    y: Any,
    domain_a: Any,
    domain_b: Any = None,
    *,
    level: float = 0.95,
    domain: Any = None,
) -> Comparison:
    """Difference of the means (proportions for 0/1 ``y``) of two disjoint domains.

    ``domain_b`` defaults to the rest of the base (respondents with a valid ``y``, within
    ``domain``, outside ``domain_a``). The SE comes from the joint linearisation of the two
    means, i.e. the influence ``1_a w (y - m_a)/W_a - 1_b w (y - m_b)/W_b`` on the full design,
    so the covariance between the domains (through strata, PSUs and calibration) is included.
    The Wald t test and interval use ``degf - 1`` df of the design restricted to the two
    domains, as R's ``svyttest(y ~ group)`` (``svyglm`` residual df) does.
    """
    yv, valid = _prepare(design, y, domain)
    a = valid & _as_mask(domain_a, design.n)
    b = valid & (
        ~_as_mask(domain_a, design.n) if domain_b is None else _as_mask(domain_b, design.n)
    )
    if (a & b).any():
        raise ValueError("the two domains overlap")
    w = design.weights
    wa, wb = np.where(a, w, 0.0), np.where(b, w, 0.0)
    Wa, Wb = wa.sum(), wb.sum()
    if Wa <= 0 or Wb <= 0:
        nan = float("nan")
        return Comparison(nan, nan, nan, nan, nan, nan, nan, nan, nan, int(a.sum()), int(b.sum()))
    ma, mb = (wa * yv).sum() / Wa, (wb * yv).sum() / Wb
    scores = wa * (yv - ma) / Wa - wb * (yv - mb) / Wb
    ab = a | b
    v = float(design.vcov(scores[:, None], ab)[0, 0])
    se = math.sqrt(max(v, 0.0))
    df = float(design.degf(ab) - 1)
    diff = float(ma - mb)
    t = diff / se if _testable(se, ma, mb) else float("nan")
    p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) and df > 0 else float("nan")
    q = _tq(level, df)
    return Comparison(
        float(ma),
        float(mb),
        diff,
        se,
        t,
        df,
        p,
        diff - q * se,
        diff + q * se,
        int(a.sum()),
        int(b.sum()),
    )


_ZERO_SE = 1e-9


def _testable(se: float, ma: float, mb: float) -> bool:
    """False when the standard error of a difference is zero up to rounding.

    A variable the weights are calibrated on (the share of women, post-stratified on sex) has
    no sampling variance: its standard error comes out as 1e-17 of rounding, and the Wald
    statistic as an enormous t with p = 0. R's svyttest does the same. Such a difference is a
    fact of the registers, not a sampling result: it is not tested (t and p missing), so no
    report calls it significant.
    """
    return se > _ZERO_SE * max(abs(ma), abs(mb), 1.0)


def compare_stratum(
    design: SurveyDesign, y: Any, stratum: Hashable, *, level: float = 0.95, domain: Any = None
) -> Comparison:
    """A CAE (stratum label) against the rest of the consortium.

    :func:`compare_domains` with ``domain_a = (stratum == label)``.
    """
    codes = np.flatnonzero(design.strata_levels == stratum)
    if len(codes) != 1:
        raise ValueError(f"unknown stratum {stratum!r}")
    return compare_domains(design, y, design.strata == codes[0], level=level, domain=domain)


def paired_difference(
    design: SurveyDesign, before: Any, after: Any, *, level: float = 0.95, domain: Any = None
) -> PairedDifference:
    """Design-based mean change ``after - before`` on respondents who answered both.

    The three means share the base; the test is R's one-sample ``svyttest`` on the
    difference (``t = mean / se``, df = ``degf - 1`` of the base design, as R).
    """
    bv = _values(design, before)
    av = _values(design, after)
    base = _as_mask(domain, design.n) & ~np.isnan(bv) & ~np.isnan(av)
    e_b = mean(design, bv, domain=base)
    e_a = mean(design, av, domain=base)
    e_d = mean(design, av - bv, domain=base)
    df = float(e_d.df - 1)
    t = e_d.estimate / e_d.se if e_d.se > 0 else float("nan")
    p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) and df > 0 else float("nan")
    q = _tq(level, df)
    return PairedDifference(
        e_b, e_a, e_d, t, df, p, e_d.estimate - q * e_d.se, e_d.estimate + q * e_d.se
    )


@functools.lru_cache(maxsize=256)
def _interaction_contrasts(nr: int, nc: int) -> np.ndarray:
    """Interaction contrasts of an nr x nc table, as ``svychisq`` builds them.

    The interaction columns residualised on the main-effects model (R's ``qr.resid``).
    Cached, read-only.
    """
    rgrid = np.tile(np.arange(nr), nc)
    cgrid = np.repeat(np.arange(nc), nr)
    X1 = np.column_stack(
        [np.ones(nr * nc)]
        + [(rgrid == i).astype(float) for i in range(1, nr)]
        + [(cgrid == j).astype(float) for j in range(1, nc)]
    )
    M = np.column_stack(
        [((rgrid == i) & (cgrid == j)).astype(float) for j in range(1, nc) for i in range(1, nr)]
    )
    C = M - X1 @ np.linalg.lstsq(X1, M, rcond=None)[0]
    C.setflags(write=False)
    return C


def _rao_scott_core(
    p: np.ndarray, V: np.ndarray, N: int, nr: int, nc: int, tab: np.ndarray
) -> tuple[float, float, float, np.ndarray, np.ndarray]:
    """The Rao-Scott quantities of :func:`chisq_test`.

    Pearson's X2 of the table rescaled to ``N``, ``tr(Delta)``, ``d0``, the eigenvalues of
    ``Delta`` and ``Delta``.
    """
    C = _interaction_contrasts(nr, nc)
    idiag = np.where(p == 0, 0.0, 1.0 / np.where(p == 0, 1.0, p))
    iD = np.diag(idiag)
    denom = C.T @ (iD / N) @ C
    numr = C.T @ iD @ V @ iD @ C
    Delta = np.linalg.solve(denom, numr)
    tr = float(np.trace(Delta))
    d0 = tr**2 / float(np.trace(Delta @ Delta))
    scaled = tab * N / tab.sum()
    expected = np.outer(scaled.sum(axis=1), scaled.sum(axis=0)) / scaled.sum()
    x2 = float(((scaled - expected) ** 2 / expected).sum())
    deltas = np.sort(np.linalg.eigvals(Delta).real)[::-1]
    return x2, tr, d0, deltas, Delta


def chisq_test(
    design: SurveyDesign,
    row: Any,
    col: Any,
    *,
    statistic: Literal["F", "Chisq"] = "F",
    domain: Any = None,
) -> ChisqTest:
    """Rao-Scott test of independence of two categorical variables (R: ``svychisq``).

    ``"F"`` (R's default): Pearson's X2 on the weighted table rescaled to the sample size,
    divided by ``trace(Delta)``, referred to ``F(d0, d0 * nu)`` with ``d0 = tr(Delta)^2 /
    tr(Delta^2)`` (second-order correction) and ``nu`` = PSUs - strata. ``"Chisq"``: first-order
    correction, ``X2 / mean(delta)`` referred to chi-square with ``(r-1)(c-1)`` df. ``Delta`` is the
    generalised design-effect matrix of the interaction contrasts of the cell proportions.
    Rows with a missing value in either variable are out of the base (a domain).
    """
    rs, cs = _column(design, row), _column(design, col)
    valid = (
        design.domain
        & _as_mask(domain, design.n)
        & rs.notna().to_numpy()
        & cs.notna().to_numpy()
        & (design.weights != 0)
    )
    rlev = sorted(pd.unique(rs[valid]).tolist())
    clev = sorted(pd.unique(cs[valid]).tolist())
    nr, nc = len(rlev), len(clev)
    if nr < 2 or nc < 2:
        raise ValueError("need at least two levels in each variable")
    ri = pd.Categorical(rs, categories=rlev).codes
    ci = pd.Categorical(cs, categories=clev).codes
    cell = np.where(valid, ri + nr * ci, -1)  # interaction(factor(row), factor(col)): row fastest
    Y = np.zeros((design.n, nr * nc))
    Y[np.flatnonzero(valid), cell[valid]] = 1.0
    p, V, _ = _mean_core(design, Y, valid)
    rows_r = design._r_rows(valid)
    N = int(rows_r.sum())
    nu = int(len(np.unique(design.psu[rows_r])) - len(np.unique(design.strata[rows_r])))
    w = np.where(valid, design.weights, 0.0)
    tab = np.bincount(cell[valid], weights=w[valid], minlength=nr * nc).reshape(nc, nr).T
    x2, tr, d0, deltas, Delta = _rao_scott_core(p, V, N, nr, nc, tab)
    table = pd.DataFrame(
        tab,
        index=pd.Index(rlev, name=str(row) if isinstance(row, str) else "row"),
        columns=pd.Index(clev, name=str(col) if isinstance(col, str) else "col"),
    )
    if statistic == "F":
        f = x2 / tr
        pval = float(stats.f.sf(f, d0, d0 * nu))
        return ChisqTest(f, d0, d0 * nu, pval, x2, deltas, "F", table)
    if statistic == "Chisq":
        k = Delta.shape[1]
        stat = x2 / (tr / k)
        return ChisqTest(
            stat, float(k), float("inf"), float(stats.chi2.sf(stat, k)), x2, deltas, "Chisq", table
        )
    raise ValueError(f"unknown statistic {statistic!r}")


def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R: ``p.adjust(p, "BH")``).

    NaN stay NaN and are not counted in the number of tests.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    m = len(pv)
    if m == 0:
        return out
    order = np.argsort(pv)[::-1]
    ranks = np.arange(m, 0, -1)
    adj = np.minimum.accumulate(m / ranks * pv[order])
    res = np.empty(m)
    res[order] = np.minimum(1.0, adj)
    out[ok] = res
    return out


# ---------------------------------------------------------------------------------------------
# Row spans: domain estimates in time proportional to the domain's stratum
# ---------------------------------------------------------------------------------------------
#
# A CAE's estimate is a domain estimate of the consortium design: the influence values are zero
# outside the CAE, and R (hence the functions above) computes the variance on the whole design.
# Done literally, every estimate of every CAE costs time proportional to the whole sample, so a
# study of N CAEs costs N^2. The functions below compute the same numbers from the rows of the
# domain's strata only (a "span" of rows holding whole strata and whole post-strata), which
# makes the study linear in N.
#
# They are the same numbers bit for bit, not merely to rounding: the reductions that the
# whole-design computation performs over all rows (numpy's pairwise sums, BLAS ``ddot`` and
# ``dsyrk``) add the span's values in an order that depends on where the span sits among the
# zeros of the other rows, so each is evaluated on a window of rows chosen to reproduce that
# order (see :func:`_sum_in`, :func:`_sumsq_in`, :func:`_crossprod_in`). The reductions over
# compacted arrays (bincount, sums over the domain's respondents) do not depend on the other
# rows. ``tests/test_survey_spans.py`` checks the span results against the functions above.
# If another numpy or BLAS orders its sums differently, span and whole-design results can
# differ in the last bit (about 1e-16 relative): never statistically, only in a byte-for-byte
# comparison with an output of the whole-design computation.

_PW_BLOCK = 128  # numpy's PW_BLOCKSIZE: leaves of the pairwise summation tree
_PW_UNROLL = 8  # numpy's pairwise sum splits at multiples of 8
_DOT_ALIGN = 64  # OpenBLAS ddot kernels work on aligned blocks of 16 (32 with AVX-512) elements
_DOT_SINGLE = 10_000  # OpenBLAS runs a ddot up to this length on one thread
_DOT_CHUNK = 8192  # longer ones are summed in chunks of this length (see _sumsq)
_SYRK_Q = 256  # OpenBLAS dsyrk's GEMM_Q (Haswell/Zen kernels): rows summed per block


def _pairwise_node(start: int, stop: int, n: int) -> tuple[int, int]:
    """Smallest node ``(lo, size)`` of numpy's pairwise summation tree holding a window.

    The tree is numpy's over ``n`` elements, the window ``[start, stop)``.

    numpy sums a contiguous float64 array recursively: a block of at most 128 elements is summed
    with 8 accumulators, a longer one is split at ``n // 2`` rounded down to a multiple of 8.
    Elements outside ``[start, stop)`` being zero, the whole sum equals the sum of that node.
    """
    lo, size = 0, n
    while size > _PW_BLOCK:
        half = size // 2
        half -= half % _PW_UNROLL
        if stop <= lo + half:
            size = half
        elif start >= lo + half:
            lo, size = lo + half, size - half
        else:
            break
    return lo, size


def _sum_in(values: np.ndarray, start: int, n: int) -> Any:
    """``np.sum(full, axis=0)`` of a zero array holding ``values`` in a window, bit for bit.

    ``full`` has ``n`` rows, equal to ``values`` on ``[start, start + len(values))``.

    ``values`` is 1-D, or 2-D in Fortran order (each column is then summed as a 1-D array).
    """
    m = values.shape[0]
    lo, size = _pairwise_node(start, start + m, n)
    if lo == start and size == m:
        return values.sum(axis=0)
    buf = np.zeros((size,) + values.shape[1:], order="F")
    buf[start - lo : start - lo + m] = values
    return buf.sum(axis=0)


def _sumsq(col: np.ndarray) -> float:
    """``col @ col`` (BLAS ``ddot``) of a contiguous vector, in chunks above 10,000 elements.

    OpenBLAS splits a ``ddot`` longer than 10,000 elements over its threads: the partial sums
    are then added in an order that depends on the number of CPUs, and waking the threads
    costs milliseconds, far more than the sum. Longer vectors are therefore summed in chunks of
    8,192 elements (one thread each), the chunks' results added in order.
    """
    n = len(col)
    if n <= _DOT_SINGLE:
        return np.dot(col, col)
    acc = np.dot(col[:_DOT_CHUNK], col[:_DOT_CHUNK])
    for lo in range(_DOT_CHUNK, n, _DOT_CHUNK):
        chunk = col[lo : lo + _DOT_CHUNK]
        acc = acc + np.dot(chunk, chunk)
    return acc


def _window_sumsq(col: np.ndarray, start: int, n: int) -> float:
    """``x @ x`` (BLAS ``ddot``) of a zero vector holding ``col`` in a window, bit for bit.

    ``x`` has ``n <= 10,000`` elements, equal to ``col`` on ``[start, start + len(col))``.

    OpenBLAS's ``ddot`` sums lanes over aligned blocks from the vector's start and adds the
    ``n mod 16`` last products one by one; a window aligned on 64 elements, ending on a block
    boundary or at ``n``, gives the same partial sums.
    """
    m = len(col)
    stop = start + m
    if start == 0 and m == n:
        return np.dot(col, col)
    a0 = start - start % _DOT_ALIGN
    b0 = stop + (-stop) % _DOT_ALIGN
    if b0 > n - n % _DOT_ALIGN:
        b0 = n
    if a0 == start and b0 == stop:
        return np.dot(col, col)
    buf = np.zeros(b0 - a0)
    buf[start - a0 : stop - a0] = col
    return np.dot(buf, buf)


def _sumsq_in(col: np.ndarray, start: int, n: int) -> float:
    """:func:`_sumsq` of a zero vector holding ``col`` in a window, bit for bit.

    The vector has ``n`` elements, equal to ``col`` on ``[start, start + len(col))``.
    """
    m = len(col)
    if n <= _DOT_SINGLE:
        return _window_sumsq(col, start, n)
    if start == 0 and m == n:
        return _sumsq(col)
    acc = None
    stop = start + m
    for lo in range(start - start % _DOT_CHUNK, stop, _DOT_CHUNK):
        hi = min(lo + _DOT_CHUNK, n)
        a, b = max(lo, start), min(hi, stop)
        v = _window_sumsq(col[a - start : b - start], a - lo, hi - lo)
        acc = v if acc is None else acc + v  # the chunks without the window add +0.0
    return acc


def _sumsq_cols_in(c: np.ndarray, start: int, n: int) -> np.ndarray:
    """:func:`_sumsq_in` of every column of ``c`` (m x k), the window padded once."""
    m, k = c.shape
    if n > _DOT_SINGLE:
        cf = np.asfortranarray(c)
        return np.array([_sumsq_in(col, start, n) for col in cf.T])
    stop = start + m
    if start == 0 and m == n:
        a0, b0 = 0, n
    else:
        a0 = start - start % _DOT_ALIGN
        b0 = stop + (-stop) % _DOT_ALIGN
        if b0 > n - n % _DOT_ALIGN:
            b0 = n
    if a0 == start and b0 == stop:
        buf = np.asfortranarray(c)
    else:
        buf = np.zeros((b0 - a0, k), order="F")
        buf[start - a0 : stop - a0] = c
    dot = np.dot
    return np.array([dot(col, col) for col in buf.T])


def _syrk_blocks(n: int, start: int = 0):
    """Row blocks ``(lo, hi)`` of OpenBLAS ``dsyrk`` over ``n`` rows.

    From the block holding row ``start`` on. ``driver/level3/level3_syrk.c``: blocks of
    ``GEMM_Q`` rows while at least ``2 GEMM_Q`` remain, then the rest in one or two halves.
    """
    full = (n - 2 * _SYRK_Q) // _SYRK_Q + 1 if n >= 2 * _SYRK_Q else 0
    ls = min(start // _SYRK_Q, full) * _SYRK_Q
    while ls < n:
        rem = n - ls
        if rem >= 2 * _SYRK_Q:
            step = _SYRK_Q
        elif rem > _SYRK_Q:
            step = (rem + 1) // 2
        else:
            step = rem
        yield ls, ls + step
        ls += step


def _crossprod_in(c: np.ndarray, start: int, n: int) -> np.ndarray:
    """``C.T @ C`` (BLAS ``dsyrk``) of a zero matrix holding ``c`` in a window, bit for bit.

    ``C`` has ``n`` rows, equal to ``c`` (C order, k >= 2 columns) on rows
    ``[start, start + len(c))``.

    numpy calls BLAS ``dsyrk``; OpenBLAS accumulates each entry row by row within blocks of
    rows (:func:`_syrk_blocks`) and adds the blocks' results in order. The span's rows of each
    block are multiplied on their own and the results added in the same order.
    """
    m = c.shape[0]
    if start == 0 and m == n:
        return c.T @ c
    stop = start + m
    acc = None
    for lo, hi in _syrk_blocks(n, start):
        if lo >= stop:
            break
        a, b = max(lo, start), min(hi, stop)
        if a >= b:
            continue
        blk = c[a - start : b - start]
        part = blk.T @ blk
        acc = part if acc is None else acc + part
    return c.T @ c if acc is None else acc


class _SpanBase:
    """Constants of a design's linearisation variance, computed once, for :class:`_Span`."""

    def __init__(self, d: SurveyDesign) -> None:
        n = d.n
        self.n = n
        self.supported = (
            d.cluster_col is None
            and bool(np.array_equal(d.psu, np.arange(n)))
            and bool(np.asarray(d.domain).all())
            and all(isinstance(s, _PostStratum) for s in d.calibration)
        )
        nstrat = len(d.strata_levels)
        n_h = d.n_psu.astype(float)
        if d.popsize is None:
            f = np.ones(nstrat)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                f = np.where(np.isinf(d.popsize), 1.0, (d.popsize - n_h) / d.popsize)
        self.n_h = n_h
        self.n_h1 = np.maximum(n_h, 1)
        self.scale = np.where(n_h > 1, f * n_h / np.maximum(n_h - 1, 1), f)
        self.census = f < 1e-7
        rows = np.arange(n)
        self.st_first = np.full(nstrat, n, dtype=np.int64)
        self.st_last = np.full(nstrat, -1, dtype=np.int64)
        np.minimum.at(self.st_first, d.strata, rows)
        np.maximum.at(self.st_last, d.strata, rows)
        self.steps = []
        if self.supported:
            for step in d.calibration:
                psw = step.weights.copy()
                oldw = step.old_weights
                psw[(psw == 0) & (oldw == 0)] = 1.0
                ncell = int(step.index.max()) + 1
                den = np.bincount(step.index, weights=oldw, minlength=ncell)
                first = np.full(ncell, n, dtype=np.int64)
                last = np.full(ncell, -1, dtype=np.int64)
                np.minimum.at(first, step.index, rows)
                np.maximum.at(last, step.index, rows)
                self.steps.append((step.index, psw, oldw, den, first, last))
        # calibrated designs: R keeps every row of a subset, so every stratum is "present"
        self.lonely_all = (n_h == 1) & ~self.census
        ordinary = (n_h > 1) & ~self.census
        self.use_cum = np.concatenate([[0], np.cumsum(ordinary[d.strata])]).astype(np.int64)
        self.n_use = int(self.use_cum[-1])
        self.nu_all = int(len(np.unique(d.psu)) - len(np.unique(d.strata)))
        self.cache: dict[tuple[int, int], _Span] = {}


@dataclass(frozen=True, eq=False)
class _Span:
    """Rows ``[start, stop)`` of a design holding whole strata and whole post-strata.

    The influence values of a domain inside these rows stay zero outside them through
    calibration residuals and centring, so the domain's variance is computed on them alone.
    """

    design: SurveyDesign
    start: int
    stop: int
    w: np.ndarray
    strata: np.ndarray  # design codes of the rows' strata
    sl: np.ndarray  # the same, relative to the span's first stratum code
    ns: int
    steps: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], ...]
    n_h1: np.ndarray
    sqrt_scale: np.ndarray  # per row: sqrt of its stratum's variance scale
    use: np.ndarray  # per row (calibrated designs): the row enters the sum of squares
    use_all: bool  # every row does
    sqrt_scale_use: np.ndarray  # sqrt_scale of those rows, as a column
    use_offset: int
    lonely: tuple[tuple[int, int], ...]  # (stratum code, row) of lonely strata in the span

    @property
    def m(self) -> int:
        """Number of rows of the span."""
        return self.stop - self.start

    @property
    def full(self) -> bool:
        """Whether the span is the whole design."""
        return self.start == 0 and self.stop == self.design.n


def _span_base(design: SurveyDesign) -> _SpanBase:
    base = design.__dict__.get("_span_base_cache")
    if base is None:
        base = _SpanBase(design)
        design.__dict__["_span_base_cache"] = base
    return base


def design_span(design: SurveyDesign, rows: np.ndarray | None = None) -> _Span:
    """The smallest span of ``design`` holding the given rows (positions), or the whole design.

    The span is widened to whole strata and whole post-strata until stable; designs with
    clusters or raking, and subset designs, always get the whole design.
    """
    base = _span_base(design)
    n = design.n
    if rows is None or len(rows) == 0 or not base.supported:
        lo, hi = 0, n
    else:
        lo, hi = int(np.min(rows)), int(np.max(rows)) + 1
        while True:
            s = np.unique(design.strata[lo:hi])
            nlo = min(lo, int(base.st_first[s].min()))
            nhi = max(hi, int(base.st_last[s].max()) + 1)
            for index, _psw, _oldw, _den, first, last in base.steps:
                c = np.unique(index[nlo:nhi])
                nlo = min(nlo, int(first[c].min()))
                nhi = max(nhi, int(last[c].max()) + 1)
            if (nlo, nhi) == (lo, hi):
                break
            lo, hi = nlo, nhi
    key = (lo, hi)
    sp = base.cache.get(key)
    if sp is None:
        sp = _make_span(design, base, lo, hi)
        base.cache[key] = sp
    return sp


def restrict_rows(design: SurveyDesign, lo: int, hi: int) -> SurveyDesign:
    """The design of rows ``[lo, hi)`` alone: R's ``svydesign`` + ``postStratify`` on those rows.

    The rows must hold whole strata and whole post-strata (a span does, :func:`design_span`):
    the weights, the finite-population correction and the calibration are then those of the
    full design, and every estimate and variance is the same as the domain's in the full design
    (the strata are independent). What differs is what R derives from the design's size: the
    degrees of freedom and ``nrow`` of the Rao-Scott test and of the Korn-Graubard interval are
    those of these rows, not of the whole consortium, and sums are taken over these rows only,
    so the results do not move by a last bit when another stratum changes. Raking is not
    supported (its margins cross strata).
    """
    n = design.n
    if not (0 <= lo < hi <= n):
        raise ValueError(f"rows [{lo}, {hi}) are not rows of a design of {n} rows")
    if not _span_base(design).supported:
        raise ValueError("restrict_rows: a design with clusters, raking or a subset domain cannot be restricted")
    sl = slice(lo, hi)
    used, strata = np.unique(design.strata[sl], return_inverse=True)
    outside = np.concatenate([design.strata[:lo], design.strata[hi:]])
    if np.isin(used, outside).any():
        raise ValueError(f"rows [{lo}, {hi}) do not hold whole strata")
    cal = []
    for step in design.calibration:
        cells, index = np.unique(step.index[sl], return_inverse=True)
        if np.isin(cells, np.concatenate([step.index[:lo], step.index[hi:]])).any():
            raise ValueError(f"rows [{lo}, {hi}) do not hold whole post-strata")
        cal.append(_PostStratum(index.astype(step.index.dtype), step.weights[sl].copy(),
                                step.old_weights[sl].copy()))
    m = hi - lo
    return replace(
        design,
        data=design.data.iloc[sl].reset_index(drop=True),
        weights=design.weights[sl].copy(),
        strata=strata.astype(design.strata.dtype),
        strata_levels=design.strata_levels[used],
        psu=np.arange(m),
        psu_stratum=strata.astype(design.psu_stratum.dtype),
        n_psu=design.n_psu[used],
        popsize=None if design.popsize is None else design.popsize[used],
        calibration=tuple(cal),
        domain=np.asarray(design.domain)[sl].copy(),
    )


def _make_span(design: SurveyDesign, base: _SpanBase, lo: int, hi: int) -> _Span:
    strata = design.strata[lo:hi]
    s_lo = int(strata.min())
    sl = strata - s_lo
    ns = int(sl.max()) + 1
    steps = []
    for index, psw, oldw, den, _first, _last in base.steps:
        idx = index[lo:hi]
        c_lo = int(idx.min())
        c_hi = int(idx.max()) + 1
        steps.append((idx - c_lo, psw[lo:hi], oldw[lo:hi], den[c_lo:c_hi], c_hi - c_lo))
    lonely = tuple((int(h), int(base.st_first[h])) for h in np.unique(strata) if base.lonely_all[h])
    sqrt_scale = np.sqrt(base.scale[strata])
    use = ((base.n_h > 1) & ~base.census)[strata]
    return _Span(
        design=design,
        start=lo,
        stop=hi,
        w=design.weights[lo:hi],
        strata=strata,
        sl=sl,
        ns=ns,
        steps=tuple(steps),
        n_h1=base.n_h1[s_lo : s_lo + ns],
        sqrt_scale=sqrt_scale,
        use=use,
        use_all=bool(use.all()),
        sqrt_scale_use=sqrt_scale[use][:, None],
        use_offset=int(base.use_cum[lo]),
        lonely=lonely,
    )


def _cell_sums(codes: np.ndarray, x: np.ndarray, ncell: int) -> np.ndarray:
    """Per-code column sums of ``x`` (m x k), added row by row as ``np.bincount`` does."""
    k = x.shape[1]
    if k == 1:
        return np.bincount(codes, weights=x[:, 0], minlength=ncell)[:, None]
    flat = (codes[:, None] * k + np.arange(k)).ravel()
    return np.bincount(flat, weights=x.ravel(), minlength=ncell * k).reshape(ncell, k)


def _vcov_span(sp: _Span, x: np.ndarray, active: np.ndarray, *, diag: bool = False) -> np.ndarray:
    """:meth:`SurveyDesign.vcov` of influence values that are zero outside the span.

    ``x`` (m x k) holds them on the span's rows; it is modified in place.

    ``active`` marks the analysed rows (m, or m x k with one domain per column). With
    ``diag=True`` every column is its own estimate and the result is the vector of their
    variances (each as ``vcov(x[:, [j]], active[:, j])[0, 0]``); else the k x k matrix.
    """
    d = sp.design
    base = _span_base(d)
    if not d.calibrated:
        if active.ndim == 2 and x.shape[1] > 1:
            return _vcov_span_uncalibrated_columns(sp, x, active, diag)
        act = active if active.ndim == 1 else active[:, 0]
        return _vcov_span_uncalibrated(sp, x, act, diag)
    if d.lonely_psu == "fail" and base.lonely_all.any():
        h = int(np.flatnonzero(base.lonely_all)[0])
        raise LonelyPSUError(
            f"Stratum {d.strata_levels[h]!r} has only one PSU (one respondent): choose "
            "lonely_psu='remove', 'certainty', 'adjust' or 'average'."
        )
    k = x.shape[1]
    for idx, psw, oldw, den, ncell in sp.steps:
        num = _cell_sums(idx, x * oldw[:, None] / psw[:, None], ncell)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = num / den[:, None]
        x -= means[idx] * psw[:, None]
    tot = x + 0.0  # PSU totals (one row per PSU)
    sums = _cell_sums(sp.sl, tot, sp.ns)
    centred = tot - (sums / sp.n_h1[:, None])[sp.sl]
    c = (centred if sp.use_all else centred[sp.use]) * sp.sqrt_scale_use
    if diag:
        v = _sumsq_cols_in(c, sp.use_offset, base.n_use)
    elif k == 1:
        v = np.array([[_sumsq_in(np.ascontiguousarray(c[:, 0]), sp.use_offset, base.n_use)]])
    else:
        v = _crossprod_in(np.ascontiguousarray(c), sp.use_offset, base.n_use)
    mode = d.lonely_psu
    if sp.lonely and mode not in ("average",):
        for h, r in sp.lonely:
            row = r - sp.start
            xh = (tot if mode == "adjust" else centred)[row : row + 1]
            xh = xh * math.sqrt(base.scale[h])
            v = v + (xh[0] * xh[0] if diag else xh.T @ xh)
    n_na = int(base.lonely_all.sum()) if mode == "average" else 0
    if n_na:
        nstrat = len(d.strata_levels)
        nok = nstrat - n_na
        if nok == 0:
            return np.full(k if diag else (k, k), np.nan)
        v = v * nstrat / nok
    return v


def _vcov_span_uncalibrated_columns(
    sp: _Span, x: np.ndarray, active: np.ndarray, diag: bool
) -> np.ndarray:
    out = [
        _vcov_span_uncalibrated(sp, x[:, [j]].copy(), active[:, j], False)[0, 0]
        for j in range(x.shape[1])
    ]
    if not diag:
        raise ValueError("per-column domains need diag=True")
    return np.array(out)


def _vcov_span_uncalibrated(sp: _Span, x: np.ndarray, active: np.ndarray, diag: bool) -> np.ndarray:
    """:func:`_vcov_span` for designs without calibration.

    R drops the rows outside the domain, so only strata with an active row count (all inside
    the span).
    """
    d = sp.design
    base = _span_base(d)
    k = x.shape[1]
    x[~active] = 0.0
    tot = x + 0.0
    sums = _cell_sums(sp.sl, tot, sp.ns)
    centred = tot - (sums / sp.n_h1[:, None])[sp.sl]
    nsub = np.bincount(sp.sl[active], minlength=sp.ns)
    present = nsub > 0
    s_lo = int(sp.strata[0] - sp.sl[0])
    n_h = base.n_h[s_lo : s_lo + sp.ns]
    census = base.census[s_lo : s_lo + sp.ns]
    lonely = present & (n_h == 1) & ~census
    ordinary = present & (n_h > 1) & ~census
    use = ordinary[sp.sl]
    c = centred[use] * sp.sqrt_scale[use][:, None]
    if diag or k == 1:
        cf = np.asfortranarray(c)
        v = np.array([_sumsq(col) for col in cf.T])
        if not diag:
            v = v[:, None]
    else:
        v = c.T @ c
    n_na = 0
    mode = d.lonely_psu
    for s in np.flatnonzero(lonely):
        h = s + s_lo
        if mode == "fail":
            raise LonelyPSUError(
                f"Stratum {d.strata_levels[h]!r} has only one PSU (one respondent): choose "
                "lonely_psu='remove', 'certainty', 'adjust' or 'average'."
            )
        if mode == "average":
            n_na += 1
            continue
        sel = sp.sl == s
        centre = not (mode == "adjust" and nsub[s] <= 1)
        xh = centred[sel] if centre else tot[sel]
        xh = xh * math.sqrt(base.scale[h])
        v = v + (xh[0] * xh[0] if diag else xh.T @ xh)
    nstrat = int(present.sum())
    nok = nstrat - n_na
    if n_na:
        if nok == 0:
            return np.full(k if diag else (k, k), np.nan)
        v = v * nstrat / nok
    return v


def _span_degf(sp: _Span, mask: np.ndarray) -> int:
    """:meth:`SurveyDesign.degf` of a domain inside the span (one PSU per row)."""
    keep = (sp.w != 0) & mask
    npsu = int(keep.sum())
    if sp.ns == 1:
        return npsu - (1 if npsu else 0)
    return npsu - int(np.count_nonzero(np.bincount(sp.sl[keep], minlength=sp.ns)))


def _span_n_rows(sp: _Span, mask: np.ndarray) -> int:
    """``nrow()`` of R's subset design (see :meth:`SurveyDesign._r_rows`)."""
    return sp.design.n if sp.design.calibrated else int(mask.sum())


def _span_mean_core(
    sp: _Span, Y: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`_mean_core` for ``Y`` (m x k, C order) and ``mask`` given on the span's rows."""
    n = sp.design.n
    w = np.where(mask, sp.w, 0.0)
    psum = _sum_in(w, sp.start, n)
    k = Y.shape[1]
    if psum <= 0:
        return np.full(k, np.nan), np.full((k, k), np.nan), 0.0
    if k == 1:
        avg = np.array([_sum_in(w * Y[:, 0], sp.start, n)]) / psum
    else:
        avg = (w[:, None] * Y).sum(axis=0) / psum
    scores = (Y - avg) * (w / psum)[:, None]
    return avg, _vcov_span(sp, scores, mask), psum


def _span_mean_cores(
    sp: _Span, Y: np.ndarray, M: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column by column :func:`_mean_core` of ``Y[:, j]`` over ``M[:, j]`` (span rows), at once.

    Returns the means, their variances and the weighted bases (0 where the base is empty).
    """
    n = sp.design.n
    W = np.asfortranarray(np.where(M, sp.w[:, None], 0.0))
    psum = _sum_in(W, sp.start, n)
    empty = ~(psum > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = _sum_in(np.asfortranarray(W * Y), sp.start, n) / psum
        scores = (Y - avg) * (W / psum)
    scores[:, empty] = 0.0
    var = _vcov_span(sp, np.ascontiguousarray(scores), M, diag=True)
    avg[empty] = np.nan
    var[empty] = np.nan
    psum = np.where(empty, 0.0, psum)
    return avg, var, psum


def span_means(sp: _Span, Y: np.ndarray, D: np.ndarray) -> list[Estimate]:
    """:func:`mean` of every column of ``Y`` over the domain in the same column of ``D``.

    ``Y`` (values, NaN when missing) and ``D`` are given on the span's rows (m x K) and are
    taken as missing / outside the domain on the other rows.
    """
    if not _span_base(sp.design).supported:  # whole-design span: the functions above
        return [mean(sp.design, Y[:, j], domain=D[:, j]) for j in range(Y.shape[1])]
    mask = D & ~np.isnan(Y) & (sp.w != 0)[:, None]
    yv = np.where(mask, Y, 0.0)
    avg, var, psum = _span_mean_cores(sp, yv, mask)
    out = []
    for j in range(Y.shape[1]):
        v = var[j]
        se = math.sqrt(max(v, 0.0)) if np.isfinite(v) else float("nan")
        mj = mask[:, j]
        out.append(Estimate(float(avg[j]), se, _span_degf(sp, mj), int(mj.sum()), float(psum[j])))
    return out


def span_proportions(
    sp: _Span, Y: np.ndarray, D: np.ndarray, *, method: CIMethod = "logit", level: float = 0.95
) -> list[ProportionEstimate]:
    """:func:`proportion` of every column of ``Y`` over the domain in that column of ``D``.

    Both are given on the span's rows (m x K; see :func:`span_means`).
    """
    if method not in ("logit", "beta", "likelihood", "mean"):
        raise ValueError(f"unknown interval method {method!r}")
    if not _span_base(sp.design).supported:  # whole-design span: the functions above
        return [
            proportion(sp.design, Y[:, j], domain=D[:, j], method=method, level=level)
            for j in range(Y.shape[1])
        ]
    mask = D & ~np.isnan(Y) & (sp.w != 0)[:, None]
    yv = np.where(mask, Y, 0.0)
    if ((yv < 0) | (yv > 1))[mask].any():
        raise ValueError("a proportion needs values in [0, 1]")
    avg, var, psum = _span_mean_cores(sp, yv, mask)
    K = Y.shape[1]
    n_obs = mask.sum(axis=0)
    glm_cols = []
    if method in ("logit", "likelihood"):
        glm_cols = [
            j
            for j in range(K)
            if np.isfinite(avg[j]) and np.isfinite(var[j]) and 0 < avg[j] < 1 and var[j] > 0
        ]
    fits = _span_glm_fits(sp, yv, mask, psum, glm_cols, dispersion=method == "likelihood")
    out = []
    for j in range(K):
        mj = mask[:, j]
        p, v = float(avg[j]), float(var[j])
        ddf = float(_span_degf(sp, mj))
        lo, hi = _ci_proportion(
            p,
            v,
            method=method,
            level=level,
            df=ddf,
            n_rows=_span_n_rows(sp, mj),
            n_obs=int(n_obs[j]),
            glm=lambda j=j: fits[j],
        )
        out.append(
            ProportionEstimate(
                p, math.sqrt(max(v, 0.0)), ddf, int(n_obs[j]), float(psum[j]), lo, hi, method, level
            )
        )
    return out


def _span_glm_fits(
    sp: _Span,
    yv: np.ndarray,
    mask: np.ndarray,
    psum: np.ndarray,
    cols: list[int],
    *,
    dispersion: bool,
) -> dict[int, _GlmFit]:
    """:func:`_svyglm_logit` for the given columns.

    The variances of their estimating functions are computed at once.
    """
    if not cols:
        return {}
    d = sp.design
    E = np.zeros((sp.m, len(cols)), order="F")
    yvf = np.asfortranarray(yv)
    maskf = np.asfortranarray(mask)
    parts = []
    for i, j in enumerate(cols):
        mj = maskf[:, j]
        w_all = np.where(mj, sp.w, 0.0)
        # rescale = TRUE: mean of the weights over R's rows of the subset design
        scale = psum[j] / d.n if d.calibrated else w_all[mj].mean()
        model = mj & (w_all > 0)
        y = yvf[:, j][model]
        prior = w_all[model] / scale
        coef, work, dev = _irls_logit(y, prior)
        m = _expit(coef)
        E[:, i][model] = (y - m) / (m * (1 - m)) * work
        disp = _glm_dispersion(y, m, w_all[model]) if dispersion else float("nan")
        parts.append((coef, work, dev, disp, y, prior))
    B = _vcov_span(sp, E, mask[:, cols], diag=True)
    out = {}
    for i, j in enumerate(cols):
        coef, work, dev, disp, y, prior = parts[i]
        ainv = 1.0 / work.sum()
        out[j] = _GlmFit(coef, ainv * float(B[i]) * ainv, ainv, dev, disp, y, prior)
    return out


def span_quantile(
    sp: _Span,
    y: np.ndarray,
    domain: np.ndarray,
    p: float,
    *,
    level: float = 0.95,
    rule: Literal["math", "school"] = "math",
) -> QuantileEstimate:
    """:func:`quantile` with ``y`` and ``domain`` given on the span's rows."""
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    if not _span_base(sp.design).supported:  # whole-design span: the functions above
        return quantile(sp.design, y, p, level=level, rule=rule, domain=domain)
    mask = domain & ~np.isnan(y) & (sp.w != 0)
    yv = np.where(mask, y, 0.0)
    x = yv[mask]
    w = sp.w[mask]
    qhat = _qrule(x, w, p, rule)
    ind = np.where(mask, (yv <= qhat).astype(float), 0.0)
    avg, v, psum = _span_mean_core(sp, ind[:, None], mask)
    ddf = float(_span_degf(sp, mask))
    q = _tq(level, ddf)
    se_p = math.sqrt(max(v[0, 0], 0.0))
    plo, phi = avg[0] - q * se_p, avg[0] + q * se_p
    lo = float("nan") if (np.isnan(plo) or plo < 0) else _qrule(x, w, float(plo), rule)
    hi = float("nan") if (np.isnan(phi) or phi > 1) else _qrule(x, w, float(phi), rule)
    se = (hi - lo) / (2 * q)
    return QuantileEstimate(qhat, se, ddf, int(mask.sum()), float(psum), lo, hi, p, level)


def span_paired_difference(
    sp: _Span, before: np.ndarray, after: np.ndarray, domain: np.ndarray, *, level: float = 0.95
) -> tuple[PairedDifference, float, float]:
    """:func:`paired_difference` with the values and domain given on the span's rows.

    The test's p-value is left to the caller (NaN in the result), who gets ``(t, df)`` to
    compute it for many tests at once: ``2 * stats.t.sf(abs(t), df)`` where ``t`` is finite and
    ``df > 0``.
    """
    if not _span_base(sp.design).supported:  # whole-design span: the functions above
        res = paired_difference(sp.design, before, after, level=level, domain=domain)
        return replace(res, p_value=float("nan")), res.statistic, res.df
    base = domain & ~np.isnan(before) & ~np.isnan(after)
    Y = np.column_stack([before, after, after - before])
    e_b, e_a, e_d = span_means(sp, Y, np.repeat(base[:, None], 3, axis=1))
    df = float(e_d.df - 1)
    t = e_d.estimate / e_d.se if e_d.se > 0 else float("nan")
    q = _tq(level, df)
    res = PairedDifference(
        e_b, e_a, e_d, t, df, float("nan"), e_d.estimate - q * e_d.se, e_d.estimate + q * e_d.se
    )
    return res, t, df


def span_chisq_f(
    sp: _Span, row_codes: np.ndarray, col_codes: np.ndarray, domain: np.ndarray
) -> tuple[float, float, float]:
    """:func:`chisq_test` (``statistic="F"``) on the span's rows: ``(F, ndf, ddf)``.

    ``row_codes`` and ``col_codes`` are integer codes (negative: missing) whose order is the
    order of the levels' labels, as :func:`chisq_test` sorts them. The p-value is
    ``stats.f.sf(F, ndf, ddf)``, left to the caller (one vectorised call for many tests).
    Raises as :func:`chisq_test` does.
    """
    d = sp.design
    if not _span_base(d).supported:  # whole-design span: the functions above
        ok = domain & (row_codes >= 0) & (col_codes >= 0)
        rs = pd.Series(np.where(ok, row_codes, -1)).where(lambda v: v >= 0)
        cs = pd.Series(np.where(ok, col_codes, -1)).where(lambda v: v >= 0)
        res = chisq_test(d.assign(_span_r=rs, _span_c=cs), "_span_r", "_span_c", domain=ok)
        return res.statistic, res.ndf, res.ddf
    valid = domain & (row_codes >= 0) & (col_codes >= 0) & (sp.w != 0)
    rlev = np.flatnonzero(np.bincount(row_codes[valid]))  # the levels present, sorted
    clev = np.flatnonzero(np.bincount(col_codes[valid]))
    nr, nc = len(rlev), len(clev)
    if nr < 2 or nc < 2:
        raise ValueError("need at least two levels in each variable")
    rows = np.flatnonzero(valid)
    ri = np.searchsorted(rlev, row_codes[rows])
    ci = np.searchsorted(clev, col_codes[rows])
    cells = ri + nr * ci  # interaction(factor(row), factor(col)): row fastest
    Y = np.zeros((sp.m, nr * nc))
    Y[rows, cells] = 1.0
    p, V, _ = _span_mean_core(sp, Y, valid)
    if d.calibrated:
        N = d.n
        nu = _span_base(d).nu_all
    else:
        N = int(valid.sum())
        nu = int(valid.sum()) - len(np.unique(sp.strata[valid]))
    tab = np.bincount(cells, weights=sp.w[rows], minlength=nr * nc).reshape(nc, nr).T
    x2, tr, d0, _deltas, _ = _rao_scott_core(p, V, N, nr, nc, tab)
    return x2 / tr, d0, d0 * nu


class _PairwiseTree:
    """Sums of a vector with a window of it replaced, as ``np.sum`` gives them, bit for bit.

    The sums of the nodes of numpy's pairwise summation tree (:func:`_pairwise_node`) that do
    not meet the window are cached; only the nodes meeting it are summed again.
    """

    def __init__(self, vec: np.ndarray) -> None:
        self.vec = vec
        self.n = len(vec)
        self.cache: dict[tuple[int, int], Any] = {}

    def _node(self, lo: int, size: int) -> Any:
        key = (lo, size)
        s = self.cache.get(key)
        if s is None:
            s = np.add.reduce(self.vec[lo : lo + size])
            self.cache[key] = s
        return s

    def sum_replaced(self, start: int, local: np.ndarray) -> Any:
        """``np.sum`` of the vector with ``[start, start + len(local))`` replaced by ``local``."""
        stop = start + len(local)

        def rec(lo: int, size: int) -> Any:
            if stop <= lo or start >= lo + size:
                return self._node(lo, size)
            if start <= lo and lo + size <= stop:
                return np.add.reduce(local[lo - start : lo - start + size])
            if size <= _PW_BLOCK:
                buf = self.vec[lo : lo + size].copy()
                a, b = max(lo, start), min(lo + size, stop)
                buf[a - lo : b - lo] = local[a - start : b - start]
                return np.add.reduce(buf)
            half = size // 2
            half -= half % _PW_UNROLL
            return rec(lo, half) + rec(lo + half, size - half)

        return 0.0 + rec(0, self.n)


def compare_strata(
    design: SurveyDesign, y: Any, strata: Sequence[Hashable], *, level: float = 0.95
) -> list[Comparison]:
    """:func:`compare_stratum` for each of several strata (CAEs) against the rest, at once.

    The same numbers as one call per stratum. Each comparison involves the whole sample (the
    rest of the consortium), so it costs time proportional to the sample; what is shared (the
    base, the sums of the whole sample, the degrees of freedom) is computed once and each
    stratum's own sums come from its rows (:class:`_PairwiseTree`).
    """
    base = _span_base(design)
    if not base.supported:
        return [compare_stratum(design, y, s, level=level) for s in strata]
    n = design.n
    yv, valid = _prepare(design, y, None)
    w = design.weights
    u = np.where(valid, w, 0.0)
    tree_w = _PairwiseTree(u)
    tree_wy = _PairwiseTree(u * yv)
    full = design_span(design)
    df = float(design.degf(valid) - 1)
    n_valid = int(valid.sum())
    nan = float("nan")
    out: list[Comparison] = []
    pending = []
    for label in strata:
        codes = np.flatnonzero(design.strata_levels == label)
        if len(codes) != 1:
            raise ValueError(f"unknown stratum {label!r}")
        h = int(codes[0])
        sp = design_span(design, np.arange(base.st_first[h], base.st_last[h] + 1))
        s0, s1 = sp.start, sp.stop
        in_h = sp.strata == h
        a = valid[s0:s1] & in_h
        n_a = int(a.sum())
        wa = np.where(a, w[s0:s1], 0.0)
        wb = np.where(in_h, 0.0, u[s0:s1])
        Wa = _sum_in(wa, s0, n)
        Wb = tree_w.sum_replaced(s0, wb)
        if Wa <= 0 or Wb <= 0:
            out.append(Comparison(nan, nan, nan, nan, nan, nan, nan, nan, nan, n_a, n_valid - n_a))
            continue
        y_loc = yv[s0:s1]
        ma = _sum_in(wa * y_loc, s0, n) / Wa
        mb = tree_wy.sum_replaced(s0, wb * y_loc) / Wb
        # wa (y - ma) / Wa - wb (y - mb) / Wb: one of the two terms is zero on every row
        scores = -(u * (yv - mb) / Wb)
        scores[s0:s1] = np.where(in_h, wa * (y_loc - ma) / Wa, scores[s0:s1])
        v = float(_vcov_span(full, scores[:, None], valid)[0, 0])
        se = math.sqrt(max(v, 0.0))
        diff = float(ma - mb)
        t = diff / se if _testable(se, ma, mb) else nan
        q = _tq(level, df)
        out.append(
            Comparison(
                float(ma),
                float(mb),
                diff,
                se,
                t,
                df,
                nan,
                diff - q * se,
                diff + q * se,
                n_a,
                n_valid - n_a,
            )
        )
        pending.append(len(out) - 1)
    if pending:
        t = np.array([out[i].statistic for i in pending])
        ok = np.isfinite(t) & (df > 0)
        p = np.full(len(t), np.nan)
        if ok.any():
            p[ok] = 2 * stats.t.sf(np.abs(t[ok]), df)
        for i, pv in zip(pending, p, strict=True):
            out[i] = replace(out[i], p_value=float(pv))
    return out
