"""The secrecy audit: a linear-programming attack on every count a wave publishes.

:mod:`cae_impact.analysis.disclosure` decides which cells are hidden by rules; this module checks the
result the way an attacker would. It reads the published set (every row of the study table as
the reports and ``indicators.csv`` print it: the counts and bases of published rows, the bands
of coded rows, nothing of hidden rows) and, for every hidden count, computes the smallest and
the largest value that the published numbers allow. A hidden count is **exposed** when those
bounds pin it (smallest = largest) or enclose it in 1 to 4 (the very values the rule hides);
the same is checked for its complement (base minus count).

The model (why it is written here: no survey library ships an audit of this kind of table;
tau-ARGUS, the reference tool, is a Java program with no Python interface):

* For every question (and every ``any_of`` or numeric indicator) and every published cell
  (target x breakdown x group) there is one unknown count per answer code, ``x >= 0``. Every
  published figure is a linear function of them: a category of a distribution is one code, a
  share is the sum of its codes, a share's base the sum of the valid codes, a distribution's
  base the sum of every code. So the relations between published numbers are all present at
  once: categories sum to their base, a share is the union of categories of the same question
  (« au moins une fois par mois » = « chaque semaine » + « chaque mois »), and so on.
* Targets: the consortium's cell is the sum of its CAEs' cells, code by code.
* Breakdowns: the groups of a breakdown sum to at most the total (respondents whose group is
  unknown make up the rest).
* Group sizes: the respondents of a group who answered a question are at most the size of the
  group, which is a sum of codes of the breakdown's own question (profile). Published bases
  give lower bounds to a group's size; the group's largest possible size bounds every
  question's cells in that group. These cross-question bounds are propagated once (profile
  questions first, then the others), an interval relaxation of the joint program: the attack
  is exact within a question and slightly weaker across questions.
* Sample sizes: a CAE's cells hold at most its respondents (published in the annexes).
* A coded cell tells that its count is at least ``ceil(L x base)`` (« L sur 10 ou plus ») or
  below ``U x base`` (« moins de U sur 10 »), and gives its base.

Bounds are those of the linear relaxation, rounded inwards to integers (what an attacker
with an LP solver gets). HiGHS (``highspy``, the solver behind ``scipy.optimize.linprog``) keeps
one program per question and only changes its objective from one bound to the next, starting
from the previous basis: the audit of the demo wave (about 7,000 bounds) takes a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import highspy
import numpy as np
import pandas as pd
from scipy import sparse

from cae_impact.spec.codebook import Codebook, Indicator

__all__ = ["SecrecyError", "AuditResult", "audit_table", "protect_table", "row_expressions", "question_key"]

TOTAL = "total"
NUMERIC_KINDS = ("mean", "median", "paired_difference")
_TOL = 1e-6


class SecrecyError(RuntimeError):
    """The published figures cannot be protected, or contradict each other."""


def question_key(ind: Indicator) -> tuple[str, str]:
    """The block of unknowns an indicator's rows are written in.

    Shares and distributions of one question share their unknowns (one per answer code);
    an ``any_of`` share and a numeric indicator have their own.
    """
    if ind.kind in ("share", "distribution"):
        return ("question", str(ind.rule["question"]))
    return (ind.kind, ind.id)


def block_codes(codebook: Codebook, ind: Indicator) -> tuple[list[str], list[str]]:
    """(every code, valid codes) of the indicator's block."""
    if ind.kind in ("share", "distribution"):
        scale = codebook.scale_of(str(ind.rule["question"]))
        return list(scale.codes), list(scale.valid_codes)
    if ind.kind == "any_of":
        return ["1", "0"], ["1", "0"]
    return ["answered"], ["answered"]


def row_expressions(codebook: Codebook, ind: Indicator, category: str) -> tuple[list[str] | None, list[str]]:
    """The codes whose unknowns sum to a row's count (None: no count) and to its base."""
    codes, valid = block_codes(codebook, ind)
    if ind.kind == "share":
        return [c for c in ind.rule["codes"] if c in codes], valid
    if ind.kind == "distribution":  # a distribution of the valid answers
        return ([category] if category in codes else []), valid
    if ind.kind == "any_of":
        return ["1"], codes
    return None, codes


