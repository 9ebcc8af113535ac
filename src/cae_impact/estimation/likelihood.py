"""``svyciprop(method = "likelihood")``: R's profile-likelihood interval, in house.

svy has no profile-likelihood interval and the project's reports never use one (their
interval is ``logit`` or ``beta``); it is kept because an R oracle line covers it. R fits
``svyglm(y ~ 1, family = quasibinomial)``: ``glm.fit``'s IRLS (replicated here, since the
interval depends at the 1e-6 level on the working weights of the penultimate iterate), a
design variance of the coefficient ``A^-1 B A^-1`` whose ``B`` (variance of the total of the
estimating function, calibration residuals included) is svy's, then MASS's ``profile.glm``
and ``confint.profile.glm`` (a fmm spline of the signed root deviance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .design import SurveyDesign
from .domains import _expit, domain_means

_ETA_CAP = 30.0


@dataclass(frozen=True)
class _GlmFit:
    """What R's ``svyglm(y ~ 1, family = quasibinomial)`` holds that ``svyciprop`` uses."""

    coef: float
    var: float
    naive_var: float
    deviance: float
    dispersion: float
    y: np.ndarray
    prior: np.ndarray


def _binomial_deviance(y: np.ndarray, mu: float, prior: np.ndarray) -> float:
    """R ``binomial()$dev.resids`` summed: ``2 wt (y log(y/mu) + (1-y) log((1-y)/(1-mu)))``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
        t2 = np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1.0) / (1 - mu)), 0.0)
    return float(2.0 * (prior * (t1 + t2)).sum())


def _logit_start(y: np.ndarray, prior: np.ndarray) -> float | None:
    """``qlogis`` of the weighted mean of ``y``, or None when it is 0 or 1 (or undefined)."""
    p = float(np.add.reduce(prior * y) / np.add.reduce(prior))
    return math.log(p / (1.0 - p)) if 0.0 < p < 1.0 else None


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


def svyglm_logit(design: SurveyDesign, yv: np.ndarray, mask: np.ndarray) -> _GlmFit:
    """``svyglm(y ~ 1, design, family = quasibinomial)`` for ``svyciprop``.

    R's IRLS, start ``mu = (w y + 0.5)/(w + 1)``, restarted from ``qlogis(p)`` if it leaves
    ``|eta| <= 30``.
    """
    w_all = np.where(mask, design.weights, 0.0)
    rows = np.ones(design.n, dtype=bool) if design.calibrated else mask
    scale = w_all[rows].mean()  # rescale = TRUE: weights / mean(weights) over R's rows
    model = mask & (w_all > 0)
    y, prior = yv[model], w_all[model] / scale
    coef, work, dev = _irls_logit_reference(y, prior)
    m = _expit(coef)
    estfun = np.full(design.n, np.nan)
    estfun[mask] = 0.0
    # svy's total multiplies by the weights: B is the variance of sum(estfun)
    estfun[model] = (y - m) / (m * (1 - m)) * work / w_all[model]
    b = float(domain_means(design, estfun[:, None], mask[:, None], statistic="total")["se"][0, 0]) ** 2
    ainv = 1.0 / work.sum()
    disp = _glm_dispersion(y, m, w_all[model])
    return _GlmFit(coef, ainv * b * ainv, ainv, dev, disp, y, prior)


def likelihood_interval(design: SurveyDesign, yv: np.ndarray, mask: np.ndarray, *, df: float,
                        level: float) -> tuple[float, float]:
    """The interval of ``svyciprop(method = "likelihood")``.

    Oracle "dstrat svyciprop yes method=likelihood".
    """
    return _profile_likelihood_ci(svyglm_logit(design, yv, mask), df=df, level=level)


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
