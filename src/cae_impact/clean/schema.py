"""The schema of ``responses.parquet``, derived from the codebook and checked at the hand-over.

The cleaning step validates its output against this schema before anything is written under
``data/processed/`` (CONTRACTS.md §3), and any later stage may validate what it reads with the
same schema. It is built from the codebook, never typed by hand, so a question added to the
référentiel is checked without touching code:

- exactly the columns of :meth:`Codebook.processed_columns`, with their dtypes (``strict``: a
  column that is not in the contract — a token, an e-mail — fails validation);
- ``respondent_id``: a pseudonym (hex digits of the keyed hash), unique, never missing;
- ``cae_id`` and ``wave``: never missing (and equal to the expected values when given);
- choice questions: only codes of their scale; numeric questions: within the codebook's
  ``min``/``max``; free texts: no e-mail address or phone number left unmasked.
"""

from __future__ import annotations

import re

import pandas as pd
import pandera.pandas as pa

from cae_impact.privacy.personal_data import PSEUDONYM_LENGTH, contains_personal_data

PSEUDONYM_RE = re.compile(rf"^[0-9a-f]{{{PSEUDONYM_LENGTH}}}$")


def _no_personal_data(series: pd.Series) -> pd.Series:
    text = series.astype("string")
    found = text.map(lambda v: contains_personal_data(str(v)), na_action="ignore")
    return ~found.fillna(False).astype(bool)


def processed_schema(codebook, *, cae_id: str | None = None, wave: str | None = None) -> pa.DataFrameSchema:
    """The pandera schema of a CAE's ``responses.parquet`` (see the module docstring)."""
    dtypes = codebook.processed_columns()
    columns: dict[str, pa.Column] = {
        "respondent_id": pa.Column(
            dtypes["respondent_id"],
            pa.Check.str_matches(PSEUDONYM_RE.pattern, error="respondent_id is not a pseudonym"),
            nullable=False,
            unique=True,
        ),
        "cae_id": pa.Column(
            dtypes["cae_id"], pa.Check.eq(cae_id) if cae_id is not None else None, nullable=False
        ),
        "wave": pa.Column(dtypes["wave"], pa.Check.eq(wave) if wave is not None else None, nullable=False),
        "submitted_at": pa.Column(dtypes["submitted_at"], nullable=True),
    }
    for question in codebook.questions.values():
        if question.type == "multiple":
            for code in codebook.scale_of(question.id).codes:
                name = f"{question.id}__{code}"
                columns[name] = pa.Column(dtypes[name], nullable=True)
        elif question.type == "numeric":
            checks = []
            if question.min is not None:
                checks.append(pa.Check.ge(question.min))
            if question.max is not None:
                checks.append(pa.Check.le(question.max))
            columns[question.id] = pa.Column(dtypes[question.id], checks, nullable=True)
        elif question.type == "text":
            columns[question.id] = pa.Column(
                dtypes[question.id],
                pa.Check(_no_personal_data, element_wise=False, error="unmasked e-mail or phone number"),
                nullable=True,
            )
        else:
            codes = codebook.scale_of(question.id).codes
            columns[question.id] = pa.Column(dtypes[question.id], pa.Check.isin(codes), nullable=True)
        other = codebook.other_text_columns().get(question.id)
        if other is not None:  # what was typed after « Autre »: a free text
            columns[other] = pa.Column(
                dtypes[other],
                pa.Check(_no_personal_data, element_wise=False, error="unmasked e-mail or phone number"),
                nullable=True,
            )
    return pa.DataFrameSchema(
        columns,
        strict=True,
        ordered=True,
        name="responses",
        description="Cleaned, pseudonymised responses of one CAE (CONTRACTS.md §3)",
    )


def validate_processed(frame: pd.DataFrame, codebook, *, cae_id: str | None = None, wave: str | None = None) -> pd.DataFrame:
    """Validate a processed responses frame; raise ``pandera.errors.SchemaErrors`` listing every failure."""
    return processed_schema(codebook, cae_id=cae_id, wave=wave).validate(frame, lazy=True)
