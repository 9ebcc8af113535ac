"""Notebook tier: the whole build (Make → papermill → reports) on a small fixture study.

The fixture study is two CAEs of the demo study (two export formats) and the consortium,
built into temporary folders through the Makefile exactly as `make reports` does. One test
breaks a CAE's export and proves the failure names the CAE, the notebook and the cell, and
leaves nothing finished-looking; another makes one target's analysis fail and proves the
other targets are still built.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.notebook
FIXTURE_CAES = ("cae-1", "cae-3")  # LimeSurvey (codes) and Google Forms exports


def write_fixture_study(folder: Path, caes=FIXTURE_CAES, broken: str | None = None) -> Path:
    """A study of some demo CAEs; ``broken`` gets a copy of its export that cannot be read."""
    demo = yaml.safe_load((ROOT / "config" / "study.yaml").read_text(encoding="utf-8"))
    demo["caes"] = [c for c in demo["caes"] if c["id"] in caes]
    for c in demo["caes"]:
        # the study's own copy of each export, so that a test can change one as a CAE would
        copy = folder / "raw" / c["id"] / Path(c["export"]).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / c["export"], copy)
        c["export"] = str(copy)
        if c["id"] == broken:
            bad = folder / "broken_export.csv"
            bad.write_text("this is not a survey export\n", encoding="utf-8")
            c["export"] = str(bad)
    demo["data_dir"] = str(folder)  # the exports are outside the project: said explicitly
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(demo, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def make(folder: Path, study: Path, *goals: str, notebooks: Path | None = None, flags=(), extra=()) -> subprocess.CompletedProcess:
    cmd = [
        "make", "--no-print-directory", *flags, *goals,
        f"STUDY={study}",
        f"PROCESSED_ROOT={folder / 'processed'}",
        f"REPORTS_ROOT={folder / 'reports'}",
        f"BUILD_ROOT={folder / 'build'}",
    ]
    if notebooks:
        cmd.append(f"NOTEBOOKS_DIR={notebooks}")
    cmd.extend(extra)
    # its own session, as make run from a terminal: a signal the build sends its process group
    # (a kernel interrupted, a server stopping) can never reach pytest
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, start_new_session=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fixture-study")
    study = write_fixture_study(folder)
    result = make(folder, study, "reports", flags=("-j2",))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wave = yaml.safe_load(study.read_text())["wave"]
    # later tests rebuild (cache hits): keep the first build's manifest for the kernel test
    shutil.copyfile(folder / "reports" / wave / "cae-1" / "manifest.json", folder / "first-build-cae-1-manifest.json")
    return folder, study, result


def test_every_target_gets_every_document(built):
    folder, _, _ = built
    wave = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())["wave"]
    for target in (*FIXTURE_CAES, "consortium"):
        out = folder / "reports" / wave / target
        for name in ("report.html", "report.pdf", "report.docx", "indicators.csv", "indicators.xlsx"):
            assert (out / name).stat().st_size > 0, f"{target}: {name} missing"
        executed = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
        assert "04_profile.ipynb" in executed and "03_effect.ipynb" in executed  # every domain in one
        assert not [n for n in executed if n.startswith("03_effect_")]
        assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
        html = (out / "report.html").read_text(encoding="utf-8")
        assert "Données synthétiques" in html
    for cae in FIXTURE_CAES:
        assert (folder / "processed" / wave / cae / "responses.parquet").exists()
        assert (folder / "reports" / wave / cae / "notebooks" / "01_cleaning.ipynb").exists()
    index = (folder / "reports" / "index.html").read_text(encoding="utf-8")
    assert all(f"{wave}/{t}/report.pdf" in index for t in (*FIXTURE_CAES, "consortium"))


def test_executed_notebooks_record_their_parameters(built):
    folder, _, _ = built
    wave = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())["wave"]
    nb = nbformat.read(folder / "reports" / wave / "consortium" / "notebooks" / "03_effect.ipynb", as_version=4)
    params = nb.metadata["papermill"]["parameters"]
    assert params["target"] == "consortium" and "domain" not in params
    assert nb.metadata["kernelspec"]["name"] == "cae-impact"


def test_second_build_executes_nothing(built):
    folder, study, _ = built
    again = make(folder, study, "reports")
    assert again.returncode == 0, again.stderr
    assert "[clean]" not in again.stdout and "[analyse]" not in again.stdout and "[render]" not in again.stdout
    assert "[index]" not in again.stdout and "[estimate]" not in again.stdout


def test_broken_export_fails_loudly_and_names_cae_notebook_cell(tmp_path):
    study = write_fixture_study(tmp_path, broken="cae-3")
    result = make(tmp_path, study, "reports", flags=("-k", "-j2"))
    assert result.returncode != 0
    err = result.stderr
    assert "target=cae-3" in err and "notebook=01_cleaning.ipynb" in err and "cell " in err
    wave = yaml.safe_load(study.read_text())["wave"]
    assert (tmp_path / "processed" / wave / "cae-1" / "responses.parquet").exists(), "the other CAE is still cleaned"
    assert not (tmp_path / "processed" / wave / "cae-3" / "responses.parquet").exists()
    assert not list((tmp_path / "reports").rglob("report.html")), "no report pretends the consortium is complete"
    report = json.loads((tmp_path / "reports" / wave / "_failures" / "cae-3__01_cleaning.json").read_text())
    assert report["target"] == "cae-3" and report["cell_number"] >= 1 and report["traceback"]


def test_failing_analysis_of_one_target_does_not_stop_the_others(tmp_path):
    """A profile notebook made to fail for cae-1 only: cae-3 and the consortium are still built."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    nb = nbformat.read(notebooks / "04_profile.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell('assert target != "cae-1", "injected failure for cae-1"'))
    nbformat.write(nb, notebooks / "04_profile.ipynb")
    study = write_fixture_study(tmp_path)
    result = make(tmp_path, study, "reports", notebooks=notebooks, flags=("-k", "-j2"))
    assert result.returncode != 0
    assert "target=cae-1" in result.stderr and "notebook=04_profile.ipynb" in result.stderr
    assert "cell 3" in result.stderr
    wave = yaml.safe_load(study.read_text())["wave"]
    reports = tmp_path / "reports" / wave
    assert (reports / "cae-3" / "report.pdf").exists() and (reports / "consortium" / "report.pdf").exists()
    assert not (reports / "cae-1" / "report.html").exists()
    assert not (reports / "cae-1" / "notebooks" / "04_profile.ipynb").exists()
    assert (reports / "cae-1" / "notebooks" / "04_profile.FAILED.ipynb").exists()
    assert "1 notebook(s) failed in 1 target(s) (cae-1)" in result.stderr, "the build says how many failed"


