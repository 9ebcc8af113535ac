"""Issue 15: untrusted files are bounded — refused in seconds, with a message naming the limit.

Zip bombs and huge shared strings in a workbook, YAML alias bombs, over-long fields, a stray
Windows-1252 byte in a UTF-8 file, study paths that leave the project.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from cae_impact.ingest import ExportError, tabular
from cae_impact.spec.config import StudyConfigError, load_study

ROOT = Path(__file__).resolve().parents[1]
DEMO_XLSX = ROOT / "data" / "raw" / "demo" / "2026" / "cae-5" / "export_kobo.xlsx"


def _inflated_copy(src: Path, dest: Path, part: str, size: int) -> Path:
    """A copy of a workbook whose ``part`` inflates to ``size`` bytes (compresses to almost nothing)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename == part:
                continue
            zout.writestr(info, zin.read(info.filename))
        with zout.open(part, "w", force_zip64=True) as fh:
            block = b" " * (1 << 20)
            for _ in range(size // len(block)):
                fh.write(block)
    return dest


def test_zip_bomb_refused_before_decompressing(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "MAX_XLSX_INFLATED_BYTES", 20_000_000)
    bomb = _inflated_copy(DEMO_XLSX, tmp_path / "bomb.xlsx", "xl/worksheets/sheet2.xml", 40 << 20)
    assert bomb.stat().st_size < 1_000_000
    start = time.perf_counter()
    with pytest.raises(ExportError) as info:
        tabular.read_table(bomb)
    assert time.perf_counter() - start < 2
    assert "MAX_XLSX_INFLATED_BYTES" in str(info.value) and "bomb.xlsx" in str(info.value)


def test_huge_shared_strings_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "MAX_XLSX_SHARED_STRINGS_BYTES", 5_000_000)
    big = _inflated_copy(DEMO_XLSX, tmp_path / "strings.xlsx", "xl/sharedStrings.xml", 8 << 20)
    with pytest.raises(ExportError) as info:
        tabular.read_table(big)
    assert "MAX_XLSX_SHARED_STRINGS_BYTES" in str(info.value)


