"""Front matter and annexes of the report: « L'essentiel », verbatims, method, quality, questionnaire, provenance."""

import json

import pandas as pd

from cae_impact.core.files import sha256_file
from cae_impact.render import annexes, chapters
from cae_impact.spec.config import CONSORTIUM


def row(ind, target, est, *, unit="pct", suppressed=False, significant=True, n=80, category=""):
    # the test a row carries: a difference row its before/now test, a total its CAE-vs-consortium one
    comparison = "before" if category == "difference" else CONSORTIUM
    return {"indicator_id": ind, "target": target, "breakdown": "total", "category": category, "unit": unit,
            "estimate": est, "suppressed": suppressed, "flag_caution": n < 30, "significant": significant,
            "n_unweighted": n, "comparison": comparison}


def view(study, cb, target, rows):
    return chapters.View(study, cb, target, pd.DataFrame(rows))


def test_view_lookups_match_boolean_filters(study, cb):
    cae = study.cae_ids[0]
    rows = []
    for ind in ("a", "b"):
        for tgt in (cae, CONSORTIUM):
            for brk in ("total", "sex"):
                for cat in ("", "x", "x", float("nan"), "y"):
                    rows.append({**row(ind, tgt, len(rows) / 100, category=cat), "breakdown": brk})
    t = pd.DataFrame(rows)
    t.index = [f"r{i}" for i in reversed(range(len(t)))]  # labels unrelated to positions
    v = view(study, cb, cae, t)
    for ind in ("a", "b", "none"):
        for tgt in (None, cae, CONSORTIUM):
            for brk in ("total", "sex", "age"):
                mask = (t["indicator_id"] == ind) & (t["target"] == (tgt or cae)) & (t["breakdown"] == brk)
                pd.testing.assert_frame_equal(v.rows(ind, tgt, brk), t[mask])
                for cat in ("", "x", "z"):
                    hits = t[mask & (t["category"] == cat)]
                    assert [r.name for r in v.category_rows(ind, tgt, category=cat, breakdown=brk)] == list(hits.index)
                    got = v.row(ind, tgt, category=cat, breakdown=brk)
                    if hits.empty:
                        assert got is None
                    else:
                        pd.testing.assert_series_equal(got, hits.iloc[0])
        for targets in (None, [cae], [CONSORTIUM, cae]):
            for brk in ("total", None):
                mask = t["indicator_id"] == ind
                if targets is not None:
                    mask &= t["target"].isin(targets)
                if brk is not None:
                    mask &= t["breakdown"] == brk
                pd.testing.assert_frame_equal(v.select(ind, targets, brk), t[mask])


def test_select_verbatims_deterministic_threshold_and_safe():
    texts = [f"Réponse assez longue numéro {i} pour être citée." for i in range(9)]
    assert annexes.select_verbatims(texts + [None, "  "]) == [], "fewer than 10 answers: nothing"
    texts += ["RAS", "Écrivez-moi ([courriel masqué]) pour en parler plus longuement."]
    first = annexes.select_verbatims(texts)
    assert len(first) == 3 and first == annexes.select_verbatims(list(reversed(texts)))
    assert all("masqué" not in q and q != "RAS" for q in first)


WEIGHTING = {"per_cae": [
    {"cae_id": "cae-1", "label": "CAE 1", "population": 120, "respondents": 66, "response_rate": 0.55,
     "weighting": "post-stratification sexe × statut", "kish_deff": 1.004, "effective_n": 65.7,
     "weight_min": 1.59, "weight_max": 1.92},
    {"cae_id": "cae-3", "label": "CAE 3", "population": 180, "respondents": 81, "response_rate": 0.45,
     "weighting": "post-stratification sexe × statut", "kish_deff": 1.167, "effective_n": 69.4,
     "weight_min": 1.48, "weight_max": 4.67}],
    "notes": ["CAE 3 : strate fusionnée.", "CAE 1 : rien."],
    "consortium": {"caes": 2, "population": 300, "respondents": 147, "kish_deff": 1.1, "effective_n": 130.0}}


