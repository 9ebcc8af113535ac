"""Issue 15: a CAE that cannot be used stops what depends on it, loudly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from cae_impact.spec.config import StudyConfigError, load_study

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "config" / "study.yaml"
KEY = b"test-key-0123456789abcdef"


def test_min_respondents_defaults_and_is_validated(tmp_path):
    assert load_study().min_respondents >= 1
    path = tmp_path / "study.yaml"
    path.write_text(BASE.read_text(encoding="utf-8") + "\nmin_respondents: 0\n", encoding="utf-8")
    with pytest.raises(StudyConfigError, match="min_respondents"):
        load_study(path)


def test_cleaning_fails_below_the_minimum_naming_the_cae(tmp_path):
    from cae_impact.clean.cleaning import UnusableCaeError, clean_export

    study = load_study()
    kept = clean_export(study, "cae-1", key=KEY).accounting.kept
    with pytest.raises(UnusableCaeError) as info:
        clean_export(replace(study, min_respondents=kept + 1), "cae-1", key=KEY)
    message = str(info.value)
    assert "cae-1" in message and f"{kept} usable respondent" in message and str(kept + 1) in message
    assert "NON UTILISABLE" in message


def test_estimation_refuses_a_cae_without_respondents(tmp_path):
    from cae_impact.analysis.indicators import EstimationError
    from cae_impact.run.pipeline import require_every_cae

    study = load_study()
    responses = pd.DataFrame({"cae_id": [c for c in study.cae_ids if c != "cae-4"]})
    with pytest.raises(EstimationError, match="cae-4"):
        require_every_cae(study, responses)
    require_every_cae(study, pd.DataFrame({"cae_id": study.cae_ids}))


def test_consortium_steps_refuse_an_incomplete_estimation(tmp_path):
    import json

    from cae_impact.run import cli
    from cae_impact.run import execute as build

    study = load_study()
    sdir = tmp_path / study.wave / "_study"
    sdir.mkdir(parents=True)
    per_cae = [{"cae_id": c, "respondents": 10} for c in study.cae_ids if c != "cae-2"]
    (sdir / "weighting.json").write_text(json.dumps({"per_cae": per_cae}))
    with pytest.raises(build.BuildError, match="cae-2"):
        cli.require_complete_consortium(study, tmp_path)
    rc = cli.main(["--reports-root", str(tmp_path), "render", "--target", "consortium", "--to", "html"])
    assert rc == 2 and not (tmp_path / study.wave / "consortium" / "report.html").exists()


def _excluding(tmp_path, reason="export reçu hors délai") -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(BASE.read_text(encoding="utf-8")
                    + f"\nexclude_caes:\n  - id: cae-2\n    reason: {reason}\n", encoding="utf-8")
    return path


def test_exclude_caes_is_explicit_and_documented(tmp_path):
    study = load_study(_excluding(tmp_path))
    assert "cae-2" not in study.cae_ids and [c.id for c, _ in study.excluded] == ["cae-2"]
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.read_text(encoding="utf-8") + "\nexclude_caes:\n  - id: cae-2\n", encoding="utf-8")
    with pytest.raises(StudyConfigError, match="reason"):
        load_study(path)


def test_excluded_cae_said_on_cover_and_method_annex(tmp_path):
    from cae_impact.render import report

    study = load_study(_excluding(tmp_path))
    meta = report.report_meta(study, "consortium")
    label = [c.label for c, _ in study.excluded][0]
    doc = report.wrap_document("<p>corps</p>", meta,
                               report.add_exclusion_to_method('<h1 id="annexe-methode">Annexe A — Méthode</h1>', study))
    cover = doc.split('<header class="cover">', 1)[1].split("</header>", 1)[0]
    assert label in cover and "hors délai" in cover
    annex = doc.split('id="annexe-methode"', 1)[1]
    assert label in annex and "exclue" in annex
    cae_doc = report.wrap_document("<p>corps</p>", report.report_meta(study, "cae-1"))
    assert "cover-excluded" not in cae_doc
