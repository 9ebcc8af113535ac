"""Waves: measuring change from one survey to the next (issue 18).

A study is run again; a later wave compares itself with the earlier ones **by what they
published**, never by their personal data:

1. :func:`write_wave_figures` (``make publish-wave``) writes, for an earlier wave, every figure a
   later wave needs: for each CAE and the consortium, the total rows of the study table
   (estimate, standard error, degrees of freedom, interval, bases, suppression already applied,
   bands) in ``wave.csv``, and a JSON description (``wave.json``: date, commit, digests of the
   cleaned data and of the figures, the codebook's version and the *signature* of every
   indicator: its questions' wording, type, answer codes and filter, its rule).
2. :func:`comparability` decides which indicators may be compared: the signature of the
   indicator in the earlier wave must equal the current one, or be made equal by an explicit
   mapping of the current codebook (``comparability:`` block: renamed codes, merged choices,
   a rewording declared as the same question). Every indicator not compared has a reason.
3. :func:`compute_changes` computes, for each comparable figure and target, the previous and
   current values, the change, its standard error, a 95 % interval and a Student test, the tests
   of a report corrected together (Benjamini-Hochberg, as every other test of the project).

Variance of a change. The two waves are two samples of (nearly) the same population; some
entrepreneurs answer both, so the two estimates are positively correlated when people keep
their answers: ``Var(p2 - p1) = V1 + V2 - 2 Cov``. The change's standard error here is
``sqrt(V1 + V2)``, the waves treated as independent. It is exact for waves without overlap
(R: two independent designs), and conservative with an overlap as long as the covariance of
linked respondents is not negative (an entrepreneur's answers one year and the next are not
negatively correlated); ``tests/test_waves_simulation.py`` measures both on simulated panels
with 40 % of linked respondents. Using the overlap's covariance would need the earlier wave's
respondent-level data (against point 1) and would publish a figure (the covariance) that the
secrecy audit does not cover. The degrees of freedom are Welch-Satterthwaite's.

Secrecy of changes. A change is computed from published figures only, so it can reveal nothing
the two waves did not publish; a change is not shown when either level is hidden or published
as a band (« ≥ 90 % »), nor when its base is below the study's ``min_base_pct``.

The consortium's change when CAEs joined or left is also computed on the CAEs present in both
waves (scope ``consortium_common``), from the published CAE figures: ``sum B_h p_h / sum B_h``
with ``B_h`` the CAE's published weighted base, variance ``sum B_h^2 V_h / (sum B_h)^2`` (CAEs
are independent strata; exact when the bases are fixed by the calibration, to the second order
otherwise); when a CAE of both waves has a hidden figure, from the consortium minus the CAEs of
one wave only, and not at all when both routes need a hidden figure. A median of several CAEs
is not a function of their medians: it is not recomputed on the common CAEs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cae_impact.analysis import indicators, secrecy
from cae_impact.core.files import atomic_write, sha256_bytes, write_atomic
from cae_impact.core.paths import relative_path as _rel
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, PROJECT_ROOT, StudyConfig, safe_yaml_load
from cae_impact.spec.layout import (
    ESTIMATES_FILE,
    WAVES_INFO_FILE,
    study_dir,
    target_change_file,
    waves_dir,
)

SCHEMA = 1
FIGURES_NAME = "wave.csv"
META_SUFFIX = ".json"
"""``reports/<wave>/_waves/``: the change tables of a wave that has a previous one."""
CHANGES_FILE = "changes.parquet"
COMPARABILITY_FILE = "comparability.csv"
TREND_FILE = "trend.parquet"
TOTAL = "total"
KEY = ["indicator_id", "category"]
#: the columns of a published wave file, in order
FIGURE_COLUMNS = [
    "indicator_id", "indicator_label", "domain_id", "kind", "unit", "target", "category", "category_label",
    "estimate", "se", "ci_low", "ci_high", "df", "n_unweighted", "n_count", "base_weighted",
    "flag_caution", "suppressed", "suppression_reason", "band_low", "band_high",
]
_TEXT = ("indicator_id", "indicator_label", "domain_id", "kind", "unit", "target", "category",
         "category_label", "suppression_reason")
_FLOAT_FORMAT = "%.17g"
_ZERO_SE = 1e-9
SCOPE_CAE = "cae"
SCOPE_CONSORTIUM = "consortium"
SCOPE_COMMON = "consortium_common"
#: a change whose levels are published but that is not tested
NOT_TESTED_REGISTER = "chiffre des registres (pas d’incertitude d’échantillon)"
NOT_TESTED_MEDIAN = "médiane : écart donné sans intervalle ni test"


class WaveError(ValueError):
    """A previous wave's published figures are missing, unreadable or do not fit."""


# ============================================================================================
# 1. Codebook signatures and comparability
# ============================================================================================


def indicator_signature(cb, indicator) -> dict[str, Any]:
    """What must stay the same for an indicator to be compared across waves.

    The rule (kind and arguments: codes, base), and for each question it reads: wording, type,
    unit, filter (``relevant``: it defines who is in the base) and answer choices (code and
    whether the choice leaves the base).
    """
    questions = {}
    for qid in indicator.question_ids:
        q = cb.question(qid)
        scale = cb.scale_of(qid) if q.scale_id else None
        questions[qid] = {
            "text": q.text,
            "type": q.type,
            "unit": q.unit or "",
            "relevant": q.relevant or "",
            "choices": [[c.code, bool(c.missing)] for c in scale.choices] if scale else None,
        }
    rule = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(indicator.rule).items()}
    return {"rule": rule, "questions": questions}


def codebook_signatures(cb) -> dict[str, dict[str, Any]]:
    """Every indicator's signature (:func:`indicator_signature`)."""
    return {i.id: indicator_signature(cb, i) for i in cb.indicators}