def test_method_annex(study):
    out = annexes.method_annex(study, WEIGHTING, "cae-3")
    assert 'id="annexe-methode"' in out
    for needle in ("logit", "95", "Wald", "Rao-Scott", "apparié", "Benjamini-Hochberg",
                   "0 à 4 répondants", "moins de 10 répondants", "moins de 30 répondants",
                   "9 sur 10 ou plus", "secret secondaire",
                   "contrefactuel", "45 %", "4,67", "147 réponses"):
        assert needle in out.replace("\u202f", " ").replace("\xa0", " "), needle
    assert "CAE 3 : strate" in out and "CAE 1 : rien" not in out
    assert "CAE 1 : rien" in annexes.method_annex(study, WEIGHTING, CONSORTIUM)
    assert "reste du consortium" in out and "publiés" not in out
    # what is computed, exactly: no normal approximation (Student quantiles), logit except at
    # 0 % / 100 % (Korn-Graubard), paired differences with d - 1 df, untested edge cases named
    flat = out.replace("\u202f", " ").replace("\xa0", " ")
    assert "approximation normale" not in flat
    assert "0 % ou de 100 %" in flat and "Korn-Graubard" in flat and "d − 1 degrés" in flat
    assert "Woodruff" in flat and "sur lesquelles les poids sont calés" in flat
    assert "tous les entrepreneurs inscrits ont répondu" in flat


def test_method_annex_names_the_published_reference(study):
    """Compared with published consortium figures, the annex says so, with their date and test."""
    weighting = {**WEIGHTING, "reference": {"published": "2026-11-26", "path": "data/reference/x.csv",
                                            "sha256": "ab" * 32, "caes": 7, "includes_target": True}}
    out = annexes.method_annex(study, weighting, "cae-3").replace("\u202f", " ").replace("\xa0", " ")
    assert "chiffres du consortium auxquels la CAE est comparée sont ceux publiés le 26 novembre 2026" in out
    assert "CAE contre les chiffres publiés du consortium" in out and "part de la CAE" in out


LOG = {"accounting": {"raw_rows": 84, "kept": 81, "set_aside": {"malformed_row": 0, "incomplete": 2},
                      "set_aside_total": 2, "merged_duplicates": 1, "identity_holds": True},
       "values_blanked": {"total": 10, "by_reason": {"not_a_number": 8, "out_of_range": 2}},
       "free_text_masked": {"texts_changed": 5}}


def test_data_quality_accounting():
    frame = annexes.cleaning_accounting({"CAE 3": LOG})
    values = dict(zip(frame["Décompte"].str.strip(), frame["CAE 3"], strict=True))
    assert values["Lignes de l'export"] == "84" and values["Réponses retenues"] == "81"
    assert values["dont réponse incomplète"] == "2" and values["Doublons fusionnés"] == "1"
    assert values["Valeurs effacées"] == "10" and values["dont valeur non numérique"] == "8"
    out = annexes.data_quality_annex({"CAE 3": LOG, "CAE 1": LOG})
    assert 'id="annexe-qualite"' in out and "CAE 1</th>" in out


def test_data_quality_annex_of_a_national_study():
    """Beyond MAX_NAMED_CAES, one row per CAE (not one column) and the totals by reason."""
    from cae_impact.core.frenchfmt import format_int

    logs = {f"CAE {i}": LOG for i in range(1, chapters.MAX_NAMED_CAES + 2)}
    out = annexes.data_quality_annex(logs)
    assert "<th scope=\"col\" class=\"num\">CAE 1</th>" not in out  # no column per CAE
    assert out.count("<td>CAE ") == len(logs)
    n = len(logs)
    assert f"<td class=\"num\">{format_int(84 * n)}</td>" in out  # export rows, all CAEs
    assert f"<td class=\"num\">{format_int(8 * n)}</td>" in out  # not a number, all CAEs
    small = annexes.data_quality_annex({"CAE 3": LOG, "CAE 1": LOG})
    assert "Décompte du nettoyage par CAE" not in small


