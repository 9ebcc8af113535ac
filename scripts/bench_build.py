"""Benchmark of the build: cold, no-op, markdown-only edits, one CAE's export changed, naive baseline.

Everything runs in a scratch folder (its own processed/, reports/, build/ and cache, a copy of
the notebooks and of the study configuration whose first CAE's export is a scratch copy), so the
repository is never modified. Times are wall-clock medians of ``--repeats`` runs (the cold build
and the naive baseline run ``--cold-repeats`` times, they are long). Peak memory is the largest
resident set of any child process (``resource.RUSAGE_CHILDREN``, ru_maxrss).

    .venv/bin/python scripts/bench_build.py                       # the demo study (7 CAEs)
    .venv/bin/python scripts/bench_build.py --caes cae-1,cae-3    # a smaller study
    .venv/bin/python scripts/bench_build.py --national 10,20,40   # generated national studies
    .venv/bin/python scripts/bench_build.py --skip-naive          # without the naive baseline
    .venv/bin/python scripts/bench_build.py --skip-naive --skip-markdown --code-edits demo.py,chapters.py

``--code-edits`` adds, last, one build after a comment line is appended to each named module of
``src/cae_impact/`` (the one exception to "the repository is never modified": the file is
restored, and the build after the restore is not timed).

Run it through ``make bench BENCH_ARGS="..."`` (sets JUPYTER_PATH like every build).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


PEAK_TREE_MB = 0.0  # largest total resident memory of a build's process tree seen so far


def _tree_rss_mb(root: int) -> float:
    """Total memory (MB) of a process and all its descendants: the sum of their proportional set
    sizes (PSS, /proc/<pid>/smaps_rollup). Kernels forked from the kernel server share its pages;
    summing resident sets would count those pages once per kernel."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                parent[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == pid and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    total_kb = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except (OSError, ValueError, IndexError):
            pass
    return total_kb / 1024


