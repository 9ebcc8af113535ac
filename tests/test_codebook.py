"""Tests of the référentiel (config/codebook.yaml) and of its loader's validation rules."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from cae_impact.spec.codebook import (
    CodebookError,
    coverage_markdown,
    coverage_table,
    load_codebook,
    parse_codebook,
    parse_relevant,
)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The project's codebook
# ---------------------------------------------------------------------------------------------


def test_loads_with_version_and_seven_domains(cb):
    assert cb.version == "2026.1"
    assert [d.id for d in cb.domains] == [f"d{i}" for i in range(1, 8)]
    titles = {d.id: d.title for d in cb.domains}
    assert titles["d1"] == "Diversifier les publics d'entrepreneurs"
    assert titles["d2"] == "Sécuriser les parcours par l'accès aux droits"
    assert titles["d3"] == "Faciliter l'activation du projet entrepreneurial"
    assert titles["d4"].startswith("Consolider l'activité par l'acquisition et le développement de compétences")
    assert titles["d5"].startswith("Renforcer le succès du projet par son insertion")
    assert titles["d6"] == "Optimiser la qualité de vie au travail et par le travail"
    assert titles["d7"].startswith("Développer un mode d'entreprendre impactant")


def test_six_findings_linked_to_their_domains(cb):
    domains = {f.id: set(f.domain_ids) for f in cb.findings}
    assert domains == {
        "f1": {"d1"}, "f2": {"d2"}, "f3": {"d3"}, "f4": {"d3", "d4"}, "f5": {"d4", "d5", "d6"}, "f6": {"d7", "d4"},
    }
    for f in cb.findings:
        assert f.indicator_ids
        for iid in f.indicator_ids:
            assert cb.indicator(iid).domain_id in f.domain_ids


def test_at_least_35_indicators_and_3_per_domain(cb):
    assert len(cb.indicators) >= 35
    for d in cb.domains:
        assert len(cb.indicators_of_domain(d.id)) >= 3, d.id


PUBLISHED = {  # indicator id -> consortium value published in the national report (§2.3)
    "cae_decisive": 0.85,
    "support_advice_decisive": 0.80,
    "never_without_cae": 0.375,
    "rights_kept_decisive": 0.75,
    "protection_access": 0.70,
    "housing_easier": 0.25,
    "loan_easier": 0.50,
    "training_received": 0.65,
    "peer_exchange_weekly": 0.08,
    "peer_exchange_monthly": 0.44,
    "staff_exchange_frequent": 0.66,
    "staff_exchange_weekly": 0.07,
    "staff_exchange_monthly": 0.59,
    "no_family_entrepreneur": 0.50,
    "past_burnout_share": 0.30,
}


@pytest.mark.parametrize("indicator_id,value", sorted(PUBLISHED.items()))
def test_every_published_consortium_figure_is_present(cb, indicator_id, value):
    pub = cb.indicator(indicator_id).published
    assert pub is not None and pub.value == pytest.approx(value)
    assert pub.text and pub.wording and "CAE-IMPACT" in pub.source


def test_published_group_range_and_qualitative_figures(cb):
    rights = cb.indicator("never_without_rights").published
    assert rights.scope == "by_group" and rights.breakdown == "sex"
    assert rights.groups == {"f": pytest.approx(0.47), "m": pytest.approx(0.40)}
    training = cb.indicator("training_received").published
    assert (training.low, training.high, training.breakdown) == (0.62, 0.71, "diploma")
    never = cb.indicator("peer_exchange_never").published
    assert never.scope == "some_caes" and (never.low, never.high) == (0.10, 0.13)
    for iid, direction in (("women_share", "above"), ("under40_share", "below"), ("bac3plus_share", "above")):
        ind = cb.indicator(iid)
        assert ind.published.qualifier == "qualitative" and ind.published.direction == direction
        assert ind.references and "Insee" in ind.references[0].source and ind.references[0].year == 2022


def test_published_answer_scales_use_the_reports_wording(cb):
    assert [c.label for c in cb.scales["skills"].choices] == [
        "Oui, j'ai acquis de nouvelles compétences",
        "Oui, j'ai renforcé des compétences déjà acquises",
        "Non, je n'ai pas acquis ou renforcé de compétences",
        "J'ai perdu des compétences",
    ]
    assert [c.label for c in cb.scales["frequency"].choices] == [
        "Fréquemment (plusieurs fois par semaine)",
        "Régulièrement (plusieurs fois par mois)",
        "Rarement (plusieurs fois par an)",
        "Jamais",
    ]


def test_profile_questions_and_codes(cb):
    for qid in ("sex", "age_band", "diploma", "prior_status", "contract_stage", "seniority", "sector",
                "family_entrepreneur", "past_burnout"):
        assert qid in cb.profile_question_ids
    assert cb.scale_of("contract_stage").codes == ["cape", "cesa", "associe"]
    assert cb.scale_of("sex").codes == ["f", "m"]
    assert cb.register_code("sex", "F") == "f" and cb.register_code("stage", "associe") == "associe"
    assert cb.scale_of("seniority").codes == ["moins3", "plus3"]
    assert [g.label for g in cb.scale_of("diploma").report_groups] == ["Jusqu'au Bac", "Bac+2", "Bac+3", "Bac+5 et plus"]
    assert {"dei", "dena", "rsa", "salarie", "indep", "etudiant", "autre"} == set(cb.scale_of("prior_status").codes)


def test_paired_questions_free_texts_missing_choices_and_skip_logic(cb):
    paired = [i for i in cb.indicators if i.kind == "paired_difference"]
    assert {(i.rule["before"], i.rule["after"]) for i in paired} >= {("income_before", "income_now")}
    assert cb.question("income_now").unit == "€ par mois"
    texts = [q for q in cb.questions.values() if q.type == "text"]
    assert len(texts) >= 2 and all(q.personal for q in texts)
    assert "nsp" in cb.scale_of("cae_decisive").missing_codes
    assert cb.question("loan_easier").relevant == "${loan_taken} = 'oui'"
    assert cb.is_relevant("loan_easier", {"loan_taken": "oui"})
    assert not cb.is_relevant("loan_easier", {"loan_taken": "non"})
    assert cb.is_relevant("rights_kept_role", {"prior_status": "rsa"})
    assert not cb.is_relevant("rights_kept_role", {"prior_status": "salarie"})
    assert not cb.is_relevant("rights_kept_role", {})
    assert cb.is_relevant("protection_access", {"contract_stage": "cesa"})
    assert not cb.is_relevant("protection_access", {"contract_stage": "cape"})
    assert cb.is_relevant("training_topics", {"training_received": "oui"})


def test_relevant_parser_subset():
    expr = parse_relevant("not(selected(${a}, 'x')) and (${b} = 'y' or ${c} >= 3)")
    assert set(expr.questions()) == {"a", "b", "c"}
    assert expr.evaluate({"a": frozenset({"z"}), "b": "n", "c": 4.0})
    assert not expr.evaluate({"a": frozenset({"x"}), "b": "y", "c": 4.0})


def test_processed_columns_follow_contract_section_3(cb):
    cols = cb.processed_columns()
    assert list(cols)[:4] == ["respondent_id", "cae_id", "wave", "submitted_at"]
    assert cols["sex"] == "string" and cols["income_now"] == "Float64"
    assert cols["protection_access__mutuelle"] == "boolean" and "protection_access" not in cols
    assert cols["remarks"] == "string"


def test_export_codes_and_technical_fields(cb):
    codes = [q.export_code for q in cb.questions.values()]
    assert len(codes) == len(set(c.lower() for c in codes))
    assert cb.version_field.id == "qversion" and cb.respondent_field.id == "rid"


def test_coverage_table_and_committed_report(cb):
    table = coverage_table(cb)
    assert len(table) == len(cb.indicators)
    assert set(table["domain_id"]) == {d.id for d in cb.domains}
    assert (table.loc[table["indicator_id"] == "cae_decisive", "published"] == "85 %").all()
    committed = (ROOT / "docs" / "coverage.md").read_text(encoding="utf-8")
    assert committed == coverage_markdown(cb), "docs/coverage.md is stale: python -m cae_impact.spec.codebook coverage docs/coverage.md"


# ---------------------------------------------------------------------------------------------
# Validation rules: one tiny codebook, broken one way at a time
# ---------------------------------------------------------------------------------------------

TINY = """
version: "t1"
technical_fields:
  version: {id: qversion, export_code: qversion, label: "Version"}
  respondent: {id: rid, export_code: rid, label: "Identifiant"}
