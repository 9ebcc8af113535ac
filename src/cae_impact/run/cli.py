"""The ``cae-impact`` command: the steps the Makefile runs, and the tools CAE staff use.

Build steps (called by ``make``; each writes its outputs atomically):

* ``make-include``  print the Make variables of the study (wave, CAEs, their raw files);
* ``clean --cae C``  execute notebook 01 for one CAE (cleaned data under data/processed/);
* ``estimate``  execute notebook 02: estimate every indicator of every target (study-wide),
  then show the weighting and secrecy diagnostics;
* ``analyse --target T``  execute notebooks 03 (every effect domain) and 04 for a target;
* ``render --target T --to html|pdf|docx``  render a target's report document;
* ``index``  write reports/index.html;
* ``verify [--target T]``  re-execute without the cache (fresh kernels) and compare with the
  manifest and the indicators of the build;
* ``build-summary``  say how many notebooks and targets failed (reports/<wave>/_failures/).

Notebooks and steps go through the content-addressed cache (:mod:`cae_impact.run.cache`, under
``--cache-root``, default build/cache); ``--no-cache`` executes everything.

Tools: ``validate EXPORT`` checks a survey export before it is sent; ``check-env`` checks the
project kernel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cae_impact.core.environment import git_state
from cae_impact.core.files import key_of, write_atomic
from cae_impact.core.paths import relative_path as _rel
from cae_impact.render import report
from cae_impact.render.editorial import editorial_path, missing_targets
from cae_impact.render.index import write_index
from cae_impact.run import cache as cachemod
from cae_impact.run import execute as build
from cae_impact.run import kernels, manifest, steps
from cae_impact.run.steps import CLEANING_NB, CLEANING_OUTPUTS, ESTIMATION_NB
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import (
    CONSORTIUM,
    PROJECT_ROOT,
    StudyConfig,
    StudyConfigError,
    inside,
    load_study,
)
from cae_impact.spec.layout import (
    CHANGES_FILE,
    ESTIMATES_FILE,
    WEIGHTING_FILE,
    study_dir,
    target_files,
)

from .kernels import ENV_VAR
from .manifest import MANIFEST_NAME, record_outputs

STUDY_TARGET = "study"
"""How the build names the estimation in its messages and failure reports (it has no target)."""


_STUDIES: dict[tuple[str, int, int], StudyConfig] = {}


def _load_study(path) -> StudyConfig:
    """:func:`load_study`, memoised in this process by path, size and mtime.

    A step read and checked its study up to six times: 0.4 s a step for a study of 160 CAEs.
    """
    if path is None:
        return load_study(path)
    full = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path  # as load_study reads it
    try:
        st = full.stat()
    except OSError:
        return load_study(path)
    key = (str(full), st.st_size, st.st_mtime_ns)
    if key not in _STUDIES:
        _STUDIES[key] = load_study(path)
    return _STUDIES[key]


def _ctx(args: argparse.Namespace) -> tuple[StudyConfig, Path, Path]:
    study = _load_study(args.study)
    processed = Path(args.processed_root)
    reports = Path(args.reports_root)
    if not processed.is_absolute():
        processed = PROJECT_ROOT / processed
    if not reports.is_absolute():
        reports = PROJECT_ROOT / reports
    return study, processed, reports


def _notebooks(args: argparse.Namespace) -> Path:
    """The folder of the pipeline notebooks (``notebooks/`` unless the build says otherwise)."""
    path = Path(getattr(args, "notebooks_dir", "notebooks"))
    return path if path.is_absolute() else PROJECT_ROOT / path


def _domain_ids(study: StudyConfig) -> list[str]:
    """The codebook's effect domains (memoised: :func:`cae_impact.run.steps.domain_ids`)."""
    return steps.domain_ids(study)


def build_parameters(study: StudyConfig, args: argparse.Namespace, **extra: str) -> dict[str, str]:
    """The parameters the build passes to a notebook (all strings, relative to the project)."""
    params = {
        "study": _rel(study.path),
        "processed_root": _rel(PROJECT_ROOT / args.processed_root),
    }
    params.update(extra)
    return params


def _check_declared(notebook: Path, params: dict[str, str]) -> None:
    """Refuse to run a notebook with a parameter its parameters cell does not declare.

    papermill only warns about unknown names; a typo would silently run the defaults.
    """
    import papermill as pm

    declared = set(pm.inspect_notebook(str(notebook)))
    unknown = set(params) - declared
    if unknown:
        raise build.BuildError(
            f"{notebook.name}: parameter(s) {', '.join(sorted(unknown))} not declared in its "
            f"parameters cell (declared: {', '.join(sorted(declared))})"
        )


def _run(notebook: Path, output: Path, params: dict[str, str], target: str, failures_dir: Path,
         *, inputs: list[Path] = (), code: dict[str, str] | None = None,
         cache: cachemod.NotebookCache | None = None,
         artifacts_dir: Path | None = None, artifact_names: tuple[str, ...] = (),
         lookup: bool = True) -> build.RunRecord:
    _check_declared(notebook, params)
    failure_report = failures_dir / f"{target}__{notebook.stem}.json"
    try:
        record = build.run_notebook(
            notebook, output, params, target=target, inputs=list(inputs), cache=cache,
            artifacts_dir=artifacts_dir, artifact_names=artifact_names, cwd=notebook.parent,
            lookup=lookup, code=code,
        )
    except build.NotebookFailure as failure:
        build.write_failure_report(failure, failure_report)
        raise
    failure_report.unlink(missing_ok=True)  # an earlier failure of this notebook is fixed
    return record


# ---------------------------------------------------------------------------- cache, progress


def _cache_root(args: argparse.Namespace) -> Path:
    path = Path(getattr(args, "cache_root", None) or "build/cache")
    return path if path.is_absolute() else PROJECT_ROOT / path


