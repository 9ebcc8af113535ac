"""cae_impact.estimation (svy) against R `survey` 4.1.1, number for number.

Every number of ``tests/fixtures/oracles/oracle-output.txt`` and
``consortium_toy-output.txt`` (R outputs, see ``fixtures/oracles/ORIGIN.md``) is parsed from the
text and reproduced to a relative 1e-6 (``RTOL``); ``test_every_oracle_line_is_checked`` makes
sure no line is left out. Functions without an R oracle (quantiles, Rao-Scott test,
comparisons, Benjamini-Hochberg, lonely PSUs, collapsing, trimming) are checked on
hand-computed cases at the end of the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cae_impact import estimation as sv

FIX = Path(__file__).parent / "fixtures" / "oracles"
RTOL = 1e-6


# ---------------------------------------------------------------------------------------------
# Parsing the R outputs
# ---------------------------------------------------------------------------------------------


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def parse_output(path: Path) -> dict[str, list[float]]:
    """``label -> numbers``: the numbers are the trailing numeric tokens of a line; a line
    starting with ``...`` continues the previous label (key ``"<previous label> | <rest>"``)."""
    out: dict[str, list[float]] = {}
    previous = None
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        toks = raw.split()
        nums: list[float] = []
        while toks and _is_number(toks[-1]):
            nums.insert(0, float(toks.pop()))
        label = " ".join(toks)
        if label.startswith("..."):
            label = f"{previous} | {label[3:].strip()}"
        else:
            previous = label
        assert nums, f"no number on line {raw!r}"
        out[label] = nums
    return out


API = parse_output(FIX / "oracle-output.txt")
TOY = parse_output(FIX / "consortium_toy-output.txt")
CHECKED: set[str] = set()


def check(table: dict[str, list[float]], label: str, got: list[float], rtol: float = RTOL) -> None:
    expected = table[label]
    assert len(got) == len(expected), label
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0, err_msg=label)
    CHECKED.add(label)


# ---------------------------------------------------------------------------------------------
# Designs (same calls as oracle.R and consortium_toy.R)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dstrat() -> sv.SurveyDesign:
    d = pd.read_csv(FIX / "apistrat.csv")
    d["yes"] = (d["sch.wide"] == "Yes").astype(float)
    return sv.svydesign(d, strata="stype", weights="pw", fpc="fpc")


@pytest.fixture(scope="module")
def dclus1() -> sv.SurveyDesign:
    c1 = pd.read_csv(FIX / "apiclus1.csv")
    return sv.svydesign(c1, clusters="dnum", weights="pw", fpc="fpc")


@pytest.fixture(scope="module")
def toy() -> sv.SurveyDesign:
    d = pd.read_csv(FIX / "consortium_toy.csv")
    d["agree"] = (d["q1"] >= 3).astype(float)
    population = d.groupby("coop")["N"].first().to_dict()
    return sv.stratified_design(d, "coop", population)


POP_TYPES = pd.DataFrame({"stype": ["E", "H", "M"], "Freq": [4421, 755, 1018]})
POP_SCHWIDE = pd.DataFrame({"sch.wide": ["No", "Yes"], "Freq": [1072, 5122]})
POP_COOP_SEX = pd.DataFrame(
    {"coop": list("AABBCC"), "sex": list("FMFMFM"), "Freq": [22, 18, 10, 15, 35, 25]}
)
TOY_MARGINS = [
    ("coop", pd.DataFrame({"coop": ["A", "B", "C"], "Freq": [40, 25, 60]})),
    ("sex", pd.DataFrame({"sex": ["F", "M"], "Freq": [67, 58]})),
]


# ---------------------------------------------------------------------------------------------
# oracle-output.txt (api data)
# ---------------------------------------------------------------------------------------------


def test_api_stratified_mean_total(dstrat):
    m = sv.mean(dstrat, "api00")
    check(API, "dstrat svymean api00: est se", [m.estimate, m.se])
    t = sv.total(dstrat, "enroll")
    check(API, "dstrat svytotal enroll: est se", [t.estimate, t.se])
    m = sv.mean(dstrat, "yes")
    check(API, "dstrat svymean sch.wide==Yes: est se", [m.estimate, m.se])
    assert m.df == 197  # 200 PSUs - 3 strata


def test_api_cluster_mean(dclus1):
    m = sv.mean(dclus1, "api00")
    check(API, "dclus1 svymean api00: est se", [m.estimate, m.se])
    assert m.df == 14  # 15 clusters - 1 stratum


@pytest.mark.parametrize("method", ["logit", "beta", "likelihood", "mean"])
def test_api_svyciprop(dstrat, method):
    r = sv.proportion(dstrat, "yes", method=method)
    check(
        API, f"dstrat svyciprop yes method={method}: est lo hi", [r.estimate, r.ci_low, r.ci_high]
    )


def test_api_svyciprop_tighter_than_contract(dstrat):
    # svy's (p, se, df) and R's interval formulas: the bounds to ~1e-12; R's logit estimate
    # is expit of its glm coefficient, which differs from the mean by the glm tolerance (5e-10).
    # the logit bounds: R centres them on its glm coefficient, hence the same 5e-10
    for method, rtol in [("logit", 1e-9), ("beta", 1e-11), ("likelihood", 1e-11), ("mean", 1e-11)]:
        r = sv.proportion(dstrat, "yes", method=method)
        exp = API[f"dstrat svyciprop yes method={method}: est lo hi"]
        np.testing.assert_allclose([r.ci_low, r.ci_high], exp[1:], rtol=rtol)


def test_api_svyby(dstrat):
    b = sv.by(dstrat, "api00", "stype")
    assert b["stype"].tolist() == ["E", "H", "M"]
    check(API, "dstrat svyby api00 by stype (E H M): est", b["estimate"].tolist())
    check(API, "dstrat svyby api00 by stype (E H M): est | se", b["se"].tolist())


def test_api_post_stratify(dclus1):
    ps = sv.post_stratify(dclus1, "stype", POP_TYPES)
    m = sv.mean(ps, "api00")
    check(API, "dclus1 postStratify(stype) svymean api00: est se", [m.estimate, m.se])
    # weights now reproduce the population counts
    got = pd.Series(ps.weights).groupby(ps.data["stype"]).sum()
    np.testing.assert_allclose(got.loc[["E", "H", "M"]].to_numpy(), [4421, 755, 1018], rtol=1e-12)


def test_api_rake(dclus1):
    res = sv.rake_with_report(
        dclus1, [("stype", POP_TYPES), ("sch.wide", POP_SCHWIDE)], epsilon=1e-10, maxit=100
    )
    assert res.converged
    m = sv.mean(res.design, "api00")
    check(
        API,
        "dclus1 rake(stype, sch.wide), converged to 1e-10: svymean api00: est se",
        [m.estimate, m.se],
    )


# ---------------------------------------------------------------------------------------------
# consortium_toy-output.txt
# ---------------------------------------------------------------------------------------------


def test_toy_base_weights_and_design(toy):
    d = pd.read_csv(FIX / "consortium_toy.csv")
    w = sv.base_weights(d, "coop", {"A": 40, "B": 25, "C": 60})
    np.testing.assert_allclose(w.to_numpy(), toy.weights)
    assert sorted(set(np.round(w, 10))) == pytest.approx([25 / 6, 5.0, 6.0])
    assert toy.degf() == 21


def test_toy_stratified_mean_and_intervals(toy):
    m = sv.mean(toy, "agree")
    check(TOY, "svymean agree: est se", [m.estimate, m.se])
    r = sv.proportion(toy, "agree", method="logit")
    check(TOY, "svyciprop agree logit: est lo hi", [r.estimate, r.ci_low, r.ci_high])
    r = sv.proportion(toy, "agree", method="beta")
    check(TOY, "svyciprop agree beta (Korn-Graubard): est lo hi", [r.estimate, r.ci_low, r.ci_high])
    m = sv.mean(toy, "ca")
    check(TOY, "svymean ca: est se", [m.estimate, m.se])


def test_toy_svyby_coop(toy):
    b = sv.by(toy, "agree", "coop")
    assert b["coop"].tolist() == ["A", "B", "C"]
    check(TOY, "svyby agree by coop (A B C): est", b["estimate"].tolist())
    check(TOY, "svyby agree by coop (A B C): est | se", b["se"].tolist())
    # a CAE domain has n_h - 1 degrees of freedom, as R's degf(subset(...))
    assert b["df"].tolist() == [7, 5, 9]


def test_toy_factor_distribution(toy):
    dist = sv.distribution(toy, "q1")
    assert dist["level"].tolist() == [1, 2, 3, 4]
    check(TOY, "svymean factor(q1) levels 1..4: est", dist["estimate"].tolist())
    check(TOY, "svymean factor(q1) levels 1..4: est | se", dist["se"].tolist())
    assert dist["estimate"].sum() == pytest.approx(1.0, abs=1e-12)


def test_toy_post_stratify_coop_sex(toy):
    ps = sv.post_stratify(toy, ["coop", "sex"], POP_COOP_SEX)
    m = sv.mean(ps, "agree")
    check(TOY, "postStratify(coop x sex) svymean agree: est se", [m.estimate, m.se])
    r = sv.proportion(ps, "agree", method="logit")
    check(
        TOY,
        "postStratify(coop x sex) svyciprop logit: est lo hi",
        [r.estimate, r.ci_low, r.ci_high],
    )


def test_toy_post_stratify_se_trap(toy):
    """README trap: treating the post-stratified weights as fixed gives 0.0896, not 0.0800."""
    ps = sv.post_stratify(toy, ["coop", "sex"], POP_COOP_SEX)
    fixed = sv.svydesign(toy.data, strata="coop", weights=ps.weights, fpc="N")
    wrong = sv.mean(fixed, "agree")
    right = sv.mean(ps, "agree")
    assert wrong.estimate == pytest.approx(right.estimate, rel=1e-12)
    assert round(wrong.se, 4) == 0.0896
    assert round(right.se, 4) == 0.0800


RAKE_DEFAULT = "rake(coop; sex), R default control (stops after 2 sweeps, not converged): svymean agree: est se"
RAKE_CONVERGED = "rake(coop; sex), converged (maxit 100, epsilon 1e-10): svymean agree: est se"


def test_toy_rake(toy):
    res = sv.rake_with_report(toy, TOY_MARGINS, epsilon=1e-10, maxit=100)
    assert res.converged
    m = sv.mean(res.design, "agree")
    check(TOY, RAKE_CONVERGED, [m.estimate, m.se])
    w = pd.Series(res.design.weights)
    np.testing.assert_allclose(w.groupby(toy.data["sex"]).sum().to_numpy(), [67, 58], rtol=1e-9)
    np.testing.assert_allclose(
        w.groupby(toy.data["coop"]).sum().to_numpy(), [40, 25, 60], rtol=1e-9
    )


def test_toy_rake_r_default_control(toy):
    """R's default control stops after two sweeps: svy's two sweeps give R's weights and
    estimate, but svy linearises the raking as if it had converged, so its SE of this
    unconverged rake is 2.5e-4 (relative) away from R's (see docs/survey-engine.md)."""
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = sv.rake_with_report(toy, TOY_MARGINS, epsilon=1e-12, maxit=2)
    assert not res.converged
    m = sv.mean(res.design, "agree")
    est, se = TOY[RAKE_DEFAULT]
    assert m.estimate == pytest.approx(est, rel=RTOL)
    assert m.se == pytest.approx(se, rel=1e-3) and m.se != pytest.approx(se, rel=1e-4)
    CHECKED.add(RAKE_DEFAULT)


