"""svy, called directly, against every R oracle line of the project (docs/survey-engine.md).

Reads the R outputs of ``tests/fixtures/oracles`` (copies of ``../shared/oracles``), makes the
same calls with svy's own API (no project code), and prints for each line the largest relative
difference and whether it is within 1e-6. R's ``svyciprop`` methods without a svy counterpart
(``likelihood``, ``mean``) are listed as such.

    .venv/bin/python scripts/svy_oracles.py [oracle folder]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import svy

ROOT = Path(__file__).resolve().parents[1]


def parse(path: Path) -> dict[str, list[float]]:
    """``label -> numbers`` of an R output (a line starting with ``...`` continues a label)."""
    out: dict[str, list[float]] = {}
    prev = None
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        toks = raw.split()
        nums: list[float] = []
        while toks:
            try:
                nums.insert(0, float(toks[-1]))
            except ValueError:
                break
            toks.pop()
        label = " ".join(toks)
        if label.startswith("..."):
            label = f"{prev} | {label[3:].strip()}"
        else:
            prev = label
        out[label] = nums
    return out


def main(folder: Path) -> int:
    """Print one line per oracle line; exit status 0 (the table is the result)."""
    api, toy = parse(folder / "oracle-output.txt"), parse(folder / "consortium_toy-output.txt")
    rows: list[tuple[str, float | None]] = []

    def check(table: dict, label: str, got: list[float]) -> None:
        exp = np.array(table[label])
        rel = float(np.max(np.abs(np.array(got, float) - exp) / np.abs(exp)))
        rows.append((label, rel))
        print(f"{'yes' if rel <= 1e-6 else 'NO ':3} {rel:9.1e}  {label}")

    def first(res) -> tuple[float, float]:
        t = res.to_polars()
        return t["est"][0], t["se"][0]

    d = pl.read_csv(folder / "apistrat.csv").with_columns(
        (pl.col("sch.wide") == "Yes").cast(pl.Float64).alias("yes"))
    s = svy.Sample(d, svy.Design(stratum="stype", wgt="pw", pop_size="fpc"))
    check(api, "dstrat svymean api00: est se", first(s.estimation.mean("api00")))
    check(api, "dstrat svytotal enroll: est se", first(s.estimation.total("enroll")))
    check(api, "dstrat svymean sch.wide==Yes: est se", first(s.estimation.mean("yes")))
    for meth in ("logit", "beta", "likelihood", "mean"):
        label = f"dstrat svyciprop yes method={meth}: est lo hi"
        if meth in ("likelihood", "mean"):
            rows.append((label, None))
            print(f"n/a {'':9}  {label}  (no svy interval of that kind)")
            continue
        t = s.estimation.prop("yes", ci_method=meth).to_polars().filter(pl.col("yes") == 1.0)
        check(api, label, [t["est"][0], t["lci"][0], t["uci"][0]])
    t = s.estimation.mean("api00", by="stype").to_polars().sort("stype")
    check(api, "dstrat svyby api00 by stype (E H M): est", t["est"].to_list())
    check(api, "dstrat svyby api00 by stype (E H M): est | se", t["se"].to_list())
    c = svy.Sample(pl.read_csv(folder / "apiclus1.csv"), svy.Design(psu="dnum", wgt="pw", pop_size="fpc"))
    check(api, "dclus1 svymean api00: est se", first(c.estimation.mean("api00")))
    types = {"E": 4421, "H": 755, "M": 1018}
    ps = c.weighting.poststratify(controls=types, cells="stype", wgt_name="psw")
    check(api, "dclus1 postStratify(stype) svymean api00: est se", first(ps.estimation.mean("api00")))
    rk = c.weighting.rake(controls={"stype": types, "sch.wide": {"No": 1072, "Yes": 5122}},
                          wgt_name="rkw", tol=1e-12, max_iter=100)
    check(api, "dclus1 rake(stype, sch.wide), converged to 1e-10: svymean api00: est se",
          first(rk.estimation.mean("api00")))

    t0 = pl.read_csv(folder / "consortium_toy.csv").with_columns(
        (pl.col("q1") >= 3).cast(pl.Float64).alias("agree"), (pl.col("N") / pl.len().over("coop")).alias("w"))
    ts = svy.Sample(t0, svy.Design(stratum="coop", wgt="w", pop_size="N"))
    check(toy, "svymean agree: est se", first(ts.estimation.mean("agree")))
    for meth, label in (("logit", "svyciprop agree logit: est lo hi"),
                        ("beta", "svyciprop agree beta (Korn-Graubard): est lo hi")):
        t = ts.estimation.prop("agree", ci_method=meth).to_polars().filter(pl.col("agree") == 1.0)
        check(toy, label, [t["est"][0], t["lci"][0], t["uci"][0]])
    check(toy, "svymean ca: est se", first(ts.estimation.mean("ca")))
    t = ts.estimation.mean("agree", by="coop").to_polars().sort("coop")
    check(toy, "svyby agree by coop (A B C): est", t["est"].to_list())
    check(toy, "svyby agree by coop (A B C): est | se", t["se"].to_list())
    t = ts.estimation.prop("q1").to_polars().sort("q1")
    check(toy, "svymean factor(q1) levels 1..4: est", t["est"].to_list())
    check(toy, "svymean factor(q1) levels 1..4: est | se", t["se"].to_list())
    pop = {("A", "F"): 22, ("A", "M"): 18, ("B", "F"): 10, ("B", "M"): 15, ("C", "F"): 35, ("C", "M"): 25}
    tps = ts.weighting.poststratify(controls=pop, cells=["coop", "sex"], wgt_name="psw")
    check(toy, "postStratify(coop x sex) svymean agree: est se", first(tps.estimation.mean("agree")))
    t = tps.estimation.prop("agree", ci_method="logit").to_polars().filter(pl.col("agree") == 1.0)
    check(toy, "postStratify(coop x sex) svyciprop logit: est lo hi", [t["est"][0], t["lci"][0], t["uci"][0]])
    margins = {"coop": {"A": 40, "B": 25, "C": 60}, "sex": {"F": 67, "M": 58}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        two = ts.weighting.rake(controls=margins, wgt_name="rkw", max_iter=2, on_nonconvergence="ignore")
    check(toy, "rake(coop; sex), R default control (stops after 2 sweeps, not converged): svymean agree: est se",
          first(two.estimation.mean("agree")))
    conv = ts.weighting.rake(controls=margins, wgt_name="rkw", tol=1e-12, max_iter=100)
    check(toy, "rake(coop; sex), converged (maxit 100, epsilon 1e-10): svymean agree: est se",
          first(conv.estimation.mean("agree")))
    ok = sum(1 for _, r in rows if r is not None and r <= 1e-6)
    print(f"{len(api) + len(toy)} oracle lines, {ok} reproduced by svy to 1e-6, "
          f"{sum(1 for _, r in rows if r is None)} without a svy counterpart")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "fixtures" / "oracles"))
