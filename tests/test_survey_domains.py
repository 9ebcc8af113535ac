"""A CAE's own design gives the domain estimates of the consortium design, to rounding.

The pipeline estimates a CAE on the CAE's rows only (``SurveyDesign.rows``): strata (CAEs) are
sampled independently and post-strata are nested in them, so the estimates and variances are
those of the CAE as a domain of the whole design (R's ``subset``), with the degrees of freedom
of the CAE's own sample. The CAEs are compared with the rest of the consortium all at once
(``compare_strata``, from per-stratum variances). These tests check both against the
whole-design computation on designs like the project's (strata, post-strata within strata,
trimming), an uncalibrated one, lonely strata, rows not sorted by CAE, and designs whose
calibration crosses the CAEs (raking) or with clusters.

The two paths add the same numbers in different orders (and svy's Rust sums them in its own
order), so they agree to rounding only: ``RTOL`` is that rounding with a wide margin; nothing
here asks for bit-identity, which depends on the CPU's SIMD kernels.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from cae_impact import estimation as sv

SIZES = [23, 61, 9, 40, 1, 128, 3, 77, 52]  # respondents per stratum (CAE); one lonely
RTOL = 1e-10


def _close(a, b, rtol: float = RTOL) -> bool:
    """Equal to ``rtol`` (relative), recursively through dataclasses, tuples and arrays; NaN
    equals NaN; integers, strings and booleans must be equal."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and _close(dataclasses.astuple(a), dataclasses.astuple(b), rtol)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        scale = max(abs(a), abs(b))
        return abs(a - b) <= rtol * scale or abs(a - b) <= 1e-15
    return a == b