def test_manifest_beside_each_report(built):
    folder, _, _ = built
    wave = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())["wave"]
    for target in (*FIXTURE_CAES, "consortium"):
        m = json.loads((folder / "reports" / wave / target / "manifest.json").read_text())
        assert len(m["notebooks"]) == 2 and all(r["cache_key"] for r in m["notebooks"])  # 03 (every domain), 04
        assert set(m["cleaning"]) == set(FIXTURE_CAES) and m["estimation"]["cache_key"]
        assert len(m["inputs"]["raw_exports"]) == 2
        assert any(name.endswith(f"report__{target}.parquet") for name in m["inputs"]["estimates"])
        # each notebook was keyed on its step's declared inputs and code (cae_impact.run.steps)
        by_output = {Path(o).name: step for step in m["steps"].values() for o in step["outputs"]}
        for record in m["notebooks"]:
            step = by_output[Path(record["output"]).name]
            assert record["inputs"]["code"] == step["code"]
            assert record["inputs"]["files"] == {k: v for k, v in step["inputs"].items()
                                                 if not k.endswith(".ipynb")}


def test_touch_without_content_change_executes_nothing(built):
    """Make sees newer timestamps (as after a git checkout); the cache makes every recipe a hit."""
    folder, study, _ = built
    wave = yaml.safe_load(study.read_text())["wave"]
    estimation = folder / "reports" / wave / "_study" / "notebooks" / "02_estimation.ipynb"
    before = nbformat.read(estimation, as_version=4)
    study.touch()
    again = make(folder, study, "reports")
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout
    assert "[clean]" in out and "[analyse]" in out, "make did re-run the recipes"
    assert " executed in" not in out and "estimated in" not in out and "rendered in" not in out, out[-3000:]
    assert out.count("indicator tables from the cache") == len(FIXTURE_CAES) + 1, out[-3000:]
    assert re.search(r"\[estimate\] \S+estimates.parquet cache hit", out), out[-3000:]
    after = nbformat.read(estimation, as_version=4)  # restored from the cache, outputs and all
    assert [c.get("outputs") for c in after.cells] == [c.get("outputs") for c in before.cells]


