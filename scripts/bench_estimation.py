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

Generated studies are reused when the scratch folder already holds them (``--work``). With
``--demo`` the demo study (``config/study.yaml``) is estimated from ``--processed-root``
(default ``data/processed``, only read) into a scratch folder, ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import json
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


def _child(config: Path, root: Path, processed: Path, reports: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure", str(config), str(root), str(processed),
                           str(reports)], capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"estimation failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_demo(processed: Path, repeats: int) -> int:
    """Estimate the demo study ``repeats`` times (fresh process each) and print the median."""
    with tempfile.TemporaryDirectory(prefix="cae-bench-demo-") as tmp:
        runs = [_child(ROOT / "config" / "study.yaml", ROOT, processed, Path(tmp) / f"reports-{i}")
                for i in range(repeats)]
    secs = [r["seconds"] for r in runs]
    print(f"demo study: {runs[0]['caes']} CAEs, {runs[0]['respondents']} respondents, "
          f"{runs[0]['rows']} rows; estimation {statistics.median(secs):.2f} s (median of {repeats}: "
          f"{', '.join(f'{x:.2f}' for x in secs)}), CPU {statistics.median(r['cpu_seconds'] for r in runs):.2f} s, "
          f"peak {max(r['peak_mb'] for r in runs):.0f} MB")
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
    p.add_argument("--measure", nargs=4, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    if args.demo:
        return bench_demo(args.processed_root, args.repeats)
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
            measured = []
            for i in range(runs):
                reports = folder / f"reports-{i}"
                shutil.rmtree(reports, ignore_errors=True)
                measured.append(_child(config, folder, processed, reports))
            secs = statistics.median(m["seconds"] for m in measured)
            cpu = statistics.median(m["cpu_seconds"] for m in measured)
            peak = max(m["peak_mb"] for m in measured)
            r = {**measured[0], "seconds": secs, "cpu_seconds": cpu, "peak_mb": peak, "runs": runs,
                 "all_seconds": [round(m["seconds"], 2) for m in measured], "prepare_seconds": prep}
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
