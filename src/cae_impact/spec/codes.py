"""The answer codes each survey tool can hold, derived from the codebook by one function.

The codebook's choice codes (``associe``, ``moins3``, ``tresbon``…) are valid XLSForm choice
names (KoboToolbox/ODK) and are never seen in Google Forms (which exports answer texts). But a
LimeSurvey answer code is 1 to 5 letters or digits (its ``answers.code`` column is
``varchar(5)``), so 59 of them cannot be used as such in LimeSurvey.

:func:`limesurvey_answer_codes` gives, for every scale, the code LimeSurvey holds for each
choice. It is computed (never typed), so the LimeSurvey survey structure written by
:mod:`cae_impact.spec.questionnaire` and the LimeSurvey adapter agree by construction:

- a scale whose codes are all valid LimeSurvey answer codes keeps them (``oui``/``non``/``nsp``);
- any other scale takes LimeSurvey's own default codes ``A1``, ``A2``… in the codebook's order
  (so a scale's codes never mix the two styles).

Multiple-choice questions are sub-questions in LimeSurvey, whose codes may be 20 characters: the
codebook's codes are used as sub-question codes unchanged (``entraide[conseils]``).
:func:`default_subquestion_codes` gives LimeSurvey's defaults (``SQ001``…) for a survey typed by
hand in the codebook's order.
"""

from __future__ import annotations

import re

LIMESURVEY_ANSWER_CODE_RE = re.compile(r"^[A-Za-z0-9]{1,5}$")
"""A valid LimeSurvey answer code."""

LIMESURVEY_SUBQUESTION_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,19}$")
"""A valid LimeSurvey question or sub-question code."""


def limesurvey_answer_codes(scale) -> dict[str, str]:
    """Codebook choice code -> LimeSurvey answer code (1-5 letters or digits) for one scale.

    >>> from types import SimpleNamespace as NS
    >>> limesurvey_answer_codes(NS(choices=[NS(code="oui"), NS(code="non")]))
    {'oui': 'oui', 'non': 'non'}
    >>> limesurvey_answer_codes(NS(choices=[NS(code="moins3"), NS(code="plus3")]))
    {'moins3': 'A1', 'plus3': 'A2'}
    """
    codes = [c.code for c in scale.choices]
    if all(LIMESURVEY_ANSWER_CODE_RE.match(code) for code in codes):
        return {code: code for code in codes}
    return {code: f"A{i}" for i, code in enumerate(codes, start=1)}


def limesurvey_subquestion_codes(scale) -> dict[str, str]:
    """Codebook choice code -> LimeSurvey sub-question code of a multiple-choice question."""
    out = {}
    for i, c in enumerate(scale.choices, start=1):
        out[c.code] = c.code if LIMESURVEY_SUBQUESTION_CODE_RE.match(c.code) else f"SQ{i:03d}"
    return out


def default_subquestion_codes(scale) -> dict[str, str]:
    """LimeSurvey's default sub-question codes ``SQ001``… -> codebook choice code, in order."""
    return {f"SQ{i:03d}": c.code for i, c in enumerate(scale.choices, start=1)}
