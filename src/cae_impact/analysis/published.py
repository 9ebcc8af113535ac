"""The published consortium reference: the consortium figures a CAE's report is compared with.

Two ways to compare a CAE with the consortium (``consortium_reference`` in the study file):

``live`` (default)
    With the consortium of the same build: the CAE against the rest of the consortium, a Wald t
    test on the joint linearisation of the whole design (:func:`cae_impact.estimation.compare_strata`).
    Every CAE's report then depends on every CAE's data: correcting one export changes, and
    rebuilds, every report.

a published reference (a file written by ``make publish-reference``)
    With the consortium figures as published on a date: the consortium's total rows of the
    study table (estimate, standard error, interval, bases, suppression), frozen in a CSV file
    with a JSON description beside it (date, CAEs, digest of the estimates, git commit). A
    CAE's report then depends on its own data and on that file only, and stays as delivered
    until the network publishes new figures. It is also how a CAE that joins the method later
    compares itself with the national consortium.

The test against a published figure is the same test as ``live`` when the reference is the
current consortium. The consortium's mean is ``p_C = sum_h b_h p_h`` with ``b_h = B_h / B``
the CAE's share of the consortium's weighted base, so ``p_k - p_C = (1 - b_k)(p_k - p_rest)``
and, the CAEs being independent strata, ``Cov(p_k, p_C) = b_k Var(p_k)``:

    Var(p_k - p_C) = Var(p_k) (1 - 2 b_k) + Var(p_C) = (1 - b_k)^2 (Var(p_k) + Var(p_rest)),

the same t statistic as the CAE against the rest (exactly when the CAE's weighted base is
fixed by the calibration, as for a question everyone answered; to the second order
otherwise). A CAE that is not part of the reference (a later wave, a CAE that joined) has
``b_k = 0``: the two estimates are independent. The degrees of freedom are the reference's
(respondents minus CAEs, minus one: R's ``degf``). A difference whose standard error is zero
up to rounding is not tested, as in ``live`` (:func:`cae_impact.estimation.testable`). The rows
tested are those that carry the live test (``comparison == 'consortium'``), so the same rules
hold: no test of a calibration variable (sex, contract stage) nor of a CAE's 0 % / 100 % in a
sample, whose linearised variance is 0 (:func:`cae_impact.analysis.indicators.degenerate_variance`).

This is a small formula written here rather than a library call because no Python survey
library tests an estimate against a published figure that shares part of its sample.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cae_impact.core.files import write_atomic
from cae_impact.estimation import ZERO_SE as _ZERO_SE
from cae_impact.estimation import testable as _testable
from cae_impact.spec.config import CONSORTIUM, StudyConfig
from cae_impact.spec.layout import meta_path

from .indicators import COLUMNS, TOTAL

REFERENCE_TEST = "t de Wald, CAE contre les chiffres publiés du consortium"
#: a figure of the reference: the indicator and its category ("" for a share or a mean)
KEY = ["indicator_id", "category"]
_FLOAT_FORMAT = "%.17g"  # every float written back exactly


class ReferenceError(ValueError):
    """The published reference is missing, unreadable or does not fit the study."""


@dataclass(frozen=True)
class PublishedReference:
    """The consortium's published figures (``rows``, one per indicator x category) and their description."""

    path: Path
    rows: pd.DataFrame
    meta: dict[str, Any]

    @property
    def caes(self) -> set[str]:
        """The CAEs whose data the published figures come from."""
        return set(self.meta.get("caes", []))

    @property
    def published(self) -> str:
        """The publication date (ISO)."""
        return str(self.meta.get("published", ""))