def test_every_oracle_line_is_checked(dstrat, dclus1, toy):
    CHECKED.clear()
    test_api_stratified_mean_total(dstrat)
    test_api_cluster_mean(dclus1)
    for method in ["logit", "beta", "likelihood", "mean"]:
        test_api_svyciprop(dstrat, method)
    test_api_svyby(dstrat)
    test_api_post_stratify(dclus1)
    test_api_rake(dclus1)
    test_toy_stratified_mean_and_intervals(toy)
    test_toy_svyby_coop(toy)
    test_toy_factor_distribution(toy)
    test_toy_post_stratify_coop_sex(toy)
    test_toy_rake(toy)
    test_toy_rake_r_default_control(toy)
    assert set(API) | set(TOY) == CHECKED, sorted((set(API) | set(TOY)) - CHECKED)
    assert len(API) == 12 and len(TOY) == 12


# ---------------------------------------------------------------------------------------------
# Hand-computed cases (no R oracle)
# ---------------------------------------------------------------------------------------------


def _srs(values, big_n=None, **cols):
    df = pd.DataFrame({"y": values, **cols})
    n = len(df)
    if big_n is None:
        return sv.svydesign(df, weights=np.ones(n))
    return sv.svydesign(df, weights=np.full(n, big_n / n), fpc=np.full(n, float(big_n)))


