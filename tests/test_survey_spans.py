"""Domain estimates from a span of rows equal the whole-design computation, bit for bit.

``cae_impact.survey`` computes a CAE's estimates (a domain of the consortium design) from the
CAE's rows only (``design_span``, ``span_*``, ``compare_strata``), so that a study costs time
linear in its number of CAEs. R, and the public functions of the module, compute them on the
whole design. These tests check that both give the same floating-point numbers, not merely
close ones, on designs like the project's (strata, post-strata within strata, trimming), an
uncalibrated one, designs whose strata are not contiguous, and lonely strata.

The window reductions reproduce the order in which numpy (pairwise summation) and OpenBLAS
(``ddot``, ``dsyrk``) add numbers (see the comment block "Row spans" in ``survey.py``);
``test_window_reductions_equal_whole_vector_reductions`` checks that assumption directly.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cae_impact import survey as sv

SIZES = [23, 61, 9, 40, 1, 128, 3, 77, 52]  # respondents per stratum (CAE); one lonely


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN, recursively through dataclasses and tuples."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and _same(dataclasses.astuple(a), dataclasses.astuple(b))
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
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
        # designs the spans do not cover (clusters, raking): the whole design, same numbers
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


def _spans(d: sv.SurveyDesign):
    yield sv.design_span(d), np.ones(d.n, dtype=bool)
    for h in range(len(d.strata_levels)):
        rows = np.flatnonzero(d.strata == h)
        yield sv.design_span(d, rows), d.strata == h


def _domains(d: sv.SurveyDesign, tmask: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    g = d.data["g"].to_numpy()
    return [
        tmask,
        tmask & (g == "u"),
        tmask & (g == "v"),
        tmask & (rng.random(d.n) < 0.5),
        tmask & (rng.random(d.n) < 0.05),
        np.zeros(d.n, dtype=bool),
    ]


def test_long_sums_of_squares_are_chunked_the_same_way_in_windows():
    """Above 10,000 elements the sum of squares goes by chunks (no OpenBLAS thread split)."""
    rng = np.random.default_rng(1)
    for n in (10_001, 16_384, 16_385, 30_000):
        for _ in range(30):
            a = int(rng.integers(0, n))
            b = min(n, a + int(rng.integers(1, 400)))
            v = rng.standard_normal(b - a)
            full = np.zeros(n)
            full[a:b] = v
            assert sv._sumsq_in(v, a, n) == sv._sumsq(full)
            cols = rng.standard_normal((b - a, 2))
            fullc = np.zeros((n, 2))
            fullc[a:b] = cols
            assert np.array_equal(
                sv._sumsq_cols_in(cols, a, n),
                [sv._sumsq(np.ascontiguousarray(fullc[:, j])) for j in range(2)],
            )
        x = rng.standard_normal(n)
        assert sv._sumsq(x) == pytest.approx(float(x @ x), rel=1e-12)


def test_window_reductions_equal_whole_vector_reductions():
    """The assumption behind spans: summing a window of the right shape gives the whole sum."""
    rng = np.random.default_rng(0)
    for n in (5, 64, 127, 128, 129, 300, 568, 1000, 4097, 9000):
        for _ in range(40):
            a = int(rng.integers(0, n))
            b = min(n, a + int(rng.integers(1, 300)))
            v = rng.standard_normal(b - a)
            full = np.zeros(n)
            full[a:b] = v
            assert sv._sum_in(v, a, n) == full.sum()
            cols = np.asfortranarray(rng.standard_normal((b - a, 3)))
            fullc = np.zeros((n, 3))
            fullc[a:b] = cols
            assert np.array_equal(
                sv._sum_in(cols, a, n), [fullc[:, j].copy().sum() for j in range(3)]
            )
            assert (
                sv._sumsq_in(v, a, n) == (full[:, None].T @ full[:, None])[0, 0] == sv._sumsq(full)
            )
            assert np.array_equal(
                sv._sumsq_cols_in(cols, a, n),
                [(fullc[:, [j]].T @ fullc[:, [j]])[0, 0] for j in range(3)],
            )
            k = int(rng.integers(2, 12))
            c = rng.standard_normal((b - a, k))
            fullk = np.zeros((n, k))
            fullk[a:b] = c
            assert np.array_equal(sv._crossprod_in(c, a, n), fullk.T @ fullk)
            base = rng.standard_normal(n)
            repl = base.copy()
            repl[a:b] = v
            assert sv._PairwiseTree(base).sum_replaced(a, v) == repl.sum()


@pytest.mark.parametrize("name", list(DESIGNS))
def test_span_estimates_equal_whole_design_estimates(name):
    d = DESIGNS[name]
    rng = np.random.default_rng(len(name))
    y, z, z0 = (d.data[c].to_numpy(dtype=float) for c in ("y", "z", "z0"))
    checked = 0
    for sp, tmask in _spans(d):
        s0, s1 = sp.start, sp.stop
        doms = _domains(d, tmask, rng)
        D = np.column_stack(doms)
        Y = np.repeat(y[:, None], len(doms), axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for method in ("logit", "beta", "mean", "likelihood"):
                refs = []
                for dom in doms:
                    try:
                        refs.append(sv.proportion(d, y, domain=dom, method=method))
                    except ValueError as err:  # e.g. the likelihood profile has too few points
                        refs.append(err)
                if not any(isinstance(r, Exception) for r in refs):
                    got = sv.span_proportions(sp, Y[s0:s1], D[s0:s1], method=method)
                else:
                    got = [None] * len(doms)
                for j, dom in enumerate(doms):
                    if not (dom & ~np.isnan(y)).any():
                        continue
                    if isinstance(refs[j], Exception):
                        with pytest.raises(type(refs[j])):
                            sv.span_proportions(sp, Y[s0:s1, [j]], D[s0:s1, [j]], method=method)
                        continue
                    one = sv.span_proportions(sp, Y[s0:s1, [j]], D[s0:s1, [j]], method=method)[0]
                    assert _same(one, refs[j]), (method, j)
                    assert got[j] is None or _same(got[j], refs[j]), (method, j)
                    checked += 1
            means = sv.span_means(sp, np.repeat(z[:, None], len(doms), axis=1)[s0:s1], D[s0:s1])
            for j, dom in enumerate(doms):
                if (dom & ~np.isnan(z)).any():
                    assert _same(means[j], sv.mean(d, z, domain=dom))
                    assert _same(
                        sv.span_quantile(sp, z[s0:s1], dom[s0:s1], 0.5), sv.median(d, z, domain=dom)
                    )
            for dom in doms:
                if (dom & ~np.isnan(z) & ~np.isnan(z0)).sum() >= 2:
                    got, t, df = sv.span_paired_difference(sp, z0[s0:s1], z[s0:s1], dom[s0:s1])
                    ref = sv.paired_difference(d, z0, z, domain=dom)
                    p = (
                        float(2 * stats.t.sf(abs(t), df))
                        if np.isfinite(t) and df > 0
                        else float("nan")
                    )
                    assert _same(dataclasses.replace(got, p_value=p), ref)
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("name", list(DESIGNS))
def test_span_rao_scott_equals_chisq_test(name):
    d = DESIGNS[name]
    rng = np.random.default_rng(11)
    dcode = {v: i for i, v in enumerate(sorted(set(d.data["d"])))}
    gcode = {v: i for i, v in enumerate(sorted(set(d.data["g"])))}
    rc = d.data["d"].map(dcode).to_numpy()
    gc = d.data["g"].map(gcode).to_numpy()
    rc = np.where(rng.random(d.n) < 0.1, -1, rc)
    for sp, tmask in _spans(d):
        s0, s1 = sp.start, sp.stop
        for dom in _domains(d, tmask, rng)[:4]:
            ok = dom & (rc >= 0) & (gc >= 0)
            rs = pd.Series(np.where(ok, d.data["d"], None), dtype=object)
            cs = pd.Series(np.where(ok, d.data["g"], None), dtype=object)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ref = sv.chisq_test(d.assign(_r=rs, _c=cs), "_r", "_c", domain=ok)
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as err:
                with pytest.raises(type(err)), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sv.span_chisq_f(sp, rc[s0:s1], gc[s0:s1], ok[s0:s1])
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f, ndf, ddf = sv.span_chisq_f(sp, rc[s0:s1], gc[s0:s1], ok[s0:s1])
            assert (f, ndf, ddf) == (ref.statistic, ref.ndf, ref.ddf)
            assert float(stats.f.sf(f, ndf, ddf)) == ref.p_value


@pytest.mark.parametrize("name", list(DESIGNS))
def test_compare_strata_equals_compare_stratum(name):
    d = DESIGNS[name]
    for col in ("y", "z"):
        labels = list(d.strata_levels)
        got = sv.compare_strata(d, col, labels)
        for lab, g in zip(labels, got, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert _same(g, sv.compare_stratum(d, col, lab)), (col, lab)


def test_designs_without_spans_use_the_whole_design():
    for name in ("clustered", "raked"):
        d = DESIGNS[name]
        assert sv.design_span(d, np.flatnonzero(d.strata == 2)).full, name


def test_spans_hold_whole_strata_and_post_strata():
    d = DESIGNS["calibrated"]
    for h in range(len(d.strata_levels)):
        rows = np.flatnonzero(d.strata == h)
        sp = sv.design_span(d, rows)
        assert (sp.start, sp.stop) == (rows[0], rows[-1] + 1)  # a CAE's rows, nothing more
    shuffled = DESIGNS["shuffled-rows"]
    sp = sv.design_span(shuffled, np.flatnonzero(shuffled.strata == 0))
    assert set(shuffled.strata[sp.start : sp.stop]) > {0}  # widened to whole strata
    # a post-stratification across strata makes every span the whole design
    df = _data()
    pop, _ = _register(df)
    across = sv.post_stratify(
        sv.stratified_design(df, "cae", pop, lonely_psu="adjust"), "sex", {"F": 900.0, "M": 800.0}
    )
    assert sv.design_span(across, np.flatnonzero(across.strata == 2)).full


def test_lonely_stratum_fail_raises_in_spans_too():
    d = _project_design(_data(), "fail")
    sp = sv.design_span(d, np.flatnonzero(d.strata == 0))
    y = d.data["y"].to_numpy()
    with pytest.raises(sv.LonelyPSUError):
        sv.proportion(d, y, domain=d.strata == 0)
    with pytest.raises(sv.LonelyPSUError):
        sv.span_proportions(
            sp, y[sp.start : sp.stop, None], (d.strata == 0)[sp.start : sp.stop, None]
        )


def test_fast_irls_equals_reference_irls():
    """The 0/1 shortcut of the IRLS gives the element-by-element iterates, divergence included."""
    rng = np.random.default_rng(2)
    diverged = 0
    for _ in range(3000):
        n = int(rng.integers(1, 90))
        y = (rng.random(n) < rng.choice([0.0, 0.01, 0.2, 0.5, 0.9, 1.0])).astype(float)
        prior = rng.choice(
            [rng.uniform(0.5, 2, n), rng.uniform(0.01, 40, n), rng.uniform(20, 200, n)]
        )
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = sv._irls_logit(y, prior)
            ref = sv._irls_logit_reference(y, prior)
            plain_fast = sv._irls_logit(y, prior, restart=False)
            plain_ref = sv._irls_logit_reference(y, prior, restart=False)
        assert _same(fast, ref)
        assert _same(plain_fast, plain_ref)
        diverged += math.isnan(plain_ref[0])
    assert diverged > 0  # the divergent case (large rescaled weights) is exercised