@dataclass
class AuditResult:
    """What the attack found.

    ``cells`` has one row per hidden count audited (position in the table, indicator, target,
    breakdown, group, category, the bounds of the count and of its complement, and whether it
    is exposed and why); ``exposed`` the exposed ones.
    """

    cells: pd.DataFrame
    n_lp: int

    @property
    def exposed(self) -> pd.DataFrame:
        """The exposed hidden counts."""
        return self.cells[self.cells["exposed"]]

    def summary(self) -> dict[str, int]:
        """Counts for the annex and the build output."""
        c = self.cells
        return {
            "hidden_counts": int(len(c)),
            "pinned": int((c["why"] == "pinned").sum()),
            "bounded_1_4": int((c["why"] == "bounded in 1-4").sum()),
            "exposed": int(c["exposed"].sum()),
            "linear_programs": int(self.n_lp),
        }


def _truthy(v: object) -> bool:
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


class _Block:
    """The unknowns and constraints of one question."""

    def __init__(self, key, codes: list[str], valid: list[str], consortium: str):
        self.key = key
        self.codes = codes
        self.code_index = {c: i for i, c in enumerate(codes)}
        self.valid = valid
        self.consortium = consortium
        self.cells: dict[tuple[str, str, str], int] = {}
        self.rows: list[tuple[int, int, list[int] | None, list[int]]] = []  # (pos, cell, count, base)

    def cell(self, target: str, breakdown: str, group: str) -> int:
        k = (target, breakdown, group if breakdown != TOTAL else "")
        if k not in self.cells:
            self.cells[k] = len(self.cells)
        return self.cells[k]

    def var(self, cell: int, codes: Iterable[int]) -> list[int]:
        K = len(self.codes)
        return [cell * K + c for c in codes]

    @property
    def n_vars(self) -> int:
        return len(self.cells) * len(self.codes)


def _build_blocks(table: pd.DataFrame, codebook: Codebook, indicators: Mapping[str, Indicator],
                  consortium: str) -> dict[tuple[str, str], _Block]:
    blocks: dict[tuple[str, str], _Block] = {}
    ind_ids = table["indicator_id"].astype(str).to_numpy()
    targets = table["target"].astype(str).to_numpy()
    breakdowns = table["breakdown"].astype(str).to_numpy()
    groups = table["group"].astype(object).where(table["group"].notna(), "").astype(str).to_numpy()
    cats = table["category"].astype(object).where(table["category"].notna(), "").astype(str).to_numpy()
    exprs: dict[tuple[str, str], tuple[list[str] | None, list[str]]] = {}
    for pos in range(len(table)):
        ind = indicators.get(ind_ids[pos])
        if ind is None:
            continue
        key = question_key(ind)
        if key not in blocks:
            codes, valid = block_codes(codebook, ind)
            blocks[key] = _Block(key, codes, valid, consortium)
        b = blocks[key]
        ek = (ind.id, cats[pos])
        if ek not in exprs:
            exprs[ek] = row_expressions(codebook, ind, cats[pos])
        count, base = exprs[ek]
        cell = b.cell(targets[pos], breakdowns[pos], groups[pos])
        b.rows.append((pos, cell,
                       None if count is None else [b.code_index[c] for c in count],
                       [b.code_index[c] for c in base]))
    for b in blocks.values():  # every target's total cell exists (breakdown relation)
        for (t, _bd, _g) in list(b.cells):
            b.cell(t, TOTAL, "")
    return blocks