@dataclass(frozen=True)
class Mapping_:
    """An explicit equivalence of the current codebook with an earlier version, for one question."""

    question: str
    renamed: dict[str, str] = field(default_factory=dict)   # old code -> new code
    merged: dict[str, tuple[str, ...]] = field(default_factory=dict)  # new code -> old codes
    same_meaning: bool = False  # a rewording reviewed and declared as the same question
    note: str = ""

    def old_to_new(self) -> dict[str, str]:
        """Every earlier code that has a new name: renamed and merged codes."""
        out = dict(self.renamed)
        for new, olds in self.merged.items():
            for old in olds:
                out[old] = new
        return out


def codebook_mappings(cb_path: Path) -> tuple[str | None, dict[str, Mapping_]]:
    """The ``comparability:`` block of a codebook file: the version it maps from and its mappings.

    ::

        comparability:
          previous_version: "2026.1"
          mappings:
            - question: staff_exchange
              renamed_codes: {regulierement: mensuel}      # old: new
              merged_codes: {souvent: [frequemment, regulierement]}   # new: [old, ...]
              same_meaning: true                            # a rewording, same question
              note: "…"
    """
    raw = safe_yaml_load(Path(cb_path)) or {}
    block = raw.get("comparability") or {}
    if not isinstance(block, dict):
        raise WaveError(f"{cb_path}: comparability: expected a mapping")
    out: dict[str, Mapping_] = {}
    for i, m in enumerate(block.get("mappings") or []):
        if not isinstance(m, dict) or "question" not in m:
            raise WaveError(f"{cb_path}: comparability.mappings[{i}]: expected a mapping with 'question'")
        merged = {str(k): tuple(str(c) for c in v) for k, v in (m.get("merged_codes") or {}).items()}
        out[str(m["question"])] = Mapping_(
            question=str(m["question"]),
            renamed={str(k): str(v) for k, v in (m.get("renamed_codes") or {}).items()},
            merged=merged,
            same_meaning=bool(m.get("same_meaning", False)),
            note=str(m.get("note", "")),
        )
    prev = block.get("previous_version")
    return (None if prev is None else str(prev)), out


@dataclass(frozen=True)
class Comparison:
    """Whether one indicator is compared, why not, and its categories' correspondence."""

    indicator_id: str
    comparable: bool
    reason: str = ""
    categories: dict[str, str] = field(default_factory=dict)  # current category -> previous one
    mapped: str = ""  # the explicit mapping used, if any
    question: str = ""  # the question of a single-question rule


def _map_choices(choices: list | None, m: Mapping_ | None) -> list | None:
    if choices is None or m is None:
        return choices
    o2n = m.old_to_new()
    out: list = []
    for code, missing in choices:
        new = o2n.get(code, code)
        if [new, missing] not in out:
            out.append([new, missing])
    return out


def compare_signatures(indicator_id: str, prev: Mapping[str, Any] | None, cur: Mapping[str, Any] | None,
                       mappings: Mapping[str, Mapping_]) -> Comparison:
    """Compare an indicator's signatures of two codebook versions (module docstring, point 2)."""
    if cur is None:
        return Comparison(indicator_id, False, "indicateur retiré du questionnaire")
    if prev is None:
        return Comparison(indicator_id, False, "nouvel indicateur : pas de valeur à la vague précédente")
    prule, crule = dict(prev["rule"]), dict(cur["rule"])
    if prule.get("kind") != crule.get("kind"):
        return Comparison(indicator_id, False, "règle de calcul modifiée")
    used = [m for q, m in mappings.items() if q in cur["questions"] or q in prev["questions"]]
    qmap = {q: mappings.get(q) for q in cur["questions"]}
    if set(prev["questions"]) != set(cur["questions"]):
        return Comparison(indicator_id, False, "questions différentes")
    for qid, cq in cur["questions"].items():
        pq = prev["questions"][qid]
        m = qmap.get(qid)
        if pq["text"] != cq["text"] and not (m and m.same_meaning):
            return Comparison(indicator_id, False, "question reformulée")
        if pq["type"] != cq["type"] or pq["unit"] != cq["unit"]:
            return Comparison(indicator_id, False, "type de réponse modifié")
        if pq["relevant"] != cq["relevant"]:
            return Comparison(indicator_id, False, "filtre de la question modifié (autre base)")
        pch = _map_choices(pq["choices"], m)
        if pch is not None and cq["choices"] is not None:
            if sorted(map(tuple, pch)) != sorted(map(tuple, cq["choices"])):
                return Comparison(indicator_id, False, "choix de réponse modifiés")
    # the rule's arguments, previous codes mapped to the current ones
    qid = prule.get("question")
    m = qmap.get(qid) if qid else None
    for key in set(prule) | set(crule):
        pv, cv = prule.get(key), crule.get(key)
        if key == "codes" and m is not None:
            o2n = m.old_to_new()
            # a merged choice must enter whole: all of its old codes or none
            for olds in m.merged.values():
                inside = [o in (pv or []) for o in olds]
                if any(inside) and not all(inside):
                    return Comparison(indicator_id, False, "choix fusionnés : la part n’a plus le même contenu")
            pv = sorted({o2n.get(c, c) for c in (pv or [])})
            cv = sorted(cv or [])
        if pv != cv:
            return Comparison(indicator_id, False, "règle de calcul modifiée (codes ou base)")
    categories: dict[str, str] = {}
    kind = crule.get("kind")
    if kind == "distribution":
        choices = cur["questions"][qid]["choices"] or []
        n2o: dict[str, list[str]] = {}
        o2n = m.old_to_new() if m else {}
        for code, _ in prev["questions"][qid]["choices"] or []:
            n2o.setdefault(o2n.get(code, code), []).append(code)
        for code, _ in choices:
            olds = n2o.get(code, [])
            if len(olds) == 1:  # a merged choice's previous value is a sum of published shares, its SE unknown
                categories[code] = olds[0]
    elif kind == "paired_difference":
        categories = {c: c for c in ("before", "after", "difference")}
    else:
        categories = {"": ""}
    note = "; ".join(x.note or x.question for x in used)
    return Comparison(indicator_id, True, "", categories, note, str(qid or ""))


