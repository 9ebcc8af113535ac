"""Exports written by the survey tools' own code, in every common setting: every answer read back.

The fixtures of ``tests/fixtures/exports/`` are written by ``scripts/make_export_fixtures.py``:
KoboToolbox exports by formpack itself, LimeSurvey and Google Forms exports by replicas of their
CSV writers, all from the 30 respondents of ``answers.json``. For every file, the format is
recognised without being named, and every cleaned answer equals the answer submitted.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from cae_impact.clean.cleaning import clean_responses
from cae_impact.ingest import guess_format, read_export
from cae_impact.spec.codebook import load_codebook

FIXTURES = Path(__file__).parent / "fixtures" / "exports"
PEOPLE = json.loads((FIXTURES / "answers.json").read_text(encoding="utf-8"))
EXPORTS = sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".csv", ".xlsx"))
EXPECTED_FORMAT = {"kobo": "kobo", "limesurvey": "limesurvey", "googleforms": "googleforms"}


@pytest.fixture(scope="module")
def codebook():
    return load_codebook()


def _clean(path: Path, codebook):
    fmt = guess_format(path)
    raw = read_export(path, fmt, codebook=codebook)
    result = clean_responses(raw, codebook, cae_id="fixture", wave="test", key=secrets.token_bytes(32))
    return fmt, raw, result


def _mismatches(responses: pd.DataFrame, codebook) -> list[str]:
    out = []
    assert len(responses) == len(PEOPLE)
    for i, person in enumerate(PEOPLE):
        row = responses.iloc[i]
        for q in codebook.questions.values():
            want = person["answers"][q.id]
            if q.type == "multiple":
                cells = {c: row[f"{q.id}__{c}"] for c in codebook.scale_of(q.id).codes}
                got = [c for c, v in cells.items() if not pd.isna(v) and bool(v)]
                want = sorted(want) if want else None
                got = sorted(got) if got else None
            else:
                got = row[q.id]
                got = None if pd.isna(got) else got
                if q.type == "numeric" and got is not None:
                    got = float(got)
                    want = None if want is None else float(want)
                elif q.type == "text" and got is not None:
                    got = str(got).strip()
                    want = None if want is None else str(want).strip()
            if got != want:
                out.append(f"respondent {i + 1} {q.id}: submitted {want!r}, read {got!r}")
    return out


@pytest.mark.parametrize("path", EXPORTS, ids=[f"{p.parent.name}/{p.name}" for p in EXPORTS])
def test_every_answer_is_read_back(path, codebook):
    fmt, raw, result = _clean(path, codebook)
    assert fmt == EXPECTED_FORMAT[path.parent.name]
    assert result.accounting.kept == len(PEOPLE)
    problems = [p for p in raw.problems if p.severity != "info"]
    assert not [p for p in problems if p.code in ("unmapped_column", "unknown_code", "missing_column")], problems
    assert _mismatches(result.responses, codebook) == []


@pytest.mark.parametrize("path", [p for p in EXPORTS if p.parent.name != "googleforms"], ids=lambda p: p.name)
def test_submission_times_are_read(path, codebook):
    _, _, result = _clean(path, codebook)
    got = [ts.to_pydatetime().replace(microsecond=0) for ts in result.responses["submitted_at"]]
    assert got == [datetime.fromisoformat(p["submitted"]) for p in PEOPLE]


def test_google_other_option_reads_as_autre_and_keeps_the_text_whole(codebook):
    raw = read_export(FIXTURES / "googleforms" / "forms.csv", "googleforms", codebook=codebook)
    typed = {qid: set(texts.values()) for qid, texts in raw.other_texts.items()}
    assert typed.get("sector") == {"Ébéniste, restauration de meubles"}
    assert typed.get("training_topics") == {"Anglais, prise de parole en public"}


def test_google_other_text_reaches_the_cleaned_data_masked(codebook, tmp_path):
    """The text typed after « Autre » is kept in the cleaned data (``<question>__autre_texte``),
    whole, and masked like every free text: a phone typed there never gets through."""
    src = (FIXTURES / "googleforms" / "forms.csv").read_text(encoding="utf-8")
    path = tmp_path / "forms.csv"
    path.write_text(src.replace("Ébéniste, restauration de meubles",
                                "Ébéniste, restauration de meubles, tél 06 12 34 56 78"), encoding="utf-8")
    _fmt, _raw, result = _clean(path, codebook)
    got = result.responses
    sector = got.loc[got["sector"] == "autre", "sector__autre_texte"].dropna().tolist()
    assert sector and all(t.startswith("Ébéniste, restauration de meubles, tél ") for t in sector)
    assert not any("06 12 34 56 78" in t for t in sector)
    assert set(got["training_topics__autre_texte"].dropna()) == {"Anglais, prise de parole en public"}


# ------------------------------------------------------------------------------------ validate
def _validate(path, capsys, *extra):
    from cae_impact.clean.validate import main

    code = main([str(path), *extra])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("path", EXPORTS, ids=[f"{p.parent.name}/{p.name}" for p in EXPORTS])
def test_validate_recognises_the_tool_and_the_setting(path, capsys):
    code, out = _validate(path, capsys)
    assert code == 0, out
    assert "Réglage d'export reconnu : " in out
    assert out.rstrip().endswith("Verdict : export UTILISABLE")


def _rewrite(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text(encoding="utf-8-sig")
    assert old in text
    dst.write_text(text.replace(old, new), encoding="utf-8")
    return dst


def test_validate_refuses_answer_codes_it_cannot_read(tmp_path, capsys):
    # a survey typed by hand in LimeSurvey, with its default answer codes AO01… instead of A1…
    src = FIXTURES / "limesurvey" / "code_short_comma_fr.csv"
    path = _rewrite(src, tmp_path / "export.csv", '"A2"', '"AO02"')
    code, out = _validate(path, capsys)
    assert code == 1
    verdict = out.rstrip().splitlines()[-1]
    assert verdict.startswith("Verdict : export NON UTILISABLE — ")
    assert "réponse(s) illisible(s)" in verdict and "age_band" in verdict
    assert "Réponses complètes" in verdict


def test_validate_refuses_labels_of_another_language(tmp_path, capsys):
    src = FIXTURES / "kobo" / "labels_nogroups_summary.csv"
    path = _rewrite(src, tmp_path / "export.csv", "Des conseils sur mon activité", "Advice on my business")
    code, out = _validate(path, capsys)
    assert code == 1
    verdict = out.rstrip().splitlines()[-1]
    assert "mutual_help" in verdict and "« Valeurs et en-têtes XML »" in verdict


def test_validate_refuses_abbreviated_limesurvey_headings(tmp_path, capsys):
    import csv

    src = FIXTURES / "limesurvey" / "full_long_comma_fr.csv"
    rows = list(csv.reader(src.read_text(encoding="utf-8-sig").splitlines()))
    rows[0] = [h if len(h) <= 15 else h[:15] + ".. " for h in rows[0]]
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(r for r in rows if r)
    code, out = _validate(path, capsys, "--format", "limesurvey")
    assert code == 1
    assert "UTILISABLE" in out and "export UTILISABLE" not in out
    assert "Code de la question" in out


@pytest.mark.parametrize(
    "name, old, new",
    [
        ("limesurvey/full_long_comma_fr.csv", "[Des conseils sur mon activité]", "[Conseils pour mon activité]"),
        ("kobo/labels_nogroups_details.csv", "/Des conseils sur mon activité", "/Advice on my business"),
    ],
)
def test_validate_counts_answers_of_a_choice_column_it_cannot_read(tmp_path, capsys, name, old, new):
    path = _rewrite(FIXTURES / name, tmp_path / "export.csv", old, new)
    code, out = _validate(path, capsys)
    ticked = sum(1 for p in PEOPLE if "conseils" in (p["answers"]["mutual_help"] or []))
    assert code == 1
    assert f"{ticked} réponse(s) illisible(s) (mutual_help {ticked})" in out.rstrip().splitlines()[-1]


def test_limesurvey_french_headings_recognised_by_the_response_id_and_date_alone(tmp_path, codebook):
    src = FIXTURES / "limesurvey" / "full_long_comma_fr.csv"
    text = src.read_text(encoding="utf-8-sig")
    for name in ("Dernière page", "Langue de départ", "Graine"):
        text = text.replace(f'"{name}"', f'"{name} (autre traduction)"', 1)
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    assert guess_format(path) == "limesurvey"
    _, raw, result = _clean(path, codebook)
    assert result.accounting.kept == len(PEOPLE)
    assert _mismatches(result.responses, codebook) == []


def test_google_sheets_us_dates_are_read_month_first(tmp_path, codebook):
    import csv

    src = FIXTURES / "googleforms" / "sheets.csv"
    rows = list(csv.reader(src.read_text(encoding="utf-8").splitlines(keepends=True)))
    later = [datetime.fromisoformat(p["submitted"]) + timedelta(days=12) for p in PEOPLE]  # some days > 12
    for row, when in zip(rows[1:], later, strict=True):
        row[0] = f"{when.month}/{when.day}/{when.year} {when:%H:%M:%S}"
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    _, _, result = _clean(path, codebook)
    assert [ts.to_pydatetime() for ts in result.responses["submitted_at"]] == later
