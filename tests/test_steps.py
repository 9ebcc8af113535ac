"""The build steps, declared once (cae_impact.run.steps), and the code each runs (cae_impact.run.codegraph).

A step's key covers its own code: an edit outside its closure (the demo generator; a rendering
module for the cleaning) leaves it, an edit inside changes it. The Make include, the cache key
and the manifest list the same inputs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pytest

from cae_impact.run import cli, codegraph, manifest, steps
from cae_impact.run import execute as build
from cae_impact.spec.config import PROJECT_ROOT, load_study

ROOT = Path(__file__).resolve().parents[1]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def _names(paths, root: Path) -> set[str]:
    return {Path(p).relative_to(root).as_posix() for p in paths}


# ---------------------------------------------------------------------------- the closure


def test_closure_follows_function_level_and_relative_imports(tmp_path):
    root = _package(tmp_path, {
        "a.py": "import os\n\ndef f():\n    from . import b\n    return b.g()\n",
        "b.py": "def g():\n    from .sub.c import h\n    return h()\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import d\n\ndef h():\n    return d.X\n",
        "d.py": "X = 1\n",
        "unrelated.py": "import pkg.a\n",
    })
    got = _names(codegraph.closure(["pkg.a"], root, "pkg"), root)
    assert got == {"__init__.py", "a.py", "b.py", "sub/__init__.py", "sub/c.py", "d.py"}


def test_closure_of_named_functions_leaves_the_other_functions_imports_out(tmp_path):
    root = _package(tmp_path, {
        "facade.py": ("from .base import CONST\n\n"
                      "def clean():\n    from .cleaning import run\n    return _helper(run)\n\n"
                      "def _helper(x):\n    from .shared import y\n    return x\n\n"
                      "def chapter():\n    from .charts import draw\n    return draw\n"),
        "base.py": "CONST = 1\n",
        "cleaning.py": "def run():\n    pass\n\ndef other():\n    from .heavy import z\n",
        "shared.py": "y = 1\n",
        "charts.py": "def draw():\n    pass\n",
        "heavy.py": "z = 1\n",
    })
    got = _names(codegraph.closure(["pkg.facade:clean"], root, "pkg"), root)
    # cleaning is imported as a module object's name (from .cleaning import run): run only;
    # base's CONST, imported at the top, is not used by clean: base is not its code
    assert got == {"__init__.py", "facade.py", "cleaning.py", "shared.py"}
    assert "charts.py" in _names(codegraph.closure(["pkg.facade:chapter"], root, "pkg"), root)
    with pytest.raises(codegraph.UnknownEntry):
        codegraph.closure(["pkg.facade:nothing"], root, "pkg")
    with pytest.raises(codegraph.UnknownEntry):
        codegraph.closure(["pkg.gone"], root, "pkg")


def test_a_notebook_s_entries_are_the_functions_its_cells_call():
    entries = codegraph.notebook_entries(ROOT / "notebooks" / "01_cleaning.ipynb")
    assert entries == ["cae_impact.run.pipeline:cleaning_context,run_cleaning,save_cleaning,show_cleaning_summary,"
                       "show_quarantine"]


def test_every_declared_entry_and_asset_exists():
    """What to rename when a module moves (ENTRIES, ASSETS) still names existing code."""
    for kind, entries in steps.ENTRIES.items():
        assert codegraph.closure(entries), kind
    for kind, assets in steps.ASSETS.items():
        for a in assets:
            assert (codegraph.PACKAGE_DIR / a).is_file(), (kind, a)


def test_the_parse_kept_on_disk_is_the_parse_and_an_edited_file_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(codegraph, "PARSE_CACHE", tmp_path / "cache")
    root = _package(tmp_path, {"a.py": "def f():\n    from . import b\n", "b.py": "X = 1\n", "c.py": ""})
    fresh = codegraph.package_graph(root, "pkg")
    codegraph.forget()
    assert list((tmp_path / "cache").glob("*.json"))
    assert codegraph.package_graph(root, "pkg") == fresh  # read from the disk
    (root / "a.py").write_text("def f():\n    from . import c  # edited\n", encoding="utf-8")
    codegraph.forget()
    assert _names(codegraph.closure(["pkg.a"], root, "pkg"), root) == {"__init__.py", "a.py", "c.py"}
    codegraph.forget()


# ---------------------------------------------------------------------------- the keys


@pytest.fixture
def copied_package(tmp_path, monkeypatch):
    """A copy of src/cae_impact that the test may edit (the steps read it instead)."""
    copy = tmp_path / "src" / "cae_impact"
    shutil.copytree(codegraph.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codegraph, "PACKAGE_DIR", copy)
    monkeypatch.setattr(codegraph, "PARSE_CACHE", tmp_path / "parse-cache")
    yield copy
    codegraph.forget()


def _edit(path: Path) -> None:
    """An edit of a source file, as between two builds (each build step parses the sources anew)."""
    path.write_text(path.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
    codegraph.forget()


def _demo_steps(study):
    roots = steps.Roots(PROJECT_ROOT / "data" / "processed", PROJECT_ROOT / "reports", ROOT / "notebooks")
    by_name = {s.name: s for s in steps.wave_steps(study, roots)}
    return {"clean": by_name["clean:cae-1"], "estimate": by_name["estimate"],
            "chapter": by_name["chapters:cae-1"], "profile": by_name["profile:cae-1"],
            "pdf": by_name["pdf:cae-1"]}


def _codes(chosen):
    return {k: s.code()["code"] for k, s in chosen.items()}


def test_the_demo_generator_is_in_no_step_and_an_unused_module_changes_no_key(study, copied_package):
    """The demo generator is its own package (src/cae_impact_demo): no step's code; a module of
    the package no step runs (the questionnaire's XLSForm export is make questionnaire's) can be
    edited without invalidating anything."""
    chosen = _demo_steps(study)
    used = {p for s in chosen.values() for p in s.code_files()}
    assert not any("cae_impact_demo" in str(p) for p in used)
    before = _codes(chosen)
    unused = sorted(p for p in copied_package.rglob("*.py") if p not in used and "__pycache__" not in p.parts)
    assert copied_package / "run" / "kernels.py" in unused  # the build's machinery is no step's code
    for p in unused:
        _edit(p)
    assert _codes(chosen) == before


def test_a_rendering_module_is_outside_the_cleaning_step_and_inside_the_chapters(study, copied_package):
    chosen = _demo_steps(study)
    before = _codes(chosen)
    _edit(copied_package / "render" / "chapters.py")
    after = _codes(chosen)
    assert after["clean"] == before["clean"] and after["estimate"] == before["estimate"]
    assert after["pdf"] == before["pdf"]
    assert after["chapter"] != before["chapter"] and after["profile"] != before["profile"]


def test_editing_a_module_inside_the_cleaning_changes_its_key(study, copied_package):
    chosen = _demo_steps(study)
    key = chosen["clean"].fingerprint()
    _edit(copied_package / "clean" / "cleaning.py")
    assert chosen["clean"].fingerprint() != key
    assert copied_package / "clean" / "cleaning.py" in chosen["clean"].code_files()


def test_the_closure_is_cheap_once_parsed(study):
    import time

    chosen = _demo_steps(study)
    codegraph.package_graph()
    start = time.perf_counter()
    for s in chosen.values():
        s.code_files()
    assert time.perf_counter() - start < 2.0  # about 5 ms on a quiet machine; generous under load


# ---------------------------------------------------------------------------- one declaration


def _make_rules(text: str, roots: steps.Roots) -> dict[Path, set[Path]]:
    """``{target: prerequisites}`` of a generated include, the Makefile's variables expanded."""
    rules = {}
    for line in text.splitlines():
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue
        for var, root in (("$(PROCESSED_ROOT)", roots.processed), ("$(REPORTS_ROOT)", roots.reports),
                          ("$(NOTEBOOKS_DIR)", roots.notebooks)):
            line = line.replace(var, str(root))
        line = line.replace("$(wildcard ", "").replace(")", "")
        target, _, prereqs = line.partition(": ")
        rules[_abs(target)] = {_abs(p) for p in prereqs.split()}
    return rules


