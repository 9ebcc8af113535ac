"""The study-wide indicator table: design, estimates by target and group, tests, disclosure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cae_impact import estimation as survey
from cae_impact.analysis import indicators as I
from cae_impact.clean.cleaning import clean_export
from cae_impact.render import tables_fr
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, load_study


@pytest.fixture(scope="module")
def demo():
    study = load_study()
    cb = load_codebook(study.codebook)
    responses = pd.concat([clean_export(study, c.id, codebook=cb).responses for c in study.caes], ignore_index=True)
    return study, cb, responses


@pytest.fixture(scope="module")
def estimates(demo):
    study, cb, responses = demo
    inds = [cb.indicator(i) for i in ("cae_decisive", "peer_exchange_distribution", "income_change",
                                      "protection_access", "months_to_first_invoice")]
    return I.estimate_study(responses, study, cb, indicators=inds)


def test_design_weights_sum_to_register_and_calibrate(demo, estimates):
    study, cb, responses = demo
    w = estimates.weighting
    weights = pd.Series(w.design.weights)
    cae = responses["cae_id"].reset_index(drop=True)
    for c in study.caes:
        assert weights[cae == c.id].sum() == pytest.approx(c.population.total, rel=1e-9)
    per = w.per_cae.set_index("cae_id")
    assert (per["response_rate"] < 1).all() and (per["kish_deff"] >= 1 - 1e-9).all()
    # post-stratified on sex x stage: the weighted share of associés matches the register where no cell was collapsed
    c5 = study.cae("cae-5")
    m = (cae == "cae-5").to_numpy()
    resp5 = responses[m.tolist()].reset_index(drop=True)
    known = resp5["contract_stage"].notna() & resp5["sex"].notna()
    assoc = weights[m].reset_index(drop=True)[(resp5["contract_stage"] == "associe") & known].sum()
    register_assoc = sum(st.get("associe", 0) for st in c5.population.by_sex_stage.values())
    unknown = (~known).sum() * c5.population.total / len(resp5)
    assert assoc == pytest.approx(register_assoc * (c5.population.total - unknown) / c5.population.total, rel=1e-6)


def test_cae_rows_are_domains_of_the_consortium_design(demo, estimates):
    study, cb, responses = demo
    t = estimates.table
    row = t[(t.indicator_id == "cae_decisive") & (t.target == "cae-2") & (t.breakdown == "total")].iloc[0]
    y = I.share_variable(responses.reset_index(drop=True), cb, "cae_decisive", ["tout", "plutot"])
    direct = survey.proportion(estimates.weighting.design, y, domain=(responses["cae_id"] == "cae-2").to_numpy())
    assert row["estimate"] == pytest.approx(direct.estimate) and row["se"] == pytest.approx(direct.se)
    assert row["ci_low"] < row["estimate"] < row["ci_high"]
    assert row["n_unweighted"] == int((~np.isnan(y) & (responses["cae_id"] == "cae-2").to_numpy()).sum())
    assert row["comparison"] == CONSORTIUM and 0 <= row["p_value"] <= 1


def test_distribution_sums_to_one_and_paired_rows(estimates):
    t = estimates.table
    d = t[(t.indicator_id == "peer_exchange_distribution") & (t.target == CONSORTIUM) & (t.breakdown == "total")]
    assert d["estimate"].sum() == pytest.approx(1.0)
    p = t[(t.indicator_id == "income_change") & (t.target == CONSORTIUM) & (t.breakdown == "total")].set_index("category")
    assert p.loc["difference", "estimate"] == pytest.approx(p.loc["after", "estimate"] - p.loc["before", "estimate"])
    assert p.loc["difference", "unit"] == "eur" and p.loc["difference", "test"] == I.TEST_PAIRED


def test_disclosure_is_consistent_across_reports(estimates):
    t = estimates.table
    small = t[(t["n_count"].between(1, 4)) | ((t["n_unweighted"] - t["n_count"]).between(1, 4))]
    assert small["suppressed"].all() and small["estimate"].isna().all()
    for target in ("cae-1", CONSORTIUM):
        rt = I.report_table(t, target)
        merged = rt.merge(t, on=["indicator_id", "target", "breakdown", "group", "category"], suffixes=("", "_study"))
        assert (merged["suppressed"] == merged["suppressed_study"]).all(), "a report cannot unhide a cell"


def test_significance_only_after_bh(estimates):
    for target in ("cae-3", CONSORTIUM):
        rt = I.report_table(estimates.table, target, fdr_alpha=0.05)
        sig = rt["significant"].fillna(False).astype(bool)
        assert (rt.loc[sig, "p_adjusted"] < 0.05).all()
        assert (rt.loc[rt["p_adjusted"].notna(), "p_adjusted"] >= rt.loc[rt["p_adjusted"].notna(), "p_value"] - 1e-12).all()
        assert rt.loc[rt["p_value"].isna(), "significant"].isna().all()


def test_report_rows(estimates):
    t = estimates.table
    cae = I.report_table(t, "cae-4")
    assert set(cae["target"]) == {"cae-4", CONSORTIUM}
    assert (cae.loc[cae["target"] == CONSORTIUM, "breakdown"] == "total").all()
    cons = I.report_table(t, CONSORTIUM)
    assert {"cae-1", "cae-7", CONSORTIUM} <= set(cons["target"])


def test_indicator_files_neutralise_formulas(tmp_path):
    frame = pd.DataFrame({"indicator_label": ["=HYPERLINK(\"x\")", "ok"], "estimate": [0.5, 0.25]})
    csv, xlsx = tables_fr.write_indicator_files(frame, tmp_path)
    text = csv.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text or "\t=HYPERLINK" in text or "=HYPERLINK" not in text.split("\n")[1][:1]
    import openpyxl

    ws = openpyxl.load_workbook(xlsx).active
    assert ws["A2"].data_type != "f"


def test_indicator_xlsx_holds_the_csv_values(tmp_path, estimates):
    """The spreadsheet holds what the CSV holds, under French headers; empty = missing."""
    import openpyxl

    from cae_impact.render import tables_fr

    table = I.report_table(estimates.table, "cae-2", 0.05)
    csv, xlsx = tables_fr.write_indicator_files(table, tmp_path)
    from_csv = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    from_xlsx = pd.read_excel(xlsx, sheet_name=tables_fr.SHEET_DATA, keep_default_na=False, na_values=[""])
    header = {c.source: c.header for c in tables_fr.COLUMNS}
    assert len(from_xlsx) == len(from_csv)
    for col in ("estimate", "ci_low", "ci_high", "se", "p_value", "p_adjusted", "n_unweighted", "base_weighted"):
        np.testing.assert_allclose(from_xlsx[header[col]].to_numpy(float), from_csv[col].to_numpy(float),
                                   rtol=1e-8, atol=1e-9, equal_nan=True)
    assert from_xlsx[header["indicator_id"]].tolist() == from_csv["indicator_id"].tolist()
    ws = openpyxl.load_workbook(xlsx)[tables_fr.SHEET_DATA]
    assert ws["A1"].font.bold and ws.max_row == len(table) + 1
    col = list(from_xlsx.columns).index(header["p_value"]) + 1
    cells = [r[0] for r in ws.iter_rows(min_row=2, min_col=col, max_col=col, values_only=True)]
    assert [v is None for v in cells] == table["p_value"].isna().tolist()


def test_indicator_xlsx_is_for_a_french_analyst(tmp_path, demo, estimates):
    """French headers, domain names, number formats, frozen header, filter, widths, dictionary."""
    import openpyxl

    from cae_impact.render import tables_fr

    study, cb, _ = demo
    table = I.report_table(estimates.table, "cae-2", 0.05)
    table.loc[table.index[0], "se"] = 1.26e-17  # a float that must not show as such
    _, xlsx = tables_fr.write_indicator_files(table, tmp_path, cb)
    book = openpyxl.load_workbook(xlsx)
    assert book.sheetnames == [tables_fr.SHEET_DATA, tables_fr.SHEET_DICTIONARY]
    ws = book[tables_fr.SHEET_DATA]
    headers = [c.value for c in ws[1]]
    assert "Indicateur" in headers and "Domaine" in headers and "Estimation" in headers
    assert not [h for h in headers if "_" in h], headers  # no snake_case
    assert ws.freeze_panes == "C2"
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, len(headers)).column_letter}{ws.max_row}"
    rows = list(ws.iter_rows(min_row=2))
    dom = headers.index("Domaine")
    names = {f"{d.number}. {d.title}" for d in cb.domains} | {"Profil des répondants"}
    assert {r[dom].value for r in rows} <= names
    est, unit = headers.index("Estimation"), headers.index("Unité")
    formats = {(r[unit].value, r[est].number_format) for r in rows if r[est].value is not None}
    assert ("%", "0.0%") in formats and ("€", '#,##0\\ "€"') in formats
    assert {r[headers.index("Ventilation")].value for r in rows} <= set(tables_fr.BREAKDOWNS.values())
    n = headers.index("Répondants (base)")
    assert all(isinstance(r[n].value, int) and r[n].number_format == "0" for r in rows if r[n].value is not None)
    assert not [c.value for r in rows for c in r if isinstance(c.value, float) and c.value != c.value]
    se = headers.index("Erreur type")
    assert rows[0][se].value == 0.0
    for letter in ("A", "B", "C"):
        assert 8 <= ws.column_dimensions[letter].width <= 60
    assert ws.column_dimensions["B"].width > ws.column_dimensions["A"].width  # labels are wide
    dico = [[c.value for c in r] for r in book[tables_fr.SHEET_DICTIONARY].iter_rows()]
    explained = {r[0] for r in dico}
    assert set(headers) <= explained  # every column is explained
    assert "s" in explained and "suppression secondaire" in explained and "effectif < 5" in explained


def test_published_code_of_hidden_and_banded_cells():
    from cae_impact.render import tables_fr

    frame = pd.DataFrame({"indicator_id": ["a", "b", "c"], "unit": ["pct"] * 3, "estimate": [np.nan, np.nan, 0.4],
                          "suppressed": [True, True, False],
                          "suppression_reason": ["effectif < 5", "valeur en tranche", ""],
                          "band_low": [np.nan, 0.9, np.nan], "band_high": [np.nan, np.nan, np.nan]})
    fr, _ = tables_fr.french_frame(frame)
    assert fr["Valeur publiée"].tolist() == ["s", "≥ 90\u202f%", None]
    assert fr["Masquée"].tolist() == ["oui", "oui", "non"]


def test_excel_csv_opens_in_french_excel(tmp_path, demo, estimates):
    """indicateurs_excel.csv: BOM, « ; », decimal comma; indicators.csv unchanged beside it."""
    from cae_impact.render import tables_fr

    study, cb, _ = demo
    table = I.report_table(estimates.table, "cae-2", 0.05)
    csv, _ = tables_fr.write_indicator_files(table, tmp_path, cb)
    raw = (tmp_path / tables_fr.EXCEL_CSV_NAME).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    head = text.splitlines()[0].split(";")
    assert head[:3] == ["Code indicateur", "Indicateur", "Domaine"]
    back = pd.read_csv(tmp_path / tables_fr.EXCEL_CSV_NAME, sep=";", decimal=",", encoding="utf-8-sig")
    assert len(back) == len(table) and len(back.columns) == len(head)
    np.testing.assert_allclose(back["Estimation"].to_numpy(float), table["estimate"].to_numpy(float),
                               rtol=1e-8, atol=1e-9, equal_nan=True)
    fields = [f for line in text.splitlines() for f in line.split(";")]
    assert "nan" not in fields and "None" not in fields, "a missing value is an empty cell"
    assert ";;" in text
    machine = csv.read_text(encoding="utf-8")
    assert machine.splitlines()[0].startswith("indicator_id,indicator_label,domain_id")
    assert not machine.startswith("\ufeff")


def test_register_smaller_than_respondents_is_an_error(demo):
    study, cb, responses = demo
    from dataclasses import replace

    from cae_impact.spec.config import Population

    bad = replace(study, caes=tuple(replace(c, population=Population(total=5)) if c.id == "cae-1" else c for c in study.caes))
    with pytest.raises(I.EstimationError, match="cae-1: .* respondents kept but the register counts 5"):
        I.build_design(responses, bad, cb)


def test_indicator_files_are_reproducible(tmp_path):
    frame = pd.DataFrame({"indicator_id": ["a", "b"], "estimate": [0.5, 0.25]})
    first = [p.read_bytes() for p in tables_fr.write_indicator_files(frame, tmp_path / "one")]
    import time

    time.sleep(2.1)  # zip member times have a 2-second resolution
    second = [p.read_bytes() for p in tables_fr.write_indicator_files(frame, tmp_path / "two")]
    assert first == second


def test_cae_rows_are_the_cae_own_design_and_the_consortium_domain(demo, estimates):
    """A CAE's rows are computed on its own design (its rows, weights and post-strata): equal to
    that computation, and up to rounding to the domain estimates of the whole consortium design;
    its comparison with the rest is the whole design's."""
    study, cb, responses = demo
    t = estimates.table
    design = estimates.weighting.design
    data = responses.reset_index(drop=True)
    ind = cb.indicator("cae_decisive")
    y = I.share_variable(data, cb, ind.rule["question"], list(ind.rule["codes"]))
    checked = 0
    for cae in study.cae_ids:
        row = t[(t.indicator_id == ind.id) & (t.target == cae) & (t.breakdown == "total")].iloc[0]
        if row["suppressed"]:
            continue
        mask = (data["cae_id"] == cae).to_numpy()
        own = survey.proportion(design.rows(np.flatnonzero(mask)), y[mask],
                                method=study.report.interval_method)
        got = (row["estimate"], row["se"], row["ci_low"], row["ci_high"])
        np.testing.assert_allclose(got, (own.estimate, own.se, own.ci_low, own.ci_high), rtol=1e-11)
        direct = survey.proportion(design, y, domain=mask, method=study.report.interval_method)
        np.testing.assert_allclose(got, (direct.estimate, direct.se, direct.ci_low, direct.ci_high), rtol=1e-9)
        assert row["p_value"] == pytest.approx(survey.compare_domains(design, y, mask).p_value, rel=1e-9)
        checked += 1
    assert checked >= 5


