"""Benchmark: ingest and clean a generated national study, time and peak memory by size.

Generates a synthetic national study with ``cae_impact_demo.demo.generate_national_study`` (LimeSurvey
exports, about ``--respondents`` complete respondents spread over ``--caes`` CAEs), then:

1. concatenates the CAEs' exports into single LimeSurvey files of increasing size and reads,
   cleans and writes each one in a fresh process (``read_export`` + ``clean_responses`` +
   ``write_processed``), reporting wall time and peak resident memory — growth should be linear
   in rows;
2. cleans the whole study CAE by CAE (``clean_export`` + ``write_processed``), as ``make`` does.

Each measurement runs in its own interpreter so that peak memory (``ru_maxrss``) is that of one
run; ``baseline`` is the peak after the imports, before any data is read.

    .venv/bin/python scripts/bench_cleaning.py                    # 50,000 respondents
    .venv/bin/python scripts/bench_cleaning.py --respondents 5000 --caes 10   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    """Peak resident memory of this process, in MB.

    Linux's ``VmHWM`` belongs to the process image, so it starts afresh in a child after exec;
    ``ru_maxrss`` (other systems) would also count the parent's memory at fork time.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_file(path: Path, out: Path) -> dict:
    """Read, clean and write one LimeSurvey export; return timings (s) and memory (MB)."""
    import cae_impact.clean.schema  # noqa: F401  (pandera import outside the timings)
    from cae_impact.clean.cleaning import clean_responses, write_processed
    from cae_impact.ingest import read_export
    from cae_impact.spec.codebook import load_codebook

    cb = load_codebook()
    baseline = _peak_mb()
    c0, t0 = time.process_time(), time.perf_counter()
    raw = read_export(path, "limesurvey", codebook=cb)
    t1 = time.perf_counter()
    result = clean_responses(raw, cb, cae_id="bench", wave="2026", key=secrets.token_bytes(32))
    t2 = time.perf_counter()
    write_processed(result, out)
    c3, t3 = time.process_time(), time.perf_counter()
    acc = result.accounting
    return {
        "rows": acc.raw_rows,
        "kept": acc.kept,
        "read_s": t1 - t0,
        "clean_s": t2 - t1,
        "write_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": c3 - c0,
        "baseline_mb": baseline,
        "peak_mb": _peak_mb(),
    }


def measure_study(config: Path, root: Path, out: Path) -> dict:
    """Clean every CAE of a study configuration, one after the other."""
    import cae_impact.clean.schema  # noqa: F401
    from cae_impact.clean.cleaning import clean_export, write_processed
    from cae_impact.spec.codebook import load_codebook
    from cae_impact.spec.config import load_study

    study = load_study(config, root=root)
    cb = load_codebook(study.codebook)
    key = secrets.token_bytes(32)
    baseline = _peak_mb()
    c0, t0 = time.process_time(), time.perf_counter()
    rows = kept = 0
    for cae in study.caes:
        result = clean_export(study, cae.id, codebook=cb, key=key)
        write_processed(result, out / cae.id)
        rows += result.accounting.raw_rows
        kept += result.accounting.kept
    return {"caes": len(study.caes), "rows": rows, "kept": kept, "total_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0, "baseline_mb": baseline, "peak_mb": _peak_mb()}


def concatenate(files: list[Path], target: Path) -> None:
    """One LimeSurvey export from several with the same header (response ids renumbered)."""
    import csv
    import io

    with target.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        header = None
        next_id = 1
        for path in files:
            reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""), delimiter=";")
            head = next(reader)
            if header is None:
                header = head
                writer.writerow(header)
            elif head != header:
                raise SystemExit(f"{path}: header differs from the first export")
            for record in reader:
                record[0] = str(next_id)
                next_id += 1
                writer.writerow(record)


def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=50_000, help="complete respondents in all")
    parser.add_argument("--caes", type=int, default=50, help="CAEs of the generated study")
    parser.add_argument("--fractions", default="0.125,0.25,0.5,1", help="sizes of the single-file runs")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--measure-file", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure-study", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_file:
        print(json.dumps(measure_file(*args.measure_file)))
        return 0
    if args.measure_study:
        print(json.dumps(measure_study(*args.measure_study)))
        return 0

    from cae_impact_demo.demo import generate_national_study

    work = args.work or Path(tempfile.mkdtemp(prefix="cae-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    per_cae = max(1, round(args.respondents / args.caes))
    config = work / "study" / "config" / "study.yaml"
    if config.exists():
        print(f"reusing the study generated under {work}")
    else:
        t0 = time.perf_counter()
        config = generate_national_study(args.caes, per_cae, work / "study")
        print(f"generated {args.caes} CAEs x ~{per_cae} respondents in {time.perf_counter() - t0:.1f} s "
              f"(not measured) under {work}")
    exports = sorted((work / "study" / "data" / "raw").rglob("export_limesurvey.csv"))

    print()
    print("Single LimeSurvey export, fresh process per size (read + clean + write):")
    print("(wall seconds per step; CPU seconds of the whole run, steadier on a busy machine)")
    print(f"{'rows':>8} {'kept':>8} {'read s':>7} {'clean s':>8} {'write s':>8} {'total s':>8} "
          f"{'CPU s':>6} {'CPU us/row':>10} {'peak MB':>8} {'+MB':>6} {'KB/row':>7}")
    runs = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        k = max(1, round(fraction * len(exports)))
        path = work / f"single_{k}.csv"
        concatenate(exports[:k], path)
        r = _child(["--measure-file", str(path), str(work / f"out_{k}")])
        runs.append(r)
        extra = r["peak_mb"] - r["baseline_mb"]
        print(f"{r['rows']:>8} {r['kept']:>8} {r['read_s']:>7.2f} {r['clean_s']:>8.2f} {r['write_s']:>8.2f} "
              f"{r['total_s']:>8.2f} {r['cpu_s']:>6.2f} {1e6 * r['cpu_s'] / r['rows']:>10.0f} {r['peak_mb']:>8.0f} "
              f"{extra:>6.0f} {1024 * extra / r['rows']:>7.1f}")
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        scale = large["rows"] / small["rows"]
        growth = (large["peak_mb"] - large["baseline_mb"]) / max(1.0, small["peak_mb"] - small["baseline_mb"])
        print(f"rows x{scale:.1f}: wall time x{large['total_s'] / small['total_s']:.1f}, "
              f"CPU time x{large['cpu_s'] / small['cpu_s']:.1f}, memory above baseline x{growth:.1f}")

    print()
    s = _child(["--measure-study", str(config), str(work / "study"), str(work / "out_study")])
    print(f"Whole study, CAE by CAE (clean_export + write_processed): {s['caes']} CAEs, {s['rows']} rows, "
          f"{s['kept']} kept, {s['total_s']:.1f} s wall, {s['cpu_s']:.1f} s CPU ({1e6 * s['cpu_s'] / s['rows']:.0f} us/row), "
          f"peak {s['peak_mb']:.0f} MB (baseline {s['baseline_mb']:.0f} MB)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
