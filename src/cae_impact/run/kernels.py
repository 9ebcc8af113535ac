"""Warm kernels: a fork server that starts the project kernel in milliseconds.

Why. A notebook of the pipeline does about one second of work, but a fresh kernel costs
2.5-3 s before its first cell: the interpreter starts, ipykernel and IPython are imported,
then the first cells import pandas, scipy, matplotlib, seaborn and this package. With 71
notebook executions in the demo study, that start-up was two thirds of the build.

How. A *kernel server* (``python -m cae_impact.run serve SOCKET``) is started once per
build. It imports those libraries (what the build's steps need first, then, while no request
waits, what only kernels need), and waits on a Unix socket. For each kernel asked for,
it forks: the child is a brand-new ipykernel process (new session, working directory and
environment of the request, its own sockets and connection file), started from an
interpreter in which nothing but imports has happened. No notebook code ever runs in the
server, and no kernel is reused for a second notebook: each notebook still gets a kernel of
its own, as with papermill's default launcher.

The build uses it when the environment variable ``CAE_IMPACT_KERNEL_SERVER`` names the
server's socket (``make reports`` does this, through :func:`run_with_server`); otherwise the
kernel is started the usual way. ``make verify`` always starts fresh kernels, and a test
checks that the pipeline's notebooks come out identical either way.

The same server also runs the build's own steps (``python -m cae_impact.run client --
ARGS`` runs ``cae_impact.run.cli ARGS`` in a process forked from it, with the caller's standard
streams, working directory and environment, and returns its exit status): each Make recipe
then costs milliseconds of start-up instead of the 2-4 s of importing pandas, scipy,
papermill, nbconvert and WeasyPrint again. Without a server, the client runs the command in
its own process, exactly as ``python -m cae_impact.run.cli ARGS``.

This is a hand-written piece because nothing in the Jupyter stack does it: jupyter_client
launches every kernel with ``subprocess.Popen``; its *kernel provisioner* interface is the
documented extension point for launching kernels differently, and that is what
:class:`ForkProvisioner` implements (``multiprocessing``'s forkserver cannot hand its children
to another process's kernel manager).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cae_impact.run import codegraph

ENV_VAR = "CAE_IMPACT_KERNEL_SERVER"

# What a notebook of the pipeline imports (directly or through cae_impact.run.pipeline), in the
# order a fresh kernel would import it. Only imports: no module here runs notebook code.
PRELOAD = (
    "IPython",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    # What ipykernel imports while a kernel initialises (its debugger imports debugpy and
    # pydevd: 0.15 s), measured by diffing sys.modules around IPKernelApp.initialize().
    "ipykernel.debugger",
    "ipykernel.zmqshell",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.utils.wildcard",
    "sqlite3",
    "tornado.gen",
    "tornado.locks",
    "tornado.queues",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "scipy.stats",
    "matplotlib",
    "matplotlib.pyplot",
    "seaborn",
    "yaml",
    "cae_impact.run.pipeline",
    "cae_impact.render.chapters",
    "cae_impact.render.charts",
    "cae_impact.render.narrative",
    "cae_impact.render.present",
    "cae_impact.render.profile",
    "cae_impact.analysis.indicators",
    "cae_impact.clean.cleaning",
    "cae_impact.clean.schema",  # pandera: 1 s to import
    "cae_impact.ingest",
    "openpyxl",
)
# What the build's steps import besides, when they find their outputs in the cache (papermill,
# the cache): loaded before the first step is served. Not cae_impact.analysis.indicators (scipy.stats,
# 0.9 s): an analysis imports it only when its indicator tables are not in the cache.
PRELOAD_COMMANDS = (
    "cae_impact.run.cli",
    "cae_impact.run.execute",
    "cae_impact.run.cache",
    "cae_impact.run.manifest",
    "cae_impact.render.report",
    "cae_impact.render.index",
    "cae_impact.run.pipeline",
    "papermill",
    "nbclient",
    "jupyter_client.manager",
    "jupyter_cache",
    # Imported on first use inside the steps (measured by diffing sys.modules around each
    # step): jupyter-cache's database layer (SQLAlchemy and its SQLite dialect, 0.4 s), the
    # package versions of the manifest.
    "jupyter_cache.base",
    "jupyter_cache.cache.main",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "sqlalchemy.orm",
    "importlib_metadata",
    "importlib_metadata._adapters",
    "zipp",
    "email.policy",
    "sqlite3",
    "pandas.core.methods.to_dict",
)
# What a step that renders a document, or writes indicator tables, imports besides (nbconvert
# and its markdown renderer, the charts and matplotlib for the annexes, WeasyPrint and the image
# plugins it opens, pandoc's wrapper, the Excel and parquet writers: 1.5-2 s). Imported only
# when a step needs them (see serve), so a build whose documents are all in the cache does not
# wait for them.
PRELOAD_RENDER = (
    "nbconvert",
    "mistune.plugins.def_list",
    "mistune.plugins.task_lists",
    "mistune.plugins.url",
    "weasyprint",
    "openpyxl",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
    "pandas.core.arrays.arrow.extension_types",
    "pandas.io.formats.excel",
    "pandas.io.formats.csvs",
    "openpyxl.packaging.extended",
    "jinja2.ext",
    "pygments.styles.default",
    "PIL.ImageFont",
    "PIL.JpegImagePlugin",
    "PIL.PngImagePlugin",
    "PIL.GifImagePlugin",
    "PIL.BmpImagePlugin",
    "PIL.PpmImagePlugin",
    "PIL.ImageChops",
    "PIL.ImageSequence",
    "PIL.features",
    "pypandoc",
    "matplotlib",
    "cae_impact.render.charts",
    "cae_impact.render.chapters",
    "cae_impact.render.narrative",
    "cae_impact.clean.cleaning",
    "cae_impact.privacy.personal_data",
    "cae_impact.render.annexes",
)
PRELOAD_GROUPS = {"render": PRELOAD_RENDER}


def _warm_up() -> None:
    """Build, once in the server, what every step would otherwise build for itself."""
    try:  # the parse of the package's sources for the steps' code (cae_impact.run.codegraph): 0.4 s
        codegraph.package_graph()
    except Exception:  # only slower without it
        pass
    try:
        from nbformat.validator import get_validator

        for minor in (4, 5):  # compiling the notebook JSON schema: 0.15 s per process
            get_validator(version=4, version_minor=minor)
    except Exception:  # only slower without it
        pass


# ---------------------------------------------------------------------------- the server


def _preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # an optional module missing only makes kernels slower, never wrong
            failed.append(name)
    return failed


def _launcher_index(argv: list[str]) -> int:
    """Where ``-m ipykernel_launcher`` is in a kernel command (-1 when it is not there)."""
    for i in range(1, len(argv) - 1):
        if argv[i] == "-m" and argv[i + 1] == "ipykernel_launcher":
            return i
    return -1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (``PR_SET_PDEATHSIG``).

    A kernel is in a session of its own (signals meant for it must not reach the server), so
    a ``kill -9`` of the build's process group does not reach it: without this, a killed
    build left its running kernels alive, orphaned. If the parent is already gone, exit now.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _become_kernel(request: dict[str, Any]) -> None:
    """In the forked child: turn this process into the ipykernel the request describes."""
    try:
        die_with_parent()  # a killed server (or build) takes its kernels with it
        os.setsid()  # its own process group: signals to the kernel never reach the server
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(request["env"])
        cwd = request.get("cwd") or os.getcwd()
        os.chdir(cwd)
        # As `python -m ipykernel_launcher` run in cwd: the working directory first on sys.path.
        sys.path[0] = os.getcwd()
        argv = list(request["argv"])
        sys.argv = [argv[0], *argv[_launcher_index(argv) + 2:]]
        # A fresh interpreter seeds numpy's legacy global generator from the OS; forked
        # children would otherwise all share the server's state (`random` reseeds itself).
        import numpy as np

        np.random.seed()
        from ipykernel.kernelapp import IPKernelApp

        IPKernelApp.launch_instance(argv=sys.argv[1:])
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _run_command(conn: socket.socket, request: dict[str, Any], fds: list[int],
                 command: Callable[[list[str]], int]) -> None:
    """In the forked child: run ``cae_impact.run.cli`` with the client's streams; report the status."""
    code = 1
    try:
        conn.sendall(f"{os.getpid()}\n".encode())
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()
        sys.argv = ["cae_impact.run.cli", *request["argv"]]
        try:
            code = command(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        try:
            conn.sendall(f"exit {code}\n".encode())
        except OSError:
            pass
        os._exit(code if isinstance(code, int) else 1)


def serve(socket_path: str, command: Callable[[list[str]], int]) -> None:
    """Run the kernel server: preload, then fork one kernel per request until stdin closes.

    The socket is bound before the (slow) preload, so clients may connect at once: they wait
    in the backlog until the server accepts. The server exits when its standard input closes,
    that is when the process that started it ends, whatever the way it ends.
    """
    die_with_parent(signal.SIGTERM)  # the build that started the server was killed: stop too
    path = Path(socket_path)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    def freeze() -> None:
        # The preloaded objects live as long as every child: keep the garbage collector from
        # scanning them again in each kernel (measured: a third of a consortium notebook's GC
        # time).
        gc.collect()
        gc.freeze()

    # Stages. What the build's steps need when their outputs are in the cache is imported
    # first, then requests are served. The rest is imported when first needed: the renderers
    # before a step that asks for them is forked (a render that misses the cache is handed to a
    # new child that has them, see :func:`run_with`), everything before the first kernel. A
    # build whose steps all find their outputs in the cache (a markdown edit) neither waits for
    # nor spends CPU on WeasyPrint, nbconvert, matplotlib, IPython or pandera, and forks a
    # smaller process.
    _preload(PRELOAD_COMMANDS)
    _warm_up()
    freeze()
    later = [m for m in (*PRELOAD_RENDER, *PRELOAD) if m not in sys.modules]

    def preload(wanted: tuple[str, ...] | None) -> None:
        """Import the modules of ``later`` that are wanted (None: all of them)."""
        nonlocal later
        todo = [m for m in later if wanted is None or m in wanted]
        if todo:
            later = [m for m in later if m not in todo]
            _preload(tuple(todo))
            freeze()

    stdin_fd = sys.stdin.fileno()
    children: set[int] = set()
    while True:
        # Children are reaped here (not with SIGCHLD ignored) so that their resource usage,
        # peak memory included, is accounted to the build like any child process.
        _reap(children)
        ready, _, _ = select.select([listener, stdin_fd], [], [], 0.5)
        if stdin_fd in ready and not os.read(stdin_fd, 4096):
            break  # the build is over
        if listener not in ready:
            continue
        conn, _ = listener.accept()
        fds: list[int] = []
        try:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            while not msg.endswith(b"\n"):
                more = conn.recv(1 << 20)
                if not more:
                    break
                msg += more
            request = json.loads(msg.decode())
        except (OSError, ValueError):
            conn.close()
            for fd in fds:
                os.close(fd)
            continue
        if request.get("kind") != "command":  # a kernel starts with everything a notebook imports
            preload(None)
        elif request.get("needs"):
            preload(PRELOAD_GROUPS.get(str(request["needs"]), ()))
        sys.stdout.flush()  # nothing buffered here may reach a child's streams
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            if request.get("kind") == "command" and len(fds) == 3:
                _run_command(conn, request, fds, command)
            conn.close()
            _become_kernel(request)
        children.add(pid)
        for fd in fds:
            os.close(fd)
        if request.get("kind") != "command":  # a command's child says its pid itself
            try:
                conn.sendall(f"{pid}\n".encode())
            except OSError:
                pass
        conn.close()
    listener.close()
    path.unlink(missing_ok=True)
    # The build is over: its kernels and steps have ended or are ending. Give them a few
    # seconds, then end whatever is left (a kernel orphaned by a killed step) so nothing lingers.
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        _reap(children)
        time.sleep(0.05)
    for pid in children:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
    while children:
        try:
            children.discard(os.waitpid(-1, 0)[0])
        except ChildProcessError:
            break


def _reap(children: set[int]) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)


