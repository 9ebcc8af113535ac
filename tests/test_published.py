"""The published consortium reference: file round trip, the test against it, staleness, and
the property it exists for: a CAE's report files do not change when another CAE's data do."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cae_impact.analysis import indicators as I
from cae_impact.analysis import published
from cae_impact.clean.cleaning import clean_export
from cae_impact.run import pipeline
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, load_study


@pytest.fixture(scope="module")
def demo():
    study = replace(load_study(), consortium_reference=None)
    cb = load_codebook(study.codebook)
    responses = pd.concat([clean_export(study, c.id, codebook=cb).responses for c in study.caes], ignore_index=True)
    table = I.estimate_study(responses, study, cb).table
    return study, cb, responses, table


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    study, _, _, table = demo
    path = tmp_path_factory.mktemp("ref") / "consortium.csv"
    published.write_reference(table, study, path, source={"published": "2026-11-26"},
                              consortium={"caes": 7, "population": 1325, "respondents": 568})
    return published.load_reference(path)


def test_reference_round_trip_is_exact(demo, reference):
    _, _, _, table = demo
    rows = published.consortium_rows(table)
    assert len(reference.rows) == len(rows) > 100
    for col in ("estimate", "se", "ci_low", "ci_high", "base_weighted", "df"):
        np.testing.assert_array_equal(reference.rows[col].to_numpy(float), rows[col].to_numpy(float))
    assert reference.rows["suppressed"].tolist() == rows["suppressed"].astype(bool).tolist()
    assert reference.caes == {f"cae-{i}" for i in range(1, 8)} and reference.published == "2026-11-26"
    assert json.loads(published.meta_path(reference.path).read_text())["consortium"]["respondents"] == 568
    assert published.differences(reference, table).empty


def test_df_is_respondents_minus_caes_minus_one(demo, reference):
    _, _, _, table = demo
    row = reference.rows[(reference.rows.indicator_id == "cae_decisive")].iloc[0]
    caes = table[(table.indicator_id == "cae_decisive") & (table.breakdown == "total")
                 & (table.target != CONSORTIUM) & (table.n_unweighted > 0)]
    assert row["df"] == row["n_unweighted"] - len(caes) - 1


def test_test_against_current_reference_is_the_test_against_the_rest(demo, reference):
    """With the reference of the same data, the p-value is the CAE-against-the-rest one up to
    the randomness of the CAE's weighted base (second order): same cells tested, close values."""
    study, _, _, table = demo
    worst = 0.0
    for cae in study.cae_ids:
        own = table[table.target == cae]
        got = published.compare_with_reference(own, reference, cae)
        tested = own["comparison"] == CONSORTIUM
        live = own.loc[tested, "p_value"].to_numpy(float)
        mine = got.loc[tested, "p_value"].to_numpy(float)
        assert np.array_equal(np.isnan(live), np.isnan(mine)), cae
        ok = ~np.isnan(live)
        worst = max(worst, float(np.max(np.abs(live[ok] - mine[ok]))))
        assert (got.loc[tested, "test"] == published.REFERENCE_TEST).all()
        untouched = ~tested
        pd.testing.assert_frame_equal(got[untouched], own[untouched])
    assert worst < 2e-3


def test_a_cae_outside_the_reference_is_tested_as_independent(demo, reference):
    """A CAE that joined after publication: Var(p_k - p_C) = Var(p_k) + Var(p_C), df of the reference."""
    _, _, _, table = demo
    own = table[(table.target == "cae-2")].copy()
    own["target"] = "cae-9"
    got = published.compare_with_reference(own, reference, "cae-9")
    row = got[(got.indicator_id == "cae_decisive") & (got.breakdown == "total")].iloc[0]
    ref = reference.rows[reference.rows.indicator_id == "cae_decisive"].iloc[0]
    t = (row["estimate"] - ref["estimate"]) / math.sqrt(row["se"] ** 2 + ref["se"] ** 2)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), ref["df"]), rel=1e-12)


def test_calibration_variable_is_not_tested_against_the_reference(demo, reference):
    _, _, _, table = demo
    got = published.compare_with_reference(table[table.target == "cae-1"], reference, "cae-1")
    row = got[(got.indicator_id == "women_share") & (got.breakdown == "total")].iloc[0]
    assert pd.isna(row["p_value"])


def test_stale_reference_is_reported(demo, reference):
    _, _, _, table = demo
    changed = table.copy()
    i = changed.index[(changed.target == CONSORTIUM) & (changed.indicator_id == "cae_decisive")
                      & (changed.breakdown == "total")][0]
    changed.loc[i, "estimate"] += 0.01
    diff = published.differences(reference, changed)
    assert diff["indicator_id"].tolist() == ["cae_decisive"]


