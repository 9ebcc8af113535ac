"""Notebook execution for the build: the project kernel, papermill, failures that say where.

Every notebook of the pipeline is executed here, by papermill, with the project's own kernel
(``cae-impact``, installed inside ``.venv``). This module makes three promises:

* the kernel that runs a notebook is the project's: its interpreter must live in this
  environment, so a stray per-user kernel of the same name cannot hijack the build;
* an executed notebook is written under a temporary name and renamed only when every cell ran;
  a failed run is kept as ``<name>.FAILED.ipynb`` for inspection, never under the final name;
* a failure raises :class:`NotebookFailure`, whose message names the target (CAE or
  consortium), the notebook and the cell (its number in the source notebook and first line).

Executed notebooks are normalised (per-run timings removed) so that the same inputs give the
same notebook, byte for byte.
"""

from __future__ import annotations

import atexit
import copy
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import nbformat

from cae_impact.core.files import atomic_write, write_atomic
from cae_impact.run import cache as cachemod
from cae_impact.run import kernels
from cae_impact.run.normalise import normalise_notebook
from cae_impact.run.steps import notebook_code

KERNEL_NAME = "cae-impact"
_IPC_ROOT: Path | None = None


def _ipc_root() -> Path:
    """A private folder for this process's kernel sockets, removed when the process ends."""
    global _IPC_ROOT
    if _IPC_ROOT is None:
        _IPC_ROOT = Path(tempfile.mkdtemp(prefix="cae-impact-kernels-"))
        atexit.register(shutil.rmtree, _IPC_ROOT, True)
    return _IPC_ROOT


def _ipc_kernel_manager_class():
    """A kernel manager talking to the kernel over Unix sockets instead of TCP ports.

    Parallel builds (``make -j``) start many kernels at once; with TCP, jupyter_client picks
    free ports and then binds them, and two kernels can race for the same port ("Address
    already in use", kernel dead). IPC sockets live in a private folder per kernel: no race,
    and nothing listens on the network.
    """
    from jupyter_client.manager import AsyncKernelManager

    counter = itertools.count()

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs["transport"] = "ipc"
            kwargs.setdefault("client_class", "cae_impact.run.execute.ReadyKernelClient")
            super().__init__(**kwargs)
            self.ip = str(_ipc_root() / f"k{os.getpid()}-{next(counter)}")

        async def _async_pre_start_kernel(self, **kw: Any):
            # With a kernel server running (make reports), the kernel is forked from it
            # (see cae_impact.run.kernels); otherwise it is started as a new process.
            if os.environ.get(kernels.ENV_VAR):
                kernels.install_provisioner(self)
            return await super()._async_pre_start_kernel(**kw)

    return IPCKernelManager


def _ready_client_class():
    from jupyter_client.asynchronous import AsyncKernelClient

    class ReadyKernelClient(AsyncKernelClient):
        """jupyter_client's client, without the fixed 0.2 s wait that ends ``wait_for_ready``.

        ``wait_for_ready`` (jupyter_client 8) asks for kernel_info until it is answered and
        IOPub delivers, then drains IOPub by waiting 0.2 s for a message that never comes:
        0.2 s of idle time for every notebook (71 in the demo build, against ~1 s of work
        each). nbclient reads only the IOPub messages answering its own requests, so what
        has already arrived is drained without waiting. The readiness checks are
        jupyter_client's, unchanged.
        """

        async def wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.time() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    msg = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    pass
                else:
                    if msg["msg_type"] == "kernel_info_reply":
                        try:  # IOPub connected?
                            await self.iopub_channel.get_msg(timeout=0.2)
                        except Empty:
                            pass
                        else:
                            self._handle_kernel_info_reply(msg)
                            break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.time() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
            while True:  # drain what IOPub already holds, without waiting for more
                try:
                    await self.iopub_channel.get_msg(timeout=0)
                except Empty:
                    break

    return ReadyKernelClient


def __getattr__(name: str) -> Any:
    # ReadyKernelClient is built on first use: importing this module must not import
    # jupyter_client (the CLI imports it for commands that start no kernel).
    if name == "ReadyKernelClient":
        cls = _ready_client_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


class BuildError(RuntimeError):
    """The build cannot run (environment, kernel, configuration)."""


@dataclass
class NotebookFailure(RuntimeError):
    """A notebook failed while executing for a target."""

    target: str
    notebook: str
    cell_number: int | None
    cell_first_line: str
    error: str
    traceback: str
    failed_copy: Path | None

    def __str__(self) -> str:
        where = f"cell {self.cell_number}" if self.cell_number is not None else "before any cell ran"
        if self.cell_first_line:
            where += f" ({self.cell_first_line!r})"
        copy = f"\n  executed copy kept for inspection: {self.failed_copy}" if self.failed_copy else ""
        return (
            f"FAILED target={self.target} notebook={self.notebook} {where}\n"
            f"  {self.error}{copy}"
        )