class _Program:
    """The constraints of one block, solved for the bounds of linear expressions."""

    def __init__(self, block: _Block, published: np.ndarray, band_low: np.ndarray,
                 band_high: np.ndarray, counts: np.ndarray, bases: np.ndarray, *, sample_sizes: Mapping[str, float],
                 group_min: Mapping[tuple[str, str, str], float],
                 group_max: Mapping[tuple[str, str, str], float],
                 size_of: Mapping[tuple[str, str], list[str]]):
        self.block = block
        K = len(block.codes)
        n = block.n_vars
        eq_rows: list[dict[int, float]] = []
        eq_rhs: list[float] = []
        ub_rows: list[dict[int, float]] = []
        ub_rhs: list[float] = []
        cells = block.cells
        consortium = block.consortium
        # targets: consortium = sum of the CAEs, code by code
        by_bg: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for (t, bd, g), ci in cells.items():
            by_bg.setdefault((bd, g), []).append((t, ci))
        for members in by_bg.values():
            parent = [ci for t, ci in members if t == consortium]
            children = [ci for t, ci in members if t != consortium]
            if len(parent) == 1 and children:
                for k in range(K):
                    row = {parent[0] * K + k: 1.0}
                    for ci in children:
                        row[ci * K + k] = -1.0
                    eq_rows.append(row)
                    eq_rhs.append(0.0)
        # breakdowns: the groups sum to at most the total
        by_tb: dict[tuple[str, str], list[int]] = {}
        for (t, bd, _g), ci in cells.items():
            if bd != TOTAL:
                by_tb.setdefault((t, bd), []).append(ci)
        for (t, _bd), members in by_tb.items():
            tot = cells[(t, TOTAL, "")]
            for k in range(K):
                row = {tot * K + k: -1.0}
                for ci in members:
                    row[ci * K + k] = 1.0
                ub_rows.append(row)
                ub_rhs.append(0.0)
        # sample sizes and group sizes
        for (t, bd, g), ci in cells.items():
            all_codes = {ci * K + k: 1.0 for k in range(K)}
            if bd == TOTAL and t in sample_sizes:
                ub_rows.append(all_codes)
                ub_rhs.append(float(sample_sizes[t]))
            if bd != TOTAL and (t, bd, g) in group_max:
                ub_rows.append(all_codes)
                ub_rhs.append(float(group_max[(t, bd, g)]))
        # group sizes of this block's own question (it is a breakdown of other questions)
        for (bd, g), codes in size_of.items():
            idx = [block.code_index[c] for c in codes if c in block.code_index]
            if not idx:
                continue
            for (t, cbd, _g), ci in cells.items():
                if cbd == TOTAL and (t, bd, g) in group_min:
                    ub_rows.append({ci * K + k: -1.0 for k in idx})
                    ub_rhs.append(-float(group_min[(t, bd, g)]))
        # published figures: two rows per table row (its count, its base), whose bounds say
        # what is published of it (see set_row); a hidden row's are free
        self.pos_rows: dict[int, tuple[int | None, int]] = {}
        fixed = len(eq_rows) + len(ub_rows)
        rows = eq_rows + ub_rows
        lower = eq_rhs + [-highspy.kHighsInf] * len(ub_rhs)
        upper = eq_rhs + ub_rhs
        self.counts, self.bases = counts, bases
        for pos, ci, count, base in block.rows:
            crow = None
            if count is not None:
                crow = len(rows)
                rows.append({v: 1.0 for v in block.var(ci, count)})
            brow = len(rows)
            rows.append({v: 1.0 for v in block.var(ci, base)})
            self.pos_rows[pos] = (crow, brow)
        lower += [-highspy.kHighsInf] * (len(rows) - fixed)
        upper += [highspy.kHighsInf] * (len(rows) - fixed)
        self._lower = np.array(lower, dtype=float)
        self._upper = np.array(upper, dtype=float)
        for pos in self.pos_rows:
            lo_c, up_c, lo_b, up_b = _row_bounds(pos, published, band_low, band_high, counts, bases)
            crow, brow = self.pos_rows[pos]
            if crow is not None:
                self._lower[crow], self._upper[crow] = lo_c, up_c
            self._lower[brow], self._upper[brow] = lo_b, up_b
        A = _matrix(rows, n)
        lower, upper = self._lower, self._upper
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = A.shape[0]
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.full(n, highspy.kHighsInf)
        lp.row_lower_ = lower
        lp.row_upper_ = upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(float)
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.highs.setOptionValue("presolve", "off")
        self.highs.setOptionValue("simplex_strategy", 4)
        self.highs.passModel(lp)
        self.n = n
        self.solved = 0
        self._cost = np.zeros(n)  # the objective the program holds

    def set_row(self, pos: int, published: np.ndarray, band_low: np.ndarray,
                band_high: np.ndarray) -> None:
        """Say again what is published of table row ``pos`` (after it was hidden or shown)."""
        if pos not in self.pos_rows:
            return
        lo_c, up_c, lo_b, up_b = _row_bounds(pos, published, band_low, band_high, self.counts,
                                             self.bases)
        crow, brow = self.pos_rows[pos]
        idx = [brow] if crow is None else [crow, brow]
        lo = [lo_b] if crow is None else [lo_c, lo_b]
        up = [up_b] if crow is None else [up_c, up_b]
        self.highs.changeRowsBounds(len(idx), np.array(idx, dtype=np.int32),
                                    np.array(lo, dtype=float), np.array(up, dtype=float))

    def bounds(self, variables: list[int]) -> tuple[float, float]:
        """Smallest and largest value of the sum of ``variables`` (inf when unbounded).

        The program is kept between calls: only the objective changes, so HiGHS starts from the
        previous basis (a few hundred microseconds a bound instead of milliseconds).
        """
        c = np.zeros(self.n)
        np.add.at(c, np.asarray(variables, dtype=np.int64), 1.0)
        h = self.highs
        out = []
        for sign in (1.0, -1.0):  # minimise c.x, then -c.x (the sense stays: the basis is kept)
            # only the costs that change are passed (the others are already 0)
            cost = sign * c
            idx = np.flatnonzero((cost != 0) | (self._cost != 0)).astype(np.int32)
            h.changeColsCost(len(idx), idx, cost[idx])
            self._cost = cost
            h.run()
            self.solved += 1
            status = h.getModelStatus()
            if status == highspy.HighsModelStatus.kOptimal:
                out.append(sign * float(h.getInfo().objective_function_value))
            elif status == highspy.HighsModelStatus.kUnbounded:
                out.append(-math.inf if sign > 0 else math.inf)
            else:
                raise SecrecyError(
                    f"secrecy audit: the program of {self.block.key} cannot be solved "
                    f"({h.modelStatusToString(status)}): the published figures contradict each other")
        return out[0], out[1]


