"""Personal data protection: keyed pseudonyms, masking of free text, safe spreadsheet cells.

Survey exports arrive with personal data the analysis never needs: respondent tokens, e-mail
addresses, IP addresses, user names, and e-mail addresses or phone numbers typed into free-text
answers. The cleaning step uses this module so that nothing personal reaches ``data/processed/``:

- :func:`pseudonymise` replaces a respondent identifier by a keyed hash (HMAC-SHA256, truncated).
  The key lives outside the repository: the environment variable ``CAE_IMPACT_PSEUDO_KEY``, else
  the untracked file ``.secrets/pseudonymisation.key`` at the project root, created on first use.
  Without the key, a pseudonym cannot be traced back to the identifier, even by someone who can
  enumerate every plausible token or e-mail address.
- :func:`mask_free_text` replaces e-mail addresses and phone numbers in free text by
  « [courriel masqué] » and « [téléphone masqué] ».
- :func:`neutralise_formula` makes a cell that a spreadsheet would run as a formula (``=``, ``+``,
  ``-``, ``@`` …) inert, for every CSV or XLSX file the project writes (CSV/formula injection).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

import pandas as pd

from cae_impact.config import PROJECT_ROOT

PSEUDO_KEY_ENV = "CAE_IMPACT_PSEUDO_KEY"
"""Environment variable holding the pseudonymisation key (any string of 16 characters or more)."""

PSEUDO_KEY_RELPATH = Path(".secrets") / "pseudonymisation.key"
"""Key file, relative to the project root; never committed (``.secrets/`` is git-ignored)."""

PSEUDONYM_LENGTH = 20
"""Hex digits kept from the HMAC-SHA256 digest: 80 bits, collision-free at any survey size."""

MIN_KEY_LENGTH = 16

EMAIL_MASK = "[courriel masqué]"
PHONE_MASK = "[téléphone masqué]"

EMAIL_RE = re.compile(
    r"(?<![\w.+-])[\w.+-]+(?:@|\s*\[at\]\s*|\s*\(at\)\s*)[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b",
    re.IGNORECASE,
)
"""E-mail addresses, including the ``name [at] domain.fr`` spelling used to dodge spam filters."""

PHONE_RE = re.compile(
    r"(?<![\w+])"
    r"(?:"
    # French numbers: 0X XX XX XX XX, +33 X XX XX XX XX, 0033 (0)X..., space, dot or dash as separator
    r"(?:(?:\+|00)\s?33[\s.\-]?(?:\(0\)[\s.\-]?)?|0)[1-9](?:[\s.\-]?\d{2}){4}"
    r"|"
    # other international numbers: +CC then 6 to 14 digits with optional separators
    r"(?:\+|00)[1-9]\d{0,2}(?:[\s.\-]?\(?\d\)?){6,14}"
    r")"
    r"(?![\w])"
)
"""Phone numbers: French national and international formats, with or without separators.