def test_quantile_hand_computed():
    # SRS of n=10 from N=100; sorted y: 1 1 2 3 3 4 5 5 6 9, equal weights
    d = _srs([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], big_n=100)
    q = sv.median(d, "y")
    # math rule: last cumulative share <= 0.5 is the 5th value (share exactly 0.5) -> 3
    assert q.estimate == 3
    # Woodruff: F(3) = 0.5; var = (1 - 10/100) * 0.5*0.5/(10-1) = 0.025
    t = stats.t.ppf(0.975, 9)
    lo_p, hi_p = 0.5 - t * math.sqrt(0.025), 0.5 + t * math.sqrt(0.025)
    assert (round(lo_p, 6), round(hi_p, 6)) == (0.142322, 0.857678)
    # back through the rule: share 0.142 -> 2nd value (1), share 0.858 -> 9th value (6)
    assert (q.ci_low, q.ci_high) == (1.0, 6.0)
    assert q.se == pytest.approx((6 - 1) / (2 * t), rel=1e-12)
    assert q.df == 9
    assert sv.median(d, "y", rule="school").estimate == 3.5  # (3 + 4) / 2


def test_weighted_quantile_rule():
    x = np.array([30.0, 10.0, 20.0])
    w = np.array([2.0, 1.0, 1.0])
    assert sv.qrule(x, w, 0.5, "math") == 20  # cumulative shares .25 .5 1
    assert sv.qrule(x, w, 0.5, "school") == 25
    assert sv.qrule(x, w, 0.6, "math") == 30
    assert sv.qrule(x, w, 0.1, "math") == 10


