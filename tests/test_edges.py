"""Tests and intervals at the edges: 0 % / 100 % in a small CAE, calibration variables, a census.

A small study made from the demo's cleaned answers: CAE 1 where every registered entrepreneur
answered (its register is set to its respondents: n = N), CAE 2 cut to 10 respondents who all
find the CAE decisive (100 %, the CAE's linearisation variance is 0), the other CAEs as in the
demo.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from cae_impact.analysis import indicators as I
from cae_impact.analysis import published
from cae_impact.clean.cleaning import clean_export
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, Population, load_study

INDICATORS = ("cae_decisive", "associe_share", "women_share", "income_change", "protection_access")
CENSUS, SMALL = "cae-1", "cae-2"
REGISTER_SEX = {"f": "F", "m": "M"}


@pytest.fixture(scope="module")
def edge():
    study = load_study()
    cb = load_codebook(study.codebook)
    responses = pd.concat([clean_export(study, c.id, codebook=cb).responses for c in study.caes],
                          ignore_index=True)
    # CAE 1: a census (respondents with a known sex and stage, the register set to them)
    census = responses[(responses["cae_id"] == CENSUS) & responses["sex"].notna()
                       & responses["contract_stage"].notna()]
    by: dict[str, dict[str, int]] = {}
    for (sex, stage), n in census.groupby(["sex", "contract_stage"]).size().items():
        by.setdefault(REGISTER_SEX[sex], {})[str(stage)] = int(n)
    # CAE 2: 10 respondents, all find the CAE decisive
    small = responses[(responses["cae_id"] == SMALL)
                      & responses["cae_decisive"].isin(["tout", "plutot"])].head(10)
    rest = responses[~responses["cae_id"].isin([CENSUS, SMALL])]
    data = pd.concat([census, small, rest], ignore_index=True)
    caes = tuple(
        replace(c, population=Population(total=len(census), by_sex_stage=by)) if c.id == CENSUS
        else c for c in study.caes)
    study = replace(study, caes=caes)
    inds = [cb.indicator(i) for i in INDICATORS]
    return study, cb, data, I.estimate_study(data, study, cb, indicators=inds).table


def _total(table, ind, target, category=""):
    t = table
    return t[(t.indicator_id == ind) & (t.target == target) & (t.breakdown == I.TOTAL)
             & (t.category == category)].iloc[0]


def test_a_share_of_100_percent_in_a_sample_is_not_tested(edge):
    """100 % (n = 10): the CAE's variance is 0, the Wald test's p-value would be ~1e-40."""
    study, _cb, _data, table = edge
    row = _total(table, "cae_decisive", SMALL)
    # 10 of 10: published as a band (« la moitié ou plus »), never as 100 %, and not tested
    assert row["n_unweighted"] == 10 and row["band_low"] == 0.5 and pd.isna(row["estimate"])
    assert pd.isna(row["p_value"]) and row["comparison"] == "" and row["test"] == ""
    report = I.report_table(table, SMALL, study.report.fdr_alpha)
    r = report[(report.indicator_id == "cae_decisive") & (report.target == SMALL)
               & (report.breakdown == I.TOTAL)].iloc[0]
    assert pd.isna(r["significant"])
    # with a published reference: the same rule (the row carries no test to recompute)
    ref_rows = published.consortium_rows(table)
    ref = published.PublishedReference(path=published.Path("ref.csv"), rows=ref_rows,
                                       meta={"caes": study.cae_ids})
    again = published.compare_with_reference(table[table.target == SMALL], ref, SMALL)
    assert again.loc[(again.indicator_id == "cae_decisive") & (again.breakdown == I.TOTAL),
                     "p_value"].isna().all()
    # a share with sampling variance is still tested
    assert not pd.isna(_total(table, "cae_decisive", "cae-3")["p_value"])


def test_calibration_variables_are_never_tested(edge):
    """The share of associés and of women: no CAE-vs-rest test, no group test, anywhere."""
    study, _cb, _data, table = edge
    for ind in ("associe_share", "women_share"):
        rows = table[table.indicator_id == ind]
        assert rows["p_value"].isna().all(), ind
        assert (rows["test"] == "").all(), ind
        for target in (SMALL, "cae-3", CONSORTIUM):
            rt = I.report_table(table, target, study.report.fdr_alpha)
            assert rt.loc[rt.indicator_id == ind, "significant"].isna().all()


def test_a_census_cae_has_point_intervals_and_no_group_test(edge):
    _study, _cb, data, table = edge
    assert I.census_targets(I.build_design(data, _study, _cb).design) == {CENSUS}
    rows = table[(table.target == CENSUS) & (table.n_unweighted > 0) & table.estimate.notna()]
    assert len(rows) > 20
    assert (rows["se"] == 0).all()
    np.testing.assert_array_equal(rows["ci_low"], rows["estimate"])
    np.testing.assert_array_equal(rows["ci_high"], rows["estimate"])
    # no Rao-Scott between groups of a census (groups are known exactly), no paired test
    groups = rows[rows.breakdown != I.TOTAL]
    assert groups["p_value"].isna().all()
    paired = rows[(rows.indicator_id == "income_change") & (rows.category == "difference")]
    assert paired["p_value"].isna().all()
    # the CAE against the rest: valid (the CAE's value is known; the rest's error only)
    assert not pd.isna(_total(table, "cae_decisive", CENSUS)["p_value"])


def test_any_of_leaves_only_missing_ticks_out_of_the_base(edge):
    """« Ne sait pas » alone is out of the base of an any_of share, not a « non »."""
    _study, cb, _data, _table = edge
    q = "protection_access"
    scale = cb.scale_of(q)
    assert scale.missing_codes
    cols = {f"{q}__{c}": [False, False, False] for c in scale.codes}
    cols[f"{q}__{scale.missing_codes[0]}"] = [True, True, False]
    valid = scale.valid_codes[0]
    cols[f"{q}__{valid}"] = [False, True, True]
    frame = pd.DataFrame(cols)
    ind = cb.indicator(q)
    got = I.any_of_variable(frame, cb, q, list(ind.rule["codes"]))
    hit = 1.0 if valid in ind.rule["codes"] else 0.0
    assert np.isnan(got[0]) and got[1] == hit and got[2] == hit


def _view(edge, target, census):
    from cae_impact.render import chapters

    study, cb, _data, table = edge
    return chapters.View(study, cb, target, I.report_table(table, target, study.report.fdr_alpha),
                         census=census)


def test_no_significantly_on_a_degenerate_or_calibrated_figure(edge):
    from cae_impact.render import story

    study, cb, _data, _table = edge
    for target, ind in ((SMALL, "cae_decisive"), ("cae-3", "associe_share"), ("cae-4", "women_share")):
        view = _view(edge, target, census=False)
        fig = story.figure_of(view, cb.indicator(ind))
        assert fig.verdict in ("untested", "hidden"), (target, ind, fig.verdict)
        text = story.Writer(view).figure_sentence(fig)
        assert "nettement" not in text and "écart net" not in text, (target, ind)
        table = story.key_figures_table(story.Writer(view), view, [fig], cb.domain(cb.indicator(ind).domain_id))
        assert "nettement" not in table


def test_a_census_cae_is_described_as_one(edge):
    from cae_impact.render import narrative, profile, story
    from cae_impact.run import pipeline

    study, cb, _data, table = edge
    per_cae = [{"cae_id": CENSUS, "population": 40, "respondents": 40},
               {"cae_id": SMALL, "population": 95, "respondents": 10}]
    assert pipeline.is_census({"per_cae": per_cae}, CENSUS)
    assert not pipeline.is_census({"per_cae": per_cae}, SMALL)
    assert not pipeline.is_census({"per_cae": per_cae}, CONSORTIUM)
    view = _view(edge, CENSUS, census=True)
    texts = " ".join(story.chapter_html(view, d) for d in cb.domains)
    texts = texts.replace("\u202f", " ").replace("\xa0", " ").replace("’", "'")
    assert "marge d'erreur" not in texts  # said once, in « La CAE en bref »
    assert "intervalle de confiance" not in texts and " de 1 à 1" not in texts
    lines = " ".join(story.method_lines(view)).replace("’", "'")
    assert "n'ont pas de marge d'erreur" in lines
    weighting = {"per_cae": [{"cae_id": CENSUS, "label": study.target_label(CENSUS), "population": 40,
                              "respondents": 40, "response_rate": 1.0, "effective_n": 40.0}],
                 "notes": [], "consortium": {"effective_n": 300.0}}
    sample = profile.sample_section(view, weighting).replace("\u202f", " ").replace("\xa0", " ")
    assert narrative.CENSUS_TEXT[1:].replace("'", "&#x27;") in sample.replace("’", "&#x27;")


def test_an_untested_change_gets_no_verdict(edge):
    """The consortium's « before / now » change is tested in the consortium's report only: a
    CAE's report gives it no verdict, and the chart's note says why."""
    from cae_impact.render import story

    _study, cb, _data, _table = edge
    view = _view(edge, "cae-3", census=False)
    html = story.before_after_chart(view, cb.indicator("income_change"))
    html = html.replace("\u202f", " ").replace("\xa0", " ")
    assert "testée dans le rapport du consortium, pas dans celui-ci" in html
    sentence = story.change_sentence(story.Writer(view), view, cb.indicator("income_change"))
    assert "consortium" not in sentence


def test_the_consortium_report_says_why_a_cae_verdict_can_differ(edge):
    """A CAE's test against the consortium is corrected with different families in the CAE's
    report and in the consortium's: the consortium's chart note says so."""
    from cae_impact.render import story

    _study, cb, _data, _table = edge
    view = _view(edge, CONSORTIUM, census=False)
    html = story.cae_chart(view, cb.indicator("cae_decisive"))
    assert "pas dans son propre rapport" in html.replace("\u202f", " ").replace("\xa0", " ")


def test_published_comparison_does_not_test_a_degenerate_row_even_if_marked(edge):
    """Belt and braces: a row of an older table marked for the consortium test is not tested
    against the published figures when its variance is 0 in a sample."""
    study, _cb, _data, table = edge
    rows = table[(table.target == SMALL)].copy()
    mark = (rows.indicator_id == "cae_decisive") & (rows.breakdown == I.TOTAL)
    rows.loc[mark, "comparison"] = CONSORTIUM
    ref = published.PublishedReference(path=published.Path("ref.csv"),
                                       rows=published.consortium_rows(table),
                                       meta={"caes": study.cae_ids})
    got = published.compare_with_reference(rows, ref, SMALL)
    assert got.loc[mark, "p_value"].isna().all()
    # a census row (point interval) is tested
    rows = table[(table.target == CENSUS)]
    got = published.compare_with_reference(rows, ref, CENSUS)
    assert got.loc[(got.indicator_id == "cae_decisive") & (got.breakdown == I.TOTAL), "p_value"].notna().all()


def test_the_degenerate_variance_rule_on_unpublished_rows():
    """Before disclosure (the published table shows the 100 % as a band): a share of 0 % or
    100 % in a sample has a zero linearised variance and is not tested; a census is."""
    assert I.degenerate_variance({"estimate": 1.0, "se": 0.0, "kind": "share", "unit": "pct"})
    assert I.degenerate_variance({"estimate": 0.0, "se": 0.0, "kind": "share", "unit": "pct"})
    assert not I.degenerate_variance({"estimate": 0.6, "se": 0.05, "kind": "share", "unit": "pct"})
    assert not I.degenerate_variance({"estimate": 1.0, "se": 0.0}, census=True)


def test_above_the_threshold_the_estimation_does_not_run_the_attack(edge, monkeypatch):
    """A national study: rule-based suppression only (the attack's time grows with the square
    of the number of CAEs); the result says the attack was not run."""
    study, cb, data, _table = edge
    small = I.estimate_study(data, study, cb, indicators=[cb.indicator("cae_decisive")])
    assert small.audit is not None and small.audit.exposed.empty
    monkeypatch.setattr(I, "SECRECY_AUDIT_MAX_CAES", 2)
    big = I.estimate_study(data, study, cb, indicators=[cb.indicator("cae_decisive")])
    assert big.audit is None
