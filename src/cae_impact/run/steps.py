"""The build steps of a wave, declared once: what each reads, what it writes, which code it runs.

Issue 19: the build graph was declared three times (Makefile prerequisites, cache-key inputs in
``cli.py``, manifest inputs) and every cache key hashed all of ``src/``. Each step is now one
:class:`Step`, made by :func:`wave_steps` from the study, and read by

* **Make**: ``cae-impact make-include`` writes each Make target's prerequisites from its steps
  (:func:`make_include`): the step's input files, its notebook, its code files (the modules its
  entries import, transitively: :mod:`cae_impact.run.codegraph`) and its assets. The Makefile keeps
  the recipes and no list of files;
* **the cache keys**: a step's key hashes :meth:`Step.fingerprint`, i.e. exactly its input files
  and the digest of its code files (and ``requirements.lock``): editing the demo generator
  changes no key, editing a chapter module changes the analysis notebooks' keys only;
* **the manifest**: each report's ``manifest.json`` records, for every step it was made from,
  the same input files with their sha256 and the same code files (:func:`manifest_steps`).

A step's code is named by its **entries** (:data:`ENTRIES`, dotted names in this one place, so
that a module that moves is renamed here only) or, for a notebook, read from the notebook's own
code cells. Non-Python files the code reads are the step's **assets** (:data:`ASSETS`).

Paths are those of the build (``processed``, ``reports``, ``notebooks`` roots as the Makefile
passes them); :func:`make_include` writes them back with the Makefile's variables
(``$(PROCESSED_ROOT)``, ``$(REPORTS_ROOT)``, ``$(NOTEBOOKS_DIR)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cae_impact.core.files import sha256_file
from cae_impact.run import codegraph
from cae_impact.run.cache import file_hashes, fingerprint, resolved
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, PROJECT_ROOT, StudyConfig
from cae_impact.spec.layout import (
    ESTIMATES_FILE,
    WAVES_INFO_FILE,
    WEIGHTING_FILE,
    change_inputs,
    editorial_path,
    meta_path,
    study_dir,
    target_files,
)

# The code of the steps that are not notebooks: ``module`` (all of it) or ``module:function,...``
# (the module's import-time code and those functions). A notebook step's entries are read from
# the notebook (:func:`cae_impact.run.codegraph.notebook_entries`).
ENTRIES: dict[str, tuple[str, ...]] = {
    "indicators": ("cae_impact.render.tables_fr:write_indicator_files", "cae_impact.analysis.waves:add_change_columns",
                   "cae_impact.spec.codebook:load_codebook"),
    "changes": ("cae_impact.analysis.waves:run_changes",),
    "html": ("cae_impact.render.report:notebook_order,require_notebooks,report_content_digest,production_date,"
             "report_meta,render_html",),
    "pdf": ("cae_impact.render.report:render_pdf",),
    "docx": ("cae_impact.render.report:render_docx",),
    "index": ("cae_impact.render.index:write_index", "cae_impact.clean.privacy_scan:collect_raw_identifiers,scan_tree",
              "cae_impact.render.editorial:missing_targets"),
    "publish-reference": ("cae_impact.analysis.indicators:load_responses,estimate_study", "cae_impact.analysis.published:write_reference",
                          "cae_impact.run.pipeline:consortium_summary,require_every_cae"),
    "publish-wave": ("cae_impact.analysis.indicators:load_responses,estimate_study", "cae_impact.analysis.waves:write_wave_figures",
                     "cae_impact.run.pipeline:consortium_summary,require_every_cae"),
}
# Non-Python files a step's code reads, relative to the package's folder.
ASSETS: dict[str, tuple[str, ...]] = {
    "html": ("render/templates/report.css",),
    "docx": ("render/templates/reference.docx",),
}

CLEANING_NB = "01_cleaning.ipynb"
ESTIMATION_NB = "02_estimation.ipynb"
EFFECT_NB = "03_effect.ipynb"
PROFILE_NB = "04_profile.ipynb"
EVOLUTION_NB = "05_evolution.ipynb"
CLEANING_OUTPUTS = ("responses.parquet", "quarantine.csv", "cleaning_log.json")
TABLES = ("indicators.csv", "indicators.xlsx", "indicateurs_excel.csv")
EXECUTED_STAMP = ".executed"
KEYED_OTHERWISE = {
    "notebooks": "a notebook enters its key by its code cells (jupyter-cache), not its bytes: a markdown edit hits",
    "analysis": "the HTML's key covers what of the executed notebooks reaches the report, not the stamp",
}
"""Input roles whose files are listed for Make and the manifest but whose bytes are not hashed
into the key (their content enters it another way)."""


def code_of(entries: Iterable[str], assets: Iterable[Path] = ()) -> dict[str, str]:
    """What of the code enters a key: the digest of the entries' code files, and the lock file's sha256."""
    lock = PROJECT_ROOT / "requirements.lock"
    return {"code": codegraph.code_digest(codegraph.code_files(entries, assets)),
            "requirements.lock": sha256_file(lock) if lock.exists() else "missing"}


def notebook_code(notebook: Path) -> dict[str, str]:
    """:func:`code_of` a notebook's own entries (its step's code, for a run outside a step)."""
    return code_of(codegraph.notebook_entries(notebook))


@dataclass(frozen=True)
class Step:
    """One step of the build: its inputs by role, its outputs, its code.

    ``make_target`` is the file Make knows the step by (its first output; for the notebooks of
    a target's analysis, the stamp ``notebooks/.executed`` they are made under). ``kind`` names
    the entry in :data:`ENTRIES` / :data:`ASSETS` for a step that is not a notebook.
    """

    name: str
    kind: str
    inputs: dict[str, tuple[Path, ...]]
    outputs: tuple[Path, ...]
    make_target: Path
    notebook: Path | None = None
    optional: frozenset[Path] = field(default_factory=frozenset)
    """Inputs that may be absent (an editorial file): Make lists them as ``$(wildcard ...)``."""
    phony: bool = False
    """A step Make always runs when asked (``make publish-reference``): ``make_target`` is its name."""
    parameters: dict[str, str] = field(default_factory=dict)
    """A notebook step's own parameters (the effect domain of a chapter), beside the build's."""

    def files(self) -> list[Path]:
        """Every input file (the notebook included), once each, in a stable order."""
        seen: dict[Path, None] = {}
        for paths in self.inputs.values():
            for p in paths:
                seen.setdefault(Path(p), None)
        return list(seen)

    def entries(self) -> list[str]:
        """The code entries: read from the notebook, or :data:`ENTRIES`."""
        if self.notebook is not None:
            return codegraph.notebook_entries(self.notebook)
        return list(ENTRIES.get(self.kind, ()))

    def assets(self) -> list[Path]:
        """The non-Python files its code reads (:data:`ASSETS`)."""
        return [codegraph.PACKAGE_DIR / a for a in ASSETS.get(self.kind, ())]

    def code_files(self) -> list[Path]:
        """The package's files this step runs (its closure) and its assets."""
        return codegraph.code_files(self.entries(), self.assets())

    def key_files(self) -> list[Path]:
        """The input files whose bytes the key hashes (all but :data:`KEYED_OTHERWISE`'s roles)."""
        other = {Path(p) for role in KEYED_OTHERWISE for p in self.inputs.get(role, ())}
        return [p for p in self.files() if p not in other]

    def code(self) -> dict[str, str]:
        """What of the code enters the key (:func:`code_of` the step's entries and assets)."""
        return code_of(self.entries(), self.assets())

    def fingerprint(self) -> dict[str, object]:
        """What a step's cache key hashes: the sha256 of each of :meth:`key_files`, and :meth:`code`."""
        return fingerprint(self.key_files(), self.code())

    def record(self) -> dict[str, object]:
        """The step as the manifest records it: inputs with their sha256, code files and digest."""
        files = self.code_files()
        return {"inputs": file_hashes(self.files()), "code": codegraph.code_digest(files),
                "code_files": [_rel(p) for p in files], "outputs": [_rel(p) for p in self.outputs],
                "make_target": _rel(self.make_target)}


def _rel(path: Path) -> str:
    try:
        return str(resolved(path).relative_to(PROJECT_ROOT))
    except ValueError:
        return str(resolved(path))


# ---------------------------------------------------------------------------- the files


def external_files() -> list[Path]:
    """The national reference tables (data/external/)."""
    ext = PROJECT_ROOT / "data" / "external"
    if not ext.exists():
        return []
    return sorted(p for p in ext.rglob("*") if p.is_file() and not p.name.startswith("."))


def reference_files(study: StudyConfig) -> list[Path]:
    """The published consortium reference and its description, when the study compares with one."""
    ref = study.consortium_reference
    return [] if ref is None else [ref, meta_path(ref)]


def processed_files(study: StudyConfig, processed: Path) -> list[Path]:
    """Every CAE's cleaned responses."""
    return [processed / study.wave / c / "responses.parquet" for c in study.cae_ids]


_DOMAIN_IDS: dict[tuple[str, int, int], tuple[str, ...]] = {}


def domain_ids(study: StudyConfig) -> list[str]:
    """The codebook's effect domains, memoised in this process by path, size and mtime.

    A step asks for them once per progress line (an analysis: 9 times); loading and validating
    the codebook each time was ~40 % of an analysis step that finds everything in the cache.
    """
    path = Path(study.codebook)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:  # load_codebook says what is wrong
        return [d.id for d in load_codebook(path).domains]
    if key not in _DOMAIN_IDS:
        _DOMAIN_IDS[key] = tuple(d.id for d in load_codebook(path).domains)
    return list(_DOMAIN_IDS[key])


@dataclass(frozen=True)
class Roots:
    """Where the build reads and writes: cleaned data, reports, the pipeline notebooks."""

    processed: Path
    reports: Path
    notebooks: Path


# ---------------------------------------------------------------------------- the steps


def clean_step(study: StudyConfig, roots: Roots, cae_id: str) -> Step:
    """Notebook 01 for a CAE: its export (and mapping), the study and the codebook."""
    cae = study.cae(cae_id)
    nb = roots.notebooks / CLEANING_NB
    out = roots.processed / study.wave / cae.id
    outputs = tuple(out / n for n in CLEANING_OUTPUTS)
    return Step(f"clean:{cae.id}", "clean", {
        "raw_exports": (cae.export, *([cae.mapping] if cae.mapping else [])),
        "configuration": (study.path, study.codebook),
        "notebooks": (nb,),
    }, outputs, outputs[0], notebook=nb)


def estimate_step(study: StudyConfig, roots: Roots) -> Step:
    """Notebook 02: every CAE's cleaned responses, the study, the codebook, the reference."""
    nb = roots.notebooks / ESTIMATION_NB
    sdir = study_dir(study, roots.reports)
    per_target = [p for t in study.targets for p in target_files(study, roots.reports, t)]
    outputs = (sdir / ESTIMATES_FILE, sdir / WEIGHTING_FILE, sdir / "design.csv", *per_target)
    return Step("estimate", "estimate", {
        "processed": tuple(processed_files(study, roots.processed)),
        "configuration": (study.path, study.codebook),
        "consortium_reference": tuple(reference_files(study)),
        "notebooks": (nb,),
    }, outputs, outputs[0], notebook=nb)


def changes_step(study: StudyConfig, roots: Roots) -> Step | None:
    """The changes since the previous wave (a study with previous_waves only)."""
    if not study.previous_waves:
        return None
    from cae_impact.analysis import waves

    folder = waves.waves_dir(study, roots.reports)
    outputs = (folder / waves.CHANGES_FILE, *(p for t in study.targets for p in _change_files(study, roots, t)[:1]),
               *_change_files(study, roots, CONSORTIUM)[1:])
    # the respondents of both waves (their pseudonyms; waves.linkage): the previous wave's cleaned
    # responses may be absent (another checkout), the check is then left out
    previous = study.previous_waves[-1].wave
    before = tuple(roots.processed / previous / c / "responses.parquet" for c in study.cae_ids)
    return Step("changes", "changes", {
        "estimates": (study_dir(study, roots.reports) / ESTIMATES_FILE,),
        "previous_waves": tuple(change_inputs(study)),
        "configuration": (study.path, study.codebook),
        "linkage": (*before, *processed_files(study, roots.processed)),
    }, outputs, outputs[0], optional=frozenset(before))


def _change_files(study: StudyConfig, roots: Roots, target: str) -> list[Path]:
    """What a target's analysis reads of the changes: its own rows, and the wave-wide tables."""
    from cae_impact.analysis import waves

    folder = waves.waves_dir(study, roots.reports)
    return [waves.target_change_file(study, roots.reports, target), folder / WAVES_INFO_FILE,
            folder / waves.COMPARABILITY_FILE, folder / waves.TREND_FILE]


def _analysis_inputs(study: StudyConfig, roots: Roots, target: str) -> dict[str, tuple[Path, ...]]:
    """What the analysis notebooks (03, 04, 05_evolution) read for a target.

    Its estimates and weighting (:func:`cae_impact.pipeline.target_files`), the study, the
    codebook, the national references; its cleaned responses (verbatims, and the evidence's
    recomputed headline: every CAE's for the consortium); its editorial file; in a later wave
    its changes. Nothing of another CAE for a CAE compared with a published consortium
    reference: another CAE's new data leave the key, and the executed notebooks, as they were.
    """
    own = [roots.processed / study.wave / c / "responses.parquet"
           for c in ([target] if target != CONSORTIUM else study.cae_ids)]
    changes = _change_files(study, roots, target) if study.previous_waves else []
    return {
        "estimates": tuple(target_files(study, roots.reports, target)),
        "changes": tuple(changes),
        "configuration": (study.path, study.codebook),
        "references": tuple(external_files()),
        "processed": tuple(own),
        "editorial": (editorial_path(study, target),),
    }


def analysis_steps(study: StudyConfig, roots: Roots, target: str) -> list[Step]:
    """A target's analysis: notebook 03 (every effect domain), 04, 05_evolution (a later wave), tables."""
    nb_dir = roots.reports / study.wave / target / "notebooks"
    stamp = nb_dir / EXECUTED_STAMP
    inputs = _analysis_inputs(study, roots, target)
    optional = frozenset({editorial_path(study, target)})
    # issue 19: one execution of notebook 03 per target, every effect domain a section (it was one
    # execution per domain, seven per target: 46 % of a national build)
    jobs = [(f"chapters:{target}", "chapter", EFFECT_NB, EFFECT_NB, {})]
    jobs.append((f"profile:{target}", "profile", PROFILE_NB, PROFILE_NB, {}))
    if study.previous_waves:  # issue 18: the evolution since the previous wave
        jobs.append((f"evolution:{target}", "evolution", EVOLUTION_NB, EVOLUTION_NB, {}))
    steps = [Step(name, kind, {**inputs, "notebooks": (roots.notebooks / nb,)}, (nb_dir / out,), stamp,
                  notebook=roots.notebooks / nb, optional=optional, parameters=params)
             for name, kind, nb, out, params in jobs]
    tdir = roots.reports / study.wave / target
    tables_in: dict[str, tuple[Path, ...]] = {"estimates": (target_files(study, roots.reports, target)[0],),
                                              "configuration": (study.codebook,)}
    if study.previous_waves:
        tables_in["changes"] = tuple(_change_files(study, roots, target)[:1])
    steps.append(Step(f"indicators:{target}", "indicators", tables_in, tuple(tdir / n for n in TABLES), stamp))
    return steps


def document_steps(study: StudyConfig, roots: Roots, target: str) -> list[Step]:
    """A target's documents: HTML from its executed notebooks, then PDF and DOCX from the HTML.

    The HTML's key also covers what of the executed notebooks reaches the report
    (:func:`cae_impact.report.report_content_digest`, not their bytes) and the production date;
    its files are the analysis inputs and the cleaning logs and cleaned responses of its CAEs
    (all of them for the consortium, or for a CAE compared with the live consortium: its
    provenance annex lists every export).
    """
    tdir = roots.reports / study.wave / target
    analysis = _analysis_inputs(study, roots, target)
    own = target != CONSORTIUM and study.consortium_reference is not None
    caes = [target] if own else study.cae_ids
    cleaning = tuple(roots.processed / study.wave / c / n for c in caes for n in ("cleaning_log.json",
                                                                                  "responses.parquet"))
    html = tdir / "report.html"
    stamp = tdir / "notebooks" / EXECUTED_STAMP
    optional = frozenset({editorial_path(study, target)})
    return [
        Step(f"html:{target}", "html", {**analysis, "cleaning_outputs": cleaning, "analysis": (stamp,)},
             (html,), html, optional=optional),
        Step(f"pdf:{target}", "pdf", {"documents": (html,)}, (tdir / "report.pdf",), tdir / "report.pdf"),
        Step(f"docx:{target}", "docx", {"documents": (html,)}, (tdir / "report.docx",), tdir / "report.docx"),
    ]


def index_step(study: StudyConfig, roots: Roots) -> Step:
    """reports/index.html, after every document of the wave (and the scan of every published file)."""
    docs = tuple(roots.reports / study.wave / t / f"report.{fmt}" for t in study.targets
                 for fmt in ("html", "pdf", "docx"))
    index = roots.reports / "index.html"
    return Step("index", "index", {"documents": docs}, (index,), index)


def publish_steps(study: StudyConfig, roots: Roots) -> list[Step]:
    """publish-reference and publish-wave: the study estimated afresh from its cleaned data."""
    from cae_impact.analysis import waves

    inputs = {"processed": tuple(processed_files(study, roots.processed)),
              "configuration": (study.path, study.codebook)}
    out = [Step("publish-reference", "publish-reference", inputs, tuple(reference_files(study)),
                Path("publish-reference"), phony=True)]
    figures = waves.default_figures_path(study)
    out.append(Step("publish-wave", "publish-wave", inputs, (figures, figures.with_suffix(waves.META_SUFFIX)),
                    Path("publish-wave"), phony=True))
    return out


def wave_steps(study: StudyConfig, roots: Roots) -> list[Step]:
    """Every step of the wave's build, in the order they run."""
    steps = analysis_wave_steps(study, roots)
    for target in study.targets:
        steps += document_steps(study, roots, target)
    steps.append(index_step(study, roots))
    return steps


def analysis_wave_steps(study: StudyConfig, roots: Roots) -> list[Step]:
    """The steps of :func:`wave_steps` before the documents: every notebook step is among them.

    (Each step of a build counts the notebooks of the wave for its progress lines: the documents'
    steps, whose inputs name every CAE's files for every target, made that count grow with the
    square of the number of CAEs, 0.24 s per step at 160 CAEs.)
    """
    steps = [clean_step(study, roots, c) for c in study.cae_ids]
    steps.append(estimate_step(study, roots))
    changes = changes_step(study, roots)
    if changes is not None:
        steps.append(changes)
    for target in study.targets:
        steps += analysis_steps(study, roots, target)
    return steps


def target_steps(study: StudyConfig, roots: Roots, target: str, documents: bool = False) -> list[Step]:
    """The steps a target's report is made from.

    Every cleaning, the estimation, the changes, its analysis, and with ``documents`` its HTML,
    PDF and DOCX.
    """
    steps = [clean_step(study, roots, c) for c in study.cae_ids]
    steps.append(estimate_step(study, roots))
    changes = changes_step(study, roots)
    if changes is not None:
        steps.append(changes)
    steps += analysis_steps(study, roots, target)
    if documents:
        steps += document_steps(study, roots, target)
    return steps


# ---------------------------------------------------------------------------- Make


def make_prerequisites(steps: Iterable[Step]) -> dict[Path, list[Path]]:
    """Each Make target's prerequisites, from the steps made under it.

    Every input file (notebooks included) and every code file of those steps. An input another
    step writes as a side output (a target's ``report__<t>.parquet``, written by the
    estimation) is replaced by that step's Make target. The three documents of a target are
    made by one recipe: each gets the prerequisites of all three, the documents left out.
    """
    steps = list(steps)
    # a published file is an input of the build, never remade by it: publishing is asked for
    producer = {Path(o): s.make_target for s in steps if not s.phony for o in s.outputs}
    groups: dict[Path, list[Step]] = {}
    for s in steps:
        groups.setdefault(s.make_target, []).append(s)

    def recipe(target: Path) -> Path:  # the three documents of a target are made by one recipe
        kinds = {s.kind for s in groups.get(target, [])}
        return target.parent / "report.*" if kinds & {"html", "pdf", "docx"} else target

    # the targets one recipe makes share their prerequisites: with ``make -k``, a document whose
    # HTML cannot be made (its analysis failed) must not be attempted for its own sake
    by_recipe: dict[Path, dict[Path, None]] = {}
    for target, members in groups.items():
        prereqs = by_recipe.setdefault(recipe(target), {})
        for s in members:
            for f in s.files():
                f = producer.get(f, f)
                if f == target or recipe(f) == recipe(target):
                    continue
                prereqs.setdefault(f, None)
            for f in s.code_files():
                prereqs.setdefault(f, None)
    return {target: list(by_recipe[recipe(target)]) for target in groups}


def make_path(path: Path, roots: Roots) -> str:
    """A path as the generated Make include writes it: under a root, with the Makefile's variable."""
    if not Path(path).is_absolute() and len(Path(path).parts) == 1:
        return str(path)  # a phony target's name
    p = Path(path).absolute()
    for var, root in (("$(REPORTS_ROOT)", roots.reports), ("$(PROCESSED_ROOT)", roots.processed),
                      ("$(NOTEBOOKS_DIR)", roots.notebooks)):
        root = Path(root).absolute()
        if p == root or root in p.parents:
            return f"{var}/{p.relative_to(root).as_posix()}"
    return _rel(p)


def make_include(study: StudyConfig, roots: Roots, steps: list[Step] | None = None) -> list[str]:
    """The Make rules' prerequisites of every step of the wave (lines of the generated include)."""
    steps = [*wave_steps(study, roots), *publish_steps(study, roots)] if steps is None else steps
    optional = {p for s in steps for p in s.optional}
    lines = []
    for target, prereqs in make_prerequisites(steps).items():
        # an optional input (an editorial file) counts from the build after it is written
        words = [f"$(wildcard {make_path(p, roots)})" if p in optional else make_path(p, roots) for p in prereqs]
        lines.append(f"{make_path(target, roots)}: {' '.join(words)}")
    return lines


# ---------------------------------------------------------------------------- the manifest


def manifest_steps(steps: Iterable[Step]) -> dict[str, dict[str, object]]:
    """``{step name: record}`` for the manifest (see :meth:`Step.record`)."""
    return {s.name: s.record() for s in steps}


def inputs_by_role(steps: Iterable[Step]) -> dict[str, list[Path]]:
    """Every input file of the steps, by role (the manifest's ``inputs``), each once."""
    roles: dict[str, dict[Path, None]] = {}
    for s in steps:
        for role, paths in s.inputs.items():
            for p in paths:
                roles.setdefault(role, {}).setdefault(Path(p), None)
    return {role: list(paths) for role, paths in roles.items()}
