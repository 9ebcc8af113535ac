"""What the notebooks call: strict parameter validation, then each step's compute/show/save.

The three notebooks hold no logic. Each one validates its parameters here
(:func:`cleaning_context`, :func:`effect_context`, :func:`profile_context`: unknown or invalid
values raise :class:`ParameterError` naming the parameter and the allowed values), then calls
one function per step. ``run_*``/``analyse_*`` compute (through the tested modules: cleaning,
survey, indicators), ``show_*`` display what the report prints (through ``present``, ``charts``
and ``narrative``), ``save_*`` write the step's outputs atomically.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cae_impact import estimation
from cae_impact.analysis import indicators, published, secrecy
from cae_impact.analysis.indicators import EstimationError
from cae_impact.analysis.published import load_reference as load
from cae_impact.clean.cleaning import clean_export, write_processed
from cae_impact.core.files import atomic_write, write_atomic
from cae_impact.render import editorial, evolution, present, story
from cae_impact.render import profile as prof
from cae_impact.render.annexes import select_verbatims
from cae_impact.render.chapters import View
from cae_impact.render.present import _show, show_frame
from cae_impact.spec.codebook import Codebook, load_codebook
from cae_impact.spec.config import (
    CONSORTIUM,
    PROJECT_ROOT,
    CaeConfig,
    StudyConfig,
)
from cae_impact.spec.layout import (
    CHANGES_FILE,
    ESTIMATES_FILE,
    WEIGHTING_FILE,
    study_dir,
    target_files,
)
from cae_impact.spec.parameters import ParameterError, _path, _study, _target

from .cache import sha256_file


@dataclass(frozen=True)
class CleaningContext:
    """Validated parameters of notebook 01 (one CAE)."""

    study: StudyConfig
    codebook: Codebook
    cae: CaeConfig
    processed_dir: Path

    def __repr__(self) -> str:
        return f"CleaningContext(cae={self.cae.id!r}, format={self.cae.format!r}, wave={self.study.wave!r})"

    def _repr_html_(self) -> str:
        return f"<p>Nettoyage : {self.cae.label} ({self.cae.id}), export {self.cae.format}</p>"


@dataclass(frozen=True)
class TargetContext:
    """Validated parameters of notebooks 03, 04 and 05 (one target; a domain only to analyse one alone)."""

    study: StudyConfig
    codebook: Codebook
    target: str
    processed_root: Path
    reports_root: Path
    domain: str | None = None

    @property
    def is_consortium(self) -> bool:
        """True when the target is the whole consortium."""
        return self.target == CONSORTIUM

    @property
    def label(self) -> str:
        """French label of the target (« CAE 3 », « Consortium »)."""
        return self.study.target_label(self.target)

    @property
    def target_dir(self) -> Path:
        """``reports/<wave>/<target>/``."""
        return self.reports_root / self.study.wave / self.target

    def processed_path(self, cae_id: str) -> Path:
        """A CAE's cleaned responses."""
        return self.processed_root / self.study.wave / cae_id / "responses.parquet"

    def __repr__(self) -> str:
        return f"TargetContext(target={self.target!r}, domain={self.domain!r}, wave={self.study.wave!r})"

    def _repr_html_(self) -> str:
        dom = f", domaine {self.domain}" if self.domain else ""
        return f"<p>Cible : {self.label}{dom}</p>"


def cleaning_context(*, study: str, cae: str, processed_root: str) -> CleaningContext:
    """Validate notebook 01's parameters."""
    st = _study(study)
    if cae not in st.cae_ids:
        raise ParameterError(f"parameter 'cae': {cae!r} is not a CAE of {st.path.name}; use one of: {', '.join(st.cae_ids)}")
    root = _path(processed_root, "processed_root")
    return CleaningContext(st, load_codebook(st.codebook), st.cae(cae), root / st.wave / cae)


