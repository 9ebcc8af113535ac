"""The in-house vectorised linearisation gives svy's numbers (issue 19, performance).

On the project's designs (strata without clusters, fpc, post-stratified on one margin then
trimmed, or not calibrated; no single-PSU stratum) ``domain_means``, ``rao_scott`` and
``compare_strata`` compute with numpy instead of calling svy once per domain set or table
(``domains._index``). Each test runs both paths (``domains.IN_HOUSE``) on the same inputs
and compares them to ``RTOL``: the two add the same numbers in different orders, so they agree
to rounding only (nothing here asks for bit-identity, which depends on the CPU's SIMD kernels).
Standard errors that are rounding noise (calibrated shares, true variance 0) are compared in
absolute terms (``ATOL``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cae_impact import estimation as sv
from cae_impact.estimation import domains
from test_survey_domains import _data, _project_design

RTOL = 1e-10
ATOL = 1e-14
SIZES = [23, 61, 9, 40, 2, 128, 3, 77, 52]  # no lonely stratum: the whole design is in house too


def _designs() -> dict[str, sv.SurveyDesign]:
    df = _data(seed=11, sizes=SIZES)
    pop = {f"cae-{h + 1}": 4 * n + 3 for h, n in enumerate(SIZES)}
    whole = _project_design(df)
    rows = np.flatnonzero(whole.strata == 3)
    return {
        "calibrated": whole,
        "calibrated-cae": whole.rows(rows),
        "calibrated-subset": whole.subset(df["g"] != "w"),
        "uncalibrated": sv.stratified_design(df, "cae", pop, lonely_psu="adjust"),
        "no-fpc": sv.svydesign(df, strata="cae", weights=np.linspace(1.0, 3.0, len(df))),
        "cells": _cells_design(df),
    }


def _cells_design(df) -> sv.SurveyDesign:
    """The reports' variance design: cells as strata with their own fpc, and a census stratum of
    one row (a CAE's lone respondent without sex or stage)."""
    import pandas as pd

    cell = (df["cae"].astype(str) + "|" + df["g"].astype(str)).to_numpy()
    cell[0] = "cae-1|?"
    n = pd.Series(cell).value_counts()
    pop = pd.DataFrame({"cell": n.index, "Freq": [1.0 if k == 1 else 3.0 * k + 2 for c, k in n.items()]})
    design = sv.svydesign(df.assign(cell=cell), strata="cae", weights=np.linspace(1.0, 3.0, len(df)),
                          lonely_psu="adjust")
    out = sv.cells_as_strata(design, "cell", pop)
    assert ((out.n_psu == 1).sum() >= 1) and (out.n_psu >= 1).all()
    return out


DESIGNS = _designs()


def _both(monkeypatch, fn, *args, **kw):
    monkeypatch.setattr(domains, "IN_HOUSE", True)
    fast = fn(*args, **kw)
    monkeypatch.setattr(domains, "IN_HOUSE", False)
    ref = fn(*args, **kw)
    monkeypatch.setattr(domains, "IN_HOUSE", True)
    return fast, ref


def _assert_close(a, b, what: str, atol: float = 0.0) -> None:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert (np.isnan(a) == np.isnan(b)).all(), what
    ok = ~np.isnan(a)
    np.testing.assert_allclose(a[ok], b[ok], rtol=RTOL, atol=atol, err_msg=what)


@pytest.mark.parametrize("name", list(DESIGNS))
def test_the_projects_designs_take_the_in_house_path(name):
    assert domains._index(DESIGNS[name]) is not None


def test_other_designs_go_to_svy():
    df = _data(seed=11, sizes=[23, 1, 9])  # a lonely stratum: R's lonely-PSU rules, by svy
    assert domains._index(_project_design(df)) is None
    clustered = df.assign(clu=[f"{c}-{i // 3}" for i, c in enumerate(df["cae"])])
    assert domains._index(sv.svydesign(clustered, strata="cae", clusters="clu",
                                          weights=np.full(len(df), 2.5), lonely_psu="adjust")) is None


@pytest.mark.parametrize("name", list(DESIGNS))
@pytest.mark.parametrize("statistic", ["mean", "total"])
def test_domain_means_equal_svys(monkeypatch, name, statistic):
    d = DESIGNS[name]
    data = d.data
    Y = np.column_stack([sv.estimators.values(d, c) for c in ("y", "z", "z0")])
    Y = np.column_stack([Y, np.where(data["d"] == "p", 1.0, np.where(data["d"].isna(), np.nan, 0.0))])
    D = np.column_stack([np.ones(d.n, dtype=bool)] + [(data["g"] == g).to_numpy() for g in "uvw"]
                        + [(data["sex"] == "F").to_numpy(), np.zeros(d.n, dtype=bool)])
    fast, ref = _both(monkeypatch, sv.domain_means, d, Y, D, statistic=statistic)
    for k in ("estimate", "df", "n", "weighted_base"):
        _assert_close(fast[k], ref[k], f"{name} {k}")
    _assert_close(fast["se"], ref["se"], f"{name} se", atol=ATOL * max(1.0, np.nanmax(np.abs(ref["estimate"]))))


@pytest.mark.parametrize("name", list(DESIGNS))
def test_paired_domain_means_and_quantiles_equal_svys(monkeypatch, name):
    d = DESIGNS[name]
    z = sv.estimators.values(d, "z")
    D = np.column_stack([np.ones(d.n, dtype=bool)] + [(d.data["g"] == g).to_numpy() for g in "uvw"])
    fast, ref = _both(monkeypatch, sv.domain_quantiles, d, z, D, 0.5)
    for a, b in zip(fast, ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            _assert_close(dataclasses.astuple(a), dataclasses.astuple(b), name)


@pytest.mark.parametrize("name", list(DESIGNS))
def test_rao_scott_equals_svys(monkeypatch, name):
    d = DESIGNS[name]
    codes = {c: np.unique(d.data[c].astype(str), return_inverse=True)[1] for c in ("d", "g", "sex", "stage")}
    resp = np.where(d.data["z"].isna(), -1, codes["d"])
    # a table with empty cells: the answer restricted by the group (C' D^-1 C singular)
    sparse_resp = np.where(codes["g"] == 0, np.minimum(resp, 1), resp)
    for r in (resp, sparse_resp):
        fast, ref = _both(monkeypatch, sv.rao_scott, d, r, [codes["g"], codes["sex"], codes["stage"]])
        for a, b in zip(fast, ref, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                _assert_close(a, b, name)


def test_chisq_test_equals_svys(monkeypatch):
    fast, ref = _both(monkeypatch, sv.chisq_test, DESIGNS["calibrated"], "d", "g")
    _assert_close([fast.statistic, fast.ndf, fast.ddf, fast.p_value],
                  [ref.statistic, ref.ndf, ref.ddf, ref.p_value], "chisq")


@pytest.mark.parametrize("name", ["calibrated", "uncalibrated", "no-fpc"])
def test_compare_strata_equals_svys(monkeypatch, name):
    d = DESIGNS[name]
    labels = list(d.strata_levels)
    for y in ("y", "z"):
        fast, ref = _both(monkeypatch, sv.compare_strata, d, y, labels)
        for a, b in zip(fast, ref, strict=True):
            _assert_close(dataclasses.astuple(a), dataclasses.astuple(b), f"{name} {y}")
