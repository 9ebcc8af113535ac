"""Scan built files for personal data: nothing personal leaves cleaning, nothing is published.

Two searches, both run by :func:`scan_tree`:

* **raw values** — :func:`collect_raw_identifiers` reads each CAE's raw export (as received)
  and gathers what could single someone out: e-mail addresses, phone numbers and IP addresses
  anywhere in the file (as people type them: spaced, « arobase », any digit grouping), and the
  values of its identifier columns (LimeSurvey token, Kobo respondent id, Google Forms e-mail,
  spreadsheet questionnaire number…); each is looked for in every built file;
* **any personal data** — every e-mail address, phone number and IP address found in the text a
  reader gets out of a built file (:func:`file_text`: HTML without its markup, PDF through
  ``pdftotext``, DOCX and XLSX XML, notebooks' sources and text outputs, parquet, CSV, JSON),
  whether or not it came from a raw export.

Run by the build on everything it publishes (``cae-impact index`` refuses to write
``reports/index.html`` when anything is found: the build fails) and by ``cae-impact
scan-personal-data`` on ``data/processed/`` and ``reports/``.
"""

from __future__ import annotations

import html
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cae_impact.core.files import key_of, sha256_bytes, sha256_file
from cae_impact.ingest import read_cae_export
from cae_impact.privacy import personal_data
from cae_impact.privacy.personal_data import (
    PHONE_RE,
    find_personal_data,
    find_personal_data_spans,
    strip_controls,
)
from cae_impact.spec.config import StudyConfig

IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
MIN_ID_LENGTH = 6  # shorter identifier values (row numbers) would match everywhere
SKIPPED_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".woff", ".woff2", ".ttf", ".lock")
_TOKEN_RE = re.compile(r"[\w@.+-]+")
_TOKEN_FULL_RE = re.compile(r"[\w@.+-]+")
_NON_DIGITS = re.compile(r"\D+")
MASKS = ("[courriel masqué]", "[téléphone masqué]", "[adresse IP masquée]")


@dataclass(frozen=True)
class Finding:
    """A personal value found in a built file."""

    path: Path
    kind: str
    value_hint: str  # the value, partly masked (the finding itself must not leak it)


def _hint(value: str) -> str:
    return value[:2] + "…" + value[-2:] if len(value) > 6 else "…"


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def normalise_email(value: str) -> str:
    """An e-mail address as typed (« nom arobase orange point fr ») in its plain form."""
    v = value.lower()
    v = re.sub(r"\s*[\[(<{]\s*(?:at|arobase|@)\s*[\])>}]\s*|\s+(?:at|arobase|arrobase|arobas)\s+", "@", v)
    v = re.sub(r"\s*[\[(<{]\s*(?:dot|point|\.)\s*[\])>}]\s*|\s+(?:dot|point)\s+", ".", v)
    return re.sub(r"\s+", "", v)


def _raw_text(path: Path) -> str:
    if path.suffix.lower() == ".xlsx":
        return _zip_xml_text(path)
    raw = path.read_bytes()
    return raw.decode("utf-8", errors="ignore") + "\n" + raw.decode("cp1252", errors="ignore")


def _raw_identifiers_of(study: StudyConfig, cae_id: str) -> dict[str, set[str]]:
    """Personal values of one CAE's raw export, by kind (see :func:`collect_raw_identifiers`)."""
    cae = study.cae(cae_id)
    found: dict[str, set[str]] = {"email": set(), "phone": set(), "ip": set(), "identifier": set()}
    text = _raw_text(cae.export)
    for kind, value in find_personal_data(text):
        if kind == "email":
            found["email"].add(normalise_email(value))
        elif kind == "phone":
            found["phone"].add(_digits(value))
        elif not value.startswith(("0.", "1.", "2.")):
            found["ip"].add(value)
    export = read_cae_export(study, cae.id)
    for col in ("_rid", "_token", "_email", "_response_id"):
        if col in export.frame:
            for value in export.frame[col].dropna().astype(str):
                value = value.strip()
                if len(value) >= MIN_ID_LENGTH:
                    found["identifier"].add(value)
    return found


#: from this many CAEs the raw exports are read by one process per core (a fork pool)
PARALLEL_EXPORTS_FROM = 16
#: what the forked workers inherit (the needles, the study): set by :func:`_forked_map` only
_WORK: dict[str, object] = {}


