"""Personal data protection: keyed pseudonyms, masking of free text, safe spreadsheet cells.

Survey exports arrive with personal data the analysis never needs: respondent tokens, e-mail
addresses, IP addresses, user names, and e-mail addresses or phone numbers typed into free-text
answers. The cleaning step uses this module so that nothing personal reaches ``data/processed/``:

- :func:`pseudonymise` replaces a respondent identifier by a keyed hash (HMAC-SHA256, truncated).
  The key lives outside the repository: the environment variable ``CAE_IMPACT_PSEUDO_KEY``, else
  the untracked file ``.secrets/pseudonymisation.key`` at the project root, created on first use.
  Without the key, a pseudonym cannot be traced back to the identifier, even by someone who can
  enumerate every plausible token or e-mail address.
- :func:`mask_free_text` removes control characters from free text and replaces e-mail
  addresses, phone numbers, IP addresses, personal links and names introduced by « je
  m'appelle », « signé », « cordialement, »… by French placeholders (« [courriel masqué] »,
  « [téléphone masqué] », « [adresse IP masquée] », « [lien masqué] », « [nom masqué] »),
  whatever the spelling people use to dodge filters (``nom arobase orange point fr``,
  ``06 12 345 678``, ``0033 (0)6…``).
- :func:`neutralise_formula` makes a cell that a spreadsheet would run as a formula (``=``, ``+``,
  ``-``, ``@`` …) inert, for every CSV or XLSX file the project writes (CSV/formula injection).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from pathlib import Path

import pandas as pd

from cae_impact.spec.config import PROJECT_ROOT

PSEUDO_KEY_ENV = "CAE_IMPACT_PSEUDO_KEY"
"""Environment variable holding the pseudonymisation key (any string of 16 characters or more)."""

PSEUDO_KEY_RELPATH = Path(".secrets") / "pseudonymisation.key"
"""Key file, relative to the project root; never committed (``.secrets/`` is git-ignored)."""

PSEUDONYM_LENGTH = 20
"""Hex digits kept from the HMAC-SHA256 digest: 80 bits, collision-free at any survey size."""

MIN_KEY_LENGTH = 16

EMAIL_MASK = "[courriel masqué]"
PHONE_MASK = "[téléphone masqué]"
IP_MASK = "[adresse IP masquée]"
URL_MASK = "[lien masqué]"
NAME_MASK = "[nom masqué]"

_TLDS = (
    "fr|com|net|org|eu|be|ch|lu|ca|de|es|it|pt|uk|io|info|biz|me|re|gp|mq|gf|yt|nc|pf|pm|wf|tf|"
    "ma|dz|tn|sn|ci|cm|mg|mu|bj|bf|ml|ne|tg|ga|cd|cg|ht|us|nl|pro|gouv\\.fr|asso\\.fr|coop|"
    "online|site|email|mail|tech|xyz|app|dev|co|cloud"
)
"""Top-level domains accepted after an obfuscated dot (« point », « dot », « . » with spaces):
a closed list, so that ordinary words after « at » or « point » are never taken for a domain."""

_AT = r"(?:\s*[@＠﹫]\s*|\s*[\[(<{]\s*(?:at|arobase|@|＠)\s*[\])>}]\s*|\s+(?:at|arobase|arrobase|arobas)\s+)"
_DOT_PLAIN = r"\."
_DOT_OBF = r"(?:\s*\.\s*|\s*[\[(<{]\s*(?:dot|point|\.)\s*[\])>}]\s*|\s+(?:dot|point)\s+)"
_LOCAL = r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
_LABEL = r"[\w](?:[\w-]{0,61}[\w])?"

EMAIL_RE = re.compile(
    r"(?<![\w.+-])" + _LOCAL + _AT
    + r"(?:"
    # plain domain: labels joined by '.', any TLD of letters
    + _LABEL + r"(?:" + _DOT_PLAIN + _LABEL + r")*" + _DOT_PLAIN + r"[A-Za-z]{2,24}(?![\w-])"
    + r"|"
    # obfuscated domain: labels joined by « point », « dot », « [.] » or a spaced dot, known TLDs
    + _LABEL + r"(?:" + _DOT_OBF + _LABEL + r")*?" + _DOT_OBF + r"(?:" + _TLDS + r")(?![\w-])"
    + r")",
    re.IGNORECASE,
)
"""E-mail addresses as people type them: ``nom@orange.fr``, ``nom @ orange.fr``, ``nom [at]
orange [dot] fr``, ``nom arobase orange point fr``, ``nom(at)orange.fr``."""

_SEP = r"[ \t\u00a0\u202f\u2009.\-/_·•()]{0,3}"
_NDIGIT = r"(?:" + _SEP + r"\d)"
PHONE_RE = re.compile(
    r"(?<!\d)(?<!\d[.,])"
    r"(?:"
    # international: +CC, 00CC or (+CC), an optional (0), then 7 to 13 digits, any grouping
    r"(?:\(\s*)?(?:\+|\b00)\s*\d{1,3}(?:\s*\))?[ \t\u00a0\u202f.\-/]{0,3}(?:\(\s*0\s*\)[ \t\u00a0\u202f.\-/]{0,3})?"
    r"\d" + _NDIGIT + r"{6,12}"
    r"|"
    # French national: 0 then a digit 1-9, then 8 more digits, any grouping and separators
    r"\(?0\)?[ \-]?[1-9]" + _NDIGIT + r"{8}"
    r"|"
    # French number in international form without its + (« 33 6 12 34 56 78 »)
    r"\b33[ .\-]?[1-9]" + _NDIGIT + r"{8}"
    r")"
    r"(?!\d)(?![.,]\d)"
)
"""Phone numbers with any grouping and separators (``06 12 345 678``, ``06.12.34.56.78``,
``+33 6 12 34 56 78``, ``0033 (0)6…``, ``+44 20 7946 0958``). Amounts, years and dates do not
match: a national number starts with 0 and has ten digits, an international one starts with
``+`` or ``00``."""

_IPV4_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4_RE = re.compile(r"(?<![\d.])" + _IPV4_OCTET + r"(?:\s?\.\s?" + _IPV4_OCTET + r"){3}(?![\d])(?!\.\d)")
IPV6_CANDIDATE_RE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::{1,2}[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")

URL_RE = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'«»]+"
    r"|(?<![\w.-])(?:[\w-]+\.)+(?:" + _TLDS + r")/[^\s<>\"'«»]+",
    re.IGNORECASE,
)
"""Links; only those with a path (``facebook.com/jean.dupont``) or a query are masked."""

_CAP = r"[A-ZÀ-ÖØ-Þ][\w'’-]*"
_WORD = r"[^\W\d_][\w'’-]*"
_STOP = {
    "et", "je", "j", "suis", "ai", "mais", "depuis", "à", "a", "au", "aux", "en", "dans", "pour", "avec",
    "la", "le", "les", "l", "un", "une", "des", "du", "de", "d", "qui", "que", "qu", "ne", "n", "pas", "très", "tres", "bien", "mon", "ma", "mes", "ton", "ta", "son", "sa", "ses", "notre", "votre", "nos",
    "vos", "leur", "leurs", "ce", "cet", "cette", "ces", "il", "elle", "on", "nous", "vous", "ils", "elles",
    "tout", "toute", "tous", "toutes", "toi", "moi", "lui", "eux", "par", "sur", "sous", "chez", "ou",
    "où", "donc", "car", "ni", "or", "si", "y", "c", "s", "est", "sont", "était", "merci", "bonne",
    "bon", "beaucoup", "encore", "aussi", "plus", "moins", "comme", "vraiment", "of", "the",
    "and", "infiniment", "d'avance", "avance",
}
_NAME_CUES = re.compile(
    r"(?P<cue>\b(?:je\s+m['’]\s?appel+e|je\s+me\s+nomme|mon\s+nom\s+(?:est|c['’]est)|moi\s*,?\s+c['’]est"
    r"|mon\s+prénom\s+(?:est|c['’]est))\s*:?\s+)"
    r"(?P<name>" + _WORD + r"(?:[ \t-]+" + _WORD + r"){0,2})",
    re.IGNORECASE,
)
_CLOSING_CUES = re.compile(
    r"(?P<cue>\b(?:cordialement|bien\s+cordialement|bien\s+à\s+(?:vous|toi)|salutations(?:\s+distinguées)?"
    r"|amicalement|amitiés|bisous|bises|merci(?:\s+(?:beaucoup|encore|infiniment))?|signé|signée|signature)"
    r"\s*[,.:;!\-–—]*\s*)"
    r"(?P<name>" + _WORD + r"(?:[ \t.-]+" + _WORD + r"){0,2})"
    r"(?P<end>\s*[.!]*\s*(?:$|\n))",
    re.IGNORECASE,
)
_SIGNED_CUES = re.compile(
    r"(?P<cue>\bsign[ée]e?\s*(?:par\s+)?[:,\-–—]\s*)(?P<name>" + _WORD + r"(?:[ \t-]+" + _WORD + r"){0,2})",
    re.IGNORECASE,
)
_TITLE_CUES = re.compile(
    r"(?P<cue>\b(?:M\.|Mr\.?|Mme\.?|Mlle\.?|Madame|Monsieur|Mademoiselle|Me|Dr\.?|Docteur)\s+)"
    r"(?P<name>" + _CAP + r"(?:[ \t-]+(?:(?:de|du|d['’]|le|la)\s+)?" + _CAP + r"){0,2})"
)

CONTROL_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb]"
)
"""Control and invisible characters removed from free text (NUL, escapes, zero-width and bidi
marks: they can hide a phone number from a reader or break a document)."""


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


def strip_controls(text: str) -> str:
    r"""``text`` without control or invisible characters; line breaks kept, tabs as spaces.

    >>> strip_controls("a\x00b\u200bc\td\r\ne")
    'abc d\ne'
    """
    if not text:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return CONTROL_RE.sub("", text)


def _is_date_like(candidate: str) -> bool:
    """A « phone » that is a date followed by a time or a number (``05/06/2023 10h``)."""
    return re.match(r"\(?0?\d[/.\-]\d{1,2}[/.\-](?:19|20)\d{2}", candidate.strip("( ")) is not None


def _ipv6(candidate: str) -> bool:
    if candidate.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate.split("%")[0])
    except ValueError:
        return False
    return True


def _url_is_personal(url: str) -> bool:
    """A link with a path or a query (a profile, a shared document), not a bare site address."""
    rest = re.sub(r"^(?:[a-z]+://)?", "", url, flags=re.IGNORECASE)
    rest = rest.rstrip(".,;:!?)]}»")
    if "/" not in rest and "?" not in rest:
        return False
    path = rest.split("/", 1)[1] if "/" in rest else rest.split("?", 1)[1]
    return bool(path.strip("/#"))


def _name_words(name: str, limit: int = 3) -> str:
    """The leading words of ``name`` that can be a first or last name (no grammatical words)."""
    kept: list[str] = []
    for word in re.split(r"([ \t.-]+)", name):
        if not word or re.fullmatch(r"[ \t.-]+", word):
            if kept:
                kept.append(word)
            continue
        if word.lower().strip("'’") in _STOP or len(kept) >= 2 * limit - 1:
            break
        kept.append(word)
    while kept and re.fullmatch(r"[ \t.-]+", kept[-1]):
        kept.pop()
    return "".join(kept)


def mask_free_text_counts(text: str) -> tuple[str, dict[str, int]]:
    """Mask personal data in ``text``; return the masked text and what was masked, by kind.

    Kinds: ``emails``, ``phones``, ``ips``, ``urls``, ``names``; control characters are removed
    first (``controls`` counts the texts that had some).
    """
    counts = {"emails": 0, "phones": 0, "ips": 0, "urls": 0, "names": 0, "controls": 0}
    if not text:
        return text, counts
    cleaned = strip_controls(text)
    if cleaned != text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "):
        counts["controls"] = 1
    text = cleaned

    def sub(pattern: re.Pattern, kind: str, mask: str, keep=None):
        nonlocal text

        def repl(m: re.Match) -> str:
            if keep is not None and keep(m.group(0)):
                return m.group(0)
            counts[kind] += 1
            return mask

        text = pattern.sub(repl, text)

    sub(URL_RE, "urls", URL_MASK, keep=lambda u: not _url_is_personal(u))
    sub(EMAIL_RE, "emails", EMAIL_MASK)
    sub(IPV6_CANDIDATE_RE, "ips", IP_MASK, keep=lambda c: not _ipv6(c))
    sub(IPV4_RE, "ips", IP_MASK)
    sub(PHONE_RE, "phones", PHONE_MASK, keep=_is_date_like)

    def name_repl(require_end: bool):
        def repl(m: re.Match) -> str:
            words = _name_words(m.group("name"))
            if not words or (require_end and words != m.group("name")):
                return m.group(0)
            counts["names"] += 1
            return m.group(0).replace(m.group("cue") + words, m.group("cue") + NAME_MASK, 1)
        return repl

    text = _NAME_CUES.sub(name_repl(False), text)
    text = _SIGNED_CUES.sub(name_repl(False), text)
    text = _CLOSING_CUES.sub(name_repl(True), text)
    text = _TITLE_CUES.sub(name_repl(False), text)
    return text, counts


def mask_free_text(text: str) -> str:
    """Replace personal data in ``text`` by French placeholders (see :func:`mask_free_text_counts`).

    >>> mask_free_text("Écrivez-moi à jeanne.d@exemple.fr ou au 06 12 34 56 78.")
    'Écrivez-moi à [courriel masqué] ou au [téléphone masqué].'
    >>> mask_free_text("nom arobase orange point fr, 06 12 345 678")
    '[courriel masqué], [téléphone masqué]'
    >>> mask_free_text("CA passé de 2 000 € à 35 000 € en 2019")
    'CA passé de 2 000 € à 35 000 € en 2019'
    """
    return mask_free_text_counts(text)[0]


def find_personal_data_spans(text: str) -> list[tuple[str, str, int, int]]:
    """Every e-mail, phone number and IP address in ``text``: ``(kind, value, start, end)``.

    Positions are those of ``text`` with its control characters removed (:func:`strip_controls`).
    """
    if not text:
        return []
    text = strip_controls(text)
    found: list[tuple[str, str, int, int]] = []

    def blank(t: str, pattern: re.Pattern, may_hold) -> str:
        # no match of the hint (a part every match holds): no match, the text is unchanged
        if may_hold is None or not may_hold(t):
            return t
        return pattern.sub(lambda m: " " * len(m.group(0)), t)

    # none in the text, none in the text with its links blanked (spaces for characters)
    email_hint = _may_hold_email if _may_hold_email(text) else None
    url_hint = _may_hold_url if _may_hold_url(text) else None
    if email_hint is not None:
        for m in EMAIL_RE.finditer(text):
            found.append(("email", m.group(0), m.start(), m.end()))
    rest = blank(blank(text, URL_RE, url_hint), EMAIL_RE, email_hint)
    if rest.count(":") >= 2:
        for m in IPV6_CANDIDATE_RE.finditer(rest):
            if _ipv6(m.group(0)):
                found.append(("ip", m.group(0), m.start(), m.end()))
    ipv4 = list(IPV4_RE.finditer(rest))
    if ipv4:  # blanked where they were found (what IPV4_RE.sub would find again)
        parts, last = [], 0
        for m in ipv4:
            found.append(("ip", m.group(0), m.start(), m.end()))
            parts += [rest[last:m.start()], " " * (m.end() - m.start())]
            last = m.end()
        rest = "".join(parts) + rest[last:]
    for m in PHONE_RE.finditer(rest):
        if not _is_date_like(m.group(0)):
            found.append(("phone", m.group(0), m.start(), m.end()))
    return found


# Parts that every match of EMAIL_RE, URL_RE holds (their « @ » or « at », their « :// », « www. »
# or « .tld/ »), with the same flags: a text without one has no match, and its scan (every
# published file, issue 19) skips that pattern. Exact, not a heuristic.
_EMAIL_HINT = re.compile(r"[@＠﹫]|\bat\b|arr?obas", re.IGNORECASE)
_URL_HINT = re.compile(r"://|\bwww\.|\.(?:" + _TLDS + r")/", re.IGNORECASE)
# The same, searched the fast way (a literal first: a text of numbers has many dots and words,
# and one search of the alternation at every position cost as much as the e-mail pattern).
# Under IGNORECASE « a », « t », « w », « r », « o », « b » match their two cases only.
_AT_WORD_END = re.compile(r"(?:at|At|aT|AT)\b")
_WORD_CHAR = re.compile(r"\w")
_AROBAS = re.compile(r"arr?obas", re.IGNORECASE)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)
_TLD_SLASH = re.compile(r"\.(?:" + _TLDS + r")/", re.IGNORECASE)


def _may_hold_email(text: str) -> bool:
    """True when ``text`` holds a match of :data:`_EMAIL_HINT` (else it has no e-mail address)."""
    if "@" in text or "＠" in text or "﹫" in text:
        return True
    for m in _AT_WORD_END.finditer(text):  # « at » ending a word: does it start one too?
        if m.start() == 0 or not _WORD_CHAR.match(text[m.start() - 1]):
            return True
    return "rob" in text.lower() and _AROBAS.search(text) is not None


def _may_hold_url(text: str) -> bool:
    """True when ``text`` holds a match of :data:`_URL_HINT` (else it has no link)."""
    return ("://" in text or ("www." in text.lower() and _WWW.search(text) is not None)
            or ("/" in text and _TLD_SLASH.search(text) is not None))


def find_personal_data(text: str) -> list[tuple[str, str]]:
    """Every e-mail, phone number and IP address found in ``text``: ``(kind, value)`` pairs."""
    return [(kind, value) for kind, value, _, _ in find_personal_data_spans(text)]


def count_personal_data(text: str) -> tuple[int, int]:
    """Number of e-mail addresses and of phone numbers found in ``text``."""
    found = find_personal_data(text)
    return sum(k == "email" for k, _ in found), sum(k == "phone" for k, _ in found)


def contains_personal_data(text: str) -> bool:
    """True when ``text`` holds an e-mail address, a phone number or an IP address."""
    return bool(text) and bool(find_personal_data(str(text)))


def mask_series_detail(values: pd.Series) -> tuple[pd.Series, dict[str, int], int]:
    """Mask every non-missing string of a Series: the masked Series, counts by kind, texts changed."""
    total = {"emails": 0, "phones": 0, "ips": 0, "urls": 0, "names": 0, "controls": 0}
    present = values.dropna()
    if present.empty:
        return values, total, 0
    as_text = present.astype(str)
    masked = {}
    changed = 0
    for idx, value in as_text.items():
        new, counts = mask_free_text_counts(value)
        for k, v in counts.items():
            total[k] += v
        if new != value:
            changed += 1
            masked[idx] = new
    if not masked:
        return values, total, 0
    out = values.copy()
    out.loc[list(masked)] = list(masked.values())
    return out, total, changed


def mask_series(values: pd.Series) -> tuple[pd.Series, int, int]:
    """Mask every non-missing string of a Series; return it with the e-mail and phone counts."""
    out, counts, _ = mask_series_detail(values)
    return out, counts["emails"], counts["phones"]


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