def comparability(prev_signatures: Mapping[str, Any], cb, cb_path: Path | None = None) -> list[Comparison]:
    """Which indicators of the current codebook ``cb`` compare with the earlier version, and why not."""
    _, mappings = codebook_mappings(cb_path or cb.path)
    cur = codebook_signatures(cb)
    ids = [i.id for i in cb.indicators] + [i for i in prev_signatures if i not in cur]
    return [compare_signatures(i, prev_signatures.get(i), cur.get(i), mappings) for i in ids]


def comparability_table(comparisons: Sequence[Comparison], cb, previous_wave: str) -> pd.DataFrame:
    """The comparability list as a table (for the method annex): one row per indicator."""
    labels = {i.id: i.label for i in cb.indicators}
    return pd.DataFrame({
        "indicator_id": [c.indicator_id for c in comparisons],
        "indicator_label": [labels.get(c.indicator_id, c.indicator_id) for c in comparisons],
        "previous_wave": previous_wave,
        "comparable": [c.comparable for c in comparisons],
        "reason": [c.reason for c in comparisons],
        "mapping": [c.mapped for c in comparisons],
    })


# ============================================================================================
# 2. The published figures of a wave
# ============================================================================================


def wave_figures(table: pd.DataFrame) -> pd.DataFrame:
    """The total rows of a disclosure-controlled study table, as a wave publishes them.

    One row per target (each CAE, the consortium) x indicator x category, with the degrees of
    freedom of its design (respondents in the base minus CAEs with a respondent in it). Hidden
    cells carry no value (defensive: the study table already blanks them).
    """
    tot = table[table["breakdown"] == TOTAL].copy()
    caes = tot[tot["target"] != CONSORTIUM]
    has = (caes["n_unweighted"] > 0) | caes["suppressed"].astype(bool)
    strata = caes[has].groupby(KEY, dropna=False).size().rename("n_strata").reset_index()
    tot = tot.merge(strata, on=KEY, how="left")
    n_strata = np.where(tot["target"] == CONSORTIUM, tot["n_strata"].fillna(0), 1)
    tot["df"] = tot["n_unweighted"] - n_strata
    hidden = tot["suppressed"].astype(bool)
    for col in ("estimate", "se", "ci_low", "ci_high", "n_count"):
        tot.loc[hidden, col] = np.nan
    banded = hidden & tot["band_low"].notna() | hidden & tot["band_high"].notna()
    for col in ("n_unweighted", "base_weighted", "df"):
        tot.loc[hidden & ~banded, col] = np.nan
    out = tot.reindex(columns=FIGURE_COLUMNS)
    for col in _TEXT:
        out[col] = out[col].fillna("").astype(str)
    out = out.sort_values(["target", "indicator_id", "category"], kind="stable").reset_index(drop=True)
    return out


def default_figures_path(study: StudyConfig) -> Path:
    """``data/reference/<study>/<wave>/wave.csv``."""
    return PROJECT_ROOT / "data" / "reference" / study.study / study.wave / FIGURES_NAME