def _nb_cache(args: argparse.Namespace, study: StudyConfig, name: str) -> cachemod.NotebookCache | None:
    """One jupyter-cache per target (or per CAE's cleaning): one writer per cache under make -j."""
    if getattr(args, "no_cache", False):
        return None
    return cachemod.NotebookCache(_cache_root(args) / "nb" / study.wave / name)


def _step_cache(args: argparse.Namespace) -> cachemod.StepCache | None:
    return None if getattr(args, "no_cache", False) else cachemod.StepCache(_cache_root(args) / "steps")


_TOTALS: dict[str, int] = {}


def total_notebooks(study: StudyConfig) -> int:
    """Notebook executions of a full build: the notebook steps of :func:`cae_impact.run.steps.wave_steps`.

    They are all in :func:`cae_impact.run.steps.analysis_wave_steps`. One cleaning per CAE, the estimation (02_estimation), then 03 and 04 per target,
    and 05_evolution per target when the study has a previous wave. Memoised per study file.
    """
    if str(study.path) not in _TOTALS:
        roots = steps.Roots(PROJECT_ROOT, PROJECT_ROOT, PROJECT_ROOT / "notebooks")  # a count: any roots
        _TOTALS[str(study.path)] = sum(s.notebook is not None for s in steps.analysis_wave_steps(study, roots))
    return _TOTALS[str(study.path)]


def _progress(study: StudyConfig, label: str, message: str) -> None:
    """A progress line: notebooks done out of the build's total (when run by make), elapsed time."""
    prefix = ""
    counter = os.environ.get("CAE_BUILD_PROGRESS")
    if counter:
        path = Path(counter)
        try:
            with cachemod.locked(path.parent):
                done = (int(path.read_text() or 0) if path.exists() else 0) + 1
                path.write_text(str(done))
            prefix += f"[{done}/{total_notebooks(study)}] "
        except (OSError, ValueError):
            pass
    start = os.environ.get("CAE_BUILD_START")
    if start:
        try:
            prefix += f"[{time.time() - float(start):6.1f} s] "
        except ValueError:
            pass
    print(f"  {prefix}[{label}] {message}", flush=True)


def _runs_dir(study: StudyConfig, reports: Path) -> Path:
    return reports / study.wave / "_runs"


def _write_json(path: Path, payload: object) -> None:
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


# ---------------------------------------------------------------------------- the steps


def _roots(args: argparse.Namespace) -> steps.Roots:
    """The build's roots as :mod:`cae_impact.run.steps` declares the steps with them."""
    _study, processed, reports = _ctx(args)
    return steps.Roots(processed, reports, _notebooks(args))


# ---------------------------------------------------------------------------- build steps