def test_estimation_notebook_shows_the_diagnostics_without_personal_data(built):
    """The estimation step executes notebook 02 once per wave into _study/notebooks/: the
    weighting and secrecy diagnostics, aggregates only (no respondent's pseudonym)."""
    folder, study, _ = built
    wave = yaml.safe_load(study.read_text())["wave"]
    sdir = folder / "reports" / wave / "_study"
    nb = nbformat.read(sdir / "notebooks" / "02_estimation.ipynb", as_version=4)
    assert nb.metadata["papermill"]["parameters"]["study"] == str(study)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps(outputs, ensure_ascii=False)
    headings = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for needle in ("Registre, répondants et taux de réponse", "Post-strates après regroupement", "Poids écrêtés",
                   "Marges pondérées contre le registre", "Distribution des poids", "Effets de plan (Kish)",
                   "Secret statistique"):
        assert needle in headings, needle
    for needle in ("response_rate", "post_stratum", "largest_before", "relative_gap", "p90", "kish_deff",
                   "effective_n", "suppression secondaire", "en tranche", "Attaque par programmation linéaire",
                   "aucun effectif exposé", "data:image/png;base64,"):
        assert needle in text, needle
    shown = [c for c in nb.cells if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", [])]
    assert any("assert audit.margins_match" in c.source for c in shown)
    ids = pd.read_csv(sdir / "design.csv", dtype=str)["respondent_id"]
    assert len(ids) and not [i for i in ids if i in text], "a respondent's pseudonym is in the notebook"
    m = json.loads((folder / "reports" / wave / "cae-1" / "manifest.json").read_text())
    assert m["estimation"]["notebook"]["notebook"] == "02_estimation.ipynb"


def test_verify_reexecutes_without_cache_and_matches(built):
    folder, study, _ = built
    result = make(folder, study, "verify", extra=("TARGET=cae-3",))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "indicators.csv identical" in result.stdout and "verify OK" in result.stdout


def test_warm_kernels_give_the_notebooks_new_kernels_give(built, tmp_path, monkeypatch):
    """`make reports` forks its kernels from a warm kernel server (cae_impact.run.kernels); a new
    kernel process (papermill's default, what `make verify` uses) gives the same outputs."""
    from cae_impact.run import execute as build
    from cae_impact.run import kernels

    folder, _, _ = built
    wave = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())["wave"]
    reports = folder / "reports" / wave
    manifest = json.loads((folder / "first-build-cae-1-manifest.json").read_text())
    assert {r["kernel"] for r in manifest["notebooks"]} == {"forked from the kernel server"}
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    cases = [("cae-3", "01_cleaning.ipynb", "01_cleaning.ipynb"),
             ("consortium", "03_effect.ipynb", "03_effect.ipynb"),
             ("cae-1", "04_profile.ipynb", "04_profile.ipynb")]
    for target, executed_name, source_name in cases:
        warm = nbformat.read(reports / target / "notebooks" / executed_name, as_version=4)
        params = dict(warm.metadata["papermill"]["parameters"])
        moved = {}
        if source_name.startswith("01"):  # cleaning writes its outputs: elsewhere, then compared
            moved = {str(tmp_path / "processed"): params["processed_root"]}
            params["processed_root"] = str(tmp_path / "processed")
        out = tmp_path / target / executed_name
        build.execute_notebook(ROOT / "notebooks" / source_name, out, params, target=target,
                               cwd=ROOT / "notebooks")
        fresh = nbformat.read(out, as_version=4)
        pairs = [(w, f) for w, f in zip(warm.cells, fresh.cells, strict=True)
                 if "injected-parameters" not in w.metadata.get("tags", [])]
        assert pairs and all(w.cell_type != "code" or w.outputs for w, _ in pairs[-2:])
        for w, f in pairs:
            assert w.source == f.source
            if w.cell_type == "code":
                fresh_outputs = json.dumps(f.outputs, sort_keys=True)
                for new, old in moved.items():
                    fresh_outputs = fresh_outputs.replace(new, old)
                assert json.dumps(w.outputs, sort_keys=True) == fresh_outputs, \
                    f"{target} {executed_name}: outputs differ in {w.source[:60]!r}"