def test_reference_errors_name_the_file_and_the_fix(tmp_path, demo, reference):
    study, _, _, table = demo
    with pytest.raises(published.ReferenceError, match=r"missing\.csv.*make publish-reference"):
        published.load_reference(tmp_path / "missing.csv")
    broken = tmp_path / "broken.csv"
    reference.rows.drop(columns=["se"]).to_csv(broken, index=False)
    published.meta_path(broken).write_text(json.dumps(reference.meta))
    with pytest.raises(published.ReferenceError, match=r"broken\.csv: column\(s\) se missing"):
        published.load_reference(broken)
    partial = replace(reference, rows=reference.rows[reference.rows.indicator_id != "cae_decisive"])
    with pytest.raises(published.ReferenceError, match="cae_decisive.*make publish-reference"):
        published.check_fits(partial, study, table)


def _write_processed(study, responses, root):
    for cae in study.cae_ids:
        folder = root / study.wave / cae
        folder.mkdir(parents=True, exist_ok=True)
        responses[responses.cae_id == cae].to_parquet(folder / "responses.parquet", index=False)


@pytest.mark.parametrize("mode", ["published", "live"])
def test_another_cae_data_leave_a_cae_report_files_identical_only_with_a_reference(
        demo, reference, tmp_path, mode):
    """The estimation writes each report's own files. CAE 1 loses a respondent: with a published
    reference, CAE 3's files are byte-identical (its notebooks are not executed again); compared
    with the live consortium, they change (the consortium did)."""
    study, _, responses, _ = demo
    study = replace(study, consortium_reference=reference.path if mode == "published" else None)
    files = {}
    for run, data in (("before", responses), ("after", responses.drop(index=responses.index[responses.cae_id == "cae-1"][-1]))):
        processed, reports = tmp_path / run / "processed", tmp_path / run / "reports"
        _write_processed(study, data, processed)
        pipeline.run_estimation(study, processed, reports)
        files[run] = {t: [p.read_bytes() for p in pipeline.target_files(study, reports, t)] for t in study.targets}
    assert files["before"]["cae-1"] != files["after"]["cae-1"]
    assert files["before"][CONSORTIUM] != files["after"][CONSORTIUM]
    if mode == "published":
        assert all(files["before"][t] == files["after"][t] for t in study.cae_ids[1:])
        context = json.loads(files["after"]["cae-3"][1])
        assert context["reference"]["published"] == "2026-11-26" and context["per_cae"][0]["cae_id"] == "cae-3"
        check = json.loads((pipeline.study_dir(study, tmp_path / "after" / "reports") / "reference_check.json").read_text())
        assert check["differing"] > 0  # the build says the published figures are no longer current
    else:
        assert all(files["before"][t] != files["after"][t] for t in study.cae_ids[1:])


def test_the_estimation_says_which_reports_changed_and_why(demo, reference, tmp_path):
    """A second estimation records which targets' files changed; a CAE whose own data did not
    change but whose cells the secondary suppression hid or showed again is named with it."""
    from cae_impact.run.cli import describe_changes

    study, _, responses, _ = demo
    study = replace(study, consortium_reference=reference.path)
    processed, reports = tmp_path / "processed", tmp_path / "reports"
    _write_processed(study, responses, processed)
    pipeline.run_estimation(study, processed, reports)
    changes_path = pipeline.study_dir(study, reports) / pipeline.CHANGES_FILE
    assert json.loads(changes_path.read_text())["changed"] == []
    raw = study.cae("cae-1").export.read_bytes().rstrip(b"\r\n").split(b"\r\n")
    export = tmp_path / "export.csv"
    export.write_bytes(b"\r\n".join(raw[:-2] + raw[-1:]) + b"\r\n")  # one respondent fewer
    changed_study = replace(study, caes=tuple(replace(c, export=export) if c.id == "cae-1" else c
                                              for c in study.caes))
    cleaned = clean_export(changed_study, "cae-1", codebook=load_codebook(study.codebook)).responses
    _write_processed(study, pd.concat([cleaned, responses[responses.cae_id != "cae-1"]], ignore_index=True),
                     processed)
    pipeline.run_estimation(study, processed, reports)
    changes = json.loads(changes_path.read_text())
    assert {"cae-1", CONSORTIUM} <= set(changes["changed"])
    others = set(changes["changed"]) - {"cae-1", CONSORTIUM}
    assert others and others <= set(changes["suppression"])  # this change hides cells of other CAEs
    assert len(changes["changed"]) + len(changes["unchanged"]) == len(study.targets)
    line = describe_changes(changes)
    assert "secondary suppression" in line and "cae-1" in line
    assert describe_changes({"changed": [], "unchanged": [], "suppression": {}}) == ""  # first estimation
