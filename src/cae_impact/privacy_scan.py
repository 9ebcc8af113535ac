"""Scan built files for personal data of the raw exports: nothing personal leaves cleaning.

:func:`collect_raw_identifiers` reads each CAE's raw export (as received) and gathers what
could single someone out: e-mail addresses, phone numbers and IP addresses anywhere in the
file, and the values of its identifier columns (LimeSurvey token, Kobo respondent id, Google
Forms e-mail, spreadsheet questionnaire number…). :func:`scan_tree` then looks for each of
them in every file under the given folders — parquet, CSV, JSON, notebooks, HTML, XLSX and
DOCX (their XML), PDF (through ``pdftotext``) — and returns where they appear.

Run by ``cae-impact scan-personal-data`` (and the tests) on ``data/processed/`` and
``reports/``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import StudyConfig

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE_RE = re.compile(r"(?<!\d)(?:\+33\s?|0)[1-9](?:[\s.-]?\d{2}){4}(?!\d)")
IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
MIN_ID_LENGTH = 6  # shorter identifier values (row numbers) would match everywhere


@dataclass(frozen=True)
class Finding:
    """A personal value of a raw export found in a built file."""

    path: Path
    kind: str
    value_hint: str  # the value, partly masked (the finding itself must not leak it)


def _hint(value: str) -> str:
    return value[:2] + "…" + value[-2:] if len(value) > 6 else "…"


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def collect_raw_identifiers(study: StudyConfig) -> dict[str, set[str]]:
    """Personal values of every raw export of the study, by kind (email, phone, ip, identifier)."""
    from .ingest import read_cae_export

    found: dict[str, set[str]] = {"email": set(), "phone": set(), "ip": set(), "identifier": set()}
    for cae in study.caes:
        path = cae.export
        if path.suffix.lower() == ".xlsx":
            text = _xlsx_text(path)
        else:
            raw = path.read_bytes()
            text = raw.decode("utf-8", errors="ignore") + raw.decode("cp1252", errors="ignore")
        found["email"].update(m.lower() for m in EMAIL_RE.findall(text))
        found["phone"].update(_digits(m) for m in PHONE_RE.findall(text))
        found["ip"].update(m for m in IPV4_RE.findall(text) if not m.startswith(("0.", "1.", "2.")))
        export = read_cae_export(study, cae.id)
        for col in ("_rid", "_token", "_email", "_response_id"):
            if col in export.frame:
                for value in export.frame[col].dropna().astype(str):
                    value = value.strip()
                    if len(value) >= MIN_ID_LENGTH:
                        found["identifier"].add(value)
    return found


def _xlsx_text(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        return "\n".join(z.read(n).decode("utf-8", errors="ignore") for n in z.namelist() if n.endswith(".xml"))


def file_text(path: Path) -> str:
    """The text a reader or a program could get out of a built file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        return frame.astype(str).to_csv(index=False)
    if suffix in (".xlsx", ".docx"):
        return _xlsx_text(path)
    if suffix == ".pdf":
        if shutil.which("pdftotext") is None:
            raise RuntimeError("pdftotext (poppler-utils) is needed to scan PDF files")
        return subprocess.run(["pdftotext", "-q", str(path), "-"], capture_output=True, text=True, check=False).stdout
    if suffix in (".png", ".jpg", ".gif"):
        return ""
    return path.read_bytes().decode("utf-8", errors="ignore")


def scan_tree(folders: list[Path], needles: dict[str, set[str]]) -> list[Finding]:
    """Every place a personal value of ``needles`` appears in the files under ``folders``."""
    findings: list[Finding] = []
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            text = file_text(path)
            lower = text.lower()
            digits = re.sub(r"\D", "", text)
            for kind, values in needles.items():
                for value in values:
                    if kind == "phone":
                        hit = len(value) >= 9 and value in digits and any(
                            _digits(m) == value for m in PHONE_RE.findall(text))
                    elif kind == "email":
                        hit = value in lower
                    else:
                        hit = value in text
                    if hit:
                        findings.append(Finding(path, kind, _hint(value)))
    return findings