def _recv_line(conn: socket.socket) -> str:
    chunks = []
    while True:
        data = conn.recv(65536)
        if not data:
            break
        chunks.append(data)
        if data.endswith(b"\n"):
            break
    return b"".join(chunks).decode()


# ---------------------------------------------------------------------------- the client side


def request_kernel(socket_path: str, argv: list[str], cwd: str | None, env: dict[str, str],
                   timeout: float = 60.0) -> int:
    """Ask the server for a kernel; return its pid."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(socket_path)
        conn.sendall(json.dumps({"kind": "kernel", "argv": argv, "cwd": cwd, "env": env}).encode() + b"\n")
        reply = _recv_line(conn).strip()
    if not reply.isdigit():
        raise OSError(f"kernel server at {socket_path} gave no kernel ({reply!r})")
    return int(reply)


def _run_in_server(argv: list[str], needs: str | None = None, env: dict[str, str] | None = None) -> int | None:
    """Run ``cae_impact.run.cli argv`` in a child of the server; its exit status, None if unreachable."""
    server = os.environ.get(ENV_VAR)
    if not server:
        return None
    conn = None
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(server)
        request = {"kind": "command", "argv": argv, "cwd": os.getcwd(), "env": dict(env or os.environ)}
        if needs:
            request["needs"] = needs
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        replies = conn.makefile("rb")
        pid = int(replies.readline().strip())
    except (OSError, ValueError):
        if conn is not None:
            conn.close()
        return None
    try:
        reply = replies.readline().decode().strip()
    except KeyboardInterrupt:
        try:
            os.kill(pid, signal.SIGINT)
            reply = replies.readline().decode().strip()
        except (OSError, KeyboardInterrupt):
            os.kill(pid, signal.SIGKILL)
            return 130
    finally:
        replies.close()
        conn.close()
    if not reply.startswith("exit "):
        print(f"the build step {' '.join(argv)} ended without a status (killed?)", file=sys.stderr)
        return 1
    return int(reply.split()[1])


_HANDED_OVER = "CAE_IMPACT_HANDED_OVER"


def run_with(group: str, argv: list[str]) -> int | None:
    """Hand ``cae_impact.run.cli argv`` over to a new child of the server that has imported ``group``.

    For a step forked from the server that finds it has work to do whose modules the server has
    not imported (a document that misses the cache: ``"render"``): the server imports them, once,
    and forks a child that runs ``argv`` with this process's streams; its exit status is
    returned. None when the step should do the work itself: no server, the modules already
    here, or this process itself handed over to.
    """
    if os.environ.get(_HANDED_OVER) or all(m in sys.modules for m in PRELOAD_GROUPS[group]):
        return None
    return _run_in_server(argv, needs=group, env={**os.environ, _HANDED_OVER: "1"})


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


class ForkedProcess:
    """What jupyter_client needs of a ``Popen`` for a kernel that is not our child.

    The kernel is the server's child (the server reaps it), so liveness is read from /proc
    (a zombie counts as ended), with the start time recorded at launch so that a recycled pid
    is never mistaken for it.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._started = _start_time(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """None while the kernel runs; 0 once it has ended."""
        if self.returncode is None and (self._started is None or _start_time(self.pid) != self._started):
            self.returncode = 0  # the exit status belongs to the server, which reaped it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the kernel to end (raise TimeoutExpired after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        """Signal the kernel if it still runs."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


def fork_provisioner_class():
    """The kernel provisioner that asks the kernel server for the kernel (see module doc)."""
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    class ForkProvisioner(LocalProvisioner):
        async def launch_kernel(self, cmd: list[str], **kwargs: Any):
            server = os.environ.get(ENV_VAR)
            if not server or _launcher_index(cmd) < 0:
                return await super().launch_kernel(cmd, **kwargs)
            env = {k: str(v) for k, v in (kwargs.get("env") or os.environ).items()}
            cwd = str(kwargs.get("cwd") or os.getcwd())
            pid = request_kernel(server, cmd, cwd, env)
            self.process = ForkedProcess(pid)
            self.pid = pid
            self.pgid = pid  # the kernel called setsid(): its group is its own
            self.cwd = cwd
            return self.connection_info

    return ForkProvisioner


def install_provisioner(km: Any) -> None:
    """Give a kernel manager the fork provisioner (before its kernel starts)."""
    if km.provisioner is None:
        km.kernel_id = km.kernel_id or str(uuid.uuid4())
        km.provisioner = fork_provisioner_class()(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)


# ---------------------------------------------------------------------------- lifetime


def kernel_argv(name: str) -> list[str]:
    """The command line of the kernel ``name``'s spec, as jupyter_client resolves it.

    The folders of ``JUPYTER_PATH`` come first in Jupyter's search, the first one holding the
    kernel wins, and the build sets it (Makefile): read there, the spec costs nothing, while
    importing jupyter_client's kernel-spec machinery to look it up costs 0.25 s at the start of
    every ``make reports``, before the server can start. Anywhere else, jupyter_client finds it.
    """
    for folder in os.environ.get("JUPYTER_PATH", "").split(os.pathsep):
        kernels_dir = Path(folder) / "kernels"
        if not folder or not kernels_dir.is_dir():
            continue
        found = [e / "kernel.json" for e in sorted(kernels_dir.iterdir())  # names match case-insensitively
                 if e.name.lower() == name.lower() and (e / "kernel.json").is_file()]
        if found:
            try:
                return list(json.loads(found[0].read_text(encoding="utf-8"))["argv"])
            except (OSError, ValueError, KeyError, TypeError):
                break  # jupyter_client says what is wrong with it
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().get_kernel_spec(name).argv


class KernelServer:
    """A kernel server for the duration of a ``with`` block (sets ``CAE_IMPACT_KERNEL_SERVER``)."""

    def __init__(self, folder: Path | None = None, kernel_name: str = "cae-impact") -> None:
        self.kernel_name = kernel_name
        self.folder = Path(folder or tempfile.mkdtemp(prefix="cae-impact-kserver-"))
        self.socket = str(self.folder / "kernels.sock")
        self.proc = None

    def __enter__(self) -> KernelServer:
        # The server runs the kernel's own interpreter with the kernel's own flags
        # (ipykernel's spec adds -Xfrozen_modules=off), so its children are that interpreter.
        argv = kernel_argv(self.kernel_name)
        i = _launcher_index(argv)
        prefix = argv[:i] if i > 0 else [sys.executable]
        self.proc = subprocess.Popen(
            [*prefix, "-m", "cae_impact.run", "serve", self.socket],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):  # bound before the preload: fast
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise OSError("the kernel server did not start")
            time.sleep(0.01)
        os.environ[ENV_VAR] = self.socket
        return self

    def __exit__(self, *exc: object) -> None:
        os.environ.pop(ENV_VAR, None)
        if self.proc is not None:
            self.proc.stdin.close()  # the server's signal to stop
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_with_server(command: list[str]) -> int:
    """Run ``command`` (the build) with a kernel server; return its exit status."""
    with KernelServer():
        try:
            return subprocess.call(command, close_fds=False)  # keeps make's jobserver
        except KeyboardInterrupt:
            return 130