def _target_context(study: str, target: str, processed_root: str, reports_root: str, domain: str | None) -> TargetContext:
    st = _study(study)
    tgt = _target(st, target)
    cb = load_codebook(st.codebook)
    if domain is not None:
        ids = [d.id for d in cb.domains]
        if domain not in ids:
            raise ParameterError(f"parameter 'domain': {domain!r} is not an effect domain; use one of: {', '.join(ids)}")
    ctx = TargetContext(st, cb, tgt, _path(processed_root, "processed_root"), _path(reports_root, "reports_root"), domain)
    missing = [c for c in st.cae_ids if not ctx.processed_path(c).exists()]
    if missing:
        raise ParameterError(
            f"cleaned data missing for {', '.join(missing)} under {ctx.processed_root / st.wave}: "
            f"run 'make data-processed' (notebook 01) first"
        )
    return ctx


def effect_context(*, study: str, target: str, processed_root: str, reports_root: str,
                   domain: str | None = None) -> TargetContext:
    """Validate notebook 03's parameters (a target; every effect domain, or the one named)."""
    return _target_context(study, target, processed_root, reports_root, domain)


def profile_context(*, study: str, target: str, processed_root: str, reports_root: str) -> TargetContext:
    """Validate notebook 04's parameters (a target)."""
    return _target_context(study, target, processed_root, reports_root, None)


# ------------------------------------------------------------------------------ step 01: cleaning


def run_cleaning(ctx: CleaningContext):
    """Read, clean and pseudonymise the CAE's export (:func:`cae_impact.clean.cleaning.clean_export`)."""
    return clean_export(ctx.study, ctx.cae.id, codebook=ctx.codebook)


def show_cleaning_summary(ctx: CleaningContext, result) -> None:
    """Display the accounting of every raw row (the identity is asserted by the cleaning)."""
    result.accounting.check()
    present.show_heading(f"Nettoyage des réponses — {ctx.cae.label}", 1)
    present.show_box("Décompte des lignes de l'export", result.accounting.format_text())
    counts = result.reason_counts()
    if len(counts):
        frame = pd.DataFrame({
            "Action": counts["action"].map({"row_set_aside": "ligne écartée", "value_blanked": "valeur effacée"}),
            "Motif": counts["label"],
            "Nombre": counts["n"].astype(int).astype(str),
        })
        present.show_table(frame, caption="Règles de nettoyage appliquées", numeric_columns=["Nombre"])


def show_quarantine(ctx: CleaningContext, result, limit: int = 30) -> None:
    """Display the first quarantine entries (values are already masked when personal)."""
    q = result.quarantine
    if q.empty:
        present.show_paragraphs("Aucune ligne écartée ni valeur effacée.")
        return
    shown = q.head(limit)[["raw_line", "column", "value", "reason", "action"]].astype(str)
    shown.columns = ["Ligne brute", "Colonne", "Valeur (masquée si personnelle)", "Motif", "Action"]
    present.show_table(
        shown, caption=f"Quarantaine ({len(q)} entrées, {min(limit, len(q))} affichées)",
        note="Le fichier complet est quarantine.csv, à côté des données nettoyées.",
    )


def save_cleaning(ctx: CleaningContext, result) -> dict[str, Path]:
    """Write responses.parquet, quarantine.csv and cleaning_log.json atomically."""
    return write_processed(result, ctx.processed_dir)


# ------------------------------------------------------------------------------ estimation (study)

def _reference_note(reference) -> dict | None:
    """What a CAE report says of the published reference (date, path, sha256), computed once."""
    if reference is None:
        return None
    try:
        shown = str(reference.path.relative_to(PROJECT_ROOT))
    except ValueError:
        shown = str(reference.path)
    return {"published": reference.published, "path": shown, "sha256": sha256_file(reference.path),
            "caes": len(reference.caes)}


def consortium_summary(weighting) -> dict:
    """The consortium's sample as reports print it: CAEs, population, respondents, design effect."""
    per_cae = weighting.per_cae
    return {
        "caes": int(len(per_cae)),
        "population": int(per_cae["population"].sum()),
        "respondents": int(per_cae["respondents"].sum()),
        "kish_deff": weighting.kish_deff,
        "effective_n": weighting.effective_n,
    }