def check_kernel(kernel_name: str = KERNEL_NAME) -> Path:
    """Return the project kernel's interpreter, or raise BuildError if it is not this venv's.

    The kernelspec is resolved as Jupyter resolves it (JUPYTER_PATH, then the user's folder,
    then this environment's), so that a per-user kernel shadowing ours is detected.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as exc:
        raise BuildError(
            f"Jupyter kernel {kernel_name!r} is not installed: run 'make env' "
            f"(it registers the kernel inside .venv)"
        ) from exc
    interpreter = Path(spec.argv[0])
    ours = Path(sys.prefix).resolve()
    try:
        interpreter.resolve().relative_to(ours)
        inside = True
    except ValueError:
        inside = Path(os.path.abspath(interpreter)).is_relative_to(Path(sys.prefix).absolute())
    if not inside:
        raise BuildError(
            f"Jupyter kernel {kernel_name!r} resolves to {spec.resource_dir} whose interpreter "
            f"{interpreter} is outside this environment ({sys.prefix}). Remove the stray kernel "
            f"('jupyter kernelspec remove {kernel_name}') or run the build through 'make', which "
            f"sets JUPYTER_PATH to the project's environment."
        )
    return interpreter


def _first_line(source: str) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line[:80]
    return source.strip().splitlines()[0][:80] if source.strip() else ""


def _locate_failure(nb: nbformat.NotebookNode) -> tuple[int | None, str, str, str]:
    """Find the failing cell: its number in the source notebook, first line, error, traceback."""
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        injected = "injected-parameters" in tags
        if not injected:
            number += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                error = f"{out.get('ename')}: {out.get('evalue')}"
                tb = "\n".join(out.get("traceback", []))
                label = number if not injected else None
                return label, _first_line(cell.source), error, tb
    return None, "", "the kernel died or the execution timed out", ""


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], **kwargs: Any) -> float:
    """Execute ``notebook`` with papermill into ``output``; return the time it took in seconds.

    Same arguments as :func:`execute_notebook_node`, which also returns the executed notebook.
    """
    return execute_notebook_node(notebook, output, parameters, **kwargs)[1]


def execute_notebook_node(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    target: str,
    cwd: Path | None = None,
    kernel_name: str = KERNEL_NAME,
    timeout: int = 600,
    source_nb: nbformat.NotebookNode | None = None,
) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``notebook`` with papermill into ``output``; return it (normalised) and the time.

    Raises :class:`NotebookFailure` when a cell fails: the partial notebook is kept as
    ``<output stem>.FAILED.ipynb`` and ``output`` itself is removed, so nothing looks finished.
    ``source_nb``, when given, is executed instead of reading ``notebook`` (the build passes the
    source with its input fingerprint in the parameters cell's metadata); ``notebook`` still
    names it in messages.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    check_kernel(kernel_name)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp-{os.getpid()}.ipynb")
    failed_copy = output.with_name(f"{output.stem}.FAILED.ipynb")
    for stale in (output, failed_copy):
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        executed = pm.execute_notebook(
            copy.deepcopy(source_nb) if source_nb is not None else str(notebook),
            str(tmp),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(cwd or notebook.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            kernel_manager_class=_ipc_kernel_manager_class(),
            # Written once at the end (and on failure), not after every cell.
            request_save_on_cell_execute=False,
            # Every output has arrived when the last cell is done: the kernel is stopped at
            # once rather than asked to quit and polled every 0.1 s until it has.
            shutdown_kernel="immediate",
            # No IPython history database: parallel kernels would all write to one SQLite file.
            extra_arguments=["--HistoryManager.enabled=False"],
        )
    except PapermillExecutionError:
        nb = nbformat.read(tmp, as_version=4)
        number, first, error, tb = _locate_failure(nb)
        nbformat.write(normalise_notebook(nb), failed_copy)
        tmp.unlink(missing_ok=True)
        raise NotebookFailure(
            target, notebook.name, number, first, _strip_ansi(error), _strip_ansi(tb), failed_copy
        ) from None
    except Exception as exc:  # kernel death, timeout, missing kernel: still say where
        if tmp.exists():
            tmp.replace(failed_copy)
        raise NotebookFailure(
            target, notebook.name, None, "", f"{type(exc).__name__}: {exc}", "",
            failed_copy if failed_copy.exists() else None,
        ) from exc
    # papermill wrote the executed notebook to tmp and returned it: normalised and written
    # again over it, without reading it back.
    nb = normalise_notebook(executed)
    nbformat.write(nb, tmp)
    tmp.replace(output)
    return nb, time.perf_counter() - start


def write_failure_report(failure: NotebookFailure, path: Path) -> None:
    """Write a short error report (target, notebook, cell, traceback) as JSON beside the build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "target": failure.target,
        "notebook": failure.notebook,
        "cell_number": failure.cell_number,
        "cell_first_line": failure.cell_first_line,
        "error": failure.error,
        "traceback": failure.traceback,
        "failed_copy": str(failure.failed_copy) if failure.failed_copy else None,
    }
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------- cached execution