domains:
  - {id: d1, number: 1, title: "Domaine un", short_title: "Un"}
sections:
  - {id: profile, title: "Profil"}
  - {id: d1, title: "Partie un"}
scales:
  yn:
    ordered: false
    choices:
      - {code: oui, label: "Oui"}
      - {code: non, label: "Non"}
      - {code: nsp, label: "Ne sait pas", missing: true}
  agree:
    ordered: true
    choices:
      - {code: tout, label: "Tout à fait"}
      - {code: pas, label: "Pas du tout"}
  multi:
    ordered: false
    choices:
      - {code: a, label: "Choix A"}
      - {code: b, label: "Choix B"}
questions:
  - {id: sex, export_code: sexe, section: profile, text: "Vous êtes :", type: single, scale: yn}
  - {id: q1, export_code: Q1, section: d1, text: "Question un ?", type: yesno, scale: yn}
  - {id: q2, export_code: Q2, section: d1, text: "Question deux ?", type: likert, scale: agree, relevant: "${q1} = 'oui'"}
  - {id: q3, export_code: Q3, section: d1, text: "Question trois ?", type: numeric, min: 0, max: 10}
  - {id: q4, export_code: Q4, section: d1, text: "Question quatre ?", type: numeric, min: 0, max: 10}
  - {id: q5, export_code: Q5, section: d1, text: "Question cinq ?", type: multiple, scale: multi}
