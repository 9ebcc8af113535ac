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
    return sv.cells_as_strata(design, "cell", cells, group="coop")


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


def test_a_cell_of_one_respondent_shares_a_stratum_within_its_cae():
    """Collapsed strata: the single respondent's cell joins the smallest other cell of its CAE;
    weights unchanged, fpc summed; a census cell of one is left alone."""
    d = pd.DataFrame({
        "cae": ["a"] * 7 + ["b"] * 4,
        "cell": ["a1", "a1", "a1", "a2", "a2", "a3", "a4", "b1", "b1", "b1", "b2"],
        "y": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1],
    })
    pop = pd.DataFrame({"cell": ["a1", "a2", "a3", "a4", "b1", "b2"], "Freq": [10, 5, 4, 1, 8, 3]})
    design = sv.svydesign(d, strata="cae", weights=np.arange(1.0, 12.0), fpc=np.where(d["cae"] == "a", 20, 11))
    out = sv.cells_as_strata(design, "cell", pop, group="cae")
    strata = dict(zip(out.data["cell"], out.data["variance_stratum"], strict=True))
    assert strata == {"a1": "a1", "a2": "a2+a3", "a3": "a2+a3", "a4": "a4", "b1": "b1+b2", "b2": "b1+b2"}
    sizes = dict(zip(out.data["variance_stratum"], out.data["variance_population"], strict=True))
    assert sizes == {"a1": 10, "a2+a3": 9, "a4": 1, "b1+b2": 11}
    np.testing.assert_array_equal(out.weights, design.weights)
    assert (out.n_psu >= 1).all() and sv.mean(out, "y").se > 0


def test_a_cell_without_a_register_count_is_an_error():
    d = pd.DataFrame({"cell": ["x", "x", "y"], "y": [1.0, 0.0, 1.0]})
    design = sv.svydesign(d, weights=np.ones(3))
    with pytest.raises(ValueError, match="no register count"):
        sv.cells_as_strata(design, "cell", pd.DataFrame({"cell": ["x"], "Freq": [5.0]}))
