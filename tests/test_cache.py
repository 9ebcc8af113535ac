"""The content-addressed cache: what enters a notebook's key, hits without a kernel, files restored."""

import multiprocessing

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cae_impact.run import cache as cachemod
from cae_impact.run import execute as build


def make_nb(path, *cells):
    nb = new_notebook(cells=[
        new_markdown_cell("# Title"),
        new_code_cell('x: int = 1  # a number\nout: str = ""', metadata={"tags": ["parameters"]}),
        *cells,
    ])
    nb.metadata["kernelspec"] = {"name": "cae-impact", "display_name": "Python (CAE-IMPACT)", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def setup(tmp_path):
    src = make_nb(tmp_path / "nb.ipynb", new_code_cell("print(x * 2)"), new_markdown_cell("Some text."))
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    return tmp_path, src, data


def key(src, params, inputs):
    return build.notebook_key(src, params, inputs)


def test_data_change_misses(setup):
    _, src, data = setup
    before = key(src, {"x": 3}, [data])
    assert key(src, {"x": 3}, [data]) == before, "same content, same key"
    data.write_text("a,b\n1,3\n")
    assert key(src, {"x": 3}, [data]) != before


def test_touch_without_content_change_hits(setup):
    import os
    _, src, data = setup
    before = key(src, {"x": 3}, [data])
    os.utime(data, (1, 1))
    assert key(src, {"x": 3}, [data]) == before


def test_parameter_change_misses(setup):
    _, src, data = setup
    assert key(src, {"x": 3}, [data]) != key(src, {"x": 4}, [data])


def test_code_or_lock_change_misses(setup):
    """The step's code digest and the lock file's sha256 are in the key (cae_impact.run.steps)."""
    _, src, data = setup
    code = {"code": "a" * 64, "requirements.lock": "b" * 64}
    before = build.notebook_key(src, {"x": 3}, [data], code=code)
    assert build.notebook_key(src, {"x": 3}, [data], code=dict(code)) == before
    assert build.notebook_key(src, {"x": 3}, [data], code={**code, "code": "0" * 64}) != before
    assert build.notebook_key(src, {"x": 3}, [data], code={**code, "requirements.lock": "0" * 64}) != before


def test_code_change_misses_markdown_change_hits(setup):
    tmp, src, data = setup
    before = key(src, {"x": 3}, [data])
    nb = nbformat.read(src, as_version=4)
    nb.cells[-1].source = "Other text."
    nb.cells[0].source = "# Another title"
    nbformat.write(nb, src)
    assert key(src, {"x": 3}, [data]) == before, "markdown is not in the key"
    nb.cells[2].source = "print(x * 3)"
    nbformat.write(nb, src)
    assert key(src, {"x": 3}, [data]) != before


def test_hit_starts_no_kernel_and_merges_new_markdown(setup, monkeypatch):
    tmp, src, data = setup
    cache = cachemod.NotebookCache(tmp / "cache")
    out = tmp / "out" / "nb.ipynb"
    first = build.run_notebook(src, out, {"x": 21}, target="cae-1", inputs=[data], cache=cache)
    assert not first.cache_hit
    executed = out.read_bytes()
    assert "42" in nbformat.read(out, as_version=4).cells[3].outputs[0]["text"]

    def no_kernel(*a, **k):
        raise AssertionError("a kernel was started on a cache hit")

    monkeypatch.setattr(build, "execute_notebook", no_kernel)
    again = build.run_notebook(src, out, {"x": 21}, target="cae-1", inputs=[data], cache=cache)
    assert again.cache_hit and again.cache_key == first.cache_key
    assert out.read_bytes() == executed, "a hit gives back the same executed notebook, byte for byte"

    nb = nbformat.read(src, as_version=4)
    nb.cells[-1].source = "New text after the chart."
    nbformat.write(nb, src)
    merged = build.run_notebook(src, out, {"x": 21}, target="cae-1", inputs=[data], cache=cache)
    assert merged.cache_hit
    result = nbformat.read(out, as_version=4)
    assert result.cells[-1].source == "New text after the chart."
    assert "42" in result.cells[3].outputs[0]["text"]
    assert result.metadata.papermill["parameters"] == {"x": 21}


def test_files_written_by_a_notebook_are_restored_on_a_hit(tmp_path, monkeypatch):
    src = make_nb(tmp_path / "w.ipynb", new_code_cell(
        "from pathlib import Path\nPath(out).mkdir(parents=True, exist_ok=True)\n"
        "Path(out, 'responses.parquet').write_text(str(x))"))
    data = tmp_path / "raw.csv"
    data.write_text("1\n")
    folder = tmp_path / "processed"
    cache = cachemod.NotebookCache(tmp_path / "cache")
    kw = dict(target="cae-1", inputs=[data], cache=cache, artifacts_dir=folder, artifact_names=("responses.parquet",))
    params = {"x": 7, "out": str(folder)}
    build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    (folder / "responses.parquet").unlink()
    monkeypatch.setattr(build, "execute_notebook", lambda *a, **k: pytest.fail("kernel started"))
    record = build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    assert record.cache_hit and (folder / "responses.parquet").read_text() == "7"


def _store(path, i):
    nb = new_notebook(cells=[new_code_cell(f"y = {i}")])
    nb.metadata["kernelspec"] = {"name": "cae-impact", "display_name": "P", "language": "python"}
    cachemod.NotebookCache(path).store(nb)


def test_concurrent_writers_are_serialised(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_store, args=(tmp_path / "c", i)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    cache = cachemod.NotebookCache(tmp_path / "c")
    for i in range(6):
        nb = new_notebook(cells=[new_code_cell(f"y = {i}")])
        nb.metadata["kernelspec"] = {"name": "cae-impact", "display_name": "P", "language": "python"}
        assert cache.lookup(nb) is not None


def test_step_cache_round_trip(tmp_path):
    steps = cachemod.StepCache(tmp_path / "steps")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.parquet").write_bytes(b"A")
    (out / "b.json").write_text("{}")
    assert not steps.get_dir("k1", out)
    steps.put_dir("k1", out)
    for f in out.iterdir():
        f.unlink()
    assert steps.get_dir("k1", out)
    assert (out / "a.parquet").read_bytes() == b"A" and (out / "b.json").read_text() == "{}"
    single = tmp_path / "report.pdf"
    single.write_bytes(b"%PDF")
    steps.put("k2", {"report.pdf": single})
    single.unlink()
    assert steps.get("k2", {"report.pdf": single}) and single.read_bytes() == b"%PDF"
    assert not steps.get("k3", {"report.pdf": single})


# ---- issue 15: the cache verifies what it restores --------------------------------------------


def test_truncated_step_entry_is_discarded_never_restored(tmp_path, capsys):
    steps = cachemod.StepCache(tmp_path / "steps")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.7 " + b"x" * 5000)
    steps.put("k", {"report.pdf": pdf})
    cached = tmp_path / "steps" / "k" / "report.pdf"
    cached.write_bytes(cached.read_bytes()[:100])  # truncated in the cache
    pdf.unlink()
    assert not steps.get("k", {"report.pdf": pdf})
    assert not pdf.exists() and not list(tmp_path.glob(".report.pdf.tmp*")), "nothing restored"
    assert not (tmp_path / "steps" / "k").exists(), "the damaged entry is gone"
    assert "damaged step-cache entry" in capsys.readouterr().err
    steps.put("k", {"report.pdf": _w(pdf)})
    pdf.unlink()
    assert steps.get("k", {"report.pdf": pdf}), "stored again after the step ran again"


def _w(path):
    path.write_bytes(b"%PDF-1.7 again")
    return path


def test_altered_step_directory_entry_is_discarded(tmp_path, capsys):
    steps = cachemod.StepCache(tmp_path / "steps")
    out = tmp_path / "out"
    out.mkdir()
    (out / "estimates.parquet").write_bytes(b"rows" * 100)
    steps.put_dir("k", out)
    (tmp_path / "steps" / "k" / "estimates.parquet").write_bytes(b"rows" * 85)  # 15 rows removed
    assert not steps.get_dir("k", out)
    assert (out / "estimates.parquet").read_bytes() == b"rows" * 100
    assert "discarded" in capsys.readouterr().err


def test_entry_without_digests_is_not_trusted(tmp_path):
    steps = cachemod.StepCache(tmp_path / "steps")
    entry = tmp_path / "steps" / "k"
    entry.mkdir(parents=True)
    (entry / "report.pdf").write_bytes(b"forged")
    assert not steps.get("k", {"report.pdf": tmp_path / "report.pdf"})


def _artifact_setup(tmp_path):
    src = make_nb(tmp_path / "w.ipynb", new_code_cell(
        "from pathlib import Path\nPath(out).mkdir(parents=True, exist_ok=True)\n"
        "Path(out, 'responses.parquet').write_text(str(x) * 50)"))
    data = tmp_path / "raw.csv"
    data.write_text("1\n")
    folder = tmp_path / "processed"
    cache = cachemod.NotebookCache(tmp_path / "cache")
    kw = dict(target="cae-1", inputs=[data], cache=cache, artifacts_dir=folder, artifact_names=("responses.parquet",))
    params = {"x": 7, "out": str(folder)}
    build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    return src, folder, kw, params


def test_altered_cached_artifact_runs_the_notebook_again(tmp_path, capsys):
    src, folder, kw, params = _artifact_setup(tmp_path)
    [cached] = list((tmp_path / "cache" / "jc").rglob("artifacts/responses.parquet"))
    cached.write_text("7" * 35)  # rows removed from the cached cleaned file
    (folder / "responses.parquet").unlink()
    record = build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    assert not record.cache_hit, "the damaged entry is not restored: the notebook ran again"
    assert (folder / "responses.parquet").read_text() == "7" * 50
    assert "damaged entry" in capsys.readouterr().err
    again = build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    assert again.cache_hit, "the entry stored again is good"


def test_truncated_cached_notebook_runs_again(tmp_path, capsys):
    src, folder, kw, params = _artifact_setup(tmp_path)
    [base] = list((tmp_path / "cache" / "jc").rglob("base.ipynb"))
    base.write_bytes(base.read_bytes()[:200])
    record = build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    assert not record.cache_hit
    assert "damaged entry" in capsys.readouterr().err


def test_damaged_database_is_rebuilt_with_a_message(tmp_path, capsys):
    src, folder, kw, params = _artifact_setup(tmp_path)
    [db] = list((tmp_path / "cache" / "jc").glob("*.db")) or list((tmp_path / "cache" / "jc").glob("*.sqlite*"))
    db.write_bytes(db.read_bytes()[:512])
    record = build.run_notebook(src, tmp_path / "o.ipynb", params, **kw)
    assert not record.cache_hit
    err = capsys.readouterr().err
    assert "damaged" in err and "rebuilt" in err and "Traceback" not in err
    assert build.run_notebook(src, tmp_path / "o.ipynb", params, **kw).cache_hit, "the rebuilt cache works"
