"""Reading an export file into a header and text rows, each with its line in the raw file.

This is the format-independent bottom layer of ingestion. It recognises what the file is (CSV
text or an XLSX workbook, whatever its extension), detects the text encoding (UTF-8, UTF-8 with
BOM, UTF-16 with BOM, Windows-1252) and the field separator (``;``, ``,``, tab, ``|``), and
returns every data record with the physical line where it starts — the number a CAE staff member
sees in a text editor or as the row number in Excel — so that every later message and every
quarantined row can point at the raw file.

Nothing is evaluated: a cell reading ``=HYPERLINK(…)`` in a CSV or a formula in a workbook comes
back as its text. Every value is returned as text (``""`` for an empty cell), so the adapters and
the cleaning parse one representation only.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cae_impact.ingest.problems import ExportError, Problem

SEPARATORS = (";", ",", "\t", "|")
"""Field separators tried on CSV exports, in order of preference on a tie."""

MAX_FIELD_CHARS = 1_000_000
"""Longest field accepted (CSV or XLSX cell): a longer one is refused with its line, column and
length (an unclosed quote is reported as such, not as a long field)."""

MAX_EXPORT_BYTES = 200_000_000
"""Largest export file read (a survey export is a few MB; a national one tens of MB)."""

MAX_XLSX_INFLATED_BYTES = 150_000_000
"""Largest total uncompressed size of an XLSX workbook's parts, read from the zip's central
directory before anything is decompressed (a « zip bomb » inflates 1 MB into 1 GB)."""

MAX_XLSX_SHARED_STRINGS_BYTES = 30_000_000
"""Largest uncompressed shared-strings part: openpyxl holds every shared string in memory."""

MAX_XLSX_PARTS = 10_000
"""Most parts (files) in an XLSX workbook's zip."""

SNIFF_RECORDS = 50
"""Records parsed with each candidate separator to choose one."""

MAX_MALFORMED_SHARE = 0.10
"""Above this share of records with a wrong number of fields, the file is refused as broken."""

_MOJIBAKE_MARKERS = ("Ã©", "Ã¨", "Ã ", "Ãª", "Ã§", "Ã´", "Ã¢", "Ã®", "Ã¹", "Ã‰", "â€™", "Â°", "Â ")


@dataclass(frozen=True)
class MalformedRecord:
    """A CSV record that could not be aligned with the header."""

    line: int
    end_line: int
    n_fields: int
    n_header: int


