r"""French number, date and typography formatting for the reports.

Every number a reader sees goes through this module, so that the reports, charts and narrative
print the same thing for the same value. The conventions follow the French typographic usage of
the Imprimerie nationale and the Unicode CLDR ``fr`` locale:

* decimal comma (``12,5``), thousands grouped by a narrow no-break space U+202F (``1 250``,
  ``12 000``), four-digit numbers included;
* a narrow no-break space U+202F before ``%`` (``12,5 %``) and before ``;``, ``!`` and ``?``;
* a no-break space U+00A0 before ``:``, before the euro sign (``1 250 €``), around ``=`` in
  ``n = 123`` and inside guillemets (``« texte »``);
* the true minus sign U+2212 for negative numbers (``−3``), as matplotlib prints on axes;
* rounding **half away from zero** (``0,125`` → ``13 %`` with no decimal, ``−2,5`` → ``−3``), the
  rule a French reader expects (« arrondi au plus proche »), computed on the decimal value written
  in the data, not on its binary approximation (``0,145`` → ``15 %``, not ``14 %``);
* a missing value (``None``, ``NaN``, ``pd.NA``, ``NaT``) prints as an em dash « — » by default.
  Tables use « — » for « donnée manquante »; pass ``missing="s. o."`` (« sans objet ») where the
  value does not apply rather than being absent.

The formatting functions are pure and carry doctests; outputs are shown with ``repr`` so that the
no-break spaces are visible (``\u202f`` narrow, ``\xa0`` normal).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from numbers import Real
from typing import Any

NNBSP = "\u202f"
"""Narrow no-break space (espace fine insécable): thousands, before % ; ! ?"""
NBSP = "\u00a0"
"""No-break space (espace insécable): before : and €, inside guillemets, around =."""
MINUS = "\u2212"
"""Minus sign used for negative numbers."""
MISSING = "\u2014"
"""Default text for a missing value: an em dash « — »."""
NOT_APPLICABLE = "s.\u00a0o."
"""« sans objet »: for a value that does not apply (pass as ``missing=``)."""

MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

__all__ = [
    "MINUS",
    "MISSING",
    "MONTHS_FR",
    "NBSP",
    "NNBSP",
    "NOT_APPLICABLE",
    "format_ci",
    "format_date_fr",
    "format_eur",
    "format_int",
    "format_n",
    "format_number",
    "format_pct",
    "format_points",
    "french_typography",
    "is_missing",
    "round_half_up",
]


def is_missing(value: Any) -> bool:
    """Tell whether a scalar is missing: ``None``, float NaN, ``pd.NA`` or ``NaT``.

    >>> is_missing(None), is_missing(float("nan")), is_missing(0.0), is_missing("")
    (True, True, False, False)
    """
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (str, bytes, bool, int, Decimal)):
        return False
    import numpy as np
    import pandas as pd

    try:
        result = pd.isna(value)
    except (TypeError, ValueError):  # pragma: no cover - exotic objects
        return False
    return bool(result) if isinstance(result, (bool, np.bool_)) else False


def _to_decimal(value: Any) -> Decimal:
    """Convert a real number to the Decimal of its shortest repr (``0.145`` → ``Decimal('0.145')``)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number to format")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Real):
        f = float(value)
        if math.isinf(f):
            raise ValueError(f"cannot format an infinite value: {value!r}")
        return Decimal(repr(f))
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise TypeError(f"not a number: {value!r}") from exc


def round_half_up(value: Any, decimals: int = 0) -> Decimal:
    """Round half away from zero on the written decimal value; returns a Decimal.

    >>> round_half_up(2.5), round_half_up(-2.5), round_half_up(0.145, 2), round_half_up(1.005, 2)
    (Decimal('3'), Decimal('-3'), Decimal('0.15'), Decimal('1.01'))
    """
    quantum = Decimal(1).scaleb(-decimals)
    return _to_decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)


def _group(digits: str, sep: str = NNBSP) -> str:
    """Group an unsigned digit string by thousands."""
    out = []
    while len(digits) > 3:
        out.append(digits[-3:])
        digits = digits[:-3]
    out.append(digits)
    return sep.join(reversed(out))


def _format_decimal(d: Decimal, decimals: int, plus: bool = False) -> str:
    """Format an already rounded Decimal with French separators and sign."""
    negative = d < 0 and d != 0
    text = f"{abs(d):.{decimals}f}"
    if "." in text:
        whole, frac = text.split(".")
        body = _group(whole) + "," + frac
    else:
        body = _group(text)
    if negative:
        return MINUS + body
    if plus and d != 0:
        return "+" + body
    return body


