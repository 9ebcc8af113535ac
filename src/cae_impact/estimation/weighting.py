"""Weighting: post-stratification and raking (svy), the project's collapsing and trimming rules.

svy computes the calibrated weights and records the calibration, so that its variances use the
calibration residuals (R's ``postStratify``/``rake``; oracle lines "dclus1 postStratify",
"postStratify(coop x sex)", the converged rakes). In house: the rule that merges post-strata
without respondents (:func:`collapse_post_strata`) and the project's trimming rule
(:func:`trim_weights`), which svy's ``trim`` does not express (a cap relative to each CAE's median
computed once, the excess spread in proportion within the CAE, the calibration kept for the
variance as R's ``trimWeights`` does, whereas svy's trimming drops it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from .design import Calibration, SurveyDesign, svydesign


def _cells(data: pd.DataFrame, cols: Sequence[str]) -> list[tuple]:
    for c in cols:
        if data[c].isna().any():
            raise ValueError(f"missing values in calibration variable {c!r}")
    return list(zip(*[data[c].tolist() for c in cols], strict=True))


def _population_dict(cols: Sequence[str], population: Any) -> dict[tuple, float]:
    """Population table (DataFrame with ``cols`` + ``Freq``, Series or mapping) -> {cell: count}."""
    if isinstance(population, pd.DataFrame):
        if "Freq" not in population.columns or not set(cols) <= set(population.columns):
            raise ValueError(f"population table needs columns {list(cols)} and 'Freq'")
        out: dict[tuple, float] = {}
        for k, v in zip(_cells(population, cols), population["Freq"].astype(float), strict=True):
            if k in out:
                raise ValueError(f"duplicate population cell {k}")
            out[k] = float(v)
        return out
    if isinstance(population, pd.Series):
        population = population.to_dict()
    if isinstance(population, Mapping):
        out = {}
        for k, v in population.items():
            key = k if isinstance(k, tuple) else (k,)
            if len(key) != len(cols):
                raise ValueError(f"population key {k!r} does not match {list(cols)}")
            out[key] = float(v)
        return out
    raise TypeError("population must be a DataFrame, Series or mapping")


def _margin(design: SurveyDesign, cols: str | Sequence[str], population: Any, *, partial: bool = False
            ) -> tuple[np.ndarray, dict[int, float]]:
    """Cell codes of every row and svy controls ``{code: count}``, after R's checks."""
    cols = [cols] if isinstance(cols, str) else list(cols)
    pop = _population_dict(cols, population)
    codes, uniq = pd.factorize(pd.Series(_cells(design.data, cols), dtype=object))
    keys = [tuple(k) for k in uniq]
    present = {k for k, t in zip(keys, np.bincount(codes, weights=design.weights, minlength=len(keys)),
                                 strict=True) if t > 0}
    only_sample = [k for k in keys if k in present and pop.get(k, 0) == 0]
    if only_sample:
        raise ValueError(f"cells in sample absent from population: {only_sample}")
    only_pop = [k for k, v in pop.items() if v > 0 and k not in present]
    if only_pop and not partial:
        raise ValueError(f"population cells without respondents: {only_pop} (collapse them, see "
                         "collapse_post_strata, or use partial=True)")
    return codes.astype(np.int64), {i: pop[k] for i, k in enumerate(keys)}


def post_stratify(design: SurveyDesign, cols: str | Sequence[str], population_table: Any, *,
                  partial: bool = False) -> SurveyDesign:
    """Post-stratify to known population counts (R: ``postStratify``), by svy.

    Every weight is multiplied by ``N_c / N_hat_c`` of its cell (combination of ``cols``); the
    design keeps svy's record, so variances use the within-cell residuals (oracle: SE 0.0800 on
    the toy consortium, not the 0.0896 of fixed weights).

    Raises:
        ValueError: a sample cell is absent from the population, or a populated cell has no
            respondent (unless ``partial``).

    """
    codes, controls = _margin(design, cols, population_table, partial=partial)
    sample = design.sample({"__ps": codes})
    new = sample.weighting.poststratify(controls=controls, cells="__ps", wgt_name="__psw")
    w = new.data["__psw"].to_numpy()
    return replace(design, weights=w, calibration=Calibration("poststratification", design.weights, (codes,)))


@dataclass(frozen=True)
class RakeResult:
    """Outcome of :func:`rake_with_report`.

    The design, whether it converged and the largest absolute gap between a margin of the
    weights and its population count.
    """

    design: SurveyDesign
    converged: bool
    delta: float