def consortium_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The consortium's total rows of a study table, with the degrees of freedom of its tests.

    ``df`` = respondents in the base minus CAEs with a respondent in it, minus one (as the
    CAE-against-the-rest test of :func:`cae_impact.estimation.compare_strata`).
    """
    totals = table[table["breakdown"] == TOTAL]
    cons = totals[totals["target"] == CONSORTIUM].copy()
    caes = totals[totals["target"] != CONSORTIUM]
    # a hidden CAE cell had respondents (its base is blanked; a base of 0 is never hidden)
    has_rows = (caes["n_unweighted"] > 0) | caes["suppressed"].astype(bool)
    strata = (caes[has_rows].groupby(KEY, dropna=False).size()
              .rename("n_strata").reset_index())
    cons = cons.merge(strata, on=KEY, how="left")
    cons["df"] = cons["n_unweighted"] - cons["n_strata"].fillna(0) - 1
    return cons.drop(columns=["n_strata"]).reset_index(drop=True)


def write_reference(table: pd.DataFrame, study: StudyConfig, path: Path, *, source: dict[str, Any],
                    consortium: dict[str, Any]) -> Path:
    """Publish the consortium figures of ``table`` (a disclosure-controlled study table) to ``path``.

    Writes ``path`` (CSV, UTF-8, floats written back exactly) and its JSON description; both
    atomically. ``source`` is recorded as is (``published`` date, data digests, git commit…);
    ``consortium`` is the sample the figures come from (CAEs, population, respondents, design
    effect), printed in the method annex of the CAE reports.
    """
    rows = consortium_rows(table)
    if rows.empty:
        raise ReferenceError(f"{study.path}: the study table has no consortium row to publish")
    path.parent.mkdir(parents=True, exist_ok=True)
    caes = sorted(table.loc[table["target"] != CONSORTIUM, "target"].unique().tolist())
    meta = {
        "schema": 1,
        "study": study.study,
        "wave": study.wave,
        "title": study.title,
        "published": str(source.pop("published")),
        "caes": caes,
        "rows": int(len(rows)),
        "consortium": consortium,
        "source": source,
    }
    write_atomic(path, rows.to_csv(index=False, float_format=_FLOAT_FORMAT, lineterminator="\n"))
    write_atomic(meta_path(path), json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
    return path


_BOOL_COLUMNS = ("flag_caution", "suppressed", "significant")


def load_reference(path: Path) -> PublishedReference:
    """Read a published reference; :class:`ReferenceError` names the file and what is wrong."""
    if not path.exists():
        raise ReferenceError(
            f"{path}: published consortium reference not found; run 'make publish-reference' to "
            "publish the consortium figures of this build, or set 'consortium_reference: live' "
            "in the study file"
        )
    mpath = meta_path(path)
    if not mpath.exists():
        raise ReferenceError(f"{mpath}: description of the published reference {path.name} not found")
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ReferenceError(f"{mpath}: not valid JSON: {exc}") from exc
    text = ("indicator_id", "target", "category", "group", "category_label", "group_label", "comparison",
            "test", "suppression_reason")
    try:
        rows = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False, na_values=[""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise ReferenceError(f"{path}: not a readable CSV file: {exc}") from exc
    missing = [c for c in [*COLUMNS, "df"] if c not in rows.columns]
    if missing:
        raise ReferenceError(f"{path}: column(s) {', '.join(missing)} missing (written by another version?)")
    for col in text:
        rows[col] = rows[col].fillna("").astype(str)
    for col in _BOOL_COLUMNS:
        rows[col] = rows[col].map({True: True, False: False, "True": True, "False": False}).astype("boolean")
    if (rows["target"] != CONSORTIUM).any() or rows.duplicated(KEY).any():
        line = int(np.flatnonzero((rows["target"] != CONSORTIUM) | rows.duplicated(KEY))[0]) + 2
        raise ReferenceError(f"{path}, line {line}: not a consortium total row, or a duplicate "
                             "(indicator_id, category)")
    return PublishedReference(path=path, rows=rows, meta=meta)


def check_fits(reference: PublishedReference, study: StudyConfig, table: pd.DataFrame) -> None:
    """The reference must be of the same indicators as the study (same codebook)."""
    have = set(map(tuple, reference.rows[KEY].astype(str).to_numpy()))
    need = set(map(tuple, consortium_rows(table)[KEY].astype(str).to_numpy()))
    lacking = sorted(need - have)
    if lacking:
        shown = ", ".join(f"{i}{'/' + c if c else ''}" for i, c in lacking[:5])
        raise ReferenceError(
            f"{reference.path}: {len(lacking)} figure(s) of the study are not in the published "
            f"reference (e.g. {shown}); the codebook changed since it was published: run "
            "'make publish-reference'"
        )


def compare_with_reference(rows: pd.DataFrame, reference: PublishedReference, cae_id: str) -> pd.DataFrame:
    """A CAE's rows with its consortium comparisons recomputed against the published figures.

    The rows that carry the CAE-against-the-consortium test (``comparison == 'consortium'``)
    get the p-value of the test described in the module's docstring and the test's name
    :data:`REFERENCE_TEST`; the other rows are returned unchanged.
    """
    out = rows.copy()
    tested = (out["target"] == cae_id) & (out["comparison"] == CONSORTIUM)
    if not tested.any():
        return out
    ref = reference.rows.set_index(KEY)
    in_reference = cae_id in reference.caes
    p_values = []
    for _, r in out[tested].iterrows():
        key = (r["indicator_id"], r["category"])
        p_values.append(_p_value(r, ref.loc[key] if key in ref.index else None, in_reference))
    out.loc[tested, "p_value"] = p_values
    out.loc[tested, "test"] = REFERENCE_TEST
    return out


def _p_value(cae: pd.Series, ref: pd.Series | None, in_reference: bool) -> float:
    """Two-sided p-value of ``cae.estimate = ref.estimate`` (module docstring); NaN when untestable."""
    nan = float("nan")
    if ref is None or bool(ref["suppressed"]) or bool(cae["suppressed"]):
        return nan
    vals = [cae["estimate"], cae["se"], ref["estimate"], ref["se"], ref["df"]]
    if any(v is None or pd.isna(v) for v in vals):
        return nan
    b = 0.0
    if in_reference:
        if not (cae["base_weighted"] > 0 and ref["base_weighted"] > 0):
            return nan
        b = min(float(cae["base_weighted"]) / float(ref["base_weighted"]), 1.0)
        if ref["n_unweighted"] - cae["n_unweighted"] < 2:  # nothing else to compare with
            return nan
    if cae["n_unweighted"] < 2 or ref["df"] <= 0:
        return nan
    # The live rule (indicators.degenerate_variance), for rows of an older table too: a CAE's
    # variance of 0 in a sample (its interval is wider than a point: not a census) is not tested.
    if (float(cae["se"]) <= _ZERO_SE * max(abs(float(cae["estimate"])), 1.0)
            and not (pd.isna(cae.get("ci_low")) or float(cae["ci_low"]) == float(cae["ci_high"]))):
        return nan
    var = float(cae["se"]) ** 2 * (1 - 2 * b) + float(ref["se"]) ** 2
    se = math.sqrt(max(var, 0.0))
    if not _testable(se, float(cae["estimate"]), float(ref["estimate"])):
        return nan
    t = (float(cae["estimate"]) - float(ref["estimate"])) / se
    return float(2 * stats.t.sf(abs(t), float(ref["df"])))


def reference_report_rows(reference: PublishedReference, table_columns: list[str]) -> pd.DataFrame:
    """The reference's rows as the consortium rows of a CAE report (no test of their own)."""
    out = reference.rows.reindex(columns=table_columns).copy()
    out["comparison"] = ""
    out["test"] = ""
    out["p_value"] = np.nan
    return out


def differences(reference: PublishedReference, table: pd.DataFrame, *, rtol: float = 1e-9) -> pd.DataFrame:
    """The consortium figures of ``table`` that differ from the published ones.

    One row per indicator x category whose estimate, standard error or suppression differs (or
    that is new); empty when the reference is the consortium of ``table``.
    """
    live = consortium_rows(table)[[*KEY, "estimate", "se", "suppressed"]]
    pub = reference.rows[[*KEY, "estimate", "se", "suppressed"]]
    m = live.merge(pub, on=KEY, how="left", suffixes=("", "_published"), indicator=True)

    def differ(a: pd.Series, b: pd.Series) -> np.ndarray:
        a, b = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
        both_nan = np.isnan(a) & np.isnan(b)
        close = np.isclose(a, b, rtol=rtol, atol=0.0)
        return ~(both_nan | close)

    changed = (
        (m["_merge"] != "both")
        | differ(m["estimate"], m["estimate_published"])
        | differ(m["se"], m["se_published"])
        | (m["suppressed"].astype(bool) != m["suppressed_published"].fillna(False).astype(bool))
    )
    return m.loc[changed, [*KEY, "estimate", "estimate_published"]].reset_index(drop=True)