def _context(study: StudyConfig, target: str, payload: dict, reference, note: dict | None) -> dict:
    """The sample and weighting a target's report prints (see :func:`target_files`)."""
    per_cae = payload["per_cae"]
    if target != CONSORTIUM:
        label = study.target_label(target)
        per_cae = [r for r in per_cae if r["cae_id"] == target]
        notes = [n for n in payload["notes"] if n.startswith(label + " ")]
    else:
        notes = list(payload["notes"])
    consortium = payload["consortium"]
    ref = None
    if reference is not None and target != CONSORTIUM:
        consortium = reference.meta.get("consortium", consortium)
        ref = {**note, "includes_target": target in reference.caes}
    return {"target": target, "per_cae": per_cae, "notes": notes, "consortium": consortium,
            "reference": ref}


def audit_published(study: StudyConfig, reports_root: Path):
    """The secrecy attack on the files a wave publishes.

    Every ``indicators.csv`` of the wave (the reports print the same numbers) and the
    published consortium reference.

    Returns the :class:`cae_impact.analysis.secrecy.AuditResult` (``exposed`` empty when every hidden
    count keeps a range that is neither a single value nor inside 1-4).
    """
    key = ["indicator_id", "target", "breakdown", "group", "category"]

    def read(path: Path) -> pd.DataFrame:
        out = pd.read_csv(path, dtype={"group": str, "category": str}, keep_default_na=False,
                          na_values=[""])
        for col in ("group", "category"):
            out[col] = out[col].fillna("")
        return out

    # Each target's own rows from its own file (a CAE report's consortium rows may be the
    # published reference, which the reference file carries as well).
    frames = []
    for target in study.targets:
        path = reports_root / study.wave / target / "indicators.csv"
        if path.exists():
            rows = read(path)
            frames.append(rows[rows["target"] == target])
    if not frames:
        raise FileNotFoundError(f"{reports_root / study.wave}: no indicators.csv to audit; build the reports first")
    table = pd.concat(frames, ignore_index=True)
    separate = None
    ref_path = study.consortium_reference
    if ref_path is not None and Path(ref_path).exists():
        # The published reference is the same set of figures when it is current; an older one
        # (figures of other data, e.g. before a late export) is another publication, attacked
        # on its own.
        ref = read(ref_path)
        ours = table[table["target"] == CONSORTIUM].set_index(key)
        theirs = ref.set_index(key)
        common = theirs.index.intersection(ours.index)
        cols = ["n_count", "n_unweighted", "suppressed"]
        same = len(common) == len(theirs) and ours.loc[common, cols].astype(str).equals(
            theirs.loc[common, cols].astype(str))
        if same:
            table = pd.concat([table, ref], ignore_index=True)
        else:
            separate = ref
    cb = load_codebook(study.codebook)
    weighting = study_dir(study, reports_root) / WEIGHTING_FILE
    sizes = {}
    if weighting.exists():  # respondents per CAE, as the annexes print them
        payload = json.loads(weighting.read_text(encoding="utf-8"))
        sizes = {r["cae_id"]: r["respondents"] for r in payload.get("per_cae", [])}
        sizes[CONSORTIUM] = sum(sizes.values())
    inputs = indicators.secrecy_inputs(cb)
    results = []
    for part, part_sizes in ((table, sizes), (separate, {})):
        if part is None:
            continue
        part = part.copy()
        part["suppressed"] = part["suppressed"].astype(str).str.lower().isin(["true", "1"])
        part = part.drop_duplicates(subset=key).reset_index(drop=True)
        results.append(secrecy.audit_table(part, cb, inputs["indicators"], consortium=CONSORTIUM,
                                           min_count=study.report.min_cell_count,
                                           sample_sizes=part_sizes,
                                           group_codes=inputs["group_codes"]))
    if len(results) == 1:
        return results[0]
    return secrecy.AuditResult(pd.concat([r.cells for r in results], ignore_index=True),
                               sum(r.n_lp for r in results))


def secrecy_summary(table, audit) -> dict:
    """What the secrecy rules did to a table's cells, and what the attack found (annex B).

    ``hidden_counts``: the cells whose count is masked or given by a band.
    """
    reasons = table["suppression_reason"].astype(str).value_counts().to_dict()
    hidden = table["suppressed"].astype(bool) & table["kind"].isin(["share", "any_of", "distribution"])
    return {"cells": int(len(table)), "by_reason": {k: int(v) for k, v in reasons.items() if k},
            "hidden_counts": int(hidden.sum()),
            "audit": audit.summary() if audit is not None else None}