Amounts and years (« 2 000 € », « 2019 ») do not match: a French number starts with 0 or an
international prefix and has exactly ten digits.
"""

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
"""First characters that make Excel, LibreOffice or Google Sheets read a cell as a formula or a
command (OWASP « CSV injection »)."""

_PLAIN_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?$")


class PseudonymisationKeyError(RuntimeError):
    """The pseudonymisation key is missing, too short, or cannot be created."""


def key_path(root: Path | None = None) -> Path:
    """Path of the key file under ``root`` (the project root by default)."""
    return (root or PROJECT_ROOT) / PSEUDO_KEY_RELPATH


def load_pseudonymisation_key(root: Path | None = None, *, create: bool = True) -> bytes:
    """Return the pseudonymisation key as bytes.

    Looks at the environment variable ``CAE_IMPACT_PSEUDO_KEY`` first, then at the file
    ``.secrets/pseudonymisation.key`` under ``root``. When neither exists and ``create`` is true,
    writes a new random key (256 bits, hex) to that file, readable by its owner only. The same
    key must be used for every wave of a study, so that pseudonyms stay stable.
    """
    env = os.environ.get(PSEUDO_KEY_ENV)
    if env is not None and env.strip():
        value = env.strip()
        if len(value) < MIN_KEY_LENGTH:
            raise PseudonymisationKeyError(
                f"{PSEUDO_KEY_ENV} is too short ({len(value)} characters, at least {MIN_KEY_LENGTH})"
            )
        return value.encode("utf-8")
    path = key_path(root)
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if len(value) < MIN_KEY_LENGTH:
            raise PseudonymisationKeyError(
                f"{path}: key too short ({len(value)} characters, at least {MIN_KEY_LENGTH})"
            )
        return value.encode("utf-8")
    if not create:
        raise PseudonymisationKeyError(
            f"no pseudonymisation key: set {PSEUDO_KEY_ENV} or create {path}"
        )
    value = secrets.token_hex(32)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return load_pseudonymisation_key(root, create=False)
    except OSError as exc:
        raise PseudonymisationKeyError(f"{path}: cannot create the key file: {exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value.encode("utf-8")


def pseudonymise(identifier: str, key: bytes, *, scope: str = "") -> str:
    """Keyed hash of an identifier: HMAC-SHA256 over ``scope`` and ``identifier``, truncated.

    ``scope`` (the CAE id) keeps two CAEs' token ``42`` apart. The result is
    :data:`PSEUDONYM_LENGTH` lower-case hex digits.

    >>> pseudonymise("tok-42", b"0123456789abcdef0123", scope="cae-1")
    'b09aa90edaac0340b9ce'
    """
    message = f"{scope}\x1f{identifier}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


def mask_free_text(text: str) -> str:
    """Replace e-mail addresses and phone numbers in ``text`` by French placeholders.

    >>> mask_free_text("Écrivez-moi à jeanne.d@exemple.fr ou au 06 12 34 56 78.")
    'Écrivez-moi à [courriel masqué] ou au [téléphone masqué].'
    >>> mask_free_text("CA passé de 2 000 € à 35 000 € en 2019")
    'CA passé de 2 000 € à 35 000 € en 2019'
    """
    if not text:
        return text
    text = EMAIL_RE.sub(EMAIL_MASK, text)
    return PHONE_RE.sub(PHONE_MASK, text)


def count_personal_data(text: str) -> tuple[int, int]:
    """Number of e-mail addresses and of phone numbers found in ``text``."""
    if not text:
        return 0, 0
    return len(EMAIL_RE.findall(text)), len(PHONE_RE.findall(EMAIL_RE.sub(" ", text)))


def contains_personal_data(text: str) -> bool:
    """True when ``text`` holds an e-mail address or a phone number."""
    return bool(text) and (EMAIL_RE.search(text) is not None or PHONE_RE.search(text) is not None)


def mask_series(values: pd.Series) -> tuple[pd.Series, int, int]:
    """Mask every non-missing string of a Series; return it with the e-mail and phone counts."""
    present = values.dropna()
    if present.empty:
        return values, 0, 0
    as_text = present.astype(str)
    n_email = int(as_text.str.count(EMAIL_RE.pattern, flags=re.IGNORECASE).sum())
    no_email = as_text.str.replace(EMAIL_RE, EMAIL_MASK, regex=True)
    n_phone = int(no_email.str.count(PHONE_RE.pattern).sum())
    if n_email == 0 and n_phone == 0:
        return values, 0, 0
    masked = no_email.str.replace(PHONE_RE, PHONE_MASK, regex=True)
    out = values.copy()
    out.loc[masked.index] = masked
    return out, n_email, n_phone


def neutralise_formula(value: object) -> object:
    """Make a cell value inert in a spreadsheet: prefix ``'`` to text a spreadsheet would evaluate.

    Text starting (after any spaces) with ``=``, ``+``, ``-``, ``@``, a tab or a line break is
    prefixed with an apostrophe, which spreadsheets show as text and never run. Plain numbers
    such as ``-3`` or ``+1,5`` are left alone: they are read as numbers, not formulas. Non-text
    values are returned unchanged.

    >>> print(neutralise_formula('=HYPERLINK("http://x.example","clic")'))
    '=HYPERLINK("http://x.example","clic")
    >>> neutralise_formula("-3"), neutralise_formula("Très satisfait"), neutralise_formula(4)
    ('-3', 'Très satisfait', 4)
    """
    if not isinstance(value, str) or not value:
        return value
    stripped = value.lstrip(" \u00a0")
    if not stripped or stripped[0] not in FORMULA_TRIGGERS:
        return value
    if _PLAIN_NUMBER_RE.match(stripped):
        return value
    return "'" + value


def is_formula_like(value: object) -> bool:
    """True when a spreadsheet would read ``value`` as a formula (see :func:`neutralise_formula`)."""
    return isinstance(value, str) and neutralise_formula(value) != value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` with :func:`neutralise_formula` applied to every text cell and header."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
            out[column] = series.map(neutralise_formula, na_action="ignore")
    out.columns = [neutralise_formula(str(c)) for c in out.columns]
    return out
