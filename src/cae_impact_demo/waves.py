"""The demo's second wave (2027): the same consortium surveyed again, with a known truth of change.

Deterministic (same bytes at every run), synthetic like the first wave (:mod:`cae_impact_demo.demo`):

* the 2027 population of a CAE that took part in 2026 is the same entrepreneurs (the 2026
  population of :func:`cae_impact_demo.demo.simulate_population`); CAE 7 does not take part; CAE 8
  joins (a population of its own, drawn from the same model);
* people do not give the same answers a year later: for every question block (a question, or a
  question with the one it filters, or a before/now pair), the answers of 30 % of each CAE's
  entrepreneurs are shuffled among them, which keeps each CAE's distribution exactly and leaves
  70 % of the answers as they were (the correlation of linked answers a panel has);
* a few indicators truly move (:data:`MOVES`): a share of the entrepreneurs change their answer
  in one direction, the same probability in every CAE; everything else is flat;
* one question is reworded in the 2027 codebook (``config/codebook-2027.yaml``: the health
  question), so its indicator is not compared;
* each entrepreneur answers in 2027 or not independently of 2026, with the response
  propensity of 2026 (CAE x sex x stage only): within a weighting cell the respondents remain
  a random sample, and those who answered in 2026 too (about 40 % of the 2027 respondents,
  their CAE's 2026 response rate) are linked: they answer with the same identifier (token,
  link identifier, e-mail or questionnaire number), hence the same pseudonym once cleaned
  with the same key. (Forcing a fixed linked share instead, whatever the CAE's response rate,
  would make the 2027 sample lean against the 2026 one and the errors of the two waves
  negatively correlated: a design no survey has.)

Outputs: ``data/raw/demo/2027/<cae>/…`` (exports), ``truth.json`` (true levels, as 2026),
``truth_changes.csv`` (the true change of every comparable figure: each continuing CAE, the
consortium, the consortium on the CAEs of both waves) and ``TRUTH.md`` (what moved, by how
much, the linked respondents).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cae_impact.spec.codebook import Codebook, load_codebook
from cae_impact.spec.config import PROJECT_ROOT, load_study

from .demo import (
    DEMO_SEED,
    CaeParams,
    Population,
    _export_bytes,
    _params_for,
    compute_truth,
    draw_submissions,
    indicator_value,
    population_frame,
    sheet_numbers,
    simulate_population,
    update_study_population,
)

WAVE2_SEED = DEMO_SEED + 2027
CHURN = 0.30
#: the new CAE's generative parameters (a mid-sized, fairly lively cooperative)
NEW_CAE = CaeParams(0.57, (0.27, 0.49, 0.24), 0.0, 0.1, 1.0, 0.10, 0.05, 0.05, 0.05, 70, date(2027, 3, 8),
                    {"personne": 1.3}, peer_never=0.08)
NEW_CAE_TOTAL = 160
#: the true moves: question, from codes, to code, probability of moving (every CAE)
MOVES: tuple[tuple[str, tuple[str, ...], str, float, str], ...] = (
    ("less_isolated", ("plutotpas", "pasdutout"), "plutot", 0.40, "less_isolated"),
    ("ag_participation", ("non",), "oui", 0.25, "ag_participation"),
    ("training_received", ("oui",), "non", 0.18, "training_received"),
    ("cae_values", ("tout", "plutot"), "plutotpas", 0.10, "cae_values"),
)
#: question blocks shuffled together (a filter and what it filters; before / now pairs)
BLOCKS = (("training_received", "training_topics"), ("loan_taken", "loan_easier"),
          ("income_before", "income_now"), ("satisfaction_before", "satisfaction_now"))


def _copy_population(pop: Population, keep: np.ndarray, cae_index: np.ndarray, cae_ids: list[str]) -> Population:
    answers = {q: np.array(v[keep], dtype=v.dtype, copy=True) for q, v in pop.answers.items()}
    return Population(cae_ids=cae_ids, cae=cae_index, answers=answers, propensity=pop.propensity[keep].copy())


def _concat(a: Population, b: Population, cae_ids: list[str]) -> Population:
    offset = len(a.cae_ids)
    answers = {q: np.concatenate([a.answers[q], b.answers[q]]) for q in a.answers}
    return Population(cae_ids=cae_ids, cae=np.concatenate([a.cae, b.cae + offset]), answers=answers,
                      propensity=np.concatenate([a.propensity, b.propensity]))


def _blocks(cb: Codebook) -> list[tuple[str, ...]]:
    inside = {q for b in BLOCKS for q in b}
    singles = [(q.id,) for q in cb.questions.values()
               if q.type != "text" and q.section != "profile" and q.id not in inside and not q.relevant]
    filtered = [(q.id,) for q in cb.questions.values()
                if q.type != "text" and q.section != "profile" and q.id not in inside and q.relevant]
    return [*BLOCKS, *singles, *filtered]


def churn(cb: Codebook, pop: Population, rng: np.random.Generator, share: float = CHURN) -> None:
    """Shuffle the answers of ``share`` of each CAE's entrepreneurs, block by block (in place).

    Only among entrepreneurs to whom the block applies (an answer in its first question), so the
    skip logic stays true and each CAE's distribution of every question is kept exactly.
    """
    for block in _blocks(cb):
        first = pop.answers[block[0]]
        has = np.array([not (v is None or (isinstance(v, float) and np.isnan(v))) for v in first], dtype=bool)
        for c in range(len(pop.cae_ids)):
            members = np.flatnonzero((pop.cae == c) & has)
            k = int(round(share * len(members)))
            if k < 2:
                continue
            pick = rng.choice(members, k, replace=False)
            perm = rng.permutation(pick)
            for q in block:
                col = pop.answers[q]
                col[pick] = col[perm].copy()


def apply_moves(pop: Population, rng: np.random.Generator) -> None:
    """The true changes (:data:`MOVES`), in place; a training no longer received has no topics."""
    for qid, frm, to, prob, _ in MOVES:
        col = pop.answers[qid]
        who = np.flatnonzero(np.array([v in frm for v in col], dtype=bool) & (rng.random(len(col)) < prob))
        col[who] = to
        if qid == "training_received":
            topics = pop.answers["training_topics"]
            for i in who:
                topics[i] = None


def _propensity_draw(rng: np.random.Generator, pool: np.ndarray, propensity: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``pool``, without replacement, with probabilities growing with the propensity."""
    k = min(k, len(pool))
    keys = np.log(rng.random(len(pool))) / np.exp(propensity[pool])
    return pool[np.argsort(-keys, kind="stable")[:k]]