def _row_bounds(pos: int, published: np.ndarray, band_low: np.ndarray, band_high: np.ndarray,
                counts: np.ndarray, bases: np.ndarray) -> tuple[float, float, float, float]:
    """Bounds of a table row's count and base: exact when published, the band when coded."""
    inf = highspy.kHighsInf
    lo_c, up_c, lo_b, up_b = -inf, inf, -inf, inf
    coded = np.isfinite(band_low[pos]) or np.isfinite(band_high[pos])
    if published[pos]:
        if np.isfinite(counts[pos]):
            lo_c = up_c = float(counts[pos])
        if np.isfinite(bases[pos]):
            lo_b = up_b = float(bases[pos])
    elif coded and np.isfinite(bases[pos]):
        b = float(bases[pos])
        lo_b = up_b = b
        if np.isfinite(band_low[pos]):  # « L sur 10 ou plus »: count >= L x base
            lo_c = float(math.ceil(band_low[pos] * b - _TOL))
        else:  # « moins de U sur 10 »: count < U x base
            up_c = float(math.ceil(band_high[pos] * b - _TOL) - 1)
    return lo_c, up_c, lo_b, up_b


def _matrix(rows: list[dict[int, float]], n: int) -> sparse.csr_matrix:
    data, ri, ci = [], [], []
    for i, row in enumerate(rows):
        for j, v in row.items():
            ri.append(i)
            ci.append(j)
            data.append(v)
    return sparse.csr_matrix((data, (ri, ci)), shape=(len(rows), n))


def _int_bounds(lo: float, hi: float) -> tuple[float, float]:
    lo_i = math.ceil(lo - _TOL) if math.isfinite(lo) else lo
    hi_i = math.floor(hi + _TOL) if math.isfinite(hi) else hi
    return float(lo_i), float(hi_i)


