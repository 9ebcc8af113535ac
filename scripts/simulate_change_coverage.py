"""How often do the demo's change intervals cover the true change? Repeated draws, real estimator.

The demo's two populations (every member's answers in 2026 and 2027,
:func:`cae_impact_demo.waves.wave_populations`) are fixed; each replicate draws the respondents
of both waves again with the demo's own response mechanism (a fixed number per CAE, drawn with
probabilities that grow with the response propensity of the member's CAE x sex x stage cell,
independently from one wave to the next), weights each CAE's respondents with the pipeline's
:func:`cae_impact.analysis.indicators.build_design` (base weights, post-stratification on sex x stage,
trimming), estimates every compared share with :func:`cae_impact.estimation.proportion`, and
forms the change and its interval with :func:`cae_impact.analysis.waves.change_stats` (the reports'
function: ``sqrt(V1 + V2)``, Welch-Satterthwaite df). The interval is scored against the true
change of the finite populations.

The variance is the reports': the post-strata as strata with their own fpc
(response-homogeneity groups, :func:`cae_impact.estimation.cells_as_strata`; R
``svydesign(strata = ~variance_stratum, fpc = ~variance_population)``), which is how the demo
draws its respondents: a random sample of each cell with the cell's own response fraction.
Until 2026-12-07 the reports used R's linearisation after ``postStratify`` with strata = CAEs
(one fpc per CAE): 60 replicates gave a coverage of 0.922 and SD / SE 1.083 (docs/waves.md).

Usage: ``.venv/bin/python scripts/simulate_change_coverage.py [--replicates 60] [--seed 99]``.
Prints the coverage and the ratio of the empirical standard deviation
of the estimates to their mean standard error. Figures and their reading: docs/waves.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cae_impact import estimation  # noqa: E402
from cae_impact.analysis import indicators  # noqa: E402
from cae_impact.analysis.waves import change_stats  # noqa: E402
from cae_impact.spec.codebook import load_codebook  # noqa: E402
from cae_impact.spec.config import load_study  # noqa: E402
from cae_impact_demo import demo  # noqa: E402
from cae_impact_demo import waves as demo_waves  # noqa: E402


def simulate(replicates: int = 60, seed: int = 99, indicator_ids: list[str] | None = None) -> pd.DataFrame:
    """One row per replicate x CAE x compared share: both waves' estimates, the change, coverage."""
    s1 = load_study(ROOT / "config" / "study.yaml")
    s2 = load_study(ROOT / "config" / "study-2027.yaml")
    cb1, cb2 = load_codebook(s1.codebook), load_codebook(s2.codebook)
    pop1, pop2, _ = demo_waves.wave_populations(s1, s2)
    f1, f2 = demo.population_frame(cb1, pop1), demo.population_frame(cb2, pop2)
    params1 = demo._params_for(s1, demo.DEMO_SEED)
    k1 = {c: p.respondents for c, p in zip(s1.cae_ids, params1, strict=True)}
    calibrated = {str(m["question"]) for m in (cb2.register_mapping or {}).values()}
    reworded = {"good_health"}
    inds = [i for i in cb2.indicators
            if i.kind == "share" and i.rule.get("base", "valid") == "valid" and "question" in i.rule
            and i.rule["question"] not in calibrated and i.id not in reworded
            and (indicator_ids is None or i.id in indicator_ids)]
    common = [c for c in s2.cae_ids if c in s1.cae_ids]
    truth = {}
    for ind in inds:
        for c in common:
            a = demo.indicator_value(cb1, ind.id, f1[f1.cae_id == c])["value"]
            b = demo.indicator_value(cb2, ind.id, f2[f2.cae_id == c])["value"]
            truth[(ind.id, c)] = (a, b)
    rows = []
    for r in range(replicates):
        rng = np.random.default_rng([seed, r])
        for cae in common:
            est = {}
            for wave, (study, pop, frame, cb) in enumerate(((s1, pop1, f1, cb1), (s2, pop2, f2, cb2))):
                k = study.cae_ids.index(cae)
                # the demo's own response draw (the one draw_submissions and generate_wave2 make)
                resp_idx = demo_waves._propensity_draw(rng, np.flatnonzero(pop.cae == k), pop.propensity, k1[cae])
                resp = frame.loc[resp_idx].reset_index(drop=True)
                resp["respondent_id"] = [f"r{i}" for i in range(len(resp))]
                w = indicators.build_design(resp, dataclasses.replace(study, caes=(study.cae(cae),)), cb)
                designs = {"published": w.design}
                for ind in inds:
                    y = indicators.share_variable(w.design.data, cb, ind.rule["question"], list(ind.rule["codes"]))
                    for name, des in designs.items():
                        e = estimation.proportion(des, y)
                        est[(ind.id, name, wave)] = (e.estimate, e.se, float(des.degf(~np.isnan(y))), e.n, e.ci_low, e.ci_high)
            for ind in inds:
                t1, t2 = truth[(ind.id, cae)]
                if t1 is None or t2 is None:
                    continue
                for name in designs:
                    (e1, se1, df1, n1, lo1, hi1), (e2, se2, df2, n2, lo2, hi2) = est[(ind.id, name, 0)], est[(ind.id, name, 1)]
                    if min(n1, n2) < 10 or se1 <= 0 or se2 <= 0:
                        continue
                    c = change_stats(e1, se1, df1, e2, se2, df2)
                    rows.append({"replicate": r, "cae": cae, "indicator": ind.id, "variance": name,
                                 "true_change": t2 - t1, "change": c["change"], "se": c["se"],
                                 "covered": c["ci_low"] <= t2 - t1 <= c["ci_high"],
                                 "error1": e1 - t1, "se1": se1, "error2": e2 - t2, "se2": se2,
                                 "level1_covered": lo1 <= t1 <= hi1, "level2_covered": lo2 <= t2 <= hi2})
    return pd.DataFrame(rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Coverage and SD / mean SE, by variance."""
    out = []
    for name, g in frame.groupby("variance"):
        by = g.groupby(["cae", "indicator"])
        ratio = (by["change"].std() / by["se"].mean()).median()
        level = (g["error2"].abs() <= 1.96 * g["se2"]).mean()
        # a wave's level interval (the reports' logit interval, Student df) is scored once per
        # replicate, CAE and indicator (the rows are changes, one per pair of waves)
        levels = pd.concat([g["level1_covered"], g["level2_covered"]]).mean()
        out.append({"variance": name, "changes": len(g), "coverage": g["covered"].mean(),
                    "sd_over_se_median": ratio, "level_coverage_z": level, "level_coverage": levels})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=60)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--out", type=Path, help="also write every simulated change to this parquet file")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    frame = simulate(args.replicates, args.seed)
    if args.out:
        frame.to_parquet(args.out, index=False)
    print(summary(frame).to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{args.replicates} replicates in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
