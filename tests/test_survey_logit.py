"""svyciprop(method="logit") where R's glm.fit diverges: small domains of a calibrated design.

After post-stratification R keeps every row in a domain's subset (zero weight outside), so
``svyglm``'s rescaled prior weights are ~ n_design / n_domain in the domain (80 here, ~160 for
80 respondents in 160 CAEs). The start ``mu = (w y + 0.5)/(w + 1)`` is then near 0/1 and the
Newton steps overshoot. R does not recover either: its logit link caps eta at +-30, the next
step is ~1/DBL_EPSILON, and ``svyciprop(method = "logit")`` returns 0 with interval [0, 0]
(domain A, p = 0.20) or NaN (domain Z, p = 0.89). The project restarts the IRLS from
``qlogis(p)`` (see ``survey._irls_logit``); the reference numbers below are R's for that fit,
``svyglm(y ~ 1, s, family = quasibinomial, start = qlogis(coef(svymean(~y, s))))`` with
``confint(method = "Wald", ddf = degf(s))``, equal to ``svyciprop(method = "xlogit")``.
Computed by ``tests/fixtures/logit/divergence.R`` (R 4.2.2, survey 4.1.1), which builds the
same data as :func:`_design`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from cae_impact import survey as sv

STRATA = ["A", "Z"] + [f"B{k:02d}" for k in range(1, 79)]

# R output of divergence.R:
R_PLAIN = {"A": (0.0, 0.0, 0.0), "Z": (math.nan, math.nan, math.nan)}  # svyciprop logit
# p, coef, vcov(coef), CI (start = qlogis(p), Wald, ddf = degf)
R_START = {
    "A": (0.203296703296703, -1.36581582977635, 0.11729239282024,
          0.113191644282512, 0.337806377894662),
    "Z": (0.89010989010989, 2.09186406167839, 0.205060204237159,
          0.764212934809979, 0.952925747656801),
}  # fmt: skip
R_XLOGIT = {
    "A": (0.113191644282512, 0.337806377894662),
    "Z": (0.764212934809979, 0.952925747656801),
}


def _design() -> tuple[sv.SurveyDesign, pd.DataFrame]:
    rows = []
    for h in STRATA:
        for i in range(40):
            if h == "A":
                y = int(i % 5 == 0)
            elif h == "Z":
                y = int(i % 10 != 0)
            else:
                y = i % 2
            rows.append((h, 120, "F" if i % 3 == 0 else "H", y))
    d = pd.DataFrame(rows, columns=["h", "N", "sex", "y"])
    pop = {(h, s): 60.0 for h in STRATA for s in ("F", "H")}
    des = sv.post_stratify(sv.svydesign(d, strata="h", fpc="N"), ["h", "sex"], pop)
    return des, d


@pytest.mark.parametrize("dom", ["A", "Z"])
def test_diverging_domain_matches_r_restarted_fit(dom):
    des, d = _design()
    mask = (d.h == dom).to_numpy()
    y = d.y.to_numpy(float)
    fit = sv._svyglm_logit(des, y, mask)
    p, coef, var, lo, hi = R_START[dom]
    assert fit.prior.mean() == pytest.approx(80.0)
    assert fit.coef == pytest.approx(coef, rel=1e-9)
    assert fit.var == pytest.approx(var, rel=1e-9)
    e = sv.proportion(des, "y", domain=mask, method="logit")
    assert e.estimate == pytest.approx(p, rel=1e-12)
    assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), rel=1e-9)
    assert (e.ci_low, e.ci_high) == pytest.approx(R_XLOGIT[dom], rel=1e-9)
    # the span path (used by the pipeline) gives the same interval
    sp = sv.design_span(des)
    (s,) = sv.span_proportions(sp, y[:, None], mask[:, None], method="logit")
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi), rel=1e-9)


@pytest.mark.parametrize("dom", ["A", "Z"])
def test_plain_iterates_diverge_like_r(dom):
    """Without the restart the IRLS leaves the link's range, as R's does (R: 0 [0, 0] or NaN)."""
    des, d = _design()
    mask = (d.h == dom).to_numpy()
    fit = sv._svyglm_logit(des, d.y.to_numpy(float), mask)
    y, prior = fit.y, fit.prior
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = sv._irls_logit(y, prior, restart=False)
    assert not abs(plain[0]) <= 30  # R ends at |coef| ~ 1e15: expit 0 or 1, see R_PLAIN
    assert not (0.0 < sv._expit(plain[0]) < 1.0) or math.isnan(plain[0])
    assert R_PLAIN[dom][0] in (0.0, 1.0) or math.isnan(R_PLAIN[dom][0])


def test_no_nan_interval_strictly_inside():
    """Random small domains with large rescaled weights: finite interval whenever 0 < p < 1."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(2, 90))
        y = (rng.random(n) < rng.choice([0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])).astype(float)
        prior = rng.choice([rng.uniform(20, 200, n), np.full(n, rng.uniform(50, 400))])
        p = float((prior * y).sum() / prior.sum())
        if not 0 < p < 1:
            continue
        for irls in (sv._irls_logit, sv._irls_logit_reference):
            coef, work, dev = irls(y, prior)
            assert math.isfinite(coef) and abs(coef) <= 30
            assert coef == pytest.approx(math.log(p / (1 - p)), rel=1e-6, abs=1e-8)
            assert np.isfinite(work).all() and work.sum() > 0
