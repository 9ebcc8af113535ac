"""The estimation's diagnostics (notebook 02), read from the files the estimation writes.

On the demo study estimated once (``pipeline.run_estimation`` into a scratch folder): the
weighted margins equal the registers, the trimmed weights found in the files are the ones the
estimation counted, Kish's design effects recomputed from ``design.csv`` are the recorded ones,
and the secrecy counts add up to the counts of the tables each report publishes. On small
hand-made files: quantiles, post-strata labels, secrecy kinds.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cae_impact.clean.cleaning import clean_export
from cae_impact.render import audit
from cae_impact.run import pipeline
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, load_study


@pytest.fixture(scope="module")
def estimated(tmp_path_factory):
    study = load_study()
    cb = load_codebook(study.codebook)
    root = tmp_path_factory.mktemp("audit")
    processed, reports = root / "processed", root / "reports"
    for cae in study.caes:
        folder = processed / study.wave / cae.id
        folder.mkdir(parents=True)
        clean_export(study, cae.id, codebook=cb).responses.to_parquet(folder / "responses.parquet", index=False)
    pipeline.run_estimation(study, processed, reports)
    return study, reports, audit.load_outputs(pipeline.study_dir(study, reports))


def test_weighted_margins_equal_the_registers(estimated):
    study, _, outputs = estimated
    margins = audit.weighted_margins(outputs)
    assert audit.margins_match(margins)
    cae = margins[margins["level"] == "cae"].set_index("cae_id")
    assert set(cae.index) == set(study.cae_ids)
    for c in study.caes:
        assert cae.loc[c.id, "register"] == c.population.total
        assert cae.loc[c.id, "weighted"] == pytest.approx(c.population.total, rel=1e-9)
    cells = margins[(margins["level"] == "post_stratum") & ~margins["trimmed_cae"]]
    assert len(cells) and np.allclose(cells["weighted"], cells["register"], rtol=1e-9)
    # one respondent's weight changed: the CAE no longer sums to its register
    tampered = audit.StudyOutputs(**{**vars(outputs), "design": outputs.design.copy()})
    tampered.design.loc[0, "weight"] += 1.0
    assert not audit.margins_match(audit.weighted_margins(tampered))


def test_trimmed_weights_are_the_ones_the_estimation_counted(estimated):
    _, _, outputs = estimated
    t = audit.trimming_table(outputs)
    assert int(t["trimmed"].sum()) == outputs.weighting["n_trimmed"] > 0
    assert (t["largest_after"] <= t["cap"] * (1 + 1e-9)).all()
    assert ((t["excess"] > 0) == (t["trimmed"] > 0)).all()
    # the weights before trimming are the post-stratified ones: register / respondents of the cell
    ps = audit.post_strata_table(outputs)
    assert np.allclose(ps["weight"] * ps["respondents"], ps["register"])


def test_design_effects_recomputed_from_the_design_are_the_recorded_ones(estimated):
    _, _, outputs = estimated
    d = audit.design_effects(outputs)
    assert np.allclose(d["kish_deff"], d["kish_deff_recorded"], rtol=1e-9)
    assert np.allclose(d["effective_n"], d["effective_n_recorded"], rtol=1e-9)
    assert d.iloc[-1]["cae_id"] == CONSORTIUM and d.iloc[-1]["respondents"] == outputs.weighting["respondents"]


def test_response_table_and_quantiles_on_the_demo(estimated):
    study, _, outputs = estimated
    r = audit.response_table(outputs).set_index("cae_id")
    assert r.loc[CONSORTIUM, "population"] == sum(c.population.total for c in study.caes)
    assert r.loc[CONSORTIUM, "respondents"] == len(outputs.design)
    q = audit.weight_quantiles(outputs).set_index("cae_id")
    assert (q["min"] <= q["p25"]).all() and (q["p25"] <= q["median"]).all() and (q["median"] <= q["max"]).all()
    assert np.allclose(q.loc[study.cae_ids, "mean"] * q.loc[study.cae_ids, "respondents"],
                       [c.population.total for c in study.caes])


def test_secrecy_counts_add_up_to_the_published_tables(estimated):
    """Per target, the cells of each kind in the study table are those of the report's own
    table (``report__<target>.parquet``, what its notebooks and indicators.csv print); the kinds
    add up to the cells, and the reasons to what weighting.json records."""
    study, reports, outputs = estimated
    by_target = audit.secrecy_by_target(outputs.estimates).set_index("target")
    kinds = [c for c in by_target.columns if c != "cells"]
    assert (by_target[kinds].sum(axis=1) == by_target["cells"]).all()
    assert "autre" not in by_target.columns
    for target in study.targets:
        rows, _ = pipeline.target_files(study, reports, target)
        published = pd.read_parquet(rows)
        own = audit.secrecy_by_target(published[published["target"] == target]).set_index("target")
        assert own.loc[target].to_dict() == by_target.loc[target].to_dict(), target
    reasons = audit.secrecy_reasons(outputs.estimates).groupby("suppression_reason")["cells"].sum().to_dict()
    assert reasons == outputs.weighting["secrecy"]["by_reason"]
    assert sum(reasons.values()) == by_target.drop(columns=["publiée", "cells"]).to_numpy().sum()


def test_attack_verdict_reads_the_recorded_summary_and_the_cells(estimated):
    _, _, outputs = estimated
    verdict = audit.attack_verdict(outputs)
    assert verdict["consistent"] and verdict["recorded"]["exposed"] == 0
    assert verdict["from_file"]["hidden_counts"] == verdict["recorded"]["hidden_counts"] > 0
    per_target = audit.attack_by_target(outputs)
    assert per_target["hidden_counts"].sum() == verdict["recorded"]["hidden_counts"]
    assert (per_target["exposed"] == 0).all()


def test_written_files_are_the_study_files_with_their_digests(estimated):
    from cae_impact.core.files import sha256_file

    study, reports, _ = estimated
    files = audit.written_files(pipeline.study_dir(study, reports))
    assert {"estimates.parquet", "weighting.json", "design.csv", "post_strata.csv",
            "secrecy_audit.csv"} <= set(files["file"])
    row = files[files["file"] == "weighting.json"].iloc[0]
    assert row["sha256"] == sha256_file(pipeline.study_dir(study, reports) / "weighting.json")


# ------------------------------------------------------------------------------ hand-made files


def _toy(tmp_path):
    """Two CAEs: « a » with a merged stage and a respondent without sex, « b » as a whole CAE."""
    folder = tmp_path / "_study"
    folder.mkdir()
    design = pd.DataFrame({
        "respondent_id": [f"pseudo{i:02d}q7x" for i in range(8)],
        "cae_id": ["a"] * 5 + ["b"] * 3,
        "population": [20.0] * 5 + [12.0] * 3,
        "post_stratum": ["a|f|cape", "a|f|cape", "a|m|*", "a|m|*", "a|?|?", "b|*|*", "b|*|*", "b|*|*"],
        "weight": [3.0, 3.0, 5.0, 5.0, 4.0, 1.0, 2.0, 9.0],
        "base_weight": [4.0] * 5 + [4.0] * 3,
    })
    design.to_csv(folder / "design.csv", index=False)
    pd.DataFrame({"post_stratum": ["a|f|cape", "a|m|*", "a|?|?", "b|*|*"], "Freq": [6.0, 10.0, 4.0, 12.0]}
                 ).to_csv(folder / "post_strata.csv", index=False)
    per_cae = [{"cae_id": c, "label": c.upper(), "population": n, "respondents": r, "response_rate": r / n,
                "weighting": "x", "kish_deff": 1.0, "effective_n": r} for c, n, r in (("a", 20, 5), ("b", 12, 3))]
    (folder / "weighting.json").write_text(json.dumps({
        "n_trimmed": 0, "per_cae": per_cae, "notes": ["A : cellule « homme × CAPE » regroupée avec les autres"],
        "kish_deff": 1.0, "effective_n": 8, "respondents": 8,
        "secrecy": {"cells": 4, "by_reason": {}, "hidden_counts": 0, "audit": None}}), encoding="utf-8")
    pd.DataFrame({"target": ["a", "a", "a", "a", "b"],
                  "suppression_reason": ["", "effectif < 5", "valeur en tranche (effectif ou complément < 5)",
                                         "suppression secondaire", "base < 10"]}
                 ).to_parquet(folder / "estimates.parquet", index=False)
    return audit.load_outputs(folder)


def test_quantiles_of_hand_made_weights(tmp_path):
    q = audit.weight_quantiles(_toy(tmp_path)).set_index("cae_id")
    b = q.loc["b"]
    assert (b["min"], b["median"], b["max"], b["mean"]) == (1.0, 2.0, 9.0, 4.0)
    assert b["max_over_min"] == 9.0 and b["p25"] == 1.5 and b["p75"] == 5.5
    assert q.loc[CONSORTIUM, "respondents"] == 8 and q.loc[CONSORTIUM, "max"] == 9.0


def test_post_strata_say_what_was_merged(tmp_path):
    outputs = _toy(tmp_path)
    ps = audit.post_strata_table(outputs).set_index("post_stratum")
    assert ps.loc["a|f|cape", "collapsed"] == ""
    assert ps.loc["a|m|*", "collapsed"].startswith("statuts regroupés")
    assert ps.loc["b|*|*", "collapsed"].startswith("toute la CAE")
    assert ps.loc["a|?|?", "collapsed"].startswith("répondants sans sexe")
    assert ps.loc["a|m|*", "respondents"] == 2 and ps.loc["a|m|*", "weight"] == 5.0
    assert audit.collapse_notes(outputs) == ["A : cellule « homme × CAPE » regroupée avec les autres"]
    margins = audit.weighted_margins(outputs)
    assert audit.margins_match(margins)
    assert audit.attack_verdict(outputs)["recorded"] is None


def test_secrecy_kinds_of_hand_made_cells(tmp_path):
    t = audit.secrecy_by_target(_toy(tmp_path).estimates).set_index("target")
    assert t.loc["a"].to_dict() == {"publiée": 1, "masquée (effectif)": 1, "masquée (base)": 0,
                                    "en tranche": 1, "secondaire": 1, "cells": 4}
    assert t.loc["b", "masquée (base)"] == 1 and t.loc["b", "cells"] == 1
    assert audit.secrecy_kind(None) == "publiée" and audit.secrecy_kind("autre chose") == "autre"


def test_without_register_by_sex_and_stage_the_base_weights_are_audited(tmp_path):
    """No post_strata.csv (registers without sex × stage counts) and no attack: the margins are
    the CAEs' totals, the weights before trimming the base weights."""
    outputs = _toy(tmp_path)
    (outputs.folder / "post_strata.csv").unlink()
    design = outputs.design.assign(post_stratum="", weight=[4.0] * 5 + [4.0] * 3)
    design.to_csv(outputs.folder / "design.csv", index=False)
    outputs = audit.load_outputs(outputs.folder)
    assert outputs.post_strata is None and outputs.secrecy_audit is None
    assert audit.post_strata_table(outputs).empty
    margins = audit.weighted_margins(outputs)
    assert set(margins["level"]) == {"cae"} and audit.margins_match(margins)
    t = audit.trimming_table(outputs)
    assert (t["trimmed"] == 0).all() and (t["median_weight"] == 4.0).all()
    assert audit.attack_by_target(outputs).empty


@pytest.mark.parametrize("register_by_sex_stage", [True, False])
def test_every_display_runs_and_shows_no_respondent_id(tmp_path, monkeypatch, register_by_sex_stage):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    outputs = _toy(tmp_path)
    if not register_by_sex_stage:
        (outputs.folder / "post_strata.csv").unlink()
        outputs = audit.load_outputs(outputs.folder)
    audit.show_response(outputs)
    audit.show_post_strata(outputs)
    audit.show_trimming(outputs)
    audit.show_margins(audit.weighted_margins(outputs))
    audit.show_weights(outputs)
    audit.show_design_effects(outputs)
    audit.show_secrecy(outputs)
    text = "\n".join(o.data if hasattr(o, "data") else o.to_string() if hasattr(o, "to_string") else str(o)
                     for o in shown)
    assert "Attaque par programmation linéaire" in text and "non exécutée" in text
    assert not [i for i in outputs.design["respondent_id"] if i in text]