@dataclass
class RunRecord:
    """One notebook of the build: what ran, with which key, and how long it took."""

    notebook: str
    output: str
    parameters: dict[str, Any]
    cache_key: str
    cache_hit: bool
    seconds: float
    inputs: dict[str, Any]
    kernel: str = "none (cache hit)"

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-able data (for the manifest)."""
        return {
            "notebook": self.notebook, "output": self.output, "parameters": self.parameters,
            "cache_key": self.cache_key, "cache_hit": self.cache_hit,
            "seconds": round(self.seconds, 3), "kernel": self.kernel, "inputs": self.inputs,
        }


def kernel_start_mode() -> str:
    """How the next kernel starts: forked from the build's kernel server, or a new process."""
    return "forked from the kernel server" if os.environ.get(kernels.ENV_VAR) else "new process"


def notebook_key(notebook: Path, parameters: dict[str, Any], inputs: list[Path],
                 kernel_name: str = KERNEL_NAME, code: dict[str, str] | None = None) -> str:
    """The cache key :func:`run_notebook` uses for this notebook, parameters, inputs and code."""
    fp = cachemod.fingerprint(inputs, code if code is not None else notebook_code(notebook))
    source = cachemod.prepare_notebook(notebook, fp)
    return cachemod.NotebookCache.key(cachemod.parameterised(source, parameters, kernel_name))


def run_notebook(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    target: str,
    inputs: list[Path],
    cache: Any | None = None,
    artifacts_dir: Path | None = None,
    artifact_names: tuple[str, ...] = (),
    cwd: Path | None = None,
    kernel_name: str = KERNEL_NAME,
    lookup: bool = True,
    code: dict[str, str] | None = None,
) -> RunRecord:
    """Execute ``notebook`` into ``output`` through the content-addressed cache.

    The key covers the code cells, the injected parameters and the fingerprint of ``inputs``
    and ``code``: the step's code and ``requirements.lock`` (:meth:`cae_impact.run.steps.Step.code`;
    by default, the code the notebook's cells import). On a hit no kernel starts:
    the cached outputs are merged with the current source's markdown and the files the notebook
    wrote (``artifact_names`` in ``artifacts_dir``) are restored. ``cache=None`` always executes
    (fresh kernel), as ``make verify`` does. ``lookup=False`` executes even when the cache holds
    the notebook, and stores it (the estimation step: its files were not restored, so the
    notebook that writes them must run).
    """
    start = time.perf_counter()
    fp = cachemod.fingerprint(inputs, code if code is not None else notebook_code(notebook))
    source = cachemod.prepare_notebook(notebook, fp)
    hashable = cachemod.parameterised(source, parameters, kernel_name)
    key = cachemod.NotebookCache.key(hashable)
    output = Path(output)
    if cache is not None and lookup:
        merged = cache.lookup(hashable, artifacts_to=artifacts_dir if artifact_names else None)
        if merged is not None:
            output.with_name(f"{output.stem}.FAILED.ipynb").unlink(missing_ok=True)
            done = normalise_notebook(merged)
            atomic_write(output, lambda tmp: nbformat.write(done, tmp))
            return RunRecord(notebook.name, str(output), parameters, key, True, time.perf_counter() - start, fp)
    mode = kernel_start_mode()
    executed, _ = execute_notebook_node(notebook, output, parameters, target=target, cwd=cwd,
                                        kernel_name=kernel_name, source_nb=source)
    if cache is not None:
        arts = [artifacts_dir / n for n in artifact_names] if artifacts_dir else []
        stored = cache.store(executed, arts, artifacts_dir)
        if stored != key:  # would mean normalisation misses something: never hit, say so
            print(f"  [cache] warning: {target} {notebook.name}: stored key {stored[:12]} != {key[:12]}",
                  file=sys.stderr)
    return RunRecord(notebook.name, str(output), parameters, key, False, time.perf_counter() - start, fp, mode)
