"""Notebook tier (issue 18): two waves built one after the other, as `make reports` does.

A fixture study of two demo CAEs for 2026, then the same two CAEs' 2027 exports, the second
wave comparing with the demo's published 2026 figures (data/reference/demo/2026/wave.csv).
Building the second wave must change no byte of the first wave's reports; the index lists
both waves; every report of the second wave says what changed (« Évolution depuis 2026 »), and
its indicator tables carry the change columns.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.notebook
# Two CAEs of both waves (KoboToolbox and Google Forms exports). Not CAE 1 + CAE 3: on their
# 2027 data alone the secondary suppression cannot protect every cell and the estimation stops
# (the rule of cae_impact.analysis.secrecy: nothing is published then); the whole 2027 demo passes.
CAES = ("cae-2", "cae-3")


def _study(folder: Path, source: str, name: str) -> Path:
    study = yaml.safe_load((ROOT / "config" / source).read_text(encoding="utf-8"))
    study["caes"] = [c for c in study["caes"] if c["id"] in CAES]
    for c in study["caes"]:
        copy = folder / "raw" / study["wave"] / c["id"] / Path(c["export"]).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / c["export"], copy)
        c["export"] = str(copy)
    study["data_dir"] = str(folder)
    path = folder / name
    path.write_text(yaml.safe_dump(study, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _make(folder: Path, study: Path, *goals: str) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", "-j2", *goals, f"STUDY={study}",
           f"PROCESSED_ROOT={folder / 'processed'}", f"REPORTS_ROOT={folder / 'reports'}",
           f"BUILD_ROOT={folder / 'build'}"]
    # its own session, as make run from a terminal: a signal the build sends its process group
    # (a kernel interrupted, a server stopping) can never reach pytest
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, start_new_session=True)


def _section(html: str) -> str:
    """« Évolution depuis … »: from its heading to the end of its notebook cell's output."""
    start = html.index('id="evolution"')
    end = html.find('<div class="cell', start)
    return html[start:end if end > 0 else len(html)]


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_waves(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two-waves")
    first = _study(folder, "study.yaml", "study-2026.yaml")
    result = _make(folder, first, "reports")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    before = _digests(folder / "reports" / "2026")
    second = _study(folder, "study-2027.yaml", "study-2027.yaml")
    result = _make(folder, second, "reports")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder, before, result


def test_building_the_second_wave_changes_no_file_of_the_first(two_waves):
    folder, before, _ = two_waves
    after = _digests(folder / "reports" / "2026")
    assert after == before  # byte for byte, no file added or removed


def test_the_index_lists_every_wave(two_waves):
    folder, _, _ = two_waves
    index = (folder / "reports" / "index.html").read_text(encoding="utf-8")
    assert "Vague 2026" in index and "Vague 2027" in index
    assert 'href="2026/cae-2/report.html"' in index and 'href="2027/cae-2/report.html"' in index


def test_every_report_of_the_second_wave_shows_the_evolution(two_waves):
    folder, _, _ = two_waves
    for target in (*CAES, "consortium"):
        html = (folder / "reports" / "2027" / target / "report.html").read_text(encoding="utf-8")
        assert "Évolution depuis 2026" in html, target
        assert "Lecture" in html and "Champ" in html and "Source" in html
        section = _section(html)
        for word in ("Rao-Scott", "Benjamini", "p-value", "p ajustée"):
            assert word not in section, (target, word)
        assert (folder / "reports" / "2027" / target / "notebooks" / "05_evolution.ipynb").exists()
    # the first wave has no evolution notebook
    assert not (folder / "reports" / "2026" / "cae-2" / "notebooks" / "05_evolution.ipynb").exists()


def test_significantly_is_written_only_where_the_corrected_test_says_so(two_waves):
    folder, _, _ = two_waves
    from cae_impact.analysis.waves import SCOPE_CAE, SCOPE_CONSORTIUM

    for target in (*CAES, "consortium"):
        rows = pd.read_parquet(folder / "reports" / "2027" / "_waves" / f"changes__{target}.parquet")
        scope = SCOPE_CONSORTIUM if target == "consortium" else SCOPE_CAE
        own = rows[(rows["target"] == target) & (rows["scope"] == scope)]
        html = (folder / "reports" / "2027" / target / "report.html").read_text(encoding="utf-8")
        section = _section(html)
        n_sig = int(own["significant"].fillna(False).astype(bool).sum())
        assert section.count("significativement") <= n_sig
        if n_sig == 0:
            assert "significativement" not in section


def test_indicator_tables_carry_the_change(two_waves):
    folder, _, _ = two_waves
    table = pd.read_csv(folder / "reports" / "2027" / "cae-2" / "indicators.csv", keep_default_na=False,
                        na_values=[""])
    for col in ("previous_wave", "previous_estimate", "change", "change_ci_low", "change_ci_high",
                "change_significant"):
        assert col in table.columns
    total = table[(table["target"] == "cae-2") & (table["breakdown"] == "total")]
    assert total["change"].notna().sum() > 20
    # a change is given only where both levels are published
    assert not (total["change"].notna() & total["estimate"].isna()).any()
    assert not (total["change"].notna() & total["previous_estimate"].isna()).any()
    assert (folder / "reports" / "2027" / "_waves" / "changes.csv").exists()
