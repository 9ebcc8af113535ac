"""The personal-data scanner finds raw identifiers wherever they would leak, and only there."""


import pandas as pd

from cae_impact.config import load_study
from cae_impact.privacy_scan import collect_raw_identifiers, scan_tree


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
    from cae_impact.cleaning import clean_export, write_processed

    study = load_study()
    for cae in study.caes:
        write_processed(clean_export(study, cae.id), tmp_path / cae.id)
    assert scan_tree([tmp_path], collect_raw_identifiers(study)) == []