def test_over_long_field_named_with_line_column_and_length(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("a;b;c\n1;2;3\n4;" + "x" * 1_000_001 + ";6\n", encoding="utf-8")
    with pytest.raises(ExportError) as info:
        tabular.read_table(path)
    message = str(info.value)
    assert "ligne 3" in message and "« b »" in message and "1 000 001" in message
    assert "MAX_FIELD_CHARS" in message and "guillemet" not in message


def test_unclosed_quote_still_said_as_such(tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text('a;b;c\n1;"2;3\n4;5;6\n', encoding="utf-8")
    with pytest.raises(ExportError) as info:
        tabular.read_table(path)
    assert "guillemet" in str(info.value)


def test_one_stray_cp1252_byte_does_not_decode_the_whole_file_as_cp1252(tmp_path):
    path = tmp_path / "mixed.csv"
    good = "nom;commentaire\n" + "".join(f"{i};très bien, déjà réglé\n" for i in range(20))
    path.write_bytes(good.encode("utf-8") + "99;café chez René\n".encode("cp1252"))
    table = tabular.read_table(path)
    assert table.encoding == "utf-8"
    assert table.rows[0][1] == "très bien, déjà réglé", "UTF-8 accents stay right"
    assert table.rows[-1][1] == "café chez René", "the stray line is repaired"
    [problem] = [p for p in table.problems if p.code == "not_utf8_lines"]
    assert problem.lines == (22,) and "1 ligne" in problem.message


def test_a_real_cp1252_file_is_still_read_as_cp1252(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("nom;commentaire\n1;très bien\n2;déjà\n".encode("cp1252"))
    table = tabular.read_table(path)
    assert table.encoding == "cp1252" and table.rows[1][1] == "déjà"


BASE = ROOT / "config" / "study.yaml"


def _study_text(extra: str = "", **replace: str) -> str:
    text = BASE.read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text + extra


def test_yaml_alias_bomb_refused_in_the_study_file(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=False))
    path = tmp_path / "study.yaml"
    path.write_text(_study_text("\n" + bomb), encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(StudyConfigError) as info:
        load_study(path)
    assert time.perf_counter() - start < 2
    assert "alias" in str(info.value) and "line" in str(info.value)


def test_yaml_alias_bomb_refused_in_the_codebook(tmp_path):
    from cae_impact.spec.codebook import CodebookError, load_codebook

    path = tmp_path / "codebook.yaml"
    path.write_text("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", encoding="utf-8")
    with pytest.raises(CodebookError) as info:
        load_codebook(path)
    assert "repeats a list or mapping" in str(info.value) and "line 2" in str(info.value)


def test_study_paths_kept_inside_the_project(tmp_path):
    text = BASE.read_text(encoding="utf-8")
    first_export = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "export:" in line)
    outside = tmp_path / "study.yaml"
    outside.write_text(text.replace(first_export, "../../../../etc/passwd"), encoding="utf-8")
    with pytest.raises(StudyConfigError) as info:
        load_study(outside)
    assert "outside" in str(info.value) and "data_dir" in str(info.value)
    ref = tmp_path / "ref.yaml"
    ref.write_text(text + "\nconsortium_reference: /tmp/evil/consortium.csv\n", encoding="utf-8")
    with pytest.raises(StudyConfigError) as info:
        load_study(ref)
    assert "consortium_reference" in str(info.value)


def test_data_dir_allows_exports_elsewhere(tmp_path):
    text = BASE.read_text(encoding="utf-8")
    first_export = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "export:" in line)
    copy = tmp_path / "export.csv"
    copy.write_bytes((ROOT / first_export).read_bytes())
    path = tmp_path / "study.yaml"
    path.write_text(text.replace(first_export, str(copy)) + f"\ndata_dir: {tmp_path}\n", encoding="utf-8")
    assert load_study(path).caes[0].export == copy


def test_publish_reference_never_writes_outside(tmp_path, capsys):
    from cae_impact.run import cli

    assert cli.main(["--reports-root", str(tmp_path / "r"), "publish-reference", "--to", str(tmp_path / "x.csv")]) == 2
    assert "outside the project" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_yaml_alias_bomb_refused_in_a_mapping_file(tmp_path):
    from cae_impact.ingest.spreadsheet import load_mapping
    from cae_impact.spec.codebook import load_codebook

    path = tmp_path / "mapping.yaml"
    path.write_text("a: &a [x, x]\nb: &b [*a, *a]\ncolumns: {q: [*b, *b]}\n", encoding="utf-8")
    with pytest.raises(ExportError) as info:
        load_mapping(path, load_codebook())
    assert "repeats a list or mapping" in str(info.value) and "mapping.yaml" in str(info.value)


def test_renamed_shared_strings_part_still_limited(tmp_path, monkeypatch):
    monkeypatch.setattr(tabular, "MAX_XLSX_SHARED_STRINGS_BYTES", 5_000_000)
    src = tmp_path / "src.xlsx"
    with zipfile.ZipFile(DEMO_XLSX) as zin, zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", b'<Override PartName="/xl/strs.xml" ContentType="application/'
                                    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')
            zout.writestr(info, data)
    big = _inflated_copy(src, tmp_path / "renamed.xlsx", "xl/strs.xml", 8 << 20)
    with pytest.raises(ExportError, match="MAX_XLSX_SHARED_STRINGS_BYTES"):
        tabular.read_table(big)


def test_stray_byte_in_a_utf8_file_with_bom_is_repaired(tmp_path):
    path = tmp_path / "bom.csv"
    good = "nom;commentaire\n1;très bien\n2;déjà\n"
    path.write_bytes(b"\xef\xbb\xbf" + good.encode("utf-8") + "3;café\n".encode("cp1252"))
    table = tabular.read_table(path)
    assert table.encoding == "utf-8-sig" and table.rows[-1][1] == "café" and table.rows[0][1] == "très bien"
    assert [p.lines for p in table.problems if p.code == "not_utf8_lines"] == [(4,)]


def test_a_stray_nul_in_a_cell_does_not_refuse_the_export_and_never_reaches_processed(tmp_path):
    from cae_impact.privacy.personal_data import mask_free_text

    path = tmp_path / "nul.csv"
    path.write_bytes("nom;commentaire\n1;très\x00 bien\x1b[0m\n2;déjà\n".encode())
    table = tabular.read_table(path)
    assert table.rows[0][1] == "très\x00 bien\x1b[0m"  # read as it is; cleaning removes it
    assert mask_free_text(table.rows[0][1]) == "très bien[0m"
    binary = tmp_path / "utf16.csv"
    binary.write_bytes("nom;commentaire\n1;très bien\n".encode("utf-16-le"))
    with pytest.raises(ExportError, match="UTF-16"):
        tabular.read_table(binary)
