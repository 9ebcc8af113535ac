"""Waves (issue 18): comparability, published wave figures, changes, secrecy of changes."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cae_impact.analysis import waves
from cae_impact.core.files import sha256_bytes
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import PROJECT_ROOT, load_study

ROOT = PROJECT_ROOT


# ---------------------------------------------------------------- the change estimator by hand


def test_change_stats_by_hand():
    # previous 0.40 (SE 0.05, df 60), current 0.52 (SE 0.04, df 90)
    st = waves.change_stats(0.40, 0.05, 60, 0.52, 0.04, 90)
    se = math.sqrt(0.05 ** 2 + 0.04 ** 2)
    df = (0.05 ** 2 + 0.04 ** 2) ** 2 / (0.05 ** 4 / 60 + 0.04 ** 4 / 90)
    q = stats.t.ppf(0.975, df)
    assert st["change"] == pytest.approx(0.12, abs=1e-15)
    assert st["se"] == pytest.approx(se, rel=1e-15)
    assert st["df"] == pytest.approx(df, rel=1e-12)
    assert st["ci_low"] == pytest.approx(0.12 - q * se, rel=1e-12)
    assert st["ci_high"] == pytest.approx(0.12 + q * se, rel=1e-12)
    assert st["p_value"] == pytest.approx(2 * stats.t.sf(0.12 / se, df), rel=1e-12)
    assert 90 < df < 150  # between the larger df and the sum


def test_bh_adjust_matches_scipy():
    p = np.array([0.001, 0.04, 0.03, np.nan, 0.2, 0.011, 0.5])
    got = waves.bh_adjust(p)
    ok = ~np.isnan(p)
    assert np.isnan(got[3])
    assert np.allclose(got[ok], stats.false_discovery_control(p[ok], method="bh"), rtol=1e-12)


def _stacked_route(y1, s1, y2, s2, strata, sizes):
    """The change as ONE estimator over a stacked design (strata = wave x CAE), linearised: each
    respondent's term u_i in the estimator (a weighted total), and the stratified variance of the
    totals of u with finite-population correction (R: svyby(~y, ~wave) + svycontrast)."""
    est, var = 0.0, 0.0
    for sign, y, s in ((-1, y1, s1), (1, y2, s2)):
        for h, n_pop in enumerate(sizes):
            yh = y[s][strata[s] == h]
            n = len(yh)
            u = sign * (n_pop / sizes.sum()) * yh / n
            est += u.sum()
            var += (1 - n / n_pop) * n / (n - 1) * np.sum((u - u.mean()) ** 2)
    return est, math.sqrt(var)


def test_change_without_overlap_equals_the_stacked_design_linearisation():
    """The independent route of scripts/verify_changes_with_r.R, in Python: waves without overlap."""
    rng = np.random.default_rng(18)
    sizes = np.array([120, 310, 95])
    strata = np.repeat(np.arange(3), sizes)
    y1 = (rng.random(len(strata)) < 0.5).astype(float)
    y2 = (rng.random(len(strata)) < 0.6).astype(float)
    s1 = np.concatenate([rng.choice(np.flatnonzero(strata == h), 40, replace=False) for h in range(3)])
    rest = [np.setdiff1d(np.flatnonzero(strata == h), s1) for h in range(3)]
    s2 = np.concatenate([rng.choice(r, 35, replace=False) for r in rest])  # no respondent in both
    assert not np.isin(s2, s1).any()

    def wave(y, s):
        est, var = 0.0, 0.0
        for h, n_pop in enumerate(sizes):
            yh = y[s][strata[s] == h]
            w = n_pop / sizes.sum()
            est += w * yh.mean()
            var += w ** 2 * (1 - len(yh) / n_pop) * yh.var(ddof=1) / len(yh)
        return est, math.sqrt(var), len(s) - len(sizes)

    e1, se1, df1 = wave(y1, s1)
    e2, se2, df2 = wave(y2, s2)
    st = waves.change_stats(e1, se1, df1, e2, se2, df2)
    est, se = _stacked_route(y1, s1, y2, s2, strata, sizes)
    assert st["change"] == pytest.approx(est, abs=1e-12)
    assert st["se"] == pytest.approx(se, abs=1e-12)


# ---------------------------------------------------------------- comparability


@pytest.fixture(scope="module")
def cb():
    return load_codebook()


def _sig(cb, ind_id):
    return json.loads(json.dumps(waves.indicator_signature(cb, cb.indicator(ind_id))))


def test_same_codebook_everything_comparable(cb):
    comps = waves.comparability(waves.codebook_signatures(cb), cb, cb.path)
    assert all(c.comparable for c in comps)
    dist = {c.indicator_id: c for c in comps}["peer_exchange_distribution"]
    assert dist.categories == {c: c for c in ("frequemment", "regulierement", "rarement", "jamais")}


def test_the_demo_second_wave_codebook(cb):
    cb2 = load_codebook(ROOT / "config" / "codebook-2027.yaml")
    comps = {c.indicator_id: c for c in waves.comparability(waves.codebook_signatures(cb), cb2, cb2.path)}
    assert not comps["good_health"].comparable
    assert comps["good_health"].reason == "question reformulée"
    assert sum(not c.comparable for c in comps.values()) == 1


def test_reasons_and_mappings(cb):
    cur = _sig(cb, "staff_exchange_frequent")
    prev = json.loads(json.dumps(cur))
    # a filter added: another base
    prev2 = json.loads(json.dumps(prev))
    prev2["questions"]["staff_exchange"]["relevant"] = "${contract_stage} != 'cape'"
    assert waves.compare_signatures("x", prev2, cur, {}).reason.startswith("filtre")
    # new and removed indicators
    assert not waves.compare_signatures("x", None, cur, {}).comparable
    assert waves.compare_signatures("x", prev, None, {}).reason == "indicateur retiré du questionnaire"
    # a renamed code: not comparable without the mapping, comparable with it
    renamed = json.loads(json.dumps(cur))
    for ch in renamed["questions"]["staff_exchange"]["choices"]:
        if ch[0] == "regulierement":
            ch[0] = "mensuel"
    renamed["rule"]["codes"] = ["frequemment", "mensuel"]
    assert waves.compare_signatures("x", prev, renamed, {}).reason == "choix de réponse modifiés"
    m = {"staff_exchange": waves.Mapping_("staff_exchange", renamed={"regulierement": "mensuel"})}
    assert waves.compare_signatures("x", prev, renamed, m).comparable
    # merged choices: the share that takes both merged codes stays comparable ...
    merged = json.loads(json.dumps(cur))
    chs = merged["questions"]["staff_exchange"]["choices"]
    merged["questions"]["staff_exchange"]["choices"] = [c for c in chs if c[0] not in ("frequemment", "regulierement")] + [["souvent", False]]
    merged["rule"]["codes"] = ["souvent"]
    mm = {"staff_exchange": waves.Mapping_("staff_exchange", merged={"souvent": ("frequemment", "regulierement")})}
    assert waves.compare_signatures("x", prev, merged, mm).comparable
    # ... a share of one of them does not
    weekly_prev = _sig(cb, "staff_exchange_weekly")
    weekly_cur = json.loads(json.dumps(merged))
    assert not waves.compare_signatures("x", weekly_prev, weekly_cur, mm).comparable
    # a rewording declared as the same question
    reworded = json.loads(json.dumps(cur))
    reworded["questions"]["staff_exchange"]["text"] += " (reformulée)"
    assert not waves.compare_signatures("x", prev, reworded, {}).comparable
    same = {"staff_exchange": waves.Mapping_("staff_exchange", same_meaning=True)}
    assert waves.compare_signatures("x", prev, reworded, same).comparable


def test_mapping_block_is_read(tmp_path):
    text = (ROOT / "config" / "codebook-2027.yaml").read_text(encoding="utf-8").replace(
        "  mappings: []",
        "  mappings:\n    - question: staff_exchange\n      renamed_codes: {regulierement: mensuel}\n"
        "      merged_codes: {souvent: [a, b]}\n      note: essai")
    path = tmp_path / "cb.yaml"
    path.write_text(text, encoding="utf-8")
    prev, maps = waves.codebook_mappings(path)
    assert prev == "2026.1"
    assert maps["staff_exchange"].old_to_new() == {"regulierement": "mensuel", "a": "souvent", "b": "souvent"}


# ---------------------------------------------------------------- published figures and changes


def _fig(target, est, se, n, base, ind="ind", cat="", suppressed=False, kind="share", df=None):
    return {"indicator_id": ind, "indicator_label": "Part des entrepreneurs x", "domain_id": "d1", "kind": kind,
            "unit": "pct", "target": target, "category": cat, "category_label": "", "estimate": est, "se": se,
            "ci_low": np.nan, "ci_high": np.nan, "df": n - 1 if df is None else df, "n_unweighted": n,
            "n_count": np.nan, "base_weighted": base, "flag_caution": False, "suppressed": suppressed,
            "suppression_reason": "suppression secondaire" if suppressed else "", "band_low": np.nan,
            "band_high": np.nan}


def _comp():
    return [waves.Comparison("ind", True, "", {"": ""}, "", "q")]


def test_changes_by_hand_and_consortium_on_common_caes():
    prev = pd.DataFrame([
        _fig("a", 0.50, 0.05, 60, 100.0), _fig("b", 0.60, 0.04, 80, 200.0), _fig("c", 0.30, 0.06, 40, 100.0),
        _fig("consortium", (0.5 * 100 + 0.6 * 200 + 0.3 * 100) / 400,
             math.sqrt(100 ** 2 * 0.05 ** 2 + 200 ** 2 * 0.04 ** 2 + 100 ** 2 * 0.06 ** 2) / 400, 180, 400.0,
             df=177)])
    cur = pd.DataFrame([
        _fig("a", 0.58, 0.05, 62, 100.0), _fig("b", 0.61, 0.04, 85, 200.0), _fig("d", 0.70, 0.05, 50, 150.0),
        _fig("consortium", (0.58 * 100 + 0.61 * 200 + 0.70 * 150) / 450, 0.03, 197, 450.0, df=194)])
    ch = waves.compute_changes(cur, prev, _comp(), previous_wave="2026", current_wave="2027")
    a = ch[(ch["target"] == "a")].iloc[0]
    assert a["change"] == pytest.approx(0.08)
    assert a["se"] == pytest.approx(math.sqrt(2 * 0.05 ** 2))
    assert a["tested"]
    assert set(ch.loc[ch["scope"] == "cae", "target"]) == {"a", "b"}  # c left, d joined
    com = ch[ch["scope"] == "consortium_common"].iloc[0]
    p_prev = (0.5 * 100 + 0.6 * 200) / 300
    p_cur = (0.58 * 100 + 0.61 * 200) / 300
    v_prev = (100 ** 2 * 0.05 ** 2 + 200 ** 2 * 0.04 ** 2) / 300 ** 2
    assert com["previous_estimate"] == pytest.approx(p_prev)
    assert com["current_estimate"] == pytest.approx(p_cur)
    assert com["se"] == pytest.approx(math.sqrt(2 * v_prev))
    assert com["previous_df"] == 140 - 2


def test_common_consortium_by_complement_when_a_common_cae_is_hidden():
    prev = pd.DataFrame([
        _fig("a", np.nan, np.nan, np.nan, np.nan, suppressed=True), _fig("b", 0.60, 0.04, 80, 200.0),
        _fig("c", 0.30, 0.06, 40, 100.0),
        _fig("consortium", (0.5 * 100 + 0.6 * 200 + 0.3 * 100) / 400, 0.025, 180, 400.0, df=177)])
    out = waves.common_consortium(prev, ["a", "b"], 10).iloc[0]
    assert out["method"] == "complement"
    assert out["estimate"] == pytest.approx((0.5 * 100 + 0.6 * 200) / 300)
    assert out["se"] == pytest.approx(math.sqrt(400 ** 2 * 0.025 ** 2 - 100 ** 2 * 0.06 ** 2) / 300)
    # both routes need a hidden figure: not computed
    prev.loc[prev["target"] == "c", ["estimate", "se", "suppressed"]] = [np.nan, np.nan, True]
    out = waves.common_consortium(prev, ["a", "b"], 10).iloc[0]
    assert np.isnan(out["estimate"]) and "masquée" in out["reason"]


def test_a_change_is_hidden_when_either_level_is():
    prev = pd.DataFrame([_fig("a", np.nan, np.nan, np.nan, np.nan, suppressed=True),
                         _fig("consortium", 0.5, 0.03, 100, 300.0)])
    cur = pd.DataFrame([_fig("a", 0.58, 0.05, 62, 100.0), _fig("consortium", 0.55, 0.03, 110, 300.0)])
    ch = waves.compute_changes(cur, prev, _comp(), previous_wave="2026", current_wave="2027")
    a = ch[ch["target"] == "a"].iloc[0]
    assert a["suppressed"] and np.isnan(a["change"]) and np.isnan(a["se"]) and not a["tested"]
    assert a["suppression_reason"] == "valeur non publiée en 2026"
    # a banded level (published as « ≥ 90 % ») is hidden too
    band = _fig("a", np.nan, np.nan, 40, 100.0, suppressed=True)
    band["band_low"] = 0.9
    ch = waves.compute_changes(pd.DataFrame([band, _fig("consortium", 0.5, 0.03, 100, 300.0)]),
                               pd.DataFrame([_fig("a", 0.9, 0.03, 40, 100.0), _fig("consortium", 0.5, 0.03, 100, 300.0)]),
                               _comp(), previous_wave="2026", current_wave="2027")
    assert ch[ch["target"] == "a"].iloc[0]["suppressed"]


def test_calibrated_and_median_changes_are_not_tested():
    prev = pd.DataFrame([_fig("a", 0.6, 0.0, 60, 100.0), _fig("consortium", 0.6, 0.0, 60, 100.0)])
    cur = pd.DataFrame([_fig("a", 0.62, 0.01, 60, 100.0), _fig("consortium", 0.62, 0.01, 60, 100.0)])
    ch = waves.compute_changes(cur, prev, _comp(), previous_wave="2026", current_wave="2027", calibrated={"q"})
    assert not ch["tested"].any() and ch["ci_low"].isna().all()
    assert (ch["not_tested_reason"] == waves.NOT_TESTED_REGISTER).all()


def test_report_family_is_corrected_together():
    rows = pd.DataFrame({"target": ["a", "a", "consortium"], "scope": ["cae", "cae", "consortium"],
                         "tested": [True, True, True], "p_value": [0.01, 0.04, 0.001]})
    a = waves.report_changes(rows, "a")
    assert a["p_adjusted"].tolist()[:2] == pytest.approx([0.02, 0.04])
    assert np.isnan(a["p_adjusted"].iloc[2])  # the consortium's change is context in a CAE report
    cons = waves.report_changes(rows, "consortium")
    assert cons["p_adjusted"].tolist() == pytest.approx([0.015, 0.04, 0.003])


def test_wave_figures_round_trip_and_tamper(tmp_path):
    fig = pd.DataFrame([_fig("a", 0.5, 0.05, 60, 100.0), _fig("consortium", 0.5, 0.05, 60, 100.0)])
    path = tmp_path / "wave.csv"
    text = fig.reindex(columns=waves.FIGURE_COLUMNS).to_csv(index=False, lineterminator="\n")
    path.write_text(text, encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(
        {"wave": "2026", "figures": {"sha256": sha256_bytes(text.encode())}}), encoding="utf-8")
    got = waves.load_wave_figures(path)
    assert got.wave == "2026" and len(got.rows) == 2
    path.write_text(text.replace("0.5,", "0.6,", 1), encoding="utf-8")
    with pytest.raises(waves.WaveError, match="digest"):
        waves.load_wave_figures(path)


# ---------------------------------------------------------------- the demo's published 2026 figures


DEMO_FIGURES = ROOT / "data" / "reference" / "demo" / "2026" / "wave.csv"


def test_demo_2026_figures_are_published_with_their_description():
    w = waves.load_wave_figures(DEMO_FIGURES)
    assert w.wave == "2026"
    assert w.meta["codebook"]["version"] == "2026.1"
    assert set(w.rows["target"]) == {f"cae-{i}" for i in range(1, 8)} | {"consortium"}
    assert set(w.meta["indicators"]) == {i.id for i in load_codebook().indicators}
    hidden = w.rows[w.rows["suppressed"]]
    assert len(hidden) > 0
    assert hidden["estimate"].isna().all() and hidden["se"].isna().all() and hidden["n_count"].isna().all()
    # the consortium rows are the published consortium reference's figures
    ref = pd.read_csv(ROOT / "data" / "reference" / "demo" / "2026" / "consortium.csv", keep_default_na=False,
                      na_values=[""], dtype={"category": str})
    ref["category"] = ref["category"].fillna("")
    cons = w.rows[w.rows["target"] == "consortium"].merge(ref, on=["indicator_id", "category"], suffixes=("", "_ref"))
    assert len(cons) == len(ref)
    both = cons["estimate"].notna()
    assert np.allclose(cons.loc[both, "estimate"], cons.loc[both, "estimate_ref"], rtol=1e-12, atol=0)


def test_study_2027_names_its_previous_wave():
    s = load_study(ROOT / "config" / "study-2027.yaml")
    assert [p.wave for p in s.previous_waves] == ["2026"]
    assert s.previous_waves[0].figures == ROOT / "data" / "reference" / "demo" / "2026" / "wave.csv"
    assert "cae-7" not in s.cae_ids and "cae-8" in s.cae_ids
    assert load_study(ROOT / "config" / "study.yaml").previous_waves == ()


def test_demo_2026_published_figures_pass_the_secrecy_attack():
    """The file a later wave reads publishes no hidden count (the LP attack of the secrecy audit)."""
    result = waves.audit_previous_wave(waves.load_wave_figures(DEMO_FIGURES), load_codebook())
    s = result.summary()
    assert s["hidden_counts"] > 0
    assert not s["exposed"], result.exposed.head()


def test_linkage_against_chance():
    """Linked respondents counted per CAE and compared with the hypergeometric law of chance."""
    prev = {"a": [f"p{i}" for i in range(40)], "b": [f"q{i}" for i in range(30)], "gone": ["x"]}
    cur = {"a": [f"p{i}" for i in range(20)] + [f"n{i}" for i in range(30)],  # 20 linked of 50
           "b": [f"r{i}" for i in range(30)]}                                  # nobody linked
    out = waves.linkage(prev, cur, {"a": 100, "b": 60}).set_index("cae_id")
    assert list(out.index) == ["a", "b", "consortium"]  # a CAE of one wave only is left out
    assert out.loc["a", "linked"] == 20 and out.loc["a", "expected"] == pytest.approx(40 * 50 / 100)
    assert out.loc["a", "p_fewer"] == pytest.approx(stats.hypergeom(100, 40, 50).cdf(20))
    assert out.loc["a", "p_fewer"] > 0.5  # as many as chance gives
    assert out.loc["b", "linked"] == 0 and out.loc["b", "expected"] == pytest.approx(15.0)
    assert out.loc["b", "p_fewer"] < 1e-6  # the second sample avoided the first one
    assert out.loc["consortium", "linked"] == 20 and out.loc["consortium", "expected"] == pytest.approx(35.0)


def test_the_method_annex_says_what_the_linked_respondents_say(tmp_path):
    """waves.json's linkage (run_changes) becomes one sentence of the method annex."""
    from cae_impact.render.evolution import linkage_sentence
    from cae_impact.spec.layout import waves_dir

    study = load_study(PROJECT_ROOT / "config" / "study-2027.yaml")
    folder = waves_dir(study, tmp_path)
    folder.mkdir(parents=True)
    assert "n’a pas été vérifié" in linkage_sentence(study, tmp_path)
    (folder / "waves.json").write_text(json.dumps({"linkage": {"linked": 230, "expected": 217.5, "p_fewer": 0.95}}))
    said = linkage_sentence(study, tmp_path)
    assert said.startswith("230 entrepreneurs") and "218 attendus" in said and "exact ou prudent" in said
    (folder / "waves.json").write_text(json.dumps({"linkage": {"linked": 12, "expected": 217.5, "p_fewer": 1e-9}}))
    assert linkage_sentence(study, tmp_path).startswith("Seulement 12 entrepreneurs")
