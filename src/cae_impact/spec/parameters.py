"""The notebooks' parameters: each checked, an invalid one named with what is allowed.

Moved here from :mod:`cae_impact.run.pipeline` so that every layer that validates a
notebook's parameters (the pipeline, the audit of the estimation, the evolution section) shares
one :class:`ParameterError` without importing the build.
"""

from __future__ import annotations

from pathlib import Path

from cae_impact.core.paths import PROJECT_ROOT
from cae_impact.spec.config import StudyConfig, StudyConfigError, load_study


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
