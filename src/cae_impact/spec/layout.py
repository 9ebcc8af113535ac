"""Where the estimation step writes what the reports read (``reports/<wave>/_study/``).

Shared by the build (which writes these files), the audit of the estimation and the annexes
(which read them), and the waves (which compare them).
"""

from __future__ import annotations

from pathlib import Path

from cae_impact.core.paths import PROJECT_ROOT
from cae_impact.spec.config import StudyConfig

ESTIMATES_FILE = "estimates.parquet"
WEIGHTING_FILE = "weighting.json"
WAVES_DIR = "_waves"
WAVES_INFO_FILE = "waves.json"  # the waves compared, CAEs that joined or left, linked respondents
META_SUFFIX = ".json"
CHANGES_FILE = ".changes.json"
"""What changed in each report's files at the last estimation (the build says why it re-executes)."""


def study_dir(study: StudyConfig, reports_root: Path) -> Path:
    """``reports/<wave>/_study/``: the study-wide estimates every report is drawn from."""
    return reports_root / study.wave / "_study"


def target_files(study: StudyConfig, reports_root: Path, target: str) -> tuple[Path, Path]:
    """What one report reads of the estimation: its rows, and its sample and weighting.

    ``report__<target>.parquet`` (tests adjusted) and ``context__<target>.json``. A CAE's files hold its own figures and the consortium figures it is compared with, nothing
    of the other CAEs: with a published consortium reference, another CAE's new data leave
    them byte-identical, so the CAE's notebooks are not executed again (cache hit).
    """
    folder = study_dir(study, reports_root)
    return folder / f"report__{target}.parquet", folder / f"context__{target}.json"


def meta_path(path: Path) -> Path:
    """The JSON description beside a published CSV (the consortium reference, a wave's figures)."""
    return path.with_suffix(META_SUFFIX)


def waves_dir(study: StudyConfig, reports_root: Path) -> Path:
    """``reports/<wave>/_waves/``."""
    return Path(reports_root) / study.wave / WAVES_DIR


def target_change_file(study: StudyConfig, reports_root: Path, target: str) -> Path:
    """A report's change rows (its tests corrected together): ``_waves/changes__<target>.parquet``."""
    return waves_dir(study, reports_root) / f"changes__{target}.parquet"


def change_inputs(study: StudyConfig) -> list[Path]:
    """The previous waves' published files a wave's changes read."""
    out = []
    for p in study.previous_waves:
        out += [p.figures, meta_path(p.figures)]
    return out


def editorial_path(study: StudyConfig, target: str) -> Path:
    """Where the editorial file of a target of this study's wave is (whether it exists or not)."""
    base = getattr(study, "editorial_dir", None) or PROJECT_ROOT / "config" / "editorial"
    return Path(base) / str(study.wave) / f"{target}.md"
