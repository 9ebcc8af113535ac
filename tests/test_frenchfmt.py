"""Tests of French number, date and typography formatting."""

from __future__ import annotations

import datetime as dt
import doctest

import numpy as np
import pandas as pd
import pytest

from cae_impact.core import frenchfmt
from cae_impact.core.frenchfmt import (
    MINUS,
    NBSP,
    NNBSP,
    format_ci,
    format_date_fr,
    format_eur,
    format_int,
    format_n,
    format_number,
    format_pct,
    format_points,
    french_typography,
)


def test_doctests_pass():
    result = doctest.testmod(frenchfmt)
    assert result.attempted > 15
    assert result.failed == 0


@pytest.mark.parametrize(
    ("p", "decimals", "expected"),
    [
        (0.125, 1, f"12,5{NNBSP}%"),
        (0.125, 0, f"13{NNBSP}%"),  # half away from zero, not to even
        (0.135, 0, f"14{NNBSP}%"),
        (0.145, 0, f"15{NNBSP}%"),  # 0.145 * 100 is 14.499999… in binary: decimal rounding
        (0.005, 0, f"1{NNBSP}%"),
        (0.0049, 0, f"0{NNBSP}%"),
        (1.0, 0, f"100{NNBSP}%"),
        (0.0, 1, f"0,0{NNBSP}%"),
        (-0.03, 0, f"{MINUS}3{NNBSP}%"),
        (-0.025, 0, f"{MINUS}3{NNBSP}%"),
        (-0.004, 0, f"0{NNBSP}%"),  # no « −0 %»
        (12.5, 0, f"1{NNBSP}250{NNBSP}%"),
        (np.float64(0.8249), 0, f"82{NNBSP}%"),
    ],
)
def test_format_pct(p, decimals, expected):
    assert format_pct(p, decimals) == expected


@pytest.mark.parametrize("missing", [None, float("nan"), np.nan, pd.NA, pd.NaT])
def test_missing_values(missing):
    assert format_pct(missing) == "—"
    assert format_number(missing) == "—"
    assert format_eur(missing) == "—"
    assert format_int(missing, missing="s. o.") == "s. o."
    assert format_ci(missing, 0.5) == "—"
    assert format_date_fr(missing) == "—"
    assert format_points(missing) == "—"


def test_format_number_and_eur():
    assert format_number(1234567.891, 2) == f"1{NNBSP}234{NNBSP}567,89"
    assert format_number(999.5) == f"1{NNBSP}000"
    assert format_number(-1250) == f"{MINUS}1{NNBSP}250"
    assert format_number(2.5) == "3" and format_number(-2.5) == f"{MINUS}3"
    assert format_number(3, plus=True) == "+3" and format_number(0, plus=True) == "0"
    assert format_eur(1250) == f"1{NNBSP}250{NBSP}€"
    assert format_eur(350, plus=True) == f"+350{NBSP}€"
    assert format_eur(-80.5, 2) == f"{MINUS}80,50{NBSP}€"
    assert format_int(12000) == f"12{NNBSP}000"
    assert format_int(np.int64(7)) == "7"
    with pytest.raises(TypeError):
        format_number(True)
    with pytest.raises(ValueError):
        format_number(float("inf"))


def test_format_points_singular_plural():
    assert format_points(0) == f"0{NBSP}point"
    assert format_points(1) == f"1{NBSP}point"
    assert format_points(1.5, 1) == f"1,5{NBSP}point"
    assert format_points(2) == f"2{NBSP}points"
    assert format_points(-3) == f"{MINUS}3{NBSP}points"


def test_format_ci_and_n():
    assert format_ci(0.78, 0.91) == f"[78{NNBSP}%{NNBSP};{NNBSP}91{NNBSP}%]"
    assert format_ci(0.72, 0.894, style="prose") == f"72{NNBSP}% à 89{NNBSP}%"
    assert (
        format_ci(1100, 1400, kind="eur")
        == f"[1{NNBSP}100{NBSP}€{NNBSP};{NNBSP}1{NNBSP}400{NBSP}€]"
    )
    with pytest.raises(ValueError):
        format_ci(0.1, 0.2, style="latex")
    assert format_n(74) == f"n{NBSP}={NBSP}74"
    assert format_n(1250) == f"n{NBSP}={NBSP}1{NNBSP}250"


def test_format_date_fr():
    assert format_date_fr(dt.date(2026, 11, 26)) == "26 novembre 2026"
    assert format_date_fr(dt.datetime(2026, 3, 1, 10, 30)) == "1er mars 2026"
    assert format_date_fr(pd.Timestamp("2026-08-15")) == "15 août 2026"
    assert format_date_fr("2026-02-03") == "3 février 2026"
    with pytest.raises(TypeError):
        format_date_fr(20260203)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Note: voir", f"Note{NBSP}: voir"),
        ("Note : voir", f"Note{NBSP}: voir"),
        ("Vraiment? Oui! Non; peut-être", f"Vraiment{NNBSP}? Oui{NNBSP}! Non{NNBSP}; peut-être"),
        ("«Ne sait pas»", f"«{NBSP}Ne sait pas{NBSP}»"),
        ("« Ne sait pas »", f"«{NBSP}Ne sait pas{NBSP}»"),
        ("12% et 12 %", f"12{NNBSP}% et 12{NNBSP}%"),
        ("Quoi ?!", f"Quoi{NNBSP}?!"),
        ("« Pourquoi ? »", f"«{NBSP}Pourquoi{NNBSP}?{NBSP}»"),
        # left alone: times, addresses, entities, code-like text
        ("à 14:30", "à 14:30"),
        ("https://insee.fr/fr/statistiques?q=1", "https://insee.fr/fr/statistiques?q=1"),
        ("A &amp; B", "A &amp; B"),
        ("a != b", "a != b"),
        ("", ""),
    ],
)
def test_french_typography(raw, expected):
    assert french_typography(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Source : enquête ; champ : CAE 3 ; n = 74 ! « oui » ? 85% — https://a.fr/b?c=d:e",
        "Note: «texte»; vraiment?! 14:30 &amp; 3 %",
        f"Déjà{NBSP}: fait{NNBSP}; «{NBSP}ok{NBSP}»",
    ],
)
def test_french_typography_is_idempotent(text):
    once = french_typography(text)
    assert french_typography(once) == once