def _forked_map(fn, items: list, workers: int, **inherited: object) -> list:
    """``[fn(x) for x in items]`` on ``workers`` forked processes, in order.

    The ``inherited`` values are in :data:`_WORK` for the workers (copied by the fork, never
    pickled).
    """
    _WORK.update(inherited)
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(items))) as pool:
            return list(pool.imap(fn, items, chunksize=4))
    finally:
        _WORK.clear()


def _raw_identifiers_in_worker(cae_id: str) -> dict[str, set[str]]:
    return _raw_identifiers_of(_WORK["study"], cae_id)  # type: ignore[arg-type]


def collect_raw_identifiers(study: StudyConfig, workers: int | None = None) -> dict[str, set[str]]:
    """Personal values of every raw export of the study, by kind (email, phone, ip, identifier).

    The exports are read by ``workers`` processes (default: one per core from
    :data:`PARALLEL_EXPORTS_FROM` CAEs on, else this one); the values are the same either way.
    """
    ids = list(study.cae_ids)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if len(ids) >= PARALLEL_EXPORTS_FROM else 1
    if workers > 1 and len(ids) > 1:
        parts = _forked_map(_raw_identifiers_in_worker, ids, workers, study=study)
    else:
        parts = [_raw_identifiers_of(study, cae_id) for cae_id in ids]
    found: dict[str, set[str]] = {"email": set(), "phone": set(), "ip": set(), "identifier": set()}
    for part in parts:
        for kind, values in part.items():
            found[kind] |= values
    return found


#: a worksheet cell of a number (no ``t`` attribute, or ``t="n"``) and its value
_NUMBER_CELL = re.compile(r'<c\b(?![^>]*\bt="(?:s|str|inlineStr|b|e)")[^>]*>\s*<v>[^<]*</v>\s*</c>')


def _zip_xml_text(path: Path) -> str:
    """The text of the XML parts of an XLSX or DOCX, markup replaced by spaces."""
    parts = []
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            if n.endswith(".xml") or n.endswith(".rels"):
                xml = z.read(n).decode("utf-8", errors="ignore")
                if n.startswith("xl/worksheets/"):  # a number cell holds a number, not text
                    xml = _NUMBER_CELL.sub(" ", xml)
                parts.append(xml)
    return "\n".join(html.unescape(re.sub(r"<[^>]*>", " ", p)) for p in parts)


def html_text(markup: str) -> str:
    """What a reader of an HTML page sees: no scripts, styles or markup (attributes included)."""
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?s)<!--.*?-->", " ", markup)
    return html.unescape(re.sub(r"<[^>]*>", " ", markup))


def _notebook_text(path: Path) -> str:
    try:
        nb = json.loads(path.read_text(encoding="utf-8", errors="ignore"))
    except ValueError:
        return path.read_bytes().decode("utf-8", errors="ignore")
    parts: list[str] = []

    def text_of(value) -> str:
        return "".join(value) if isinstance(value, list) else str(value)

    for cell in nb.get("cells", []):
        parts.append(text_of(cell.get("source", "")))
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(text_of(out["text"]))
            parts.extend(text_of(t) for t in out.get("traceback", []))
            for mime, data in (out.get("data") or {}).items():
                if mime == "text/html":
                    parts.append(html_text(text_of(data)))
                elif mime.startswith("text/") or mime.endswith("json"):
                    parts.append(text_of(data) if mime.startswith("text/") else json.dumps(data))
    return "\n".join(parts)


