"""Cleaning: each rule on tiny inline exports, then every demo CAE end to end (accounting, privacy)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pandera.errors
import pytest

from cae_impact.clean.cleaning import (
    CLEANING_RULES,
    COMPLETENESS_MIN_SHARE,
    MAX_SUBMISSIONS_PER_IDENTIFIER,
    QUARANTINE_COLUMNS,
    clean_export,
    clean_responses,
    read_quarantine,
    rules_markdown,
    validate_export,
    write_processed,
)
from cae_impact.clean.schema import processed_schema, validate_processed
from cae_impact.clean.validate import main_validate
from cae_impact.ingest import read_export, read_table
from cae_impact.privacy.personal_data import EMAIL_RE, PHONE_RE
from cae_impact.spec.config import load_study

ROOT = Path(__file__).resolve().parents[1]
KEY = b"test-key-0123456789abcdef"

HEADER = ["id", "submitdate", "lastpage", "startlanguage", "seed", "token", "ipaddr", "qversion", "sexe",
          "etape", "anciennete", "statutAvant", "droitsDecisifs", "protection[mutuelle]",
          "protection[prevoyance]", "protection[aucune]", "protection[nsp]", "caeDecisive", "moisFacture",
          "revenuAvant", "remarques"]


def row(n: int, **values: str) -> dict[str, str]:
    """A complete LimeSurvey response (codes), overridden by ``values`` (header names)."""
    base = {
        "id": str(n), "submitdate": f"2026-03-{n:02d} 09:00:00", "lastpage": "8", "startlanguage": "fr",
        "seed": str(100 + n), "token": f"tok{n:04d}xyz", "ipaddr": f"192.0.2.{n}", "qversion": "2026.1",
        "sexe": "f", "etape": "cesa", "anciennete": "moins3", "statutAvant": "dei", "droitsDecisifs": "tout",
        "protection[mutuelle]": "Y", "caeDecisive": "plutot", "moisFacture": "2", "revenuAvant": "1200",
    }
    base.update(values)
    return base


def limesurvey(tmp_path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    """Write a LimeSurvey-style export (UTF-8 BOM, ``;``, all quoted, CRLF)."""
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow(header)
        for r in rows:
            writer.writerow([r.get(h, "") for h in header])
    return path


def clean(tmp_path, cb, rows, header=HEADER):
    raw = read_export(limesurvey(tmp_path, rows, header), "limesurvey", codebook=cb)
    return clean_responses(raw, cb, cae_id="cae-t", wave="2026", key=KEY)


def entries(result, reason):
    q = result.quarantine
    return q[q["reason"] == reason].reset_index(drop=True)


# ---- rules, one by one ------------------------------------------------------------------------


def test_clean_export_keeps_codes_and_contract_columns(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1), row(2, sexe="m", etape="cape", **{"protection[mutuelle]": ""})])
    frame = result.responses
    assert list(frame.columns) == list(cb.processed_columns())
    assert frame["sex"].tolist() == ["f", "m"]
    assert frame["protection_access__mutuelle"].tolist()[0] is True
    assert frame["protection_access__mutuelle"].isna().tolist()[1]  # CAPE: not asked
    assert str(frame["submitted_at"].dtype) == "datetime64[ns]"
    assert frame["cae_id"].eq("cae-t").all() and frame["wave"].eq("2026").all()
    assert result.accounting.kept == 2 and result.quarantine.empty


def test_labels_recoded_whatever_case_accents_and_spaces(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1, caeDecisive="  OUI, plutot ", sexe="UNE FEMME", anciennete="Moins de 3 ans")])
    assert result.responses.loc[0, ["cae_decisive", "sex", "seniority"]].tolist() == ["plutot", "f", "moins3"]


def test_unknown_code_blanked_with_line_and_column(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1), row(2, caeDecisive="A9")])
    found = entries(result, "unknown_code")
    assert found[["raw_line", "column", "question_id", "value", "action"]].values.tolist() == [
        [3, "caeDecisive", "cae_decisive", "A9", "value_blanked"]
    ]
    assert pd.isna(result.responses.loc[1, "cae_decisive"])


def test_out_of_range_and_non_numbers_blanked_with_reason(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1, moisFacture="150"), row(2, revenuAvant="-500"), row(3, revenuAvant="beaucoup"),
                                  row(4, revenuAvant="1 500,50 €")])
    ranges = entries(result, "out_of_range")
    assert ranges["raw_line"].tolist() == [2, 3]
    assert "[0 ; 60] mois" in ranges.loc[0, "detail"]
    assert entries(result, "not_a_number")["value"].tolist() == ["beaucoup"]
    assert result.responses["income_before"].tolist()[3] == 1500.5
    assert result.responses["months_to_first_invoice"].isna().tolist() == [True, False, False, False]


def test_exclusive_choice_with_another_blanks_the_question(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1, **{"protection[aucune]": "Y"})])
    assert entries(result, "exclusive_conflict")["value"].tolist() == ["mutuelle, aucune"]
    codes = cb.scale_of("protection_access").codes
    assert result.responses.loc[0, [f"protection_access__{c}" for c in codes]].isna().all()


def test_answer_to_a_question_not_asked_is_blanked(tmp_path, cb):
    # rights_kept_role is asked only to former job seekers and RSA recipients
    result = clean(tmp_path, cb, [row(1, statutAvant="salarie", droitsDecisifs="tout")])
    found = entries(result, "not_relevant")
    assert found["question_id"].tolist() == ["rights_kept_role"]
    assert "${prior_status}" in found.loc[0, "detail"]
    assert pd.isna(result.responses.loc[0, "rights_kept_role"])


def test_answer_kept_when_the_filter_question_is_blank(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1, statutAvant="", droitsDecisifs="tout")])
    assert entries(result, "not_relevant").empty
    assert result.responses.loc[0, "rights_kept_role"] == "tout"


def test_duplicates_keep_most_complete_then_latest(tmp_path, cb):
    rows = [
        row(1, token="same", caeDecisive="tout"),
        row(2, token="same", caeDecisive="", moisFacture=""),  # later but less complete
        row(3, token="twice", caeDecisive="tout"),
        row(4, token="twice", caeDecisive="plutotpas"),  # as complete, later: kept
    ]
    result = clean(tmp_path, cb, rows)
    assert result.accounting.merged_duplicates == 2 and result.accounting.kept == 2
    dups = entries(result, "duplicate")
    assert dups["raw_line"].tolist() == [3, 4]
    assert "ligne 2" in dups.loc[0, "detail"] and "ligne 5" in dups.loc[1, "detail"]
    assert result.responses["cae_decisive"].tolist() == ["tout", "plutotpas"]
    assert "same" not in dups.to_csv() and "twice" not in dups.to_csv()


def test_duplicates_linked_by_email_case_insensitively(tmp_path, cb):
    header = [*HEADER, "email"]
    rows = [row(1, email="Camille.M@example.org"), row(2, email="camille.m@EXAMPLE.org"), row(3, email="autre@example.org")]
    result = clean(tmp_path, cb, rows, header)
    assert result.accounting.merged_duplicates == 1 and result.accounting.kept == 2


def test_identifier_shared_by_many_rows_is_not_used(tmp_path, cb):
    n = MAX_SUBMISSIONS_PER_IDENTIFIER + 1
    result = clean(tmp_path, cb, [row(i, token="test") for i in range(1, n + 1)])
    assert result.accounting.merged_duplicates == 0 and result.accounting.kept == n
    assert any(p.code == "shared_identifier" for p in result.problems)
    assert result.responses["respondent_id"].is_unique


def test_incomplete_and_required_missing_set_aside(tmp_path, cb):
    sparse = {h: "" for h in ("sexe", "statutAvant", "droitsDecisifs", "protection[mutuelle]", "caeDecisive", "moisFacture")}
    result = clean(tmp_path, cb, [row(1), row(2, **sparse), row(3, etape=""), row(4, submitdate="", lastpage="2")])
    acc = result.accounting
    assert acc.set_aside["incomplete"] == 1 and acc.set_aside["required_missing"] == 1 and acc.kept == 2
    incomplete = entries(result, "incomplete")
    assert incomplete["raw_line"].tolist() == [3] and incomplete.loc[0, "action"] == "row_set_aside"
    assert f"seuil {COMPLETENESS_MIN_SHARE:.0%}".replace("%", " %") in incomplete.loc[0, "detail"]
    assert "contract_stage" in entries(result, "required_missing").loc[0, "detail"]
    assert result.responses["submitted_at"].isna().tolist() == [False, True]  # abandoned: no submit date


def test_other_version_rows_set_aside(tmp_path, cb):
    result = clean(tmp_path, cb, [row(1), row(2, qversion="2025.2")])
    assert result.accounting.set_aside["other_version"] == 1
    assert "2025.2" in entries(result, "other_version").loc[0, "detail"]


def test_free_text_masked_and_identifiers_pseudonymised(tmp_path, cb):
    rows = [row(1, remarques="Écrivez-moi : camille@example.org ou 06 39 98 12 34"), row(2)]
    result = clean(tmp_path, cb, rows)
    assert result.responses.loc[0, "remarks"] == "Écrivez-moi : [courriel masqué] ou [téléphone masqué]"
    assert {k: result.log["free_text_masked"][k] for k in ("emails", "phones", "texts_changed")} == {"emails": 1, "phones": 1, "texts_changed": 1}
    ids = result.responses["respondent_id"].tolist()
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids) and ids[0] != ids[1]
    again = clean(tmp_path, cb, rows)
    assert again.responses["respondent_id"].tolist() == ids  # same key, same pseudonyms
    raw = read_export(limesurvey(tmp_path, rows), "limesurvey", codebook=cb)
    other = clean_responses(raw, cb, cae_id="cae-t", wave="2026", key=b"another-key-0123456789")
    assert set(other.responses["respondent_id"]).isdisjoint(ids)


def test_schema_rejects_extra_columns_and_bad_codes(tmp_path, cb):
    frame = clean(tmp_path, cb, [row(1)]).responses
    with pytest.raises(pandera.errors.SchemaErrors):
        validate_processed(frame.assign(token="tok0001xyz"), cb)
    bad = frame.copy()
    bad["sex"] = pd.Series(["x"], dtype="string")
    with pytest.raises(pandera.errors.SchemaErrors):
        validate_processed(bad, cb)
    assert processed_schema(cb).strict is True


# ---- outputs -------------------------------------------------------------------------------------


def test_write_processed_atomic_neutralised_and_reproducible(tmp_path, cb):
    rows = [row(1, caeDecisive="=1+1"), row(2, caeDecisive="@SUM(A1)"), row(3, token="tok0001xyz")]
    result = clean(tmp_path, cb, rows)
    out = tmp_path / "processed" / "cae-t"
    paths = write_processed(result, out)
    assert sorted(p.name for p in out.iterdir()) == ["cleaning_log.json", "quarantine.csv", "responses.parquet"]
    text = paths["quarantine"].read_text(encoding="utf-8-sig")
    assert "'=1+1" in text and "'@SUM(A1)" in text
    quarantine = read_quarantine(paths["quarantine"])
    assert list(quarantine.columns) == list(QUARANTINE_COLUMNS)
    log = json.loads(paths["log"].read_text(encoding="utf-8"))
    assert log["accounting"]["identity_holds"] is True
    assert [r["id"] for r in log["rules"]] == [r.id for r in CLEANING_RULES]
    first = {name: p.read_bytes() for name, p in paths.items()}
    again = write_processed(clean(tmp_path, cb, rows), out)
    assert {name: p.read_bytes() for name, p in again.items()} == first
    pd.testing.assert_frame_equal(pd.read_parquet(paths["responses"]), result.responses, check_dtype=True)


def test_rules_documented_once_in_docs():
    doc = (ROOT / "docs" / "cleaning-rules.md").read_text(encoding="utf-8")
    start, end = doc.index("<!-- rules:start -->\n"), doc.index("<!-- rules:end -->")
    assert doc[start + len("<!-- rules:start -->\n") : end] == rules_markdown(), (
        "docs/cleaning-rules.md is out of date: paste rules_markdown() between the markers"
    )


# ---- every demo CAE, end to end ------------------------------------------------------------------


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
    return demo_study(tmp_path_factory)


@pytest.fixture(scope="module")
def demo_cleaned(demo, cb, tmp_path_factory):
    study, respondents, _ = demo
    out = tmp_path_factory.mktemp("processed")
    results = {}
    for cae in study.caes:
        result = clean_export(study, cae.id, codebook=cb, key=KEY)
        results[cae.id] = (result, write_processed(result, out / cae.id))
    return results


@pytest.mark.parametrize("cae_id", [f"cae-{i}" for i in range(1, 8)])
def test_demo_accounting_identity_and_generator_counts(demo, demo_cleaned, cae_id):
    _, respondents, _ = demo
    result, _ = demo_cleaned[cae_id]
    acc = result.accounting
    assert acc.raw_rows == acc.kept + acc.set_aside_total + acc.merged_duplicates
    counts = respondents[cae_id]
    assert acc.raw_rows == counts["rows"]
    # abandoned questionnaires are the incomplete ones; complete + repeated submissions are the
    # rest, but for a required answer typed illegibly in a spreadsheet (blanked, then set aside)
    assert acc.set_aside["incomplete"] == counts["partial"]
    required = acc.set_aside["required_missing"]
    assert acc.kept + acc.merged_duplicates + required == counts["complete"] + counts["duplicate"]
    assert acc.merged_duplicates >= counts["duplicate"]
    q = result.quarantine
    row_entries = q[q["action"] == "row_set_aside"]
    assert len(row_entries) == acc.set_aside_total + acc.merged_duplicates
    for line in row_entries.loc[row_entries["reason"] == "required_missing", "raw_line"]:
        blanked = q[(q["raw_line"] == line) & (q["action"] == "value_blanked")]
        assert blanked["question_id"].isin(["contract_stage", "seniority"]).any()


def _raw_identifiers(path: Path, mapping: Path | None) -> set[str]:
    """Every token, e-mail, participation id, IP and response id of a raw export."""
    header_row, sheet = 1, None
    if mapping is not None:
        import yaml

        spec = yaml.safe_load(mapping.read_text(encoding="utf-8"))
        header_row, sheet = spec.get("header_row", 1), spec.get("sheet")
    table = read_table(path, sheet=sheet, header_line=header_row)
    wanted = {"token", "ipaddr", "rid", "_uuid", "adresse e-mail", "_submitted_by", "n° questionnaire"}
    found: set[str] = set()
    for j, name in enumerate(table.header):
        if name.casefold() in wanted:
            found |= {r[j] for r in table.rows if len(r[j]) >= 5}
    return found


@pytest.mark.parametrize("cae_id", [f"cae-{i}" for i in range(1, 8)])
def test_no_personal_data_in_written_files(demo, demo_cleaned, cae_id):
    study, _, _ = demo
    cae = study.cae(cae_id)
    _, paths = demo_cleaned[cae_id]
    identifiers = _raw_identifiers(cae.export, cae.mapping)
    responses = pd.read_parquet(paths["responses"])
    texts = [responses.astype("string").fillna("").to_csv(index=False),
             paths["quarantine"].read_text(encoding="utf-8-sig"), paths["log"].read_text(encoding="utf-8")]
    for text in texts:
        assert not EMAIL_RE.search(text), EMAIL_RE.search(text)
        cells = re.split(r"[,\n\"]", text)
        assert not any(PHONE_RE.search(c) for c in cells if not re.fullmatch(r"[0-9a-f]{20}", c))
        leaked = [i for i in identifiers if i in text]
        assert leaked == []
    assert not {"token", "ipaddr", "email", "rid"} & set(responses.columns)


def test_demo_free_texts_with_contact_details_are_masked(demo_cleaned):
    masked = sum(result.log["free_text_masked"]["texts_changed"] for result, _ in demo_cleaned.values())
    assert masked > 0


def test_validate_demo_export_usable(demo, cb, capsys):
    study, _, _ = demo
    cae = study.cae("cae-3")
    report = validate_export(cae.export, codebook=cb)
    assert report.usable and report.format == "googleforms"
    assert report.accounting.raw_rows == report.accounting.kept + report.accounting.set_aside_total + report.accounting.merged_duplicates
    assert main_validate([str(study.cae("cae-4").export), "--mapping", str(study.cae("cae-4").mapping)]) == 0
    out = capsys.readouterr().out
    assert "Bilan des lignes" in out and "export UTILISABLE" in out


def test_personal_data_as_people_type_it_never_reaches_processed(tmp_path, cb):
    """Issue 15: spaced phones, obfuscated e-mails, IPs, names and control characters."""
    typed = ("Appelez-moi au 06 12 345 678 ou +33 6 98 76 54 32, nom @ orange.fr, "
             "jean arobase free point fr, IP 192.168.1.34\x00\x1b — je m'appelle Jean Dupont")
    result = clean(tmp_path, cb, [row(1, remarques=typed), row(2)])
    text = result.responses.loc[0, "remarks"]
    for leaked in ("345 678", "98 76", "orange", "free", "192.168", "Dupont", "\x00", "\x1b"):
        assert leaked not in text, (leaked, text)
    paths = write_processed(result, tmp_path / "out")
    from cae_impact.clean.privacy_scan import scan_tree

    assert scan_tree([tmp_path / "out"]) == []
    masked = result.log["free_text_masked"]
    assert masked["phones"] == 2 and masked["emails"] == 2 and masked["ips"] == 1 and masked["names"] == 1
    assert paths["responses"].exists()
