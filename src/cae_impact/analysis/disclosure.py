"""Statistical disclosure control of the indicator table (CONTRACTS §5).

The table has one row per published cell: an indicator, a target (a CAE or the consortium), a
breakdown (``total`` or a profile variable) and its group, and for distributions a category.
Before publication:

Primary rules (the cell itself is too small)
    * ``effectif < 5``: a count of respondents (``count_col``) from 1 to 4 on a base below
      ``min_base_pct`` is hidden; for cells without a count (means, medians) the rule applies
      to the base.
    * ``base < 10``: no percentage on an unweighted base below ``min_base_pct``; the same
      threshold applies to means and medians unless ``min_base_value`` says otherwise.
    * **coded bands** instead of a hidden value: on a base of at least ``min_base_pct``, a
      share whose count or complement is 0 to 4 is published as a band, not as a number:
      « moins de U sur 10 » (``band_high`` = U / 10) or « L sur 10 ou plus » (``band_low``).
      The band is the decile bound that holds both for the weighted estimate and for every
      count from 0 to 5 on that side, so it always contains the 0 % (or 100 %) cell and at
      least one count above 4: a reader cannot tell 0 from 1-4 respondents, nor learn that
      all or none of a group gave an answer. This keeps results such as « 9 sur 10 ou plus »
      that an « s » hid before, and it is the rule for totals of 0 % and 100 %.
    * A cell with a base of 0 is published as empty (« — »): it hides nothing and protects
      nothing.

Caution (published, flagged)
    * ``flag_caution``: unweighted base below ``caution_base`` (30), to be shown « à
      interpréter avec prudence » (:data:`CAUTION_TEXT`).

Secondary (complementary) suppression, « suppression secondaire »
    Three additive relations hold between published cells, on counts or on shares:

    (a) targets: consortium cell = sum of the CAEs' cells (same indicator, breakdown, group,
        category);
    (b) breakdowns: ``total`` cell = sum of the groups' cells of a breakdown (same indicator,
        target, category);
    (c) distributions: 100 % = sum of the categories (same indicator, target, breakdown, group).

    A hidden (or coded) cell that is the only one of a relation is recovered by subtraction.
    So, until no relation has exactly one hidden member, the published member of the relation
    with the smallest count (base if no count) among its components is hidden as well, or
    else the relation's total (consortium or ``total`` cell). Because the rule is applied to
    a fixed point, a secondary suppression that creates a single hidden cell in another
    relation triggers a further one there.

Audit (optional ``protect`` hook)
    Every other linear relation (a share and the categories of its question, the unknown group
    of a breakdown, the sizes of groups from other tables, the bands) is left to the linear
    programming attack of :mod:`cae_impact.analysis.secrecy`, which hides further cells until no hidden
    count is pinned or enclosed in 1-4 (:func:`cae_impact.analysis.secrecy.protect_table`).

Bases: a hidden cell's base (``n_unweighted``, ``base_weighted``) and count are blanked as well
(a group's size is often a hidden count of another table); a coded cell keeps its base.

Suppressed cells keep their row; their estimate, SE, interval, p-values, significance and
count are set to missing, ``suppressed`` is True and ``suppression_reason`` says why.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CAUTION_TEXT",
    "REASON_COUNT",
    "REASON_BASE",
    "REASON_SECONDARY",
    "REASON_BAND",
    "band_text",
    "Relation",
    "apply_disclosure_control",
    "primary_suppression",
    "secondary_suppression",
    "relations",
    "find_recoverable_cells",
]

CAUTION_TEXT = "à interpréter avec prudence"
REASON_COUNT = "effectif < {min_count}"
REASON_BASE = "base < {min_base}"
REASON_SECONDARY = "suppression secondaire"
REASON_BAND = "valeur en tranche (effectif ou complément < {min_count})"

#: columns blanked in a suppressed row
MASKED_COLUMNS = ("estimate", "se", "ci_low", "ci_high", "p_value", "p_adjusted")
#: columns blanked as well in a suppressed row that is not coded (its base)
BASE_COLUMNS = ("n_unweighted", "base_weighted")


def band_text(band_low: float | None = None, band_high: float | None = None, *,
              short: bool = False) -> str:
    """The French text of a coded cell: in words for prose, ``short`` for tables and charts.

    >>> band_text(band_low=0.9)
    '9 sur 10 ou plus'
    >>> band_text(band_high=0.1)
    'moins de 1 sur 10'
    >>> band_text(band_low=0.5)
    'la moitié ou plus'
    >>> band_text(band_high=0.2, short=True)
    '< 20\u202f%'
    >>> band_text(band_low=0.9, short=True)
    '≥ 90\u202f%'
    """
    nbsp = "\u202f"
    if band_low is not None and np.isfinite(band_low):
        k = int(round(band_low * 10))
        if short:
            return f"≥ {k * 10}{nbsp}%"
        return "la moitié ou plus" if k == 5 else f"{k} sur 10 ou plus"
    if band_high is not None and np.isfinite(band_high):
        k = int(round(band_high * 10))
        if short:
            return f"< {k * 10}{nbsp}%"
        return "moins de la moitié" if k == 5 else f"moins de {k} sur 10"
    return ""


def _bands(estimate: np.ndarray, count: np.ndarray, base: np.ndarray, min_count: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(band_low, band_high) of the cells to code (NaN elsewhere); see the module docstring.

    High side (complement 0 to ``min_count - 1``): L = the decile at or below both the
    estimate and (base - min_count) / base. Low side (count 0 to ``min_count - 1``): U = the
    decile strictly above both the estimate and min_count / base. A band that would say
    nothing (L = 0 or U = 1) is not used: the cell is hidden instead.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        comp = base - count
        est = np.where(np.isfinite(estimate), estimate, count / base)
        low = np.floor(np.minimum(est, (base - min_count) / base) * 10 + 1e-9) / 10
        high = (np.floor(np.maximum(est, min_count / base) * 10 + 1e-9) + 1) / 10
    high_side = (comp >= 0) & (comp < min_count) & (count >= min_count)
    low_side = (count >= 0) & (count < min_count) & ~high_side
    band_low = np.where(high_side & (low > 0), low, np.nan)
    band_high = np.where(low_side & (high < 1), high, np.nan)
    return band_low, band_high


@dataclass(frozen=True)
class Relation:
    """An additive relation ``parent = sum(children)`` between rows of the table.

    ``parent`` is a row position, or None when the total is a known constant (100 % of a
    distribution). ``kind`` is ``"targets"``, ``"breakdown"`` or ``"distribution"``.
    """

    kind: str
    parent: int | None
    children: tuple[int, ...]


def _key(s: pd.Series) -> pd.Series:
    """Column as strings with missing values as ''."""
    return s.astype(object).where(s.notna(), "").astype(str)


def _count(table: pd.DataFrame, count_col: str | None) -> np.ndarray:
    if count_col is None or count_col not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[count_col], errors="coerce").to_numpy(dtype=float)


def primary_suppression(
    table: pd.DataFrame,
    *,
    min_count: int = 5,
    min_base_pct: int = 10,
    caution_base: int = 30,
    min_base_value: int | None = None,
    count_col: str | None = "n_count",
    base_col: str = "n_unweighted",
) -> pd.DataFrame:
    """Primary suppression and caution flags.

    Args:
        table: indicator table (CONTRACTS §5 columns; ``count_col`` holds the unweighted
            number of respondents in the cell for shares and distributions, missing for
            means and medians).
        min_count: counts (and complements) from 1 to ``min_count - 1`` are hidden.
        min_base_pct: shares on an unweighted base below it are hidden.
        caution_base: published cells on a base below it get ``flag_caution``.
        min_base_value: base threshold for rows without a count (means, medians); defaults
            to ``min_base_pct``.
        count_col: column of the unweighted number of respondents in the cell (None: no
            count, the count rule then applies to the base).
        base_col: column of the unweighted base.

    Returns:
        a copy with ``suppressed``, ``suppression_reason`` (French) and ``flag_caution`` set
        by the primary rules (values are not blanked yet: see :func:`apply_disclosure_control`).

    """
    _check_columns(table, [base_col])
    if count_col is not None and count_col not in table.columns:
        raise ValueError(
            f"the count column {count_col!r} is missing (unweighted number of "
            "respondents in each cell; pass count_col=None if there is none)"
        )
    out = table.copy().reset_index(drop=True)
    base = pd.to_numeric(out[base_col], errors="coerce").to_numpy(dtype=float)
    count = _count(out, count_col)
    has_count = ~np.isnan(count)
    comp = base - count
    small = lambda v: (v >= 1) & (v < min_count)  # noqa: E731
    empty = base == 0  # published as empty: hides nothing
    threshold = np.where(
        has_count, min_base_pct, min_base_pct if min_base_value is None else min_base_value
    )
    by_base = ~(base >= threshold) & ~empty  # NaN base counts as too small
    estimate = (pd.to_numeric(out["estimate"], errors="coerce").to_numpy(dtype=float)
                if "estimate" in out.columns else np.full(len(out), np.nan))
    band_low, band_high = _bands(estimate, count, base, min_count)
    coded = has_count & ~by_base & ~empty & (np.isfinite(band_low) | np.isfinite(band_high))
    by_count = np.where(has_count, (small(count) | small(comp)) & ~coded, small(base)) & ~empty
    reason = np.where(
        by_count,
        REASON_COUNT.format(min_count=min_count),
        np.where(by_base, REASON_BASE.format(min_base=min_base_pct),
                 np.where(coded, REASON_BAND.format(min_count=min_count), "")),
    )
    if min_base_value is not None:
        reason = np.where(
            ~by_count & by_base & ~has_count, REASON_BASE.format(min_base=min_base_value), reason
        )
    out["suppressed"] = by_count | by_base | coded
    out["suppression_reason"] = reason
    out["band_low"] = np.where(coded, band_low, np.nan)
    out["band_high"] = np.where(coded, band_high, np.nan)
    out["flag_caution"] = (base < caution_base) & ~(by_count | by_base) & ~empty
    return out


def _group_ids(*keys: np.ndarray) -> np.ndarray:
    """Group number of every row for the combination of ``keys``.

    Groups are numbered in order of first appearance (as ``groupby(sort=False)``).
    """
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for k in keys:
        codes, uniques = pd.factorize(k)
        combined = combined * (len(uniques) + 1) + codes
    return np.asarray(pd.factorize(combined)[0], dtype=np.int64)


def _runs(gid: np.ndarray, sel: np.ndarray) -> list[np.ndarray]:
    """Row positions of each group among the selected rows.

    Groups come in order of their number, rows in table order.
    """
    pos = np.flatnonzero(sel)
    if len(pos) == 0:
        return []
    g = gid[pos]
    order = np.argsort(g, kind="stable")
    pos, g = pos[order], g[order]
    cuts = np.flatnonzero(np.diff(g)) + 1
    return np.split(pos, cuts)


def relations(table: pd.DataFrame, *, consortium: str = "consortium") -> list[Relation]:
    """The additive relations (a), (b), (c) between the rows of an indicator table.

    (a) needs a consortium row, (b) a ``total`` row; (c) groups every category of a
    distribution (missing-answer categories included: conservative if they are shares of
    another base). Relations come in that order; within a kind, in order of first appearance
    of their rows in the table, members in table order.
    """
    _check_columns(table, ["indicator_id", "target", "breakdown", "group", "category"])
    t = table.reset_index(drop=True)
    ind, target, breakdown, group, category = (
        _key(t[c]).to_numpy(dtype=object)
        for c in ["indicator_id", "target", "breakdown", "group", "category"]
    )
    n = len(t)
    rels: list[Relation] = []
    if n == 0:
        return rels
    is_cons = target == consortium
    # (a) consortium = sum of the CAEs
    gid = _group_ids(ind, breakdown, group, category)
    for members in _runs(gid, np.ones(n, dtype=bool)):
        parent = members[is_cons[members]]
        children = members[~is_cons[members]]
        if len(parent) == 1 and len(children):
            rels.append(Relation("targets", int(parent[0]), tuple(children.tolist())))
    # (b) total = sum of the groups of a breakdown
    gid = _group_ids(ind, target, category)
    is_total = breakdown == "total"
    n_total = np.bincount(gid[is_total], minlength=int(gid.max()) + 1)
    total_row = np.full(len(n_total), -1, dtype=np.int64)
    total_row[gid[is_total]] = np.flatnonzero(is_total)
    sub = np.full(n, -1, dtype=np.int64)
    nt = ~is_total
    if nt.any():
        sub[nt] = _group_ids(gid[nt], breakdown[nt])
        runs = _runs(sub, nt)
        # breakdowns within a (indicator, target, category), the latter in order of first row
        runs.sort(key=lambda r: (int(gid[r[0]]), int(sub[r[0]])))
        for members in runs:
            g = int(gid[members[0]])
            if n_total[g] == 1:
                rels.append(Relation("breakdown", int(total_row[g]), tuple(members.tolist())))
    # (c) 100 % = sum of the categories
    has_cat = category != ""
    if has_cat.any():
        gid = np.full(n, -1, dtype=np.int64)
        gid[has_cat] = _group_ids(ind[has_cat], target[has_cat], breakdown[has_cat], group[has_cat])
        for members in _runs(gid, has_cat):
            if len(members) >= 2:
                rels.append(Relation("distribution", None, tuple(members.tolist())))
    return rels


def _secondary_fixed_point(
    rels: list[Relation], hidden: np.ndarray, reason: np.ndarray, size: np.ndarray,
    empty: np.ndarray | None = None,
) -> None:
    """The fixed point of :func:`secondary_suppression`, in place.

    Same result as sweeping over every relation in order until a sweep changes nothing, where
    a relation with exactly one hidden member hides one more: the relations are visited in the
    same order, but only those whose number of hidden members has just become one (a relation
    acts at most once: afterwards two of its members are hidden).
    """
    members = [([r.parent] if r.parent is not None else []) + list(r.children) for r in rels]
    rels_of: dict[int, list[int]] = {}
    for i, mem in enumerate(members):
        for m in mem:
            rels_of.setdefault(m, []).append(i)
    count = [int(hidden[mem].sum()) for mem in members]
    key_size = np.where(np.isnan(size), np.inf, size)
    current = [i for i, c in enumerate(count) if c == 1]
    while current:
        heapq.heapify(current)
        later: list[int] = []
        pos = -1
        while current:
            i = heapq.heappop(current)
            if count[i] != 1:
                continue
            pos = i
            r = rels[i]
            # a cell with a base of 0 is known to be empty: hiding it protects nothing
            candidates = [c for c in r.children if not hidden[c] and not (empty is not None and empty[c])]
            if candidates:
                pick = min(candidates, key=lambda c: (key_size[c], c))
            elif r.parent is not None and not hidden[r.parent] and not (empty is not None and empty[r.parent]):
                pick = r.parent
            else:  # every other member is hidden or empty: left to the secrecy audit
                continue
            hidden[pick] = True
            reason[pick] = REASON_SECONDARY
            for j in rels_of.get(pick, ()):
                count[j] += 1
                if count[j] == 1:
                    if j > pos:
                        heapq.heappush(current, j)
                    else:
                        later.append(j)
        current = later


def secondary_suppression(
    table: pd.DataFrame,
    *,
    consortium: str = "consortium",
    count_col: str | None = "n_count",
    base_col: str = "n_unweighted",
) -> pd.DataFrame:
    """Complementary suppression to a fixed point (see the module docstring).

    Takes a table whose ``suppressed`` column holds the primary suppressions; returns a copy in
    which no relation (a), (b), (c) has exactly one hidden member. The added cells get the
    reason « suppression secondaire ». Among the published components of a relation the one
    with the smallest count (base if no count; ties: first row) is chosen, the relation's
    total only when no component is left. Relations are examined in the order of
    :func:`relations`, repeatedly, until none changes.
    """
    out = table.copy().reset_index(drop=True)
    hidden = out["suppressed"].astype(bool).to_numpy().copy()
    reason = out["suppression_reason"].astype(object).where(out["suppression_reason"].notna(), "")
    reason = reason.astype(str).to_numpy().copy()
    size = _count(out, count_col)
    base = pd.to_numeric(out[base_col], errors="coerce").to_numpy(dtype=float)
    size = np.where(np.isnan(size), base, size)
    rels = relations(out, consortium=consortium)
    _secondary_fixed_point(rels, hidden, reason, size, empty=base == 0)
    out["suppressed"] = hidden
    out["suppression_reason"] = reason
    if "flag_caution" in out.columns:
        out["flag_caution"] = out["flag_caution"].astype(bool) & ~(hidden & ~_coded(out))
    return out


def _coded(table: pd.DataFrame) -> np.ndarray:
    """Rows published as a band (value hidden, base published)."""
    out = np.zeros(len(table), dtype=bool)
    for col in ("band_low", "band_high"):
        if col in table.columns:
            out |= np.isfinite(pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float))
    return out & table["suppressed"].astype(bool).to_numpy()


def apply_disclosure_control(
    table: pd.DataFrame,
    *,
    min_count: int = 5,
    min_base_pct: int = 10,
    caution_base: int = 30,
    min_base_value: int | None = None,
    consortium: str = "consortium",
    count_col: str | None = "n_count",
    base_col: str = "n_unweighted",
    protect: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Primary rules and bands, caution flags, secondary suppression, audit, then blanking.

    Args: as :func:`primary_suppression` and :func:`secondary_suppression`; ``protect``, when
        given, takes the table with its ``suppressed`` flags after the secondary suppression
        and returns it with more cells hidden (the linear-programming audit,
        :func:`cae_impact.analysis.secrecy.protect_table`).

    Returns:
        a copy of ``table`` (index reset) with ``suppressed`` (bool: the value is not
        published), ``suppression_reason`` (« effectif < 5 », « base < 10 », « suppression
        secondaire », « valeur en tranche … » or ''), ``band_low`` / ``band_high`` (the band
        of a coded cell) and ``flag_caution`` set; ``estimate``, ``se``, ``ci_low``,
        ``ci_high``, ``p_value``, ``p_adjusted``, ``significant`` and the count set to missing
        in suppressed rows, and the base too unless the row is coded.

    """
    out = primary_suppression(
        table,
        min_count=min_count,
        min_base_pct=min_base_pct,
        caution_base=caution_base,
        min_base_value=min_base_value,
        count_col=count_col,
        base_col=base_col,
    )
    out = secondary_suppression(out, consortium=consortium, count_col=count_col, base_col=base_col)
    if protect is not None:
        out = protect(out)
        if "flag_caution" in out.columns:
            out["flag_caution"] = out["flag_caution"].astype(bool) & ~(
                out["suppressed"].astype(bool).to_numpy() & ~_coded(out))
    hide = out["suppressed"].to_numpy()
    blank_base = hide & ~_coded(out)
    for col in MASKED_COLUMNS:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).where(~hide, np.nan)
    for col in BASE_COLUMNS:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).where(~blank_base, np.nan)
    if count_col is not None and count_col in out.columns:
        out[count_col] = (
            pd.to_numeric(out[count_col], errors="coerce").astype(float).where(~hide, np.nan)
        )
    if "significant" in out.columns:
        out["significant"] = out["significant"].astype("boolean").where(~hide, pd.NA)
    return out