@dataclass
class Table:
    """An export read as text: header, data rows and the raw line of each row.

    ``rows`` hold only well-formed, non-blank data records, as lists of stripped strings of the
    header's length. ``lines[i]`` is the line (CSV) or sheet row (XLSX) where ``rows[i]`` starts.
    """

    path: Path
    kind: str  # "csv" or "xlsx"
    header: list[str]
    header_line: int
    rows: list[list[str]]
    lines: list[int]
    sha256: str
    encoding: str | None = None
    separator: str | None = None
    sheet: str | None = None
    blank_records: int = 0
    malformed: list[MalformedRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def n_records(self) -> int:
        """Data records of the file: well-formed rows plus malformed ones (blank ones excluded)."""
        return len(self.rows) + len(self.malformed)

    def column_values(self, index: int) -> list[str]:
        """All values of one column, in row order."""
        return [row[index] for row in self.rows]


def sniff_kind(data: bytes, path: Path) -> str:
    """Return ``"xlsx"`` or ``"csv"`` from the file's first bytes; raise ExportError otherwise."""
    head = data[:8]
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ExportError(
            "classeur Excel 97-2003 (.xls) ou document Office ancien : enregistrez-le au format "
            ".xlsx ou CSV puis recommencez",
            path=path,
        )
    if head.startswith(b"%PDF"):
        raise ExportError("document PDF : ce n'est pas un export de réponses", path=path)
    return "csv"


def decode_text(data: bytes, path: Path) -> tuple[str, str]:
    """Decode a CSV export; return the text and the encoding found.

    UTF-8 (with or without BOM) is tried first, then Windows-1252, the encoding of French Excel
    « CSV (séparateur : point-virgule) ». A file that is neither raises an ExportError naming the
    line of the first unreadable byte.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return _decode_or_fail(data[3:], "utf-8", path), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _decode_or_fail(data, "utf-16", path), "utf-16"
    nul = data.find(b"\x00", 0, 65536)
    if nul >= 0 and _looks_binary(data):
        raise ExportError(
            "fichier binaire ou encodé en UTF-16 sans marque d'ordre : ré-exportez-le en CSV UTF-8",
            path=path,
            line=data.count(b"\n", 0, nul) + 1,
        )
    text, encoding, _ = decode_lines(data, path)
    return text, encoding


def _looks_binary(data: bytes) -> bool:
    """NUL bytes everywhere (UTF-16 without BOM, a binary file), not a stray one typed in a cell.

    A few NUL characters in a text export are kept (cleaning removes control characters from
    free text; elsewhere they make a value unreadable, quarantined): refusing the whole export
    for one of them would make a CAE unusable for a typing accident.
    """
    sample = data[:65536]
    n = sample.count(b"\x00")
    return n > max(8, len(sample) // 100)


def decode_lines(data: bytes, path: Path, *, utf8_declared: bool = False) -> tuple[str, str, list[int]]:
    """Decode a CSV export (no BOM) as UTF-8, line by line; return text, encoding, repaired lines.

    A file that is UTF-8 except for a few lines (one cell pasted from a Windows-1252 file) stays
    UTF-8: only the lines that are not valid UTF-8 are decoded as Windows-1252, and their
    numbers are returned (the caller reports them). A file with no valid UTF-8 accent at all and
    some that are not UTF-8 is a Windows-1252 file (French Excel « CSV »): decoded as such.
    """
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    good_utf8 = 0
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            good_utf8 += 1
        except UnicodeDecodeError:
            bad.append(number)
    if not utf8_declared and (good_utf8 == 0 or len(bad) > 4 * good_utf8):
        return _decode_or_fail(data, "cp1252", path), "cp1252", []
    parts = []
    bad_set = set(bad)
    for number, line in enumerate(lines, start=1):
        if number in bad_set:
            try:
                parts.append(line.decode("cp1252"))
            except UnicodeDecodeError:
                parts.append(line.decode("utf-8", errors="replace"))
        else:
            parts.append(line.decode("utf-8"))
    return "\n".join(parts), "utf-8", bad


def _decode_or_fail(data: bytes, encoding: str, path: Path, *, declared: bool = False) -> str:
    try:
        return data.decode(encoding)
    except LookupError as exc:
        raise ExportError(f"encodage « {encoding} » inconnu", path=path) from exc
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        if declared:
            message = (
                f"l'octet 0x{byte} n'est pas lisible dans l'encodage annoncé « {encoding} » : "
                f"corrigez l'encodage du fichier de correspondance ou ré-enregistrez l'export"
            )
        else:
            message = (
                f"encodage non reconnu : l'octet 0x{byte} n'est lisible ni en UTF-8 ni en "
                f"Windows-1252 ; ré-exportez le fichier en CSV UTF-8"
            )
        raise ExportError(message, path=path, line=line) from exc


def _parse_records(text: str, sep: str, limit: int | None = None):
    """Yield ``(start_line, end_line, fields)`` for each CSV record; csv.Error propagates."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', strict=True)
    previous = 0
    for n, record in enumerate(reader):
        if limit is not None and n >= limit:
            return
        yield previous + 1, reader.line_num, record
        previous = reader.line_num


def detect_separator(text: str) -> str | None:
    """Choose the separator that splits the first records into the most consistent columns.

    Returns ``None`` when no candidate gives more than one column.
    """
    sample = text[:262144]
    cut = sample.rfind("\n")
    if 0 < cut < len(sample) - 1:
        sample = sample[: cut + 1]
    best: tuple[float, int, int] | None = None
    chosen = None
    for rank, sep in enumerate(SEPARATORS):
        try:
            records = [r for _, _, r in _parse_records(sample, sep, SNIFF_RECORDS) if r]
        except csv.Error:
            records = []
            try:  # strict parsing failed: score with a lenient parse
                reader = csv.reader(io.StringIO(sample, newline=""), delimiter=sep)
                records = [r for _, r in zip(range(SNIFF_RECORDS), reader, strict=False) if r]
            except csv.Error:
                continue
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        body = records[1:]
        consistency = sum(len(r) == width for r in body) / len(body) if body else 1.0
        score = (consistency, width, -rank)
        if best is None or score > best:
            best, chosen = score, sep
    return chosen


def _check_not_document(text: str, path: Path) -> None:
    start = text.lstrip()[:200].lower()
    if start.startswith(("<!doctype", "<html", "<?xml", "<table", "<")):
        raise ExportError(
            "page web ou fichier XML : ce n'est pas un export CSV de réponses (téléchargez "
            "l'export au format CSV ou XLSX)",
            path=path,
            line=1,
        )
    if start.startswith(("{", "[")):
        raise ExportError(
            "fichier JSON : ce n'est pas un export CSV de réponses", path=path, line=1
        )


def read_csv_table(
    path: Path, data: bytes, *, header_line: int = 1, separator: str | None = None, encoding: str | None = None
) -> Table:
    """Parse CSV bytes into a :class:`Table` (see the module docstring).

    ``encoding`` and ``separator``, when given (a mapping file declares them), are used instead
    of being detected.
    """
    if encoding is not None:
        declared = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
        text, encoding = _decode_or_fail(data, declared, path, declared=True), declared
    else:
        repaired: list[int] = []
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_binary(data):
            text, encoding = decode_text(data, path)
        elif data.startswith(b"\xef\xbb\xbf"):  # UTF-8 announced: only its stray lines are repaired
            text, _, repaired = decode_lines(data[3:], path, utf8_declared=True)
            encoding = "utf-8-sig"
        else:
            text, encoding, repaired = decode_lines(data, path)
    if not text.strip():
        raise ExportError("fichier vide : aucun en-tête ni aucune réponse", path=path)
    _check_not_document(text, path)
    sniff_from = text
    if header_line > 1:  # title rows above the header would fool the separator detection
        sniff_from = "\n".join(text.split("\n")[header_line - 1 :])
    sep = separator or detect_separator(sniff_from)
    if sep is None:
        raise ExportError(
            "une seule colonne détectée : le séparateur de champs n'est ni « ; » ni « , » ni la "
            "tabulation, ou ce n'est pas un export de réponses",
            path=path,
            line=header_line,
        )
    # The csv module's own limit would report a long field as an unclosed quote: the limit is
    # checked here, with the field's line, column and length (the text is bounded by
    # MAX_EXPORT_BYTES, so an unclosed quote cannot take more memory than the file).
    csv.field_size_limit(max(len(text) + 1, MAX_FIELD_CHARS))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    malformed: list[MalformedRecord] = []
    blank = 0
    start = 0
    try:
        for start, end, record in _parse_records(text, sep):
            _check_field_lengths(record, header, start, path)
            if header is None:
                if start < header_line:
                    continue
                if not record or not any(f.strip() for f in record):
                    continue
                header = [f.strip() for f in record]
                while header and header[-1] == "":
                    header.pop()
                header_line = start
                width = len(header)
                continue
            if not record or not any(f.strip() for f in record):
                blank += 1
                continue
            if len(record) > width and not any(f.strip() for f in record[width:]):
                record = record[:width]  # trailing empty fields (a separator at the end of the line)
            if len(record) != width:
                malformed.append(MalformedRecord(start, end, len(record), width))
                continue
            rows.append([f.strip() for f in record])
            lines.append(start)
    except csv.Error as exc:
        message = str(exc)
        if "field larger than field limit" in message or "unexpected end of data" in message:
            detail = "guillemet ouvert et jamais refermé (champ entre guillemets non terminé)"
        elif "expected after" in message:
            detail = (
                "guillemets mal formés : un champ entre guillemets est suivi d'autres caractères "
                "avant le séparateur (un guillemet dans le texte doit être doublé : \"\")"
            )
        elif "NUL" in message or "null byte" in message.lower():
            detail = "caractère nul dans le fichier : fichier binaire ou mal encodé"
        else:
            detail = f"structure CSV illisible ({message})"
        raise ExportError(detail, path=path, line=start + 1 if header is not None else header_line) from exc
    if header is None:
        raise ExportError("fichier vide : aucun en-tête", path=path)
    table = Table(
        path=path,
        kind="csv",
        header=header,
        header_line=header_line,
        rows=rows,
        lines=lines,
        sha256=hashlib.sha256(data).hexdigest(),
        encoding=encoding,
        separator=sep,
        blank_records=blank,
        malformed=malformed,
    )
    if encoding in ("utf-8", "utf-8-sig") and "repaired" in locals() and repaired:
        shown = ", ".join(str(n) for n in repaired[:10]) + (" …" if len(repaired) > 10 else "")
        table.problems.append(Problem(
            "warning", "not_utf8_lines",
            f"{len(repaired)} ligne(s) du fichier ne sont pas en UTF-8 (lignes {shown}) : lues en "
            f"Windows-1252, le reste du fichier en UTF-8 ; vérifiez leurs accents et ré-exportez en UTF-8",
            lines=tuple(repaired)))
    _check_malformed_share(table)
    _report_mojibake(table)
    return table


def _check_field_lengths(record: list[str], header: list[str] | None, line: int, path: Path) -> None:
    for j, value in enumerate(record):
        if len(value) > MAX_FIELD_CHARS:
            column = header[j] if header is not None and j < len(header) else f"n° {j + 1}"
            n, limit = f"{len(value):,}".replace(",", " "), f"{MAX_FIELD_CHARS:,}".replace(",", " ")
            raise ExportError(
                f"champ de {n} caractères, plus que la limite de {limit} (MAX_FIELD_CHARS) : une "
                f"réponse ne peut pas être aussi longue ; raccourcissez-la ou retirez-la / field of "
                f"{n} characters, over the limit of {limit}",
                path=path, line=line, column=column)


def check_xlsx_limits(data: bytes, path: Path) -> None:
    """Refuse a workbook whose parts would inflate beyond the limits, before decompressing it.

    The sizes are read from the zip's central directory; Python's zip reader never returns
    more bytes than a part declares, so the check bounds what openpyxl can be made to read.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExportError(f"classeur XLSX illisible ou endommagé ({type(exc).__name__}) : ré-exportez-le",
                          path=path) from exc
    if len(infos) > MAX_XLSX_PARTS:
        raise ExportError(f"classeur XLSX de {len(infos)} parties, plus que la limite de {MAX_XLSX_PARTS} "
                          "(MAX_XLSX_PARTS) : refusé sans être lu", path=path)
    total = sum(i.file_size for i in infos)
    mb = 1_000_000
    if total > MAX_XLSX_INFLATED_BYTES:
        raise ExportError(
            f"classeur XLSX qui occuperait {total / mb:.0f} Mo une fois décompressé ({len(data) / mb:.1f} Mo "
            f"compressé), plus que la limite de {MAX_XLSX_INFLATED_BYTES / mb:.0f} Mo (MAX_XLSX_INFLATED_BYTES) : "
            "refusé sans être décompressé (« bombe zip » ou export anormal) / workbook inflating to "
            f"{total / mb:.0f} MB, over the limit", path=path)
    shared = {i.filename for i in infos if i.filename.lower().endswith("sharedstrings.xml")}
    types = next((i for i in infos if i.filename == "[Content_Types].xml"), None)
    if types is not None and types.file_size < 1_000_000:  # the part a workbook declares, whatever its name
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            declared = z.read(types).decode("utf-8", errors="replace")
        for m in re.finditer(r'<Override\b[^>]*>', declared):
            if "sharedStrings" in m.group(0):
                name = re.search(r'PartName="/?([^"]+)"', m.group(0))
                if name:
                    shared.add(name.group(1))
    for info in infos:
        if info.filename in shared and info.file_size > MAX_XLSX_SHARED_STRINGS_BYTES:
            raise ExportError(
                f"textes partagés du classeur ({info.filename}) de {info.file_size / mb:.0f} Mo décompressés, plus "
                f"que la limite de {MAX_XLSX_SHARED_STRINGS_BYTES / mb:.0f} Mo (MAX_XLSX_SHARED_STRINGS_BYTES) : "
                "refusé sans être lu / shared strings over the limit", path=path)


def _check_malformed_share(table: Table) -> None:
    if not table.malformed:
        return
    share = len(table.malformed) / table.n_records
    first = table.malformed[0]
    if share > MAX_MALFORMED_SHARE and len(table.malformed) > 1:
        raise ExportError(
            f"{len(table.malformed)} lignes sur {table.n_records} n'ont pas le nombre de colonnes "
            f"de l'en-tête ({first.n_header}) — la première a {first.n_fields} champs : séparateur "
            f"ou guillemets incohérents, le fichier a probablement été modifié à la main",
            path=table.path,
            line=first.line,
        )


def _report_mojibake(table: Table) -> None:
    hits: dict[int, list[int]] = {}
    for line, row in zip(table.lines, table.rows, strict=True):
        joined = "\x1f".join(row)
        if "Ã" not in joined and "â€" not in joined and "Â" not in joined:
            continue
        for j, value in enumerate(row):
            if "Ã" in value or "â€" in value or "Â" in value:
                if any(m in value for m in _MOJIBAKE_MARKERS):
                    hits.setdefault(j, []).append(line)
    for j, found in hits.items():
        table.problems.append(
            Problem(
                "warning",
                "mojibake",
                f"accents abîmés (« Ã© » au lieu de « é ») dans {len(found)} cellule(s) : le "
                f"fichier a été ré-enregistré dans un mauvais encodage ; ré-exportez-le en UTF-8",
                column=table.header[j],
                lines=tuple(found),
            )
        )


def cell_text(value: object) -> str:
    """Text of a workbook cell: numbers without a spurious ``.0``, dates in ISO 8601.

    >>> cell_text(3.0), cell_text(2.5), cell_text(None), cell_text(dt.datetime(2026, 3, 1, 9, 5))
    ('3', '2.5', '', '2026-03-01 09:05:00')
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip()


def read_xlsx_table(path: Path, data: bytes, *, sheet: str | None = None, header_line: int = 1) -> Table:
    """Read the first (or the named) sheet of an XLSX workbook into a :class:`Table`.

    Formulas are read as their text (``data_only=False``) and never evaluated.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    check_xlsx_limits(data, path)
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise ExportError(
            f"classeur XLSX illisible ou endommagé ({type(exc).__name__}) : ré-exportez-le",
            path=path,
        ) from exc
    try:
        if sheet is not None:
            if sheet not in workbook.sheetnames:
                raise ExportError(
                    f"la feuille « {sheet} » n'existe pas (feuilles : {', '.join(workbook.sheetnames)})",
                    path=path,
                )
            worksheet = workbook[sheet]
        else:
            worksheet = workbook.worksheets[0]
        worksheet.reset_dimensions()
        header: list[str] | None = None
        rows: list[list[str]] = []
        lines: list[int] = []
        blank = 0
        width = 0
        for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1):
            texts = [cell_text(v) for v in values]
            _check_field_lengths(texts, header, number, path)
            if header is None:
                if number < header_line or not any(texts):
                    continue
                header = texts
                while header and header[-1] == "":
                    header.pop()
                width = len(header)
                header_line = number
                continue
            if not any(texts):
                blank += 1
                continue
            if len(texts) < width:
                texts.extend([""] * (width - len(texts)))
            rows.append(texts[:width])
            lines.append(number)
        name = worksheet.title
    finally:
        workbook.close()
    if header is None:
        raise ExportError("classeur vide : aucun en-tête ni aucune réponse", path=path, sheet=name)
    # trailing blank rows of a sheet are formatting, not records
    return Table(
        path=path,
        kind="xlsx",
        header=header,
        header_line=header_line,
        rows=rows,
        lines=lines,
        sha256=hashlib.sha256(data).hexdigest(),
        sheet=name,
        blank_records=blank,
    )


def read_table(
    path: str | Path,
    *,
    sheet: str | None = None,
    header_line: int = 1,
    separator: str | None = None,
    encoding: str | None = None,
) -> Table:
    """Read any export file (CSV or XLSX, detected from its content) into a :class:`Table`."""
    path = Path(path)
    if not path.exists():
        raise ExportError("fichier introuvable", path=path)
    if path.is_dir():
        raise ExportError("c'est un dossier, pas un fichier d'export", path=path)
    try:
        size = path.stat().st_size
        if size > MAX_EXPORT_BYTES:
            raise ExportError(f"fichier de {size / 1e6:.0f} Mo, plus que la limite de {MAX_EXPORT_BYTES / 1e6:.0f} Mo "
                              "(MAX_EXPORT_BYTES) : refusé sans être lu", path=path)
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"fichier illisible ({exc.strerror or exc})", path=path) from exc
    if not data.strip():
        raise ExportError("fichier vide (0 octet utile)", path=path)
    kind = sniff_kind(data, path)
    if kind == "xlsx":
        table = read_xlsx_table(path, data, sheet=sheet, header_line=header_line)
    else:
        table = read_csv_table(path, data, header_line=header_line, separator=separator, encoding=encoding)
    _check_header(table)
    return table


def _check_header(table: Table) -> None:
    seen: dict[str, int] = {}
    for j, name in enumerate(table.header):
        if name in seen and name:
            raise ExportError(
                f"la colonne « {name} » apparaît deux fois dans l'en-tête (colonnes {seen[name] + 1} "
                f"et {j + 1}) : impossible de savoir laquelle lire",
                path=table.path,
                line=table.header_line,
                column=name,
            )
        seen[name] = j
