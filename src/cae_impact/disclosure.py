"""Statistical disclosure control of the indicator table (CONTRACTS §5).

The table has one row per published cell: an indicator, a target (a CAE or the consortium), a
breakdown (``total`` or a profile variable) and its group, and for distributions a category.
Before publication:

Primary suppression (the cell itself is too small)
    * ``effectif < 5``: the unweighted count of respondents in the cell (``count_col``) is 1 to
      4, or its complement (base - count) is 1 to 4: a reader who knows a member of the group
      could learn their answer. For cells without a count (means, medians) the rule applies
      to the base.
    * ``base < 10``: no percentage on an unweighted base below ``min_base_pct``; the same
      threshold applies to means and medians unless ``min_base_value`` says otherwise.

Caution (published, flagged)
    * ``flag_caution``: unweighted base below ``caution_base`` (30), to be shown « à
      interpréter avec prudence » (:data:`CAUTION_TEXT`).

Secondary (complementary) suppression, « suppression secondaire »
    Three additive relations hold between published cells, on weighted counts
    (estimate x ``base_weighted``) or on shares:

    (a) targets: consortium cell = sum of the CAEs' cells (same indicator, breakdown, group,
        category);
    (b) breakdowns: ``total`` cell = sum of the groups' cells of a breakdown (same indicator,
        target, category);
    (c) distributions: 100 % = sum of the categories (same indicator, target, breakdown, group).

    A hidden cell that is the only hidden member of a relation is recovered by subtraction.
    So, until no relation has exactly one hidden member, the published member of the relation
    with the smallest count (base if no count) among its components is hidden as well, or
    else the relation's total (consortium or ``total`` cell). Because the rule is applied to
    a fixed point, a secondary suppression that creates a single hidden cell in another
    relation triggers a further one there. Bases (``n_unweighted``, ``base_weighted``) stay
    published: they are group sizes, not answers.

Limits: this protects against differencing along any one of these relations, iterated
(:func:`find_recoverable_cells` audits it). It is not a full linear-programming audit of all
relations at once (as tau-ARGUS's optimal methods are), nor does it protect bases.

Suppressed cells keep their row; their estimate, SE, interval, p-values, significance and
count are set to missing, ``suppressed`` is True and ``suppression_reason`` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CAUTION_TEXT",
    "REASON_COUNT",
    "REASON_BASE",
    "REASON_SECONDARY",
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

#: columns blanked in a suppressed row
MASKED_COLUMNS = ("estimate", "se", "ci_low", "ci_high", "p_value", "p_adjusted")


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
    by_count = np.where(has_count, small(count) | small(comp), small(base))
    threshold = np.where(
        has_count, min_base_pct, min_base_pct if min_base_value is None else min_base_value
    )
    by_base = ~(base >= threshold)  # NaN base counts as too small
    reason = np.where(
        by_count,
        REASON_COUNT.format(min_count=min_count),
        np.where(by_base, REASON_BASE.format(min_base=min_base_pct), ""),
    )
    if min_base_value is not None:
        reason = np.where(
            ~by_count & by_base & ~has_count, REASON_BASE.format(min_base=min_base_value), reason
        )
    out["suppressed"] = by_count | by_base
    out["suppression_reason"] = reason
    out["flag_caution"] = (base < caution_base) & ~out["suppressed"].to_numpy()
    return out


def relations(table: pd.DataFrame, *, consortium: str = "consortium") -> list[Relation]:
    """The additive relations (a), (b), (c) between the rows of an indicator table.

    (a) needs a consortium row, (b) a ``total`` row; (c) groups every category of a
    distribution (missing-answer categories included: conservative if they are shares of
    another base).
    """
    _check_columns(table, ["indicator_id", "target", "breakdown", "group", "category"])
    t = table.reset_index(drop=True)
    frame = pd.DataFrame(
        {c: _key(t[c]) for c in ["indicator_id", "target", "breakdown", "group", "category"]}
    )
    frame["pos"] = np.arange(len(t))
    rels: list[Relation] = []
    # (a) consortium = sum of the CAEs
    for _, g in frame.groupby(["indicator_id", "breakdown", "group", "category"], sort=False):
        parent = g.loc[g["target"] == consortium, "pos"].tolist()
        children = tuple(g.loc[g["target"] != consortium, "pos"].tolist())
        if len(parent) == 1 and children:
            rels.append(Relation("targets", parent[0], children))
    # (b) total = sum of the groups of a breakdown
    for _, g in frame.groupby(["indicator_id", "target", "category"], sort=False):
        total = g.loc[g["breakdown"] == "total", "pos"].tolist()
        if len(total) != 1:
            continue
        for _, gb in g[g["breakdown"] != "total"].groupby("breakdown", sort=False):
            rels.append(Relation("breakdown", total[0], tuple(gb["pos"].tolist())))
    # (c) 100 % = sum of the categories
    for _, g in frame[frame["category"] != ""].groupby(
        ["indicator_id", "target", "breakdown", "group"], sort=False
    ):
        if len(g) >= 2:
            rels.append(Relation("distribution", None, tuple(g["pos"].tolist())))
    return rels


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
    total only when no component is left.
    """
    out = table.copy().reset_index(drop=True)
    hidden = out["suppressed"].astype(bool).to_numpy().copy()
    reason = out["suppression_reason"].astype(object).where(out["suppression_reason"].notna(), "")
    reason = reason.astype(str).to_numpy().copy()
    size = _count(out, count_col)
    base = pd.to_numeric(out[base_col], errors="coerce").to_numpy(dtype=float)
    size = np.where(np.isnan(size), base, size)
    rels = relations(out, consortium=consortium)
    changed = True
    while changed:
        changed = False
        for r in rels:
            members = ([r.parent] if r.parent is not None else []) + list(r.children)
            if sum(hidden[m] for m in members) != 1:
                continue
            candidates = [c for c in r.children if not hidden[c]]
            if candidates:
                pick = min(
                    candidates, key=lambda c: (size[c] if not np.isnan(size[c]) else np.inf, c)
                )
            elif r.parent is not None and not hidden[r.parent]:
                pick = r.parent
            else:  # pragma: no cover - one hidden member means another is visible
                continue
            hidden[pick] = True
            reason[pick] = REASON_SECONDARY
            changed = True
    out["suppressed"] = hidden
    out["suppression_reason"] = reason
    if "flag_caution" in out.columns:
        out["flag_caution"] = out["flag_caution"].astype(bool) & ~hidden
    return out


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
) -> pd.DataFrame:
    """Primary suppression, caution flags, secondary suppression, then blanking.

    Args: as :func:`primary_suppression` and :func:`secondary_suppression`.

    Returns:
        a copy of ``table`` (index reset) with ``suppressed`` (bool), ``suppression_reason``
        (« effectif < 5 », « base < 10 », « suppression secondaire » or '') and
        ``flag_caution`` set, and ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``p_value``,
        ``p_adjusted``, ``significant`` and the count set to missing in suppressed rows.

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
    hide = out["suppressed"].to_numpy()
    for col in MASKED_COLUMNS:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).where(~hide, np.nan)
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