def find_recoverable_cells(table: pd.DataFrame, *, consortium: str = "consortium") -> pd.DataFrame:
    """Audit: hidden cells that differencing along the relations (a), (b), (c) would reveal.

    An attacker knows every published estimate and every base; each relation where a single
    member is unknown gives it by subtraction (on weighted counts ``estimate x base_weighted``,
    or on shares for distributions); recovered values are reused and the process is repeated
    until nothing new comes out. Returns the recovered rows (position, relation kind, value);
    empty when the table is protected against these attacks.
    """
    t = table.reset_index(drop=True)
    est = pd.to_numeric(t["estimate"], errors="coerce").to_numpy(dtype=float)
    wb = pd.to_numeric(t["base_weighted"], errors="coerce").to_numpy(dtype=float)
    known = ~np.isnan(est)
    value = np.where(known, est, np.nan)
    recovered: list[dict] = []
    rels = relations(t, consortium=consortium)
    changed = True
    while changed:
        changed = False
        for r in rels:
            members = ([r.parent] if r.parent is not None else []) + list(r.children)
            unknown = [m for m in members if not known[m]]
            if len(unknown) != 1:
                continue
            u = unknown[0]
            if r.kind == "distribution":
                v = 1.0 - sum(value[c] for c in r.children if c != u)
            else:
                if r.parent == u:
                    v = sum(value[c] * wb[c] for c in r.children) / wb[u]
                else:
                    v = (
                        value[r.parent] * wb[r.parent]
                        - sum(value[c] * wb[c] for c in r.children if c != u)
                    ) / wb[u]
            value[u] = v
            known[u] = True
            recovered.append({"row": u, "relation": r.kind, "value": v})
            changed = True
    return pd.DataFrame(recovered, columns=["row", "relation", "value"])


def _check_columns(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"indicator table lacks columns {missing}")
