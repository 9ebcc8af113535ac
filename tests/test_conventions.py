"""Convention tests: notebooks clean and parameterised, the build's parameters declared,
nothing writing under data/raw/, the Makefile documented."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAM_LINE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*): (?P<type>str|int|float|bool) = (?P<value>.+?)  # \S.*$")


def test_the_pipeline_notebooks_exist_numbered_in_pipeline_order():
    assert [p.name for p in NOTEBOOKS] == ["01_cleaning.ipynb", "02_estimation.ipynb", "03_effect.ipynb",
                                           "04_profile.ipynb", "05_evolution.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: a code cell has outputs (strip it)"
            assert cell.get("execution_count") is None, f"{path.name}: execution counts left"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_names_project_kernel(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "cae-impact"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_typed_literals_then_validation(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged == [0], f"{path.name}: the first code cell, and only it, is tagged 'parameters'"
    for line in "".join(code[0]["source"]).strip().splitlines():
        m = PARAM_LINE.match(line)
        assert m, f"{path.name}: parameters cell line is not 'name: type = literal  # meaning': {line!r}"
        ast.literal_eval(m.group("value"))  # a literal, nothing derived
    validation = "".join(code[1]["source"])
    assert ("pipeline." in validation or "audit." in validation) and "_context(" in validation, \
        f"{path.name}: 2nd cell must validate"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_logic_in_notebooks(path):
    """Notebooks only call into src/: no function or class definitions, no imports but ours."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        for node in ast.walk(tree):
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda), f"{path.name}: logic belongs in src/"
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                assert mod.startswith("cae_impact"), f"{path.name}: imports {mod}; call src/ instead"


def test_build_parameters_are_declared_in_notebooks():
    """Every parameter the build passes exists in the notebook's parameters cell."""
    from types import SimpleNamespace

    from cae_impact.run import cli
    from cae_impact.spec.config import load_study

    study = load_study()
    args = SimpleNamespace(processed_root="data/processed", reports_root="reports")
    passed = {
        "01_cleaning.ipynb": cli.build_parameters(study, args, cae="cae-1"),
        "03_effect.ipynb": cli.build_parameters(study, args, target="consortium", reports_root="reports"),
        "04_profile.ipynb": cli.build_parameters(study, args, target="consortium", reports_root="reports"),
        "02_estimation.ipynb": cli.estimation_job(args, study, ROOT / "reports")[2],
    }
    # 04 (evolution since the previous wave) runs for a study with previous_waves only
    passed["05_evolution.ipynb"] = cli.build_parameters(load_study(ROOT / "config" / "study-2027.yaml"), args,
                                                        target="consortium", reports_root="reports")
    for name, params in passed.items():
        declared = set(pm.inspect_notebook(str(ROOT / "notebooks" / name)))
        assert set(params) <= declared, f"{name}: {set(params) - declared} not declared"


def test_unknown_parameter_is_refused():
    from cae_impact.run import cli
    from cae_impact.run import execute as build

    with pytest.raises(build.BuildError, match="not declared"):
        cli._check_declared(ROOT / "notebooks" / "03_effect.ipynb", {"targett": "cae-1"})


def test_estimation_notebook_shows_the_diagnostics():
    """Notebook 02 runs the estimation and shows every diagnostic in cells a reader sees (not
    tagged remove-cell), and asserts the margins in one of them."""
    nb = json.loads((ROOT / "notebooks" / "02_estimation.ipynb").read_text(encoding="utf-8"))
    shown = "\n".join("".join(c["source"]) for c in nb["cells"]
                      if c["cell_type"] == "code" and "remove-cell" not in c["metadata"].get("tags", []))
    for call in ("pipeline.run_estimation(", "audit.show_response(", "audit.show_post_strata(",
                 "audit.show_trimming(", "audit.show_margins(", "assert audit.margins_match(",
                 "audit.show_weights(", "audit.show_design_effects(", "audit.show_secrecy("):
        assert call in shown, call
    params = "".join(next(c["source"] for c in nb["cells"] if c["cell_type"] == "code"))
    assert set(pm.inspect_notebook(str(ROOT / "notebooks" / "02_estimation.ipynb"))) == {
        "study", "processed_root", "reports_root"}, params


_WRITE_CALLS = re.compile(r"(to_csv|to_parquet|to_excel|write_text|write_bytes|open\([^)]*['\"][wa])")


def test_no_code_writes_under_data_raw():
    """No source line both names data/raw and writes; raw exports are read-only."""
    offenders = []
    files = list((ROOT / "src").rglob("*.py")) + list((ROOT / "notebooks").glob("*.ipynb"))
    for path in files:
        if path.name == "demo.py":  # the synthetic demo generator writes data/raw/demo/ by design
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "data/raw" in line and _WRITE_CALLS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, offenders


def test_raw_exports_stay_untouched_by_cleaning(tmp_path):
    """Cleaning a CAE leaves its raw export byte-identical (read-only by construction)."""
    import hashlib

    from cae_impact.spec.config import load_study

    study = load_study()
    before = {c.id: hashlib.sha256(c.export.read_bytes()).hexdigest() for c in study.caes if c.export.exists()}
    if not before:
        pytest.skip("demo exports not generated")
    from cae_impact.run import pipeline

    ctx = pipeline.cleaning_context(study="config/study.yaml", cae=study.caes[0].id, processed_root=str(tmp_path))
    pipeline.save_cleaning(ctx, pipeline.run_cleaning(ctx))
    after = {c.id: hashlib.sha256(c.export.read_bytes()).hexdigest() for c in study.caes if c.export.exists()}
    assert before == after


def test_makefile_help_lists_documented_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for target in ("reports", "test", "lab", "data", "lint", "clean", "lock", "questionnaire"):
        assert re.search(rf"^\s+{target}\s", out, re.M), f"'make help' does not document {target}"


def test_makefile_has_safety_settings():
    text = (ROOT / "Makefile").read_text()
    assert ".DELETE_ON_ERROR:" in text
    assert ".DEFAULT_GOAL := help" in text


def test_ci_calls_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_gitignore_keeps_personal_and_built_files_out():
    text = (ROOT / ".gitignore").read_text()
    for pattern in ("data/raw/*", "!data/raw/demo/", "data/processed/*", "reports/*", ".secrets/", ".venv/"):
        assert pattern in text
