"""Tests of the questionnaire generated from the codebook: XLSForm (pyxform) and printable version."""

from __future__ import annotations

import re

import openpyxl
import pytest
from pyxform.xls2xform import convert

from cae_impact.spec.questionnaire import (
    build_xlsform,
    render_html,
    workbook_bytes,
    write_questionnaire,
)


@pytest.fixture(scope="module")
def written(cb, tmp_path_factory):
    return write_questionnaire(cb, tmp_path_factory.mktemp("questionnaire"), pdf=True)


def test_pyxform_converts_the_xlsform_without_error(written, cb):
    warnings: list[str] = []
    result = convert(xlsform=str(written["xlsform"]), warnings=warnings)
    xform = result.xform
    assert f"version=\"{cb.version}\"" in xform
    assert "qversion" in xform and f"'{cb.version}'" in xform
    assert 'relevant=" /cae_impact/d2/loan_taken  = \'oui\'"' in xform or "loan_taken" in xform
    assert "Sans la CAE, auriez-vous démarré votre activité ?" in xform
    assert not [w for w in warnings if "error" in w.lower()]


def test_xlsform_structure(written, cb):
    wb = openpyxl.load_workbook(written["xlsform"])
    assert wb.sheetnames == ["survey", "choices", "settings"]
    survey = list(wb["survey"].iter_rows(values_only=True))
    header = survey[0]
    assert header[:3] == ("type", "name", "label::Français (fr)")
    rows = {r[1]: dict(zip(header, r, strict=True)) for r in survey[1:]}
    assert rows["qversion"]["type"] == "calculate" and rows["qversion"]["calculation"] == f"'{cb.version}'"
    assert rows["rid"]["type"] == "hidden"
    types = [r[0] for r in survey[1:]]
    assert types.count("begin_group") == types.count("end_group") == len(cb.sections)
    assert rows["loan_easier"]["relevant"] == "${loan_taken} = 'oui'"
    assert rows["income_now"]["constraint"] == ". >= 0 and . <= 15000"
    assert "selected(., 'aucune')" in rows["protection_access"]["constraint"]
    assert rows["protection_access"]["type"] == "select_multiple protection"
    for q in cb.questions.values():
        assert q.id in rows
    settings = list(wb["settings"].iter_rows(values_only=True))
    meta = dict(zip(settings[0], settings[1], strict=True))
    assert meta["form_id"] == "cae_impact" and meta["version"] == cb.version
    choices = list(wb["choices"].iter_rows(values_only=True))
    assert ("agree4", "nsp", "Ne sait pas") in choices


def test_xlsform_is_byte_for_byte_reproducible(cb, written):
    assert workbook_bytes(build_xlsform(cb)) == written["xlsform"].read_bytes()


def test_printable_questionnaire_reads_as_a_french_questionnaire(cb, written):
    html = written["html"].read_text(encoding="utf-8").replace("\u00a0", " ").replace("\u202f", " ")
    assert '<html lang="fr">' in html
    assert "Q1." in html and f"Q{len(cb.questions)}." in html
    assert "Sans la CAE, auriez-vous démarré votre activité ?" in html
    assert "Fréquemment (plusieurs fois par semaine)" in html
    assert "Partie 1 — Vous et votre activité" in html
    assert "Plusieurs réponses possibles." in html and "Une seule réponse." in html
    assert 'class="box"' in html
    # filter instructions, as on paper
    n = {q: i + 1 for i, q in enumerate(cb.questions)}
    assert f"Si vous avez répondu « Oui » à la question {n['loan_taken']}" in html
    assert re.search(r"Si vous avez répondu « Demandeur\(se\) d&#39;emploi indemnisé\(e\)[^»]*», .* ou « Allocataire du RSA » "
                     rf"à la question {n['prior_status']}", html)
    assert f"→ passez à la question {n['loan_easier'] + 1}" in html
    assert written["html"].read_text(encoding="utf-8") == render_html(cb)
    assert "activité\u202f?" in render_html(cb)  # French typography: no-break space before « ? »


def test_pdf_is_written(written):
    data = written["pdf"].read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
