"""Content-addressed execution: the build's notebook cache and step cache.

Design (issue 7, "fast, incremental, auditable builds"):

* **Notebook cache (jupyter-cache).** jupyter-cache hashes a notebook's code cells (source and
  *all* cell metadata) and its kernelspec, never its markdown and never data files. Before a
  notebook is looked up or executed, the build writes a *fingerprint* of everything the
  notebook reads into the metadata of its ``parameters`` cell (key ``cae_impact_inputs``):
  the sha256 of its input files (for cleaning: the CAE's raw export, mapping, the study
  configuration and codebook; for analysis: the study estimates, weighting report, every
  cleaned file, the national references), a digest of every file under ``src/`` and the
  sha256 of ``requirements.lock``. papermill then injects the parameters (their values are in
  the injected cell's source, hence in the key too). The fingerprint is not a parameter: the
  build refuses undeclared parameters, and metadata is what jupyter-cache already hashes.
  The executed notebook is normalised (per-run timings removed) before it is cached, so the
  same work gives the same key; a markdown-only edit hits, and the new markdown is merged
  into the cached outputs without starting a kernel.
* **Files a notebook writes** (the cleaning step's ``responses.parquet``, quarantine and log)
  are cached as jupyter-cache *artifacts* of the executed notebook and restored on a hit.
* **Step cache.** Steps that are not notebooks (estimation, HTML/PDF/DOCX rendering) are keyed
  by the sha256 of their input files and the code; their outputs are stored under
  ``<cache>/steps/<key>/`` and copied back on a hit. A ``git checkout`` that changes no
  content makes Make re-run the recipes (timestamps), and every recipe is then a hit.
* **Concurrency.** jupyter-cache's SQLite does not tolerate concurrent writers. There is one
  cache per target (``<cache>/nb/<wave>/<target>/``), and only that target's recipe writes it;
  every access also holds an exclusive ``fcntl`` lock on ``<cache folder>/.lock``, so two
  builds running at once are still safe. Step-cache entries are written to a temporary folder
  and renamed into place (atomic; the first writer wins).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import nbformat

from .config import PROJECT_ROOT

FINGERPRINT_KEY = "cae_impact_inputs"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    """The sha256 of a text (UTF-8, hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tree_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
        and not p.name.startswith(".")
    )


def tree_digest(root: Path) -> str:
    """One digest of every file under ``root`` (relative path and content), caches excluded."""
    h = hashlib.sha256()
    for p in _tree_files(root):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


_CODE: dict[str, str] | None = None


def code_fingerprint() -> dict[str, str]:
    """Digest of ``src/`` (every file) and sha256 of ``requirements.lock`` (memoised)."""
    global _CODE
    if _CODE is None:
        src = Path(__file__).resolve().parent.parent  # src/
        lock = PROJECT_ROOT / "requirements.lock"
        _CODE = {
            "src": tree_digest(src),
            "requirements.lock": sha256_file(lock) if lock.exists() else "missing",
        }
    return dict(_CODE)


_FILE_SHA: dict[tuple[str, int, int], str] = {}


def _file_sha(p: Path) -> str:
    """sha256 of a file, memoised in this process by path, size and modification time.

    A step fingerprints the same inputs for each of its notebooks (an analysis: 8 times the
    estimates and every CAE's cleaned data); a rewritten file has a new mtime, so a new digest.
    """
    try:
        st = p.stat()
    except FileNotFoundError:
        return "missing"
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        _FILE_SHA[key] = sha256_file(p)
    return _FILE_SHA[key]


def file_hashes(paths: Iterable[Path], rel_to: Path = PROJECT_ROOT) -> dict[str, str]:
    """``{relative path: sha256}`` for files (``"missing"`` for an absent one), sorted."""
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        try:
            name = str(p.resolve().relative_to(rel_to))
        except ValueError:
            name = str(p.resolve())
        out[name] = _file_sha(p)
    return dict(sorted(out.items()))


def fingerprint(inputs: Iterable[Path]) -> dict[str, Any]:
    """Everything a notebook's result depends on beyond its code and parameters."""
    return {"files": file_hashes(inputs), **code_fingerprint()}


def key_of(obj: Any) -> str:
    """A stable sha256 of a JSON-able object."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str))


# ---------------------------------------------------------------------------- locking


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """An exclusive inter-process lock on ``folder/.lock`` (held for the block)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- notebook cache


def prepare_notebook(source: Path | nbformat.NotebookNode, inputs_fp: dict[str, Any]) -> nbformat.NotebookNode:
    """The source notebook with the input fingerprint in its ``parameters`` cell's metadata."""
    nb = nbformat.read(source, as_version=4) if isinstance(source, (str, Path)) else copy.deepcopy(source)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            cell.metadata[FINGERPRINT_KEY] = inputs_fp
            break
    else:  # no parameters cell: the first code cell carries it
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.metadata[FINGERPRINT_KEY] = inputs_fp
                break
    return nb