def write_wave_figures(table: pd.DataFrame, study: StudyConfig, cb, path: Path, *,
                       source: dict[str, Any], consortium: dict[str, Any]) -> Path:
    """Publish a wave's figures (``path``, CSV) and their description (``path`` with ``.json``)."""
    rows = wave_figures(table)
    text = rows.to_csv(index=False, float_format=_FLOAT_FORMAT, lineterminator="\n")
    caes = sorted(rows.loc[rows["target"] != CONSORTIUM, "target"].unique().tolist())
    labels = {c.id: c.label for c in study.caes}
    meta = {
        "schema": SCHEMA,
        "study": study.study,
        "wave": study.wave,
        "title": study.title,
        "synthetic": bool(study.synthetic),
        "published": str(source.pop("published")),
        "caes": [{"id": c, "label": labels.get(c, c)} for c in caes],
        "consortium": consortium,
        "report": {"min_cell_count": study.report.min_cell_count, "min_base_pct": study.report.min_base_pct,
                   "confidence_level": study.report.confidence_level},
        "codebook": {"version": cb.version, "path": _rel(cb.path),
                     "sha256": sha256_bytes(Path(cb.path).read_bytes())},
        "figures": {"file": path.name, "rows": int(len(rows)), "sha256": sha256_bytes(text.encode("utf-8"))},
        "source": source,
        "indicators": codebook_signatures(cb),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    write_atomic(path.with_suffix(META_SUFFIX), json.dumps(meta, ensure_ascii=False, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class WaveFigures:
    """A wave's published figures and their description."""

    path: Path
    rows: pd.DataFrame
    meta: dict[str, Any]

    @property
    def wave(self) -> str:
        """The wave id the figures were published for."""
        return str(self.meta.get("wave", ""))

    @property
    def cae_ids(self) -> list[str]:
        """The CAEs of the wave."""
        return [c["id"] for c in self.meta.get("caes", [])]

    @property
    def labels(self) -> dict[str, str]:
        """Each CAE's anonymised label in the wave."""
        return {c["id"]: c.get("label", c["id"]) for c in self.meta.get("caes", [])}


def load_wave_figures(path: Path) -> WaveFigures:
    """Read a published wave file; :class:`WaveError` names the file and what is wrong.

    The figures' digest is checked against the description: a file edited after publication
    is refused.
    """
    path = Path(path)
    mpath = path.with_suffix(META_SUFFIX)
    if not path.exists() or not mpath.exists():
        raise WaveError(f"{path}: published figures of the previous wave not found (or their description "
                        f"{mpath.name}); run 'make publish-wave STUDY=<the previous wave's study file>'")
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WaveError(f"{mpath}: not valid JSON: {exc}") from exc
    data = path.read_bytes()
    want = (meta.get("figures") or {}).get("sha256")
    if want != sha256_bytes(data):
        raise WaveError(f"{path}: its content differs from the digest of its description {mpath.name} "
                        "(edited after publication?); publish it again")
    rows = pd.read_csv(path, dtype={c: str for c in _TEXT}, keep_default_na=False, na_values=[""])
    missing = [c for c in FIGURE_COLUMNS if c not in rows.columns]
    if missing:
        raise WaveError(f"{path}: column(s) {', '.join(missing)} missing")
    for col in _TEXT:
        rows[col] = rows[col].fillna("").astype(str)
    for col in ("flag_caution", "suppressed"):
        rows[col] = rows[col].map({True: True, False: False, "True": True, "False": False}).fillna(False).astype(bool)
    return WaveFigures(path=path, rows=rows, meta=meta)


# ============================================================================================
# 3. Changes
# ============================================================================================


def satterthwaite_df(v1: float, df1: float, v2: float, df2: float) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of two independent variances."""
    num = (v1 + v2) ** 2
    den = (v1 ** 2 / df1 if df1 > 0 else 0.0) + (v2 ** 2 / df2 if df2 > 0 else 0.0)
    if den <= 0:
        return float(min(df1, df2))
    return float(num / den)


def change_stats(prev_est: float, prev_se: float, prev_df: float, cur_est: float, cur_se: float, cur_df: float,
                 level: float = 0.95) -> dict[str, float]:
    """The change ``cur - prev``, its SE (independent waves), df, interval and two-sided p-value."""
    change = cur_est - prev_est
    v1, v2 = prev_se ** 2, cur_se ** 2
    se = math.sqrt(v1 + v2)
    df = satterthwaite_df(v1, prev_df, v2, cur_df)
    q = float(stats.t.ppf(0.5 + level / 2, df)) if df > 0 else float("nan")
    p = float(2 * stats.t.sf(abs(change) / se, df)) if se > 0 and df > 0 else float("nan")
    return {"change": change, "se": se, "df": df, "ci_low": change - q * se, "ci_high": change + q * se,
            "p_value": p}


def linkage(previous: Mapping[str, Iterable[str]], current: Mapping[str, Iterable[str]],
            population: Mapping[str, float]) -> pd.DataFrame:
    """Respondents of both waves (the same pseudonym), per CAE of both waves, against chance.

    ``previous`` and ``current`` give each CAE's respondent pseudonyms (cleaned with the same
    key, an entrepreneur who answered both waves has the same one); ``population`` the CAE's
    register in the current wave. If each entrepreneur answered each wave or not independently,
    the number linked would follow a hypergeometric law (``n1`` of the ``N`` members answered
    before, ``n2`` answer now): ``expected = n1 n2 / N``. ``p_fewer`` is the probability of as few
    links as observed under that law: a small one says the second wave's respondents lean away
    from the first's, the one design where the change's standard error that treats the waves as
    independent is too small (``tests/test_waves_simulation.py``). ``n1`` is capped at ``N``
    (members who left are not in the current register). A last row ``consortium`` sums the CAEs
    (``p_fewer`` by the normal approximation of the summed laws).
    """
    rows = []
    for cae in sorted(set(previous) & set(current)):
        before, now = set(map(str, previous[cae])), set(map(str, current[cae]))
        big_n = int(round(float(population[cae])))
        n1, n2 = min(len(before), big_n), len(now)
        linked = len(before & now)
        law = stats.hypergeom(big_n, n1, n2)
        rows.append({"cae_id": cae, "population": big_n, "previous_respondents": len(before),
                     "current_respondents": n2, "linked": linked, "expected": float(law.mean()),
                     "variance": float(law.var()), "p_fewer": float(law.cdf(linked))})
    out = pd.DataFrame(rows, columns=["cae_id", "population", "previous_respondents", "current_respondents",
                                      "linked", "expected", "variance", "p_fewer"])
    if len(out):
        var = float(out["variance"].sum())
        z = (float(out["linked"].sum()) + 0.5 - float(out["expected"].sum())) / math.sqrt(var) if var > 0 else float("inf")
        total = {"cae_id": CONSORTIUM, "population": int(out["population"].sum()),
                 "previous_respondents": int(out["previous_respondents"].sum()),
                 "current_respondents": int(out["current_respondents"].sum()),
                 "linked": int(out["linked"].sum()), "expected": float(out["expected"].sum()),
                 "variance": var, "p_fewer": float(stats.norm.cdf(z))}
        out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    return out


def bh_adjust(p: Iterable[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN), as R's ``p.adjust(method = "BH")``."""
    p = np.asarray(list(p), dtype=float)
    out = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    v = p[ok]
    order = np.argsort(v)[::-1]
    ranked = v[order] * m / np.arange(m, 0, -1)
    adj = np.minimum(1.0, np.minimum.accumulate(ranked))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def _published(r: Mapping[str, Any] | None) -> bool:
    if r is None:
        return False
    if bool(r["suppressed"]):
        return False
    return not any(pd.isna(r[c]) for c in ("estimate", "se", "n_unweighted"))


def common_consortium(fig: pd.DataFrame, common: Sequence[str], min_base: int) -> pd.DataFrame:
    """The consortium figures on the CAEs ``common`` only, from a wave's published CAE figures.

    See the module docstring; ``method`` says which route was used (``sum`` of the common CAEs,
    ``complement`` of the others) and the rows that cannot be computed have ``estimate`` NaN
    and a ``reason``.
    """
    rows = []
    caes = fig[fig["target"] != CONSORTIUM]
    cons = fig[fig["target"] == CONSORTIUM].set_index(KEY)
    for key, grp in caes.groupby(KEY, sort=True):
        base = cons.loc[key] if key in cons.index else None
        out = {"indicator_id": key[0], "category": key[1], "estimate": np.nan, "se": np.nan, "df": np.nan,
               "n_unweighted": np.nan, "base_weighted": np.nan, "method": "", "reason": ""}
        if base is not None:
            for col in ("indicator_label", "domain_id", "kind", "unit", "category_label"):
                out[col] = base[col]
        kind = out.get("kind", grp["kind"].iloc[0])
        inn = grp[grp["target"].isin(common)]
        others = grp[~grp["target"].isin(common)]
        if kind == "median":
            out["reason"] = "médiane : non recalculable sur les CAE présentes aux deux vagues"
            rows.append(out)
            continue
        if others.empty and base is not None:  # nobody left or joined: the consortium itself
            if _published(base):
                out.update(estimate=base["estimate"], se=base["se"], df=base["df"],
                           n_unweighted=base["n_unweighted"], base_weighted=base["base_weighted"], method="all")
            else:
                out["reason"] = "valeur masquée (secret statistique)"
            rows.append(out)
            continue

        def ok(frame: pd.DataFrame) -> bool:
            return all(_published(r) and pd.notna(r["base_weighted"]) for _, r in frame.iterrows())

        if len(inn) and ok(inn):
            b = inn["base_weighted"].to_numpy(float)
            est = float((b * inn["estimate"].to_numpy(float)).sum() / b.sum())
            var = float((b ** 2 * inn["se"].to_numpy(float) ** 2).sum() / b.sum() ** 2)
            n = float(inn["n_unweighted"].sum())
            out.update(estimate=est, se=math.sqrt(var), n_unweighted=n, df=n - len(inn),
                       base_weighted=float(b.sum()), method="sum")
        elif base is not None and _published(base) and pd.notna(base["base_weighted"]) and ok(others):
            b_all = float(base["base_weighted"])
            b = others["base_weighted"].to_numpy(float)
            rest = b_all - b.sum()
            if rest > 0:
                est = float((b_all * base["estimate"] - (b * others["estimate"].to_numpy(float)).sum()) / rest)
                var = float((b_all ** 2 * base["se"] ** 2 - (b ** 2 * others["se"].to_numpy(float) ** 2).sum())
                            / rest ** 2)
                n = float(base["n_unweighted"] - others["n_unweighted"].sum())
                n_in = int(len(inn))
                out.update(estimate=est, se=math.sqrt(max(var, 0.0)), n_unweighted=n, df=n - n_in,
                           base_weighted=rest, method="complement")
            else:
                out["reason"] = "aucune réponse dans les CAE présentes aux deux vagues"
        else:
            out["reason"] = "non calculable : une valeur nécessaire est masquée (secret statistique)"
        if pd.notna(out["n_unweighted"]) and out["n_unweighted"] < min_base:
            out.update(estimate=np.nan, se=np.nan, reason="base trop petite")
        rows.append(out)
    return pd.DataFrame(rows)


def _level(r: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    keys = ("estimate", "se", "df", "n_unweighted", "base_weighted", "suppressed", "suppression_reason")
    if r is None:
        return {f"{prefix}_{k}": (np.nan if k not in ("suppressed", "suppression_reason") else
                                   (True if k == "suppressed" else "absent")) for k in keys}
    out = {f"{prefix}_{k}": r.get(k, np.nan) for k in keys}
    out[f"{prefix}_suppressed"] = bool(r.get("suppressed", False)) or pd.isna(r.get("estimate"))
    out[f"{prefix}_suppression_reason"] = "" if pd.isna(r.get("suppression_reason", "")) else str(
        r.get("suppression_reason", "") or "")
    return out


CHANGE_COLUMNS = [
    "indicator_id", "indicator_label", "domain_id", "kind", "unit", "target", "scope", "category",
    "category_label", "previous_wave", "current_wave",
    "previous_estimate", "previous_se", "previous_df", "previous_n_unweighted", "previous_base_weighted",
    "previous_suppressed", "previous_suppression_reason",
    "current_estimate", "current_se", "current_df", "current_n_unweighted", "current_base_weighted",
    "current_suppressed", "current_suppression_reason",
    "change", "se", "df", "ci_low", "ci_high", "p_value", "tested", "not_tested_reason",
    "suppressed", "suppression_reason", "method",
]


def compute_changes(current: pd.DataFrame, previous: pd.DataFrame, comparisons: Sequence[Comparison], *,
                    previous_wave: str, current_wave: str, min_base: int = 10,
                    level: float = 0.95, calibrated: Iterable[str] = ()) -> pd.DataFrame:
    """Every comparable figure's change, for each target present in both waves.

    ``current`` and ``previous`` are published wave figures (:func:`wave_figures`). Scopes: each
    CAE present in both waves (``cae``), the consortium as published in each wave
    (``consortium``), and the consortium on the CAEs present in both (``consortium_common``).
    No test is corrected here (see :func:`report_changes`). Not tested, and given without an
    interval: a share of an answer the weights are calibrated on (``calibrated`` question ids:
    sex, contract stage; the register's figure in both waves), and a median (the difference of
    two medians of whole numbers jumps by whole units: its normal interval does not hold).
    """
    calibrated = set(calibrated)
    comp = {c.indicator_id: c for c in comparisons if c.comparable}
    cur_caes = sorted(set(current["target"]) - {CONSORTIUM})
    prev_caes = sorted(set(previous["target"]) - {CONSORTIUM})
    common = [c for c in cur_caes if c in prev_caes]
    cur_idx = current.set_index(["target", *KEY])
    prev_idx = previous.set_index(["target", *KEY])
    cur_common = common_consortium(current, common, min_base).set_index(KEY)
    prev_common = common_consortium(previous, common, min_base).set_index(KEY)
    rows = []
    calibrated_ids = {c.indicator_id for c in comparisons if c.question in calibrated}
    meta_cols = ("indicator_label", "domain_id", "kind", "unit", "category_label")
    for target, scope in [*[(c, SCOPE_CAE) for c in common], (CONSORTIUM, SCOPE_CONSORTIUM),
                          (CONSORTIUM, SCOPE_COMMON)]:
        for ind, c in comp.items():
            for cat, pcat in c.categories.items():
                if scope == SCOPE_COMMON:
                    cr = cur_common.loc[(ind, cat)] if (ind, cat) in cur_common.index else None
                    pr = prev_common.loc[(ind, pcat)] if (ind, pcat) in prev_common.index else None
                    cr = None if cr is None else {**cr.to_dict(), "suppressed": pd.isna(cr["estimate"]),
                                                  "suppression_reason": cr["reason"]}
                    pr = None if pr is None else {**pr.to_dict(), "suppressed": pd.isna(pr["estimate"]),
                                                  "suppression_reason": pr["reason"]}
                    meta_src = cur_idx.loc[(CONSORTIUM, ind, cat)] if (CONSORTIUM, ind, cat) in cur_idx.index else None
                else:
                    cr = cur_idx.loc[(target, ind, cat)].to_dict() if (target, ind, cat) in cur_idx.index else None
                    pr = prev_idx.loc[(target, ind, pcat)].to_dict() if (target, ind, pcat) in prev_idx.index else None
                    meta_src = cr
                if cr is None and pr is None:
                    continue
                row: dict[str, Any] = {"indicator_id": ind, "target": target, "scope": scope, "category": cat,
                                       "previous_wave": previous_wave, "current_wave": current_wave}
                src = meta_src if meta_src is not None else (pr or {})
                for col in meta_cols:
                    row[col] = src.get(col, "") if isinstance(src, dict) else src[col]
                row.update(_level(pr, "previous"))
                row.update(_level(cr, "current"))
                row["method"] = " / ".join(x for x in (
                    (pr or {}).get("method", ""), (cr or {}).get("method", "")) if isinstance(x, str) and x)
                row.update(change=np.nan, se=np.nan, df=np.nan, ci_low=np.nan, ci_high=np.nan,
                           p_value=np.nan, tested=False, not_tested_reason="", suppressed=False,
                           suppression_reason="")
                hidden = [w for w, pre in ((previous_wave, "previous"), (current_wave, "current"))
                          if row[f"{pre}_suppressed"]]
                small = any(pd.notna(row[f"{p}_n_unweighted"]) and row[f"{p}_n_unweighted"] < min_base
                            for p in ("previous", "current"))
                if hidden or small:
                    row["suppressed"] = True
                    row["suppression_reason"] = (
                        "valeur non publiée en " + " et en ".join(hidden) if hidden else "base < " + str(min_base))
                    rows.append(row)
                    continue
                pe, ps, pdf = float(row["previous_estimate"]), float(row["previous_se"]), float(row["previous_df"])
                ce, cs, cdf = float(row["current_estimate"]), float(row["current_se"]), float(row["current_df"])
                st = change_stats(pe, ps, pdf, ce, cs, cdf, level)
                row.update({k: st[k] for k in ("change", "se", "df", "ci_low", "ci_high")})
                degenerate = (ps <= _ZERO_SE * max(abs(pe), 1.0)) and (cs <= _ZERO_SE * max(abs(ce), 1.0))
                if degenerate or ind in calibrated_ids:
                    row.update(se=np.nan, ci_low=np.nan, ci_high=np.nan, df=np.nan,
                               not_tested_reason=NOT_TESTED_REGISTER)
                elif row["kind"] == "median":
                    row.update(se=np.nan, ci_low=np.nan, ci_high=np.nan, df=np.nan,
                               not_tested_reason=NOT_TESTED_MEDIAN)
                elif min(pdf, cdf) < 1:
                    row["not_tested_reason"] = "trop peu de répondants"
                else:
                    row["p_value"] = st["p_value"]
                    row["tested"] = True
                rows.append(row)
    out = pd.DataFrame(rows).reindex(columns=CHANGE_COLUMNS)
    for col in ("previous_suppressed", "current_suppressed", "tested", "suppressed"):
        out[col] = out[col].fillna(False).astype(bool)
    return out.reset_index(drop=True)


def report_changes(changes: pd.DataFrame, target: str, fdr_alpha: float = 0.05) -> pd.DataFrame:
    """One report's change rows, its tests corrected together (Benjamini-Hochberg).

    A CAE report: its own changes (and the consortium's, untested there, for context). The
    consortium report: the consortium's (both scopes) and every CAE's, all tested together.
    """
    if target == CONSORTIUM:
        out = changes.copy()
        family = out["tested"]
    else:
        out = changes[(changes["target"] == target) | (changes["scope"] == SCOPE_CONSORTIUM)].copy()
        family = out["tested"] & (out["target"] == target)
    out = out.reset_index(drop=True)
    family = family.reset_index(drop=True)
    adj = np.full(len(out), np.nan)
    adj[family.to_numpy()] = bh_adjust(out.loc[family, "p_value"])
    out["p_adjusted"] = adj
    out["significant"] = pd.array(np.where(np.isnan(adj), None, adj < fdr_alpha), dtype="boolean")
    return out


def trend_rows(waves: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Every published consortium and CAE total figure of every wave, stacked (for trend charts)."""
    parts = []
    for wave, fig in waves:
        f = fig[["indicator_id", "indicator_label", "domain_id", "kind", "unit", "target", "category",
                 "category_label", "estimate", "se", "ci_low", "ci_high", "n_unweighted", "suppressed"]].copy()
        f.insert(0, "wave", wave)
        parts.append(f)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# ============================================================================================
# 4. The build step: reports/<wave>/_waves/
# ============================================================================================


def run_changes(study: StudyConfig, reports_root: Path, processed_root: Path | None = None) -> Path:
    """Compute every change of the wave against its latest previous wave, and the trends.

    Reads this wave's study table (``_study/estimates.parquet``, disclosure control applied)
    and the previous waves' published files; writes ``_waves/changes.parquet`` (every scope),
    ``changes__<target>.parquet`` (a report's rows, tests corrected), ``comparability.csv``,
    ``trend.parquet`` and ``waves.json`` (the waves, CAEs that joined or left, and the
    respondents of both waves against chance, :func:`linkage`, when both waves' cleaned
    responses are under ``processed_root``: their pseudonyms only are read).
    """
    if not study.previous_waves:
        raise WaveError(f"{study.path}: no previous_waves: nothing to compare with")
    cb = load_codebook(study.codebook)
    table = pd.read_parquet(study_dir(study, reports_root) / ESTIMATES_FILE)
    current = wave_figures(table)
    loaded = [load_wave_figures(p.figures) for p in study.previous_waves]
    for p, w in zip(study.previous_waves, loaded, strict=True):
        if w.wave != p.wave:
            raise WaveError(f"{p.figures}: published for wave {w.wave!r}, not {p.wave!r}")
    last = loaded[-1]
    comps = comparability(last.meta.get("indicators", {}), cb, study.codebook)
    calibrated = {m["question"] for m in (cb.register_mapping or {}).values()}
    changes = compute_changes(current, last.rows, comps, previous_wave=last.wave, current_wave=study.wave,
                              min_base=study.report.min_base_pct, level=study.report.confidence_level,
                              calibrated=calibrated)
    out = waves_dir(study, reports_root)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("changes__*.parquet"):
        old.unlink()

    def save(frame: pd.DataFrame, path: Path) -> None:
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))

    save(changes, out / CHANGES_FILE)
    # the same rows for R (scripts/verify_changes_with_r.R) and spreadsheets
    write_atomic(out / "changes.csv", changes.to_csv(index=False, float_format=_FLOAT_FORMAT, lineterminator="\n"))
    for target in study.targets:
        save(report_changes(changes, target, study.report.fdr_alpha), target_change_file(study, reports_root, target))
    write_atomic(out / COMPARABILITY_FILE,
                 comparability_table(comps, cb, last.wave).to_csv(index=False, lineterminator="\n"))
    save(trend_rows([*[(w.wave, w.rows) for w in loaded], (study.wave, current)]), out / TREND_FILE)
    prev_caes = set(last.cae_ids)
    cur_caes = set(study.cae_ids)
    info = {
        "wave": study.wave,
        "previous_wave": last.wave,
        "waves": [w.wave for w in loaded] + [study.wave],
        "previous_published": last.meta.get("published"),
        "previous_figures": {"path": _rel(last.path), "sha256": last.meta.get("figures", {}).get("sha256")},
        "previous_codebook_version": last.meta.get("codebook", {}).get("version"),
        "codebook_version": cb.version,
        "common_caes": sorted(prev_caes & cur_caes),
        "joined": [{"id": c, "label": study.target_label(c)} for c in sorted(cur_caes - prev_caes)],
        "left": [{"id": c, "label": last.labels.get(c, c)} for c in sorted(prev_caes - cur_caes)],
        "compared": int(sum(c.comparable for c in comps)),
        "not_compared": int(sum(not c.comparable for c in comps)),
    }
    info["linkage"] = _linkage_summary(study, last.wave, sorted(prev_caes & cur_caes), processed_root)
    write_atomic(out / WAVES_INFO_FILE, json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return out / CHANGES_FILE


def _linkage_summary(study: StudyConfig, previous_wave: str, common: list[str],
                     processed_root: Path | None) -> dict[str, Any] | None:
    """:func:`linkage` on the cleaned responses of both waves (None when either is missing)."""
    if processed_root is None or not common:
        return None
    files = {w: {c: Path(processed_root) / w / c / "responses.parquet" for c in common}
             for w in (previous_wave, study.wave)}
    if not all(p.exists() for by_cae in files.values() for p in by_cae.values()):
        return None
    ids = {w: {c: pd.read_parquet(p, columns=["respondent_id"])["respondent_id"].astype(str)
               for c, p in by_cae.items()} for w, by_cae in files.items()}
    table = linkage(ids[previous_wave], ids[study.wave], {c: study.cae(c).population.total for c in common})
    total = table[table["cae_id"] == CONSORTIUM].iloc[0]
    return {"linked": int(total["linked"]), "expected": round(float(total["expected"]), 1),
            "p_fewer": float(total["p_fewer"]),
            "by_cae": table[table["cae_id"] != CONSORTIUM].drop(columns=["variance"]).round(4).to_dict("records")}


def has_previous(study: StudyConfig) -> bool:
    """Whether the study names an earlier wave to compare with."""
    return bool(getattr(study, "previous_waves", ()))


# ============================================================================================
# 6. The change columns of a report's indicator tables
# ============================================================================================

CHANGE_TABLE_COLUMNS = ["previous_wave", "previous_estimate", "change", "change_ci_low", "change_ci_high",
                        "change_p_adjusted", "change_significant", "change_note"]


def add_change_columns(rows: pd.DataFrame, changes: pd.DataFrame, target: str) -> pd.DataFrame:
    """A report's indicator rows with the change since the previous wave on its total rows.

    The report's own figures: a CAE's rows (scope ``cae``), the consortium's (scope
    ``consortium``, as published) and, in the consortium report, each CAE's. Values are those of
    the report's change file (tests corrected in the report); a hidden level gives no change.
    """
    out = rows.copy()
    ch = changes[changes["scope"].isin([SCOPE_CAE, SCOPE_CONSORTIUM])]
    if target != CONSORTIUM:
        ch = ch[(ch["target"] == target) | (ch["scope"] == SCOPE_CONSORTIUM)]
    ch = ch.drop_duplicates(["target", *KEY])
    hidden = ch["suppressed"].astype(bool)
    note = np.where(hidden, "valeur non publiée à l’une des deux vagues",
                    ch["not_tested_reason"].fillna("").astype(str))
    sig = ch["significant"] if "significant" in ch.columns else pd.Series(pd.NA, index=ch.index)
    padj = ch["p_adjusted"] if "p_adjusted" in ch.columns else pd.Series(np.nan, index=ch.index)
    add = pd.DataFrame({
        "target": ch["target"].to_numpy(), "indicator_id": ch["indicator_id"].to_numpy(),
        "category": ch["category"].to_numpy(),
        "breakdown": TOTAL,
        "previous_wave": ch["previous_wave"].to_numpy(),
        "previous_estimate": np.where(ch["previous_suppressed"].astype(bool), np.nan, ch["previous_estimate"]),
        "change": np.where(hidden, np.nan, ch["change"]),
        "change_ci_low": np.where(hidden, np.nan, ch["ci_low"]),
        "change_ci_high": np.where(hidden, np.nan, ch["ci_high"]),
        "change_p_adjusted": np.where(hidden, np.nan, padj),
        "change_significant": pd.array(np.where(hidden | pd.isna(sig), None, sig), dtype="boolean"),
        "change_note": note,
    })
    out["category"] = out["category"].fillna("")
    merged = out.merge(add, on=["target", "breakdown", "indicator_id", "category"], how="left")
    comparable = merged["previous_wave"].notna()
    is_total = merged["breakdown"] == TOTAL
    own = merged["target"].isin(set(add["target"]))
    merged.loc[is_total & own & ~comparable, "change_note"] = "indicateur non comparé (voir l’annexe)"
    merged["previous_wave"] = merged["previous_wave"].fillna("")
    merged["change_note"] = merged["change_note"].fillna("")
    return merged


# ============================================================================================
# 7. Secrecy over the waves
# ============================================================================================


def audit_previous_wave(figures: WaveFigures, cb):
    """The linear-programming attack (:mod:`cae_impact.analysis.secrecy`) on a wave's published figures file.

    The file holds the total rows of every target; the attack uses every relation among them
    (categories and bases, consortium = sum of the CAEs, bands, the CAEs' respondents).
    """
    table = figures.rows.copy()
    table["breakdown"] = TOTAL
    table["group"] = ""
    table = table.drop_duplicates(subset=["indicator_id", "target", "breakdown", "group", "category"])
    inputs = indicators.secrecy_inputs(cb)
    return secrecy.audit_table(table.reset_index(drop=True), cb, inputs["indicators"], consortium=CONSORTIUM,
                               min_count=int(figures.meta.get("report", {}).get("min_cell_count", 5)),
                               group_codes=inputs["group_codes"])


def check_changes_from_published(study: StudyConfig, reports_root: Path) -> list[str]:
    """Every published change is the difference of two published figures; a hidden level gives none.

    Compares each change row of ``_waves/changes.parquet`` (scopes ``cae`` and ``consortium``)
    with the previous wave's published file and this wave's ``indicators.csv`` files. Returns
    the problems found (empty: the change files publish nothing the two waves did not).
    """
    changes = pd.read_parquet(waves_dir(study, reports_root) / CHANGES_FILE)
    prev = load_wave_figures(study.previous_waves[-1].figures).rows.set_index(["target", *KEY])
    cur_parts = []
    for target in study.targets:
        path = Path(reports_root) / study.wave / target / "indicators.csv"
        if path.exists():
            t = pd.read_csv(path, dtype={"category": str, "group": str}, keep_default_na=False, na_values=[""])
            t["category"] = t["category"].fillna("")
            t = t[(t["target"] == target) & (t["breakdown"] == TOTAL)]
            t["suppressed"] = t["suppressed"].astype(str).str.lower().isin(["true", "1"])
            cur_parts.append(t)
    cur = pd.concat(cur_parts, ignore_index=True).set_index(["target", *KEY])
    problems = []
    for _, r in changes[changes["scope"].isin([SCOPE_CAE, SCOPE_CONSORTIUM])].iterrows():
        key = (r["target"], r["indicator_id"], r["category"])
        pkey = key  # categories are mapped one to one (renamed codes keep their published row)
        c = cur.loc[key] if key in cur.index else None
        p = prev.loc[pkey] if pkey in prev.index else None
        hidden = (c is None or bool(c["suppressed"]) or pd.isna(c["estimate"])
                  or p is None or bool(p["suppressed"]) or pd.isna(p["estimate"]))
        if hidden:
            if pd.notna(r["change"]) or pd.notna(r["se"]):
                problems.append(f"{key}: a change is given where a level is not published")
            continue
        if pd.isna(r["change"]):
            continue
        if not math.isclose(float(r["change"]), float(c["estimate"]) - float(p["estimate"]), rel_tol=0,
                            abs_tol=1e-9 * max(1.0, abs(float(c["estimate"])))):  # indicators.csv: 10 digits
            problems.append(f"{key}: the change is not the difference of the published figures")
    return problems
