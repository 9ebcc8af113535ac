"""Domain estimates from a span of rows equal the whole-design computation, to rounding.

``cae_impact.survey`` computes a CAE's estimates (a domain of the consortium design) from the
CAE's rows only (``design_span``, ``span_*``, ``compare_strata``), so that a study costs time
linear in its number of CAEs. R, and the public functions of the module, compute them on the
whole design. These tests check that both give the same numbers to rounding, on designs like
the project's (strata, post-strata within strata, trimming), an uncalibrated one, designs whose
strata are not contiguous, and lonely strata.

The window reductions try to reproduce the order in which numpy (pairwise summation) and
OpenBLAS (``ddot``, ``dsyrk``) add numbers (see the comment block "Row spans" in
``survey.py``), which makes both paths agree bit for bit with the Haswell/Zen kernels. The
tests do not require it: another CPU (AVX-512 kernels), another BLAS or another thread count
orders the sums differently, and two code paths can then only agree to the rounding error of
their arithmetic. The tolerances below are that error, with a margin:

* ``RTOL_SUM`` (sums of the same terms in another order): the difference is at most the sum of
  both rounding errors, ``<= 2 * gamma_k * sum|x_i|`` with ``gamma_k ~ k * 2**-53`` and ``k`` the
  length of the longest sequential run (128-element pairwise leaves, 16-64 element ddot blocks,
  256-row dsyrk blocks, plus log2(n) levels): about 6e-14 of ``sum|x_i|``. 1e-12 is that bound
  with a margin, and the worst case of a plain left-to-right sum of 10,000 terms.
* ``RTOL_EST`` (estimates, standard errors, intervals, design effects, paired t tests, the
  CAE-vs-rest comparisons, the IRLS of the logit interval): ratios, square roots and the smooth
  functions of scipy applied to those sums. Centred influence values ``y - ybar`` lose up to
  ``|ybar| / sd`` (< 10 here) of relative precision, the interval transforms a factor ~10 more.
* ``RTOL_EIG`` (Rao-Scott F, its degrees of freedom and p-value): the statistic goes through a
  generalised inverse of the cell covariance matrix and the eigenvalues of the design-effect
  matrix, whose rounding error grows with the condition number (up to ~1e4 on these tables);
  the p-value's relative error is that of F times ``F * ndf / 2`` at most (< 1e3 here).

Measured (``CAE_SPANS_MEASURE=1 pytest -s tests/test_survey_spans.py`` prints the maxima) on an
AMD EPYC with AVX-512 under the OpenBLAS kernels Prescott, Nehalem, Sandybridge, Haswell, Zen,
SkylakeX and Cooperlake: at most 1.3e-15 for sums, 9.1e-16 for estimates, 8.7e-16 for the
Rao-Scott F and 1.1e-15 for its p-value; the tolerances leave three orders of magnitude or more.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cae_impact import survey as sv

SIZES = [23, 61, 9, 40, 1, 128, 3, 77, 52]  # respondents per stratum (CAE); one lonely


RTOL_SUM = 1e-12  # of sum|x_i|: see the module docstring
RTOL_EST = 1e-11
RTOL_EIG = 1e-9

# Measured maxima are recorded here when CAE_SPANS_MEASURE is set (see _close).
MEASURED: dict[str, float] = {}


def _close(a, b, rtol: float, what: str = "") -> bool:
    """Equal to ``rtol`` (relative), recursively through dataclasses, tuples and arrays.

    Integers, strings and booleans must be equal; NaN equals NaN; an infinity equals the same
    infinity. Two floats ``x``, ``y`` are close when ``|x - y| <= rtol * max(|x|, |y|)`` (so an
    exact 0 must be an exact 0 on both paths: zeros come from empty sums or clipped intervals,
    not from cancellation, in what is compared here).
    """
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and _close(
            dataclasses.astuple(a), dataclasses.astuple(b), rtol, what
        )
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_close(x, y, rtol, what) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and all(
            _close(float(x), float(y), rtol, what)
            for x, y in zip(a.ravel(), b.ravel(), strict=True)
        )
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        scale = max(abs(a), abs(b))
        rel = abs(a - b) / scale if scale > 0 else 0.0
        if what:
            MEASURED[what] = max(MEASURED.get(what, 0.0), rel)
        return rel <= rtol
    return a == b


def _sum_close(got, ref, abs_sum, what: str) -> bool:
    """Two float sums of the same terms in different orders: ``|got - ref| <= RTOL_SUM * abs_sum``.

    ``abs_sum`` is the sum of the absolute values of the terms (arrays: elementwise), the scale
    of the rounding error bound of any summation order.
    """
    got, ref, abs_sum = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (got, ref, abs_sum))
    if got.shape != ref.shape:
        return False
    err = np.abs(got - ref)
    rel = np.where(
        abs_sum > 0, err / np.where(abs_sum > 0, abs_sum, 1.0), np.where(err > 0, np.inf, 0.0)
    )
    MEASURED[what] = max(MEASURED.get(what, 0.0), float(rel.max(initial=0.0)))
    return bool((rel <= RTOL_SUM).all())


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


@pytest.fixture(scope="module", autouse=True)
def _report_measured():
    yield
    if os.environ.get("CAE_SPANS_MEASURE"):
        for k, v in sorted(MEASURED.items()):
            print(f"MEASURED {k}: {v:.3e}")


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
            assert _sum_close(sv._sumsq_in(v, a, n), sv._sumsq(full), v @ v, "sum")
            cols = rng.standard_normal((b - a, 2))
            fullc = np.zeros((n, 2))
            fullc[a:b] = cols
            assert _sum_close(
                sv._sumsq_cols_in(cols, a, n),
                [sv._sumsq(np.ascontiguousarray(fullc[:, j])) for j in range(2)],
                (cols * cols).sum(axis=0),
                "sum",
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
            assert _sum_close(sv._sum_in(v, a, n), full.sum(), np.abs(v).sum(), "sum")
            cols = np.asfortranarray(rng.standard_normal((b - a, 3)))
            fullc = np.zeros((n, 3))
            fullc[a:b] = cols
            assert _sum_close(
                sv._sum_in(cols, a, n),
                [fullc[:, j].copy().sum() for j in range(3)],
                np.abs(cols).sum(axis=0),
                "sum",
            )
            ss = v @ v
            assert _sum_close(
                sv._sumsq_in(v, a, n), (full[:, None].T @ full[:, None])[0, 0], ss, "sum"
            )
            assert _sum_close(sv._sumsq_in(v, a, n), sv._sumsq(full), ss, "sum")
            assert _sum_close(
                sv._sumsq_cols_in(cols, a, n),
                [(fullc[:, [j]].T @ fullc[:, [j]])[0, 0] for j in range(3)],
                (cols * cols).sum(axis=0),
                "sum",
            )
            k = int(rng.integers(2, 12))
            c = rng.standard_normal((b - a, k))
            fullk = np.zeros((n, k))
            fullk[a:b] = c
            assert _sum_close(
                sv._crossprod_in(c, a, n), fullk.T @ fullk, np.abs(c).T @ np.abs(c), "sum"
            )
            base = rng.standard_normal(n)
            repl = base.copy()
            repl[a:b] = v
            assert _sum_close(
                sv._PairwiseTree(base).sum_replaced(a, v), repl.sum(), np.abs(repl).sum(), "sum"
            )


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
                    assert _close(one, refs[j], RTOL_EST, f"prop-{method}"), (method, j)
                    assert got[j] is None or _close(got[j], refs[j], RTOL_EST, f"prop-{method}"), (
                        method,
                        j,
                    )
                    checked += 1
            means = sv.span_means(sp, np.repeat(z[:, None], len(doms), axis=1)[s0:s1], D[s0:s1])
            for j, dom in enumerate(doms):
                if (dom & ~np.isnan(z)).any():
                    assert _close(means[j], sv.mean(d, z, domain=dom), RTOL_EST, "mean")
                    assert _close(
                        sv.span_quantile(sp, z[s0:s1], dom[s0:s1], 0.5),
                        sv.median(d, z, domain=dom),
                        RTOL_EST,
                        "median",
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
                    assert _close(dataclasses.replace(got, p_value=p), ref, RTOL_EST, "paired")
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
            assert _close((f, ndf, ddf), (ref.statistic, ref.ndf, ref.ddf), RTOL_EIG, "rao-scott")
            assert _close(float(stats.f.sf(f, ndf, ddf)), ref.p_value, RTOL_EIG, "rao-scott-p")


@pytest.mark.parametrize("name", list(DESIGNS))
def test_compare_strata_equals_compare_stratum(name):
    d = DESIGNS[name]
    for col in ("y", "z"):
        labels = list(d.strata_levels)
        got = sv.compare_strata(d, col, labels)
        for lab, g in zip(labels, got, strict=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert _close(g, sv.compare_stratum(d, col, lab), RTOL_EST, "compare"), (col, lab)


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
        assert _close(fast, ref, RTOL_EST, "irls")
        assert _close(plain_fast, plain_ref, RTOL_EST, "irls")
        diverged += math.isnan(plain_ref[0])
    assert diverged > 0  # the divergent case (large rescaled weights) is exercised