def test_one_cae_export_changed_executes_only_that_cae_and_the_consortium(built):
    """The fixture study compares its CAEs with the demo's published consortium figures: when
    CAE 1 sends a corrected export, CAE 1's and the consortium's notebooks are executed again,
    CAE 3's are cache hits and its documents are restored, not re-rendered. Putting the export
    back executes nothing."""
    folder, study, _ = built
    export = Path(yaml.safe_load(study.read_text())["caes"][0]["export"])
    original = export.read_bytes()
    lines = original.rstrip(b"\r\n").split(b"\n")
    # One respondent fewer, one whose absence hides no cell of CAE 3: when it does, CAE 3's
    # report changes too (secondary suppression) and is executed again, as
    # test_published.test_the_estimation_says_which_reports_changed_and_why shows.
    export.write_bytes(b"\n".join(lines[:-3] + lines[-2:]) + b"\n")
    try:
        again = make(folder, study, "reports")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        out = again.stdout
        executed = re.findall(r"\[analyse\] (\S+): \S+ \(\d+/\d+\) executed in", out)
        hits = re.findall(r"\[analyse\] (\S+): \S+ \(\d+/\d+\) cache hit", out)
        assert re.search(r"report rows changed: cae-1, consortium[^;]*; unchanged: 1 target", out), out[-3000:]
        assert sorted(set(executed)) == ["cae-1", "consortium"], out[-3000:]
        assert set(hits) == {"cae-3"} and len(hits) == len(executed) // 2
        assert re.search(r"\[clean\] cae-1 .* executed in", out) and not re.search(r"\[clean\] cae-3 .* executed", out)
        for fmt in ("html", "pdf", "docx"):
            assert f"[render] cae-3: report.{fmt} cache hit" in out, out[-3000:]
            assert f"[render] cae-1: report.{fmt} rendered" in out
    finally:
        export.write_bytes(original)
    back = make(folder, study, "reports")
    assert back.returncode == 0, back.stderr[-3000:]
    assert " executed in" not in back.stdout and "rendered in" not in back.stdout, back.stdout[-3000:]


def test_unusable_cae_stops_the_build_and_no_consortium_is_written(tmp_path):
    """Issue 15: a CAE that keeps fewer respondents than min_respondents fails its cleaning, loudly."""
    study = write_fixture_study(tmp_path)
    config = yaml.safe_load(study.read_text(encoding="utf-8"))
    export = Path(next(c["export"] for c in config["caes"] if c["id"] == "cae-3"))
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    export.write_text("".join(lines[:3]), encoding="utf-8")  # the header and two respondents
    result = make(tmp_path, study, "reports", flags=("-k", "-j2"))
    assert result.returncode != 0
    err = result.stderr
    assert "CAE cae-3" in err and "NON UTILISABLE" in err and "min_respondents" in err
    assert "last lines of the traceback" not in err, "a known failure is said without a traceback"
    wave = config["wave"]
    assert not (tmp_path / "processed" / wave / "cae-3" / "responses.parquet").exists()
    assert not list((tmp_path / "reports").rglob("report.*")), "no document without every CAE"
    assert "build summary" in result.stdout + err and "cae-3" in err


def _body(doc: str) -> str:
    """The report's body: from <main> to the method annex, images left out."""
    main = doc[doc.index("<main>"):]
    return re.sub(r"<img[^>]*>", "", main[:main.index('id="annexe-methode"')])


