"""The linearisation behind every mean (in house on the project's designs, else svy), and the logistic function.

Moved out of :mod:`.estimators` so that :mod:`.likelihood` (which refits R's ``svyglm`` with
them) and :mod:`.estimators` (which offers the likelihood interval) do not import each other.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from .design import SurveyDesign

# ---------------------------------------------------------------------------------------------
# The same linearisation as svy's, vectorised (the project's designs)
# ---------------------------------------------------------------------------------------------
#
# svy's fixed cost per call (3 to 15 ms: polars frames, fpc and singleton preparation) made the
# estimation 3 to 11 times slower than the arithmetic it does (issue 19). For the designs the
# project builds -- strata without clusters (every row its own PSU), fpc or not, weights
# post-stratified on one margin (then trimmed) or not, no single-PSU stratum but a census one
# (n = N = 1: no variance, as in R) -- the same
# numbers are computed here with numpy, every domain and value of a call at once:
#
# * the point estimate ``T / W`` (mean) or ``T`` (total) over the domain's valid rows;
# * the influence values ``z_i = w_i d_i (y_i - mean) / W`` (mean) or ``w_i d_i y_i`` (total),
#   rows outside the domain or with a missing value kept in the design with ``z_i = 0``;
# * R's ``postStratify`` residuals ``z_i - w_i mean_{j in cell}(z_j / w_j)`` (svy's, checked
#   with trimmed weights, which are not constant within a cell);
# * the stratified variance ``sum_h (1 - n_h / N_h) n_h / (n_h - 1) sum_i (z_hi - mean_h z)^2``;
# * the degrees of freedom of the domain (R's ``degf``: its rows minus its strata).
#
# Any other design (clusters, raking, a single-PSU stratum, where svy applies R's lonely-PSU
# rules) goes to svy. ``tests/test_survey_inhouse.py`` checks both paths against each other to
# 1e-10 relative, and the R oracle tests go through this path where it applies.


IN_HOUSE = True  # False: every design through svy (the tests compare both paths)


@dataclass(frozen=True)
class _Index:
    """Row orders of a design for grouped sums (strata; calibration cells)."""

    s_order: np.ndarray  # rows sorted by stratum
    s_starts: np.ndarray  # first position of each present stratum in s_order
    s_of_row: np.ndarray  # index of each row's stratum among the present strata
    s_present: np.ndarray  # codes of the present strata
    coef: np.ndarray  # (1 - n_h / N_h) n_h / (n_h - 1) of each present stratum
    c_order: np.ndarray | None  # rows sorted by calibration cell
    c_starts: np.ndarray | None
    c_of_row: np.ndarray | None
    c_count: np.ndarray | None


def _group_sums(order: np.ndarray, starts: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Column sums of ``X`` (rows x columns) within consecutive groups of ``order``."""
    return np.add.reduceat(X[order], starts, axis=0)


def _index(design: SurveyDesign) -> _Index | None:
    """The design's :class:`_Index`, or None when svy's own rules are needed (see above)."""
    cached = design.__dict__.get("_in_house_index", False)
    if cached is not False:
        return cached
    out = None
    cal = design.calibration
    ok = not design.clustered and (cal is None or (cal.kind == "poststratification" and len(cal.cells) == 1
                                                  and bool((design.weights > 0).all())))
    if ok:
        order = np.argsort(design.strata, kind="stable")
        present, starts, counts = np.unique(design.strata[order], return_index=True, return_counts=True)
        f = (1.0 - counts / design.popsize[present] if design.popsize is not None
             else np.ones(len(present)))
        # a stratum of one row is fine when it is a census (n = N): R gives it no variance
        # (survey:::onestrat returns 0 when the fpc is 0), whatever lonely.psu says
        if ((counts >= 2) | ((counts == 1) & (np.abs(f) < 1e-7))).all():
            f = np.where(counts >= 2, f, 0.0)
            s_of_row = np.empty(design.n, dtype=np.int64)
            s_of_row[order] = np.repeat(np.arange(len(present)), counts)
            c = (None, None, None, None)
            if cal is not None:
                cells = np.asarray(cal.cells[0])
                c_order = np.argsort(cells, kind="stable")
                _, c_starts, c_count = np.unique(cells[c_order], return_index=True, return_counts=True)
                c_of_row = np.empty(design.n, dtype=np.int64)
                c_of_row[c_order] = np.repeat(np.arange(len(c_count)), c_count)
                c = (c_order, c_starts, c_of_row, c_count)
            out = _Index(order, starts, s_of_row, present, f * counts / np.maximum(counts - 1.0, 1.0), *c)
    object.__setattr__(design, "_in_house_index", out)
    return out


