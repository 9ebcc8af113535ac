"""Layers you can see: the import graph of ``src/cae_impact`` has no cycle and goes downwards.

The graph is built with ``ast`` from every ``import`` of every module, those inside functions
included (a lazy import is still a dependency). Each sub-package is a layer (:data:`LAYERS`,
lowest first); a module may import its own layer and the layers below it, never one above. The
demo generator (``src/cae_impact_demo``) is outside the runtime package and never imported by it.
Imports sit at the top of modules; the few kept inside a function are listed in
:data:`LAZY_IMPORTS` with the start-up cost that justifies them.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "cae_impact"
DEMO = "cae_impact_demo"

#: The layers, lowest first: a module may import only from its own layer and those before it.
LAYERS = (
    ("core", "project root and relative paths, atomic writes, sha256, git state, package versions, "
             "French number formatting: what every stage shares"),
    ("spec", "the study: configuration, codebook, questionnaire, notebook parameters, file layout"),
    ("privacy", "personal data: pseudonyms, detection and masks, formula neutralisation"),
    ("ingest", "survey exports (CSV, XLSX, Kobo, LimeSurvey, Google Forms) read into raw tables"),
    ("clean", "cleaning and validation of an export, the processed schema, the personal-data scan"),
    ("estimation", "the survey engine on svy: designs, weighting, estimators"),
    ("analysis", "the study's figures: indicators, disclosure control, secrecy, published figures, waves"),
    ("render", "what a reader sees: French text and tables, charts, chapters, annexes, documents"),
    ("run", "the command line, the notebooks' API, execution, cache, kernels, provenance"),
)
LAYER_NAMES = [name for name, _ in LAYERS]

# Each figure was measured on the project's 2-core machine, shared with other jobs (best of 3,
# ``time.perf_counter`` around the import in a new interpreter that has already imported what
# the importing module imports at its top).
_STEP = ("every build step runs `python -m cae_impact.run client`, which imports the CLI when no "
         "kernel server runs the step; a step whose outputs are in the cache must not pay for ")
#: (importing module, imported module or package) -> why the import stays inside a function.
LAZY_IMPORTS = {
    ("run.steps", "cae_impact.analysis.waves"):
        "a wave with a previous one only: the changes' file names come with pandas and scipy (1.9 s)",
    ("run.__main__", "cae_impact.run.cli"):
        "the client of a step the kernel server runs never imports the CLI (0.26 s)",
    ("run.cli", "cae_impact.analysis"): _STEP + "pandas and scipy (published 1.5 s, waves 1.9 s)",
    ("run.cli", "cae_impact.clean"): _STEP + "pandas (privacy_scan 0.43 s, validate 0.48 s)",
    ("run.cli", "cae_impact.render.tables_fr"): _STEP + "pandas and the XLSX writer (1.4 s)",
    ("run.cli", "cae_impact.run.pipeline"): _STEP + "the notebooks' API: pandas, scipy, the renderers (2.5 s)",
    ("run.cli", "pandas"): _STEP + "pandas (0.9 s)",
    ("run.cli", "papermill"): _STEP + "papermill (0.5 s)",
    ("run.cache", "jupyter_cache"): "the step cache works without the notebook cache's SQLAlchemy layer (1.4 s)",
    ("run.cache", "papermill"): "papermill (0.5 s) only when a notebook's key is computed",
    ("run.execute", "jupyter_client"): "only when a notebook is executed (0.19 s)",
    ("run.execute", "papermill"): "only when a notebook is executed (0.5 s)",
    ("run.kernels", "ipykernel"): "only in a forked kernel; the client imports this module (0.6 s)",
    ("run.kernels", "jupyter_client"): "only when the server starts; the client imports this module (0.19 s)",
    ("run.kernels", "nbformat"): "the server's warm-up only; the client imports this module (0.4 s)",
    ("run.kernels", "numpy"): "a forked kernel reseeds numpy; the client imports this module (0.25 s)",
    ("run.pipeline", "IPython"): "IPython (0.12 s) only in a kernel; the estimate step imports this module outside one",
    ("clean.cleaning", "cae_impact.clean.schema"): "pandera (0.22 s) only when cleaned data are written or checked",
    ("core.frenchfmt", "numpy"): "the index and render steps format text without numpy (0.25 s)",
    ("core.frenchfmt", "pandas"): "the index and render steps format text without pandas (0.9 s)",
    ("ingest.kobo", "cae_impact.spec.questionnaire"): "pyxform (0.15 s) only for a Kobo export read without its form",
    ("ingest.tabular", "openpyxl"): "openpyxl (0.43 s) only for an XLSX export",
    ("render.audit", "IPython"): "IPython (0.12 s) only in a kernel",
    ("render.evolution", "IPython"): "IPython (0.12 s) only in a kernel; the render step imports this module outside one",
    ("render.evolution", "matplotlib"): "matplotlib (1.0 s) only for the trend chart; the render step imports this module",
    ("render.present", "IPython"): "IPython (0.12 s) only in a kernel; the estimate and render steps import this module",
    ("render.present", "PIL"): "Pillow (0.06 s) only to rasterise a chart",
    ("render.present", "matplotlib"): "matplotlib (1.0 s) only to draw; the estimate step imports this module",
    ("render.report", "cae_impact.render.annexes"): "the index step imports this module without the annexes' pandas "
                                                    "and charts (2.6 s)",
    ("render.report", "PIL"): "Pillow (0.06 s) only to measure the running header's text",
    ("render.report", "docx"): "python-docx (0.35 s) only for the DOCX",
    ("render.report", "nbconvert"): "nbconvert (1.0 s) only for the HTML",
    ("render.report", "pypandoc"): "pandoc's wrapper (0.34 s) only for the DOCX",
    ("render.report", "weasyprint"): "WeasyPrint (1.8 s) only for the PDF",
    ("render.tables_fr", "openpyxl"): "openpyxl (0.43 s) only for the XLSX",
    ("spec.codebook", "pandas"): "every step loads the codebook; pandas (0.9 s) only for its tables",
    ("spec.questionnaire", "weasyprint"): "WeasyPrint (1.8 s) only for the printable PDF",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int
    in_function: bool

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _modules(package: str = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / package).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        out[name] = path
    return out


def _function_level(tree: ast.Module) -> set[int]:
    """The ids of the import nodes inside a function (at any depth)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    return inside


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """Every module named by an import of ``name``: (absolute name, line, inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = _function_level(tree)
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in inside) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                module = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, node.lineno, id(node) in inside))
            out += [(f"{module}.{a.name}", node.lineno, id(node) in inside) for a in node.names]
    return out


def import_graph() -> tuple[dict[str, Path], list[Edge]]:
    """The modules of the runtime package and the imports between them."""
    modules = _modules()
    edges = []
    for name, path in modules.items():
        seen = set()
        for target, line, lazy in _imports(name, path):
            if target in modules and target != name and (target, line) not in seen:
                seen.add((target, line))
                edges.append(Edge(name, target, path, line, lazy))
    return modules, edges


def _cycle(edges: list[Edge]) -> list[Edge] | None:
    """One cycle of the graph as its edges, or None."""
    out: dict[str, list[Edge]] = {}
    for e in edges:
        out.setdefault(e.source, []).append(e)
    state: dict[str, int] = {}
    stack: list[Edge] = []

    def visit(node: str) -> list[Edge] | None:
        state[node] = 1
        for e in out.get(node, []):
            if state.get(e.target) == 1:
                start = next((i for i, s in enumerate(stack) if s.source == e.target), len(stack))
                return [*stack[start:], e]
            if e.target not in state:
                stack.append(e)
                found = visit(e.target)
                if found:
                    return found
                stack.pop()
        state[node] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(out):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".")


def test_the_import_graph_has_no_cycle():
    _, edges = import_graph()
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(
        [_short(cycle[0].source)] + [f"{_short(e.target)} ({e.where()})" for e in cycle])


def test_every_module_lives_in_a_declared_layer():
    modules, _ = import_graph()
    stray = [m for m in modules if m != PACKAGE and _layer(m) not in LAYER_NAMES]
    assert not stray, (f"modules outside the layers {LAYER_NAMES}: {stray}; put each in a sub-package "
                       "and add the sub-package to LAYERS if it is a new stage")


def test_the_package_root_imports_nothing_of_its_own():
    _, edges = import_graph()
    assert not [e for e in edges if e.source == PACKAGE], "cae_impact/__init__.py must stay empty of imports"


def test_layers_import_only_downwards():
    _, edges = import_graph()
    upward = []
    for e in edges:
        src, dst = _layer(e.source), _layer(e.target)
        if src is None or dst is None:
            continue
        if LAYER_NAMES.index(dst) > LAYER_NAMES.index(src):
            upward.append(f"{_short(e.source)} ({src}) imports {_short(e.target)} ({dst}) at {e.where()}")
    assert not upward, ("a layer imports a layer above it (order: " + " < ".join(LAYER_NAMES) + "); move the "
                        "shared thing down instead:\n  " + "\n  ".join(upward))


def test_the_runtime_package_never_imports_the_demo():
    offending = []
    for name, path in _modules().items():
        for target, line, _ in _imports(name, path):
            if target == DEMO or target.startswith(DEMO + "."):
                offending.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offending, "the demo generator is not part of the runtime:\n  " + "\n  ".join(offending)


def test_the_demo_is_a_package_of_its_own():
    assert (SRC / DEMO / "__init__.py").is_file()
    assert not list((SRC / PACKAGE).glob("demo*.py")), "the demo generator lives in src/cae_impact_demo/"


def _lazy_imports() -> list[tuple[str, str, Path, int]]:
    """Every import inside a function: (importing module, imported module, file, line)."""
    out = []
    modules = _modules()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside = _function_level(tree)
        for node in ast.walk(tree):
            if id(node) not in inside:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = name if path.name == "__init__.py" else name.rpartition(".")[0]
                if node.level:
                    parts = base.split(".")
                    module = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = sorted({f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                                  for a in node.names})
            out += [(_short(name), t, path, node.lineno) for t in targets]
    return out


def _allowed(module: str, target: str) -> tuple[str, str] | None:
    for key in LAZY_IMPORTS:
        mod, prefix = key
        if mod == module and (target == prefix or target.startswith(prefix + ".")):
            return key
    return None


def test_imports_inside_functions_are_the_listed_ones():
    """Imports go at the top of a module, unless a measured start-up cost says otherwise."""
    found = _lazy_imports()
    unlisted = [f"{p.relative_to(ROOT)}:{line}: {mod} imports {t} inside a function"
                for mod, t, p, line in found if _allowed(mod, t) is None]
    assert not unlisted, ("move these imports to the top of their module (or, for a measured start-up cost, "
                          "add them to LAZY_IMPORTS with the figure):\n  " + "\n  ".join(unlisted))


def test_every_listed_lazy_import_is_still_there():
    used = {_allowed(mod, t) for mod, t, _, _ in _lazy_imports()}
    stale = sorted(set(LAZY_IMPORTS) - used)
    assert not stale, f"LAZY_IMPORTS lists imports no longer inside a function: {stale}"


def test_the_layer_table_of_the_readme_matches():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in LAYER_NAMES:
        assert f"`{name}/`" in readme, f"README's layout does not describe the layer {name}/"


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_each_layer_is_a_package(name):
    assert (SRC / PACKAGE / name / "__init__.py").is_file()
