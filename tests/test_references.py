"""Tests of the national reference table and its loader."""

from __future__ import annotations

import pandas as pd
import pytest

from cae_impact.render.references import (
    DEFAULT_PROFILE_REFERENCES,
    REQUIRED_COLUMNS,
    ReferencesError,
    comparability_caveat,
    default_reference,
    diploma_reference_bands,
    get_reference,
    load_references,
    reference_source_text,
    reference_value_text,
)


@pytest.fixture(scope="module")
def refs():
    return load_references()


def test_every_row_carries_source_year_field_url(refs):
    assert list(refs.columns) == list(REQUIRED_COLUMNS)
    assert len(refs) >= 15
    for col in ("source", "field", "url", "label", "value_as_published"):
        assert refs[col].str.len().gt(0).all(), col
    assert refs["year"].between(2010, 2026).all()
    assert refs["value"].between(0, 1).all()
    assert refs["url"].str.startswith("https://").all()
    assert refs["ref_id"].is_unique


def test_published_figures_of_the_domain_brief(refs):
    v = refs.set_index("ref_id")["value"]
    assert v["sine2022_share_women"] == 0.40
    assert v["sine2022_share_under_40"] == 0.60
    assert v["sine2022_share_bac3plus"] == 0.39
    assert v["sine2022_share_employed_before"] == 0.52
    assert v["sine2018_classic_share_women"] == 0.29
    assert v["sine2018_all_share_women"] == 0.35
    assert v["labour_force2022_share_women"] == 0.488
    row = get_reference("sine2022_share_women", refs)
    assert row["source"] == "Insee Première n°2007, juillet 2024 (enquête SINE 2022)"
    assert "micro-entrepreneurs inclus" in row["field"] and row["year"] == 2022
    assert row["url"] == "https://insee.fr/fr/statistiques/8231755"
    diploma = refs[refs["indicator"] == "diploma_25_64"].set_index("category")["value"]
    assert diploma["none_brevet"] == 0.163 and diploma["above_bac2"] == 0.281
    assert get_reference("sine2022_share_unemployed_before", refs)["approximate"]


def test_defaults_and_texts(refs):
    for indicator, ref_id in DEFAULT_PROFILE_REFERENCES.items():
        assert default_reference(indicator, refs)["ref_id"] == ref_id
    assert reference_value_text(get_reference("sine2022_share_women", refs)) == "40\u202f%"
    assert (
        reference_value_text(get_reference("sine2022_share_under_40", refs)) == "≈\u202f60\u202f%"
    )
    text = reference_source_text(refs[refs["source"].str.contains("n°2007")])
    assert text.startswith("Référence nationale\u00a0: Insee Première n°2007")
    assert text.count("n°2007") == 1  # each source once
    two = reference_source_text(
        refs[refs["ref_id"].isin(["sine2022_share_women", "igas2020_share_es_status"])]
    )
    assert two.startswith("Références nationales") and "IGAS" in two
    with pytest.raises(KeyError):
        get_reference("nope", refs)


def test_diploma_bands(refs):
    bands = diploma_reference_bands(refs).set_index("band")
    assert bands.loc["up_to_bac", "value"] == pytest.approx(0.575)
    assert bands.loc["bac2", "value"] == pytest.approx(0.143)
    assert bands.loc["above_bac2", "value"] == pytest.approx(0.281)
    assert bands["source"].str.contains("Insee").all() and (bands["year"] == 2023).all()


def test_comparability_caveat():
    long, short = comparability_caveat(), comparability_caveat(short=True)
    for text in (long, short):
        assert "contrefactuel" in text and "immatriculent pas d’entreprise" in text
    assert "populations" in long and len(short) < len(long)
    assert "\u00a0:" in long  # French typography applied


def _write(tmp_path, df):
    path = tmp_path / "refs.csv"
    df.to_csv(path, index=False)
    return path


def test_loader_rejects_bad_tables(tmp_path):
    raw = pd.read_csv(
        load_references.__globals__["DEFAULT_REFERENCES_PATH"], dtype=str, keep_default_na=False
    )
    with pytest.raises(ReferencesError, match="missing columns"):
        load_references(_write(tmp_path, raw.drop(columns=["source"])))
    bad = raw.copy()
    bad.loc[0, "source"] = ""
    with pytest.raises(ReferencesError, match="empty source"):
        load_references(_write(tmp_path, bad))
    bad = raw.copy()
    bad.loc[0, "value"] = "40"
    with pytest.raises(ReferencesError, match="not a proportion"):
        load_references(_write(tmp_path, bad))
    bad = raw.copy()
    bad.loc[1, "ref_id"] = bad.loc[0, "ref_id"]
    with pytest.raises(ReferencesError, match="duplicated"):
        load_references(_write(tmp_path, bad))
    bad = raw.copy()
    bad.loc[bad["category"] == "bac", "value"] = "0.5"
    with pytest.raises(ReferencesError, match="sums to"):
        load_references(_write(tmp_path, bad))