def cmd_make_include(args: argparse.Namespace) -> int:
    """Print the study's Make variables and every step's prerequisites (:mod:`cae_impact.run.steps`).

    WAVE, CAES, TARGETS and CHANGES (the changes' file, in a wave with a previous one), then one
    line per Make target: the files it is made from and the source files of its code. Paths
    under the build's roots are written with the Makefile's variables.
    """
    study = load_study(args.study)
    roots = _roots(args)
    changes = steps.changes_step(study, roots)
    lines = [
        f"# generated from {_rel(study.path)} by 'cae-impact make-include' (cae_impact.run.steps); do not edit",
        f"WAVE := {study.wave}",
        f"CAES := {' '.join(study.cae_ids)}",
        f"TARGETS := {' '.join(study.targets)}",
        f"CHANGES := {steps.make_path(changes.make_target, roots) if changes else ''}",
        *steps.make_include(study, roots),
    ]
    print("\n".join(lines))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Execute the cleaning notebook for one CAE (a cache hit restores its cleaned files)."""
    study, processed, reports = _ctx(args)
    cae = study.cae(args.cae)
    out = reports / study.wave / cae.id / "notebooks" / CLEANING_NB
    params = build_parameters(study, args, cae=cae.id)
    step = steps.clean_step(study, _roots(args), cae.id)
    try:
        record = _run(
            step.notebook, out, params, cae.id, reports / study.wave / "_failures",
            inputs=step.key_files(), code=step.code(), cache=_nb_cache(args, study, f"_clean/{cae.id}"),
            artifacts_dir=processed / study.wave / cae.id, artifact_names=CLEANING_OUTPUTS,
        )
    except build.NotebookFailure:
        withdraw_dependants(study, processed, reports, cae.id)
        raise
    _write_json(_runs_dir(study, reports) / f"clean__{cae.id}.json", record.as_dict())
    how = "cache hit" if record.cache_hit else "executed"
    _progress(study, "clean", f"{cae.id} ({cae.label}): {CLEANING_NB} {how} in {record.seconds:.1f} s")
    return 0


def withdraw_dependants(study: StudyConfig, processed: Path, reports: Path, cae_id: str) -> None:
    """After a CAE's cleaning failed: remove its cleaned files and what was built on them.

    Its previous cleaned data, the study estimates and the consortium's documents would
    otherwise still look finished (make keeps a target it did not rewrite), and a later step
    could use them. The other CAEs' reports are left: they are rebuilt only once every CAE is
    cleaned (their estimation needs the whole study).
    """
    removed = []
    for name in CLEANING_OUTPUTS:
        path = processed / study.wave / cae_id / name
        if path.exists():
            path.unlink()
            removed.append(path)
    stale = [study_dir(study, reports) / ESTIMATES_FILE]
    cons = reports / study.wave / CONSORTIUM
    stale += [cons / n for n in ("report.html", "report.pdf", "report.docx", "indicators.csv", "indicators.xlsx",
                                 "manifest.json", "notebooks/.executed")]
    for path in stale:
        if path.exists():
            path.unlink()
            removed.append(path)
    if removed:
        print(f"  [clean] {cae_id}: withdrawn, as they depend on it: {', '.join(_rel(p) for p in removed)}",
              file=sys.stderr, flush=True)


def require_complete_consortium(study: StudyConfig, reports: Path) -> None:
    """Refuse to go on with the consortium when its estimation did not include every CAE."""
    path = study_dir(study, reports) / WEIGHTING_FILE
    if not path.exists():
        return  # the analysis says the estimates are missing
    per_cae = json.loads(path.read_text(encoding="utf-8")).get("per_cae", [])
    present = {str(r.get("cae_id")) for r in per_cae if int(r.get("respondents", 0) or 0) > 0}
    missing = [c for c in study.cae_ids if c not in present]
    if missing:
        raise build.BuildError(
            f"consortium: the estimation has no respondent of {', '.join(missing)} "
            f"({_rel(path)}); no consortium document is written without every CAE of "
            f"{_rel(study.path)} (exclude a CAE explicitly with 'exclude_caes' and a reason)")


def estimation_job(args: argparse.Namespace, study: StudyConfig, reports: Path) -> tuple[Path, Path, dict[str, str]]:
    """Notebook 02 of a wave: its source, its executed copy (``_study/notebooks/``), its parameters."""
    params = build_parameters(study, args, reports_root=_rel(PROJECT_ROOT / args.reports_root))
    return _notebooks(args) / ESTIMATION_NB, study_dir(study, reports) / "notebooks" / ESTIMATION_NB, params


def cmd_estimate(args: argparse.Namespace) -> int:
    """Execute notebook 02: the estimation, then its diagnostics, cached by content.

    Every indicator of every target (study-wide disclosure control), then the weighting and
    secrecy diagnostics a reviewer checks.

    Two caches, one key each over the same inputs (:func:`cae_impact.run.steps.estimate_step`:
    every CAE's cleaned data, the study, the codebook, the reference, the step's code): the step cache restores the files of ``_study/``, the
    notebook cache the executed notebook. Both hit: no kernel starts. The files missing from
    the step cache: the notebook runs (it writes them), whatever the notebook cache holds.
    """
    study, processed, reports = _ctx(args)
    start = time.perf_counter()
    step = steps.estimate_step(study, _roots(args))
    fp = step.fingerprint()
    key = key_of({"step": "estimate", "wave": study.wave, **fp})
    cached = _step_cache(args)
    sdir = study_dir(study, reports)
    files_hit = cached is not None and cached.get_dir(key, sdir)
    notebook, out, params = estimation_job(args, study, reports)
    record = _run(notebook, out, params, STUDY_TARGET, reports / study.wave / "_failures",
                  inputs=step.key_files(), code=step.code(),
                  cache=_nb_cache(args, study, "_study"), lookup=bool(files_hit))
    if cached is not None and not files_hit:
        cached.put_dir(key, sdir)
    hit = bool(files_hit) and record.cache_hit
    _write_json(_runs_dir(study, reports) / "estimate.json", {
        "cache_key": key, "cache_hit": hit, "seconds": round(time.perf_counter() - start, 3), "inputs": fp,
        "notebook": record.as_dict()})
    how = "cache hit" if hit else "estimated"
    _progress(study, "estimate", f"{_rel(sdir / ESTIMATES_FILE)} {how} in {time.perf_counter() - start:.1f} s "
              f"({_rel(out)})")
    weighting = sdir / WEIGHTING_FILE
    if not hit and weighting.exists():
        secrecy = json.loads(weighting.read_text(encoding="utf-8")).get("secrecy") or {}
        if "audit" in secrecy and secrecy["audit"] is None:
            print(f"  [estimate] note: {len(study.caes)} CAEs: the secrecy attack was not run with the "
                  "estimation (rule-based suppression only); run 'make audit-secrecy' on the published "
                  "files", flush=True)
    changes = sdir / CHANGES_FILE
    if hit:
        changes.unlink(missing_ok=True)  # restored files: nothing to compare with
    elif changes.exists():
        said = describe_changes(json.loads(changes.read_text(encoding="utf-8")))
        if said:
            print(f"  [estimate] {said}", flush=True)
    check = sdir / "reference_check.json"
    if study.consortium_reference is not None and check.exists():
        found = json.loads(check.read_text(encoding="utf-8"))
        if found.get("differing"):
            print(f"  [estimate] note: the CAE reports compare with the consortium figures published on "
                  f"{found.get('published')} ({_rel(study.consortium_reference)}); {found['differing']} of "
                  f"{found.get('figures')} consortium figures of this build differ from them. Run "
                  "'make publish-reference' to publish this build's figures (every CAE report is then "
                  "rebuilt).", flush=True)
    return 0


def describe_changes(changes: dict) -> str:
    """The estimation's record of which report rows changed, as a line of the build's output.

    « report rows changed: cae-1, consortium, cae-3 (2 cell(s) hidden or shown again by the
    secondary suppression); unchanged: 5 target(s) »; empty after a first estimation.
    """
    changed = changes.get("changed", [])
    if not changed and not changes.get("unchanged"):
        return ""  # a first estimation: nothing to compare with
    if not changed:
        return f"report rows unchanged for every target ({len(changes['unchanged'])})"
    supp = changes.get("suppression", {})
    parts = [f"{t} ({supp[t]} cell(s) hidden or shown again by the secondary suppression)" if t in supp else t
             for t in changed]
    return (f"report rows changed: {', '.join(parts)}; unchanged: {len(changes.get('unchanged', []))} "
            "target(s) (their notebooks will be cache hits)")


def cmd_publish_reference(args: argparse.Namespace) -> int:
    """Publish the consortium figures of the current cleaned data as the study's reference.

    Estimates the study afresh from the cleaned data (as the build does), then writes the
    consortium's figures to the file named by ``consortium_reference`` in the study file (or
    ``--to``), with a description: date, CAEs, digest of the cleaned data, git commit.
    """
    from cae_impact.analysis import published
    from cae_impact.run.pipeline import consortium_summary
    study, processed, reports = _ctx(args)
    path = Path(args.to) if args.to else study.consortium_reference
    if path is None:
        raise build.BuildError(
            f"{_rel(study.path)}: consortium_reference is 'live'; name the file to publish to there "
            "(e.g. data/reference/<study>/<wave>/consortium.csv) or give --to")
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    if not inside(path, PROJECT_ROOT):
        raise build.BuildError(f"publish-reference: {path} is outside the project ({PROJECT_ROOT}); "
                               "the reference is written inside it only")
    _cb, result, source = _estimate_to_publish(study, processed)
    date = source["published"]
    published.write_reference(result.table, study, path, consortium=consortium_summary(result.weighting),
                              source={"published": source["published"], "cleaned_data": source["cleaned_data"],
                                      "codebook": _rel(study.codebook), "git_commit": source["git_commit"],
                                      "git_dirty": source["git_dirty"]})
    print(f"==> consortium figures published to {_rel(path)} ({date}); the CAE reports will be "
          "compared with them from the next 'make reports'")
    return 0


def _estimate_to_publish(study: StudyConfig, processed: Path):
    """Estimate the study afresh from its cleaned data, for publishing: (codebook, result, source).

    ``source`` describes what is published: the date (``CAE_PUBLISH_DATE`` or today), the
    digests of the cleaned data, the git commit and whether the tree was dirty.
    """
    from cae_impact.analysis import indicators
    from cae_impact.run.pipeline import require_every_cae
    missing = [p for p in steps.processed_files(study, processed) if not p.exists()]
    if missing:
        raise build.BuildError(f"cleaned data missing ({_rel(missing[0])}): run 'make data-processed' first")
    cb = load_codebook(study.codebook)
    responses = indicators.load_responses(study, processed)
    require_every_cae(study, responses)
    result = indicators.estimate_study(responses, study, cb)
    git = git_state()
    return cb, result, {
        "published": os.environ.get("CAE_PUBLISH_DATE") or dt.date.today().isoformat(),
        "cleaned_data": cachemod.file_hashes(steps.processed_files(study, processed), processed),
        "git_commit": git.get("commit"), "git_dirty": git.get("dirty"),
    }


def cmd_publish_wave(args: argparse.Namespace) -> int:
    """Publish the figures a later wave compares with (:mod:`cae_impact.analysis.waves`), for every target.

    Estimates the study afresh from the cleaned data (as ``publish-reference``), then writes the
    total figures of each CAE and of the consortium, secrecy applied, to ``--to`` or
    ``data/reference/<study>/<wave>/wave.csv``, with ``wave.json`` (date, commit, digests,
    codebook version and indicator signatures).
    """
    from cae_impact.analysis import waves
    from cae_impact.run.pipeline import consortium_summary
    study, processed, reports = _ctx(args)
    path = Path(args.to) if args.to else waves.default_figures_path(study)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    if not inside(path, PROJECT_ROOT):
        raise build.BuildError(f"publish-wave: {path} is outside the project ({PROJECT_ROOT})")
    cb, result, source = _estimate_to_publish(study, processed)
    date = source["published"]
    waves.write_wave_figures(result.table, study, cb, path, consortium=consortium_summary(result.weighting),
                             source=source)
    print(f"==> figures of wave {study.wave} published to {_rel(path)} ({date}): a later wave compares "
          "with them (previous_waves in its study file)")
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    """Compute the wave's changes since its previous wave (reports/<wave>/_waves/)."""
    from cae_impact.analysis import waves

    study, processed, reports = _ctx(args)
    start = time.perf_counter()
    path = waves.run_changes(study, reports, processed)
    print(f"  [changes] {_rel(path)} in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def analysis_jobs(args: argparse.Namespace, study: StudyConfig, target: str) -> list[tuple[steps.Step, dict[str, str]]]:
    """The notebooks of a target's analysis, each with its parameters (:func:`cae_impact.run.steps.analysis_steps`).

    03 (every effect domain), then 04, then 05_evolution in a wave with a previous one.
    """
    common = build_parameters(study, args, target=target, reports_root=_rel(PROJECT_ROOT / args.reports_root))
    return [(s, {**common, **s.parameters}) for s in steps.analysis_steps(study, _roots(args), target) if s.notebook]


def cmd_analyse(args: argparse.Namespace) -> int:
    """Execute notebooks 03 (every effect domain) and 04 for one target, then its indicators."""
    import pandas as pd

    study, processed, reports = _ctx(args)
    target = args.target
    if target != CONSORTIUM:
        study.cae(target)
    target_dir = reports / study.wave / target
    if target == CONSORTIUM:
        require_complete_consortium(study, reports)
    # A new analysis makes the previous documents stale: remove them so nothing looks finished.
    for name in ("report.html", "report.pdf", "report.docx", "indicators.csv", "indicators.xlsx",
                 "indicateurs_excel.csv", "manifest.json"):
        (target_dir / name).unlink(missing_ok=True)
    failures = reports / study.wave / "_failures"
    jobs = analysis_jobs(args, study, target)
    nb_cache = _nb_cache(args, study, target)
    start = time.perf_counter()
    records = []
    for i, (step, params) in enumerate(jobs, 1):
        out = step.outputs[0]
        record = _run(step.notebook, out, params, target, failures, inputs=step.key_files(), code=step.code(),
                      cache=nb_cache)
        records.append(record)
        how = "cache hit" if record.cache_hit else "executed"
        _progress(study, "analyse", f"{target}: {out.name} ({i}/{len(jobs)}) {how} in {record.seconds:.1f} s")
    # The indicator tables depend on the target's estimates (and, in a later wave, its changes),
    # the codebook and their writers' code only (steps.analysis_steps): restored from the step
    # cache when those are unchanged (a markdown edit, a touch, another CAE's data).
    step = next(s for s in steps.analysis_steps(study, _roots(args), target) if s.kind == "indicators")
    rows_path, _ = target_files(study, reports, target)
    cached = _step_cache(args)
    tables = {p.name: p for p in step.outputs}
    change_files = list(step.inputs.get("changes", ()))
    key = key_of({"step": "indicators", "target": target, **step.fingerprint()})
    tables_hit = cached is not None and cached.get(key, tables)
    if not tables_hit:
        from cae_impact.render.tables_fr import write_indicator_files
        rows = pd.read_parquet(rows_path)
        if change_files:
            from cae_impact.analysis.waves import add_change_columns

            rows = add_change_columns(rows, pd.read_parquet(change_files[0]), target)
        write_indicator_files(rows, target_dir, load_codebook(study.codebook))
        if cached is not None:
            cached.put(key, tables)
    manifest.write_manifest(study, target, processed, reports, records, _runs_dir(study, reports),
                            notebooks_dir=_notebooks(args))
    hits = sum(r.cache_hit for r in records)
    print(f"  [analyse] {target}: done in {time.perf_counter() - start:.1f} s "
          f"({len(records) - hits} executed, {hits} from the cache"
          f"{'; indicator tables from the cache' if tables_hit else ''})", flush=True)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render one target's report documents (html from the notebooks; pdf and docx from html).

    ``--to`` names one or more formats; they are made in that order: html, pdf, docx (the Makefile
    asks for the three in one step). Each is cached by content: the key covers what the document
    is made from (the executed notebooks and the study's files for HTML, the HTML for PDF and
    DOCX), the code, and for HTML the production date printed on its cover.

    Run by the build's kernel server, a step that must render hands what is left over to a new
    child of the server that has imported the renderers (:func:`cae_impact.run.kernels.run_with`):
    the server imports them only for builds that render something.
    """
    study, processed, reports = _ctx(args)
    if args.target == CONSORTIUM:
        require_complete_consortium(study, reports)
    requested = [args.to] if isinstance(args.to, str) else list(args.to)
    formats = [fmt for fmt in ("html", "pdf", "docx") if fmt in requested]
    for i, fmt in enumerate(formats):
        code = _render_one(args, study, processed, reports, fmt, formats[i:])
        if code is not None:
            return code
    if (reports / study.wave / args.target / MANIFEST_NAME).exists():
        # the documents' digests, for make verify, and the steps that made them
        record_outputs(study, args.target, reports, steps.document_steps(study, _roots(args), args.target))
    return 0


def _global_argv(args: argparse.Namespace) -> list[str]:
    """The options before the sub-command that reproduce ``args`` (for a step handed over)."""
    argv = ["--study", str(args.study), "--processed-root", str(args.processed_root),
            "--reports-root", str(args.reports_root), "--notebooks-dir", str(args.notebooks_dir),
            "--cache-root", str(args.cache_root)]
    return [*argv, "--no-cache"] if args.no_cache else argv


def _render_one(args: argparse.Namespace, study: StudyConfig, processed: Path, reports: Path, fmt: str,
                remaining: list[str]) -> int | None:
    """Make one document (restored from the cache or rendered); an exit status if handed over."""
    target_dir = reports / study.wave / args.target
    html_path = target_dir / "report.html"
    start = time.perf_counter()
    step = next(s for s in steps.document_steps(study, _roots(args), args.target) if s.kind == fmt)
    if fmt == "html":
        nb_dir = target_dir / "notebooks"
        paths = [nb_dir / name for name in report.notebook_order(bool(study.previous_waves))]
        report.require_notebooks(paths)
        # The notebooks count by what reaches the report, not by their bytes.
        extra = {"date": str(report.production_date()), "target": args.target,
                 "report_cells": report.report_content_digest(paths)}
    else:
        extra = {}
    out = target_dir / f"report.{fmt}"
    cached = _step_cache(args)
    key = key_of({"step": f"render-{fmt}", **extra, **step.fingerprint()})
    hit = cached is not None and cached.get(key, {out.name: out})
    if not hit:
        code = kernels.run_with("render", [*_global_argv(args), "render", "--target", args.target,
                                           "--to", *remaining])
        if code is not None:
            return code
        if fmt == "html":
            report.render_html(paths, report.report_meta(study, args.target), html_path)
        elif fmt == "pdf":
            report.render_pdf(html_path, out)
        else:
            report.render_docx(html_path, out)
        if cached is not None:
            cached.put(key, {out.name: out})
    how = "cache hit" if hit else "rendered"
    print(f"  [render] {args.target}: report.{fmt} {how} in {time.perf_counter() - start:.1f} s", flush=True)
    return None


def cmd_index(args: argparse.Namespace) -> int:
    """Write reports/index.html listing every report of the wave with its formats."""
    study, processed, reports = _ctx(args)
    (reports / "index.html").unlink(missing_ok=True)  # written again only if nothing is found
    scan_published(study, processed, reports, args)
    path = write_index(study, reports)
    print(f"  [index] {_rel(path)}")
    missing = missing_targets(study)
    if missing:
        print(f"  [editorial] no editorial file (director's word, context, takeaways, funders) for "
              f"{len(missing)} target(s): {', '.join(missing)} — write "
              f"{_rel(editorial_path(study, missing[0]).parent)}/<target>.md (config/editorial/README.md)")
    return 0


def scan_published(study: StudyConfig, processed: Path, reports: Path, args: argparse.Namespace | None = None) -> None:
    """Search every published file of the wave for personal data; BuildError (saying where) if any.

    Everything under ``reports/<wave>/`` (HTML, PDF, DOCX, XLSX, CSV, executed notebooks,
    manifests) and ``data/processed/<wave>/``: any e-mail, phone or IP address, and every
    identifier, e-mail, phone and IP of the raw exports.
    """
    from cae_impact.clean.privacy_scan import collect_raw_identifiers, published_files, scan_tree

    start = time.perf_counter()
    folders = [reports / study.wave, processed / study.wave]
    needles = collect_raw_identifiers(study)
    findings = scan_tree(folders, needles, cache_dir=_cache_root(args) / "scan" if args is not None else None)
    n_files = len(published_files(folders))
    if findings:
        unique = list(dict.fromkeys((f.path, f.kind, f.value_hint) for f in findings))
        files = list(dict.fromkeys(p for p, _, _ in unique))
        print(f"  [scan] personal data found (données personnelles trouvées) in {len(files)} published "
              f"file(s):", file=sys.stderr)
        for path, kind, hint in unique[:50]:
            print(f"    {_rel(path)}: {kind} {hint}", file=sys.stderr)
        if len(unique) > 50:
            print(f"    … and {len(unique) - 50} more", file=sys.stderr)
        raise build.BuildError(
            f"personal data found in {len(files)} published file(s) of wave {study.wave} (first: "
            f"{_rel(files[0])}): nothing is published, reports/index.html is not written; find how it "
            "got there (a study label, a verbatim the masking missed) and rebuild")
    print(f"  [scan] no personal data in the {n_files} published files of wave {study.wave} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)


def cmd_build_summary(args: argparse.Namespace) -> int:
    """Say how many notebooks and targets failed in the last build; non-zero when any did."""
    study, processed, reports = _ctx(args)
    folder = reports / study.wave / "_failures"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            found.append({"target": path.stem.split("__")[0], "notebook": path.name, "error": "unreadable report"})
    # a record of a target no longer in the study (a CAE removed, a mistyped --cae) is stale
    known = {*study.targets, "study"}
    found = [f for f in found if f.get("target") in known]
    status = getattr(args, "status", 0) or 0
    if not found and status:
        print(f"==> build summary: the build FAILED (exit status {status}) outside any recorded step: "
              "see the error lines above", file=sys.stderr)
        return 1
    if not found:
        print(f"==> build summary: no failure ({len(study.targets)} targets of wave {study.wave})")
        return 0
    targets = sorted({f.get("target", "?") for f in found})
    n_steps = sum(str(f.get("notebook", "")).startswith("step ") for f in found)
    what = f"{len(found) - n_steps} notebook(s) failed" + (f", {n_steps} step(s) failed" if n_steps else "")
    print(f"==> build summary: {what} in {len(targets)} target(s) "
          f"({', '.join(targets)}); error reports in {_rel(folder)}/", file=sys.stderr)
    for f in found:
        cell = f" cell {f['cell_number']}" if f.get("cell_number") is not None else ""
        print(f"    {f.get('target')}: {f.get('notebook')}{cell}: {f.get('error')}", file=sys.stderr)
    return 1


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-execute without the cache, with fresh kernels, and compare with the build.

    For each target: the manifest's input hashes must match the files on disk (a tampered
    cleaned file or estimate fails here); every CAE is cleaned again from its raw export and the
    cleaned responses must hash as in the manifest; the estimation runs again; the target's
    notebooks are executed again, and indicators.csv must come out byte-identical.
    """
    import pandas as pd

    from cae_impact.render.tables_fr import write_indicator_files
    os.environ.pop(ENV_VAR, None)  # kernels are new processes here, never forked from a server
    study, processed, reports = _ctx(args)
    targets = [args.target] if args.target else study.targets
    problems: list[str] = []
    for target in targets:
        problems += [f"{target}: {p}" for p in manifest.check_manifest(study, target, processed, reports,
                                                                                      _notebooks(args))]
    if problems:  # the build's files do not match their manifest: no need to re-execute
        return _verify_result(problems, targets)
    scratch = Path(tempfile.mkdtemp(prefix="cae-impact-verify-"))
    try:
        s_proc, s_rep = scratch / "processed", scratch / "reports"
        vargs = argparse.Namespace(**{**vars(args), "processed_root": str(s_proc), "reports_root": str(s_rep)})
        failures = s_rep / study.wave / "_failures"
        start = time.perf_counter()
        for cae in study.caes:
            out = s_rep / study.wave / cae.id / "notebooks" / CLEANING_NB
            step = steps.clean_step(study, _roots(vargs), cae.id)
            _run(step.notebook, out, build_parameters(study, vargs, cae=cae.id), cae.id, failures,
                 inputs=step.key_files(), code=step.code())
            print(f"  [verify] {cae.id}: cleaned again ({time.perf_counter() - start:.0f} s)", flush=True)
        fresh_processed = manifest.hash_files(steps.processed_files(study, s_proc), s_proc)
        built_processed = manifest.hash_files(steps.processed_files(study, processed), processed)
        for name, digest in fresh_processed.items():
            if built_processed.get(name) != digest:
                problems.append(f"cleaning {name}: re-cleaned from the raw export, sha256 differs from the build's")
        nb, out, params = estimation_job(vargs, study, s_rep)
        _run(nb, out, params, STUDY_TARGET, failures, inputs=[])
        print(f"  [verify] estimated again ({time.perf_counter() - start:.0f} s)", flush=True)
        for target in targets:
            for step, params in analysis_jobs(vargs, study, target):
                _run(step.notebook, step.outputs[0], params, target, failures, inputs=[])
            tdir = s_rep / study.wave / target
            write_indicator_files(pd.read_parquet(target_files(study, s_rep, target)[0]), tdir)
            built = reports / study.wave / target / "indicators.csv"
            fresh = tdir / "indicators.csv"
            same = built.exists() and built.read_bytes() == fresh.read_bytes()
            if not same:
                problems.append(f"{target}: indicators.csv re-executed without the cache differs from the build's")
            print(f"  [verify] {target}: notebooks re-executed, indicators.csv "
                  f"{'identical' if same else 'DIFFERENT'} ({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _verify_result(problems, targets)


def _verify_result(problems: list[str], targets: list[str]) -> int:
    if problems:
        print(f"==> verify FAILED ({len(problems)} problem(s)):", file=sys.stderr)
        for p in problems:
            print(f"    {p}", file=sys.stderr)
        return 1
    print(f"==> verify OK: {', '.join(targets)} reproduced without the cache")
    return 0


def cmd_audit_secrecy(args: argparse.Namespace) -> int:
    """The linear-programming attack on every figure the wave publishes (non-zero if exposed)."""
    from cae_impact.run.pipeline import audit_published

    study, _processed, reports = _ctx(args)
    start = time.perf_counter()
    result = audit_published(study, reports)
    s = result.summary()
    print(f"  [secrecy] {s['hidden_counts']} hidden count(s) attacked with {s['linear_programs']} "
          f"linear programs in {time.perf_counter() - start:.1f} s: {s['pinned']} pinned, "
          f"{s['bounded_1_4']} bounded inside 1-4")
    if s["exposed"]:
        for r in result.exposed.head(20).itertuples():
            print(f"    {r.indicator_id} ({r.target}, {r.breakdown} {r.group} {r.category}): "
                  f"{r.count_min:.0f} to {r.count_max:.0f}", file=sys.stderr)
        print("==> secrecy audit FAILED: hidden counts can be recovered from the published files",
              file=sys.stderr)
        return 1
    if study.previous_waves:  # issue 18: the earlier waves' published figures, and the changes
        from cae_impact.analysis.waves import (
            audit_previous_wave,
            check_changes_from_published,
            load_wave_figures,
        )
        for prev in study.previous_waves:
            figures = load_wave_figures(prev.figures)
            s = audit_previous_wave(figures, load_codebook(study.codebook)).summary()
            print(f"  [secrecy] wave {prev.wave} ({_rel(prev.figures)}): {s['hidden_counts']} hidden count(s), "
                  f"{s['pinned']} pinned, {s['bounded_1_4']} bounded inside 1-4")
            if s["exposed"]:
                print(f"==> secrecy audit FAILED: the published figures of wave {prev.wave} expose hidden counts",
                      file=sys.stderr)
                return 1
        problems = check_changes_from_published(study, reports)
        if problems:
            for line in problems[:20]:
                print(f"    {line}", file=sys.stderr)
            print("==> secrecy audit FAILED: a change is not a difference of published figures", file=sys.stderr)
            return 1
        print(f"  [secrecy] changes since wave {study.previous_waves[-1].wave}: each a difference of two "
              "published figures, none where a level is hidden")
    print("==> secrecy audit OK: no hidden count can be pinned or bounded inside 1-4")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    """Check that the project kernel is installed in this environment."""
    interpreter = build.check_kernel()
    print(f"kernel {build.KERNEL_NAME!r} -> {interpreter}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a survey export before sending it (accounting, problems, unreadable answers)."""
    from cae_impact.clean.validate import main as main_validate

    argv = [args.export]
    if args.format:
        argv += ["--format", args.format]
    if args.mapping:
        argv += ["--mapping", args.mapping]
    return main_validate(argv)


def cmd_scan_personal_data(args: argparse.Namespace) -> int:
    """Search every built file for the raw exports' e-mails, phones, IPs and identifiers."""
    from cae_impact.clean.privacy_scan import collect_raw_identifiers, scan_tree

    study, processed, reports = _ctx(args)
    needles = collect_raw_identifiers(study)
    findings = scan_tree([processed, reports], needles)
    counts = ", ".join(f"{len(v)} {k}" for k, v in needles.items())
    print(f"  [scan] searched {processed} and {reports} for {counts} from the raw exports")
    for f in findings:
        print(f"  PERSONAL DATA: {f.kind} {f.value_hint} in {f.path}", file=sys.stderr)
    print(f"  [scan] {len(findings)} finding(s)")
    return 1 if findings else 0


def make_parser() -> argparse.ArgumentParser:
    """The command-line parser (sub-commands above)."""
    p = argparse.ArgumentParser(prog="cae-impact", description=__doc__.splitlines()[0])
    p.add_argument("--study", default="config/study.yaml", help="study configuration (default: %(default)s)")
    p.add_argument("--processed-root", default="data/processed", help="cleaned data root (default: %(default)s)")
    p.add_argument("--reports-root", default="reports", help="reports root (default: %(default)s)")
    p.add_argument("--notebooks-dir", default="notebooks", help="pipeline notebooks (default: %(default)s)")
    p.add_argument("--cache-root", default="build/cache", help="content-addressed cache (default: %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="execute everything (fresh kernels), cache untouched")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("make-include", help="print the study's Make variables").set_defaults(func=cmd_make_include)
    s = sub.add_parser("clean", help="execute notebook 01 (cleaning) for one CAE")
    s.add_argument("--cae", required=True)
    s.set_defaults(func=cmd_clean)
    sub.add_parser("estimate", help="estimate every indicator of every target").set_defaults(func=cmd_estimate)
    s = sub.add_parser("publish-reference", help="publish the consortium figures the CAE reports compare with")
    s.add_argument("--to", help="file to write (default: consortium_reference of the study file)")
    s.set_defaults(func=cmd_publish_reference)
    s = sub.add_parser("publish-wave", help="publish the figures a later wave compares with")
    s.add_argument("--to", default=None, help="file to write (default data/reference/<study>/<wave>/wave.csv)")
    s.set_defaults(func=cmd_publish_wave)
    sub.add_parser("changes", help="compute the changes since the previous wave").set_defaults(func=cmd_changes)
    s = sub.add_parser("analyse", help="execute notebooks 03 and 04 (and 05) for one target")
    s.add_argument("--target", required=True)
    s.set_defaults(func=cmd_analyse)
    s = sub.add_parser("render", help="render a target's report documents")
    s.add_argument("--target", required=True)
    s.add_argument("--to", choices=("html", "pdf", "docx"), nargs="+", required=True,
                   help="one or more formats (made in the order html, pdf, docx)")
    s.set_defaults(func=cmd_render)
    sub.add_parser("index", help="write reports/index.html").set_defaults(func=cmd_index)
    s = sub.add_parser("build-summary", help="count the failures of the last build")
    s.add_argument("--status", type=int, default=0, help="exit status of the build (non-zero: it failed)")
    s.set_defaults(func=cmd_build_summary)
    s = sub.add_parser("verify", help="re-execute without the cache and compare with the build")
    s.add_argument("--target", help="one target (default: every target)")
    s.set_defaults(func=cmd_verify)
    sub.add_parser("audit-secrecy", help="attack every published figure of the wave (linear programs)"
                   ).set_defaults(func=cmd_audit_secrecy)
    sub.add_parser("check-env", help="check the project kernel").set_defaults(func=cmd_check_env)
    sub.add_parser("scan-personal-data", help="search built files for personal data of the raw exports").set_defaults(
        func=cmd_scan_personal_data)
    s = sub.add_parser("validate", help="check a survey export before sending it")
    s.add_argument("export")
    s.add_argument("--format", choices=("limesurvey", "kobo", "googleforms", "spreadsheet"))
    s.add_argument("--mapping", help="column-mapping file (format spreadsheet)")
    s.set_defaults(func=cmd_validate)
    return p


BUILD_STEPS = ("clean", "estimate", "analyse", "render", "index", "publish-reference")
"""Commands the build runs: a failure of one of them is recorded for the build summary."""


def _step_record(args: argparse.Namespace) -> Path | None:
    """Where a build step's failure is recorded (``reports/<wave>/_failures/<who>__step-<cmd>.json``)."""
    if getattr(args, "command", None) not in BUILD_STEPS:
        return None
    try:
        study = load_study(args.study)
    except Exception:  # noqa: BLE001 - the study itself is what failed: record under the root
        folder = Path(args.reports_root)
        wave = None
    else:
        folder = Path(args.reports_root)
        wave = study.wave
    if not folder.is_absolute():
        folder = PROJECT_ROOT / folder
    who = getattr(args, "cae", None) or getattr(args, "target", None) or "study"
    base = folder / wave / "_failures" if wave else folder / "_failures"
    return base / f"{who}__step-{args.command}.json"


def _record_step_failure(args: argparse.Namespace, message: str) -> None:
    path = _step_record(args)
    if path is None:
        return
    who = getattr(args, "cae", None) or getattr(args, "target", None) or "study"
    try:
        _write_json(path, {"target": who, "notebook": f"step {args.command}", "cell_number": None,
                           "error": message, "traceback": ""})
    except OSError:
        pass  # the disk that failed the step may refuse this too: the message was printed


def _clear_step_failure(args: argparse.Namespace) -> None:
    path = _step_record(args)
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def describe_os_error(exc: OSError) -> str:
    """An OSError in words: the file, and the cause (disk full, permission, missing file)."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    causes = {errno.ENOSPC: "disque plein / no space left on device",
              errno.EDQUOT: "quota disque dépassé / disk quota exceeded",
              errno.EACCES: "permission refusée / permission denied",
              errno.EROFS: "système de fichiers en lecture seule / read-only file system",
              errno.ENOENT: "fichier introuvable / file not found"}
    cause = causes.get(exc.errno, exc.strerror or str(exc))
    return f"{cause}{where}"


KNOWN_NOTEBOOK_ERRORS = ("ExportError", "UnusableCaeError", "StudyConfigError", "EstimationError",
                         "InputLimitError")
"""Errors a notebook raises on purpose, with a located message: no traceback is shown for them."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; failures print a located message, not a traceback.

    A failure of a build step (:data:`BUILD_STEPS`) is also recorded under
    ``reports/<wave>/_failures/`` so that the build summary names it, whatever its cause (a
    notebook, an unusable CAE, a full disk, a personal-data finding).
    """
    args = make_parser().parse_args(argv)
    try:
        code = args.func(args)
    except build.NotebookFailure as failure:
        print(str(failure), file=sys.stderr)
        known = failure.error.split(":", 1)[0].strip() in KNOWN_NOTEBOOK_ERRORS
        if failure.traceback and not known:
            tail = "\n".join(failure.traceback.strip().splitlines()[-6:])
            print("  last lines of the traceback:\n" + "\n".join("    " + ln for ln in tail.splitlines()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ERROR: interrupted", file=sys.stderr)
        _record_step_failure(args, "interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure says what and where, no traceback
        from cae_impact.analysis.indicators import (
            EstimationError,  # imported here: it pulls pandas and scipy
        )
        from cae_impact.analysis.published import ReferenceError

        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            message = f"{args.command}: {describe_os_error(exc)}"
        elif isinstance(exc, (build.BuildError, StudyConfigError, FileNotFoundError, EstimationError,
                              ReferenceError)) or type(exc).__name__ in KNOWN_NOTEBOOK_ERRORS:
            message = str(exc)
        else:
            if os.environ.get("CAE_IMPACT_DEBUG"):
                raise
            message = (f"{args.command}: unexpected {type(exc).__name__}: {exc} "
                       "(set CAE_IMPACT_DEBUG=1 for the traceback)")
        print(f"ERROR: {message}", file=sys.stderr)
        _record_step_failure(args, message)
        return 2
    if code:
        _record_step_failure(args, f"{args.command} exited with status {code}")
    else:
        _clear_step_failure(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