def test_report_body_reads_as_a_report(built):
    """Story first: no term of the method annex in the body, « Lecture / Champ / Source » under
    every chart and table, typographic apostrophes, no sentence repeated more than three times,
    and a report of the right size (a CAE: at most 24 pages before the annexes, 8 of annexes;
    the consortium: 50 pages in all)."""
    import html as htmlmod
    from collections import Counter

    from test_story import JARGON

    folder, _, _ = built
    wave = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())["wave"]
    for target in (*FIXTURE_CAES, "consortium"):
        out = folder / "reports" / wave / target
        body = _body((out / "report.html").read_text(encoding="utf-8"))
        text = htmlmod.unescape(re.sub(r"<[^>]+>", " ", body))
        for term in JARGON:
            assert term.lower() not in text.lower(), (target, term)
        assert "'" not in text, (target, text[max(0, text.find("'") - 60):text.find("'") + 20])
        figures = re.findall(r'<figure class="(?:chart|table[^"]*)">.*?</figure>', body, flags=re.S)
        assert len(figures) >= 14, target
        for fig in figures:
            flat = htmlmod.unescape(re.sub(r"<[^>]+>", " ", fig)).replace("\xa0", " ")
            assert all(f"{k} :" in flat for k in ("Lecture", "Champ", "Source")), (target, flat[:120])
        sentences = []
        for para in re.findall(r"<(?:p|li)(?: class=\"(?:lead|chapter-intro)\")?>(.*?)</(?:p|li)>", body, flags=re.S):
            para = htmlmod.unescape(re.sub(r"<[^>]+>", "", para))
            sentences += [re.sub(r"[\d\u202f\xa0 ]+", " ", s).strip()
                          for s in re.split(r"(?<=[.!?])\s+", para) if len(s) > 30]
        repeated = [(s, n) for s, n in Counter(sentences).most_common(3) if n > 3]
        assert not repeated, (target, repeated)
        pages = subprocess.run(["pdftotext", "-layout", str(out / "report.pdf"), "-"], capture_output=True,
                               text=True, check=True).stdout.split("\f")
        pages = [p for p in pages if p.strip()]
        annex = next(i for i, p in enumerate(pages) if re.search(r"Annexe A\s+—\s+Méthode\s*\n", p)
                     and "Sommaire" not in p)
        if target == "consortium":
            assert len(pages) <= 50, len(pages)
        else:
            assert annex <= 24 and len(pages) - annex <= 8, (target, annex, len(pages))


def test_executed_notebooks_hold_the_evidence(built):
    """The chapter notebook keeps, for reviewers, each indicator's rule and unformatted results
    (cells tagged « evidence », which the report leaves out), for every effect domain: one
    block per domain, every indicator of the codebook, and each domain's headline recomputed."""
    from cae_impact.spec.codebook import load_codebook

    folder, _, _ = built
    wave = yaml.safe_load((ROOT / "config" / "study.yaml").read_text())["wave"]
    nb = nbformat.read(folder / "reports" / wave / "cae-1" / "notebooks" / "03_effect.ipynb", as_version=4)
    evidence = [c for c in nb.cells if "evidence" in c.metadata.get("tags", [])]
    assert evidence
    assert any(c.cell_type == "code" and "recompute_headline" in c.source for c in evidence)
    shown = json.dumps([c.get("outputs", []) for c in evidence], ensure_ascii=False)
    for needle in ("Règle du référentiel", "p_adjusted", "suppression_reason", "cae_decisive", "verdict",
                   "recalculé", "cae_impact.estimation.proportion"):
        assert needle in shown, needle
    cb = load_codebook()
    for domain in cb.domains:
        assert f"Pièces justificatives — domaine {domain.number} " in shown, domain.id
        assert f"#### Domaine {domain.number}" in shown, domain.id
        for ind in cb.indicators_of_domain(domain.id):
            assert f"**{ind.id}** — " in shown, ind.id
    report_html = (folder / "reports" / wave / "cae-1" / "report.html").read_text(encoding="utf-8")
    assert "Règle du référentiel" not in report_html and "p_adjusted" not in report_html


def test_no_chart_text_is_clipped(built):
    """Every chart of the fixture study's reports, drawn again: no text past the figure's edge."""
    import sys

    folder, study, _ = built
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_chart_titles.py"), "--study", str(study),
                             "--reports-root", str(folder / "reports"), "--processed-root", str(folder / "processed")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "0 with a text past" in result.stdout and int(result.stdout.split()[0]) >= 20