def load_reference(study: StudyConfig):
    """The study's published consortium reference, or None when it compares ``live``."""
    return None if study.consortium_reference is None else load(study.consortium_reference)


def require_every_cae(study: StudyConfig, responses) -> None:
    """Raise EstimationError naming every CAE of the study with no cleaned respondent (issue 15)."""
    seen = set(responses["cae_id"].astype(str).unique()) if len(responses) else set()
    missing = [c for c in study.cae_ids if c not in seen]
    if missing:
        raise EstimationError(
            f"no usable respondent for {', '.join(missing)} in the cleaned data: the study is not "
            f"estimated without them (the consortium would leave them out). Check their cleaning, "
            f"or exclude them in {study.path.name} with 'exclude_caes' and a reason.")


def run_estimation(study: StudyConfig, processed_root: Path, reports_root: Path) -> Path:
    """Estimate every indicator of every target (disclosure applied study-wide) and save it.

    Writes the study table (``estimates.parquet``), the weighting and the design, and each
    report's own files (:func:`target_files`). With a published consortium reference, a CAE
    is compared with the published figures (:mod:`cae_impact.analysis.published`), and
    ``reference_check.json`` says which consortium figures of this build differ from them.
    """
    reference = load_reference(study)
    cb = load_codebook(study.codebook)
    responses = indicators.load_responses(study, processed_root)
    require_every_cae(study, responses)  # issue 15: no CAE left out silently
    result = indicators.estimate_study(responses, study, cb)
    if result.audit is None:
        print(f"  [estimate] note: {len(study.caes)} CAEs, more than "
              f"{indicators.SECRECY_AUDIT_MAX_CAES}: the secrecy attack was not run with the "
              "estimation (rule-based suppression only); run 'make audit-secrecy' on the "
              "published files", flush=True)
    table = result.table
    out = study_dir(study, reports_root)
    out.mkdir(parents=True, exist_ok=True)
    previous = {}
    for old in [*out.glob("report__*.parquet"), *out.glob("context__*.json")]:
        previous[old.name] = old.read_bytes()
        old.unlink()  # a CAE removed from the study leaves nothing behind
    w = result.weighting
    # The design, respondent by respondent, for independent recomputation (scripts/verify_with_r.R).
    write_atomic(out / "design.csv", w.design_frame().to_csv(index=False, float_format="%.12g"))
    if w.post_strata is not None:
        write_atomic(out / "post_strata.csv", w.post_strata.to_csv(index=False, float_format="%.12g"))
    per_cae = w.per_cae
    payload = {
        "n_trimmed": w.n_trimmed,
        "per_cae": per_cae.to_dict(orient="records"),
        "notes": w.notes,
        "kish_deff": w.kish_deff,
        "effective_n": w.effective_n,
        "respondents": int(len(responses)),
        "consortium": consortium_summary(w),
        "secrecy": secrecy_summary(table, result.audit),
    }
    audit_verdict = None if result.audit is None else {
        k: v for k, v in result.audit.summary().items() if k in ("exposed", "pinned", "bounded_1_4")}
    if result.audit is not None:
        write_atomic(out / "secrecy_audit.csv",
                     result.audit.cells.to_csv(index=False, lineterminator="\n"))
    write_atomic(out / WEIGHTING_FILE, json.dumps(payload, ensure_ascii=False, indent=2, default=float))
    if reference is not None:
        published.check_fits(reference, study, table)
        diff = published.differences(reference, table)
        write_atomic(out / "reference_check.json", json.dumps({
            "reference": str(reference.path.name), "published": reference.published,
            "figures": int(len(reference.rows)), "differing": int(len(diff)),
            "examples": diff.head(5).astype(str).to_dict(orient="records"),
        }, ensure_ascii=False, indent=2) + "\n")
    else:
        (out / "reference_check.json").unlink(missing_ok=True)
    changes: dict[str, object] = {"changed": [], "unchanged": [], "suppression": {}}
    note = _reference_note(reference)
    for target in study.targets:
        if target != CONSORTIUM and not (table["target"] == target).any():
            raise indicators.EstimationError(  # issue 15: was a silent 'continue'
                f"{target}: no estimate for this CAE of {study.path.name}; its report and the consortium "
                "are not written without it")
        if reference is not None and target != CONSORTIUM:
            own = published.compare_with_reference(table[table["target"] == target], reference, target)
            rows = pd.concat([own, published.reference_report_rows(reference, list(table.columns))],
                             ignore_index=True)
        else:
            rows = table
        rpath, cpath = target_files(study, reports_root, target)
        report = indicators.report_table(rows, target, study.report.fdr_alpha)
        tmp_r = rpath.with_name(f".{rpath.name}.tmp")
        report.to_parquet(tmp_r, index=False)
        tmp_r.replace(rpath)
        context = _context(study, target, payload, reference, note)
        # the report's own cells (not the wave's: a CAE report depends on its own data only)
        context["secrecy"] = {**secrecy_summary(report, None), "audit": audit_verdict}
        write_atomic(cpath, json.dumps(context, ensure_ascii=False, indent=2, default=float) + "\n")
        _record_change(changes, target, previous, rpath, cpath, report)
    # What changed since the files were last written (the build prints it: why a report whose
    # CAE did not change is executed again). Hidden: not an output of the step.
    write_atomic(out / CHANGES_FILE, json.dumps(changes, ensure_ascii=False, indent=2) + "\n")
    atomic_write(out / ESTIMATES_FILE, lambda tmp: table.to_parquet(tmp, index=False))
    return out / ESTIMATES_FILE




