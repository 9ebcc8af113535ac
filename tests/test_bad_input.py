"""Bad input: each malformed export of tests/fixtures/malformed/ gives a located message or a
documented quarantine — never a bare traceback.

The corpus is hand-made (not produced by the project's generator); docs/cleaning-rules.md lists
the expected outcome of every case.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cae_impact.clean.cleaning import (
    clean_responses,
    read_quarantine,
    validate_export,
    write_processed,
)
from cae_impact.clean.validate import main_validate
from cae_impact.ingest import ExportError, read_export

CORPUS = Path(__file__).parent / "fixtures" / "malformed"
KEY = b"test-key-0123456789abcdef"


def refused(cb, name: str, fmt: str = "limesurvey", **kwargs) -> ExportError:
    """Read a corpus file that must be refused; return the error after checking it names the file."""
    with pytest.raises(ExportError) as info:
        read_export(CORPUS / name, fmt, codebook=cb, **kwargs)
    error = info.value
    assert name in str(error), "the message names the file"
    return error


def cleaned(cb, name: str, fmt: str = "limesurvey", **kwargs):
    raw = read_export(CORPUS / name, fmt, codebook=cb, **kwargs)
    return raw, clean_responses(raw, cb, cae_id="cae-t", wave="2026", key=KEY)


def test_control_file_is_usable(cb):
    raw, result = cleaned(cb, "valid_minimal.csv")
    assert result.accounting.kept == 3 and result.quarantine.empty


def test_empty_file(cb):
    assert "fichier vide" in str(refused(cb, "empty.csv"))


def test_blank_lines_only(cb):
    assert "fichier vide" in str(refused(cb, "blank_lines.csv"))


def test_header_without_responses(cb):
    error = refused(cb, "header_only.csv")
    assert error.line == 2 and "aucune ligne de réponse" in str(error)


def test_not_a_survey_export(cb):
    error = refused(cb, "not_a_survey.csv")
    assert error.line == 1 and "aucune colonne du questionnaire" in str(error) and "« Libellé »" in str(error)


def test_web_page_saved_as_csv(cb):
    assert "page web" in str(refused(cb, "webpage.csv"))


def test_old_excel_workbook(cb):
    assert ".xls" in str(refused(cb, "legacy_excel.xls"))


def test_corrupt_workbook(cb):
    assert "XLSX illisible" in str(refused(cb, "corrupt.xlsx", "kobo"))


def test_wrong_encoding_names_the_line(cb):
    error = refused(cb, "bad_encoding.csv")
    assert error.line == 3 and "0x81" in str(error) and "ligne 3" in str(error)


def test_utf16_without_bom(cb):
    error = refused(cb, "utf16_no_bom.csv")
    assert error.line == 1 and "UTF-16" in str(error)


def test_double_encoded_accents_reported_by_column_and_line(cb):
    raw, _ = cleaned(cb, "mojibake.csv")
    problem = next(p for p in raw.problems if p.code == "mojibake")
    assert problem.column == "remarques" and problem.lines == (2,)


def test_unterminated_quote(cb):
    error = refused(cb, "unterminated_quote.csv")
    assert error.line == 2 and "jamais refermé" in str(error)


def test_stray_quote_inside_a_field(cb):
    error = refused(cb, "stray_quote.csv")
    assert error.line == 3 and "guillemets mal formés" in str(error)


def test_duplicate_header_names(cb):
    error = refused(cb, "duplicate_header.csv")
    assert error.column == "sexe" and "deux fois" in str(error)


def test_missing_required_column(cb):
    error = refused(cb, "missing_required.csv")
    assert error.column == "etape" and "colonne « etape »" in str(error) and "obligatoire" in str(error)


def test_unknown_answer_codes_reported_and_quarantined(cb):
    raw, result = cleaned(cb, "unknown_codes.csv")
    problems = {p.column: p for p in raw.problems if p.code == "unknown_code"}
    assert set(problems) == {"sexe", "caeDecisive"}
    assert problems["caeDecisive"].lines == (3,) and "« A9 »" in problems["caeDecisive"].message
    q = result.quarantine
    assert q[["raw_line", "column", "value", "reason"]].values.tolist() == [
        [3, "caeDecisive", "A9", "unknown_code"],
        [3, "sexe", "x", "unknown_code"],
    ]


def test_export_of_another_questionnaire_version(cb):
    error = refused(cb, "other_version.csv")
    assert error.column == "qversion" and error.line == 2 and "2025.2" in str(error) and cb.version in str(error)


def test_some_rows_of_another_version_set_aside(cb):
    _, result = cleaned(cb, "mixed_versions.csv")
    assert result.accounting.set_aside["other_version"] == 1 and result.accounting.kept == 2
    assert result.quarantine["raw_line"].tolist() == [3]


def test_second_header_row_set_aside(cb):
    _, result = cleaned(cb, "second_header.csv")
    q = result.quarantine
    assert q[["raw_line", "reason", "action"]].values.tolist() == [[3, "header_row", "row_set_aside"]]
    assert result.accounting.raw_rows == 3 and result.accounting.kept == 2


def test_row_with_wrong_number_of_fields_set_aside(cb):
    _, result = cleaned(cb, "wrong_field_count.csv")
    q = result.quarantine
    assert q[["raw_line", "reason"]].values.tolist() == [[3, "malformed_row"]]
    assert "20 champ(s) au lieu de 21" in q.loc[0, "detail"]
    assert result.accounting.kept == 10  # the row with one trailing empty field is read


def test_formula_cells_never_evaluated_and_neutralised(cb, tmp_path):
    raw, result = cleaned(cb, "formula_cells.csv")
    assert {p.column for p in raw.problems if p.code == "formula_cell"} == {"caeDecisive", "remarques"}
    assert result.responses.loc[0, "remarks"].startswith("=HYPERLINK(")  # kept as text, not run
    paths = write_processed(result, tmp_path)
    text = paths["quarantine"].read_text(encoding="utf-8-sig")
    assert "'@SUM(1+1)" in text and "\n@" not in text and ",@" not in text
    assert read_quarantine(paths["quarantine"])["value"].str.startswith(("=", "@")).sum() == 0


def test_formulas_in_a_workbook_are_read_as_text(cb):
    raw, result = cleaned(cb, "formula_cells_kobo.xlsx", "kobo")
    assert raw.frame.loc[0, "sex"] == "=CHAR(102)"  # evaluated, it would read « f »
    assert result.responses["sex"].isna().tolist()[0]
    reasons = dict(zip(result.quarantine["question_id"], result.quarantine["reason"], strict=True))
    assert reasons == {"sex": "unknown_code", "months_to_first_invoice": "not_a_number"}


def test_mapping_naming_an_unknown_question(cb):
    with pytest.raises(ExportError) as info:
        read_export(CORPUS / "tableur.csv", "spreadsheet", mapping=CORPUS / "mapping_unknown_question.yaml", codebook=cb)
    assert "mapping_unknown_question.yaml" in str(info.value) and "income_last_year" in str(info.value)
    assert info.value.column == "Revenu avant"


def test_mapping_announcing_a_column_absent_from_the_export(cb):
    with pytest.raises(ExportError) as info:
        read_export(CORPUS / "tableur.csv", "spreadsheet", mapping=CORPUS / "mapping_missing_column.yaml", codebook=cb)
    assert info.value.column == "Commentaire du conseiller" and info.value.line == 1


def test_spreadsheet_without_mapping_file(cb, tmp_path):
    shutil.copy(CORPUS / "tableur.csv", tmp_path / "tableur.csv")
    with pytest.raises(ExportError, match="fichier de correspondance"):
        read_export(tmp_path / "tableur.csv", "spreadsheet", codebook=cb)


@pytest.mark.parametrize(
    ("name", "line"),
    [("empty.csv", None), ("header_only.csv", 2), ("bad_encoding.csv", 3), ("unterminated_quote.csv", 2),
     ("missing_required.csv", 1), ("other_version.csv", 2)],
)
def test_validate_command_prints_located_error_and_fails(cb, capsys, name, line):
    assert main_validate([str(CORPUS / name), "--format", "limesurvey"]) == 1
    out = capsys.readouterr().out
    assert "NON UTILISABLE" in out and name in out
    if line is not None:
        assert f"ligne {line}" in out
    assert "Traceback" not in out


def test_validate_report_lists_problems_for_a_usable_file(cb):
    report = validate_export(CORPUS / "second_header.csv", "limesurvey", codebook=cb)
    assert report.usable and report.error is None
    text = report.format_text()
    assert "ligne d'en-tête répétée : 1" in text and "ligne 3" in text
