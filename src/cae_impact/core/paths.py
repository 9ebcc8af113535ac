"""The project root, and paths as the build writes them (relative to it when inside)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""The repository: ``src/cae_impact/core/paths.py`` is three folders below it."""


def relative_path(path: Path | str, root: Path = PROJECT_ROOT) -> str:
    """``path`` relative to ``root`` when inside it (what notebooks and records show), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(Path(path).resolve())