def wave_populations(s1, s2, seed: int = WAVE2_SEED) -> tuple[Population, Population, dict[str, np.ndarray]]:
    """The two waves' populations, every member's answers: the 2026 one and the 2027 one.

    ``old_index`` maps each continuing CAE to the 2026 index of each of its 2027 members (the
    same people, in the same order). Used by :func:`generate_wave2` and by the simulation of
    the change intervals' coverage (``scripts/simulate_change_coverage.py``), which draws the
    respondents of both waves again and again from these populations.
    """
    cb1 = load_codebook(s1.codebook)
    params1 = _params_for(s1, DEMO_SEED)
    pop1 = simulate_population(cb1, s1.cae_ids, [c.population.total for c in s1.caes], params1, DEMO_SEED)
    # ---- the 2027 population -----------------------------------------------------------------
    continuing = [c for c in s2.cae_ids if c in s1.cae_ids]
    new = [c for c in s2.cae_ids if c not in s1.cae_ids]
    if len(new) > 1:
        raise ValueError("the demo's second wave has one new CAE")
    keep = np.concatenate([np.flatnonzero(pop1.cae == s1.cae_ids.index(c)) for c in continuing])
    cae_index = np.concatenate([np.full(int((pop1.cae == s1.cae_ids.index(c)).sum()), k)
                                for k, c in enumerate(continuing)])
    pop2 = _copy_population(pop1, keep, cae_index, continuing)
    old_index = {c: keep[cae_index == k] for k, c in enumerate(continuing)}  # 2026 index of each 2027 person
    if new:
        total_new = s2.cae(new[0]).population.total if s2.cae(new[0]).population.total else NEW_CAE_TOTAL
        pop_new = simulate_population(cb1, new, [total_new], [NEW_CAE], seed)
        pop2 = _concat(pop2, pop_new, [*continuing, *new])
    # the study's CAE order
    order = [pop2.cae_ids.index(c) for c in s2.cae_ids]
    remap = np.empty(len(order), dtype=int)
    for k, j in enumerate(order):
        remap[j] = k
    pop2 = Population(cae_ids=list(s2.cae_ids), cae=remap[pop2.cae], answers=pop2.answers,
                      propensity=pop2.propensity)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    churn(cb1, pop2, rng)
    apply_moves(pop2, rng)

    return pop1, pop2, old_index


