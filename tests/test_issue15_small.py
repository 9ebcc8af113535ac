"""Issue 15, smaller items: orphan kernels, index of every wave, formula-neutral CSV, .gitignore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_forked_kernel_dies_with_its_server(tmp_path):
    """The server is killed with -9: its child (a kernel, in a session of its own) goes too."""
    pidfile = tmp_path / "kernel.pid"
    code = f"""
import os, time
from cae_impact.run.kernels import die_with_parent
pid = os.fork()
if pid == 0:
    die_with_parent()
    os.setsid()
    open({str(pidfile)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""
    server = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kernel = int(pidfile.read_text())
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(kernel, signal.SIGKILL)
    pytest.fail("the kernel outlived its killed server")


def test_index_lists_every_study_and_wave_built(tmp_path):
    from dataclasses import replace

    from cae_impact.render.index import write_index
    from cae_impact.spec.config import load_study

    study = load_study()
    other = replace(study, wave="2027", title="Deuxième vague")
    for s in (study, other):
        (tmp_path / s.wave / "cae-1").mkdir(parents=True)
        (tmp_path / s.wave / "cae-1" / "report.pdf").write_bytes(b"%PDF")
    write_index(study, tmp_path)
    write_index(other, tmp_path)  # building another study keeps the first in the index
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "2026/cae-1/report.pdf" in html and "2027/cae-1/report.pdf" in html
    assert "Deuxième vague" in html


def test_responses_to_csv_writes_no_live_formula(tmp_path):
    processed = tmp_path / "processed" / "2026" / "cae-1"
    processed.mkdir(parents=True)
    pd.DataFrame({"respondent_id": ["a" * 20], "remarks": ['=cmd|" /C calc"!A0'], "n": [-3]}).to_parquet(
        processed / "responses.parquet")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "responses_to_csv.py"), str(tmp_path / "processed"),
                    "2026", str(tmp_path / "out")], check=True, capture_output=True)
    text = (tmp_path / "out" / "cae-1.csv").read_text(encoding="utf-8")
    assert "'=cmd" in text and ",-3" in text
    for line in text.splitlines():
        for cell in line.split(","):
            assert not cell.lstrip('"').startswith(("=", "+", "@")), cell


def test_gitignore_keeps_a_real_export_out_of_git_under_demo():
    for path in ("data/raw/demo/2026/cae-1/real_export.csv", "data/raw/demo/real.csv", "data/raw/demo/2027/x.xlsx",
                 "data/raw/acme/2026/cae-1/export.csv"):
        res = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
        assert res.returncode == 0, f"{path} is not ignored"
    for path in ("data/raw/demo/2026/cae-1/export_limesurvey.csv", "data/raw/demo/2026/cae-7/mapping.yaml"):
        res = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
        assert res.returncode == 1, f"{path} (a committed demo file) is ignored"
