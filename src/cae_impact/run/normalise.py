"""Executed notebooks without per-run noise, so identical work gives identical files and cache keys.

Shared by the execution (:mod:`cae_impact.run.execute`) and the cache's keys
(:mod:`cae_impact.run.cache`), which must normalise a notebook the same way.
"""

from __future__ import annotations

import nbformat

_VOLATILE_NB_KEYS = ("papermill",)
_VOLATILE_CELL_KEYS = ("papermill", "execution")


def normalise_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove per-run metadata (timings, durations) so identical work gives identical files.

    papermill and nbclient write start/end times into notebook and cell metadata; the
    parameters papermill injected are kept (they are provenance, not noise).
    """
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict):
        kept = {k: pm[k] for k in ("parameters", "default_parameters") if k in pm}
        kept["kernel_name"] = pm.get("kernel_name")
        nb.metadata["papermill"] = kept
    for cell in nb.cells:
        for key in _VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"  # papermill gives it a random id each run
    return nb