def generate_wave2(root: Path | None = None, seed: int = WAVE2_SEED, *,
                   study1_path: str = "config/study.yaml", study2_path: str = "config/study-2027.yaml",
                   update_study: bool = False) -> dict[str, Any]:
    """Write the 2027 wave's exports, truth and README (see the module docstring)."""
    root = Path(root) if root is not None else PROJECT_ROOT
    s1 = load_study(study1_path, root=root)
    s2 = load_study(study2_path, root=root)
    cb1 = load_codebook(s1.codebook)
    cb2 = load_codebook(s2.codebook)
    params1 = _params_for(s1, DEMO_SEED)
    pop1, pop2, old_index = wave_populations(s1, s2, seed)
    continuing = [c for c in s2.cae_ids if c in s1.cae_ids]
    # who answered in 2026, and with which identity (the same draw as the 2026 exports)
    identity1: dict[str, dict[int, dict[str, str]]] = {}
    for i, cae in enumerate(s1.caes):
        subs, _ = draw_submissions(cb1, pop1, i, params1[i], DEMO_SEED)
        numbers = sheet_numbers(subs)  # a staff spreadsheet identifies by questionnaire number
        identity1[cae.id] = {s.person: {**s.identity, "sheet_number": str(numbers[s.person])}
                             for s in subs if s.kind == "complete"}

    # ---- respondents and exports ---------------------------------------------------------------
    written: list[Path] = []
    respondents: dict[str, dict[str, int]] = {}
    linked: dict[str, int] = {}
    params2: list[CaeParams] = []
    for k, cae in enumerate(s2.caes):
        members = np.flatnonzero(pop2.cae == k)
        if cae.id in continuing:
            base = params1[s1.cae_ids.index(cae.id)]
            p = replace(base, fieldwork_start=base.fieldwork_start.replace(year=2027))
            olds = old_index[cae.id]
            answered = np.array([o in identity1[cae.id] for o in olds], dtype=bool)
            drng = np.random.default_rng(np.random.SeedSequence([seed, 12, k]))
            chosen = np.sort(_propensity_draw(drng, members, pop2.propensity, p.respondents))
            link = chosen[np.isin(chosen, members[answered])]
            pos = {int(m): int(o) for m, o in zip(members, olds, strict=True)}
            identities = {int(i): identity1[cae.id][pos[int(i)]] for i in link}
            reserved = {x for ident in identity1[cae.id].values() for x in (ident["token"], ident["rid"], ident["email"])}
            subs, counts = draw_submissions(cb2, pop2, k, p, seed, chosen=chosen, identities=identities,
                                            number_offset=1000, reserved=reserved)
            for sub in subs:  # new questionnaires are numbered after the earlier wave's
                sub.identity.setdefault("sheet_number", sub.identity["number"])
            linked[cae.id] = len(link)
        else:
            p = NEW_CAE
            subs, counts = draw_submissions(cb2, pop2, k, p, seed)
            linked[cae.id] = 0
        params2.append(p)
        respondents[cae.id] = counts
        variant = "full" if cae.id == "cae-6" else "codes"
        files = _export_bytes(cb2, cae.format, cae.export, subs, seed + k, variant, cae.label)
        cae.export.parent.mkdir(parents=True, exist_ok=True)
        cae.export.write_bytes(files["export"])  # type: ignore[arg-type]
        written.append(cae.export)
        if "mapping" in files:
            mpath = cae.mapping or cae.export.parent / "mapping.yaml"
            mpath.write_text(files["mapping"], encoding="utf-8", newline="\n")  # type: ignore[arg-type]
            written.append(mpath)
    demo_dir = s2.caes[0].export.parent.parent
    truth = compute_truth(cb2, s2, pop2, seed, respondents)
    truth["linked_respondents"] = linked
    (demo_dir / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n",
                                         encoding="utf-8", newline="\n")
    written.append(demo_dir / "truth.json")
    changes = true_changes(cb1, cb2, s1, s2, pop1, pop2)
    changes.to_csv(demo_dir / "truth_changes.csv", index=False, float_format="%.6f", lineterminator="\n")
    written.append(demo_dir / "truth_changes.csv")
    (demo_dir / "TRUTH.md").write_text(truth_markdown(changes, respondents, linked, s1, s2),
                                       encoding="utf-8", newline="\n")
    written.append(demo_dir / "TRUTH.md")
    if update_study:
        update_study_population(s2.path, {c: truth["population"][c] for c in s2.cae_ids})
    return {"written": written, "respondents": respondents, "linked": linked}


