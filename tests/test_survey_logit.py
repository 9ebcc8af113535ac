"""svyciprop(method="logit") where R's glm.fit diverges: small domains of a calibrated design.

After post-stratification R keeps every row in a domain's subset (zero weight outside), so
``svyglm``'s rescaled prior weights are ~ n_design / n_domain in the domain (80 here, ~160 for
80 respondents in 160 CAEs). The start ``mu = (w y + 0.5)/(w + 1)`` is then near 0/1 and the
Newton steps overshoot. R does not recover either: its logit link caps eta at +-30, the next
step is ~1/DBL_EPSILON, and ``svyciprop(method = "logit")`` returns 0 with interval [0, 0]
(domain A, p = 0.20) or NaN (domain Z, p = 0.89). The project's interval is the closed form
of the converged fit (``estimation.prop_interval`` on svy's p, se, df); the reference numbers
below are R's for the fit restarted from ``qlogis(p)``,
``svyglm(y ~ 1, s, family = quasibinomial, start = qlogis(coef(svymean(~y, s))))`` with
``confint(method = "Wald", ddf = degf(s))``, equal to ``svyciprop(method = "xlogit")``.
Computed by ``tests/fixtures/logit/divergence.R`` (R 4.2.2, survey 4.1.1), which builds the
same data as :func:`_design`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cae_impact import estimation as sv

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
    """The logit interval is computed in closed form from svy's (p, se, df): R's restarted
    quasi-binomial fit (coefficient qlogis(p), variance se^2 / (p (1 - p))^2), without the
    IRLS that diverges in R."""
    des, d = _design()
    mask = (d.h == dom).to_numpy()
    p, coef, var, lo, hi = R_START[dom]
    e = sv.proportion(des, "y", domain=mask, method="logit")
    assert e.estimate == pytest.approx(p, rel=1e-12)
    assert math.log(e.estimate / (1 - e.estimate)) == pytest.approx(coef, rel=1e-9)
    assert (e.se / (e.estimate * (1 - e.estimate))) ** 2 == pytest.approx(var, rel=1e-9)
    assert (e.ci_low, e.ci_high) == pytest.approx((lo, hi), rel=1e-9)
    assert (e.ci_low, e.ci_high) == pytest.approx(R_XLOGIT[dom], rel=1e-9)
    # the path of the pipeline (domain_means + prop_interval on the CAE's own design) agrees
    res = sv.domain_means(des, np.where(mask, d.y.to_numpy(float), np.nan)[:, None], mask[:, None])
    got = sv.prop_interval(res["estimate"][0, 0], res["se"][0, 0], method="logit", level=0.95,
                           df=res["df"][0, 0], n_rows=des.n, n_obs=int(res["n"][0, 0]))
    assert got == pytest.approx((lo, hi), rel=1e-9)


def test_r_plain_fit_is_not_reproduced_on_purpose():
    """R's own svyciprop(method = "logit") fails on these domains (0 [0, 0] or NaN, see
    R_PLAIN); the project gives R's restarted fit instead (svyciprop(method = "xlogit"))."""
    des, d = _design()
    for dom in ("A", "Z"):
        e = sv.proportion(des, "y", domain=(d.h == dom).to_numpy())
        assert 0 < e.ci_low < e.estimate < e.ci_high < 1
        assert R_PLAIN[dom][0] in (0.0, 1.0) or math.isnan(R_PLAIN[dom][0])


def test_no_nan_interval_strictly_inside():
    """Random small domains: a finite interval strictly inside (0, 1) whenever 0 < p < 1."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(2, 90))
        p = float(rng.integers(1, n)) / n
        se = float(rng.uniform(0.001, 0.5)) * math.sqrt(p * (1 - p))
        df = float(rng.integers(1, 200))
        for method in ("logit", "beta"):
            lo, hi = sv.prop_interval(p, se, method=method, level=0.95, df=df, n_rows=n, n_obs=n)
            assert 0 < lo < p < hi < 1, (method, p, se, df, lo, hi)