def rake_with_report(design: SurveyDesign, margins: Any, *, epsilon: float = 1e-10, maxit: int = 100
                     ) -> RakeResult:
    """Rake to population margins (iterative proportional fitting, R ``rake``), by svy.

    ``margins``: mapping ``column -> population`` or list of ``(column(s), population)``.
    svy iterates to its tolerance ``epsilon`` (relative) or ``maxit`` sweeps, and linearises
    the converged raking (oracle: the converged rakes). R's default ``control`` stops after two
    sweeps (``maxit=10, epsilon=1`` absolute): ``maxit=2`` gives R's weights, but not R's SE of
    that unconverged rake (see ``docs/survey-engine.md``).
    """
    items = list(margins.items()) if isinstance(margins, Mapping) else list(margins)
    if not items:
        raise ValueError("no margins")
    cols, controls, cells = {}, {}, []
    for j, (c, pop) in enumerate(items):
        codes, ctl = _margin(design, c, pop)
        cols[f"__m{j}"] = codes
        controls[f"__m{j}"] = ctl
        cells.append(codes)
    sample = design.sample(cols)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = sample.weighting.rake(controls=controls, wgt_name="__rkw", tol=epsilon, max_iter=maxit,
                                    on_nonconvergence="ignore")
    w = new.data["__rkw"].to_numpy()
    delta = max(float(np.abs(np.bincount(c, weights=w, minlength=len(ctl))
                             - np.array([ctl[i] for i in range(len(ctl))])).max())
                for c, ctl in zip(cells, controls.values(), strict=True))
    converged = delta <= max(epsilon, 1e-9) * float(w.sum())
    if not converged:
        warnings.warn(f"raking did not converge after {maxit} iterations", RuntimeWarning, stacklevel=2)
    out = replace(design, weights=w, calibration=Calibration("raking", design.weights, tuple(cells)))
    return RakeResult(out, converged, delta)


def rake(design: SurveyDesign, margins: Any, epsilon: float = 1e-10, maxit: int = 100) -> SurveyDesign:
    """Raked design (see :func:`rake_with_report`)."""
    return rake_with_report(design, margins, epsilon=epsilon, maxit=maxit).design


@dataclass(frozen=True)
class CollapsedCells:
    """Outcome of :func:`collapse_post_strata`.

    Attributes:
        labels: post-stratum label of every respondent (``"<stratum>|<outer>|<inner>"`` with
            ``*`` for a collapsed level), aligned with the data's rows.
        population: population table of the final cells (columns ``cell``, ``Freq``).
        collapsed: one row per original register cell that was merged: ``stratum, outer,
            inner, n, N, cell, reason``.

    """

    labels: pd.Series
    population: pd.DataFrame
    collapsed: pd.DataFrame