def _values(cb: Codebook, ind, frame: pd.DataFrame) -> dict[str, float | None]:
    v = indicator_value(cb, ind.id, frame)
    kind = ind.rule["kind"]
    if kind == "distribution":
        return dict(v["values"])
    if kind == "paired_difference":
        return {"before": v["before"], "after": v["after"], "difference": v["value"]}
    return {"": v["value"]}


def true_changes(cb1: Codebook, cb2: Codebook, s1, s2, pop1: Population, pop2: Population) -> pd.DataFrame:
    """The true change of every comparable figure (population values, 2027 minus 2026)."""
    from cae_impact.analysis.waves import (
        SCOPE_CAE,
        SCOPE_COMMON,
        SCOPE_CONSORTIUM,
        codebook_signatures,
        comparability,
    )

    comps = {c.indicator_id: c for c in comparability(codebook_signatures(cb1), cb2, cb2.path) if c.comparable}
    f1, f2 = population_frame(cb1, pop1), population_frame(cb2, pop2)
    common = [c for c in s2.cae_ids if c in s1.cae_ids]
    scopes = [*[(c, SCOPE_CAE, f1[f1["cae_id"] == c], f2[f2["cae_id"] == c]) for c in common],
              ("consortium", SCOPE_CONSORTIUM, f1, f2),
              ("consortium", SCOPE_COMMON, f1[f1["cae_id"].isin(common)], f2[f2["cae_id"].isin(common)])]
    moved = {m[4] for m in MOVES}
    rows = []
    for ind in cb2.indicators:
        if ind.id not in comps:
            continue
        for target, scope, a, b in scopes:
            v1, v2 = _values(cb1, cb1.indicator(ind.id), a), _values(cb2, ind, b)
            for cat, pcat in comps[ind.id].categories.items():
                x1, x2 = v1.get(pcat), v2.get(cat)
                rows.append({"indicator_id": ind.id, "kind": ind.rule["kind"], "target": target, "scope": scope,
                             "category": cat, "true_previous": x1, "true_current": x2,
                             "true_change": None if x1 is None or x2 is None else x2 - x1,
                             "moved": ind.id in moved})
    return pd.DataFrame(rows)


