"""Disclosure control of the indicator table: rules, and attempts to break it.

The table is built like the real one (CONTRACTS §5): design-based estimates from
``cae_impact.estimation`` on synthetic microdata of four CAEs, for a share, a four-category
distribution and a mean, by consortium and CAE, in total and by sex. The attacks below are
written independently of ``cae_impact.analysis.disclosure``: they only read the published table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cae_impact import estimation as sv
from cae_impact.analysis import disclosure as dc

SIZES = {"cae-1": (46, 120), "cae-2": (31, 80), "cae-3": (23, 60), "cae-4": (13, 30)}  # n, N
CONTRACT = [
    "indicator_id",
    "indicator_label",
    "domain_id",
    "target",
    "breakdown",
    "group",
    "category",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "n_unweighted",
    "base_weighted",
    "comparison",
    "p_value",
    "p_adjusted",
    "significant",
    "flag_caution",
    "suppressed",
    "suppression_reason",
]


def _microdata(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for cae, (n, _) in SIZES.items():
        parts.append(
            pd.DataFrame(
                {
                    "cae": cae,
                    "sex": rng.choice(["F", "M"], n, p=[0.6, 0.4]),
                    "q": rng.random(n) < (0.9 if cae == "cae-1" else 0.5),
                    "d": rng.choice(list("abcd"), n, p=[0.45, 0.3, 0.18, 0.07]),
                    "inc": rng.normal(1800, 300, n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def build_table(seed: int = 11) -> pd.DataFrame:
    df = _microdata(seed)
    design = sv.stratified_design(df, "cae", {k: v[1] for k, v in SIZES.items()})
    design = design.assign(qf=df["q"].astype(float))
    rows = []
    for target in ["consortium", *SIZES]:
        in_target = (
            np.ones(len(df), bool) if target == "consortium" else (df["cae"] == target).to_numpy()
        )
        for breakdown, groups in [("total", [None]), ("sex", ["F", "M"])]:
            for group in groups:
                mask = in_target & (True if group is None else (df["sex"] == group).to_numpy())
                common = {
                    "target": target,
                    "breakdown": breakdown,
                    "group": group,
                    "domain_id": "d1",
                    "n_unweighted": int(mask.sum()),
                    "comparison": None,
                    "p_value": np.nan,
                }
                p = sv.proportion(design, "qf", domain=mask)
                row = {
                    **common,
                    "indicator_id": "i_share",
                    "indicator_label": "Part de oui",
                    "category": None,
                    "estimate": p.estimate,
                    "se": p.se,
                    "ci_low": p.ci_low,
                    "ci_high": p.ci_high,
                    "base_weighted": p.weighted_base,
                    "n_count": int((df["q"].to_numpy() & mask).sum()),
                }
                if target != "consortium" and breakdown == "total":
                    c = sv.compare_stratum(design, "qf", target)
                    row.update(comparison="reste du consortium", p_value=c.p_value)
                rows.append(row)
                dist = sv.distribution(design, "d", levels=list("abcd"), domain=mask)
                for _, r in dist.iterrows():
                    rows.append(
                        {
                            **common,
                            "indicator_id": "i_dist",
                            "indicator_label": "Répartition",
                            "category": r["level"],
                            "estimate": r["estimate"],
                            "se": r["se"],
                            "ci_low": r["ci_low"],
                            "ci_high": r["ci_high"],
                            "base_weighted": r["weighted_base"],
                            "n_count": int(r["n"]),
                        }
                    )
                m = sv.mean(design, "inc", domain=mask)
                lo, hi = m.confint()
                rows.append(
                    {
                        **common,
                        "indicator_id": "i_mean",
                        "indicator_label": "Revenu moyen",
                        "category": None,
                        "estimate": m.estimate,
                        "se": m.se,
                        "ci_low": lo,
                        "ci_high": hi,
                        "base_weighted": m.weighted_base,
                        "n_count": np.nan,
                    }
                )
    t = pd.DataFrame(rows)
    t["p_adjusted"] = sv.benjamini_hochberg(t["p_value"])
    t["significant"] = (t["p_adjusted"] < 0.05).where(t["p_adjusted"].notna())
    t["flag_caution"] = False
    t["suppressed"] = False
    t["suppression_reason"] = ""
    return t[[*CONTRACT, "n_count"]]


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return build_table()


@pytest.fixture(scope="module")
def protected(truth) -> pd.DataFrame:
    return dc.apply_disclosure_control(truth)


# ---------------------------------------------------------------------------------------------
# Independent attacks on a published table (hidden = NaN estimate)
# ---------------------------------------------------------------------------------------------


def _k(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _same(tab: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    sel = np.ones(len(tab), bool)
    for k in keys:
        sel &= tab[k].map(_k).to_numpy() == _k(row[k])
    return tab[sel]


def attack_targets(tab: pd.DataFrame, pos: int) -> float | None:
    """Consortium minus the other CAEs (or, for a hidden consortium cell, sum of the CAEs)."""
    row = tab.loc[pos]
    same = _same(tab, row, ["indicator_id", "breakdown", "group", "category"])
    parent = same[same["target"] == "consortium"]
    others = same[(same["target"] != "consortium") & (same.index != pos)]
    if row["target"] == "consortium":
        cae = same[same["target"] != "consortium"]
        if cae["estimate"].isna().any():
            return None
        return float((cae["estimate"] * cae["base_weighted"]).sum() / row["base_weighted"])
    if len(parent) != 1 or parent["estimate"].isna().any() or others["estimate"].isna().any():
        return None
    total = float(parent["estimate"].iloc[0] * parent["base_weighted"].iloc[0])
    return (total - float((others["estimate"] * others["base_weighted"]).sum())) / row[
        "base_weighted"
    ]


def attack_breakdown(tab: pd.DataFrame, pos: int) -> float | None:
    """Breakdown total minus the other groups (or, for a hidden total, sum of the groups)."""
    row = tab.loc[pos]
    same = _same(tab, row, ["indicator_id", "target", "category"])
    if row["breakdown"] == "total":
        for _, groups in same[same["breakdown"] != "total"].groupby("breakdown"):
            if not groups["estimate"].isna().any():
                return float(
                    (groups["estimate"] * groups["base_weighted"]).sum() / row["base_weighted"]
                )
        return None
    total = same[same["breakdown"] == "total"]
    others = same[(same["breakdown"] == row["breakdown"]) & (same.index != pos)]
    if len(total) != 1 or total["estimate"].isna().any() or others["estimate"].isna().any():
        return None
    t = float(total["estimate"].iloc[0] * total["base_weighted"].iloc[0])
    return (t - float((others["estimate"] * others["base_weighted"]).sum())) / row["base_weighted"]


def attack_distribution(tab: pd.DataFrame, pos: int) -> float | None:
    """100 % minus the other categories."""
    row = tab.loc[pos]
    if _k(row["category"]) == "":
        return None
    same = _same(tab, row, ["indicator_id", "target", "breakdown", "group"])
    others = same[same.index != pos]
    if others["estimate"].isna().any():
        return None
    return 1.0 - float(others["estimate"].sum())


ATTACKS = {
    "targets": attack_targets,
    "breakdown": attack_breakdown,
    "distribution": attack_distribution,
}


def _primary_only(truth: pd.DataFrame) -> pd.DataFrame:
    t = dc.primary_suppression(truth)
    t.loc[t["suppressed"], ["estimate", "se", "ci_low", "ci_high", "n_count"]] = np.nan
    return t


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_the_attacks_work_without_secondary_suppression(truth):
    """Primary suppression alone leaks: each of the three attacks recovers a hidden cell
    exactly, so the attacks are real."""
    pub = _primary_only(truth)
    leaks = {name: [] for name in ATTACKS}
    for pos in pub.index[pub["suppressed"]]:
        for name, attack in ATTACKS.items():
            v = attack(pub, pos)
            if v is not None and np.isfinite(v):
                leaks[name].append(pos)
                assert v == pytest.approx(truth.loc[pos, "estimate"], rel=1e-9, abs=1e-12)
    assert all(leaks.values()), leaks


def test_no_suppressed_cell_can_be_recovered(truth, protected):
    hidden = protected.index[protected["suppressed"]]
    assert len(hidden) > 0
    for pos in hidden:
        for name, attack in ATTACKS.items():
            assert attack(protected, pos) is None, f"row {pos} recovered by {name}"
    # iterated differencing along all relations (the module's own audit) finds nothing either
    assert dc.find_recoverable_cells(protected).empty
    assert not dc.find_recoverable_cells(_primary_only(truth)).empty


def test_every_relation_has_zero_or_at_least_two_hidden_cells(protected):
    hidden = protected["suppressed"].to_numpy()
    for r in dc.relations(protected):
        members = ([r.parent] if r.parent is not None else []) + list(r.children)
        assert sum(hidden[m] for m in members) != 1, r


def test_secondary_suppression_was_needed_for_every_relation_kind(truth, protected):
    primary = dc.primary_suppression(truth)
    secondary = protected["suppressed"] & ~primary["suppressed"]
    assert (protected.loc[secondary, "suppression_reason"] == "suppression secondaire").all()
    leaks = dc.find_recoverable_cells(_primary_only(truth))
    assert set(leaks["relation"]) == {"targets", "breakdown", "distribution"}
    assert secondary.sum() >= 3


def test_primary_rules_and_reasons(truth, protected):
    count, base = truth["n_count"], truth["n_unweighted"]
    small = lambda v: (v >= 0) & (v <= 4)  # noqa: E731
    tiny = lambda v: (v >= 1) & (v <= 4)  # noqa: E731
    side_small = small(count) | small(base - count)
    # on a base of 10 or more, a share with 0-4 on one side is coded as a band
    coded = side_small & (base >= 10) & count.notna()
    by_count = ((tiny(count) | tiny(base - count)) & ~coded) | (count.isna() & tiny(base))
    by_base = ~by_count & ~coded & (base < 10) & (base > 0)
    band = "valeur en tranche (effectif ou complément < 5)"
    assert (protected.loc[coded, "suppression_reason"] == band).all()
    assert protected.loc[coded, ["band_low", "band_high"]].notna().sum(axis=1).eq(1).all()
    assert (protected.loc[by_count, "suppression_reason"] == "effectif < 5").all()
    assert (protected.loc[by_base, "suppression_reason"] == "base < 10").all()
    assert protected.loc[by_count | by_base | coded, "suppressed"].all()
    assert by_count.any() and by_base.any() and coded.any()
    published = ~protected["suppressed"]
    assert (protected.loc[published, "suppression_reason"] == "").all()
    shown_base = published | coded
    assert (protected["flag_caution"] == (shown_base & (truth["n_unweighted"] < 30))).all()
    assert protected["flag_caution"].any()


def test_suppressed_values_are_blanked(truth, protected):
    s = protected["suppressed"]
    coded = protected[["band_low", "band_high"]].notna().any(axis=1)
    for col in ["estimate", "se", "ci_low", "ci_high", "p_value", "p_adjusted", "n_count"]:
        assert protected.loc[s, col].isna().all(), col
    assert protected.loc[s, "significant"].isna().all()
    # a hidden cell's base is blanked too (a group's size is often a hidden count elsewhere);
    # a coded cell keeps its base; published values are untouched
    assert protected.loc[s & ~coded, "n_unweighted"].isna().all()
    assert protected.loc[s & ~coded, "base_weighted"].isna().all()
    pd.testing.assert_series_equal(protected.loc[~s | coded, "n_unweighted"],
                                   truth.loc[~s | coded, "n_unweighted"], check_dtype=False)
    np.testing.assert_array_equal(protected.loc[~s, "estimate"], truth.loc[~s, "estimate"])
    assert list(protected.columns) == [*CONTRACT, "n_count", "band_low", "band_high"]


def _toy_table(counts: dict[str, int], base: int, target="cae-1") -> pd.DataFrame:
    rows = []
    for cat, k in counts.items():
        rows.append(
            {
                "indicator_id": "i",
                "target": target,
                "breakdown": "total",
                "group": None,
                "category": cat,
                "estimate": k / base,
                "se": 0.01,
                "ci_low": 0.0,
                "ci_high": 1.0,
                "n_unweighted": base,
                "base_weighted": 2.0 * base,
                "n_count": k,
            }
        )
    return pd.DataFrame(rows)


def test_count_rule_edges_and_thresholds():
    t = _toy_table({"a": 0, "b": 4, "c": 5, "e": 31, "f": 36, "g": 40}, base=40)
    out = dc.apply_disclosure_control(t).set_index("category")
    band = "valeur en tranche (effectif ou complément < 5)"
    # 0-4 on either side (0 % and 100 % included) is a band, 5 and 35 are published
    assert out["suppression_reason"].to_dict() == {
        "a": band, "b": band, "c": "", "e": "", "f": band, "g": band,
    }
    # the band contains 0 to 5 on its side, and the estimate
    assert dc.band_text(band_high=out.at["a", "band_high"]) == "moins de 2 sur 10"
    assert dc.band_text(band_low=out.at["f", "band_low"]) == "8 sur 10 ou plus"
    assert out.loc[["a", "b", "f", "g"], "n_unweighted"].eq(40).all()  # a band keeps its base
    # thresholds are arguments, and the text follows them
    out = dc.apply_disclosure_control(t, min_count=6, min_base_pct=50, caution_base=60)
    reasons = out.set_index("category")["suppression_reason"].to_dict()
    assert reasons["c"] == "effectif < 6" and reasons["e"] == "base < 50"
    assert out["suppressed"].all()


def test_a_base_of_zero_hides_nothing():
    t = _toy_table({"a": 0}, base=1).assign(n_unweighted=0, estimate=np.nan)
    out = dc.apply_disclosure_control(t)
    assert not out["suppressed"].any() and out["n_unweighted"].tolist() == [0]


def test_bands_hold_for_every_count_on_their_side():
    for base in range(10, 120):
        for k in list(range(0, 5)) + list(range(base - 4, base + 1)):
            est = np.array([k / base])
            low, high = dc._bands(est, np.array([float(k)]), np.array([float(base)]), 5)
            if np.isfinite(low[0]):
                assert k >= low[0] * base and base - 5 >= low[0] * base - 1e-9
            elif np.isfinite(high[0]):
                assert k < high[0] * base and 5 < high[0] * base + 1e-9


def test_distribution_hides_the_smallest_other_category():
    t = _toy_table({"a": 20, "b": 2, "c": 11, "d": 7}, base=40)
    out = dc.apply_disclosure_control(t)
    assert out.set_index("category")["suppression_reason"].to_dict() == {
        "a": "",
        "b": "valeur en tranche (effectif ou complément < 5)",
        "c": "",
        "d": "suppression secondaire",
    }


def test_means_use_the_base_rules():
    t = pd.DataFrame(
        {
            "indicator_id": "m",
            "target": ["cae-1", "cae-2", "cae-3"],
            "breakdown": "total",
            "group": None,
            "category": None,
            "estimate": [1.0, 2.0, 3.0],
            "se": 0.1,
            "ci_low": 0.0,
            "ci_high": 5.0,
            "n_unweighted": [3, 8, 40],
            "base_weighted": 1.0,
            "n_count": np.nan,
        }
    )
    out = dc.apply_disclosure_control(t)
    assert out["suppression_reason"].tolist() == ["effectif < 5", "base < 10", ""]
    out = dc.apply_disclosure_control(t, min_base_value=5)
    assert out["suppression_reason"].tolist() == ["effectif < 5", "", ""]


def test_secondary_suppression_chains_to_a_fixed_point():
    """cae-1's 'b' (3 respondents) is hidden. Targets relation for 'b': the smallest other CAE
    cell, cae-3's 'b' (6), is hidden too. Now cae-3's distribution has a lone hidden category:
    its smallest other one, 'c' (7), goes; cae-1's distribution likewise loses 'c' (17 < 30).
    The targets relation for 'c' then has two hidden cells: fixed point."""
    counts = {
        "consortium": {"a": 60, "b": 17, "c": 34},
        "cae-1": {"a": 30, "b": 3, "c": 17},
        "cae-2": {"a": 18, "b": 8, "c": 10},
        "cae-3": {"a": 12, "b": 6, "c": 7},
    }
    rows = []
    for target, cats in counts.items():
        base = sum(cats.values())
        for cat, k in cats.items():
            rows.append(
                {
                    "indicator_id": "i",
                    "target": target,
                    "breakdown": "total",
                    "group": None,
                    "category": cat,
                    "estimate": k / base,
                    "se": 0.01,
                    "ci_low": 0.0,
                    "ci_high": 1.0,
                    "n_unweighted": base,
                    "base_weighted": float(base),
                    "n_count": k,
                }
            )
    out = dc.apply_disclosure_control(pd.DataFrame(rows))
    got = {
        (r.target, r.category): r.suppression_reason for r in out[out["suppressed"]].itertuples()
    }
    assert got == {
        ("cae-1", "b"): "valeur en tranche (effectif ou complément < 5)",
        ("cae-3", "b"): "suppression secondaire",
        ("cae-1", "c"): "suppression secondaire",
        ("cae-3", "c"): "suppression secondaire",
    }
    for pos in out.index[out["suppressed"]]:
        for attack in ATTACKS.values():
            assert attack(out, pos) is None
    assert dc.find_recoverable_cells(out).empty
    # primary suppression alone: cae-1's 'b' is 100 % minus its other categories
    pub = _primary_only(pd.DataFrame(rows))
    assert attack_distribution(pub, 4) == pytest.approx(3 / 50)
    assert attack_targets(pub, 4) == pytest.approx(3 / 50)


def test_missing_count_column_is_an_error(truth):
    with pytest.raises(ValueError, match="count column"):
        dc.apply_disclosure_control(truth.drop(columns="n_count"))
    out = dc.apply_disclosure_control(truth.drop(columns="n_count"), count_col=None)
    assert out["suppressed"].any()


# ---------------------------------------------------------------------------------------------
# The fast relations and fixed point against the plain loops they replace
# ---------------------------------------------------------------------------------------------


def _reference_relations(table: pd.DataFrame, consortium: str = "consortium") -> list[tuple]:
    """The relations, group by group with pandas (the specification of dc.relations)."""
    t = table.reset_index(drop=True)
    frame = pd.DataFrame(
        {c: t[c].map(_k) for c in ["indicator_id", "target", "breakdown", "group", "category"]}
    )
    frame["pos"] = np.arange(len(t))
    rels = []
    for _, g in frame.groupby(["indicator_id", "breakdown", "group", "category"], sort=False):
        parent = g.loc[g["target"] == consortium, "pos"].tolist()
        children = tuple(g.loc[g["target"] != consortium, "pos"].tolist())
        if len(parent) == 1 and children:
            rels.append(("targets", parent[0], children))
    for _, g in frame.groupby(["indicator_id", "target", "category"], sort=False):
        total = g.loc[g["breakdown"] == "total", "pos"].tolist()
        if len(total) != 1:
            continue
        for _, gb in g[g["breakdown"] != "total"].groupby("breakdown", sort=False):
            rels.append(("breakdown", total[0], tuple(gb["pos"].tolist())))
    for _, g in frame[frame["category"] != ""].groupby(
        ["indicator_id", "target", "breakdown", "group"], sort=False
    ):
        if len(g) >= 2:
            rels.append(("distribution", None, tuple(g["pos"].tolist())))
    return rels


def _reference_secondary(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Secondary suppression by sweeping over every relation until nothing changes."""
    out = table.reset_index(drop=True)
    hidden = out["suppressed"].to_numpy(dtype=bool).copy()
    reason = out["suppression_reason"].fillna("").astype(str).to_numpy().copy()
    size = pd.to_numeric(out["n_count"], errors="coerce").to_numpy(dtype=float)
    size = np.where(np.isnan(size), out["n_unweighted"].to_numpy(dtype=float), size)
    changed = True
    while changed:
        changed = False
        for _, parent, children in _reference_relations(out):
            members = ([parent] if parent is not None else []) + list(children)
            if sum(hidden[m] for m in members) != 1:
                continue
            candidates = [c for c in children if not hidden[c]]
            if candidates:
                pick = min(
                    candidates, key=lambda c: (size[c] if not np.isnan(size[c]) else np.inf, c)
                )
            elif parent is not None and not hidden[parent]:
                pick = parent
            else:
                continue
            hidden[pick] = True
            reason[pick] = dc.REASON_SECONDARY
            changed = True
    return hidden, reason


@pytest.mark.parametrize("seed", range(6))
def test_relations_and_secondary_suppression_equal_the_plain_loops(truth, seed):
    rng = np.random.default_rng(seed)
    t = truth.copy()
    # random counts and bases make other primary suppressions and other chains
    t["n_count"] = np.where(rng.random(len(t)) < 0.6, rng.integers(0, 25, len(t)), t["n_count"])
    t["n_unweighted"] = np.maximum(t["n_unweighted"], rng.integers(0, 50, len(t)))
    if seed % 2:  # rows in another order: relations follow the order of first appearance
        t = t.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    got = [(r.kind, r.parent, r.children) for r in dc.relations(t)]
    assert got == _reference_relations(t)
    primary = dc.primary_suppression(t)
    out = dc.secondary_suppression(primary)
    hidden, reason = _reference_secondary(primary)
    np.testing.assert_array_equal(out["suppressed"].to_numpy(), hidden)
    np.testing.assert_array_equal(
        out["suppression_reason"].to_numpy(dtype=object), reason.astype(object)
    )
    assert (out["suppression_reason"] == dc.REASON_SECONDARY).any()
