"""The ``cae-impact`` command: the steps the Makefile runs, and the tools CAE staff use.

Build steps (called by ``make``; each writes its outputs atomically):

* ``make-include``  print the Make variables of the study (wave, CAEs, their raw files);
* ``clean --cae C``  execute notebook 01 for one CAE (cleaned data under data/processed/);
* ``analyse --target T``  execute notebooks 02 (one per effect domain) and 03 for a target;
* ``render --target T --to html|pdf|docx``  render a target's report document;
* ``index``  write reports/index.html.

Tools: ``validate EXPORT`` checks a survey export before it is sent; ``check-env`` checks the
project kernel.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import build
from .indicators import EstimationError
from .config import CONSORTIUM, PROJECT_ROOT, StudyConfig, StudyConfigError, load_study

CLEANING_NB = "01_cleaning.ipynb"
EFFECT_NB = "02_effect.ipynb"
PROFILE_NB = "03_profile.ipynb"


def _rel(path: Path) -> str:
    """A path relative to the project root when inside it (what notebooks receive)."""
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(Path(path).resolve())


def _ctx(args: argparse.Namespace) -> tuple[StudyConfig, Path, Path]:
    study = load_study(args.study)
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
    from .codebook import load_codebook

    return [d.id for d in load_codebook(study.codebook).domains]


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


def _run(notebook: Path, output: Path, params: dict[str, str], target: str, failures_dir: Path) -> float:
    _check_declared(notebook, params)
    try:
        return build.execute_notebook(notebook, output, params, target=target, cwd=notebook.parent)
    except build.NotebookFailure as failure:
        build.write_failure_report(failure, failures_dir / f"{target}__{notebook.stem}.json")
        raise


def cmd_make_include(args: argparse.Namespace) -> int:
    """Print Make variables for the study: WAVE, CAES, TARGETS and each CAE's input files."""
    study = load_study(args.study)
    lines = [
        f"# generated from {_rel(study.path)} by 'cae-impact make-include'; do not edit",
        f"WAVE := {study.wave}",
        f"CAES := {' '.join(study.cae_ids)}",
        f"TARGETS := {' '.join(study.targets)}",
    ]
    for cae in study.caes:
        deps = [_rel(cae.export)] + ([_rel(cae.mapping)] if cae.mapping else [])
        lines.append(f"DEPS_{cae.id} := {' '.join(deps)}")
    print("\n".join(lines))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Execute the cleaning notebook for one CAE."""
    study, processed, reports = _ctx(args)
    cae = study.cae(args.cae)
    out = reports / study.wave / cae.id / "notebooks" / CLEANING_NB
    params = build_parameters(study, args, cae=cae.id)
    t = _run(_notebooks(args) / CLEANING_NB, out, params, cae.id, reports / study.wave / "_failures")
    print(f"  [clean] {cae.id} ({cae.label}): {CLEANING_NB} in {t:.1f} s")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    """Estimate every indicator of every target (study-wide disclosure control)."""
    from .pipeline import run_estimation

    study, processed, reports = _ctx(args)
    start = time.perf_counter()
    path = run_estimation(study, processed, reports)
    print(f"  [estimate] {_rel(path)} in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    """Execute notebooks 02 (each effect domain) and 03 for one target, then its indicators."""
    import pandas as pd

    from .indicators import report_table, write_indicator_files
    from .pipeline import ESTIMATES_FILE, study_dir

    study, processed, reports = _ctx(args)
    target = args.target
    if target != CONSORTIUM:
        study.cae(target)
    target_dir = reports / study.wave / target
    nb_dir = target_dir / "notebooks"
    # A new analysis makes the previous documents stale: remove them so nothing looks finished.
    for name in ("report.html", "report.pdf", "report.docx", "indicators.csv", "indicators.xlsx"):
        (target_dir / name).unlink(missing_ok=True)
    failures = reports / study.wave / "_failures"
    common = build_parameters(study, args, target=target, reports_root=_rel(PROJECT_ROOT / args.reports_root))
    domains = _domain_ids(study)
    jobs = [(_notebooks(args) / EFFECT_NB, nb_dir / f"02_effect_{d}.ipynb", {**common, "domain": d}) for d in domains]
    jobs.append((_notebooks(args) / PROFILE_NB, nb_dir / PROFILE_NB, common))
    start = time.perf_counter()
    for i, (nb, out, params) in enumerate(jobs, 1):
        t = _run(nb, out, params, target, failures)
        print(f"  [analyse] {target}: {out.name} ({i}/{len(jobs)}) in {t:.1f} s")
    estimates = pd.read_parquet(study_dir(study, reports) / ESTIMATES_FILE)
    write_indicator_files(report_table(estimates, target, study.report.fdr_alpha), target_dir)
    print(f"  [analyse] {target}: done in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render one target's report document (html from the notebooks; pdf and docx from html)."""
    from . import report

    study, processed, reports = _ctx(args)
    target_dir = reports / study.wave / args.target
    html_path = target_dir / "report.html"
    if args.to == "html":
        nb_dir = target_dir / "notebooks"
        paths = [nb_dir / name for name in report.notebook_order(_domain_ids(study))]
        report.render_html(paths, report.report_meta(study, args.target), html_path)
    elif args.to == "pdf":
        report.render_pdf(html_path, target_dir / "report.pdf")
    else:
        report.render_docx(html_path, target_dir / "report.docx")
    print(f"  [render] {args.target}: report.{args.to}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    """Write reports/index.html listing every report of the wave with its formats."""
    from .index import write_index

    study, processed, reports = _ctx(args)
    path = write_index(study, reports)
    print(f"  [index] {_rel(path)}")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    """Check that the project kernel is installed in this environment."""
    interpreter = build.check_kernel()
    print(f"kernel {build.KERNEL_NAME!r} -> {interpreter}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a survey export before sending it (accounting and every problem found)."""
    from .cleaning import main_validate

    argv = [args.export]
    if args.format:
        argv += ["--format", args.format]
    if args.mapping:
        argv += ["--mapping", args.mapping]
    return main_validate(argv)


def make_parser() -> argparse.ArgumentParser:
    """The command-line parser (sub-commands above)."""
    p = argparse.ArgumentParser(prog="cae-impact", description=__doc__.splitlines()[0])
    p.add_argument("--study", default="config/study.yaml", help="study configuration (default: %(default)s)")
    p.add_argument("--processed-root", default="data/processed", help="cleaned data root (default: %(default)s)")
    p.add_argument("--reports-root", default="reports", help="reports root (default: %(default)s)")
    p.add_argument("--notebooks-dir", default="notebooks", help="pipeline notebooks (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("make-include", help="print the study's Make variables").set_defaults(func=cmd_make_include)
    s = sub.add_parser("clean", help="execute notebook 01 (cleaning) for one CAE")
    s.add_argument("--cae", required=True)
    s.set_defaults(func=cmd_clean)
    sub.add_parser("estimate", help="estimate every indicator of every target").set_defaults(func=cmd_estimate)
    s = sub.add_parser("analyse", help="execute notebooks 02 and 03 for one target")
    s.add_argument("--target", required=True)
    s.set_defaults(func=cmd_analyse)
    s = sub.add_parser("render", help="render a target's report")
    s.add_argument("--target", required=True)
    s.add_argument("--to", choices=("html", "pdf", "docx"), required=True)
    s.set_defaults(func=cmd_render)
    sub.add_parser("index", help="write reports/index.html").set_defaults(func=cmd_index)
    sub.add_parser("check-env", help="check the project kernel").set_defaults(func=cmd_check_env)
    s = sub.add_parser("validate", help="check a survey export before sending it")
    s.add_argument("export")
    s.add_argument("--format", choices=("limesurvey", "kobo", "googleforms", "spreadsheet"))
    s.add_argument("--mapping", help="column-mapping file (format spreadsheet)")
    s.set_defaults(func=cmd_validate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a sub-command; known failures print a located message, not a traceback."""
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except build.NotebookFailure as failure:
        print(str(failure), file=sys.stderr)
        if failure.traceback:
            tail = "\n".join(failure.traceback.strip().splitlines()[-6:])
            print("  last lines of the traceback:\n" + "\n".join("    " + ln for ln in tail.splitlines()), file=sys.stderr)
        return 1
    except (build.BuildError, StudyConfigError, FileNotFoundError, EstimationError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
