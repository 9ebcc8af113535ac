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


# ---- issue 19: one pass per file, whatever the number of raw values -------------------------


def _brute_force(text, needles):
    """What the scan found before issue 19: each raw value looked for in turn (the reference)."""
    from cae_impact.clean import privacy_scan as ps

    spans = ps._spans(text)
    lower = text.lower()
    plain = {ps.normalise_email(v) for k, v, _, _ in spans if k == "email"}
    digits = {ps._digits(m.group(0)) for m in ps.PHONE_RE.finditer(text)}
    tokens = set()
    for token in ps._TOKEN_RE.findall(text):
        tokens |= {token, token.strip(".+-@")}
    hits = set()
    for kind, values in needles.items():
        for value in values:
            if kind == "phone":
                hit = len(value) >= 9 and value in digits
            elif kind == "email":
                hit = value in plain or value in lower
            else:
                hit = value in tokens or (not ps._TOKEN_FULL_RE.fullmatch(value) and value in text)
            if hit:
                hits.add((kind, value))
    return hits


def test_the_one_pass_scan_finds_exactly_what_each_value_in_turn_finds():
    import random

    from cae_impact.clean import privacy_scan as ps

    rng = random.Random(19)
    emails = {"a.b@orange.fr", "b@orange.fr", "x@y.fr", "jean@free.fr", "@odd.fr", "z＠fullwidth.fr",
              "long.local.part+tag@sub.domain.org", "ab@orange.fr.evil"}
    needles = {"email": emails, "phone": {"0612345678", "33612345678", "12345"},
               "identifier": {"tH4uLE7IuUNVonF", "abc def 123", "id:7777777"}, "ip": {"203.0.113.186"}}
    pieces = [*emails, *(e.upper() for e in emails), "@", "@@", "a.b@orange", "orange.fr", "06 12 34 56 78",
              "tH4uLE7IuUNVonF", "xtH4uLE7IuUNVonFx", "abc def 1234", "id:7777777", "203.0.113.186",
              "texte", " ", "\n", ".", "jean arobase free point fr", "mail: b@orange.fr.", "xx@orange.fr"]
    compiled = ps.Needles(needles)
    for _ in range(400):
        text = ps.strip_controls("".join(rng.choice(pieces) + rng.choice(["", " ", ",", "@"])
                                         for _ in range(rng.randint(0, 12))))
        spans = ps._spans(text)
        assert set(compiled.found_in(text, spans)) == _brute_force(text, needles), text
        assert compiled.emails_in(text.lower()) == {v for v in emails if v in text.lower()}, text


def test_the_scan_of_a_national_tree_grows_with_its_files_not_with_files_times_values(tmp_path):
    """20,000 raw e-mail addresses and identifiers (a 250-CAE study): a file is still one pass."""
    import time

    from cae_impact.clean import privacy_scan as ps

    needles = {"email": {f"personne{i}@exemple{i % 97}.fr" for i in range(20_000)},
               "identifier": {f"tok{i:012d}" for i in range(20_000)}, "phone": set(), "ip": set()}
    text = ("<p>" + "Part des entrepreneurs 45 %, n = 120. " * 2_000 + "</p>") + " contact personne123@exemple26.fr"
    for i in range(20):
        (tmp_path / f"r{i}.html").write_text(text, encoding="utf-8")
    start = time.perf_counter()
    found = ps.scan_tree([tmp_path], needles)
    assert time.perf_counter() - start < 10
    assert {(f.path.name, f.kind) for f in found} == {(f"r{i}.html", "email") for i in range(20)}


def test_the_scan_by_several_processes_finds_the_same_in_the_same_order(tmp_path):
    from cae_impact.clean import privacy_scan as ps

    needles = collect_raw_identifiers(load_study())
    email, ident = sorted(needles["email"])[0], sorted(needles["identifier"])[0]
    for i in range(12):
        (tmp_path / f"f{i:02d}.html").write_text(f"<p>{email if i % 3 == 0 else ''} n° {ident if i % 4 == 0 else i}"
                                                 f"{' 06 12 345 678' if i % 5 == 0 else ''}</p>", encoding="utf-8")
    one = ps.scan_tree([tmp_path], needles, workers=1)
    assert len({f.path.name for f in one}) == 8
    assert ps.scan_tree([tmp_path], needles, workers=2) == one


def test_raw_identifiers_are_the_same_read_by_several_processes():
    study = load_study()
    assert collect_raw_identifiers(study, workers=2) == collect_raw_identifiers(study, workers=1)
