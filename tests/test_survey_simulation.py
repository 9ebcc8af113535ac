"""Repeated-sampling checks of cae_impact.estimation on synthetic finite populations.

A consortium of 7 CAEs (100-300 members each) with sex, contract stage and a binary outcome
whose probability depends on all three is generated once (fixed seed). Samples are then drawn
400 times and the empirical coverage of the nominal 95 % logit interval (R ``svyciprop``
default) is measured against the finite-population value:

* design A, stratified simple random sampling without replacement (25 % in every CAE): the
  consortium proportion, the proportion of every CAE (a domain estimated on the full design,
  t with ``n_h - 1`` df) and the post-stratified (CAE x sex) consortium proportion;
* design B, response depending on sex (35 % of women, 18 % of men respond, within each CAE):
  the base-weighted estimator is biased, the post-stratified one (CAE x sex) is not, and its
  interval covers.

Coverage must lie in [0.92, 0.975] (400 replicates: Monte Carlo SE about 0.011). A CAE's
proportion rests on 28 to 75 respondents, so its interval's coverage depends on where the true
value falls among the few attainable sample proportions (discreteness): for those domains the
*exact* coverage is computed too, by enumerating the hypergeometric distribution of the number
of "yes" in the CAE's sample and calling :func:`cae_impact.estimation.proportion` on each outcome;
every CAE's exact coverage must lie in [0.92, 0.975], the simulated per-CAE coverage must agree
with it (3.5 Monte Carlo SE) and the simulated coverage pooled over the 7 CAEs must lie in
[0.92, 0.975]. The module runs in about 15 s, so it is not marked slow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cae_impact import estimation as sv

SEED = 20260
REPLICATES = 400
SIZES = [110, 140, 170, 200, 230, 260, 300]
LOW, HIGH = 0.92, 0.975


def _population(rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for h, big_n in enumerate(SIZES):
        female = rng.random(big_n) < 0.55
        stage = rng.choice(["cape", "cesa", "associe"], big_n, p=[0.3, 0.4, 0.3])
        eta = (
            -0.8
            + 0.35 * h
            + 0.9 * female
            + np.select([stage == "cape", stage == "cesa"], [-0.5, 0.2], 0.6)
        )
        y = (rng.random(big_n) < 1 / (1 + np.exp(-eta))).astype(float)
        parts.append(
            pd.DataFrame(
                {"cae": f"cae-{h + 1}", "sex": np.where(female, "F", "M"), "stage": stage, "y": y}
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def results() -> dict[str, object]:
    rng = np.random.default_rng(SEED)
    pop = _population(rng)
    pop_n = pop.groupby("cae").size().to_dict()
    cells = pop.groupby(["cae", "sex"]).size().rename("Freq").reset_index()
    true_all = pop["y"].mean()
    true_cae = pop.groupby("cae")["y"].mean().to_dict()
    rows_by_cae = {c: np.flatnonzero(pop["cae"].to_numpy() == c) for c in pop_n}
    rows_by_cell = {
        k: np.flatnonzero(((pop["cae"] == k[0]) & (pop["sex"] == k[1])).to_numpy())
        for k in zip(cells["cae"], cells["sex"], strict=True)
    }

    def covers(est: sv.ProportionEstimate, truth: float) -> bool:
        return est.ci_low <= truth <= est.ci_high

    hits = {"all": 0, "post_stratified": 0, "sex_response_ps": 0}
    cae_hits = dict.fromkeys(pop_n, 0)
    errors = {"sex_response_base": [], "sex_response_ps": []}
    dfs: dict[str, set] = {c: set() for c in pop_n}
    for _ in range(REPLICATES):
        # design A: stratified SRS without replacement, 25 % per CAE
        idx = np.concatenate(
            [rng.choice(r, round(0.25 * len(r)), replace=False) for r in rows_by_cae.values()]
        )
        s = pop.iloc[idx].reset_index(drop=True)
        d = sv.stratified_design(s, "cae", pop_n)
        hits["all"] += covers(sv.proportion(d, "y"), true_all)
        for cae in pop_n:
            dom = sv.proportion(d, "y", domain=(s["cae"] == cae).to_numpy())
            dfs[cae].add(dom.df)
            cae_hits[cae] += covers(dom, true_cae[cae])
        ps = sv.post_stratify(d, ["cae", "sex"], cells)
        hits["post_stratified"] += covers(sv.proportion(ps, "y"), true_all)
        # design B: women respond twice as often as men
        idx = np.concatenate(
            [
                rng.choice(
                    r, max(2, round((0.35 if k[1] == "F" else 0.18) * len(r))), replace=False
                )
                for k, r in rows_by_cell.items()
            ]
        )
        s = pop.iloc[idx].reset_index(drop=True)
        d = sv.stratified_design(s, "cae", pop_n)
        errors["sex_response_base"].append(sv.mean(d, "y").estimate - true_all)
        ps_est = sv.proportion(sv.post_stratify(d, ["cae", "sex"], cells), "y")
        errors["sex_response_ps"].append(ps_est.estimate - true_all)
        hits["sex_response_ps"] += covers(ps_est, true_all)
    coverage = {k: v / REPLICATES for k, v in hits.items()}
    coverage["cae_pooled"] = sum(cae_hits.values()) / (REPLICATES * len(cae_hits))
    bias = {k: float(np.mean(v)) for k, v in errors.items()}
    mc_se = {k: float(np.std(v) / np.sqrt(REPLICATES)) for k, v in errors.items()}
    return {
        "coverage": coverage,
        "cae_coverage": {k: v / REPLICATES for k, v in cae_hits.items()},
        "bias": bias,
        "mc_se": mc_se,
        "dfs": dfs,
        "pop": pop,
    }


@pytest.mark.parametrize("target", ["all", "cae_pooled", "post_stratified", "sex_response_ps"])
def test_logit_interval_coverage(results, target):
    cov = results["coverage"][target]
    assert LOW <= cov <= HIGH, f"coverage of {target}: {cov:.3f}"


def _exact_cae_coverage(big_n: int, yes: int) -> float:
    """Exact coverage of the logit interval of a CAE's proportion under SRS without
    replacement of 25 % of the CAE, through the module (one-stratum design, as the domain
    estimate of a whole stratum only involves that stratum)."""
    n = round(0.25 * big_n)
    truth = yes / big_n
    total = 0.0
    for k in range(max(0, n - (big_n - yes)), min(n, yes) + 1):
        df = pd.DataFrame({"y": [1.0] * k + [0.0] * (n - k)})
        d = sv.svydesign(df, weights=np.full(n, big_n / n), fpc=np.full(n, float(big_n)))
        est = sv.proportion(d, "y")
        total += stats.hypergeom.pmf(k, big_n, yes, n) * (est.ci_low <= truth <= est.ci_high)
    return total


def test_cae_domain_coverage_exact_and_simulated(results):
    pop = results["pop"]
    for cae, g in pop.groupby("cae"):
        exact = _exact_cae_coverage(len(g), int(g["y"].sum()))
        assert LOW <= exact <= HIGH, f"{cae}: exact coverage {exact:.4f}"
        sim = results["cae_coverage"][cae]
        mc = np.sqrt(exact * (1 - exact) / REPLICATES)
        assert abs(sim - exact) < 3.5 * mc, f"{cae}: simulated {sim:.3f}, exact {exact:.4f}"


def test_domain_interval_uses_domain_degrees_of_freedom(results):
    # a CAE domain has n_h - 1 df (R's degf of the subset design); n_h = round(0.25 N_h)
    expected = {f"cae-{h + 1}": {round(0.25 * big_n) - 1} for h, big_n in enumerate(SIZES)}
    assert results["dfs"] == expected


def test_post_stratification_removes_response_bias(results):
    bias, mc = results["bias"], results["mc_se"]
    # base weights ignore the sex-dependent response: clearly biased (women answer "yes" more)
    assert bias["sex_response_base"] > 6 * mc["sex_response_base"]
    # calibrated on CAE x sex: no bias beyond Monte Carlo noise
    assert abs(bias["sex_response_ps"]) < 3 * mc["sex_response_ps"]
