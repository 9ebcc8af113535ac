"""What the notebooks call: strict parameter validation, then each step's compute/show/save.

The three notebooks hold no logic. Each one validates its parameters here
(:func:`cleaning_context`, :func:`effect_context`, :func:`profile_context`: unknown or invalid
values raise :class:`ParameterError` naming the parameter and the allowed values), then calls
one function per step. ``run_*``/``analyse_*`` compute (through the tested modules: cleaning,
survey, indicators), ``show_*`` display what the report prints (through ``present``, ``charts``
and ``narrative``), ``save_*`` write the step's outputs atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .codebook import Codebook, load_codebook
from .config import CONSORTIUM, PROJECT_ROOT, CaeConfig, StudyConfig, StudyConfigError, load_study


class ParameterError(ValueError):
    """A notebook parameter is invalid; the message names it and what is allowed."""


def _path(value: object, name: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"parameter {name!r}: expected a non-empty path string, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _study(value: object) -> StudyConfig:
    path = _path(value, "study")
    try:
        return load_study(path)
    except StudyConfigError as exc:
        raise ParameterError(f"parameter 'study': {exc}") from exc


def _target(study: StudyConfig, value: object) -> str:
    if value not in study.targets:
        raise ParameterError(
            f"parameter 'target': {value!r} is not a target of {study.path.name}; "
            f"use one of: {', '.join(study.targets)}"
        )
    return str(value)


@dataclass(frozen=True)
class CleaningContext:
    """Validated parameters of notebook 01 (one CAE)."""

    study: StudyConfig
    codebook: Codebook
    cae: CaeConfig
    processed_dir: Path

    def _repr_html_(self) -> str:
        return f"<p>Nettoyage : {self.cae.label} ({self.cae.id}), export {self.cae.format}</p>"


@dataclass(frozen=True)
class TargetContext:
    """Validated parameters of notebooks 02 and 03 (one target; one domain for 02)."""

    study: StudyConfig
    codebook: Codebook
    target: str
    processed_root: Path
    reports_root: Path
    domain: str | None = None

    @property
    def is_consortium(self) -> bool:
        """True when the target is the whole consortium."""
        return self.target == CONSORTIUM

    @property
    def label(self) -> str:
        """French label of the target (« CAE 3 », « Consortium »)."""
        return self.study.target_label(self.target)

    @property
    def target_dir(self) -> Path:
        """``reports/<wave>/<target>/``."""
        return self.reports_root / self.study.wave / self.target

    def processed_path(self, cae_id: str) -> Path:
        """A CAE's cleaned responses."""
        return self.processed_root / self.study.wave / cae_id / "responses.parquet"

    def _repr_html_(self) -> str:
        dom = f", domaine {self.domain}" if self.domain else ""
        return f"<p>Cible : {self.label}{dom}</p>"


def cleaning_context(*, study: str, cae: str, processed_root: str) -> CleaningContext:
    """Validate notebook 01's parameters."""
    st = _study(study)
    if cae not in st.cae_ids:
        raise ParameterError(f"parameter 'cae': {cae!r} is not a CAE of {st.path.name}; use one of: {', '.join(st.cae_ids)}")
    root = _path(processed_root, "processed_root")
    return CleaningContext(st, load_codebook(st.codebook), st.cae(cae), root / st.wave / cae)


def _target_context(study: str, target: str, processed_root: str, reports_root: str, domain: str | None) -> TargetContext:
    st = _study(study)
    tgt = _target(st, target)
    cb = load_codebook(st.codebook)
    if domain is not None:
        ids = [d.id for d in cb.domains]
        if domain not in ids:
            raise ParameterError(f"parameter 'domain': {domain!r} is not an effect domain; use one of: {', '.join(ids)}")
    ctx = TargetContext(st, cb, tgt, _path(processed_root, "processed_root"), _path(reports_root, "reports_root"), domain)
    missing = [c for c in st.cae_ids if not ctx.processed_path(c).exists()]
    if missing:
        raise ParameterError(
            f"cleaned data missing for {', '.join(missing)} under {ctx.processed_root / st.wave}: "
            f"run 'make data-processed' (notebook 01) first"
        )
    return ctx


def effect_context(*, study: str, target: str, domain: str, processed_root: str, reports_root: str) -> TargetContext:
    """Validate notebook 02's parameters (a target and an effect domain)."""
    return _target_context(study, target, processed_root, reports_root, domain)


def profile_context(*, study: str, target: str, processed_root: str, reports_root: str) -> TargetContext:
    """Validate notebook 03's parameters (a target)."""
    return _target_context(study, target, processed_root, reports_root, None)