def collapse_post_strata(
    data: pd.DataFrame,
    population: pd.DataFrame,
    *,
    stratum: str,
    outer: str,
    inner: str,
    min_count: int = 1,
    exempt_outer: Sequence[Any] = (),
) -> CollapsedCells:
    """The project's rule for post-strata without enough respondents.

    Cells are ``stratum x outer x inner`` (CAE x sex x contract stage). A cell is *deficient*
    when it has fewer than ``min_count`` respondents while the register counts more members
    than that (a cell where every member answered is never too small), or has respondents while
    the register counts none. Rule:

    1. in a (stratum, outer) group holding a deficient cell, the ``inner`` levels are merged:
       the group becomes one cell ``stratum|outer|*`` (stage collapsed within sex);
    2. if that merged group is still deficient, the whole stratum becomes one cell
       ``stratum|*|*``: post-stratification then leaves that CAE's base weights unchanged
       (they already sum to ``N_h``);
    3. strata of the register without any respondent are dropped from the table (they are not
       in the sample, the design does not represent them).

    Args:
        data: respondents with the three columns (no missing values).
        stratum: column of the stratum (the CAE).
        outer: column of the variable kept longest (sex).
        inner: column of the variable collapsed first (contract stage).
        population: register counts, columns ``stratum, outer, inner, Freq``.
        min_count: smallest acceptable number of respondents in a cell (1 = only empty
            cells are collapsed).
        exempt_outer: levels of ``outer`` whose cells are never too small (the respondents
            without sex or stage, whose count is estimated from themselves).

    Returns:
        :class:`CollapsedCells`; ``collapsed`` lists what was merged and why.

    """
    cols = [stratum, outer, inner]
    for c in cols:
        if data[c].isna().any():
            raise ValueError(f"missing values in {c!r}: impute or drop before post-stratifying")
    pop = population.groupby(cols, dropna=False)["Freq"].sum().astype(float)
    samp = data.groupby(cols).size().astype(float)
    allcells = pop.index.union(samp.index)
    pop = pop.reindex(allcells, fill_value=0.0)
    samp = samp.reindex(allcells, fill_value=0.0)

    def deficient(n: float, big_n: float) -> bool:
        return (big_n > 0 and n < min_count and n < big_n) or (n > 0 and big_n <= 0)

    cell_of: dict[tuple, str] = {}
    records = []
    sampled_strata = set(data[stratum].unique().tolist())
    for s in sorted({k[0] for k in allcells}, key=str):
        keys_s = [k for k in allcells if k[0] == s]
        if s not in sampled_strata:
            for k in keys_s:
                records.append(
                    {
                        "stratum": k[0],
                        "outer": k[1],
                        "inner": k[2],
                        "n": 0,
                        "N": pop[k],
                        "cell": None,
                        "reason": "stratum without respondents",
                    }
                )
            continue
        groups: dict[Any, list[tuple]] = {}
        for k in keys_s:
            groups.setdefault(k[1], []).append(k)
        stratum_level = False
        group_label: dict[Any, str] = {}
        for o, ks in groups.items():
            if o in exempt_outer:
                continue
            if any(deficient(samp[k], pop[k]) for k in ks):
                n_o = sum(samp[k] for k in ks)
                big_n_o = sum(pop[k] for k in ks)
                if deficient(n_o, big_n_o):
                    stratum_level = True
                group_label[o] = f"{s}|{o}|*"
        for o, ks in groups.items():
            for k in ks:
                if stratum_level:
                    lab = f"{s}|*|*"
                    reason = "stage and sex collapsed: too few respondents in the sex group"
                elif o in group_label:
                    lab = group_label[o]
                    reason = "stage collapsed within sex"
                else:
                    lab = f"{s}|{o}|{k[2]}"
                    reason = ""
                cell_of[k] = lab
                if reason and (samp[k] > 0 or pop[k] > 0):
                    records.append(
                        {
                            "stratum": k[0],
                            "outer": k[1],
                            "inner": k[2],
                            "n": int(samp[k]),
                            "N": pop[k],
                            "cell": lab,
                            "reason": reason,
                        }
                    )
    labels = pd.Series(
        [cell_of[k] for k in _cells(data, cols)], index=data.index, name="post_stratum"
    )
    table: dict[str, float] = {}
    for k, lab in cell_of.items():
        table[lab] = table.get(lab, 0.0) + float(pop[k])
    popdf = pd.DataFrame({"cell": list(table), "Freq": list(table.values())})
    popdf = popdf[popdf["Freq"] > 0].reset_index(drop=True)
    collapsed = pd.DataFrame(
        records, columns=["stratum", "outer", "inner", "n", "N", "cell", "reason"]
    )
    return CollapsedCells(labels=labels, population=popdf, collapsed=collapsed)


def post_stratify_with_collapse(design: SurveyDesign, population: pd.DataFrame, *, stratum: str,
                                outer: str, inner: str, min_count: int = 1, exempt_outer: Sequence[Any] = (),
                                label_column: str = "post_stratum") -> tuple[SurveyDesign, CollapsedCells]:
    """:func:`collapse_post_strata`, then :func:`post_stratify` on the resulting cells.

    The design gets a ``label_column`` column.
    """
    res = collapse_post_strata(design.data, population, stratum=stratum, outer=outer, inner=inner,
                               min_count=min_count, exempt_outer=exempt_outer)
    d2 = design.assign(**{label_column: res.labels.to_numpy()})
    return post_stratify(d2, label_column, res.population.rename(columns={"cell": label_column})), res


@dataclass(frozen=True)
class TrimResult:
    """Outcome of :func:`trim_weights`.

    The design, the capped respondents (``row, stratum, weight_before, weight_after``), every
    stratum's cap and the rounds used.
    """

    design: SurveyDesign
    trimmed: pd.DataFrame
    caps: pd.Series
    iterations: int