def _exposed(lo: float, hi: float, min_count: int) -> str:
    if lo == hi:
        return "pinned"
    if lo >= 1 and hi <= min_count - 1:
        return "bounded in 1-4"
    return ""


class _Attack:
    """The published set of a table and the programs of its blocks, kept between audits."""

    def __init__(self, table: pd.DataFrame, codebook: Codebook, indicators: Mapping[str, Indicator],
                 *, consortium: str, min_count: int, sample_sizes: Mapping[str, float] | None,
                 group_codes: Mapping[tuple[str, str], list[str]] | None):
        t = table.reset_index(drop=True)
        self.table = t
        self.min_count = min_count
        self.hidden = t["suppressed"].map(_truthy).to_numpy(dtype=bool).copy()
        band_low = (pd.to_numeric(t["band_low"], errors="coerce").to_numpy(dtype=float)
                    if "band_low" in t.columns else np.full(len(t), np.nan))
        band_high = (pd.to_numeric(t["band_high"], errors="coerce").to_numpy(dtype=float)
                     if "band_high" in t.columns else np.full(len(t), np.nan))
        self.band_low, self.band_high = band_low.copy(), band_high.copy()
        self.count_values = pd.to_numeric(t["n_count"], errors="coerce").to_numpy(dtype=float)
        self.base_values = pd.to_numeric(t["n_unweighted"], errors="coerce").to_numpy(dtype=float)
        self.blocks = _build_blocks(t, codebook, indicators, consortium)
        self.block_of = np.full(len(t), -1, dtype=np.int64)
        self.keys = list(self.blocks)
        self.cell_of = np.full(len(t), -1, dtype=np.int64)
        for i, key in enumerate(self.keys):
            for pos, ci, _c, _b in self.blocks[key].rows:
                self.block_of[pos] = i
                self.cell_of[pos] = ci
        self.sample_sizes = dict(sample_sizes or {})
        self.size_of: dict[tuple[str, str], dict[tuple[str, str], list[str]]] = {}
        for (bd, g), codes in (group_codes or {}).items():
            self.size_of.setdefault(("question", bd), {})[(bd, g)] = list(codes)
        self.tg = t["target"].astype(str).to_numpy()
        self.bd = t["breakdown"].astype(str).to_numpy()
        self.gr = t["group"].astype(object).where(t["group"].notna(), "").astype(str).to_numpy()
        self.group_max: dict[tuple[str, str, str], float] = {}
        self.indicator_ids = t["indicator_id"].to_numpy(dtype=object)
        self.categories = t["category"].to_numpy(dtype=object)
        self.n_lp = 0
        self._saved: dict[int, tuple[bool, float, float]] = {}

    @property
    def coded(self) -> np.ndarray:
        return self.hidden & (np.isfinite(self.band_low) | np.isfinite(self.band_high))

    def hide(self, pos: int, prog: _Program | None = None, hidden: bool = True) -> None:
        """Hide a published row, or withdraw a coded row's band and base (or undo either)."""
        if hidden:
            self._saved[pos] = (bool(self.hidden[pos]), self.band_low[pos], self.band_high[pos])
            self.hidden[pos] = True
            self.band_low[pos] = self.band_high[pos] = np.nan
        else:
            self.hidden[pos], self.band_low[pos], self.band_high[pos] = self._saved.pop(pos)
        if prog is not None:
            prog.set_row(pos, ~self.hidden, self.band_low, self.band_high)

    def show(self, pos: int, prog: _Program | None = None) -> None:
        """Publish a hidden row as it is."""
        self.hidden[pos] = False
        if prog is not None:
            prog.set_row(pos, ~self.hidden, self.band_low, self.band_high)

    def order(self) -> list[tuple[str, str]]:
        """Blocks whose question is a breakdown first (their group sizes bound the others)."""
        return sorted(self.keys, key=lambda k: (k not in self.size_of, k))

    def program(self, key) -> _Program:
        published = ~self.hidden
        bases = np.where(published | self.coded, self.base_values, np.nan)
        group_min: dict[tuple[str, str, str], float] = {}
        for pos in np.flatnonzero((self.bd != TOTAL) & np.isfinite(bases) & (bases > 0)):
            k = (self.tg[pos], self.bd[pos], self.gr[pos])
            group_min[k] = max(group_min.get(k, 0.0), bases[pos])
        return _Program(self.blocks[key], published, self.band_low, self.band_high,
                        self.count_values, self.base_values,
                        sample_sizes=self.sample_sizes, group_min=group_min,
                        group_max={} if key in self.size_of else self.group_max,
                        size_of=self.size_of.get(key, {}))

    def record_group_sizes(self, key, prog: _Program) -> None:
        """The largest size of each group of a breakdown question, for the later blocks."""
        if key not in self.size_of:
            return
        block = self.blocks[key]
        K = len(block.codes)
        for (bdn, g), codes in self.size_of[key].items():
            idx = [block.code_index[c] for c in codes if c in block.code_index]
            for (tt, cbd, _g), ci in block.cells.items():
                if cbd == TOTAL and idx:
                    _lo, hi = prog.bounds([ci * K + k for k in idx])
                    if math.isfinite(hi):
                        self.group_max[(tt, bdn, g)] = math.floor(hi + _TOL)

    def audit(self, key, prog: _Program, positions: Iterable[int] | None = None) -> list[dict]:
        """The bounds of every hidden count of the block (or of ``positions``)."""
        block = self.blocks[key]
        wanted = None if positions is None else set(positions)
        out = []
        for pos, ci, count, base in block.rows:
            if count is None or not self.hidden[pos] or (wanted is not None and pos not in wanted):
                continue
            lo, hi = _int_bounds(*prog.bounds(block.var(ci, count)))
            rest = [k for k in base if k not in count]
            b = self.base_values[pos]
            if not rest:
                clo, chi = 0.0, 0.0
            elif self.coded[pos] and np.isfinite(b) and set(count) <= set(base) and math.isfinite(hi):
                # a coded row publishes its base: the complement is base - count, its bounds
                # follow from the count's without two more programs
                clo, chi = float(b - hi), float(b - lo)
            else:
                clo, chi = _int_bounds(*prog.bounds(block.var(ci, rest)))
            why = _exposed(lo, hi, self.min_count) or (
                _exposed(clo, chi, self.min_count) if rest else "")
            out.append({"row": int(pos), "indicator_id": self.indicator_ids[pos],
                        "target": self.tg[pos], "breakdown": self.bd[pos], "group": self.gr[pos],
                        "category": self.categories[pos], "coded": bool(self.coded[pos]),
                        "count_min": lo, "count_max": hi,
                        "complement_min": clo, "complement_max": chi,
                        "exposed": bool(why), "why": why})
        return out

    def candidates(self, pos: int) -> list[int]:
        """Published rows of ``pos``'s block, the closest relations and smallest counts first.

        A coded row is a candidate too: hiding it withdraws its band and its base.
        Closeness: the same cell (other categories, shares of the question), then the same
        target (other groups of the breakdown, the total), then the same group in the other
        targets, then any other row that shares an answer code with ``pos``'s count, then any
        other row of the block.
        """
        key = self.keys[self.block_of[pos]]
        block = self.blocks[key]
        t, bd, g = self.tg[pos], self.bd[pos], self.gr[pos]
        own = next(c for p, _ci, c, _b in block.rows if p == pos) or []
        out = []
        coded = self.coded
        for p, _ci, count, _base in block.rows:
            if (self.hidden[p] and not coded[p]) or count is None or not (self.base_values[p] > 0):
                continue
            pt, pb, pg = self.tg[p], self.bd[p], self.gr[p]
            if (pt, pb, pg) == (t, bd, g):
                rank = 0
            elif pt == t and (pb == bd or pb == TOTAL or bd == TOTAL):
                rank = 1
            elif pb == bd and pg == g:
                rank = 2
            elif set(count) & set(own):
                rank = 3
            else:  # related through other codes (a share, the consortium): the last resort
                rank = 4
            c = self.count_values[p]
            out.append((rank, c if np.isfinite(c) else np.inf, p))
        out.sort()
        return [p for *_x, p in out]


