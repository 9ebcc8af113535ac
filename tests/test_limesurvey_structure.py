"""The LimeSurvey survey structure written by ``make questionnaire``: importable, complete, and
with the answer codes the LimeSurvey adapter reads back."""

from __future__ import annotations

import csv
import io
import re

import pytest

from cae_impact.spec.codes import LIMESURVEY_ANSWER_CODE_RE, limesurvey_answer_codes
from cae_impact.spec.questionnaire import build_limesurvey_structure, write_questionnaire


@pytest.fixture(scope="module")
def rows(cb):
    # read as LimeSurvey's TSVImportSurvey does: fgetcsv with a tab delimiter and '"' enclosure
    text = build_limesurvey_structure(cb)
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quotechar='"'))


def test_structure_has_every_question_of_the_codebook(cb, rows):
    questions = [r["name"] for r in rows if r["class"] == "Q"]
    assert questions[:2] == [cb.respondent_field.export_code, cb.version_field.export_code]
    assert questions[2:] == [q.export_code for q in cb.questions.values()]
    assert len(set(questions)) == len(questions)
    assert {r["class"] for r in rows} <= {"S", "SL", "G", "Q", "SQ", "A"}
    assert any(r["class"] == "S" and r["name"] == "language" and r["text"] == "fr" for r in rows)


def test_every_answer_code_has_1_to_5_characters_and_matches_the_adapter(cb, rows):
    current = None
    answers: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        if r["class"] == "Q":
            current = r["name"]
        elif r["class"] == "A":
            assert LIMESURVEY_ANSWER_CODE_RE.match(r["name"]), r
            answers.setdefault(current, []).append((r["name"], r["text"]))
    for q in cb.questions.values():
        if q.has_choices and q.type != "multiple":
            scale = cb.scale_of(q.id)
            codes = limesurvey_answer_codes(scale)
            assert answers[q.export_code] == [(codes[c.code], c.label) for c in scale.choices]
            assert len(set(codes.values())) == len(codes)


def test_multiple_choice_questions_have_their_sub_questions(cb, rows):
    subs: dict[str, list[str]] = {}
    current = None
    for r in rows:
        if r["class"] == "Q":
            current = (r["name"], r["type/scale"])
        elif r["class"] == "SQ":
            assert current[1] == "M"
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,19}", r["name"])
            subs.setdefault(current[0], []).append(r["name"])
    for q in cb.questions.values():
        if q.type == "multiple":
            assert subs[q.export_code] == cb.scale_of(q.id).codes


def test_skip_logic_uses_limesurvey_codes(cb, rows):
    by_code = {q.export_code: q for q in cb.questions.values()}
    for r in rows:
        if r["class"] != "Q" or r["relevance"] in ("", "1"):
            continue
        for code, value in re.findall(r"(\w+)\.NAOK [!=<>]=? '([^']*)'", r["relevance"]):
            q = by_code[code]
            assert value in limesurvey_answer_codes(cb.scale_of(q.id)).values()
        assert by_code[r["name"]].relevant


def test_make_questionnaire_writes_it(cb, tmp_path):
    paths = write_questionnaire(cb, tmp_path, pdf=False)
    assert paths["limesurvey"].name == "questionnaire_limesurvey.txt"
    assert paths["limesurvey"].read_text(encoding="utf-8") == build_limesurvey_structure(cb)