def _calibrated(design: SurveyDesign, ix: _Index, Z: np.ndarray) -> np.ndarray:
    """R's post-stratification residuals of the influence values ``Z`` (rows x columns)."""
    if ix.c_order is None:
        return Z
    w = design.weights[:, None]
    means = _group_sums(ix.c_order, ix.c_starts, Z / w) / ix.c_count[:, None]
    return Z - w * means[ix.c_of_row]


def _deviations(ix: _Index, Z: np.ndarray) -> np.ndarray:
    """``Z`` minus its stratum means."""
    counts = np.diff(np.append(ix.s_starts, len(ix.s_order)))
    means = _group_sums(ix.s_order, ix.s_starts, Z) / counts[:, None]
    return Z - means[ix.s_of_row]


def _variances(ix: _Index, Z: np.ndarray) -> np.ndarray:
    """Each stratum's contribution to the variance of the totals of the columns of ``Z``."""
    dev = _deviations(ix, Z)
    return ix.coef[:, None] * _group_sums(ix.s_order, ix.s_starts, dev * dev)


def _covariance(ix: _Index, Z: np.ndarray) -> np.ndarray:
    """Covariance matrix of the totals of the columns of ``Z``."""
    dev = _deviations(ix, Z) * np.sqrt(ix.coef)[ix.s_of_row][:, None]
    return dev.T @ dev