def audit_table(table: pd.DataFrame, codebook: Codebook, indicators: Mapping[str, Indicator], *,
                consortium: str = "consortium", min_count: int = 5,
                sample_sizes: Mapping[str, float] | None = None,
                group_codes: Mapping[tuple[str, str], list[str]] | None = None) -> AuditResult:
    """Attack the published figures of ``table`` (the study table as published).

    Args:
        table: rows with ``indicator_id, target, breakdown, group, category, n_count,
            n_unweighted, suppressed`` and optionally ``band_low`` / ``band_high`` (a coded
            row). Hidden rows' numbers are ignored, whatever they hold.
        codebook: the codebook (answer scales).
        indicators: every indicator of the table by id (profile indicators included).
        consortium: the consortium's target id.
        min_count: counts 1 to ``min_count - 1`` are the ones the rule protects.
        sample_sizes: respondents of each target (published in the annexes).
        group_codes: answer codes of each breakdown group, ``(breakdown, group) -> codes``.

    Returns:
        an :class:`AuditResult`.

    """
    attack = _Attack(table, codebook, indicators, consortium=consortium, min_count=min_count,
                     sample_sizes=sample_sizes, group_codes=group_codes)
    records: list[dict] = []
    for key in attack.order():
        prog = attack.program(key)
        attack.record_group_sizes(key, prog)
        records.extend(attack.audit(key, prog))
        attack.n_lp += prog.solved
    return AuditResult(pd.DataFrame(records, columns=_COLUMNS), attack.n_lp)