def run(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Run a build; sample the total memory of its process tree every 0.2 s meanwhile."""
    global PEAK_TREE_MB
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    done = threading.Event()

    def sample() -> None:
        global PEAK_TREE_MB
        while not done.wait(0.2):
            PEAK_TREE_MB = max(PEAK_TREE_MB, _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    return time.perf_counter() - start, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def peak_rss_mb() -> float:
    """Largest resident set of any finished descendant process so far, in MB (ru_maxrss, kB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


class Scratch:
    """A study with its own roots and notebooks, built through the Makefile."""

    def __init__(self, folder: Path, study: Path, jobs: int) -> None:
        self.folder, self.study, self.jobs = folder, study, jobs
        self.notebooks = folder / "notebooks"
        if not self.notebooks.exists():
            shutil.copytree(ROOT / "notebooks", self.notebooks)

    def make(self, *goals: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
        cmd = ["make", "--no-print-directory", f"-j{self.jobs}", *goals,
               f"STUDY={self.study}", f"PROCESSED_ROOT={self.folder / 'processed'}",
               f"REPORTS_ROOT={self.folder / 'reports'}", f"BUILD_ROOT={self.folder / 'build'}",
               f"NOTEBOOKS_DIR={self.notebooks}", f"VENV={Path(PY).parent.parent}"]
        t, res = run(cmd)
        if check and res.returncode != 0:
            raise SystemExit(f"build failed ({' '.join(goals)}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return t, res

    def wipe(self) -> None:
        for name in ("processed", "reports", "build"):
            shutil.rmtree(self.folder / name, ignore_errors=True)


def counts(out: str) -> dict[str, object]:
    """What a build did, from its progress lines: kernels started, and for which targets."""
    executed = re.findall(r"\[(?:clean|analyse)\] ([\w-]+)[^\n]*?\.ipynb(?: \(\d+/\d+\))? executed in", out)
    return {
        "kernels": len(executed),
        "targets_executed": sorted(set(executed)),
        "cache_hits": out.count("cache hit"),
        "estimated": out.count(" estimated in"),
        "rendered": out.count(" rendered in"),
    }


def write_study(folder: Path, caes: list[str] | None) -> Path:
    """A copy of the demo study whose first CAE's export is a scratch copy (so it can change)."""
    demo = yaml.safe_load((ROOT / "config" / "study.yaml").read_text(encoding="utf-8"))
    if caes:
        demo["caes"] = [c for c in demo["caes"] if c["id"] in caes]
    first = demo["caes"][0]
    src = ROOT / first["export"]
    copy = folder / "raw" / src.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, copy)
    first["export"] = str(copy)
    for c in demo["caes"][1:]:
        c["export"] = str(ROOT / c["export"])
        if c.get("mapping"):
            c["mapping"] = str(ROOT / c["mapping"])
    if not Path(demo["codebook"]).is_absolute():
        demo["codebook"] = str(ROOT / demo["codebook"])
    demo["data_dir"] = str(folder)  # the scratch export is outside the project: said explicitly
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(demo, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def edit_markdown(notebooks: Path, n: int) -> None:
    """A markdown-only edit of notebook 03 (its first markdown cell gets another line)."""
    path = notebooks / "03_effect.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown")
    cell.source = cell.source.split("\n<!-- bench")[0] + f"\n<!-- bench edit {n} -->"
    nbformat.write(nb, path)


def edit_markdown_visible(notebooks: Path, n: int) -> None:
    """A markdown edit that shows in every report: a sentence of notebook 03 rewritten (or added)."""
    path = notebooks / "03_effect.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if "bench-visible" in c.metadata.get("tags", [])), None)
    if cell is None:
        cell = nbformat.v4.new_markdown_cell(metadata={"tags": ["bench-visible"]})
        nb.cells.append(cell)
    cell.source = f"*Note de lecture (version {n}) : les écarts sont commentés dans le texte.*"
    nbformat.write(nb, path)


def change_export(study: Path, n: int) -> None:
    """A content change of the first CAE's export: one respondent fewer (a different one each time)."""
    cfg = yaml.safe_load(study.read_text(encoding="utf-8"))
    path = Path(cfg["caes"][0]["export"])
    original = path.with_suffix(path.suffix + ".orig")
    if not original.exists():
        shutil.copyfile(path, original)
    raw = original.read_bytes()
    nl = b"\r\n" if b"\r\n" in raw else b"\n"
    lines = raw.rstrip(nl).split(nl)
    drop = len(lines) - 1 - (n % 3)
    path.write_bytes(nl.join(lines[:drop] + lines[drop + 1:]) + nl)


def naive(sc: Scratch, study_path: Path) -> float:
    """papermill CLI, serially, a fresh process and kernel for every notebook, then each document."""
    sys.path.insert(0, str(ROOT / "src"))
    from cae_impact.spec.config import load_study

    study = load_study(study_path)
    folder = sc.folder / "naive"
    shutil.rmtree(folder, ignore_errors=True)
    proc, rep = folder / "processed", folder / "reports"
    env = {**os.environ, "JUPYTER_PATH": str(Path(PY).parent.parent / "share" / "jupyter"), "MPLBACKEND": "Agg",
           "PYTHONHASHSEED": "0"}
    papermill = str(Path(PY).parent / "papermill")
    common = ["-k", "cae-impact", "--cwd", str(sc.notebooks), "-p", "study", str(study_path),
              "-p", "processed_root", str(proc)]
    cli = [PY, "-m", "cae_impact.run.cli", "--study", str(study_path), "--processed-root", str(proc),
           "--reports-root", str(rep), "--notebooks-dir", str(sc.notebooks), "--no-cache"]
    start = time.perf_counter()

    def go(cmd: list[str]) -> None:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            raise SystemExit(f"naive step failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")

    for cae in study.cae_ids:
        out = rep / study.wave / cae / "notebooks" / "01_cleaning.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        go([papermill, str(sc.notebooks / "01_cleaning.ipynb"), str(out), *common, "-p", "cae", cae])
    go([*cli, "estimate"])
    for target in study.targets:
        nb_dir = rep / study.wave / target / "notebooks"
        nb_dir.mkdir(parents=True, exist_ok=True)
        tp = [*common, "-p", "target", target, "-p", "reports_root", str(rep)]
        go([papermill, str(sc.notebooks / "03_effect.ipynb"), str(nb_dir / "03_effect.ipynb"), *tp])
        go([papermill, str(sc.notebooks / "04_profile.ipynb"), str(nb_dir / "04_profile.ipynb"), *tp])
        for fmt in ("html", "pdf", "docx"):
            go([*cli, "render", "--target", target, "--to", fmt])
    return time.perf_counter() - start


def indicator_digests(sc: Scratch) -> dict[str, str]:
    """sha256 of each target's indicators.csv."""
    import hashlib

    return {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (sc.folder / "reports").glob("*/*/indicators.csv")}


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 1)


def edited_builds(sc: Scratch, repeats: int, edit) -> tuple[float, list[dict[str, object]]]:
    """``repeats`` times: ``edit(i)``, then ``make reports``; the median time and what each build did."""
    times, done = [], []
    for i in range(repeats):
        edit(i)
        t, res = sc.make("reports")
        times.append(t)
        done.append(counts(res.stdout))
    return med(times), done


def load() -> float:
    """The one-minute load average now (the machine is shared: said next to every figure)."""
    return round(os.getloadavg()[0], 2)


def edit_code(module: str, n: int) -> None:
    """A comment line appended to ``src/cae_impact/<module>`` (a code edit that changes no result)."""
    path = ROOT / "src" / "cae_impact" / module
    path.write_text(path.read_text(encoding="utf-8").split("\n# bench edit")[0] + f"\n# bench edit {n}\n",
                    encoding="utf-8")


def code_edit_builds(sc: Scratch, modules: list[str], repeats: int) -> dict[str, object]:
    """For each module: ``repeats`` builds after an edit of it (timed), then the file restored."""
    out: dict[str, object] = {}
    for module in modules:
        path = ROOT / "src" / "cae_impact" / module
        original = path.read_bytes()
        try:
            out[f"code_edit_{module}_load"] = load()
            out[f"code_edit_{module}_s"], out[f"code_edit_{module}_counts"] = edited_builds(
                sc, repeats, lambda i, m=module: edit_code(m, i))
        finally:
            path.write_bytes(original)
        sc.make("reports")  # back to the original code (not timed)
    return out


def bench_study(sc: Scratch, study: Path, repeats: int, cold_repeats: int, with_naive: bool,
                with_markdown: bool = True, code_edits: list[str] = ()) -> dict:
    results: dict[str, object] = {"cpu_probe_before_s": cpu_probe()}
    results["cold_load"] = load()
    cold = []
    for _ in range(cold_repeats):
        sc.wipe()
        t, res = sc.make("reports")
        cold.append(t)
        results["cold_counts"] = counts(res.stdout)
    results["cold_s"] = med(cold)
    results["cold_runs"] = [round(x, 1) for x in cold]
    results["noop_load"] = load()
    noop = [sc.make("reports")[0] for _ in range(repeats)]
    results["noop_s"] = med(noop)
    if with_markdown:
        results["markdown_edit_s"], results["markdown_edit_counts"] = edited_builds(
            sc, repeats, lambda i: edit_markdown(sc.notebooks, i))
        # A visible edit: every report's text changes, so every HTML, PDF and DOCX is made again
        # (no kernel).
        results["markdown_visible_edit_s"], results["markdown_visible_edit_counts"] = edited_builds(
            sc, repeats, lambda i: edit_markdown_visible(sc.notebooks, i))
    # touch only (what a git checkout that changes no content looks like to Make)
    touched = []
    results["touch_load"] = load()
    for _ in range(repeats):
        cfg = yaml.safe_load(study.read_text(encoding="utf-8"))
        Path(cfg["caes"][0]["export"]).touch()
        t, res = sc.make("reports")
        touched.append(t)
        results["touch_counts"] = counts(res.stdout)
    results["touch_only_s"] = med(touched)
    results["cpu_probe_before_one_export_s"] = cpu_probe()
    results["one_export_load"] = load()
    one, one_counts = [], []
    for i in range(repeats):
        change_export(study, i)
        before = indicator_digests(sc)
        t, res = sc.make("reports")
        one.append(t)
        c = counts(res.stdout)
        after = indicator_digests(sc)
        # The demo compares its CAEs with the published consortium figures: the changed CAE and
        # the consortium are executed again, and another CAE only when the secondary
        # suppression hid or showed again some of its cells (the estimate step says which).
        c["targets_whose_indicators_changed"] = sorted(t for t in after if before.get(t) != after[t])
        said = re.search(r"report rows (?:changed|unchanged)[^\n]*", res.stdout)
        c["estimate_says"] = said.group(0) if said else None
        one_counts.append(c)
    results["one_export_changed_s"] = med(one)
    results["one_export_counts"] = one_counts
    if code_edits:
        results.update(code_edit_builds(sc, list(code_edits), repeats))
    if with_naive:
        results["naive_s"] = med([naive(sc, study) for _ in range(cold_repeats)])
        results["speedup_cold_vs_naive"] = round(results["naive_s"] / results["cold_s"], 2)
    results["peak_rss_child_mb"] = round(peak_rss_mb())
    results["peak_tree_mb"] = round(PEAK_TREE_MB)
    return results


def bench_national(folder: Path, sizes: list[int], per_cae: int, jobs: int) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from cae_impact_demo.demo import generate_national_study

    global PEAK_TREE_MB
    out: dict[object, object] = {}
    for n in sizes:
        sub = folder / f"national-{n}"
        shutil.rmtree(sub, ignore_errors=True)
        cfg = generate_national_study(n, per_cae, sub)  # absolute exports, named in data_dir
        sc = Scratch(sub, cfg, jobs)
        probe = cpu_probe()
        PEAK_TREE_MB = 0.0
        t, res = sc.make("reports")
        c = counts(res.stdout)
        out[n] = {"cold_s": round(t, 1), "s_per_cae": round(t / n, 2), "kernels": c["kernels"],
                  "rendered": c["rendered"], "peak_tree_mb": round(PEAK_TREE_MB),
                  "peak_process_mb": round(peak_rss_mb()), "cpu_probe_before_s": probe}
        print(f"national {n} CAEs x {per_cae}: {t:.1f} s ({t / n:.2f} s per CAE), "
              f"peak memory of the build {PEAK_TREE_MB:.0f} MB", flush=True)
        if not os.environ.get("BENCH_KEEP_NATIONAL"):
            shutil.rmtree(sub, ignore_errors=True)
    if len(sizes) >= 2:  # least-squares line through (CAEs, seconds): slope, intercept, worst residual
        xs, ys = sizes, [out[n]["cold_s"] for n in sizes]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        icpt = my - slope * mx
        worst = max(abs(y - (icpt + slope * x)) / y for x, y in zip(xs, ys, strict=True))
        out["fit"] = {"seconds_per_cae": round(slope, 2), "intercept_s": round(icpt, 1),
                      "worst_relative_residual": round(worst, 3)}
    return out


def cpu_probe() -> float:
    """Seconds of a fixed pure-Python loop: how fast this machine is right now.

    Shared virtual machines change speed from one hour to the next (measured here: the same
    loop 2.1 s, then 2.8 s, ten minutes apart, with no steal time reported). Each figure is
    printed with the probe taken before it, so runs can be compared.
    """
    start = time.perf_counter()
    total = 0
    for i in range(20_000_000):
        total += i
    return round(time.perf_counter() - start, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--caes", help="comma-separated CAE ids of the demo study (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cold-repeats", type=int, default=1)
    p.add_argument("--jobs", type=int, default=(os.cpu_count() or 2) + 1,
                   help="parallel jobs (default: cores + 1, as make reports)")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--skip-markdown", action="store_true", help="without the two markdown-edit cases")
    p.add_argument("--code-edits", help="comma-separated modules of src/cae_impact/ to edit (a comment), "
                   "one build each, last (e.g. demo.py,chapters.py)")
    p.add_argument("--national", help="comma-separated numbers of CAEs for generated national studies")
    p.add_argument("--per-cae", type=int, default=80)
    p.add_argument("--keep", type=Path, help="scratch folder to use and keep (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cae-impact-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg(),
                                              "cpu_probe_before_s": cpu_probe()},
                                  "jobs": args.jobs}
    try:
        if args.national:
            results["national"] = bench_national(folder, [int(x) for x in args.national.split(",")],
                                                 args.per_cae, args.jobs)
        else:
            study = write_study(folder, args.caes.split(",") if args.caes else None)
            results["study"] = bench_study(Scratch(folder, study, args.jobs), study, args.repeats,
                                           args.cold_repeats, not args.skip_naive, not args.skip_markdown,
                                           args.code_edits.split(",") if args.code_edits else [])
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    results["machine"]["load_after"] = os.getloadavg()
    results["machine"]["cpu_probe_after_s"] = cpu_probe()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
