"""Personal data protection: keyed pseudonyms, the key's location, masking, formula neutralisation."""

import os
import stat

import pandas as pd
import pytest

from cae_impact import privacy
from cae_impact.privacy import (
    EMAIL_MASK,
    PHONE_MASK,
    PSEUDO_KEY_ENV,
    PseudonymisationKeyError,
    contains_personal_data,
    is_formula_like,
    load_pseudonymisation_key,
    mask_free_text,
    mask_series,
    neutralise_formula,
    neutralise_frame,
    pseudonymise,
)

KEY = b"0123456789abcdef0123456789abcdef"


# ---- pseudonyms ---------------------------------------------------------------------------


def test_pseudonym_is_stable_hex_of_fixed_length():
    a = pseudonymise("token:tokAAA111", KEY, scope="cae-1")
    assert a == pseudonymise("token:tokAAA111", KEY, scope="cae-1")
    assert len(a) == privacy.PSEUDONYM_LENGTH
    assert set(a) <= set("0123456789abcdef")


def test_pseudonym_depends_on_key_and_scope_and_hides_the_identifier():
    base = pseudonymise("token:42", KEY, scope="cae-1")
    assert pseudonymise("token:42", KEY[::-1], scope="cae-1") != base
    assert pseudonymise("token:42", KEY, scope="cae-2") != base
    assert pseudonymise("token:43", KEY, scope="cae-1") != base


# ---- key location ---------------------------------------------------------------------------


def test_key_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(PSEUDO_KEY_ENV, "a-long-enough-secret-key")
    assert load_pseudonymisation_key(tmp_path) == b"a-long-enough-secret-key"
    assert not (tmp_path / ".secrets").exists()


def test_key_file_created_owner_only_then_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(PSEUDO_KEY_ENV, raising=False)
    key = load_pseudonymisation_key(tmp_path)
    path = tmp_path / ".secrets" / "pseudonymisation.key"
    assert path.exists() and len(key) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_pseudonymisation_key(tmp_path) == key


def test_key_too_short_or_absent_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(PSEUDO_KEY_ENV, "short")
    with pytest.raises(PseudonymisationKeyError, match="too short"):
        load_pseudonymisation_key(tmp_path)
    monkeypatch.delenv(PSEUDO_KEY_ENV)
    with pytest.raises(PseudonymisationKeyError, match="no pseudonymisation key"):
        load_pseudonymisation_key(tmp_path, create=False)


# ---- masking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "écrivez à camille.martin@example.org svp",
        "CAMILLE.MARTIN+cae@Example.ORG",
        "camille [at] example.org",
        "06 39 98 12 34",
        "0639981234",
        "06.39.98.12.34",
        "06-39-98-12-34",
        "+33 6 39 98 12 34",
        "+33639981234",
        "0033 (0)1 23 45 67 89",
        "+44 20 7946 0958",
    ],
)
def test_personal_data_is_masked(text):
    masked = mask_free_text(text)
    assert EMAIL_MASK in masked or PHONE_MASK in masked
    assert not contains_personal_data(masked)


@pytest.mark.parametrize(
    "text",
    [
        "Mon chiffre d'affaires est passé de 2 000 € à 35 000 € en 2019.",
        "né le 01/02/1980, entré en 2021",
        "SIRET 123 456 789 00012",
        "entre 1500 et 2500 euros par mois",
        "note 7,5/10",
        "référence 2023-2024",
    ],
)
def test_amounts_dates_and_years_are_not_masked(text):
    assert mask_free_text(text) == text


def test_mask_series_counts_and_keeps_missing():
    series = pd.Series(["a@b.fr et 06 39 98 12 34", None, "rien"], dtype="string")
    masked, n_email, n_phone = mask_series(series)
    assert (n_email, n_phone) == (1, 1)
    assert masked.iloc[0] == f"{EMAIL_MASK} et {PHONE_MASK}"
    assert masked.isna().iloc[1] and masked.iloc[2] == "rien"


# ---- formula injection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["=1+1", '=HYPERLINK("http://x.example","clic")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
     "\t=1", "  =1+1", "-bonne ambiance"],
)
def test_formula_triggers_are_neutralised(value):
    out = neutralise_formula(value)
    assert out == "'" + value
    assert is_formula_like(value)


@pytest.mark.parametrize("value", ["-3", "+1,5", "2.5", "Très satisfait", "", "a=b"])
def test_plain_values_untouched(value):
    assert neutralise_formula(value) == value


def test_non_text_untouched_and_frame_neutralised():
    assert neutralise_formula(4) == 4 and neutralise_formula(None) is None
    frame = pd.DataFrame({"=x": ["=1+1", "ok"], "n": [1, 2]})
    out = neutralise_frame(frame)
    assert list(out.columns) == ["'=x", "n"]
    assert out.iloc[0, 0] == "'=1+1" and out.iloc[1, 0] == "ok" and out["n"].tolist() == [1, 2]
    assert frame.iloc[0, 0] == "=1+1"  # the input is not modified
