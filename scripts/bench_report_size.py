"""Cold build and one PDF's time of two checkouts of the project, measured in one run.

Usage: python scripts/bench_report_size.py --before <checkout> [--after <checkout>] [--target cae-4]

Each checkout is built from scratch (`make reports` with fresh processed, reports and build
folders, one after the other on the same machine), then the chosen target's PDF is rendered
again from its HTML three times (the median is kept). Both use this project's environment
(`.venv`): the checkout's own ``src/`` comes first on ``PYTHONPATH``. Prints a table and writes
it as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(checkout: Path, scratch: Path, target: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    for name in ("requirements.lock", "pyproject.toml"):  # never rebuild the shared environment
        os.utime(checkout / name, (0, 0))
    roots = [f"PROCESSED_ROOT={scratch / 'processed'}", f"REPORTS_ROOT={scratch / 'reports'}",
             f"BUILD_ROOT={scratch / 'build'}", f"VENV={ROOT / '.venv'}"]
    start = time.perf_counter()
    subprocess.run(["make", "--no-print-directory", "reports", *roots], cwd=checkout, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    cold = time.perf_counter() - start
    wave = re.search(r'^wave:\s*"?([^"\n]+)"?', (checkout / "config" / "study.yaml").read_text(), re.M).group(1)
    folder = scratch / "reports" / wave / target
    code = ("import sys, time; from pathlib import Path; from cae_impact.render import report; "
            "t = time.perf_counter(); report.render_pdf(Path(sys.argv[1]), Path(sys.argv[2])); "
            "print(time.perf_counter() - t)")
    times = []
    for _ in range(3):
        out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code, str(folder / "report.html"),
                              str(scratch / "again.pdf")], env=env, check=True, capture_output=True, text=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    info = subprocess.run(["pdfinfo", str(folder / "report.pdf")], capture_output=True, text=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    return {"cold_build_s": round(cold, 1), "pdf_s": round(statistics.median(times), 2), "pages": pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--target", default="cae-4")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = {}
    for name, checkout in (("before", args.before), ("after", args.after)):
        with tempfile.TemporaryDirectory() as scratch:
            results[name] = build(checkout.resolve(), Path(scratch), args.target)
        print(f"{name:7s} {checkout}: {results[name]}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