def _record_change(changes: dict, target: str, previous: dict[str, bytes], rpath: Path, cpath: Path,
                   report) -> None:
    """Note whether a target's files changed, and how many of its cells changed suppression."""
    old = previous.get(rpath.name)
    if old is None:
        return
    if old == rpath.read_bytes() and previous.get(cpath.name) == cpath.read_bytes():
        changes["unchanged"].append(target)
        return
    changes["changed"].append(target)
    before = pd.read_parquet(io.BytesIO(old))
    keys = ["indicator_id", "target", "breakdown", "group", "category"]
    m = before[[*keys, "suppressed"]].merge(report[[*keys, "suppressed"]], on=keys, how="inner")
    flipped = int((m["suppressed_x"].astype(bool) != m["suppressed_y"].astype(bool)).sum())
    if flipped:
        changes["suppression"][target] = flipped


def load_report_table(ctx: TargetContext):
    """The target's report rows (:func:`target_files`), its tests adjusted (BH)."""
    path, _ = target_files(ctx.study, ctx.reports_root, ctx.target)
    if not path.exists():
        raise ParameterError(f"{path}: the target's estimates are missing; run 'make reports' (step estimate) first")
    return pd.read_parquet(path)


def is_census(weighting: dict, target: str) -> bool:
    """True for a CAE where every registered entrepreneur answered (respondents = register)."""
    if target == CONSORTIUM:
        return False
    rows = [r for r in weighting.get("per_cae", []) if r.get("cae_id") == target]
    return bool(rows) and all(int(r["respondents"]) == int(r["population"]) > 0 for r in rows)


def load_weighting(ctx: TargetContext) -> dict:
    """The target's sample and weighting (per-CAE response, design effects, notes, consortium)."""
    _, path = target_files(ctx.study, ctx.reports_root, ctx.target)
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ step 02: domain


@dataclass
class DomainAnalysis:
    """One effect domain for one target: its indicators, the report's rows, its verbatims."""

    view: object
    domain: object
    indicators: list
    findings: list
    verbatims: list = field(default_factory=list)
    verbatim_question: str = ""


#: the free-text question quoted in a chapter of a CAE's report (domain id -> question id)
CHAPTER_VERBATIMS = {"d3": "cae_change_text"}
CHAPTER_QUOTES = 2