def trim_weights(design: SurveyDesign, *, ratio: float = 3.5, maxit: int = 50) -> TrimResult:
    """Trim extreme weights within each stratum (CAE), keeping every stratum's total.

    Rule: in stratum ``h`` the cap is ``ratio x`` the median of its (non-zero) weights. Weights
    above the cap are set to the cap and the excess is given to the other respondents of the
    same stratum in proportion to their weights; this is repeated until no weight exceeds the
    cap. Each CAE's weighted total is therefore unchanged; post-stratification totals within the
    CAE hold only approximately afterwards. As R's ``trimWeights``, the calibration structure is
    kept for the variance and the trimmed weights are otherwise treated as fixed.

    Raises:
        ValueError: the cap is infeasible (``n_h x cap < total_h``).

    """
    if ratio <= 1:
        raise ValueError("ratio must exceed 1")
    w = design.weights.copy()
    caps = {}
    trimmed_rows = []
    iterations = 0
    for h, label in enumerate(design.strata_levels):
        sel = (design.strata == h) & (w > 0)
        if not sel.any():
            continue
        wh = w[sel]
        cap = ratio * float(np.median(wh))
        caps[label] = cap
        tot = wh.sum()
        if cap * len(wh) < tot * (1 - 1e-12):
            raise ValueError(f"cap {cap:g} infeasible in stratum {label!r}")
        before = wh.copy()
        capped = np.zeros(len(wh), dtype=bool)
        for it in range(1, maxit + 1):
            over = (wh > cap * (1 + 1e-12)) & ~capped
            if not over.any():
                break
            iterations = max(iterations, it)
            capped |= over
            wh = np.where(capped, cap, wh)
            free = ~capped
            excess = tot - wh.sum()
            if free.any():
                wh[free] = wh[free] * (1 + excess / wh[free].sum())
        idx = np.flatnonzero(sel)
        for i in np.flatnonzero(capped):
            trimmed_rows.append(
                {
                    "row": int(idx[i]),
                    "stratum": label,
                    "weight_before": float(before[i]),
                    "weight_after": float(wh[i]),
                }
            )
        w[sel] = wh
    trimmed = pd.DataFrame(
        trimmed_rows, columns=["row", "stratum", "weight_before", "weight_after"]
    )
    return TrimResult(replace(design, weights=w), trimmed, pd.Series(caps, name="cap"), iterations)




def cells_as_strata(design: SurveyDesign, cell_column: str, population: pd.DataFrame, *,
                    stratum_column: str = "variance_stratum",
                    size_column: str = "variance_population") -> SurveyDesign:
    """The variance design of the project: the post-strata as strata, each with its own fpc.

    The weights are kept as they are (post-stratified, then trimmed); the variance treats the
    respondents of each cell as a simple random sample of the cell's registered members, with the
    cell's own sampling fraction: the response-homogeneity-group model (« groupes de réponse
    homogènes », as INSEE treats non-response). R: ``svydesign(ids = ~1,
    strata = ~variance_stratum, fpc = ~variance_population, weights = ~weight)``. Without it,
    R's linearisation after ``postStratify`` with strata = CAEs applies one fpc per CAE; when
    response fractions differ between the cells of a CAE (10 % to 93 % in the demo) that
    variance is about 8 % too small and the 95 % intervals cover the truth about 92 % of the time
    (``docs/waves.md``, ``scripts/simulate_change_coverage.py``).

    Args:
        design: the weighted design; its data holds ``cell_column``.
        cell_column: column of the post-stratum of every respondent.
        population: the cells' counts for the fpc (columns ``cell_column``, ``Freq``); a cell
            whose count does not exceed its respondents is a census (no variance).
        stratum_column: name of the column added to the data: the variance stratum (the cell).
        size_column: name of the column added to the data: the stratum's fpc.

    Returns:
        A design without calibration record: strata = the cells, fpc = the cell's count, or its
        number of respondents when that is larger (a cell whose count was estimated, such as
        the respondents without sex or stage, cannot be sampled at more than 100 %).

    """
    cells = design.data[cell_column].astype(str)
    size = dict(zip(population[cell_column].astype(str), population["Freq"].astype(float), strict=True))
    missing = sorted(set(cells) - set(size))
    if missing:
        raise ValueError(f"no register count for the cells {missing[:3]}")
    n = cells.value_counts()
    fpc = np.array([max(size[c], float(n[c])) for c in cells])
    data = design.data.assign(**{stratum_column: cells.to_numpy(), size_column: fpc})
    out = svydesign(data, strata=stratum_column, weights=design.weights, fpc=size_column,
                    lonely_psu=design.lonely_psu)  # type: ignore[arg-type]
    return replace(out, domain=design.domain)