def _abs(name: str) -> Path:
    p = Path(name)
    return (p if p.is_absolute() else PROJECT_ROOT / p).resolve()


def test_make_the_cache_key_and_the_manifest_list_the_same_inputs(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_notebooks import write_fixture_study

    study_path = write_fixture_study(tmp_path)
    study = load_study(study_path)
    args = argparse.Namespace(study=str(study_path), processed_root=str(tmp_path / "processed"),
                              reports_root=str(tmp_path / "reports"), notebooks_dir=str(ROOT / "notebooks"),
                              cache_root=str(tmp_path / "cache"), no_cache=False)
    roots = cli._roots(args)

    # 1. Make: the generated include
    assert cli.cmd_make_include(args) == 0
    rules = _make_rules(capsys.readouterr().out, roots)

    # 2. the cache keys: what the build steps hash (run_notebook is stopped before any kernel)
    seen = {}

    class Stop(Exception):
        pass

    def capture(notebook, output, params, *, target, inputs, code=None, **kw):
        seen[Path(output).name] = (list(inputs), code)
        raise Stop

    monkeypatch.setattr(build, "run_notebook", capture)
    with pytest.raises(Stop):
        cli.cmd_clean(argparse.Namespace(**vars(args), cae="cae-1"))
    with pytest.raises(Stop):
        cli.cmd_analyse(argparse.Namespace(**vars(args), target="cae-1"))

    # 3. the manifest
    m = manifest.build_manifest(study, "cae-1", roots.processed, roots.reports, [], tmp_path / "runs",
                                roots.notebooks)
    recorded = m["steps"]
    producer = {_abs(o): _abs(r["make_target"]) for r in recorded.values() for o in r["outputs"]}

    for name, output, make_target in (
            ("clean:cae-1", "01_cleaning.ipynb", roots.processed / study.wave / "cae-1" / "responses.parquet"),
            ("chapters:cae-1", "03_effect.ipynb", roots.reports / study.wave / "cae-1" / "notebooks" / ".executed")):
        step = recorded[name]
        inputs = {_abs(p) for p in step["inputs"]}
        code_files = {_abs(p) for p in step["code_files"]}
        # the cache key hashes the same files (but the notebook: its code cells are the key)
        key_inputs, key_code = seen[output]
        assert {_abs(str(p)) for p in key_inputs} == {p for p in inputs if p.suffix != ".ipynb"}, name
        assert key_code["code"] == step["code"], name
        # Make lists them (a file another step writes as its target's), and the step's code
        wanted = {producer.get(p, p) for p in inputs if p.exists() or "editorial" not in str(p)} | code_files
        assert wanted <= rules[make_target.resolve()], name
        assert not any("cae_impact_demo" in str(p) for p in rules[make_target.resolve()])
    # the Make target of the analysis is made of its steps, nothing else
    executed = (roots.reports / study.wave / "cae-1" / "notebooks" / ".executed").resolve()
    group = [r for r in recorded.values() if _abs(r["make_target"]) == executed]
    assert len(group) == 3  # the chapters (one notebook), the profile, the indicator tables
    union = set()
    for r in group:
        union |= {producer.get(_abs(p), _abs(p)) for p in r["inputs"] if "editorial" not in p or _abs(p).exists()}
        union |= {_abs(p) for p in r["code_files"]}
    assert union == rules[executed]


def test_top_level_imports_count_by_the_names_the_included_code_uses(tmp_path):
    """``from m import f`` at a module's top brings m only when an included function (or the
    import-time code) uses f; a name bound (a dataclass field) or only annotated is no use."""
    root = _package(tmp_path, {
        "facade.py": ("from __future__ import annotations\n"
                      "from dataclasses import dataclass\n"
                      "from .heavy import h\n"
                      "from .light import l\n"
                      "from . import typed\n\n"
                      "@dataclass\nclass Ctx:\n    heavy: list\n    t: typed.T | None = None\n\n"
                      "def run(x: typed.T) -> typed.T:\n    return l(x)\n\n"
                      "def other():\n    return h()\n"),
        "heavy.py": "def h():\n    pass\n", "light.py": "def l(x):\n    return x\n",
        "typed.py": "class T:\n    pass\n"})
    assert _names(codegraph.closure(["pkg.facade:run"], root, "pkg"), root) == {"__init__.py", "facade.py", "light.py"}
    assert "heavy.py" in _names(codegraph.closure(["pkg.facade:other"], root, "pkg"), root)
    assert "heavy.py" in _names(codegraph.closure(["pkg.facade"], root, "pkg"), root)  # the whole module
    codegraph.forget()