def format_number(x: Any, decimals: int = 0, *, missing: str = MISSING, plus: bool = False) -> str:
    r"""Format a number the French way: decimal comma, narrow no-break thousands separator.

    ``plus=True`` prints a ``+`` before positive values (for differences). Negative zero after
    rounding prints ``0``.

    >>> format_number(1250)
    '1\u202f250'
    >>> format_number(-1234567.891, 2)
    '−1\u202f234\u202f567,89'
    >>> format_number(-0.4), format_number(2.5), format_number(3, plus=True)
    ('0', '3', '+3')
    >>> format_number(None), format_number(float("nan"), missing="s. o.")
    ('—', 's. o.')
    """
    if is_missing(x):
        return missing
    return _format_decimal(round_half_up(x, decimals), decimals, plus=plus)


def format_int(n: Any, *, missing: str = MISSING) -> str:
    r"""Format a count (rounded to a whole number) with French thousands separators.

    >>> format_int(12000), format_int(7), format_int(73.6)
    ('12\u202f000', '7', '74')
    """
    return format_number(n, 0, missing=missing)


def format_pct(p: Any, decimals: int = 0, *, missing: str = MISSING, plus: bool = False) -> str:
    r"""Format a proportion in [0, 1] as a French percentage: ``0.125`` → « 12,5 % ».

    The value is a proportion (the contract of the indicator table), not a percentage.

    >>> format_pct(0.125, 1)
    '12,5\u202f%'
    >>> format_pct(0.125), format_pct(0.145), format_pct(0.0049)
    ('13\u202f%', '15\u202f%', '0\u202f%')
    >>> format_pct(None)
    '—'
    """
    if is_missing(p):
        return missing
    return format_number(_to_decimal(p) * 100, decimals, plus=plus) + NNBSP + "%"


def format_points(d: Any, decimals: int = 0, *, missing: str = MISSING, plus: bool = False) -> str:
    r"""Format a difference of percentages, given **in points** (``3`` → « 3 points »).

    French keeps the singular below 2 (« 0 point », « 1 point », « 1,5 point »).

    >>> format_points(3), format_points(1), format_points(-1.5, 1), format_points(4, plus=True)
    ('3\xa0points', '1\xa0point', '−1,5\xa0point', '+4\xa0points')
    """
    if is_missing(d):
        return missing
    rounded = round_half_up(d, decimals)
    unit = "points" if abs(rounded) >= 2 else "point"
    return _format_decimal(rounded, decimals, plus=plus) + NBSP + unit


def format_eur(x: Any, decimals: int = 0, *, missing: str = MISSING, plus: bool = False) -> str:
    r"""Format an amount in euros: ``1250`` → « 1 250 € » (no-break space before €).

    >>> format_eur(1250)
    '1\u202f250\xa0€'
    >>> format_eur(-80.5, 2)
    '−80,50\xa0€'
    """
    if is_missing(x):
        return missing
    return format_number(x, decimals, plus=plus) + NBSP + "€"


def format_ci(
    lo: Any,
    hi: Any,
    decimals: int = 0,
    *,
    style: str = "brackets",
    kind: str = "pct",
    missing: str = MISSING,
) -> str:
    r"""Format a confidence interval.

    ``style="brackets"`` gives the tabular form of French statistical publications,
    « [78 % ; 91 %] » (a semicolon, since the comma is the decimal mark);
    ``style="prose"`` gives « 78 % à 91 % » for running text
    (« intervalle de confiance à 95 % : 78 % à 91 % »).
    ``kind`` is ``pct`` (proportions), ``eur`` or ``number``. Either bound missing gives ``missing``.

    >>> format_ci(0.78, 0.912)
    '[78\u202f%\u202f;\u202f91\u202f%]'
    >>> format_ci(0.78, 0.912, style="prose")
    '78\u202f% à 91\u202f%'
    >>> format_ci(1200, 1550, kind="eur", style="prose")
    '1\u202f200\xa0€ à 1\u202f550\xa0€'
    """
    if is_missing(lo) or is_missing(hi):
        return missing
    fmt = {"pct": format_pct, "eur": format_eur, "number": format_number}.get(kind)
    if fmt is None:
        raise ValueError(f"unknown kind {kind!r}: expected pct, eur or number")
    a, b = fmt(lo, decimals), fmt(hi, decimals)
    if style == "brackets":
        return f"[{a}{NNBSP};{NNBSP}{b}]"
    if style == "prose":
        return f"{a} à {b}"
    raise ValueError(f"unknown style {style!r}: expected brackets or prose")


