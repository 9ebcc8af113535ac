"""What each build step reads: the files whose content keys its cache entry and its manifest.

Moved out of :mod:`cae_impact.run.cli` so that the manifest (which records their sha256)
does not import the command line.
"""

from __future__ import annotations

from pathlib import Path

from cae_impact.core.paths import PROJECT_ROOT
from cae_impact.spec.config import CONSORTIUM, StudyConfig
from cae_impact.spec.layout import (
    editorial_path,
    meta_path,
    study_dir,
    target_change_file,
    target_files,
)


def clean_inputs(study: StudyConfig, cae_id: str) -> list[Path]:
    """What notebook 01 reads for a CAE: its export (and mapping), the study and the codebook."""
    cae = study.cae(cae_id)
    return [cae.export, *([cae.mapping] if cae.mapping else []), study.path, study.codebook]


def processed_files(study: StudyConfig, processed: Path) -> list[Path]:
    """Every CAE's cleaned responses."""
    return [processed / study.wave / c / "responses.parquet" for c in study.cae_ids]


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


def estimate_inputs(study: StudyConfig, processed: Path) -> list[Path]:
    """What the estimation reads: every CAE's cleaned responses, the study, the codebook, the reference."""
    return [*processed_files(study, processed), study.path, study.codebook, *reference_files(study)]


def study_files(study: StudyConfig, reports: Path) -> list[Path]:
    """The study-wide estimation outputs (estimates, weighting, design)."""
    sdir = study_dir(study, reports)
    if not sdir.exists():
        return []
    return sorted(p for p in sdir.iterdir() if p.is_file() and not p.name.startswith("."))


def analyse_inputs(study: StudyConfig, processed: Path, reports: Path, target: str) -> list[Path]:
    """What notebooks 03, 04 (and 05) read for a target.

    Its estimates and weighting (:func:`cae_impact.spec.layout.target_files`), the study, the
    codebook, the national references. Nothing of another CAE for a CAE compared with a published consortium reference: a change
    to another CAE's data leaves the key, and the executed notebooks, as they were.
    """
    # A CAE's chapters quote its cleaned free answers (verbatims); « La CAE en bref » prints the
    # context of its editorial file; a later wave reads its changes since the previous one.
    # The chapters' evidence recomputes a headline figure from the cleaned data: the CAE's, or
    # every CAE's for the consortium.
    own = [processed / study.wave / c / "responses.parquet" for c in ([target] if target != CONSORTIUM
                                                                      else study.cae_ids)]
    folder = target_change_file(study, reports, target).parent
    changes = [target_change_file(study, reports, target), folder / "waves.json", folder / "comparability.csv",
               folder / "trend.parquet"] if study.previous_waves else []
    return [*target_files(study, reports, target), *changes, study.path, study.codebook, *external_files(),
            *own, editorial_path(study, target)]


def render_inputs(study: StudyConfig, processed: Path, reports: Path, target: str) -> list[Path]:
    """What the HTML report reads beyond its notebooks.

    The analysis inputs, and the cleaning logs and cleaned responses (verbatims) of its CAEs:
    all of them for the consortium, or for a CAE compared with the live consortium (its
    provenance annex lists every export).
    """
    own = target != CONSORTIUM and study.consortium_reference is not None
    caes = [target] if own else study.cae_ids
    cleaned = [processed / study.wave / c / name for c in caes for name in ("cleaning_log.json", "responses.parquet")]
    return [*analyse_inputs(study, processed, reports, target), *cleaned]
