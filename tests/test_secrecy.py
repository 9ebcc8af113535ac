"""The linear-programming attack (cae_impact.analysis.secrecy) and the protection it drives.

Small tables whose leaks are known by hand: the attack must find each kind of relation an
attacker can use (categories and their base, a share and the categories of its question, the
consortium and its CAEs, a breakdown's groups and its total, group sizes published as bases
elsewhere, bands), every bound must hold for the true counts, and ``protect_table`` must leave
nothing exposed. The demo study's own audit is checked in tests/test_notebooks.py's build.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest

from cae_impact.analysis import disclosure as dc
from cae_impact.analysis import secrecy
from cae_impact.spec.codebook import Indicator

FREQ = NS(codes=["w", "m", "r", "n", "dk"], valid_codes=["w", "m", "r", "n"])
SEX = NS(codes=["f", "h"], valid_codes=["f", "h"])
CODEBOOK = NS(scale_of=lambda q: {"freq": FREQ, "sex": SEX}[q])
DIST = Indicator("freq_dist", "d1", "Fréquence", ("freq",),
                 {"kind": "distribution", "question": "freq"}, ("sex",))
MONTHLY = Indicator("freq_monthly", "d1", "Au moins une fois par mois", ("freq",),
                    {"kind": "share", "question": "freq", "codes": ["w", "m"]}, ("sex",))
PROFILE_SEX = Indicator("profile_sex", "profile", "Sexe", ("sex",),
                        {"kind": "distribution", "question": "sex"})
INDICATORS = {i.id: i for i in (DIST, MONTHLY, PROFILE_SEX)}
GROUPS = {("sex", "f"): ["f"], ("sex", "h"): ["h"]}

# true counts: target -> group -> code -> count
TRUTH = {
    "cae-1": {"f": {"w": 12, "m": 3, "r": 9, "n": 8, "dk": 1}, "h": {"w": 7, "m": 6, "r": 2, "n": 11, "dk": 0}},
    "cae-2": {"f": {"w": 20, "m": 9, "r": 14, "n": 6, "dk": 2}, "h": {"w": 15, "m": 11, "r": 8, "n": 9, "dk": 1}},
}


def _table(truth=TRUTH) -> pd.DataFrame:
    """The study table the estimation would give (unweighted shares) for the truth."""
    cells: dict[tuple[str, str, str], dict[str, int]] = {}
    for t, groups in truth.items():
        for g, codes in groups.items():
            cells[(t, "sex", g)] = dict(codes)
    targets = list(truth)
    for t in targets:
        cells[(t, "total", "")] = {c: sum(truth[t][g][c] for g in truth[t]) for c in FREQ.codes}
    for b, g in [("total", ""), ("sex", "f"), ("sex", "h")]:
        cells[("consortium", b, g)] = {c: sum(cells[(t, b, g)][c] for t in targets) for c in FREQ.codes}
    rows = []
    for (t, b, g), x in cells.items():
        base = sum(x[c] for c in FREQ.valid_codes)
        for c in FREQ.valid_codes:
            rows.append(_row("freq_dist", "distribution", t, b, g, c, x[c], base))
        rows.append(_row("freq_monthly", "share", t, b, g, "", x["w"] + x["m"], base))
    for t in [*targets, "consortium"]:
        f = sum(cells[(t, "sex", "f")][c] for c in FREQ.codes)
        h = sum(cells[(t, "sex", "h")][c] for c in FREQ.codes)
        for code, k in (("f", f), ("h", h)):
            rows.append(_row("profile_sex", "distribution", t, "total", "", code, k, f + h))
    return pd.DataFrame(rows)


def _row(ind, kind, t, b, g, cat, k, base):
    return {"indicator_id": ind, "kind": kind, "target": t, "breakdown": b, "group": g,
            "category": cat, "estimate": k / base if base else np.nan, "se": 0.01,
            "ci_low": 0.0, "ci_high": 1.0, "n_unweighted": base, "base_weighted": float(base),
            "n_count": float(k), "suppressed": False, "suppression_reason": "",
            "band_low": np.nan, "band_high": np.nan}


def _audit(table):
    return secrecy.audit_table(table, CODEBOOK, INDICATORS, group_codes=GROUPS)


def _hide(table, **where):
    m = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        m &= (table[k] == v).to_numpy()
    assert m.sum() >= 1
    out = table.copy()
    out.loc[m, "suppressed"] = True
    return out


def _cell(result, **where):
    c = result.cells
    for k, v in where.items():
        c = c[c[k] == v]
    assert len(c) == 1, c
    return c.iloc[0]


def test_a_lone_hidden_category_is_pinned_by_its_base():
    t = _hide(_table(), indicator_id="freq_dist", target="cae-1", breakdown="total", category="m")
    r = _cell(_audit(t), target="cae-1", breakdown="total", category="m")
    assert (r["count_min"], r["count_max"]) == (9, 9) and r["why"] == "pinned"


def test_a_share_reveals_the_categories_it_is_made_of():
    # « au moins une fois par mois » = « chaque semaine » + « chaque mois »: hiding two
    # categories of the women's distribution is not enough while the share is published
    t = _table()
    t = t[t["target"] == "cae-1"].reset_index(drop=True)
    for cat in ("m", "r"):
        t = _hide(t, indicator_id="freq_dist", breakdown="sex", group="f", category=cat)
        t = _hide(t, indicator_id="freq_dist", breakdown="total", category=cat)
    r = _cell(_audit(t), breakdown="sex", group="f", category="m")
    assert r["why"] == "pinned" and r["count_min"] == 3
    # without the share, the women's « chaque mois » is anything from 0 to 12
    t2 = _hide(t, indicator_id="freq_monthly")
    r2 = _cell(_audit(t2), breakdown="sex", group="f", category="m")
    assert (r2["count_min"], r2["count_max"]) == (0, 12)


def test_group_sizes_published_as_bases_bound_a_hidden_profile_count():
    t = _hide(_table(), indicator_id="profile_sex", target="cae-1")
    t = _hide(t, indicator_id="profile_sex", target="cae-2")
    res = _audit(t)
    r = _cell(res, indicator_id="profile_sex", target="cae-1", category="f")
    # 33 women in cae-1; the base of their cells (32 valid answers) is a lower bound; the
    # consortium's 84 women less cae-2's at least 49 (its women's base) an upper bound
    assert (r["count_min"], r["count_max"]) == (32, 35)


def test_a_band_is_a_bound_and_its_cell_can_be_recovered_like_any_other():
    t = _table()
    m = ((t["indicator_id"] == "freq_dist") & (t["target"] == "cae-1") & (t["breakdown"] == "sex")
         & (t["group"] == "f") & (t["category"] == "m"))
    t.loc[m, ["suppressed", "band_high"]] = [True, 0.2]  # 3 of 32 « moins de 2 sur 10 »
    res = _audit(t)
    r = _cell(res, target="cae-1", breakdown="sex", group="f", category="m")
    assert r["coded"] and r["why"] == "pinned" and r["count_min"] == 3


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bounds_hold_for_the_truth_and_protection_leaves_nothing_exposed(seed):
    rng = np.random.default_rng(seed)
    truth = {t: {g: {c: int(rng.integers(0, 9)) for c in FREQ.codes} for g in ("f", "h")}
             for t in ("cae-1", "cae-2", "cae-3")}
    table = _table(truth)
    flagged = dc.secondary_suppression(dc.primary_suppression(table))
    sizes = {t: sum(sum(v.values()) for v in truth[t].values()) for t in truth}
    sizes["consortium"] = sum(sizes.values())
    before = secrecy.audit_table(flagged, CODEBOOK, INDICATORS, group_codes=GROUPS,
                                 sample_sizes=sizes)
    true_count = flagged["n_count"].to_numpy()
    for r in before.cells.itertuples():
        assert r.count_min <= true_count[r.row] <= r.count_max
    out, after = secrecy.protect_table(flagged, CODEBOOK, INDICATORS, group_codes=GROUPS,
                                       sample_sizes=sizes)
    assert after.exposed.empty
    assert after.n_lp > 0
    # protection only adds suppression to what the rules hid (or publishes a complementary
    # cell that was given exactly anyway)
    for r in after.cells.itertuples():
        assert r.count_min <= true_count[r.row] <= r.count_max


def test_the_lp_bounds_are_those_of_enumeration_on_a_tiny_table():
    """Every integer completion of the published figures, enumerated: the attack's bounds
    are exactly their smallest and largest value (the relaxation is tight here)."""
    truth = {"cae-1": {"f": {"w": 2, "m": 1, "r": 0, "n": 3, "dk": 0},
                       "h": {"w": 1, "m": 2, "r": 1, "n": 0, "dk": 0}}}
    t = _table(truth)
    t = t[t["target"] == "cae-1"].reset_index(drop=True)
    hide = (t["indicator_id"] == "freq_dist") & (t["breakdown"] == "sex") & t["category"].isin(["w", "m"])
    t.loc[hide, "suppressed"] = True
    res = _audit(t)
    # unknowns fw, fm, hw, hm >= 0 with fw + fm = 3 and hw + hm = 3 (the shares), fw + hw = 3
    # and fm + hm = 3 (the totals; no unknown group): enumerate
    fw_values = [fw for fw, fm, hw, hm in itertools.product(range(4), repeat=4)
                 if fw + fm == 3 and hw + hm == 3 and fw + hw == 3 and fm + hm == 3]
    r = _cell(res, target="cae-1", breakdown="sex", group="f", category="w")
    assert (r["count_min"], r["count_max"]) == (min(fw_values), max(fw_values)) == (0, 3)


def test_a_cae_whose_respondents_are_all_women_is_protected():
    """Every table by sex says the men's group is empty: the tables themselves pin the share of
    women at 100 %, which the rules give only as a band. The protection hides more until
    nothing hidden or banded can be pinned."""
    truth = {t: {g: dict(c) for g, c in groups.items()} for t, groups in TRUTH.items()}
    truth["cae-1"]["h"] = {c: 0 for c in FREQ.codes}
    truth["cae-3"] = {"f": {"w": 9, "m": 7, "r": 6, "n": 5, "dk": 1}, "h": {"w": 8, "m": 6, "r": 7, "n": 9, "dk": 0}}
    table = _table(truth)
    flagged = dc.secondary_suppression(dc.primary_suppression(table))
    sizes = {t: sum(sum(v.values()) for v in truth[t].values()) for t in truth}
    sizes["consortium"] = sum(sizes.values())
    before = secrecy.audit_table(flagged, CODEBOOK, INDICATORS, group_codes=GROUPS,
                                 sample_sizes=sizes)
    assert not before.exposed.empty
    out, after = secrecy.protect_table(flagged, CODEBOOK, INDICATORS, group_codes=GROUPS,
                                       sample_sizes=sizes)
    assert after.exposed.empty
    women = out[(out["indicator_id"] == "profile_sex") & (out["target"] == "cae-1")]
    assert women["suppressed"].all()  # 100 % is never printed