def file_text(path: Path) -> str:
    """The text a reader or a program could get out of a built file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        return frame.astype(str).to_csv(index=False)
    if suffix in (".xlsx", ".docx"):
        return _zip_xml_text(path)
    if suffix == ".pdf":
        if shutil.which("pdftotext") is None:
            raise RuntimeError("pdftotext (poppler-utils) is needed to scan PDF files")
        return subprocess.run(["pdftotext", "-q", str(path), "-"], capture_output=True, text=True, check=False).stdout
    if suffix in SKIPPED_SUFFIXES:
        return ""
    if suffix in (".html", ".htm"):
        return html_text(path.read_bytes().decode("utf-8", errors="ignore"))
    if suffix == ".ipynb":
        return _notebook_text(path)
    return path.read_bytes().decode("utf-8", errors="ignore")


def _embedded(text: str, start: int, end: int) -> bool:
    """A match glued to letters or digits (a digest, a base64 run): not typed personal data.

    « + », « / » and « = » count as glued too: they are base64 characters, and a run of an
    embedded image can hold « …//15++… » followed by digits.
    """
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before.isalnum() or after.isalnum() or before in "+/=" or after in "+/="


#: a decimal number (« 33.702020202 », « 12,5 »): digits, one separator, digits; never a phone
_DECIMAL = re.compile(r"^[+-]?\d{1,3}[.,]\d{3,}$|^[+-]?\d+[.,]\d{1,2}$")


def _spans(text: str) -> list[tuple[str, str, int, int]]:
    """Personal data in a built file's text; a phone glued to letters or digits is not counted."""
    return [(kind, value, start, end) for kind, value, start, end in find_personal_data_spans(text)
            if not (kind == "phone" and (_embedded(text, start, end) or _DECIMAL.match(value.strip())))]


def find_in_text(text: str) -> list[tuple[str, str]]:
    """Every e-mail, phone and IP address in a built file's text (glued to a word: not counted)."""
    return [(kind, value) for kind, value, _, _ in _spans(strip_controls(text))]


class Needles:
    """The raw values of :func:`collect_raw_identifiers`, arranged once for fast lookups.

    The scan of a national study used to test every raw value against every file, e-mails by a
    substring search each (``value in text``): raw values and files both grow with the number of
    CAEs, so the index step grew with its square (over 4 minutes at 160 CAEs). Here each file's
    text is read once: identifiers, IP addresses and phones are set intersections with the file's
    tokens and numbers, and an e-mail is looked for only where the text has an « @ », by its
    local part before it (a dict lookup per local-part length) then its domain after it. The
    values found are exactly those of ``value in text`` (an occurrence of a value's first « @ »
    is an « @ » of the text). A library (Aho–Corasick) is not needed for that.
    """

    def __init__(self, needles: dict[str, set[str]]) -> None:
        self.by_kind = {k: frozenset(v) for k, v in needles.items()}
        self.phones = frozenset(v for v in needles.get("phone", ()) if len(v) >= 9)
        self.emails = frozenset(needles.get("email", ()))
        self.by_local: dict[str, list[tuple[str, str]]] = {}
        self.odd_emails: list[str] = []  # no « @ » (a fullwidth one): the plain substring search
        for value in self.emails:
            local, at, rest = value.partition("@")
            if at:
                self.by_local.setdefault(local, []).append((rest, value))
            else:
                self.odd_emails.append(value)
        self.local_lengths = sorted({len(k) for k in self.by_local})
        # identifiers and IP addresses are whole tokens; an odd one (a space, a colon) is looked
        # for as a substring
        self.odd = {k: [v for v in values if not _TOKEN_FULL_RE.fullmatch(v)]
                    for k, values in needles.items() if k not in ("phone", "email")}

    def found_in(self, text: str, spans: list[tuple[str, str, int, int]]) -> list[tuple[str, str]]:
        """The raw values in a file's text (``spans``: :func:`_spans` of it), as ``(kind, value)``."""
        lower = text.lower()
        plain_emails = {normalise_email(v) for k, v, _, _ in spans if k == "email"}
        phone_digits: set[str] = set()
        # a phone's digits are a run of the text's digits: none of the raw numbers there, no
        # number of the text to read
        if self.phones:
            digits = _NON_DIGITS.sub("", text)
            if any(v in digits for v in self.phones):
                phone_digits = {_digits(m.group(0)) for m in PHONE_RE.finditer(text)}
        # identifiers and IP addresses are whole tokens: one pass over the text, not one per value
        tokens: set[str] = set()
        if any(self.by_kind.get(k) for k in self.odd):
            tokens = set(_TOKEN_RE.findall(text))
            tokens.update([token.strip(".+-@") for token in tokens])
        hits: list[tuple[str, str]] = []
        for kind, values in self.by_kind.items():
            if kind == "phone":
                found = self.phones & phone_digits
            elif kind == "email":
                found = (self.emails & plain_emails) | self.emails_in(lower)
            else:
                found = (values & tokens) | {v for v in self.odd.get(kind, ()) if v in text}
            hits.extend((kind, v) for v in sorted(found))
        return hits

    def emails_in(self, lower: str) -> set[str]:
        """The e-mail values that occur in ``lower`` (as ``value in lower`` says)."""
        hits = {v for v in self.odd_emails if v in lower}
        if not self.by_local:
            return hits
        by_local, lengths = self.by_local, self.local_lengths
        p = lower.find("@")
        while p >= 0:
            for n in lengths:
                if n > p:
                    break
                for rest, value in by_local.get(lower[p - n:p], ()):
                    if lower.startswith(rest, p + 1):
                        hits.add(value)
            p = lower.find("@", p + 1)
        return hits


