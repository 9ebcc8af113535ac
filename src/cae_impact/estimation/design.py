"""The survey design: respondents, weights, strata, PSUs, fpc and calibration, handed to ``svy``.

:class:`SurveyDesign` is the project's view of a design (pandas data, numpy arrays, R's
vocabulary: ``svydesign``, ``lonely_psu``, ``degf``); :meth:`SurveyDesign.sample` turns it into
an ``svy.Sample``, which does every variance computation (see ``docs/survey-engine.md``).
A post-stratified or raked design carries svy's weight-adjustment record, so that svy
linearises the calibration (R's ``postStratify``/``rake`` residuals); trimming afterwards keeps
that record, as R's ``trimWeights`` keeps the calibration.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
import svy

LonelyPSU = Literal["fail", "remove", "certainty", "adjust", "average"]
_LONELY = ("fail", "remove", "certainty", "adjust", "average")
# R's options(survey.lonely.psu) -> svy's singleton rules (svy's own table, design.md):
# "center" is R's "adjust", "scale" R's "average", "skip" R's "remove" and "certainty".
# "fail" is checked by SurveyDesign.sample (a census stratum, n = N, may have one PSU: it
# contributes no variance, whereas svy raises for it), then handed to svy as "skip".
_SINGLETON = {"fail": "skip", "remove": "skip", "certainty": "skip", "adjust": "center",
              "average": "scale"}


class LonelyPSUError(ValueError):
    """A stratum has a single PSU and the design says ``lonely_psu="fail"`` (R's default)."""


@dataclass(frozen=True)
class Calibration:
    """svy's record of the last calibration: kind, weights before it, cells of each margin."""

    kind: str  # "poststratification" or "raking"
    prev_weights: np.ndarray
    cells: tuple[np.ndarray, ...]  # integer codes, one array per margin


@dataclass(frozen=True)
class SurveyDesign:
    """A stratified, optionally one-stage clustered, sample design (R: ``survey.design2``).

    Build it with :func:`svydesign` or :func:`stratified_design`. Immutable: calibration,
    trimming, :meth:`subset` and :meth:`rows` return new designs.

    Attributes:
        data: the respondents (index 0..n-1).
        weights: current weights.
        strata, strata_levels: stratum code of every row and the labels of the codes.
        psu: PSU code of every row (a row is its own PSU without clusters).
        popsize: population number of PSUs of every stratum (fpc), or None.
        lonely_psu: R's ``survey.lonely.psu`` option for single-PSU strata.
        calibration: svy's calibration record, or None.
        domain: rows kept by :meth:`subset` (R's subset of a design).

    """

    data: pd.DataFrame
    weights: np.ndarray
    strata: np.ndarray
    strata_levels: np.ndarray
    psu: np.ndarray
    popsize: np.ndarray | None
    lonely_psu: str = "fail"
    calibration: Calibration | None = None
    domain: np.ndarray = field(default=None)  # type: ignore[assignment]
    clustered: bool = False
    strata_col: str | None = None

    # -- facts ----------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of rows (respondents)."""
        return len(self.data)

    @property
    def calibrated(self) -> bool:
        """Whether post-stratification or raking has been applied."""
        return self.calibration is not None

    @property
    def n_psu(self) -> np.ndarray:
        """Sampled PSUs of every stratum (R's ``sampsize``)."""
        first = np.unique(self.psu, return_index=True)[1]
        return np.bincount(self.strata[first], minlength=len(self.strata_levels))

    def degf(self, mask: np.ndarray | None = None) -> int:
        """R's ``degf()``: PSUs minus strata among the rows of ``mask`` (default: the domain)."""
        keep = self.domain if mask is None else mask
        return int(len(np.unique(self.psu[keep])) - len(np.unique(self.strata[keep])))

    def r_rows(self, mask: np.ndarray) -> int:
        """R's ``nrow(subset(design, mask))``: all rows of a calibrated design, else ``mask``'s."""
        return self.n if self.calibrated else int(mask.sum())

    # -- derived designs --------------------------------------------------------------------
    def subset(self, mask: Any) -> SurveyDesign:
        """Domain of the design (R: ``subset(design, ...)``): the design stays whole."""
        return replace(self, domain=self.domain & as_mask(mask, self.n))

    def assign(self, **columns: Any) -> SurveyDesign:
        """The design with columns added to (or replaced in) ``data``, rows unchanged."""
        data = self.data.copy()
        for name, values in columns.items():
            data[name] = values.to_numpy() if isinstance(values, pd.Series) else values
        return replace(self, data=data)

    def rows(self, rows: np.ndarray) -> SurveyDesign:
        """The design of some rows only (whole strata and post-strata: a CAE's own design).

        A CAE's estimates are domain estimates of the consortium design; as strata (CAEs) are
        sampled independently and post-strata are nested in CAEs, the CAE's rows alone give the
        same estimates and variances, and the degrees of freedom of the CAE's own sample.
        """
        rows = np.asarray(rows)
        cal = self.calibration
        if cal is not None:
            cal = Calibration(cal.kind, cal.prev_weights[rows], tuple(c[rows] for c in cal.cells))
        return replace(self, data=self.data.iloc[rows].reset_index(drop=True),
                       weights=self.weights[rows], strata=self.strata[rows], psu=self.psu[rows],
                       calibration=cal, domain=self.domain[rows])

    def column(self, name: str) -> pd.Series:
        """The column ``name`` of the design's data."""
        return self.data[name]

    # -- svy ------------------------------------------------------------------------------
    def frame(self, columns: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """The design columns and ``columns``.

        Design columns: ``__h`` (stratum), ``__psu``, ``__w`` (weight), ``__fpc``, and for a
        calibrated design ``__w0`` (weights before it) and ``__cal0``... (cells); analysis
        columns must not reuse these names.
        """
        cols: dict[str, Any] = {"__h": self.strata, "__psu": self.psu, "__w": self.weights}
        if self.popsize is not None:
            cols["__fpc"] = self.popsize[self.strata]
        if self.calibration is not None:
            cols["__w0"] = self.calibration.prev_weights
            for j, c in enumerate(self.calibration.cells):
                cols[f"__cal{j}"] = c
        if columns:
            clash = set(columns) & set(cols)
            if clash:
                raise ValueError(f"analysis columns {sorted(clash)} would replace design columns")
            cols.update(columns)
        return pl.DataFrame(cols)

    def svy_design(self) -> svy.Design:
        """The ``svy.Design`` of this design (see :meth:`frame` for the column names)."""
        adj = None
        if self.calibration is not None:
            adj = svy.WgtAdjustment(
                kind=self.calibration.kind, prev_wgt="__w0", new_wgt="__w",
                cells=tuple(f"__cal{j}" for j in range(len(self.calibration.cells))),
            )
        return svy.Design(stratum="__h", psu="__psu" if self.clustered else None, wgt="__w",
                          pop_size="__fpc" if self.popsize is not None else None,
                          singleton=_SINGLETON[self.lonely_psu], wgt_adjustment=adj)

    def sample(self, columns: Mapping[str, Any] | None = None) -> svy.Sample:
        """An ``svy.Sample`` of the design with extra analysis ``columns``.

        Raises:
            LonelyPSUError: a stratum has one PSU and ``lonely_psu="fail"``.

        """
        if self.lonely_psu == "fail":
            census = (self.popsize == self.n_psu if self.popsize is not None
                      else np.zeros(len(self.strata_levels), dtype=bool))
            lonely = [lab for lab, k, c in zip(self.strata_levels, self.n_psu, census, strict=True)
                      if k == 1 and not c]
            if lonely:
                raise LonelyPSUError(
                    f"Stratum {lonely[0]!r} has only one PSU (one respondent): choose "
                    "lonely_psu='remove', 'certainty', 'adjust' or 'average'."
                )
        return svy.Sample(self.frame(columns), self.svy_design())


# ---------------------------------------------------------------------------------------------
# Building designs
# ---------------------------------------------------------------------------------------------


def as_mask(mask: Any, n: int) -> np.ndarray:
    """A boolean array of length ``n`` (None: all rows; missing values: False)."""
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


def as_float(values: Any) -> np.ndarray:
    """Values as a float array with NaN for missing (pandas nullable dtypes accepted)."""
    if isinstance(values, pd.Series):
        s = values
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiu":
            return s.to_numpy(dtype=float)
        if s.dtype == bool or str(s.dtype) == "boolean":
            s = s.astype("Float64")
        return pd.to_numeric(s, errors="raise").astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    arr = np.asarray(values)
    if arr.dtype == object:
        return as_float(pd.Series(arr))
    return arr.astype(float)


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

    ``fpc`` has R's semantics: values > 1 are the population number of PSUs of the stratum,
    values <= 1 sampling fractions. Without ``weights`` the weights are ``popsize / sampsize``.
    """
    if lonely_psu not in _LONELY:
        raise ValueError(f"lonely_psu must be one of {_LONELY}")
    df = data.reset_index(drop=True)
    n = len(df)
    if n == 0:
        raise ValueError("empty data")
    if strata is None:
        s_codes, s_levels = np.zeros(n, dtype=np.int64), np.array(["1"], dtype=object)
    else:
        if df[strata].isna().any():
            raise ValueError(f"missing values in strata column {strata!r}")
        s_codes, s_levels = pd.factorize(df[strata], sort=True)
        s_codes, s_levels = s_codes.astype(np.int64), np.asarray(s_levels, dtype=object)
    if clusters is None:
        psu = np.arange(n, dtype=np.int64)
    else:
        if df[clusters].isna().any():
            raise ValueError(f"missing values in cluster column {clusters!r}")
        psu = pd.factorize(df[clusters], sort=True)[0].astype(np.int64)
        if pd.DataFrame({"p": psu, "s": s_codes}).drop_duplicates()["p"].duplicated().any():
            raise ValueError("clusters are not nested in strata")
    if len(np.unique(psu)) == 1:
        raise ValueError("design has only one primary sampling unit")
    nstrat = len(s_levels)
    first = np.unique(psu, return_index=True)[1]
    n_psu = np.bincount(s_codes[first], minlength=nstrat)
    popsize = None
    if fpc is not None:
        fv = as_float(df[fpc]) if isinstance(fpc, str) else as_float(np.asarray(fpc))
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
        w = as_float(df[weights]) if isinstance(weights, str) else as_float(np.asarray(weights))
        if w.shape != (n,) or np.isnan(w).any():
            raise ValueError("weights must have one non-missing value per row")
        if (w < 0).any():
            raise ValueError("negative weights")
    return SurveyDesign(df, w.astype(float), s_codes, s_levels, psu, popsize, lonely_psu, None,
                        np.ones(n, dtype=bool), clusters is not None, strata)


def base_weights(df: pd.DataFrame, strata_col: str, population: Mapping[Hashable, float]) -> pd.Series:
    """Base weights of the project: ``N_h / n_h`` for a respondent of CAE ``h``.

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
            raise ValueError(f"population of {h!r} ({big_n:g}) is smaller than its {n_h} respondents")
        out[h] = big_n / n_h
    return df[strata_col].map(out).astype(float)


def stratified_design(df: pd.DataFrame, strata_col: str, population: Mapping[Hashable, float], *,
                      lonely_psu: LonelyPSU = "fail") -> SurveyDesign:
    """The project's design: strata = CAEs, weight ``N_h/n_h``, fpc ``N_h``.

    R: ``svydesign(id=~1, strata=~cae, weights=~N/n, fpc=~N)``.
    """
    w = base_weights(df, strata_col, population)
    fpc = df[strata_col].map({k: float(v) for k, v in population.items()}).astype(float)
    return svydesign(df, strata=strata_col, weights=w.to_numpy(), fpc=fpc.to_numpy(), lonely_psu=lonely_psu)