def test_questionnaire_annex_lists_every_question(cb):
    sections = annexes.questionnaire_rows(cb)
    assert sum(len(f) for _, f in sections) == len(cb.questions)
    out = annexes.questionnaire_annex(cb)
    q = cb.question("turnover_change")
    from cae_impact.render import present

    assert present.esc(q.text) in out
    # every question is listed, numbered in questionnaire order (answers are in the questionnaire)
    assert out.count("<li value=") == sum(len(f) for _, f in sections)


def test_provenance(study, cb, tmp_path):
    prov = annexes.provenance(study, cb, {})
    assert prov["codebook_version"] == cb.version and len(prov["raw_exports"]) == len(study.caes)
    assert set(prov["packages"]) == set(annexes.PACKAGES) and isinstance(prov["git_dirty"], bool)
    assert all(len(e["sha256"]) == 64 or e["sha256"] == "inconnu" for e in prov["raw_exports"])
    out = annexes.provenance_annex(prov)
    assert prov["git_commit"] in out and "weasyprint" in out and 'id="annexe-provenance"' in out
    manifest = {"study_file": "config/x.yaml", "git_commit": "abc123", "git_dirty": True}
    got = annexes.provenance(study, cb, {}, manifest)
    assert got["git_commit"] == "abc123" and got["study_file"] == "config/x.yaml" and got["git_dirty"] is True
    built = {"study": "study.yaml", "git": {"commit": "def456", "dirty": False}, "packages": {"scipy": None},
             "inputs": {"raw_exports": {"data/raw/x.csv": "f" * 64}}}
    got = annexes.provenance(study, cb, {}, built)
    assert got["git_commit"] == "def456" and got["packages"] == {"scipy": "absent"}
    assert got["raw_exports"][0]["sha256"] == "f" * 64
    assert "modifications non enregistrées" in annexes.provenance_annex(manifest)
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f).startswith("ba7816bf")


def test_build_annexes_reads_the_study_files(study, cb, tmp_path):
    reports, processed = tmp_path / "reports", tmp_path / "processed"
    (reports / study.wave / "_study").mkdir(parents=True)
    (reports / study.wave / "_study" / "weighting.json").write_text(json.dumps(WEIGHTING), encoding="utf-8")
    (processed / study.wave / "cae-3").mkdir(parents=True)
    (processed / study.wave / "cae-3" / "cleaning_log.json").write_text(json.dumps(LOG), encoding="utf-8")
    out = annexes.build_annexes(study, "cae-3", reports_root=reports, processed_root=processed, codebook=cb)
    assert [out.index(f"Annexe {k}") for k in "ABCD"] == sorted(out.index(f"Annexe {k}") for k in "ABCD")
    assert "Lignes de l&#x27;export" in out


# ------------------------------------------------------------------ consortium of many CAEs


def study_of(study, n):
    """The study with n CAEs labelled « CAE 1 » … « CAE n » (no file is read)."""
    import dataclasses

    caes = tuple(dataclasses.replace(study.caes[i % len(study.caes)], id=f"cae-{i + 1}", label=f"CAE {i + 1}")
                 for i in range(n))
    return dataclasses.replace(study, caes=caes)


def plain(fragment):
    """A fragment's text with entities decoded and no-break spaces made plain."""
    import html

    return html.unescape(fragment).replace("\u202f", " ").replace("\xa0", " ")


def named_caes(html):
    """The CAE labels (« CAE 12 ») printed in a fragment; the embedded PNGs hold no spaces."""
    import re

    return set(re.findall(r"CAE\s\d+", html))


def many_rows(st, est_of):
    """Rows of a share, a paired difference, a frequency scale and a categorical distribution."""
    rows = []
    ci = {"ci_low": 0.1, "ci_high": 0.9}
    for k, tgt in enumerate(st.targets):
        rows.append({**row("cae_decisive", tgt, est_of(k)), **ci})
        for cat, est in (("before", 1200.0), ("after", 1500.0), ("difference", 300.0 + 10 * k)):
            rows.append({**row("income_change", tgt, est, unit="eur", category=cat), **ci})
        for cat, est in (("frequemment", 0.1), ("regulierement", 0.4), ("rarement", 0.4), ("jamais", 0.1)):
            rows.append(row("peer_exchange_distribution", tgt, est, category=cat))
        for cat in ("nouvelles", "renforcees", "aucune", "perdues"):
            rows.append(row("skills_technical_distribution", tgt, 0.25, category=cat))
    return rows