def analyse_domains(ctx: TargetContext) -> list[DomainAnalysis]:
    """Every effect domain of the target, in the codebook's order (one for ``ctx.domain``).

    Notebook 03 shows them one after the other, the chapters of the report. The target's report
    table, its weighting and its cleaned responses are read once for all the domains (issue 19:
    one notebook per target instead of one per domain, the same chapters).
    """
    table = load_report_table(ctx)
    view = View(ctx.study, ctx.codebook, ctx.target, table, census=is_census(load_weighting(ctx), ctx.target))
    ids = [ctx.domain] if ctx.domain is not None else [d.id for d in ctx.codebook.domains]
    frame = None
    if (not ctx.is_consortium and any(CHAPTER_VERBATIMS.get(d) for d in ids)
            and ctx.processed_path(ctx.target).exists()):
        frame = pd.read_parquet(ctx.processed_path(ctx.target), columns=None)
    return [_domain_analysis(ctx, view, d, frame) for d in ids]


def analyse_domain(ctx: TargetContext, domain: str | None = None) -> DomainAnalysis:
    """One effect domain (``domain``, else ``ctx.domain``) of the target: :func:`analyse_domains`."""
    one = dataclasses.replace(ctx, domain=domain or ctx.domain)
    if one.domain is None:
        raise ParameterError("analyse_domain: name an effect domain")
    return analyse_domains(one)[0]


def _domain_analysis(ctx: TargetContext, view, domain_id: str, frame: pd.DataFrame | None) -> DomainAnalysis:
    """Gather the domain's indicators, the target's report table (tests adjusted), its verbatims.

    A CAE's chapter may quote its entrepreneurs' free answers (:data:`CHAPTER_VERBATIMS`); the
    consortium's never does (a quote could single someone out among few CAEs).
    """
    domain = ctx.codebook.domain(domain_id)
    inds = ctx.codebook.indicators_of_domain(domain_id)
    findings = [f for f in ctx.codebook.findings if domain_id in f.domain_ids]
    quotes, question = [], ""
    qid = CHAPTER_VERBATIMS.get(domain_id)
    if qid and frame is not None and qid in frame.columns:
        quotes = select_verbatims(frame[qid].tolist(), max_quotes=CHAPTER_QUOTES)
        question = ctx.codebook.question(qid).text
    return DomainAnalysis(view, domain, inds, findings, quotes, question)


def headline_design(ctx: TargetContext):
    """The target's survey design built again from its cleaned data, for :func:`recompute_headline`.

    :func:`cae_impact.analysis.indicators.build_design`: a CAE on its own rows, the consortium on
    every CAE's. Built once per notebook, for the headline of every chapter.
    """
    study = ctx.study
    if not ctx.is_consortium:
        study = dataclasses.replace(study, caes=tuple(c for c in study.caes if c.id == ctx.target))
    responses = indicators.load_responses(study, ctx.processed_root)
    return indicators.build_design(responses, study, ctx.codebook).design


def recompute_headline(ctx: TargetContext, analysis: DomainAnalysis, design=None) -> dict:
    """Recompute the chapter's headline share from the cleaned data, through the public API.

    The weights are built again (:func:`headline_design`, unless ``design`` is that design
    already), the share is estimated with
    :func:`cae_impact.estimation.proportion`, and the estimate, standard error and interval
    are shown beside the published row and asserted equal (AssertionError otherwise). The
    figure is the chapter's lead when it is a share of the valid answers, else the first such
    share published in the domain. Returns what was compared.
    """
    from IPython.display import Markdown, display

    view = analysis.view
    display(Markdown(f"#### Domaine {analysis.domain.number}"))
    figs = [story.figure_of(view, i) for i in story.domain_indicators(view, analysis.domain)]
    candidates = [story.lead_figure(view, figs), *figs]
    fig = next((f for f in candidates if f is not None and not f.hidden and f.ind.kind == "share"
                and f.ind.rule.get("base", "valid") == "valid"), None)
    if fig is None:
        display(Markdown("Aucune part publiée à recalculer dans ce domaine."))
        return {}
    study = ctx.study
    if design is None:
        design = headline_design(ctx)
    y = indicators.share_variable(design.data, ctx.codebook, fig.ind.rule["question"], list(fig.ind.rule["codes"]))
    got = estimation.proportion(design, y, method=study.report.interval_method,
                                level=study.report.confidence_level)
    row = fig.row
    names = ["estimate", "se", "ci_low", "ci_high", "n_unweighted"]
    printed = [float(row[c]) for c in names]
    again = [got.estimate, got.se, got.ci_low, got.ci_high, float(got.n)]
    frame = pd.DataFrame({"publié": printed, "recalculé": again}, index=names)
    frame["écart"] = frame["recalculé"] - frame["publié"]
    display(Markdown(f"**{fig.ind.id}** ({view.labels[ctx.target]}) recalculé avec "
                     "`cae_impact.estimation.proportion` sur les données nettoyées :"))
    show_frame(frame)
    assert np.isclose(got.estimate, printed[0], rtol=1e-9, atol=1e-12), frame
    assert np.allclose(again[1:4], printed[1:4], rtol=1e-6, atol=1e-9), frame
    assert again[4] == printed[4], frame
    return {"indicator_id": fig.ind.id, "published": printed, "recomputed": again}


