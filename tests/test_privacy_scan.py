"""The personal-data scanner finds raw identifiers wherever they would leak, and only there."""


import pandas as pd

from cae_impact.clean.privacy_scan import collect_raw_identifiers, scan_tree
from cae_impact.spec.config import load_study


def test_collects_identifiers_of_every_kind():
    needles = collect_raw_identifiers(load_study())
    assert needles["email"] and needles["phone"] and needles["identifier"]
    assert all("@" in e for e in needles["email"])


def test_finds_planted_values_in_every_format(tmp_path):
    needles = collect_raw_identifiers(load_study())
    email = sorted(needles["email"])[0]
    ident = sorted(needles["identifier"])[0]
    phone = sorted(needles["phone"])[0]
    spaced = " ".join([phone[:2], phone[2:4], phone[4:6], phone[6:8], phone[8:10]])
    (tmp_path / "a.html").write_text(f"<p>contact {email.upper()}</p>", encoding="utf-8")
    pd.DataFrame({"x": [ident]}).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.csv").write_text(f"note,{spaced}\n", encoding="utf-8")
    (tmp_path / "clean.json").write_text('{"n": 1}', encoding="utf-8")
    found = scan_tree([tmp_path], needles)
    kinds = {(f.path.name, f.kind) for f in found}
    assert ("a.html", "email") in kinds and ("b.parquet", "identifier") in kinds and ("c.csv", "phone") in kinds
    assert not any(f.path.name == "clean.json" for f in found)
    assert all(email not in f.value_hint for f in found), "the finding does not repeat the value"


def test_cleaned_demo_holds_no_raw_identifier(tmp_path):
    from cae_impact.clean.cleaning import clean_export, write_processed

    study = load_study()
    for cae in study.caes:
        write_processed(clean_export(study, cae.id), tmp_path / cae.id)
    assert scan_tree([tmp_path], collect_raw_identifiers(study)) == []


# ---- issue 15: the build scans everything it publishes and fails on any finding ---------------


def _docx_with(text, path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("word/document.xml", f'<w:document><w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>')
    return path


def test_any_typed_personal_data_is_found_in_every_format(tmp_path):
    import json

    (tmp_path / "report.html").write_text("<p>Paroles : appelez le 06 12 345 678</p>", encoding="utf-8")
    _docx_with("écrire à nom @ orange.fr", tmp_path / "report.docx")
    nb = {"cells": [{"cell_type": "code", "source": "x", "outputs": [
        {"output_type": "display_data", "data": {"text/html": "<b>IP 10.1.2.3</b>"}}]}]}
    (tmp_path / "02.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (tmp_path / "indicators.csv").write_text("a,b\n1,jean arobase free point fr\n", encoding="utf-8")
    found = {(f.path.name, f.kind) for f in scan_tree([tmp_path])}
    assert found == {("report.html", "phone"), ("report.docx", "email"), ("02.ipynb", "ip"),
                     ("indicators.csv", "email")}


def test_markup_digests_and_images_are_not_findings(tmp_path):
    (tmp_path / "a.html").write_text(
        '<style>p{margin:0 6px 12px 34px}</style><img src="data:image/png;base64,A0612345678B"/>'
        '<p>CA de 1 200 € en 2023, 12 345 678 € cumulés, commit a0612345678f</p>', encoding="utf-8")
    pd.DataFrame({"respondent_id": ["0612345678abcdef0123"], "x": [0.0612345678]}).to_parquet(tmp_path / "r.parquet")
    assert scan_tree([tmp_path]) == []


def test_index_step_fails_and_writes_no_index_when_anything_is_found(tmp_path, capsys):
    from cae_impact.run import cli

    study = load_study()
    reports, processed = tmp_path / "reports", tmp_path / "processed"
    leak = reports / study.wave / "cae-1" / "report.html"
    leak.parent.mkdir(parents=True)
    leak.write_text("<p>Mon numéro : 06 12 345 678</p>", encoding="utf-8")
    rc = cli.main(["--reports-root", str(reports), "--processed-root", str(processed), "index"])
    err = capsys.readouterr().err
    assert rc == 2 and "report.html" in err and "phone" in err and "345 678" not in err
    assert not (reports / "index.html").exists()
    leak.write_text("<p>Mon numéro : [téléphone masqué]</p>", encoding="utf-8")
    assert cli.main(["--reports-root", str(reports), "--processed-root", str(processed), "index"]) == 0
    assert (reports / "index.html").exists()


def test_numbers_are_not_phones_but_a_phone_in_a_text_cell_is(tmp_path):
    """A published indicator such as 33.702020202 (an XLSX number cell, or a decimal in a CSV)
    is not a telephone number; a phone typed in a text cell still is."""
    from openpyxl import Workbook

    from cae_impact.clean import privacy_scan as ps

    book = Workbook()
    sheet = book.active
    sheet.append([33.702020202, 0.6972621798, "valeur 12,5"])
    sheet.append(["appelez le 06 12 34 56 78"])
    path = tmp_path / "t.xlsx"
    book.save(path)
    found = ps.find_in_text(ps.file_text(path))
    assert found == [("phone", "06 12 34 56 78")]
    assert ps.find_in_text("estimate,33.702020202,0.3840500198") == []
