"""The svy call behind every mean, and the logistic function.

Moved out of :mod:`.estimators` so that :mod:`.likelihood` (which refits R's ``svyglm`` with
them) and :mod:`.estimators` (which offers the likelihood interval) do not import each other.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import numpy as np
import polars as pl

from .design import SurveyDesign


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
    """Means (or totals) of the columns of ``Y`` in the domains ``D``, by svy.

    ``Y`` is ``n x k`` (NaN: out of the base), ``D`` ``n x m`` boolean. Returns arrays ``m x k``:
    ``estimate, se, df, n, weighted_base`` (NaN and 0 for an empty domain). Missing values and
    rows outside a domain stay in the design (R: a domain, ``na.rm`` subsets). Disjoint domains
    are estimated together (one svy ``by`` per set of disjoint domains, one svy sample).
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