def test_srs_design_effect_is_one_and_kish():
    d = _srs([2.0, 4.0, 4.0, 5.0, 7.0, 9.0, 1.0, 3.0], big_n=40)
    assert sv.design_effect(d, "y") == pytest.approx(1.0, rel=1e-12)
    assert sv.kish_design_effect([1, 1, 2, 2]) == pytest.approx(4 * 10 / 36)
    assert sv.effective_sample_size([1, 1, 2, 2]) == pytest.approx(3.6)


def test_rao_scott_reduces_to_scaled_pearson_under_srs():
    # SRS with replacement, equal weights: V = (D - pp')/(n-1), so Delta = n/(n-1) I and
    # F = X2 (n-1) / (n (r-1)(c-1)) on ((r-1)(c-1), (r-1)(c-1)(n-1)) df.
    rng = np.random.default_rng(3)
    n = 60
    df = pd.DataFrame({"a": rng.choice(["x", "y"], n), "b": rng.choice(["p", "q", "r"], n)})
    d = sv.svydesign(df, weights=np.ones(n))
    counts = pd.crosstab(df["a"], df["b"]).to_numpy()
    x2 = stats.chi2_contingency(counts, correction=False)[0]
    res = sv.chisq_test(d, "a", "b")
    assert res.pearson == pytest.approx(x2, rel=1e-10)
    assert res.statistic == pytest.approx(x2 * (n - 1) / (n * 2), rel=1e-10)
    assert (res.ndf, res.ddf) == (pytest.approx(2), pytest.approx(2 * (n - 1)))
    assert res.p_value == pytest.approx(stats.f.sf(res.statistic, 2, 2 * (n - 1)), rel=1e-10)
    assert res.mean_delta == pytest.approx(n / (n - 1), rel=1e-10)


