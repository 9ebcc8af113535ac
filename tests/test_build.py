"""Unit tests of notebook execution: project kernel, atomic outputs, located failures."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cae_impact.run import execute as build


def make_nb(path, *sources, params='x: int = 1  # a number'):
    nb = new_notebook(cells=[new_code_cell(params, metadata={"tags": ["parameters"]})] + [new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "cae-impact", "display_name": "Python (CAE-IMPACT)", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_project_kernel_is_this_environment():
    import os
    import sys
    from pathlib import Path

    interpreter = build.check_kernel()
    assert Path(os.path.abspath(interpreter)).is_relative_to(Path(sys.prefix).absolute())


def test_stray_user_kernel_is_detected(tmp_path, monkeypatch):
    spec_dir = tmp_path / "kernels" / "cae-impact"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "stray", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(build.BuildError, match="outside this environment"):
        build.check_kernel()


def test_execute_writes_normalised_notebook(tmp_path):
    src = make_nb(tmp_path / "ok.ipynb", "y = x * 2\nprint(y)")
    out = tmp_path / "out" / "ok.ipynb"
    build.execute_notebook(src, out, {"x": 21}, target="cae-1")
    nb = nbformat.read(out, as_version=4)
    assert "42" in nb.cells[-1].outputs[0]["text"]
    assert nb.metadata.papermill["parameters"] == {"x": 21}
    assert "start_time" not in json.dumps(nb.metadata) and "duration" not in json.dumps(nb.metadata)
    assert not list(out.parent.glob(".*tmp*"))
    first = out.read_bytes()
    build.execute_notebook(src, out, {"x": 21}, target="cae-1")
    assert out.read_bytes() == first, "the same inputs give the same executed notebook"


def test_failure_names_target_notebook_and_cell(tmp_path):
    src = make_nb(tmp_path / "bad.ipynb", "a = 1", "raise ValueError('export unusable')", "b = 2")
    out = tmp_path / "out" / "bad.ipynb"
    out.parent.mkdir()
    out.write_text("stale finished-looking output")
    with pytest.raises(build.NotebookFailure) as info:
        build.execute_notebook(src, out, {"x": 2}, target="cae-3")
    failure = info.value
    assert failure.target == "cae-3"
    assert failure.notebook == "bad.ipynb"
    assert failure.cell_number == 3  # parameters cell is 1; the injected cell is not counted
    assert "ValueError: export unusable" in failure.error
    msg = str(failure)
    assert "target=cae-3" in msg and "notebook=bad.ipynb" in msg and "cell 3" in msg
    assert not out.exists(), "no finished-looking output after a failure"
    assert failure.failed_copy.name == "bad.FAILED.ipynb" and failure.failed_copy.exists()


def test_normalise_drops_timings_keeps_parameters():
    nb = new_notebook(cells=[new_code_cell("1")])
    nb.metadata["papermill"] = {"parameters": {"a": 1}, "start_time": "t", "duration": 3.2, "kernel_name": "k"}
    nb.cells[0].metadata["papermill"] = {"duration": 1}
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "t"}
    out = build.normalise_notebook(nb)
    assert out.metadata["papermill"] == {"parameters": {"a": 1}, "kernel_name": "k"}
    assert out.cells[0].metadata == {}
