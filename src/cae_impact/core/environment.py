"""What produced a file: the git state of the project and the installed package versions."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cae_impact.core.paths import PROJECT_ROOT


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit of the working tree and whether it has uncommitted changes (None outside git)."""
    def run(*cmd: str) -> str | None:
        try:
            res = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def package_versions(names: Iterable[str], missing: str | None = None) -> dict[str, str | None]:
    """The installed version of each package (``missing`` when it is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = missing
    return out