def test_rao_scott_tables_are_independent():
    """Several tables of one calibrated design, tested from one svy sample, give each table's
    own test in any order (the tables' columns must not clobber the design's)."""
    rng = np.random.default_rng(1)
    n = 80
    df = pd.DataFrame({"h": "A", "N": 300.0, "sex": rng.choice(["F", "M"], n)})
    resp = rng.choice([0, 1, -1], n, p=[0.4, 0.45, 0.15])
    g1, g2 = rng.choice([0, 1, 2, -1], n), rng.choice([0, 1, -1], n)
    d = sv.svydesign(df, strata="h", fpc="N", weights=np.full(n, 300 / n))
    d = sv.post_stratify(d, "sex", {"F": 160.0, "M": 140.0})
    one = [sv.rao_scott(d, resp, [g])[0] for g in (g1, g2)]
    np.testing.assert_allclose(sv.rao_scott(d, resp, [g1, g2]), one, rtol=1e-12)
    np.testing.assert_allclose(sv.rao_scott(d, resp, [g2, g1]), one[::-1], rtol=1e-12)


def test_rao_scott_design_effect_inflates(toy):
    res = sv.chisq_test(toy, "sex", "agree")
    assert res.ndf > 0 and np.isfinite(res.p_value)
    assert res.table.to_numpy().sum() == pytest.approx(125.0)


def test_benjamini_hochberg_hand():
    p = [0.04, 0.005, 0.2, 0.01, 0.03, np.nan]
    # sorted .005 .01 .03 .04 .2 -> 5p/rank = .025 .025 .05 .05 .2 -> running min from the top
    np.testing.assert_allclose(sv.benjamini_hochberg(p)[:5], [0.05, 0.025, 0.2, 0.025, 0.05])
    assert np.isnan(sv.benjamini_hochberg(p)[5])
    assert sv.benjamini_hochberg([0.9, 0.95]).tolist() == [0.95, 0.95]


def test_compare_domains_srs_hand():
    y = np.array([1.0, 3.0, 2.0, 6.0, 8.0, 7.0, 9.0])
    g = np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    d = _srs(y)
    c = sv.compare_domains(d, "y", g)
    ma, mb = 2.0, 7.5
    n = 7
    # influence 1_a (y - m_a)/W_a - 1_b (y - m_b)/W_b (w = 1, W_a = 3, W_b = 4), mean zero;
    # with-replacement variance n/(n-1) sum z^2
    z = np.where(g, (y - ma) / 3, -(y - mb) / 4)
    var = n / (n - 1) * (z**2).sum()
    assert c.difference == pytest.approx(ma - mb)
    assert c.se == pytest.approx(math.sqrt(var), rel=1e-12)
    assert c.df == n - 1 - 1  # svyttest: degf - 1
    assert c.p_value == pytest.approx(2 * stats.t.sf(abs(c.statistic), c.df), rel=1e-12)


def test_compare_stratum_independent_strata(toy):
    # a CAE against the rest: strata are independent, var(diff) = var(A) + var(rest)
    c = sv.compare_stratum(toy, "agree", "A")
    in_a = (toy.data["coop"] == "A").to_numpy()
    va = sv.mean(toy, "agree", domain=in_a).var
    vr = sv.mean(toy, "agree", domain=~in_a).var
    assert c.se**2 == pytest.approx(va + vr, rel=1e-12)
    assert c.estimate_a == pytest.approx(0.625)
    assert c.n_a == 8 and c.n_b == 16


def test_compare_domains_uses_the_joint_linearisation(toy):
    ps = sv.post_stratify(toy, ["coop", "sex"], POP_COOP_SEX)
    # domains made of whole calibration cells (sex): the residualised influences have disjoint
    # supports summing to zero in every cell, so the covariance vanishes
    f = (ps.data["sex"] == "F").to_numpy()
    c = sv.compare_domains(ps, "agree", f)
    va, vb = sv.mean(ps, "agree", domain=f).var, sv.mean(ps, "agree", domain=~f).var
    assert c.se**2 == pytest.approx(va + vb, rel=1e-10)
    # domains cutting across cells and strata: the covariance is there and is used
    big = (ps.data["q1"] >= 3).to_numpy()
    c = sv.compare_domains(ps, "ca", big)
    va, vb = sv.mean(ps, "ca", domain=big).var, sv.mean(ps, "ca", domain=~big).var
    assert abs(c.se**2 / (va + vb) - 1) > 1e-3
    y = ps.data["ca"].to_numpy()
    w = ps.weights
    za = np.where(big, w * (y - c.estimate_a) / w[big].sum(), 0.0)
    zb = np.where(~big, w * (y - c.estimate_b) / w[~big].sum(), 0.0)
    # the variance of sum(za - zb) (svy's total of (za - zb) / w), calibration residuals included
    joint = sv.total(ps, (za - zb) / w).var
    assert c.se**2 == pytest.approx(joint, rel=1e-10)
    assert c.difference == pytest.approx(c.estimate_a - c.estimate_b)


