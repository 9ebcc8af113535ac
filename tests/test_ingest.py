"""Ingestion: encodings and separators, line numbers, each tool's adapter, answer matching."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cae_impact.ingest import (
    AnswerMatcher,
    guess_format,
    normalise_label,
    parse_datetime,
    parse_number,
    read_cae_export,
    read_export,
    read_table,
)
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import load_study

MALFORMED = Path(__file__).parent / "fixtures" / "malformed"


@pytest.fixture(scope="module")
def cb():
    return load_codebook()


def demo_study(tmp_path_factory):
    """The synthetic demo study, generated once per test session under its temporary folder
    (never under data/raw/); test_ingest and test_cleaning share it."""
    from cae_impact_demo.demo import generate_demo

    root = tmp_path_factory.getbasetemp() / "demo-study"
    summary_path = root / "respondents.json"
    base = load_study()
    if not summary_path.exists():
        summary = generate_demo(base, root=root)
        summary_path.write_text(json.dumps(summary["respondents"]), encoding="utf-8")
    return load_study(base.path, root=root), json.loads(summary_path.read_text(encoding="utf-8")), root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    study, respondents, _ = demo_study(tmp_path_factory)
    return study, respondents


# ---- reading: encodings, separators, line numbers ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "separator"),
    [
        ("\ufeff\"a\";\"b\"\r\n\"é\";\"2\"\r\n".encode(), "utf-8-sig", ";"),
        ("a;b\r\né;2\r\n".encode("cp1252"), "cp1252", ";"),
        (b'a,b\n"x, y",2\n', "utf-8", ","),
        (b"a\tb\nx;y\t2\n", "utf-8", "\t"),
        ("a;b\r\nx;2\r\n".encode("utf-16"), "utf-16", ";"),
    ],
)
def test_encoding_and_separator_detected(tmp_path, data, encoding, separator):
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    table = read_table(path)
    assert (table.encoding, table.separator) == (encoding, separator)
    assert table.header == ["a", "b"] and len(table.rows) == 1


def test_line_numbers_follow_multiline_fields_and_blank_lines(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text('a;b\r\n1;"deux\r\nlignes"\r\n\r\n2;x\r\n', encoding="utf-8")
    table = read_table(path)
    assert table.lines == [2, 5]
    assert table.rows[0][1] == "deux\r\nlignes"
    assert table.blank_records == 1


def test_xlsx_detected_by_content_whatever_the_extension(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["a", "b"])
    wb.active.append([1.0, dt.datetime(2026, 3, 2, 9, 5)])
    path = tmp_path / "export.csv"  # misnamed workbook
    wb.save(path)
    table = read_table(path)
    assert table.kind == "xlsx"
    assert table.rows == [["1", "2026-03-02 09:05:00"]] and table.lines == [2]


# ---- every demo CAE through its own adapter ----------------------------------------------------


@pytest.mark.parametrize("cae_id", [f"cae-{i}" for i in range(1, 8)])
def test_demo_export_maps_onto_codebook(demo, cb, cae_id):
    study, respondents = demo
    cae = study.cae(cae_id)
    raw = read_cae_export(study, cae_id, codebook=cb)
    assert raw.format == cae.format
    assert raw.n_raw_rows == respondents[cae_id]["rows"]
    assert raw.question_ids == list(cb.questions)
    assert not raw.unmapped_columns and not raw.missing_questions
    lines = raw.frame["_line"].tolist()
    assert lines == sorted(lines) and lines[0] > raw.header_line
    assert raw.frame["_qversion"].eq(cb.version).all()
    # tools' personal columns are dropped unread
    assert not {"ipaddr", "_submitted_by"} & set(raw.frame.columns)
    unknown = [p for p in raw.problems if p.code == "unknown_code"]
    if cae.format != "spreadsheet":  # only hand-typed spreadsheets hold « ? »
        assert unknown == []
    # multiple-choice answers are tuples of known answers, single ones are text
    multi = raw.frame["mutual_help"].dropna()
    assert len(multi) and all(isinstance(v, tuple) and v for v in multi)
    matcher = AnswerMatcher.from_scale(cb.scale_of("mutual_help"))
    assert all(matcher.match(token) for value in multi for token in value)


def test_guess_format_recognises_each_tool(demo):
    study, _ = demo
    for cae in study.caes:
        assert guess_format(cae.export, cae.mapping) == cae.format


def test_limesurvey_full_texts_and_codes_give_the_same_codes(demo, cb):
    study, _ = demo
    full = read_cae_export(study, "cae-6", codebook=cb)  # LimeSurvey with full answer texts
    values = full.frame["cae_decisive"].dropna().unique()
    matcher = AnswerMatcher.from_scale(cb.scale_of("cae_decisive"))
    assert {matcher.match(v) for v in values} <= set(cb.scale_of("cae_decisive").codes)
    assert any(v not in cb.scale_of("cae_decisive").codes for v in values)  # labels, not codes


def test_kobo_submission_time_is_local_end_time(demo, cb):
    study, _ = demo
    raw = read_cae_export(study, "cae-2", codebook=cb)
    first = raw.frame["_submitted_at"].dropna().iloc[0]
    assert "+01:00" in first or "+02:00" in first
    assert parse_datetime(first).tzinfo is None


# ---- Google Forms: labels holding the join separator -------------------------------------------


def _with_comma_label(cb):
    """The codebook with a protection label holding the checkbox separator, as labels may."""
    import dataclasses

    scale = cb.scale_of("protection_access")
    choices = tuple(
        dataclasses.replace(c, label="Une prévoyance (incapacité, invalidité, décès)") if c.code == "prevoyance" else c
        for c in scale.choices
    )
    scales = {**cb.scales, scale.id: dataclasses.replace(scale, choices=choices)}
    return dataclasses.replace(cb, scales=scales)


def test_google_forms_checkboxes_split_on_known_labels(tmp_path, cb):
    cb = _with_comma_label(cb)
    q = cb.question("protection_access")
    labels = {c.code: c.label for c in cb.scale_of(q.id).choices}
    joined = f"{labels['mutuelle']}, {labels['prevoyance']}"
    header = ["Horodateur", "Adresse e-mail", cb.version_field.label, cb.question("contract_stage").text,
              cb.question("seniority").text, q.text]
    stage = cb.scale_of("contract_stage").label("cesa")
    seniority = cb.scale_of("seniority").label("plus3")
    rows = [
        ["02/03/2026 09:15:00", "a@example.org", cb.version, stage, seniority, joined],
        ["03/03/2026 10:00:00", "b@example.org", cb.version, stage, seniority, f"{labels['prevoyance']}, Autre : ma banque"],
    ]
    import csv

    path = tmp_path / "gf.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    raw = read_export(path, "googleforms", codebook=cb)
    assert raw.frame.loc[0, "protection_access"] == ("mutuelle", "prevoyance")
    assert raw.frame.loc[1, "protection_access"] == ("prevoyance", "Autre : ma banque")
    assert raw.frame["_email"].tolist() == ["a@example.org", "b@example.org"]
    unknown = [p for p in raw.problems if p.code == "unknown_code"]
    assert len(unknown) == 1 and "Autre : ma banque" in unknown[0].message and unknown[0].lines == (3,)


def test_split_joined_prefers_known_labels():
    matcher = AnswerMatcher(("a", "b", "c"), {"a": "Clients, fournisseurs", "b": "Banque", "c": "Autre"})
    assert matcher.split_joined("Clients, fournisseurs, Banque") == (["a", "b"], [])
    assert matcher.split_joined("banque, CLIENTS,  fournisseurs") == (["b", "a"], [])
    assert matcher.split_joined("Mairie, Banque") == (["b"], ["Mairie"])


# ---- answer matching, numbers, dates ------------------------------------------------------------


def test_answer_matcher_folds_case_accents_spaces_and_yes_no(cb):
    agree = AnswerMatcher.from_scale(cb.scale_of("cae_decisive"))
    assert agree.match("  OUI,  TOUT A FAIT ") == "tout"
    assert agree.match("Oui, plutôt") == "plutot"
    assert agree.match("plutotpas") == "plutotpas"
    assert agree.match("peut-être") is None
    yes_no = AnswerMatcher.from_scale(cb.scale_of("training_received"))
    assert [yes_no.match(v) for v in ("Y", "N", "1", "0", "Oui", "non")] == ["oui", "non", "oui", "non", "oui", "non"]
    assert normalise_label("Aujourd’hui : NON CONCERNÉ") == normalise_label("aujourd'hui: non concerne")


@pytest.mark.parametrize(
    ("text", "value"),
    [("1200", 1200.0), ("1 200,50 €", 1200.5), ("1\u00a0500", 1500.0), ("2.000", 2000.0), ("7,5", 7.5),
     ("3.0000000000", 3.0), ("-500", -500.0), ("12 mois", 12.0), ("environ 1500", None), ("=2*30", None), ("", None)],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-03-14 10:22:31", dt.datetime(2026, 3, 14, 10, 22, 31)),
        ("2026-03-14T10:22:31.120+01:00", dt.datetime(2026, 3, 14, 10, 22, 31)),
        ("14/03/2026 10:22:31", dt.datetime(2026, 3, 14, 10, 22, 31)),
        ("14/03/2026", dt.datetime(2026, 3, 14)),
        ("2026/03/14 1:22:31 PM UTC+1", dt.datetime(2026, 3, 14, 13, 22, 31)),
        ("31/02/2026", None),
        ("hier", None),
    ],
)
def test_parse_datetime(text, value):
    assert parse_datetime(text) == value


# ---- spreadsheet with a mapping file; unmapped columns ---------------------------------------------


def test_spreadsheet_cp1252_with_mapping(cb):
    raw = read_export(MALFORMED / "tableur.csv", "spreadsheet", mapping=MALFORMED / "tableur_mapping.yaml", codebook=cb)
    assert (raw.encoding, raw.separator) == ("cp1252", ";")
    frame = raw.frame
    assert frame["sex"].tolist() == ["f", "m", "f"]  # « femme » typed in lower case still maps
    assert frame["cae_decisive"].tolist() == ["plutot", "tout", "nsp"]  # mapping values, odd spacing/case
    assert frame["protection_access"].tolist()[0] == ("mutuelle",)
    assert frame["protection_access"].isna().tolist()[1]  # « NC » = not asked
    assert frame["_submitted_at"].tolist() == ["2026-03-02 00:00:00", "2026-03-03 00:00:00", "2026-03-04 00:00:00"]
    assert "Saisi par" in raw.removed_columns
    assert parse_number(frame.loc[0, "income_before"]) == 1200.5


def test_unmapped_column_reported_by_name_and_never_read(tmp_path, cb):
    text = (MALFORMED / "valid_minimal.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    lines[0] += ";Commentaire du conseiller"
    lines[1] += ";Rappeler Mme Dupont au 06 39 98 00 01"
    lines[2] += ";"
    lines[3] += ";"
    path = tmp_path / "export.csv"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    raw = read_export(path, "limesurvey", codebook=cb)
    assert raw.unmapped_columns == ["Commentaire du conseiller"]
    problem = next(p for p in raw.problems if p.code == "unmapped_column")
    assert problem.column == "Commentaire du conseiller"
    assert not raw.frame.astype(str).apply(lambda c: c.str.contains("Dupont")).any().any()


def test_csv_spreadsheet_with_title_rows_above_the_header(tmp_path, cb):
    data = (MALFORMED / "tableur.csv").read_bytes()
    (tmp_path / "tableur.csv").write_bytes("Enquête CAE-IMPACT — saisie\r\n\r\n".encode("cp1252") + data)
    mapping = (MALFORMED / "tableur_mapping.yaml").read_text(encoding="utf-8")
    mapping = mapping.replace('separator: ";"\n', "").replace("header_row: 1", "header_row: 3")
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    raw = read_export(tmp_path / "tableur.csv", "spreadsheet", codebook=cb)  # mapping.yaml found beside
    assert raw.separator == ";" and raw.header_line == 3
    assert raw.frame["_line"].tolist() == [4, 5, 6]


def test_second_column_for_a_question_reported_not_read(tmp_path, cb):
    lines = (MALFORMED / "valid_minimal.csv").read_text(encoding="utf-8").splitlines()
    lines = [lines[0] + ";SEXE"] + [line + ";m" for line in lines[1:]]
    path = tmp_path / "export.csv"
    path.write_text("\r\n".join(lines), encoding="utf-8")
    raw = read_export(path, "limesurvey", codebook=cb)
    assert raw.frame["sex"].tolist() == ["f", "m", "f"]
    problem = next(p for p in raw.problems if p.code == "duplicate_column")
    assert problem.column == "SEXE" and "sex" in problem.message