def truth_markdown(changes: pd.DataFrame, respondents: dict, linked: dict, s1, s2) -> str:
    """``TRUTH.md``: what truly moved, by how much, and the linked respondents."""
    cons = changes[(changes["scope"] == "consortium") & (changes["category"] == "")]
    lines = [
        "# Données synthétiques — vague 2027 de l'étude de démonstration : la vérité des évolutions",
        "",
        "**Synthetic data.** The 2027 wave of the demo study, generated by `cae_impact_demo.waves`",
        "(`make data-wave2`, deterministic). Same entrepreneurs as 2026 in the CAEs that took part",
        "in both waves; CAE 7 did not take part in 2027; CAE 8 joined. 30 % of each CAE's answers",
        "were shuffled among its entrepreneurs (distributions kept: no true change), then the",
        "indicators below truly moved. The health question was reworded in `config/codebook-2027.yaml`:",
        "`good_health` is not compared.",
        "",
        "## What truly moved (consortium, population values)",
        "",
        "| indicator | 2026 | 2027 | true change | mechanism |",
        "|---|---|---|---|---|",
    ]
    for _qid, frm, to, prob, ind in MOVES:
        r = cons[cons["indicator_id"] == ind]
        if r.empty:
            continue
        r = r.iloc[0]
        lines.append(f"| `{ind}` | {r['true_previous']:.4f} | {r['true_current']:.4f} | "
                     f"{r['true_change']:+.4f} | {prob:.0%} of « {', '.join(frm)} » → « {to} » |")
    lines += [
        "",
        "`training_management` (among those trained) moves too, as a consequence of the training move. "
        "Every other comparable figure is exactly flat in each CAE of both waves and in the consortium "
        "of those CAEs; the whole consortium's figures move a little because CAE 7 left and CAE 8 joined. "
        "Every true change, per CAE, for the consortium and for the consortium on the CAEs of both "
        "waves, is in `truth_changes.csv` (proportions in [0, 1], euros, months; 2027 minus 2026).",
        "",
        "## Respondents",
        "",
        "| CAE | respondents 2027 | answered in 2026 too (linked) |",
        "|---|---|---|",
    ]
    for c in s2.cae_ids:
        n = respondents[c]["complete"]
        lines.append(f"| {s2.target_label(c)} | {n} | {linked[c]} ({linked[c] / n:.0%}) |")
    lines += ["", f"Left: {', '.join(s1.target_label(c) for c in s1.cae_ids if c not in s2.cae_ids)}. "
              f"Joined: {', '.join(s2.target_label(c) for c in s2.cae_ids if c not in s1.cae_ids)}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: write the demo's 2027 wave."""
    p = argparse.ArgumentParser(prog="python -m cae_impact_demo.waves",
                                description="Generate the demo study's second wave (2027).")
    p.add_argument("--update-study", action="store_true",
                   help="write the generated register counts into config/study-2027.yaml")
    args = p.parse_args(argv)
    out = generate_wave2(update_study=args.update_study)
    for path in out["written"]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def recovery(changes: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Each published, interval-bearing change of the demo next to its true value.

    ``covered``: the 95 % interval contains the true change; ``detected``: the change is
    significant in its report (corrected test) — a true move of 0 that is detected is a false
    discovery.
    """
    t = truth.drop(columns=[c for c in ("kind",) if c in truth.columns]).copy()
    t["category"] = t["category"].fillna("").astype(str)
    m = changes.merge(t, on=["indicator_id", "target", "scope", "category"], how="inner")
    m = m[~m["suppressed"].astype(bool) & m["ci_low"].notna() & m["true_change"].notna()].copy()
    m["covered"] = (m["ci_low"] <= m["true_change"]) & (m["true_change"] <= m["ci_high"])
    return m.reset_index(drop=True)
