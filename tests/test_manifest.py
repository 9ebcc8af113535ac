"""Provenance: manifest.json beside each report, its check, and the build summary."""

import json

import pandas as pd
import pytest

from cae_impact.core.files import sha256_file
from cae_impact.run import cli, manifest
from cae_impact.run import execute as build
from cae_impact.spec.config import PROJECT_ROOT, load_study


@pytest.fixture
def fake_build(tmp_path):
    study = load_study(PROJECT_ROOT / "config" / "study.yaml")
    processed, reports = tmp_path / "processed", tmp_path / "reports"
    for cae in study.cae_ids:
        d = processed / study.wave / cae
        d.mkdir(parents=True)
        pd.DataFrame({"id": [1, 2], "cae": [cae, cae]}).to_parquet(d / "responses.parquet", index=False)
    sdir = reports / study.wave / "_study"
    sdir.mkdir(parents=True)
    pd.DataFrame({"v": [1.0]}).to_parquet(sdir / "estimates.parquet", index=False)
    (sdir / "weighting.json").write_text("{}")
    pd.DataFrame({"v": [1.0]}).to_parquet(sdir / "report__consortium.parquet", index=False)
    (sdir / "context__consortium.json").write_text("{}")
    target_dir = reports / study.wave / "consortium"
    target_dir.mkdir(parents=True)
    (target_dir / "indicators.csv").write_text("a,b\n1,2\n")
    runs = reports / study.wave / "_runs"
    runs.mkdir()
    (runs / "estimate.json").write_text(json.dumps({"cache_key": "k", "cache_hit": False, "seconds": 1.0}))
    record = build.RunRecord("03_effect.ipynb", "x.ipynb", {"target": "consortium", "domain": "d1"}, "abc", False, 4.2, {})
    path = manifest.write_manifest(study, "consortium", processed, reports, [record], runs, PROJECT_ROOT / "notebooks")
    return study, processed, reports, path


def test_manifest_records_inputs_parameters_and_environment(fake_build):
    study, processed, reports, path = fake_build
    assert path == reports / study.wave / "consortium" / "manifest.json"
    m = json.loads(path.read_text())
    raw = m["inputs"]["raw_exports"]
    cae1 = study.cae("cae-1").export
    assert raw[str(cae1.relative_to(PROJECT_ROOT))] == sha256_file(cae1)
    assert len(m["inputs"]["processed"]) == len(study.cae_ids)
    # the report reads its own rows and context, not the study-wide table (cae_impact.run.steps)
    assert "report__consortium.parquet" in " ".join(m["inputs"]["estimates"])
    assert "context__consortium.json" in " ".join(m["inputs"]["estimates"])
    assert any(name.endswith("codebook.yaml") for name in m["inputs"]["configuration"])
    assert m["notebooks"][0]["parameters"] == {"target": "consortium", "domain": "d1"}
    assert m["notebooks"][0]["cache_key"] == "abc" and m["notebooks"][0]["seconds"] == 4.2
    assert m["git"]["commit"] is None or len(m["git"]["commit"]) == 40
    assert m["git"]["dirty"] in (True, False, None)
    assert m["packages"]["pandas"] == pd.__version__
    assert set(m["code"]) == {"requirements.lock"}
    # every step it was made from, with the inputs and code files its key hashes
    assert {"clean:cae-1", "estimate", "chapters:consortium", "profile:consortium",
            "indicators:consortium"} <= set(m["steps"])
    chapter = m["steps"]["chapters:consortium"]
    assert "src/cae_impact/render/chapters.py" in chapter["code_files"]
    assert not any("cae_impact_demo" in f for f in chapter["code_files"])
    assert "src/cae_impact/render/report.py" not in m["steps"]["clean:cae-1"]["code_files"]
    assert "src/cae_impact/render/chapters.py" not in m["steps"]["clean:cae-1"]["code_files"]
    assert m["estimation"]["cache_key"] == "k"
    assert "indicators.csv" in m["outputs"]


def test_check_manifest_consistent_then_tampered(fake_build):
    study, processed, reports, _ = fake_build
    assert manifest.check_manifest(study, "consortium", processed, reports) == []
    tampered = processed / study.wave / "cae-2" / "responses.parquet"
    pd.DataFrame({"id": [1, 2, 3], "cae": ["x"] * 3}).to_parquet(tampered, index=False)
    problems = manifest.check_manifest(study, "consortium", processed, reports)
    assert len(problems) == 1 and "cae-2/responses.parquet" in problems[0]