def test_paired_difference_hand():
    before = [1.0, 2.0, np.nan, 4.0, 3.0, 2.0]
    after = [2.0, 2.0, 5.0, 6.0, 3.0, 4.0]
    df = pd.DataFrame({"y": after, "b": before, "a": after})
    d = sv.svydesign(df, weights=np.ones(6))
    r = sv.paired_difference(d, "b", "a")
    diff = np.array([1.0, 0.0, 2.0, 0.0, 2.0])  # the NaN row is out of the base
    n = 5
    # R's na.rm is a domain: the row without 'before' stays one of the 6 sampled PSUs with
    # influence 0, so the with-replacement factor is 6/5 (not 5/4)
    z = (diff - diff.mean()) / n
    se = math.sqrt(6 / 5 * (z**2).sum())
    assert r.difference.estimate == pytest.approx(1.0)
    assert r.difference.se == pytest.approx(se, rel=1e-12)
    assert r.before.estimate == pytest.approx(2.4) and r.after.estimate == pytest.approx(3.4)
    assert r.df == n - 1 - 1  # svyttest one-sample: degf - 1
    assert r.statistic == pytest.approx(1.0 / se)


def _lonely(mode):
    df = pd.DataFrame(
        {"s": ["A", "A", "A", "B"], "y": [1.0, 2.0, 4.0, 10.0], "N": [30, 30, 30, 10]}
    )
    return sv.svydesign(df, strata="s", weights=[10, 10, 10, 10], fpc="N", lonely_psu=mode)


def test_lonely_psu_options():
    with pytest.raises(sv.LonelyPSUError):
        sv.total(_lonely("fail"), "y")
    # total: scores y*w; stratum A: f = 27/30, scale f*3/2
    xa = np.array([10.0, 20.0, 40.0])
    va = 27 / 30 * 3 / 2 * ((xa - xa.mean()) ** 2).sum()
    assert sv.total(_lonely("remove"), "y").var == pytest.approx(va)
    assert sv.total(_lonely("certainty"), "y").var == pytest.approx(va)
    assert sv.total(_lonely("average"), "y").var == pytest.approx(2 * va)
    # adjust (svy "center"): the lonely PSU is centred at the sample grand mean of the PSU
    # totals (R's documentation of survey.lonely.psu), 42.5 here, scale f = 9/10
    grand = np.mean([10.0, 20.0, 40.0, 100.0])
    assert sv.total(_lonely("adjust"), "y").var == pytest.approx(va + 9 / 10 * (100.0 - grand) ** 2)
    # for a mean the influence values sum to zero, so the grand mean is 0
    e = sv.mean(_lonely("adjust"), "y")
    z = np.array([1.0, 2.0, 4.0, 10.0]) - 17 / 4
    z = z * 10 / 40
    v = 27 / 30 * 3 / 2 * ((z[:3] - z[:3].mean()) ** 2).sum() + 9 / 10 * z[3] ** 2
    assert e.var == pytest.approx(v, rel=1e-10)


def test_census_stratum_contributes_nothing():
    df = pd.DataFrame({"s": ["A", "A", "A", "B"], "y": [1.0, 2.0, 4.0, 10.0], "N": [30, 30, 30, 1]})
    d = sv.svydesign(df, strata="s", weights=[10, 10, 10, 1], fpc="N")  # B: n = N = 1
    xa = np.array([10.0, 20.0, 40.0])
    assert sv.total(d, "y").var == pytest.approx(27 / 30 * 3 / 2 * ((xa - xa.mean()) ** 2).sum())


def test_fpc_as_sampling_fraction_equals_population_size(toy):
    frac = 1.0 / toy.weights  # n_h / N_h
    d2 = sv.svydesign(toy.data, strata="coop", weights=toy.weights, fpc=frac)
    assert sv.mean(d2, "agree").se == pytest.approx(sv.mean(toy, "agree").se, rel=1e-12)


