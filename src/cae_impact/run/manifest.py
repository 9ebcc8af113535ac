"""Provenance: ``manifest.json`` beside each report, and its check.

``reports/<wave>/<target>/manifest.json`` records what the report was made from and how: for
every step it was made from (:mod:`cae_impact.run.steps`: each CAE's cleaning, the estimation, the
target's notebooks and tables, its documents), the sha256 of its input files, its code files
and their digest (what its cache key hashes, and what Make lists as its prerequisites); the
same inputs by role (raw exports, configuration, notebooks, cleaned responses, the target's
estimates, references...); the parameters, cache key, cache hit and execution time of each
notebook (and of each CAE's cleaning and the estimation), the git commit and whether the tree
was dirty, the Python and package versions, and the sha256 of ``requirements.lock``.

:func:`check_manifest` compares the manifest with the files on disk (``make verify`` uses it):
a tampered cleaned file or estimate is reported.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cae_impact.core.environment import git_state, package_versions
from cae_impact.core.files import write_atomic
from cae_impact.run import cache as cachemod
from cae_impact.run import steps
from cae_impact.run.steps import code_of, manifest_steps
from cae_impact.spec.config import PROJECT_ROOT, StudyConfig

MANIFEST_NAME = "manifest.json"
PACKAGES = ("pandas", "numpy", "scipy", "matplotlib", "pyarrow", "papermill", "nbclient", "nbconvert",
            "nbformat", "ipykernel", "jupyter-cache", "weasyprint", "pypandoc-binary", "samplics", "statsmodels")


def hash_files(paths: Iterable[Path], rel_to: Path) -> dict[str, str]:
    """``{path relative to rel_to: sha256}`` ("missing" for an absent file)."""
    return cachemod.file_hashes(paths, rel_to)


def _steps(study: StudyConfig, target: str, processed: Path, reports: Path, notebooks_dir: Path | None,
           documents: bool = False) -> list:
    """The steps the target's report is made from (:func:`cae_impact.run.steps.target_steps`)."""
    roots = steps.Roots(processed, reports, Path(notebooks_dir) if notebooks_dir else PROJECT_ROOT / "notebooks")
    return steps.target_steps(study, roots, target, documents=documents)


def input_files(study: StudyConfig, processed: Path, reports: Path,
                notebooks_dir: Path | None = None, target: str | None = None) -> dict[str, list[Path]]:
    """The input files of a target's report, by role: those of the steps it is made from."""
    target = target or study.targets[-1]
    return steps.inputs_by_role(_steps(study, target, processed, reports, notebooks_dir))


def _hash_roles(study: StudyConfig, target: str, processed: Path, reports: Path,
                notebooks_dir: Path | None) -> dict[str, dict[str, str]]:
    roles = input_files(study, processed, reports, notebooks_dir, target)
    return {role: hash_files(paths, PROJECT_ROOT) for role, paths in roles.items()}


def build_manifest(study: StudyConfig, target: str, processed: Path, reports: Path, records: list,
                   runs_dir: Path, notebooks_dir: Path) -> dict[str, Any]:
    """The manifest of a target's report (see the module's docstring)."""
    runs = {}
    for cae in study.cae_ids:
        path = runs_dir / f"clean__{cae}.json"
        if path.exists():
            runs[cae] = json.loads(path.read_text(encoding="utf-8"))
    estimate = runs_dir / "estimate.json"
    target_dir = reports / study.wave / target
    made_of = _steps(study, target, processed, reports, notebooks_dir)
    return {
        "schema": 1,
        "study": study.path.name,
        "wave": study.wave,
        "target": target,
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(PACKAGES),
        "code": {"requirements.lock": code_of(())["requirements.lock"]},
        "inputs": _hash_roles(study, target, processed, reports, notebooks_dir),
        "steps": manifest_steps(made_of),
        "cleaning": runs,
        "estimation": json.loads(estimate.read_text(encoding="utf-8")) if estimate.exists() else None,
        "notebooks": [r.as_dict() if hasattr(r, "as_dict") else r for r in records],
        "outputs": hash_files([target_dir / "indicators.csv"], target_dir),
        "environment": {k: os.environ.get(k) for k in ("PYTHONHASHSEED", "SOURCE_DATE_EPOCH")},
        "python_executable": sys.executable,
    }


def write_manifest(study: StudyConfig, target: str, processed: Path, reports: Path, records: list,
                   runs_dir: Path, notebooks_dir: Path) -> Path:
    """Write ``reports/<wave>/<target>/manifest.json`` atomically; return its path."""
    payload = build_manifest(study, target, processed, reports, records, runs_dir, notebooks_dir)
    path = reports / study.wave / target / MANIFEST_NAME
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


PUBLISHED_NAMES = ("report.html", "report.pdf", "report.docx", "indicators.csv", "indicators.xlsx")
"""The documents of a target, beside its manifest; with the executed notebooks (``notebooks/``)."""


def published_outputs(target_dir: Path) -> list[Path]:
    """Every published file of a target: its documents, tables and executed notebooks."""
    files = [target_dir / n for n in PUBLISHED_NAMES if (target_dir / n).is_file()]
    nb_dir = target_dir / "notebooks"
    if nb_dir.is_dir():
        files += sorted(p for p in nb_dir.glob("*.ipynb")
                        if not p.name.startswith(".") and not p.name.endswith(".FAILED.ipynb"))
    return files


def record_outputs(study: StudyConfig, target: str, reports: Path, documents: list | None = None) -> Path:
    """Put the sha256 of every published file of the target in its manifest (after rendering).

    ``make verify`` then fails on any changed, swapped, removed or added document. ``documents``:
    the steps that rendered them (:func:`cae_impact.run.steps.document_steps`), recorded with the others.
    """
    path = reports / study.wave / target / MANIFEST_NAME
    payload = json.loads(path.read_text(encoding="utf-8"))
    target_dir = path.parent
    payload["outputs"] = hash_files(published_outputs(target_dir), target_dir)
    if documents:
        payload.setdefault("steps", {}).update(manifest_steps(documents))
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def check_manifest(study: StudyConfig, target: str, processed: Path, reports: Path,
                   notebooks_dir: Path | None = None) -> list[str]:
    """Differences between a target's manifest and the files on disk (empty when consistent).

    Every input, and every published file of the target (:func:`published_outputs`): a changed
    or missing one, and one that is not in the manifest, are each named.
    """
    path = reports / study.wave / target / MANIFEST_NAME
    if not path.exists():
        return [f"{path}: no manifest (build the target first)"]
    recorded = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    now = _hash_roles(study, target, processed, reports, notebooks_dir)
    for role, files in recorded.get("inputs", {}).items():
        for name, digest in files.items():
            actual = now.get(role, {}).get(name, "missing")
            if actual != digest:
                problems.append(f"{role} file {name}: sha256 {actual[:12]} differs from the manifest's {digest[:12]}")
    target_dir = reports / study.wave / target
    outputs = recorded.get("outputs", {})
    for name, digest in outputs.items():
        actual = hash_files([target_dir / name], target_dir).get(name, "missing")
        if actual != digest:
            what = "missing" if actual == "missing" else f"sha256 {actual[:12]} differs from the manifest's {digest[:12]}"
            problems.append(f"output {target_dir / name}: {what}")
    for extra in published_outputs(target_dir):
        name = str(extra.resolve().relative_to(target_dir.resolve()))
        if name not in outputs:
            problems.append(f"output {extra}: published but not in the manifest (added or not built by this build)")
    return problems
