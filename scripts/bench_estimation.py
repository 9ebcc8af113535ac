"""Benchmark of the study-wide estimation step on generated national studies.

For each number of CAEs N, a national study is generated with
``cae_impact_demo.demo.generate_national_study`` (about ``--per-cae`` respondents per CAE, LimeSurvey
exports) and cleaned CAE by CAE (``clean_export`` + ``write_processed``, what ``make`` runs
through notebook 01), all in a scratch folder. Then ``pipeline.run_estimation`` (estimates,
weighting report, design) runs in a fresh interpreter per measurement: wall seconds of the
estimation alone (imports and study loading excluded) and the child's peak resident memory
(``VmHWM``, which is that of the child's own image, imports included). The time per CAE should
stay flat as N grows: the estimation is linear in the number of CAEs.

    .venv/bin/python scripts/bench_estimation.py                       # N = 10, 20, 40, 80, 160
    .venv/bin/python scripts/bench_estimation.py --sizes 10,20 --repeats 1
    .venv/bin/python scripts/bench_estimation.py --work /tmp/estwork/bench   # keep and reuse
    .venv/bin/python scripts/bench_estimation.py --demo     # the demo study's cleaned data instead
    .venv/bin/python scripts/bench_estimation.py --demo --before /work/wt-perf-before   # both

Generated studies are reused when the scratch folder already holds them (``--work``). With
``--demo`` the demo study (``config/study.yaml``) is estimated from ``--processed-root``
(default ``data/processed``, only read) into a scratch folder, ``--repeats`` times.

``--before <checkout>`` (a ``git worktree`` of the code to compare with, using this
environment) measures that checkout's estimation on the same data in the same run, the two
interleaved (before, after, before, ...), and prints the largest difference between the two
estimates tables: per numeric column, the largest absolute and relative difference (relative
where the value exceeds 1e-9), and whether the other columns are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compare_tables(before: Path, after: Path) -> dict[str, object]:
    """The largest differences between two estimates tables (same rows in the same order)."""
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(before), pd.read_parquet(after)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return {"same_shape": False, "before": list(a.shape), "after": list(b.shape)}
    out: dict[str, object] = {"same_shape": True, "rows": len(a)}
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            x, y = x.to_numpy(float), y.to_numpy(float)
            ok = ~np.isnan(x) & ~np.isnan(y)
            d = np.abs(x - y)[ok]
            scale = np.maximum(np.abs(x), np.abs(y))[ok]
            big = scale > 1e-9
            out[c] = {"max_abs": float(d.max()) if d.size else 0.0,
                      "max_rel": float((d[big] / scale[big]).max()) if big.any() else 0.0,
                      "nan_mismatches": int((np.isnan(x) != np.isnan(y)).sum())}
        else:
            na = x.isna().to_numpy()
            same = (na == y.isna().to_numpy()).all() and (
                x[~na].astype(str).to_numpy() == y[~na].astype(str).to_numpy()).all()
            out[c] = {"identical": bool(same)}
    return out


def _print_comparison(cmp: dict[str, object]) -> None:
    if not cmp.get("same_shape"):
        print(f"  tables differ in shape: {cmp}")
        return
    diffs = [f"{c} {v['max_rel']:.1e}" for c, v in cmp.items() if isinstance(v, dict) and "max_rel" in v]
    other = [c for c, v in cmp.items() if isinstance(v, dict) and v.get("identical") is False]
    nan = [c for c, v in cmp.items() if isinstance(v, dict) and v.get("nan_mismatches")]
    print(f"  before/after, {cmp['rows']} rows: max relative difference " + ", ".join(diffs)
          + f"; other columns {'identical' if not other else 'DIFFER: ' + ', '.join(other)}"
          + (f"; NaN mismatches in {', '.join(nan)}" if nan else ""))


def prepare(n_caes: int, per_cae: int, folder: Path) -> tuple[Path, Path]:
    """Generate and clean a national study under ``folder``; returns (config, processed root)."""
    from cae_impact.clean.cleaning import clean_export, write_processed
    from cae_impact.spec.codebook import load_codebook
    from cae_impact.spec.config import load_study
    from cae_impact_demo.demo import generate_national_study

    config = folder / "config" / "study.yaml"
    processed = folder / "processed"
    done = folder / ".prepared"
    if done.exists():
        return config, processed
    shutil.rmtree(folder, ignore_errors=True)
    config = generate_national_study(n_caes, per_cae, folder)
    # the codebook inside the study folder: a --before checkout reads the same file
    text = config.read_text(encoding="utf-8")
    codebook = load_codebook().path
    shutil.copyfile(codebook, config.parent / "codebook.yaml")
    config.write_text(text.replace(str(codebook.resolve()), str(config.parent / "codebook.yaml")),
                      encoding="utf-8")
    study = load_study(config, root=folder)
    cb = load_codebook(study.codebook)
    key = secrets.token_bytes(32)
    for cae in study.caes:
        result = clean_export(study, cae.id, codebook=cb, key=key)
        write_processed(result, processed / study.wave / cae.id)
    done.write_text("ok\n", encoding="utf-8")
    return config, processed


def measure(config: Path, root: Path, processed: Path, reports: Path) -> dict:
    """One estimation (in this process): seconds, respondents, peak memory."""
    import pandas as pd

    from cae_impact.render import report as _report  # noqa: F401  (imported by run_estimation; not timed)
    from cae_impact.run import pipeline
    from cae_impact.spec.config import load_study

    study = load_study(config, root=root)
    baseline = _peak_mb()
    c0, t0 = time.process_time(), time.perf_counter()
    out = pipeline.run_estimation(study, processed, reports)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    weighting = json.loads((out.parent / pipeline.WEIGHTING_FILE).read_text(encoding="utf-8"))
    rows = len(pd.read_parquet(out, columns=["indicator_id"]))
    return {"caes": len(study.caes), "respondents": weighting["respondents"], "rows": rows,
            "seconds": seconds, "cpu_seconds": cpu, "baseline_mb": baseline, "peak_mb": _peak_mb()}


def _child(config: Path, root: Path, processed: Path, reports: Path, code: Path | None = None) -> dict:
    """One measurement in a fresh interpreter; ``code``: a checkout whose ``src`` is imported."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code / "src")
    proc = subprocess.run([sys.executable, __file__, "--measure", str(config), str(root), str(processed),
                           str(reports)], capture_output=True, text=True, check=False, cwd=code or ROOT,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"estimation failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["table"] = str(next(reports.glob("*/_study/estimates.parquet")))
    return out


def _line(what: str, runs: list[dict]) -> str:
    secs = [r["seconds"] for r in runs]
    return (f"{what}: estimation {statistics.median(secs):.2f} s (median of {len(runs)}: "
            f"{', '.join(f'{x:.2f}' for x in secs)}), CPU {statistics.median(r['cpu_seconds'] for r in runs):.2f} s, "
            f"peak {max(r['peak_mb'] for r in runs):.0f} MB")


def _pairs(config: Path, root: Path, processed: Path, folder: Path, repeats: int,
           before: Path | None) -> tuple[list[dict], list[dict]]:
    """``repeats`` measurements of this code (and of ``before``'s, interleaved)."""
    after_runs, before_runs = [], []
    for i in range(repeats):
        if before is not None:
            reports = folder / f"reports-before-{i}"
            shutil.rmtree(reports, ignore_errors=True)
            before_runs.append(_child(config, root, processed, reports, before))
        reports = folder / f"reports-{i}"
        shutil.rmtree(reports, ignore_errors=True)
        after_runs.append(_child(config, root, processed, reports))
    return after_runs, before_runs


def bench_demo(processed: Path, repeats: int, before: Path | None = None) -> int:
    """Estimate the demo study ``repeats`` times (fresh process each) and print the median."""
    with tempfile.TemporaryDirectory(prefix="cae-bench-demo-") as tmp:
        runs, before_runs = _pairs(ROOT / "config" / "study.yaml", ROOT, processed, Path(tmp), repeats, before)
        print(f"demo study: {runs[0]['caes']} CAEs, {runs[0]['respondents']} respondents, "
              f"{runs[0]['rows']} rows; load {os.getloadavg()[0]:.1f}")
        if before_runs:
            print("  " + _line(f"before ({before})", before_runs))
        print("  " + _line("this code", runs))
        if before_runs:
            _print_comparison(compare_tables(Path(before_runs[0]["table"]), Path(runs[0]["table"])))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,20,40,80,160", help="numbers of CAEs")
    p.add_argument("--per-cae", type=int, default=80, help="respondents per CAE (about)")
    p.add_argument("--repeats", type=int, default=3, help="runs per size (median); 1 for the largest size")
    p.add_argument("--work", type=Path, help="scratch folder to use and keep (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--demo", action="store_true", help="time the demo study instead")
    p.add_argument("--processed-root", type=Path, default=ROOT / "data" / "processed",
                   help="cleaned data of the demo study (read only)")
    p.add_argument("--before", type=Path, help="a checkout of the code to compare with (same run, interleaved)")
    p.add_argument("--measure", nargs=4, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    before = args.before.resolve() if args.before else None
    if args.demo:
        return bench_demo(args.processed_root, args.repeats, before)
    sizes = [int(x) for x in args.sizes.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="cae-bench-estimation-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        print(f"{'CAEs':>5} {'respondents':>11} {'rows':>7} {'seconds':>8} {'CPU s':>6} {'peak MB':>8} "
              f"{'s / CAE':>8} {'runs':>5}", flush=True)
        for n in sizes:
            folder = work / f"national-{n}"
            t0 = time.perf_counter()
            config, processed = prepare(n, args.per_cae, folder)
            prep = time.perf_counter() - t0
            runs = 1 if n == max(sizes) and len(sizes) > 1 else args.repeats
            measured, before_runs = _pairs(config, folder, processed, folder, runs, before)
            if before_runs:
                print(f"{'':>5} " + _line(f"before ({before})", before_runs), flush=True)
                _print_comparison(compare_tables(Path(before_runs[0]["table"]), Path(measured[0]["table"])))
            secs = statistics.median(m["seconds"] for m in measured)
            cpu = statistics.median(m["cpu_seconds"] for m in measured)
            peak = max(m["peak_mb"] for m in measured)
            r = {**measured[0], "seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "runs": runs,
                 "all_seconds": [round(m["seconds"], 2) for m in measured], "prepare_seconds": prep}
            if before_runs:
                r["before"] = {"seconds": statistics.median(m["seconds"] for m in before_runs),
                               "cpu_seconds": statistics.median(m["cpu_seconds"] for m in before_runs),
                               "all_seconds": [round(m["seconds"], 2) for m in before_runs],
                               "comparison": compare_tables(Path(before_runs[0]["table"]),
                                                            Path(measured[0]["table"]))}
            results.append(r)
            print(f"{n:>5} {r['respondents']:>11} {r['rows']:>7} {secs:>8.2f} {cpu:>6.2f} {peak:>8.0f} "
                  f"{secs / n:>8.3f} {runs:>5}", flush=True)
        if len(results) >= 2:
            a, b = results[0], results[-1]
            print(f"CAEs x{b['caes'] / a['caes']:.0f}: time x{b['seconds'] / a['seconds']:.1f} "
                  f"(linear: x{b['caes'] / a['caes']:.0f}, quadratic: x{(b['caes'] / a['caes']) ** 2:.0f}); "
                  f"peak memory {a['peak_mb']:.0f} -> {b['peak_mb']:.0f} MB")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