def test_missing_values_are_a_domain(toy):
    y = toy.data["ca"].astype("Float64").copy()
    y.iloc[[0, 9, 20]] = pd.NA
    m = sv.mean(toy, y)
    keep = y.notna().to_numpy()
    dom = sv.mean(toy, toy.data["ca"], domain=keep)
    assert (m.estimate, m.se, m.n) == (dom.estimate, dom.se, 21)


def test_collapse_post_strata_rule():
    rows = []
    # CAE x: F has no 'cape' respondent -> F stages collapsed; M kept
    for sex, stage, k in [
        ("F", "cesa", 3),
        ("F", "associe", 2),
        ("M", "cape", 2),
        ("M", "cesa", 2),
        ("M", "associe", 1),
    ]:
        rows += [{"cae": "x", "sex": sex, "stage": stage}] * k
    # CAE y: no man at all -> the whole CAE is one cell
    for stage, k in [("cape", 2), ("cesa", 3)]:
        rows += [{"cae": "y", "sex": "F", "stage": stage}] * k
    data = pd.DataFrame(rows)
    pop_rows = []
    for cae, sex, stage, n in [
        ("x", "F", "cape", 5),
        ("x", "F", "cesa", 10),
        ("x", "F", "associe", 6),
        ("x", "M", "cape", 4),
        ("x", "M", "cesa", 8),
        ("x", "M", "associe", 3),
        ("y", "F", "cape", 6),
        ("y", "F", "cesa", 9),
        ("y", "M", "cape", 4),
        ("y", "M", "cesa", 5),
        ("z", "F", "cape", 7),
    ]:
        pop_rows.append({"cae": cae, "sex": sex, "stage": stage, "Freq": n})
    pop = pd.DataFrame(pop_rows)
    res = sv.collapse_post_strata(data, pop, stratum="cae", outer="sex", inner="stage")
    table = dict(zip(res.population["cell"], res.population["Freq"], strict=True))
    assert table == {
        "x|F|*": 21.0,
        "x|M|cape": 4.0,
        "x|M|cesa": 8.0,
        "x|M|associe": 3.0,
        "y|*|*": 24.0,
    }
    assert set(res.labels) == set(table)
    reasons = res.collapsed.groupby("reason").size().to_dict()
    assert reasons == {
        "stage collapsed within sex": 3,
        "stage and sex collapsed: too few respondents in the sex group": 4,
        "stratum without respondents": 1,
    }
    # post-stratifying on the collapsed cells keeps every CAE total
    data["N"] = data["cae"].map({"x": 36, "y": 24})
    d = sv.stratified_design(data, "cae", {"x": 36, "y": 24})
    ps, _ = sv.post_stratify_with_collapse(
        d, pop[pop["cae"] != "z"], stratum="cae", outer="sex", inner="stage"
    )
    w = pd.Series(ps.weights).groupby(ps.data["post_stratum"]).sum()
    assert w.to_dict() == pytest.approx(table)


def test_post_stratify_refuses_empty_cells(toy):
    pop = pd.concat([POP_COOP_SEX, pd.DataFrame({"coop": ["A"], "sex": ["X"], "Freq": [3]})])
    with pytest.raises(ValueError, match="without respondents"):
        sv.post_stratify(toy, ["coop", "sex"], pop)
    with pytest.raises(ValueError, match="absent from population"):
        sv.post_stratify(toy, ["coop", "sex"], POP_COOP_SEX.iloc[1:])


def test_trim_weights_rule():
    df = pd.DataFrame({"s": ["a"] * 5 + ["b"] * 3, "y": range(8)})
    w = np.array([1, 1, 1, 1, 10, 2, 2, 2], dtype=float)
    d = sv.svydesign(df, strata="s", weights=w)
    res = sv.trim_weights(d, ratio=3.5)
    # stratum a: cap 3.5 (median 1); excess 6.5 shared by the four others in proportion
    np.testing.assert_allclose(res.design.weights[:5], [2.625] * 4 + [3.5])
    np.testing.assert_allclose(res.design.weights[5:], [2, 2, 2])
    assert res.design.weights[:5].sum() == pytest.approx(14.0)
    assert res.trimmed["row"].tolist() == [4]
    assert res.caps["a"] == 3.5
