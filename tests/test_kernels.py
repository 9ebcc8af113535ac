"""The kernel server: forked kernels are new ipykernel processes; build steps run as if started anew."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cae_impact.run import execute as build
from cae_impact.run import kernels

ROOT = Path(__file__).resolve().parents[1]
CLIENT = [sys.executable, "-m", "cae_impact.run", "client", "--"]


@pytest.fixture(scope="module")
def server():
    saved = os.environ.get(kernels.ENV_VAR)
    with kernels.KernelServer() as ks:
        yield ks
    if saved is not None:
        os.environ[kernels.ENV_VAR] = saved


def run_cells(*sources: str, cwd: Path | None = None) -> list[str]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": build.KERNEL_NAME, "display_name": "x", "language": "python"}
    NotebookClient(nb, kernel_name=build.KERNEL_NAME, resources={"metadata": {"path": str(cwd or ROOT)}},
                   kernel_manager_class=build._ipc_kernel_manager_class()).execute()
    return ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]


def test_forked_kernel_is_a_new_process_of_the_server_with_the_callers_env_and_cwd(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_TEST_MARKER", "from-the-caller")
    out = run_cells(
        "import os, sys; print(os.getppid(), os.getpid(), os.getsid(0) == os.getpid())",
        "print(os.environ.get('CAE_TEST_MARKER'), os.getcwd(), sys.path[0])",
        "print('pandas' in sys.modules)",
        cwd=tmp_path,
    )
    ppid, pid, own_session = out[0].split()
    assert int(ppid) == server.proc.pid and int(pid) != os.getpid() and own_session == "True"
    marker, cwd, path0 = out[1].split()
    assert marker == "from-the-caller" and cwd == str(tmp_path) and path0 == str(tmp_path)
    assert out[2].strip() == "True", "the server preloads the libraries"


def test_each_notebook_gets_its_own_kernel_and_random_state(server):
    a = run_cells("import os, numpy as np; print(os.getpid(), np.random.random())")[0].split()
    b = run_cells("import os, numpy as np; print(os.getpid(), np.random.random())")[0].split()
    assert a[0] != b[0] and a[1] != b[1]


def test_kernel_failure_and_restart_free_shutdown_leave_no_process(server):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; print(os.getpid())"),
                                         nbformat.v4.new_code_cell("raise ValueError('boom')")])
    client = NotebookClient(nb, kernel_name=build.KERNEL_NAME,
                            kernel_manager_class=build._ipc_kernel_manager_class())
    with pytest.raises(Exception, match="boom"):
        client.execute()
    pid = int(nb.cells[0].outputs[0]["text"])
    deadline = time.monotonic() + 10
    while kernels._start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kernels._start_time(pid) is None, "the kernel ended with its notebook"


def test_forked_process_handle_sees_the_end_of_a_process():
    proc = subprocess.Popen(["sleep", "0.2"])
    handle = kernels.ForkedProcess(proc.pid)
    assert handle.poll() is None
    time.sleep(0.4)  # now a zombie (not reaped yet): counts as ended
    assert handle.poll() == 0 and handle.wait(timeout=1) == 0
    proc.wait()


def test_client_runs_a_build_step_without_a_server(monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != kernels.ENV_VAR}
    res = subprocess.run([*CLIENT, "--study", "config/study.yaml", "make-include"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0 and "WAVE := " in res.stdout


def test_client_runs_build_steps_in_the_server_with_its_streams_and_status(server):
    env = {**os.environ, kernels.ENV_VAR: server.socket}
    ok = subprocess.run([*CLIENT, "--study", "config/study.yaml", "make-include"], cwd=ROOT, env=env,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "WAVE := " in ok.stdout
    bad = subprocess.run([*CLIENT, "--study", "config/study.yaml", "clean", "--cae", "no-such-cae"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "no-such-cae" in bad.stderr
    usage = subprocess.run([*CLIENT, "--no-such-option"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


def _mapped(pid: int, name: str) -> bool:
    """Whether a process has a shared library (or extension module) of that name mapped."""
    return name in Path(f"/proc/{pid}/maps").read_text()


def test_server_imports_renderers_for_a_step_that_needs_them_and_everything_before_a_kernel():
    """Steps are served with what they need when their outputs are in the cache; the renderers
    (WeasyPrint: libpango) come before a step that needs them is forked, the kernels' own
    libraries (the debugger's pydevd) before the first kernel."""
    saved = os.environ.get(kernels.ENV_VAR)
    try:
        with kernels.KernelServer() as ks:
            env = {**os.environ, kernels.ENV_VAR: ks.socket}
            ok = subprocess.run([*CLIENT, "--study", "config/study.yaml", "make-include"], cwd=ROOT, env=env,
                                capture_output=True, text=True)
            assert ok.returncode == 0 and "WAVE := " in ok.stdout
            time.sleep(1)  # the server is idle: it imports nothing more unless a request needs it
            assert not _mapped(ks.proc.pid, "libpango") and not _mapped(ks.proc.pid, "pydevd_cython")
            assert kernels._run_in_server(["--study", "config/study.yaml", "make-include"], needs="render") == 0
            assert _mapped(ks.proc.pid, "libpango"), "the renderers are imported for a step that needs them"
            assert not _mapped(ks.proc.pid, "pydevd_cython")
            out = run_cells("import sys; print('matplotlib.pyplot' in sys.modules, 'weasyprint' in sys.modules)")
            assert out[0].split() == ["True", "True"]
            assert _mapped(ks.proc.pid, "pydevd_cython")
    finally:
        if saved is not None:
            os.environ[kernels.ENV_VAR] = saved


def test_run_with_hands_over_only_when_it_helps(monkeypatch):
    """A step hands its work over to a child that has the renderers only from the server, only
    when it lacks them, and never twice."""
    calls = []
    monkeypatch.setattr(kernels, "_run_in_server", lambda argv, needs=None, env=None: calls.append((needs, env)) or 0)
    monkeypatch.setitem(kernels.PRELOAD_GROUPS, "test-group", ("json", "no_such_module_here"))
    assert kernels.run_with("test-group", ["index"]) == 0
    assert calls[-1][0] == "test-group" and calls[-1][1][kernels._HANDED_OVER] == "1"
    monkeypatch.setitem(kernels.PRELOAD_GROUPS, "test-group", ("json",))  # all here already
    assert kernels.run_with("test-group", ["index"]) is None
    monkeypatch.setitem(kernels.PRELOAD_GROUPS, "test-group", ("no_such_module_here",))
    monkeypatch.setenv(kernels._HANDED_OVER, "1")  # this process was handed over to
    assert kernels.run_with("test-group", ["index"]) is None
    assert len(calls) == 1


def test_kernel_argv_is_the_spec_jupyter_client_resolves(tmp_path, monkeypatch):
    """The server's command line is read from the kernel spec without importing jupyter_client
    when JUPYTER_PATH holds it: the same spec jupyter_client would pick (first folder wins,
    names are case-insensitive)."""
    import json

    from jupyter_client.kernelspec import KernelSpecManager

    name = build.KERNEL_NAME
    assert kernels.kernel_argv(name) == KernelSpecManager().get_kernel_spec(name).argv
    spec = tmp_path / "first" / "kernels" / name.upper()
    spec.mkdir(parents=True)
    argv = ["/elsewhere/python", "-X", "flag", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "x", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(tmp_path / "empty"), str(tmp_path / "first"),
                                                         os.environ.get("JUPYTER_PATH", "")]))
    assert kernels.kernel_argv(name) == argv == KernelSpecManager().get_kernel_spec(name).argv


def test_server_stops_when_its_build_ends():
    with kernels.KernelServer() as ks:
        proc = ks.proc
        assert os.path.exists(ks.socket)
    assert proc.poll() is not None and not os.path.exists(ks.socket)
    assert kernels.ENV_VAR not in os.environ