def protect_table(table: pd.DataFrame, codebook: Codebook, indicators: Mapping[str, Indicator], *,
                  consortium: str = "consortium", min_count: int = 5,
                  sample_sizes: Mapping[str, float] | None = None,
                  group_codes: Mapping[tuple[str, str], list[str]] | None = None,
                  reason: str = "suppression secondaire", min_base: int = 10,
                  max_passes: int = 5) -> tuple[pd.DataFrame, AuditResult]:
    """Hide further cells until the attack exposes no hidden count; audit the result.

    Passes of :func:`_protect_pass` until the audit of the whole table finds nothing (a cell
    shown again in one question can tighten the group sizes another question was protected
    with: the next pass protects it again), at most ``max_passes``.
    """
    out = table.reset_index(drop=True).copy()
    final = None
    breakdown_questions = {bd for bd, _g in (group_codes or {})}
    for _ in range(max_passes):
        out = _protect_pass(out, codebook, indicators, consortium=consortium, min_count=min_count,
                            sample_sizes=sample_sizes, group_codes=group_codes, reason=reason,
                            min_base=min_base)
        final = audit_table(out, codebook, indicators, consortium=consortium, min_count=min_count,
                            sample_sizes=sample_sizes, group_codes=group_codes)
        if final.exposed.empty:
            break
        # Left exposed: a count given by the sizes of groups that other tables publish (a CAE
        # whose respondents are all women: every table by sex says so). The target's whole
        # question is hidden, and its breakdown by that question if it is one; the next pass
        # protects the cells hidden so.
        for r in final.exposed.itertuples():
            ind = indicators.get(str(r.indicator_id))
            if ind is None:
                continue
            key = question_key(ind)
            same_question = out["indicator_id"].map(
                lambda i, key=key: i in indicators and question_key(indicators[i]) == key)
            hide = (out["target"] == r.target) & same_question
            if key[0] == "question" and key[1] in breakdown_questions:
                hide |= (out["target"] == r.target) & (out["breakdown"] == key[1])
            coded = pd.Series(False, index=out.index)
            for col in ("band_low", "band_high"):  # a coded cell of it loses its band too
                if col in out.columns:
                    coded |= out[col].notna()
                    out.loc[hide, col] = np.nan
            newly = hide & (~out["suppressed"].map(_truthy) | coded)
            out.loc[newly, "suppressed"] = True
            out.loc[newly, "suppression_reason"] = reason
    return out, final


