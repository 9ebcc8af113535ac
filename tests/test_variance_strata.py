"""The project's variance design: the post-strata as strata with their own fpc.

``cae_impact.estimation.cells_as_strata`` against R's ``survey`` (fixture
``fixtures/oracles/project_design-output.txt``, written by ``project_design.R`` with R 4.2.2 and
survey 4.1.1 on the consortium toy), and the collapsed-strata rule for a post-stratum of one
respondent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cae_impact import estimation as sv
from test_survey_oracles import parse_output

FIX = Path(__file__).parent / "fixtures" / "oracles"
R = parse_output(FIX / "project_design-output.txt")
POP = pd.DataFrame({"coop": list("AABBCC"), "sex": list("FMFMFM"), "Freq": [22, 18, 10, 15, 35, 25]})


def _check(label: str, got: list[float]) -> None:
    np.testing.assert_allclose(got, R[label], rtol=1e-6, atol=0, err_msg=label)


@pytest.fixture(scope="module")
def rhg() -> sv.SurveyDesign:
    d = pd.read_csv(FIX / "consortium_toy.csv")
    d["agree"] = (d["q1"] >= 3).astype(float)
    design = sv.stratified_design(d, "coop", d.groupby("coop")["N"].first().to_dict())
    design = sv.post_stratify(design, ["coop", "sex"], POP)
    design = design.assign(cell=(design.data["coop"] + "|" + design.data["sex"]).to_numpy())
    cells = pd.DataFrame({"cell": POP["coop"] + "|" + POP["sex"], "Freq": POP["Freq"]})
    return sv.cells_as_strata(design, "cell", cells)


def test_the_cells_as_strata_reproduce_r(rhg):
    assert not rhg.calibrated and len(rhg.strata_levels) == 6
    m = sv.mean(rhg, "agree")
    _check("cells as strata: svymean agree: est se", [m.estimate, m.se])
    p = sv.proportion(rhg, "agree", method="logit")
    _check("cells as strata: svyciprop logit: est lo hi", [p.estimate, p.ci_low, p.ci_high])
    m = sv.mean(rhg, "ca")
    _check("cells as strata: svymean ca: est se", [m.estimate, m.se])
    by = [sv.mean(rhg, "agree", domain=(rhg.data["coop"] == k).to_numpy()) for k in "ABC"]
    _check("cells as strata: svyby agree by coop (A B C): est", [e.estimate for e in by])
    _check("cells as strata: svyby agree by coop (A B C): est | se", [e.se for e in by])
    for k in "ABC":
        mask = (rhg.data["coop"] == k).to_numpy()
        p = sv.proportion(rhg, "agree", method="logit", domain=mask)
        _check(f"cells as strata: coop {k} svyciprop logit df=degf: est lo hi", [p.estimate, p.ci_low, p.ci_high])
        own = sv.proportion(rhg.rows(np.flatnonzero(mask)), rhg.data["agree"].to_numpy()[mask], method="logit")
        np.testing.assert_allclose([own.estimate, own.se], [p.estimate, p.se], rtol=1e-12)


def test_a_cae_against_the_rest_groups_the_cells(rhg):
    """compare_strata(by=...) adds the cells of each group; the same test as compare_domains."""
    fast = sv.compare_strata(rhg, "agree", ["A", "B", "C"], by="coop")
    for k, c in zip("ABC", fast, strict=True):
        slow = sv.compare_domains(rhg, "agree", (rhg.data["coop"] == k).to_numpy())
        np.testing.assert_allclose([c.difference, c.se, c.p_value], [slow.difference, slow.se, slow.p_value],
                                   rtol=1e-10)


def test_a_cell_of_one_respondent_is_merged_unless_a_census_or_exempt():
    """The post-strata are the variance's strata, so the weighting merges a cell of one
    respondent (stage within sex) unless every member answered; the exempt level (respondents
    without sex or stage) is never merged."""
    d = pd.DataFrame({
        "cae": ["a"] * 9,
        "sex": ["f", "f", "f", "f", "m", "m", "m", "m", "?"],
        "stage": ["x", "x", "x", "y", "x", "x", "y", "y", "?"],
    })
    pop = pd.DataFrame({"cae": ["a"] * 5, "sex": ["f", "f", "m", "m", "?"], "stage": ["x", "y", "x", "y", "?"],
                        "Freq": [10.0, 6.0, 8.0, 2.0, 2.0]})
    one = sv.collapse_post_strata(d, pop, stratum="cae", outer="sex", inner="stage", min_count=1,
                                  exempt_outer=("?",))
    assert sorted(set(one.labels)) == ["a|?|?", "a|f|x", "a|f|y", "a|m|x", "a|m|y"]
    two = sv.collapse_post_strata(d, pop, stratum="cae", outer="sex", inner="stage", min_count=2,
                                  exempt_outer=("?",))
    # f|y has 1 respondent of 6: merged within sex; m|y has 2 of 2 (census), m|x 2 of 8: kept
    assert sorted(set(two.labels)) == ["a|?|?", "a|f|*", "a|m|x", "a|m|y"]
    assert two.collapsed["reason"].eq("stage collapsed within sex").all()
    assert set(two.population["cell"]) == set(two.labels)


def test_the_demo_design_has_no_stratum_of_one_but_censuses():
    """On the demo, every variance stratum has two respondents or is a census (a lone respondent
    without sex or stage), and the registers' shares keep a zero variance."""
    from cae_impact.analysis import indicators
    from cae_impact.spec.codebook import load_codebook
    from cae_impact.spec.config import load_study

    root = Path(__file__).resolve().parent.parent
    study = load_study(root / "config" / "study.yaml")
    cb = load_codebook(study.codebook)
    responses = pd.concat([pd.read_parquet(p) for p in sorted((root / "data" / "processed").glob(
        f"{study.wave}/*/responses.parquet"))], ignore_index=True) if (root / "data" / "processed" / study.wave).exists() else None
    if responses is None or responses.empty:
        pytest.skip("demo not cleaned (make reports)")
    w = indicators.build_design(responses, study, cb)
    d = w.design
    single = d.n_psu == 1
    assert (d.popsize[single] == 1).all()
    assert all(str(lab).endswith("|?|?") for lab in d.strata_levels[single])


def test_a_cell_without_a_register_count_is_an_error():
    d = pd.DataFrame({"cell": ["x", "x", "y"], "y": [1.0, 0.0, 1.0]})
    design = sv.svydesign(d, weights=np.ones(3))
    with pytest.raises(ValueError, match="no register count"):
        sv.cells_as_strata(design, "cell", pd.DataFrame({"cell": ["x"], "Freq": [5.0]}))