def test_a_cae_rows_do_not_depend_on_other_caes_data(demo):
    """One respondent fewer in CAE 1 leaves every other CAE's rows unchanged, to rounding
    (but their test against the rest of the consortium, which is about the others)."""
    study, cb, responses = demo
    inds = [cb.indicator(i) for i in ("cae_decisive", "peer_exchange_distribution", "income_change",
                                      "protection_access", "months_to_first_invoice")]
    before = I.estimate_study(responses, study, cb, indicators=inds).table
    drop = responses.index[responses["cae_id"] == "cae-1"][-1]
    after = I.estimate_study(responses.drop(index=drop), study, cb, indicators=inds).table
    assert not before[before.target == "cae-1"].astype(str).equals(after[after.target == "cae-1"].astype(str))
    for cae in study.cae_ids[1:]:
        a = before[(before.target == cae)].reset_index(drop=True)
        b = after[(after.target == cae)].reset_index(drop=True)
        own = a["comparison"] != CONSORTIUM
        pd.testing.assert_frame_equal(a[own], b[own], check_exact=False, rtol=1e-12, atol=0)
        assert (a.loc[~own, "p_value"] != b.loc[~own, "p_value"]).any() or own.all()


def test_a_cae_costs_the_same_whatever_the_number_of_caes(demo, monkeypatch):
    """Guard against quadratic time: doubling the number of CAEs (each CAE again under another
    id) doubles the design work on the CAEs' own rows (svy samples, and the in-house
    linearisations of ``estimation.domains``, counted by the design they run on); the whole-sample
    evaluations (the consortium's estimates, one comparison of all CAEs with the rest per
    tested indicator) do not grow with the number of CAEs."""
    from dataclasses import replace

    from cae_impact.estimation import domains

    study, cb, responses = demo
    copies = responses.copy()
    copies["cae_id"] = copies["cae_id"] + "-bis"
    bigger = replace(study, caes=study.caes + tuple(replace(c, id=f"{c.id}-bis", label=f"{c.label} bis")
                                                    for c in study.caes))
    inds = [cb.indicator(i) for i in ("cae_decisive", "peer_exchange_distribution", "income_change",
                                      "months_to_first_invoice")]
    real = survey.SurveyDesign.sample
    real_lin = domains._calibrated

    def run(st, resp):
        calls = []

        def counting(self, columns=None):
            calls.append(self.n)
            return real(self, columns)

        def counting_lin(design, ix, Z):
            calls.append(design.n)
            return real_lin(design, ix, Z)

        monkeypatch.setattr(survey.SurveyDesign, "sample", counting)
        monkeypatch.setattr(domains, "_calibrated", counting_lin)
        I.estimate_study(resp, st, cb, indicators=inds)
        monkeypatch.setattr(survey.SurveyDesign, "sample", real)
        monkeypatch.setattr(domains, "_calibrated", real_lin)
        return [m for m in calls if m < len(resp)], [m for m in calls if m == len(resp)]

    own_small, full_small = run(study, responses)
    own_big, full_big = run(bigger, pd.concat([responses, copies], ignore_index=True))
    largest_cae = int(responses["cae_id"].value_counts().max())
    assert own_small and max(own_big) <= largest_cae  # a CAE's estimates use its rows only
    assert len(own_big) == 2 * len(own_small) and sum(own_big) == 2 * sum(own_small)
    assert len(full_big) == len(full_small)


def test_calibration_variable_is_not_tested(demo):
    """The share of women is fixed by the post-stratification on sex: its standard error is
    rounding (1e-17), so no CAE is called significantly different on it."""
    study, cb, responses = demo
    t = I.estimate_study(responses, study, cb,
                         indicators=[cb.indicator("women_share"), cb.indicator("cae_decisive")]).table
    rows = t[(t.indicator_id == "women_share") & (t.breakdown == "total") & (t.target != "consortium")]
    assert len(rows) == 7 and (rows["se"] < 1e-12).all()
    assert rows["p_value"].isna().all()
    report = I.report_table(t, "cae-1", 0.05)
    row = report[(report.indicator_id == "women_share") & (report.breakdown == "total")].iloc[0]
    assert pd.isna(row["significant"]) or not row["significant"]
    # an indicator with sampling variance is still tested
    other = t[(t.indicator_id == "cae_decisive") & (t.breakdown == "total") & (t.target != "consortium")]
    assert other["p_value"].notna().all()