def scan_text(path: Path, text: str, needles: dict[str, set[str]] | Needles | None) -> list[Finding]:
    """The personal data in one built file's text: any address or number, and the raw values."""
    text = strip_controls(text)
    spans = _spans(text)
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for kind, value, _, _ in spans:
        if (kind, value) not in seen:
            seen.add((kind, value))
            findings.append(Finding(path, kind, _hint(value)))
    if not needles:
        return findings
    if not isinstance(needles, Needles):
        needles = Needles(needles)
    hits = needles.found_in(text, spans)
    for kind, value in hits:
        if (kind, value) not in seen:
            seen.add((kind, value))
            findings.append(Finding(path, kind, _hint(value)))
    return findings


def published_files(folders: list[Path]) -> list[Path]:
    """Every file under ``folders`` (hidden build files and the failure folder included)."""
    out: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            out.append(folder)
        elif folder.exists():
            out.extend(sorted(p for p in folder.rglob("*") if p.is_file() and ".tmp" not in p.name))
    return out


#: files left to scan from which the scan uses every core (a national build: thousands of files
#: at the end of the build, when nothing else runs)
PARALLEL_FROM = 64


def _scan_file(path: Path, needles: Needles | None) -> list[Finding]:
    try:
        text = file_text(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return [Finding(path, f"unreadable ({type(exc).__name__})", "…")]
    return scan_text(path, text, needles)


def _scan_in_worker(path: Path) -> list[Finding]:
    """:func:`_scan_file` in a worker process: the needles were inherited when it was forked."""
    return _scan_file(path, _WORK["needles"])  # type: ignore[arg-type]


def scan_tree(folders: list[Path], needles: dict[str, set[str]] | None = None,
              cache_dir: Path | None = None, workers: int | None = None) -> list[Finding]:
    """Every place personal data appears in the files under ``folders``.

    Any e-mail address, phone number or IP address in a file's text is a finding; with
    ``needles`` (:func:`collect_raw_identifiers`), so is every raw value found there. With
    ``cache_dir``, the result for a file is remembered by the sha256 of its bytes, of the
    needles and of the scanning code: an unchanged file is not read again. The files are
    scanned by ``workers`` processes (default: one per core when :data:`PARALLEL_FROM` files or
    more are to be read, else this process); the findings come in the files' order either way.
    """
    salt = ""
    if cache_dir is not None:
        code = "".join(sha256_file(Path(f)) for f in (personal_data.__file__, __file__))
        salt = key_of({"code": code, "needles": {k: sorted(v) for k, v in (needles or {}).items()}})
    compiled = Needles(needles) if needles else None
    files = published_files(folders)
    results: dict[int, list[Finding]] = {}
    memos: dict[int, Path] = {}
    todo: list[int] = []
    for i, path in enumerate(files):
        if cache_dir is not None:
            try:
                digest = sha256_bytes(path.read_bytes() + salt.encode())
            except OSError:
                digest = None
            if digest:
                memo = Path(cache_dir) / f"{digest}.json"
                if memo.is_file():
                    try:
                        results[i] = [Finding(path, k, h) for k, h in json.loads(memo.read_text())]
                        continue
                    except (OSError, ValueError):
                        pass
                memos[i] = memo
        todo.append(i)
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if len(todo) >= PARALLEL_FROM else 1
    if workers > 1 and len(todo) > 1:
        found = _forked_map(_scan_in_worker, [files[i] for i in todo], workers, needles=compiled)
        results.update(zip(todo, found, strict=True))
    else:
        for i in todo:
            results[i] = _scan_file(files[i], compiled)
    for i, memo in memos.items():
        if not results[i]:  # only a clean result is remembered
            try:
                memo.parent.mkdir(parents=True, exist_ok=True)
                memo.write_text("[]")
            except OSError:
                pass
    return [f for i in range(len(files)) for f in results[i]]