def format_n(n: Any, *, missing: str = MISSING) -> str:
    r"""Format an unweighted count of respondents: « n = 123 » (no-break spaces around =).

    >>> format_n(123), format_n(1250)
    ('n\xa0=\xa0123', 'n\xa0=\xa01\u202f250')
    """
    return f"n{NBSP}={NBSP}{format_int(n, missing=missing)}"


def format_date_fr(date: Any, *, missing: str = MISSING) -> str:
    """Format a date in French, long form: « 26 novembre 2026 », « 1er mars 2026 ».

    Accepts a ``date``, ``datetime``, pandas ``Timestamp`` or an ISO string ``YYYY-MM-DD``.

    >>> import datetime
    >>> format_date_fr(datetime.date(2026, 11, 26)), format_date_fr("2026-03-01")
    ('26 novembre 2026', '1er mars 2026')
    """
    if is_missing(date):
        return missing
    if isinstance(date, str):
        date = _dt.date.fromisoformat(date[:10])
    elif not isinstance(date, _dt.date):
        to_py = getattr(date, "to_pydatetime", None)
        if to_py is None:
            raise TypeError(f"not a date: {date!r}")
        date = to_py()
    day = "1er" if date.day == 1 else str(date.day)
    return f"{day} {MONTHS_FR[date.month - 1]} {date.year}"


# --- typography ------------------------------------------------------------------------------

_SPACES = f" \t{NBSP}{NNBSP}"
# ; ! ? take a narrow no-break space, when used as punctuation: preceded by a word character or a
# closing sign, followed by a space, the end, or a closing sign (so URLs, "!=" and "&amp;" stay).
_HIGH_PUNCT = re.compile(
    rf"(?<=[^\s;:!?«(\[{NBSP}{NNBSP}])[{_SPACES}]*([;!?])(?=$|[\s)\]»\"'.,…;!?*_])"
)
# the colon takes a normal no-break space; only when followed by a space or the end of the text
# (so "14:30", "https://" and "a:b" stay untouched).
_COLON = re.compile(rf"(?<=[^\s;:!?«(\[{NBSP}{NNBSP}])[{_SPACES}]*:(?=$|[\s*_])")
_OPEN_GUILLEMET = re.compile(rf"«[{_SPACES}]*")
_CLOSE_GUILLEMET = re.compile(rf"[{_SPACES}]*»")
_PERCENT = re.compile(rf"(?<=\d)[{_SPACES}]?%")
_ENTITY_BEFORE = re.compile(r"&#?\w+$")


#: a straight apostrophe between letters (« l'entrée ») becomes the typographic one (« l’entrée »)
_APOSTROPHE = re.compile(r"(?<=[^\W\d_])'(?=[^\W\d_])")
#: « Bac+3 » is written « Bac + 3 » (no-break spaces)
_BAC = re.compile(r"\b([Bb])ac ?\+ ?(\d)")


def french_typography(text: str) -> str:
    r"""Apply French spacing to prose: no-break spaces before « : ; ? ! », inside guillemets, before %.

    A normal or missing space before ``:`` becomes U+00A0; before ``; ! ?`` and ``%`` it becomes a
    narrow U+202F; ``«`` and ``»`` get U+00A0 inside. The function is idempotent
    (``french_typography(french_typography(t)) == french_typography(t)``). It leaves alone what is
    not punctuation of prose: times (``14:30``), URLs (``https://…?q=1``), HTML entities
    (``&amp;``), ``?!`` runs (one space before the first sign). Apply it to text, not to markup
    or code.

    >>> french_typography("Note: 12% des entrepreneurs ; vraiment?")
    'Note\xa0: 12\u202f% des entrepreneurs\u202f; vraiment\u202f?'
    >>> french_typography("«Ne sait pas»")
    '«\xa0Ne sait pas\xa0»'
    >>> french_typography("Voir https://insee.fr/fr?q=1 à 14:30")
    'Voir https://insee.fr/fr?q=1 à 14:30'
    """
    if not text:
        return text

    def _high(m: re.Match[str]) -> str:
        if m.group(1) == ";" and _ENTITY_BEFORE.search(m.string, 0, m.start()):
            return m.group(0)
        return NNBSP + m.group(1)

    text = _APOSTROPHE.sub("\u2019", text)
    text = _BAC.sub(lambda m: f"{m.group(1)}ac{NBSP}+{NBSP}{m.group(2)}", text)
    text = _HIGH_PUNCT.sub(_high, text)
    text = _COLON.sub(NBSP + ":", text)
    text = _OPEN_GUILLEMET.sub("«" + NBSP, text)
    text = _CLOSE_GUILLEMET.sub(NBSP + "»", text)
    text = _PERCENT.sub(NNBSP + "%", text)
    return text
