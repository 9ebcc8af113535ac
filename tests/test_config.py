from pathlib import Path

import pytest

from cae_impact.spec.config import CONSORTIUM, StudyConfigError, load_study


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(text, encoding="utf-8")
    return p


BASE = """
wave: "2026"
caes:
  - id: cae-a
    label: "CAE 1"
    export: data/raw/x.csv
    format: limesurvey
    population: {total: 10}
"""


def test_demo_study_loads_with_targets():
    study = load_study()
    assert study.synthetic is True
    assert len(study.caes) == 7
    assert study.targets[-1] == CONSORTIUM
    assert [c.label for c in study.caes] == [f"CAE {i}" for i in range(1, 8)]


def test_minimal_study(tmp_path):
    study = load_study(write(tmp_path, BASE), root=tmp_path)
    assert study.cae_ids == ["cae-a"]
    assert study.report.interval_method == "logit"
    assert study.cae("cae-a").export == tmp_path / "data/raw/x.csv"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("format: limesurvey", "format: surveymonkey"), r"caes\[0\] \(cae-a\)\.format"),
        (lambda s: s.replace("id: cae-a", "id: consortium"), "not 'consortium'"),
        (lambda s: s.replace("{total: 10}", "{total: -3}"), "population.total"),
        (lambda s: s.replace("    label: \"CAE 1\"\n", ""), "missing required field 'label'"),
        (lambda s: s + "report: {interval: logit}\n", "unknown option"),
        (lambda s: s.replace("{total: 10}", "{total: 10, by_sex_stage: {F: {cape: 4}, M: {cesa: 5}}}"), "adds up to 9"),
        (lambda s: s.replace("{total: 10}", "{total: 10, by_sex_stage: {X: {cape: 10}}}"), "unknown sex 'X'"),
    ],
)
def test_invalid_study_names_the_entry(tmp_path, edit, message):
    with pytest.raises(StudyConfigError, match=message):
        load_study(write(tmp_path, edit(BASE)), root=tmp_path)


def test_duplicate_cae(tmp_path):
    text = BASE + BASE.split("caes:\n")[1].replace('"CAE 1"', '"CAE 2"')
    with pytest.raises(StudyConfigError, match="duplicate CAE id"):
        load_study(write(tmp_path, text), root=tmp_path)


def test_unknown_cae_lists_known(tmp_path):
    study = load_study(write(tmp_path, BASE), root=tmp_path)
    with pytest.raises(StudyConfigError, match="known CAEs: cae-a"):
        study.cae("cae-z")