def _domain_means_in_house(design: SurveyDesign, ix: _Index, Y: np.ndarray, D: np.ndarray, statistic: str,
                           paired: bool, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`domain_means` without svy (same numbers; the design passed :func:`_index`)."""
    n = design.n
    w = design.weights
    valid = ~np.isnan(Y)
    Y0 = np.where(valid, Y, 0.0)
    if paired:  # column j in domain j only
        A = D & valid
        Yd = Y0
    else:  # domain x value
        A = (D[:, :, None] & valid[:, None, :]).reshape(n, -1)
        Yd = np.broadcast_to(Y0[:, None, :], (n, D.shape[1], Y.shape[1])).reshape(n, -1)
    Aw = A * w[:, None]
    W = Aw.sum(axis=0)
    T = (Aw * Yd).sum(axis=0)
    nobs = A.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if statistic == "mean":
            est = T / W
            Z = Aw * (Yd - est) / W
        else:
            est = T
            Z = Aw * Yd
        Z = np.where(A, Z, 0.0)
        var = _variances(ix, _calibrated(design, ix, Z)).sum(axis=0)
    strata_in = (_group_sums(ix.s_order, ix.s_starts, A.astype(np.int64)) > 0).sum(axis=0)
    df = (nobs - strata_in).astype(float)
    shape = out["estimate"].shape
    has = (nobs > 0).reshape(shape)
    out["estimate"] = np.where(has, est.reshape(shape), np.nan)
    out["se"] = np.where(has, np.sqrt(np.maximum(var, 0.0)).reshape(shape), np.nan)
    out["df"] = np.where(has, df.reshape(shape), np.nan)
    return out


def _rao_scott_in_house(design: SurveyDesign, ix: _Index, resp: np.ndarray, g: np.ndarray,
                        valid: np.ndarray) -> tuple[float, float]:
    """Svy's (R's) Rao-Scott ``(F, ndf)`` of ``resp`` x ``g`` over the ``valid`` rows, without svy.

    The cell shares ``p`` of the table over its base (a domain of the design), their
    linearised covariance ``V`` (the influence values of all cells at once, one matrix
    product), then R's ``svychisq``: ``C`` the interaction contrasts orthogonal to the main
    effects, ``Delta = (C' D^-1 C)^-1 C' D^-1 V D^-1 C`` (D = diag(p), scaled to the base),
    ``F = X2 / tr(Delta)``, ``ndf = tr(Delta)^2 / tr(Delta^2)``; the inverse is a pseudo-inverse,
    as svy's (empty cells make ``C' D^-1 C`` singular).
    """
    rl, ri = np.unique(resp[valid], return_inverse=True)
    cl, ci = np.unique(g[valid], return_inverse=True)
    r, c = len(rl), len(cl)
    cell = ri + r * ci  # R's expand.grid order: rows vary fastest
    wv = design.weights[valid]
    W = wv.sum()
    p = np.bincount(cell, weights=wv, minlength=r * c) / W
    Z = np.zeros((design.n, r * c))
    Zv = -np.outer(wv, p)
    Zv[np.arange(len(cell)), cell] += wv
    Z[valid] = Zv / W
    V = _covariance(ix, _calibrated(design, ix, Z))
    rows = np.tile(np.arange(r), c)
    cols = np.repeat(np.arange(c), r)
    X1 = np.column_stack([np.ones(r * c)] + [(rows == i).astype(float) for i in range(1, r)]
                         + [(cols == j).astype(float) for j in range(1, c)])
    X12 = np.column_stack([((rows == i) & (cols == j)).astype(float) for j in range(1, c) for i in range(1, r)])
    q, _ = np.linalg.qr(X1)
    C = X12 - q @ (q.T @ X12)
    inv_p = np.where(p > 0, 1.0 / np.where(p > 0, p, 1.0), 0.0)
    CD = C * inv_p[:, None]
    # a pseudo-inverse (svy's): with empty cells ``C' D^-1 C`` is singular
    delta = np.linalg.pinv(C.T @ CD) @ (CD.T @ V @ CD)
    tr = float(np.trace(delta))
    ndf = tr**2 / float(np.trace(delta @ delta))
    table = p.reshape(c, r).T
    expected = np.outer(table.sum(axis=1), table.sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        x2 = float(np.nansum((table - expected) ** 2 / expected))
    return x2 / tr, ndf


# ---------------------------------------------------------------------------------------------
# The svy call behind every mean
# ---------------------------------------------------------------------------------------------


def _layers(D: np.ndarray) -> list[list[int]]:
    """Domain columns grouped into sets of disjoint domains (one svy ``by`` call each)."""
    layers: list[tuple[list[int], np.ndarray]] = []
    for j in range(D.shape[1]):
        for cols, used in layers:
            if not (used & D[:, j]).any():
                cols.append(j)
                used |= D[:, j]
                break
        else:
            layers.append(([j], D[:, j].copy()))
    return [cols for cols, _ in layers]


def domain_means(design: SurveyDesign, Y: np.ndarray, D: np.ndarray, *,
                 statistic: Literal["mean", "total"] = "mean", paired: bool = False) -> dict[str, np.ndarray]:
    """Means (or totals) of the columns of ``Y`` in the domains ``D`` (svy's linearisation).

    ``Y`` is ``n x k`` (NaN: out of the base), ``D`` ``n x m`` boolean. Returns arrays ``m x k``:
    ``estimate, se, df, n, weighted_base`` (NaN and 0 for an empty domain). Missing values and
    rows outside a domain stay in the design (R: a domain, ``na.rm`` subsets). Disjoint domains
    are estimated together (one svy ``by`` per set of disjoint domains, one svy sample); on the
    project's designs every domain and column at once with numpy (:func:`_index`, same numbers).
    ``paired``: ``Y`` has ``m`` columns, column ``j`` is only wanted in domain ``j``; the
    results are then ``m x 1``.
    """
    Y = np.asarray(Y, dtype=float).reshape(design.n, -1)
    D = np.asarray(D, dtype=bool).reshape(design.n, -1) & design.domain[:, None]
    m = D.shape[1]
    valid = ~np.isnan(Y)
    if paired:
        out = {name: np.full((m, 1), np.nan) for name in ("estimate", "se", "df")}
        out["n"] = (D & valid).sum(axis=0).astype(float)[:, None]
        out["weighted_base"] = ((D & valid) * design.weights[:, None]).sum(axis=0)[:, None]
    else:
        out = {name: np.full((m, Y.shape[1]), np.nan) for name in ("estimate", "se", "df")}
        out["n"] = D.T.astype(float) @ valid.astype(float)
        out["weighted_base"] = D.T.astype(float) @ (valid * design.weights[:, None])
    ix = _index(design) if IN_HOUSE else None
    if ix is not None:
        return _domain_means_in_house(design, ix, Y, D, statistic, paired, out)
    columns: dict[str, Any] = {}
    if not paired:
        columns = {f"__y{j}": pl.Series(Y[:, j], nan_to_null=True) for j in range(Y.shape[1])}
    calls = []
    for i, cols in enumerate(_layers(D)):
        code = np.full(design.n, -1, dtype=np.int64)
        for j in cols:
            code[D[:, j]] = j
        if paired:  # the layer's column: each row takes the value of its domain's column
            yl = np.full(design.n, np.nan)
            for j in cols:
                yl[D[:, j]] = Y[D[:, j], j]
            columns[f"__y{i}"] = pl.Series(yl, nan_to_null=True)
            names = [f"__y{i}"] if (~np.isnan(yl) & (code >= 0)).any() else []
        else:
            names = [f"__y{j}" for j in range(Y.shape[1]) if (valid[:, j] & (code >= 0)).any()]
        if names:
            columns[f"__d{i}"] = pl.Series(code).set(pl.Series(code < 0), None)
            calls.append((f"__d{i}", names))
    if not calls:
        return out
    est = getattr(design.sample(columns).estimation, statistic)
    for by_col, names in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = est(names if len(names) > 1 else names[0], by=by_col, drop_nulls=True)
        for name, r in zip(names, list(res) if len(names) > 1 else [res], strict=True):
            j = 0 if paired else int(name[3:])
            t = r.to_polars()
            d = t[by_col].to_numpy().astype(np.int64)
            out["estimate"][d, j] = t["est"].to_numpy()
            out["se"][d, j] = t["se"].to_numpy()
            out["df"][d, j] = t["df"].to_numpy()
    return out


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