def show_chapter(ctx: TargetContext, analysis: DomainAnalysis) -> None:
    """The chapter as the report prints it: its finding, key figures, charts, a verbatim."""
    _show(story.chapter_html(analysis.view, analysis.domain, verbatims=analysis.verbatims,
                             verbatim_question=analysis.verbatim_question))


def show_evidence(ctx: TargetContext, analysis: DomainAnalysis) -> None:
    """For the reviewer (not in the report): each indicator's rule and unformatted results.

    Estimate, standard error, interval, unweighted and weighted bases, the test, its raw and
    adjusted p-values, whether it is significant, and why a cell is hidden or banded; then the
    figures as the chapter reads them (value shown, verdict against the consortium).
    """
    from IPython.display import Markdown, display


    display(Markdown(f"### Pièces justificatives — domaine {analysis.domain.number} "
                     f"({analysis.view.labels[ctx.target]})"))
    for ind in analysis.indicators:
        display(Markdown(f"**{ind.id}** — {ind.label}  \nRègle du référentiel : `{story.rule_text(ind)}`"
                         + (f"  \nQuestions : {', '.join(ind.question_ids)}" if ind.question_ids else "")))
        show_frame(story.evidence_frame(analysis.view, ind))
    figures = story.figure_list(analysis.view)
    show_frame(figures[figures["domain"] == analysis.domain.id].reset_index(drop=True))


# ------------------------------------------------------------------------------ step 03: profile


@dataclass
class ProfileAnalysis:
    """The profile of a target's entrepreneurs and its sample."""

    view: object
    weighting: dict
    variables: list


def analyse_profile(ctx: TargetContext) -> ProfileAnalysis:
    """Gather the profile distributions, the sample and the weighting report."""
    table = load_report_table(ctx)
    weighting = load_weighting(ctx)
    view = View(ctx.study, ctx.codebook, ctx.target, table, census=is_census(weighting, ctx.target))
    return ProfileAnalysis(view, weighting, list(ctx.codebook.profile_question_ids))


def show_front(ctx: TargetContext, profile: ProfileAnalysis) -> None:
    """« L’essentiel » and « La CAE en bref » (with the CAE’s own context, when it wrote one)."""
    moved = ""
    if ctx.study.previous_waves:
        moved = evolution.essentials_line(evolution.load_evolution(ctx))
    _show(story.essentials_html(profile.view, evolution=moved))
    _show(story.brief_html(profile.view, profile.weighting,
                           editorial.load(ctx.study, ctx.target).get("context")))
    if ctx.is_consortium:
        _show(story.synthesis_html(profile.view))


def show_profile(ctx: TargetContext, profile: ProfileAnalysis) -> None:
    """The profile chapter: one chart against the consortium and the French references."""
    _show(prof.profile_chapter(profile.view))
    if ctx.is_consortium:
        _show(story.national_memo_html(profile.view))


def show_profile_evidence(ctx: TargetContext, profile: ProfileAnalysis) -> None:
    """For the reviewer (not in the report): response and weighting, every profile distribution."""
    _show(prof.sample_section(profile.view, profile.weighting))
    for variable in profile.variables:
        _show(prof.variable_table(profile.view, variable))