def _protect_pass(table: pd.DataFrame, codebook: Codebook, indicators: Mapping[str, Indicator], *,
                  consortium: str, min_count: int, sample_sizes: Mapping[str, float] | None,
                  group_codes: Mapping[tuple[str, str], list[str]] | None, reason: str,
                  min_base: int, max_rounds: int = 100_000) -> pd.DataFrame:
    """One pass of the protection over every block (see :func:`protect_table`).

    For each block (breakdown questions first), while a hidden count is exposed, the published
    row that shares a relation with it and has the smallest count (same cell first) is hidden
    too (of the five closest, the first that protects it). A hidden cell that no primary rule
    protects (5 or more respondents on each side, base of ``min_base`` or more) and that the
    published figures give exactly is published instead: hiding it protects nothing, and
    publishing it changes nothing an attacker can compute. Hiding a row
    only removes constraints, so a count found safe stays safe: only the exposed counts and the
    newly hidden ones are audited again. Returns the table with the suppressions changed.
    """
    attack = _Attack(table, codebook, indicators, consortium=consortium, min_count=min_count,
                     sample_sizes=sample_sizes, group_codes=group_codes)
    # A hidden cell the primary rules do not protect (5 or more respondents on each side, on a
    # base where a share is published) may be shown again when the published figures give it
    # exactly. Never shown: small counts or complements, small bases, coded cells.
    cnt, base = attack.count_values, attack.base_values
    showable = ((cnt >= min_count) & (base - cnt >= min_count) & (base >= min_base)
                & ~attack.coded)
    complementary = showable.copy()
    added: list[int] = []
    shown: list[int] = []
    rounds = 0
    for key in attack.order():
        prog = attack.program(key)
        queue = [r for r in attack.audit(key, prog) if r["exposed"]]
        pinned: list[int] = []
        while queue:
            rounds += 1
            if rounds > max_rounds:  # pragma: no cover - each round hides one more row
                raise SecrecyError("secrecy: the protection did not converge")
            pos = queue.pop(0)["row"]
            fresh = attack.audit(key, prog, [pos])  # earlier rounds may have protected it
            if not fresh or not fresh[0]["exposed"]:
                continue
            if fresh[0]["why"] == "pinned" and complementary[pos]:
                pinned.append(pos)  # decided once every sensitive count of the block is safe
                continue
            options = [o for o in attack.candidates(pos) if o not in shown]
            if not options:  # nothing left to hide around it: the final audit reports it
                continue
            pick = options[0]
            for option in options[:5]:  # the first of the closest that protects it, if any
                attack.hide(option, prog)
                still = attack.audit(key, prog, [pos])
                attack.hide(option, prog, hidden=False)
                if not (still and still[0]["exposed"]):
                    pick = option
                    break
            attack.hide(pick, prog)
            complementary[pick] = showable[pick]
            added.append(pick)
            queue.extend(r for r in attack.audit(key, prog, [pos, pick]) if r["exposed"])
        # Complementary cells that the published figures give exactly: hiding them protects
        # nothing, so they are published (every sensitive count of the block being safe, this
        # changes nothing an attacker can compute).
        for r in attack.audit(key, prog, pinned):
            if r["why"] == "pinned":
                attack.show(r["row"], prog)
                complementary[r["row"]] = False
                shown.append(r["row"])
        attack.record_group_sizes(key, prog)
        attack.n_lp += prog.solved
    out = table.reset_index(drop=True).copy()
    hidden_now = attack.hidden
    changed = set(np.flatnonzero(hidden_now != out["suppressed"].map(_truthy).to_numpy(dtype=bool)))
    changed |= set(added)
    for pos in sorted(changed):
        out.at[pos, "suppressed"] = bool(hidden_now[pos])
        out.at[pos, "suppression_reason"] = reason if hidden_now[pos] else ""
        for col, arr in (("band_low", attack.band_low), ("band_high", attack.band_high)):
            if col in out.columns:
                out.at[pos, col] = arr[pos]
    return out


_COLUMNS = ["row", "indicator_id", "target", "breakdown", "group", "category", "coded",
            "count_min", "count_max", "complement_min", "complement_max", "exposed", "why"]