profile_questions: [sex]
indicators:
  - {id: i1, domain: d1, label: "Indicateur un", rule: {kind: share, question: q1, codes: [oui]}, breakdowns: [sex]}
  - {id: i2, domain: d1, label: "Indicateur deux", rule: {kind: paired_difference, before: q3, after: q4}}
  - {id: i3, domain: d1, label: "Indicateur trois", rule: {kind: any_of, question: q5, codes: [a]},
     published: {value: 0.5, text: "50 %", source: "Rapport"}}
findings:
  - {id: f1, text: "Un enseignement", domains: [d1], indicators: [i1]}
"""


@pytest.fixture()
def tiny():
    return yaml.safe_load(TINY)


def _fails(raw, *fragments):
    with pytest.raises(CodebookError) as exc:
        parse_codebook(raw, "tiny.yaml")
    message = str(exc.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_tiny_codebook_is_valid(tiny):
    cb = parse_codebook(tiny, "tiny.yaml")
    assert len(cb.indicators) == 3 and cb.question("q2").relevant


def test_duplicate_question_id(tiny):
    tiny["questions"].append(dict(tiny["questions"][3], export_code="Q9", text="Autre texte ?"))
    _fails(tiny, "questions[6] (q3)", "duplicate question id")


def test_duplicate_indicator_id(tiny):
    tiny["indicators"].append(copy.deepcopy(tiny["indicators"][0]))
    _fails(tiny, "indicators[3] (i1)", "duplicate indicator id")


def test_duplicate_choice_code(tiny):
    tiny["scales"]["yn"]["choices"].append({"code": "oui", "label": "Oui encore"})
    _fails(tiny, "scales.yn.choices[3] (oui)", "duplicate choice code")


def test_duplicate_export_code(tiny):
    tiny["questions"][2]["export_code"] = "q1"
    _fails(tiny, "questions[2] (q2)", "export_code 'q1' is already used by 'q1'")


def test_duplicate_yaml_key_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(TINY.replace("  agree:\n", "  yn:\n"), encoding="utf-8")
    with pytest.raises(CodebookError, match="duplicate key 'yn'"):
        load_codebook(path)


def test_question_id_pattern(tiny):
    tiny["questions"][1]["id"] = "Q-1"
    _fails(tiny, "questions[1]", "id 'Q-1' does not match")


def test_export_code_pattern(tiny):
    tiny["questions"][1]["export_code"] = "q_1"
    _fails(tiny, "questions[1] (q1)", "export_code 'q_1' does not match")


def test_choice_code_pattern(tiny):
    tiny["scales"]["yn"]["choices"][2]["code"] = "ne_sait_pas"
    _fails(tiny, "scales.yn.choices[2]", "code 'ne_sait_pas' does not match")


def test_domain_id_pattern_and_number(tiny):
    tiny["domains"][0]["number"] = 2
    _fails(tiny, "domains[0] (d1)", "number 2 does not match the id")


def test_rule_code_not_in_scale(tiny):
    tiny["indicators"][0]["rule"]["codes"] = ["peutetre"]
    _fails(tiny, "indicators[0] (i1).rule", "code 'peutetre' is not in scale 'yn' of question 'q1'")


def test_rule_question_unknown(tiny):
    tiny["indicators"][0]["rule"]["question"] = "q99"
    _fails(tiny, "indicators[0] (i1).rule", "question 'q99' is not a question of the codebook")


def test_rule_kind_and_question_type(tiny):
    tiny["indicators"][1]["rule"] = {"kind": "paired_difference", "before": "q1", "after": "q4"}
    _fails(tiny, "indicators[1] (i2).rule", "needs a numeric question; 'q1' is yesno")
    tiny["indicators"][1]["rule"] = {"kind": "any_of", "question": "q1", "codes": ["oui"]}
    _fails(tiny, "indicators[1] (i2).rule", "needs a multiple question")
    tiny["indicators"][1]["rule"] = {"kind": "ratio", "question": "q3"}
    _fails(tiny, "indicators[1] (i2).rule", "kind 'ratio' is not one of")


def test_question_scale_unknown(tiny):
    tiny["questions"][1]["scale"] = "nope"
    _fails(tiny, "questions[1] (q1)", "scale 'nope' is not defined")


def test_question_type_unknown(tiny):
    tiny["questions"][1]["type"] = "dropdown"
    _fails(tiny, "questions[1] (q1)", "type 'dropdown' is not one of")


def test_question_section_unknown(tiny):
    tiny["questions"][1]["section"] = "d9"
    _fails(tiny, "questions[1] (q1)", "section 'd9' is not listed")


def test_likert_needs_ordered_scale(tiny):
    tiny["scales"]["agree"]["ordered"] = False
    _fails(tiny, "questions[2] (q2)", "needs an ordered scale")


def test_min_above_max(tiny):
    tiny["questions"][3]["min"] = 20
    _fails(tiny, "questions[3] (q3)", "min 20 is above max 10")


def test_relevant_names_unknown_question(tiny):
    tiny["questions"][2]["relevant"] = "${q7} = 'oui'"
    _fails(tiny, "questions[2] (q2)", "relevant refers to an unknown question 'q7'")


def test_relevant_names_later_question(tiny):
    tiny["questions"][2]["relevant"] = "${q3} > 2"
    _fails(tiny, "questions[2] (q2)", "relevant refers to a later question 'q3'")


def test_relevant_code_not_in_scale(tiny):
    tiny["questions"][2]["relevant"] = "${q1} = 'yes'"
    _fails(tiny, "questions[2] (q2)", "relevant uses code 'yes', not in the scale of 'q1'")


def test_relevant_syntax(tiny):
    tiny["questions"][2]["relevant"] = "${q1} == 'oui'"
    _fails(tiny, "questions[2] (q2)", "relevant:")


def test_indicator_domain_unknown(tiny):
    tiny["indicators"][0]["domain"] = "d8"
    _fails(tiny, "indicators[0] (i1)", "domain 'd8' is not defined")


def test_breakdown_must_be_profile_question(tiny):
    tiny["indicators"][0]["breakdowns"] = ["q1"]
    _fails(tiny, "indicators[0] (i1)", "breakdown 'q1' is not a profile question")


def test_finding_references_resolve(tiny):
    tiny["findings"][0]["indicators"] = ["i9"]
    _fails(tiny, "findings[0] (f1)", "indicator 'i9' is not defined")
    tiny["findings"][0]["indicators"] = ["i1"]
    tiny["findings"][0]["domains"] = ["d5"]
    _fails(tiny, "findings[0] (f1)", "domain 'd5' is not defined")


def test_finding_indicator_outside_its_domains(tiny):
    tiny["domains"].append({"id": "d2", "number": 2, "title": "Domaine deux", "short_title": "Deux"})
    for iid in ("j1", "j2", "j3"):
        tiny["indicators"].append({"id": iid, "domain": "d2", "label": f"Indicateur {iid}",
                                   "rule": {"kind": "mean", "question": "q3"}})
    tiny["findings"][0]["indicators"] = ["j1"]
    _fails(tiny, "findings[0] (f1)", "indicator 'j1' belongs to domain d2")


def test_domain_needs_three_indicators(tiny):
    del tiny["indicators"][2]
    _fails(tiny, "domains (d1)", "has 2 indicator(s); every domain needs at least 3")


def test_published_value_is_a_proportion(tiny):
    tiny["indicators"][2]["published"]["value"] = 85
    _fails(tiny, "indicators[2] (i3).published", "must be a proportion")


def test_published_group_code_in_breakdown_scale(tiny):
    tiny["indicators"][2]["published"].update(scope="by_group", breakdown="sex", groups={"x": 0.4})
    _fails(tiny, "indicators[2] (i3).published", "group 'x' is not a code of 'sex'")


def test_multiple_choice_labels_hold_no_comma(tiny):
    tiny["scales"]["multi"]["choices"][0]["label"] = "Gestion, comptabilité"
    _fails(tiny, "questions[5] (q5)", "holds ', '")


def test_missing_version(tiny):
    del tiny["version"]
    _fails(tiny, "top level", "missing required field 'version'")


def test_missing_file():
    with pytest.raises(CodebookError, match="codebook not found"):
        load_codebook("/nonexistent/codebook.yaml")
