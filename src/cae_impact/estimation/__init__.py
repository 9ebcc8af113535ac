"""Design-based estimation for the CAE-IMPACT surveys: ``svy`` where it gives R's answer.

The respondents of each CAE are a sample of its membership register: the CAEs are the strata,
the base weight is ``N_h / n_h`` and the finite population correction uses ``N_h``; weights are
post-stratified (sex x contract stage within CAE, cells without respondents merged) and
trimmed. Estimates, standard errors (Taylor linearisation with the calibration residuals),
degrees of freedom and Rao-Scott tests come from ``svy`` (pinned), which reproduces R's
``survey`` on the project's oracles (``tests/test_survey_oracles.py``; what it reproduces and
what stays in house, and why: ``docs/survey-engine.md``).

Modules: :mod:`.design` (the design and its svy counterpart), :mod:`.estimators` (means,
proportions, distributions, quantiles, comparisons, tests), :mod:`.weighting`
(post-stratification, raking, the collapsing and trimming rules).
"""

from .design import (
    LonelyPSUError,
    SurveyDesign,
    base_weights,
    stratified_design,
    svydesign,
)
from .domains import domain_means
from .estimators import (
    ZERO_SE,
    ChisqTest,
    Comparison,
    Estimate,
    PairedDifference,
    ProportionEstimate,
    QuantileEstimate,
    benjamini_hochberg,
    by,
    chisq_test,
    compare_domains,
    compare_strata,
    compare_stratum,
    design_effect,
    distribution,
    domain_proportions,
    domain_quantiles,
    effective_sample_size,
    kish_design_effect,
    mean,
    median,
    paired_difference,
    prop_interval,
    proportion,
    qrule,
    quantile,
    rao_scott,
    t_quantile,
    testable,
    total,
)
from .weighting import (
    CollapsedCells,
    RakeResult,
    TrimResult,
    cells_as_strata,
    collapse_post_strata,
    post_stratify,
    post_stratify_with_collapse,
    rake,
    rake_with_report,
    trim_weights,
)

__all__ = [
    "ZERO_SE", "ChisqTest", "CollapsedCells", "Comparison", "Estimate", "LonelyPSUError",
    "PairedDifference", "ProportionEstimate", "QuantileEstimate", "RakeResult", "SurveyDesign",
    "TrimResult", "base_weights", "benjamini_hochberg", "by", "cells_as_strata", "chisq_test", "collapse_post_strata",
    "compare_domains", "compare_strata", "compare_stratum", "design_effect", "distribution",
    "domain_means", "domain_proportions", "domain_quantiles", "effective_sample_size", "kish_design_effect", "mean",
    "median", "paired_difference", "post_stratify", "post_stratify_with_collapse", "prop_interval",
    "proportion", "qrule", "quantile", "rake", "rao_scott", "t_quantile", "rake_with_report", "stratified_design",
    "svydesign", "testable", "total", "trim_weights",
]
