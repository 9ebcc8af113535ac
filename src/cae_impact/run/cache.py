"""Content-addressed execution: the build's notebook cache and step cache.

Design (issue 7, "fast, incremental, auditable builds"):

* **Notebook cache (jupyter-cache).** jupyter-cache hashes a notebook's code cells (source and
  *all* cell metadata) and its kernelspec, never its markdown and never data files. Before a
  notebook is looked up or executed, the build writes a *fingerprint* of everything the
  notebook reads into the metadata of its ``parameters`` cell (key ``cae_impact_inputs``):
  the sha256 of its input files and a digest of its own code (the modules of ``src/`` it
  imports, transitively, and the files they read), both declared once per step in
  :mod:`cae_impact.run.steps`, and the sha256 of ``requirements.lock``. papermill then injects the parameters (their values are in
  the injected cell's source, hence in the key too). The fingerprint is not a parameter: the
  build refuses undeclared parameters, and metadata is what jupyter-cache already hashes.
  The executed notebook is normalised (per-run timings removed) before it is cached, so the
  same work gives the same key; a markdown-only edit hits, and the new markdown is merged
  into the cached outputs without starting a kernel.
* **Files a notebook writes** (the cleaning step's ``responses.parquet``, quarantine and log)
  are cached as jupyter-cache *artifacts* of the executed notebook and restored on a hit.
* **Step cache.** Steps that are not notebooks (estimation, HTML/PDF/DOCX rendering) are keyed
  by the sha256 of their input files and their code (:mod:`cae_impact.run.steps`); their outputs are stored under
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
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import nbformat

from cae_impact.core.files import sha256_file
from cae_impact.core.paths import PROJECT_ROOT
from cae_impact.core.paths import relative_path as _rel
from cae_impact.run.normalise import normalise_notebook

FINGERPRINT_KEY = "cae_impact_inputs"
_CHUNK = 1 << 20





_FILE_SHA: dict[tuple[str, int, int], str] = {}


_RESOLVED: dict[str, Path] = {}


def resolved(p: Path | str) -> Path:
    """``Path(p).resolve()``, memoised in this process (a step's process: its paths do not move).

    A national build's manifests name every CAE's files for every target: at 160 CAEs a step
    resolved about 22,000 paths (1 s of a manifest's 1.3 s).
    """
    key = str(p)
    out = _RESOLVED.get(key)
    if out is None:
        out = _RESOLVED[key] = Path(p).resolve()
    return out


def _file_sha(p: Path) -> str:
    """sha256 of a file, memoised in this process by path, size and modification time.

    A step fingerprints the same inputs for each of its notebooks (an analysis: 8 times the
    estimates and every CAE's cleaned data); a rewritten file has a new mtime, so a new digest.
    """
    try:
        st = p.stat()
    except FileNotFoundError:
        return "missing"
    key = (str(resolved(p)), st.st_size, st.st_mtime_ns)
    if key not in _FILE_SHA:
        _FILE_SHA[key] = sha256_file(p)
    return _FILE_SHA[key]


def file_hashes(paths: Iterable[Path], rel_to: Path = PROJECT_ROOT) -> dict[str, str]:
    """``{relative path: sha256}`` for files (``"missing"`` for an absent one), sorted."""
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        try:
            name = str(resolved(p).relative_to(rel_to))
        except ValueError:
            name = str(resolved(p))
        out[name] = _file_sha(p)
    return dict(sorted(out.items()))


def fingerprint(inputs: Iterable[Path], code: dict[str, str]) -> dict[str, Any]:
    """Everything a step's result depends on beyond a notebook's cells and parameters.

    The sha256 of its input files, and ``code``: the digest of the step's own code and the
    sha256 of ``requirements.lock`` (:meth:`cae_impact.run.steps.Step.code`).
    """
    return {"files": file_hashes(inputs), **code}


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

    loaded = load_notebook_node(copy.deepcopy(nb))  # what papermill.execute_notebook does first
    pnb = parameterize_notebook(loaded, parameters, False, kernel_name=kernel_name, language=None, engine_name=None)
    return normalise_notebook(pnb)  # the same metadata as the normalised executed notebook


def say(message: str) -> None:
    """A line of the build output about the cache (stderr: it is about the build, not the report)."""
    print(f"  [cache] {message}", file=sys.stderr, flush=True)


class CacheDamaged(Exception):
    """A cache entry whose files do not match the digests recorded when it was stored."""


class NotebookCache:
    """A jupyter-cache store for one target (or one CAE's cleaning), with an inter-process lock.

    Every stored notebook and artifact carries its sha256 (``digests/<hashkey>.json``, written
    when it is stored), checked when it is restored: a damaged or unverifiable entry is
    discarded and the notebook executed again, with a line in the build output. A damaged
    database (truncated, not SQLite) is rebuilt empty; if it cannot be, the cache is bypassed.
    """

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

    def _digest_file(self, hashkey: str) -> Path:
        return self.path / "digests" / f"{hashkey}.json"

    def _rebuild(self, exc: BaseException) -> None:
        """Move the damaged database aside and remove it: the next store starts a new one."""
        say(f"jupyter-cache database {_rel(self.path / 'jc')} damaged ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''}): rebuilt empty, the notebook runs again")
        for folder in (self.path / "jc", self.path / "digests"):
            if folder.exists():
                aside = folder.with_name(f"{folder.name}.damaged-{os.getpid()}")
                try:
                    folder.rename(aside)
                    shutil.rmtree(aside, ignore_errors=True)
                except OSError:
                    shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def key(nb: nbformat.NotebookNode) -> str:
        """The jupyter-cache hash key of a (parameterised) notebook (no database touched)."""
        from jupyter_cache.cache.main import JupyterCacheBase

        return JupyterCacheBase("/nonexistent").create_hashed_notebook(nb)[1]

    def _verified_entry(self, cache, pk: int) -> tuple[str, list[tuple[str, bytes]]]:
        """The entry's hashkey and artifact bytes, after checking every file against its digest."""
        record = cache.get_cache_record(pk)
        hashkey = record.hashkey
        digests_path = self._digest_file(hashkey)
        if not digests_path.is_file():
            raise CacheDamaged("no digest recorded for the entry")
        try:
            digests = json.loads(digests_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CacheDamaged(f"digest file unreadable ({type(exc).__name__})") from exc
        nb_path = cache._get_notebook_path_cache(hashkey)
        if not nb_path.is_file() or sha256_file(nb_path) != digests.get("notebook"):
            raise CacheDamaged("cached notebook changed or missing")
        art_dir = cache._get_artifact_path_cache(hashkey)
        recorded = digests.get("artifacts", {})
        found = sorted(p.relative_to(art_dir).as_posix() for p in art_dir.rglob("*") if p.is_file()) \
            if art_dir.exists() else []
        if sorted(recorded) != found:
            raise CacheDamaged(f"cached files {found} differ from those recorded {sorted(recorded)}")
        artifacts = []
        for rel in found:
            data = (art_dir / rel).read_bytes()
            if hashlib.sha256(data).hexdigest() != recorded[rel]:
                raise CacheDamaged(f"cached file {rel}: sha256 differs from the one recorded")
            artifacts.append((rel, data))
        return hashkey, artifacts

    def lookup(self, nb: nbformat.NotebookNode, artifacts_to: Path | None = None) -> nbformat.NotebookNode | None:
        """The executed notebook for ``nb`` (its markdown merged in), or None on a miss.

        With ``artifacts_to``, the files cached with the notebook are restored there (each
        written under a temporary name and renamed); a hit without them counts as a miss.
        Every file is checked against its digest first: a damaged entry is discarded (a miss).
        """
        try:
            with self._cache() as cache:
                try:
                    pk = cache.match_cache_notebook(nb).pk
                except KeyError:
                    return None
                try:
                    hashkey, artifacts = self._verified_entry(cache, pk)
                    _, merged = cache.merge_match_into_notebook(
                        nb, nb_meta=("kernelspec", "language_info", "widgets", "papermill"))
                except (CacheDamaged, KeyError, ValueError, OSError) as exc:
                    say(f"damaged entry in {_rel(self.path)} discarded ({exc}); the notebook runs again")
                    with contextlib.suppress(Exception):
                        cache.remove_cache(pk)
                    with contextlib.suppress(Exception):
                        self._digest_file(cache.get_cache_record(pk).hashkey).unlink()
                    return None
                if artifacts_to is not None:
                    if not artifacts:
                        return None
                    artifacts_to.mkdir(parents=True, exist_ok=True)
                    for rel, data in artifacts:
                        dest = artifacts_to / rel
                        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
                        tmp.write_bytes(data)
                        tmp.replace(dest)
        except Exception as exc:  # noqa: BLE001 - a damaged database: rebuilt, never a traceback
            if isinstance(exc, OSError) and exc.errno in (28, 122):  # full disk: not the cache's fault
                raise
            with contextlib.suppress(Exception), locked(self.path):
                self._rebuild(exc)
            return None
        # papermill's metadata of the cached run, but the parameters of this request
        merged.metadata.setdefault("papermill", {})
        if "papermill" in nb.metadata:
            merged.metadata["papermill"]["parameters"] = nb.metadata["papermill"].get("parameters", {})
        return merged

    def store(self, executed: nbformat.NotebookNode, artifacts: list[Path] = (), in_folder: Path | None = None) -> str:
        """Cache a (normalised) executed notebook and the files it wrote; return its key.

        The sha256 of the stored notebook and of each artifact are recorded beside the entry.
        A damaged database is rebuilt and the store tried again; if it still fails, the cache
        is bypassed (said in the build output) and the build goes on.
        """
        for attempt in (1, 2):
            try:
                return self._store(executed, artifacts, in_folder)
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, OSError) and exc.errno in (28, 122):
                    raise  # full disk: the step fails and says so
                if attempt == 1:
                    with locked(self.path):
                        self._rebuild(exc)
                    continue
                say(f"{_rel(self.path)}: cannot store in the notebook cache ({type(exc).__name__}: {exc}); "
                    "cache bypassed for this notebook")
        return self.key(executed)

    def _store(self, executed: nbformat.NotebookNode, artifacts, in_folder) -> str:
        from jupyter_cache.base import CacheBundleIn
        from jupyter_cache.cache.main import NbArtifacts

        bundle = CacheBundleIn(
            nb=copy.deepcopy(executed), uri="build",
            artifacts=NbArtifacts([str(p) for p in artifacts], in_folder=in_folder) if artifacts else None,
        )
        with self._cache() as cache:
            record = cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
            hashkey = record.hashkey
            art_dir = cache._get_artifact_path_cache(hashkey)
            digests = {
                "notebook": sha256_file(cache._get_notebook_path_cache(hashkey)),
                "artifacts": {p.relative_to(art_dir).as_posix(): sha256_file(p)
                              for p in sorted(art_dir.rglob("*")) if p.is_file()} if art_dir.exists() else {},
            }
            dpath = self._digest_file(hashkey)
            dpath.parent.mkdir(parents=True, exist_ok=True)
            tmp = dpath.with_name(f".{dpath.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(digests, sort_keys=True), encoding="utf-8")
            tmp.replace(dpath)
            return hashkey


# ---------------------------------------------------------------------------- step cache


DIGESTS_NAME = "_digests.json"


class StepCache:
    """Outputs of a non-notebook step stored by key: ``<root>/<key>/<name>``.

    Each entry records the sha256 of its files (``_digests.json``); :meth:`get` checks every
    file against it while copying it back. A damaged entry (a file changed, truncated, missing,
    or no digests) is discarded with a line in the build output, and the step runs again.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _discard(self, key: str, why: str) -> None:
        say(f"damaged step-cache entry {key[:12]} discarded ({why}); the step runs again")
        entry = self.root / key
        aside = self.root / f".{key}.damaged-{os.getpid()}"
        try:
            entry.rename(aside)
            shutil.rmtree(aside, ignore_errors=True)
        except OSError:
            shutil.rmtree(entry, ignore_errors=True)

    def get(self, key: str, outputs: dict[str, Path]) -> bool:
        """Copy the cached outputs to their places (atomically, each verified); False on a miss."""
        entry = self.root / key
        if not entry.is_dir():
            return False
        try:
            digests = json.loads((entry / DIGESTS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._discard(key, "no readable digests")
            return False
        if not all((entry / name).is_file() for name in outputs):
            missing = [n for n in outputs if not (entry / n).is_file()]
            self._discard(key, f"missing {', '.join(missing)}")
            return False
        staged: list[tuple[Path, Path]] = []
        ok = False
        try:
            for name, dest in outputs.items():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
                staged.append((tmp, dest))
                h = hashlib.sha256()
                with open(entry / name, "rb") as src, open(tmp, "wb") as out:
                    for block in iter(lambda: src.read(_CHUNK), b""):
                        h.update(block)
                        out.write(block)
                if digests.get(name) != h.hexdigest():
                    self._discard(key, f"{name}: sha256 differs from the one recorded")
                    return False
            ok = True
        finally:
            if not ok:
                for tmp, _ in staged:
                    tmp.unlink(missing_ok=True)
        for tmp, dest in staged:
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
        digests = {}
        for name, src in outputs.items():
            shutil.copyfile(src, tmp / name)
            digests[name] = sha256_file(tmp / name)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
            digests[name] = sha256_file(tmp / name)
        (tmp / DIGESTS_NAME).write_text(json.dumps(digests, sort_keys=True), encoding="utf-8")
        try:
            tmp.rename(entry)
        except OSError:  # another process stored it first
            shutil.rmtree(tmp, ignore_errors=True)

    def get_dir(self, key: str, dest: Path) -> bool:
        """Restore every file stored by :meth:`put_dir` into ``dest``; False on a miss."""
        entry = self.root / key
        names_file = entry / "_names.json"
        if not entry.is_dir():
            return False
        try:
            names = json.loads(names_file.read_text(encoding="utf-8"))
            digests = json.loads((entry / DIGESTS_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._discard(key, "no readable list of files or digests")
            return False
        if sha256_file(names_file) != digests.get("_names.json"):
            self._discard(key, "_names.json: sha256 differs from the one recorded")
            return False
        return self.get(key, {n: Path(dest) / n for n in names})

    def put_dir(self, key: str, src: Path) -> None:
        """Store every (non-hidden) file of ``src`` under ``key``."""
        files = {p.name: p for p in sorted(Path(src).iterdir()) if p.is_file() and not p.name.startswith(".")}
        self._store(key, files, {"_names.json": json.dumps(sorted(files))})