def test_verify_refuses_a_tampered_build_without_executing(fake_build, capsys, monkeypatch):
    study, processed, reports, _ = fake_build
    (reports / study.wave / "_study" / "context__consortium.json").write_text('{"tampered": true}')
    monkeypatch.setattr(build, "execute_notebook", lambda *a, **k: pytest.fail("executed"))
    rc = cli.main(["--processed-root", str(processed), "--reports-root", str(reports), "verify", "--target", "consortium"])
    assert rc == 1
    assert "context__consortium.json" in capsys.readouterr().err


def test_check_manifest_without_manifest(tmp_path):
    study = load_study(PROJECT_ROOT / "config" / "study.yaml")
    assert "no manifest" in manifest.check_manifest(study, "cae-1", tmp_path, tmp_path)[0]


def test_build_summary_counts_failed_notebooks_and_targets(tmp_path, capsys):
    study = load_study(PROJECT_ROOT / "config" / "study.yaml")
    args = ["--reports-root", str(tmp_path), "build-summary"]
    assert cli.main(args) == 0
    assert "no failure" in capsys.readouterr().out
    folder = tmp_path / study.wave / "_failures"
    folder.mkdir(parents=True)
    for target, nb in (("cae-1", "04_profile"), ("cae-1", "03_effect"), ("cae-3", "01_cleaning")):
        (folder / f"{target}__{nb}.json").write_text(json.dumps(
            {"target": target, "notebook": f"{nb}.ipynb", "cell_number": 3, "error": "ValueError: x"}))
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "3 notebook(s) failed in 2 target(s) (cae-1, cae-3)" in err


# ---- issue 15: make verify covers every published file -----------------------------------------


def _published(study, reports):
    target_dir = reports / study.wave / "consortium"
    (target_dir / "report.html").write_text("<p>rapport</p>")
    (target_dir / "report.pdf").write_bytes(b"%PDF consortium")
    (target_dir / "report.docx").write_bytes(b"PK docx")
    (target_dir / "indicators.xlsx").write_bytes(b"PK xlsx")
    (target_dir / "notebooks").mkdir()
    (target_dir / "notebooks" / "04_profile.ipynb").write_text("{}")
    manifest.record_outputs(study, "consortium", reports)
    return target_dir


def test_manifest_records_every_published_file(fake_build):
    study, processed, reports, path = fake_build
    _published(study, reports)
    outputs = json.loads(path.read_text())["outputs"]
    assert set(outputs) == {"report.html", "report.pdf", "report.docx", "indicators.csv", "indicators.xlsx",
                            "notebooks/04_profile.ipynb"}
    assert manifest.check_manifest(study, "consortium", processed, reports) == []


@pytest.mark.parametrize("name", ["report.pdf", "report.html", "report.docx", "indicators.xlsx",
                                  "indicators.csv", "notebooks/04_profile.ipynb"])
def test_verify_fails_on_a_swapped_document_naming_it(fake_build, capsys, monkeypatch, name):
    study, processed, reports, _ = fake_build
    target_dir = _published(study, reports)
    (target_dir / name).write_bytes(b"another CAE's document")
    monkeypatch.setattr(build, "execute_notebook", lambda *a, **k: pytest.fail("executed"))
    rc = cli.main(["--processed-root", str(processed), "--reports-root", str(reports), "verify", "--target", "consortium"])
    err = capsys.readouterr().err
    assert rc == 1 and name in err and "verify FAILED" in err


def test_verify_names_a_removed_or_added_document(fake_build):
    study, processed, reports, _ = fake_build
    target_dir = _published(study, reports)
    (target_dir / "report.docx").unlink()
    (target_dir / "notebooks" / "03_effect_extra.ipynb").write_text("{}")
    problems = manifest.check_manifest(study, "consortium", processed, reports)
    assert any("report.docx" in p and "missing" in p for p in problems)
    assert any("03_effect_extra.ipynb" in p and "not in the manifest" in p for p in problems)


def test_build_summary_counts_failures_outside_notebooks(tmp_path, capsys, monkeypatch):
    load_study(PROJECT_ROOT / "config" / "study.yaml")
    args = ["--reports-root", str(tmp_path)]

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "reports.pdf"))

    monkeypatch.setattr(cli, "cmd_index", full_disk)
    assert cli.main([*args, "index"]) == 2
    err = capsys.readouterr().err
    assert "disque plein" in err and "Traceback" not in err
    assert cli.main([*args, "build-summary"]) == 1
    err = capsys.readouterr().err
    assert "1 step(s) failed" in err and "index" in err and "disque plein" in err
    assert cli.main([*args, "build-summary", "--status", "2"]) == 1


def test_build_summary_never_says_no_failure_after_a_failed_build(tmp_path, capsys):
    assert cli.main(["--reports-root", str(tmp_path), "build-summary", "--status", "2"]) == 1
    assert "FAILED" in capsys.readouterr().err