def parameterised(nb: nbformat.NotebookNode, parameters: dict[str, Any], kernel_name: str) -> nbformat.NotebookNode:
    """The notebook as papermill will execute it (parameters injected), for hashing."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from .build import normalise_notebook

    loaded = load_notebook_node(copy.deepcopy(nb))  # what papermill.execute_notebook does first
    pnb = parameterize_notebook(loaded, parameters, False, kernel_name=kernel_name, language=None, engine_name=None)
    return normalise_notebook(pnb)  # the same metadata as the normalised executed notebook


class NotebookCache:
    """A jupyter-cache store for one target (or one CAE's cleaning), with an inter-process lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _cache(self):
        from jupyter_cache import get_cache

        with locked(self.path):
            cache = get_cache(self.path / "jc")
            try:
                yield cache
            finally:
                if cache._db is not None:
                    cache._db.dispose()

    @staticmethod
    def key(nb: nbformat.NotebookNode) -> str:
        """The jupyter-cache hash key of a (parameterised) notebook (no database touched)."""
        from jupyter_cache.cache.main import JupyterCacheBase

        return JupyterCacheBase("/nonexistent").create_hashed_notebook(nb)[1]

    def lookup(self, nb: nbformat.NotebookNode, artifacts_to: Path | None = None) -> nbformat.NotebookNode | None:
        """The executed notebook for ``nb`` (its markdown merged in), or None on a miss.

        With ``artifacts_to``, the files cached with the notebook are restored there (each
        written under a temporary name and renamed); a hit without them counts as a miss.
        """
        with self._cache() as cache:
            try:
                pk, merged = cache.merge_match_into_notebook(
                    nb, nb_meta=("kernelspec", "language_info", "widgets", "papermill"))
            except KeyError:
                return None
            if artifacts_to is not None:
                bundle = cache.get_cache_bundle(pk)
                arts = list(bundle.artifacts.relative_paths) if bundle.artifacts else []
                if not arts:
                    return None
                artifacts_to.mkdir(parents=True, exist_ok=True)
                for rel, handle in bundle.artifacts:
                    dest = artifacts_to / rel
                    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
                    tmp.write_bytes(handle.read())
                    tmp.replace(dest)
        # papermill's metadata of the cached run, but the parameters of this request
        merged.metadata.setdefault("papermill", {})
        if "papermill" in nb.metadata:
            merged.metadata["papermill"]["parameters"] = nb.metadata["papermill"].get("parameters", {})
        return merged

    def store(self, executed: nbformat.NotebookNode, artifacts: list[Path] = (), in_folder: Path | None = None) -> str:
        """Cache a (normalised) executed notebook and the files it wrote; return its key."""
        from jupyter_cache.base import CacheBundleIn
        from jupyter_cache.cache.main import NbArtifacts

        bundle = CacheBundleIn(
            nb=copy.deepcopy(executed), uri="build",
            artifacts=NbArtifacts([str(p) for p in artifacts], in_folder=in_folder) if artifacts else None,
        )
        with self._cache() as cache:
            record = cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            return record.hashkey


# ---------------------------------------------------------------------------- step cache


class StepCache:
    """Outputs of a non-notebook step stored by key: ``<root>/<key>/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def get(self, key: str, outputs: dict[str, Path]) -> bool:
        """Copy the cached outputs to their places (atomically); False on a miss."""
        entry = self.root / key
        if not all((entry / name).is_file() for name in outputs):
            return False
        for name, dest in outputs.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
            shutil.copyfile(entry / name, tmp)
            tmp.replace(dest)
        return True

    def put(self, key: str, outputs: dict[str, Path]) -> None:
        """Store the outputs under ``key`` (temporary folder renamed; the first writer wins)."""
        self._store(key, outputs)

    def _store(self, key: str, outputs: dict[str, Path], extra: dict[str, str] | None = None) -> None:
        entry = self.root / key
        if entry.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, src in outputs.items():
            shutil.copyfile(src, tmp / name)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        try:
            tmp.rename(entry)
        except OSError:  # another process stored it first
            shutil.rmtree(tmp, ignore_errors=True)

    def get_dir(self, key: str, dest: Path) -> bool:
        """Restore every file stored by :meth:`put_dir` into ``dest``; False on a miss."""
        entry = self.root / key
        names_file = entry / "_names.json"
        if not names_file.is_file():
            return False
        names = json.loads(names_file.read_text(encoding="utf-8"))
        return self.get(key, {n: Path(dest) / n for n in names})

    def put_dir(self, key: str, src: Path) -> None:
        """Store every (non-hidden) file of ``src`` under ``key``."""
        files = {p.name: p for p in sorted(Path(src).iterdir()) if p.is_file() and not p.name.startswith(".")}
        self._store(key, files, {"_names.json": json.dumps(sorted(files))})