def _data(seed: int = 3, sizes=SIZES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for h, n in enumerate(sizes):
        parts.append(
            pd.DataFrame(
                {
                    "cae": f"cae-{h + 1}",
                    "sex": rng.choice(["F", "M"], n),
                    "stage": rng.choice(["a", "b", "c"], n, p=[0.3, 0.5, 0.2]),
                    "y": np.where(
                        rng.random(n) < 0.1, np.nan, (rng.random(n) < 0.2 + 0.07 * h).astype(float)
                    ),
                    "z": np.where(rng.random(n) < 0.15, np.nan, rng.normal(1500 + 40 * h, 400, n)),
                    "z0": np.where(rng.random(n) < 0.1, np.nan, rng.normal(1400, 300, n)),
                    "d": rng.choice(["p", "q", "r", "s"], n, p=[0.4, 0.3, 0.2, 0.1]),
                    "g": rng.choice(["u", "v", "w"], n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _register(df: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    pop = {}
    cells = []
    for cae, part in df.groupby("cae"):
        total = 0
        for (sex, stage), cell in part.groupby(["sex", "stage"]):
            count = 3 * len(cell) + 2
            cells.append({"cae": cae, "sex": sex, "stage": stage, "Freq": float(count)})
            total += count
        pop[cae] = total
    return pop, pd.DataFrame(cells)


def _project_design(df: pd.DataFrame, lonely: str = "adjust") -> sv.SurveyDesign:
    """Strata = CAEs, fpc, post-stratified on sex x stage within CAE (collapsed), trimmed."""
    pop, cells = _register(df)
    d = sv.stratified_design(df, "cae", pop, lonely_psu=lonely)
    d, _ = sv.post_stratify_with_collapse(d, cells, stratum="cae", outer="sex", inner="stage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sv.trim_weights(d, ratio=2.0).design


def _designs():
    df = _data()
    shuffled = df.sample(frac=1.0, random_state=5).reset_index(drop=True)
    pop, _ = _register(df)
    total = float(sum(pop.values()))
    raked = sv.rake(
        sv.stratified_design(df, "cae", pop, lonely_psu="adjust"),
        {
            "sex": {"F": 0.55 * total, "M": 0.45 * total},
            "stage": {"a": 0.3 * total, "b": 0.5 * total, "c": 0.2 * total},
        },
    )
    clustered = df.assign(clu=[f"{c}-{i // 3}" for i, c in enumerate(df["cae"])])
    return {
        # calibration cells across CAEs (raking) and clusters
        "clustered": sv.svydesign(
            clustered,
            strata="cae",
            clusters="clu",
            weights=np.full(len(df), 2.5),
            lonely_psu="adjust",
        ),
        "raked": raked,
        "calibrated": _project_design(df),
        "calibrated-average": _project_design(df, "average"),
        "calibrated-remove": _project_design(df, "remove"),
        "shuffled-rows": _project_design(shuffled),
        "uncalibrated": sv.stratified_design(df, "cae", pop, lonely_psu="adjust"),
        "uncalibrated-average": sv.stratified_design(df, "cae", pop, lonely_psu="average"),
    }


DESIGNS = _designs()
# (With lonely_psu="average", R scales the variance of any domain of the whole design by
# strata / (strata - lonely strata): a CAE's own design has no lonely stratum to average for.
# The project uses "adjust".)
OWN = ["calibrated", "calibrated-remove", "shuffled-rows", "uncalibrated"]


def _own(d: sv.SurveyDesign, h: int) -> tuple[sv.SurveyDesign, np.ndarray]:
    rows = np.flatnonzero(d.strata == h)
    return d.rows(rows), rows


@pytest.mark.parametrize("name", OWN)
def test_cae_design_equals_the_domain_of_the_whole_design(name):
    d = DESIGNS[name]
    y, z, z0 = (d.data[c].to_numpy(dtype=float) for c in ("y", "z", "z0"))
    g = d.data["g"].to_numpy()
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h in range(len(d.strata_levels)):
            own, rows = _own(d, h)
            if len(rows) < 2:
                continue
            for sub in (np.ones(len(rows), dtype=bool), g[rows] == "u", g[rows] == "v"):
                dom = np.zeros(d.n, dtype=bool)
                dom[rows[sub]] = True
                if (dom & ~np.isnan(y)).sum() >= 2:
                    a = sv.proportion(own, y[rows], domain=sub)
                    b = sv.proportion(d, y, domain=dom)
                    # at 0 % or 100 % the interval uses R's nrow(design): the CAE's rows on its
                    # own design, every row of the calibrated whole design
                    inside = 0 < a.estimate < 1
                    assert _close(a, b) or (not inside and _close(
                                                               (a.estimate, a.se, a.df, a.n),
                                                               (b.estimate, b.se, b.df, b.n))), (name, h)
                if (dom & ~np.isnan(z)).sum() >= 2:
                    assert _close(sv.mean(own, z[rows], domain=sub), sv.mean(d, z, domain=dom))
                    assert _close(sv.median(own, z[rows], domain=sub), sv.median(d, z, domain=dom))
                if (dom & ~np.isnan(z) & ~np.isnan(z0)).sum() >= 3:
                    assert _close(sv.paired_difference(own, z0[rows], z[rows], domain=sub),
                                  sv.paired_difference(d, z0, z, domain=dom))
                checked += 1
            # Rao-Scott: the same F and numerator df; the denominator df is the CAE's own
            a = sv.chisq_test(own, d.data["d"].to_numpy()[rows], g[rows])
            b = sv.chisq_test(d, "d", "g", domain=d.strata == h)
            assert _close((a.statistic, a.ndf), (b.statistic, b.ndf))
            assert a.ddf == pytest.approx(a.ndf * (len(rows) - 1), rel=1e-12)
    assert checked > 10


@pytest.mark.parametrize("name", list(DESIGNS))
def test_compare_strata_equals_compare_stratum(name):
    d = DESIGNS[name]
    for col in ("y", "z"):
        labels = list(d.strata_levels)
        got = sv.compare_strata(d, col, labels)
        for lab, c in zip(labels, got, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert _close(c, sv.compare_stratum(d, col, lab), 1e-9), (col, lab)


def test_the_pipeline_path_equals_the_public_functions():
    """``domain_means`` over many domains at once (the pipeline) equals one call per domain."""
    d = DESIGNS["calibrated"]
    y = d.data["y"].to_numpy(dtype=float)
    g = d.data["g"].to_numpy()
    D = np.column_stack([np.ones(d.n, dtype=bool), g == "u", g == "v", d.strata == 1])
    res = sv.domain_means(d, np.column_stack([y, 1 - y]), D)
    for j in range(D.shape[1]):
        one = sv.mean(d, y, domain=D[:, j])
        assert _close((res["estimate"][j, 0], res["se"][j, 0], res["df"][j, 0]), (one.estimate, one.se, float(one.df)))
        assert res["estimate"][j, 1] == pytest.approx(1 - one.estimate, rel=1e-12)


def test_lonely_stratum_fail_raises():
    d = sv.stratified_design(_data(), "cae", _register(_data())[0], lonely_psu="fail")
    with pytest.raises(sv.LonelyPSUError):
        sv.proportion(d, "y", domain=d.strata == 0)
    with pytest.raises(sv.LonelyPSUError):
        _project_design(_data(), "fail")