def test_sample_section_of_many_caes(study, cb):
    n = chapters.MAX_NAMED_CAES + 3
    st = study_of(study, n)
    per_cae = [{**WEIGHTING["per_cae"][k % 2], "cae_id": f"cae-{k + 1}", "label": f"CAE {k + 1}",
                "respondents": 40 + k, "response_rate": 0.30 + 0.02 * k} for k in range(n)]
    weighting = {**WEIGHTING, "per_cae": per_cae,
                 "notes": ["CAE 3 : strate fusionnée.", "CAE 13 : cellule regroupée.", "CAE 3 : autre.",
                           "4 poids écrêtés à 3,5 fois le poids médian de leur CAE."]}
    from cae_impact.render import profile

    out = profile.sample_section(view(st, cb, CONSORTIUM, []), weighting)
    assert named_caes(out) == set()
    flat = plain(out)
    assert f"Le consortium compte {n} CAE. Au-delà de 12 CAE" in flat and "indicators.xlsx" in flat
    assert ("Selon la CAE (15 CAE) : de 40 à 54 répondants retenus (médiane 47), "
            "taux de réponse de 30 % à 58 % (médiane 44 %).") in flat
    assert "4 poids écrêtés" in flat and "propres à une CAE concernent 2 CAE" in flat
    assert out.count("<tr>") == 2, "header and the consortium's line"
    # the CAE's own report keeps its line and its notes
    mine = profile.sample_section(view(st, cb, "cae-13", []), weighting)
    assert named_caes(mine) == {"CAE 13"} and "cellule regroupée" in mine


def test_frequency_scale_is_drawn_unfavourable_left(study, cb, monkeypatch):
    """The codebook lists « Fréquemment » first; the diverging chart gets « Jamais » first."""
    from cae_impact.render import charts

    scale = cb.scale_of(cb.indicator("peer_exchange_distribution").rule["question"])
    assert scale.choices[0].code == "frequemment"  # questionnaire order: favourable first
    seen = {}
    real = charts.diverging_likert

    def spy(df, **kw):
        seen.update(kw)
        return real(df, **kw)

    monkeypatch.setattr(charts, "diverging_likert", spy)
    v = view(study, cb, study.cae_ids[0], many_rows(study, lambda k: 0.5))
    from cae_impact.render import story

    assert story.likert_chart(v, cb.indicator("peer_exchange_distribution"))
    assert seen["categories"] == ["jamais", "rarement", "regulierement", "frequemment"]


def test_a_large_study_summarises_the_other_caes_exports():
    """Beyond MAX_NAMED_CAES exports, a CAE's provenance table lists its own and one row for the
    others (their number and the digest of their list); the consortium's, one row."""
    import hashlib

    from cae_impact.spec.config import MAX_NAMED_CAES

    exports = [{"cae": f"CAE {i}", "file": f"2026/cae-{i:03d}/export.csv", "sha256": f"{i:064x}"}
               for i in range(1, MAX_NAMED_CAES + 3)]
    assert annexes.summarised_exports(exports[:MAX_NAMED_CAES], "CAE 1") == exports[:MAX_NAMED_CAES]
    mine = annexes.summarised_exports(exports, "CAE 2")
    assert mine[0] == exports[1] and len(mine) == 2
    others = sorted((e for e in exports if e["cae"] != "CAE 2"), key=lambda e: e["file"])
    listing = "".join(f"{e['file']}\t{e['sha256']}\n" for e in others)
    assert mine[1]["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert mine[1]["cae"].startswith(f"{len(others)} autres exports")
    cons = annexes.summarised_exports(exports, None)
    assert len(cons) == 1 and cons[0]["cae"].startswith(f"{len(exports)} exports")
