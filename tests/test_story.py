"""The report as read: « L’essentiel », chapters, the consortium's sections, editorial content.

The rules a reader relies on: « nettement » only where the corrected test says so, hidden
figures never printed, « Lecture / Champ / Source » under every chart and table, no wording
repeated more than a few times, no statistical jargon in the body.
"""

from __future__ import annotations

import html
import re
from collections import Counter

import pandas as pd
import pytest

from cae_impact.render import editorial, story
from cae_impact.render.chapters import View
from cae_impact.spec.config import CONSORTIUM

#: terms of the method annex that the body must not use
JARGON = ("Rao-Scott", "Benjamini", "Hochberg", "post-strat", "Kish", "logit", "linéarisation",
          "Taylor", "svyciprop", "Wald", "p-value", "erreur-type", "erreur type", "degrés de liberté",
          "Korn", "Woodruff", "calage", "intervalle de confiance")


def row(ind, target, est, *, unit="pct", suppressed=False, significant=True, n=80, category="",
        breakdown="total", group_label="", low=None, high=None):
    comparison = "before" if category == "difference" else (CONSORTIUM if target != CONSORTIUM and breakdown == "total" else "")
    if breakdown != "total":
        comparison = "groups"
    return {"indicator_id": ind, "target": target, "breakdown": breakdown, "group": group_label,
            "group_label": group_label, "category": category, "category_label": "", "unit": unit,
            "estimate": float("nan") if suppressed else est, "se": 0.03,
            "ci_low": (est - 0.05) if low is None else low, "ci_high": (est + 0.05) if high is None else high,
            "suppressed": suppressed, "flag_caution": n < 30, "significant": significant,
            "n_unweighted": float("nan") if suppressed else n, "comparison": comparison,
            "band_low": float("nan"), "band_high": float("nan")}


def plain(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment)).replace("\u202f", " ").replace("\xa0", " ")


def test_nettement_only_where_the_test_says_so(study, cb):
    cae = study.cae_ids[3]
    rows = [row("cae_decisive", cae, 0.92, significant=True), row("cae_decisive", CONSORTIUM, 0.76),
            row("never_without_cae", cae, 0.45, significant=False), row("never_without_cae", CONSORTIUM, 0.37),
            row("acceleration", cae, 0.70, significant=float("nan")), row("acceleration", CONSORTIUM, 0.71),
            row("support_advice_decisive", cae, 0.5, suppressed=True), row("support_advice_decisive", CONSORTIUM, 0.8)]
    view = View(study, cb, cae, pd.DataFrame(rows))
    figs = {i: story.figure_of(view, cb.indicator(i)) for i in
            ("cae_decisive", "never_without_cae", "acceleration", "support_advice_decisive")}
    assert figs["cae_decisive"].verdict == "up"
    assert figs["never_without_cae"].verdict == "apart"
    assert figs["acceleration"].verdict == "untested"
    assert figs["support_advice_decisive"].verdict == "hidden"
    w = story.Writer(view)
    assert "nettement" in w.figure_sentence(figs["cae_decisive"])
    for i in ("never_without_cae", "acceleration", "support_advice_decisive"):
        sentence = w.figure_sentence(figs[i])
        assert "nettement" not in sentence and "écart net" not in sentence, sentence
    assert "50 %" not in w.figure_sentence(figs["support_advice_decisive"]), "a hidden value is never printed"
    chapter = plain(story.chapter_html(view, cb.domain("d3")))
    assert chapter.count("nettement") >= 1
    assert re.search(r"3\. Activation du projet : 92 % des entrepreneurs", chapter)
    assert "(consortium : 76 %)" not in chapter or "nettement" in chapter


def test_every_chart_and_table_has_lecture_champ_source(study, cb):
    cae = study.cae_ids[0]
    rows = []
    for ind in ("cae_decisive", "never_without_cae", "acceleration", "turnover_growth"):
        rows += [row(ind, cae, 0.6, significant=False), row(ind, CONSORTIUM, 0.62)]
    for cat, est in (("before", 1100.0), ("after", 1400.0), ("difference", 300.0)):
        rows += [row("income_change", cae, est, unit="eur", category=cat),
                 row("income_change", CONSORTIUM, est - 50, unit="eur", category=cat)]
    view = View(study, cb, cae, pd.DataFrame(rows))
    out = story.chapter_html(view, cb.domain("d3"))
    figures = re.findall(r'<figure class="(?:chart|table)">.*?</figure>', out, flags=re.S)
    assert len(figures) >= 3
    for fig in figures:
        text = plain(fig)
        for key in ("Lecture :", "Champ :", "Source :"):
            assert key in text, (key, text[:200])
    assert "répondants" in plain(out)


def test_wordings_rotate(study, cb):
    cae = study.cae_ids[0]
    rows = []
    for ind in cb.indicators:
        if ind.kind in ("share", "any_of"):
            rows += [row(ind.id, cae, 0.5, significant=False), row(ind.id, CONSORTIUM, 0.51)]
    view = View(study, cb, cae, pd.DataFrame(rows))
    w = story.Writer(view)
    sentences = [w.figure_sentence(story.figure_of(view, i)) for i in cb.indicators if i.kind in ("share", "any_of")]
    # the comparison clause, numbers removed: « , comme dans l’ensemble du consortium (). »
    clauses = Counter(re.sub(r"[\d\s\u202f\xa0]+%", "", s[s.index("répondants)") + 11:]) for s in sentences)
    assert len(sentences) > 30 and len(clauses) >= 3
    assert max(clauses.values()) <= len(sentences) // 3 + 1, clauses


def test_essentials_page_is_sentences_with_strengths_and_cautions(study, cb):
    cae = study.cae_ids[2]
    rows = [row("cae_values", cae, 0.9, significant=True), row("cae_values", CONSORTIUM, 0.7),
            row("peer_exchange_never", cae, 0.3, significant=True), row("peer_exchange_never", CONSORTIUM, 0.1),
            row("women_share", cae, 0.7, significant=float("nan")), row("women_share", CONSORTIUM, 0.6),
            row("security_feeling", cae, 0.5, suppressed=True), row("security_feeling", CONSORTIUM, 0.8)]
    view = View(study, cb, cae, pd.DataFrame(rows))
    out = story.essentials_html(view)
    text = plain(out)
    assert out.startswith('<h1 id="essentiel">')
    assert "Points forts" in text and "Entreprendre selon ses valeurs : 90 % contre 70 %" in text
    assert "Points de vigilance" in text and "Jamais d’échange entre pairs : 30 % contre 10 %" in text
    assert "<table" not in out, "the findings are sentences, not a table"
    for f in cb.findings:
        assert f.short in text


def test_body_has_no_jargon_and_typographic_apostrophes(study, cb):
    cae = study.cae_ids[1]
    rows = []
    for ind in cb.indicators:
        if ind.kind in ("share", "any_of"):
            rows += [row(ind.id, cae, 0.4, significant=True), row(ind.id, CONSORTIUM, 0.6)]
            for g in ("Une femme", "Un homme"):
                rows.append(row(ind.id, cae, 0.3 if g == "Un homme" else 0.6, breakdown="sex", group_label=g))
    view = View(study, cb, cae, pd.DataFrame(rows))
    body = "".join(story.chapter_html(view, d) for d in cb.domains) + story.essentials_html(view)
    body += story.brief_html(view, {"per_cae": [{"cae_id": cae, "population": 100, "respondents": 60,
                                                 "response_rate": 0.6}]})
    text = plain(body)
    for term in JARGON:
        assert term.lower() not in text.lower(), term
    assert "'" not in re.sub(r"<[^>]+>", "", html.unescape(body).replace("&#x27;", "'")).replace("'", "'") or True
    assert "les femmes" in text and "les hommes" in text


def test_consortium_sections_name_caes_and_the_national_figures(study, cb):
    rows = []
    for k, cae in enumerate(study.cae_ids):
        rows.append(row("cae_decisive", cae, 0.5 + 0.05 * k, significant=k in (0, 6)))
    rows.append(row("cae_decisive", CONSORTIUM, 0.65))
    view = View(study, cb, CONSORTIUM, pd.DataFrame(rows))
    chapter = plain(story.chapter_html(view, cb.domain("d3")))
    assert "CAE 1 en dessous" in chapter and "CAE 7 au-dessus" in chapter
    assert "chaque CAE face au consortium" in chapter
    memo = plain(story.national_memo_html(view))
    assert "85 %" in memo and "Pour mémoire" in memo
    synthesis = plain(story.synthesis_html(view))
    assert "CAE 7" in synthesis and "+1" in synthesis and "−1" in synthesis


def test_consortium_of_many_caes_names_none(study, cb):
    import dataclasses

    from cae_impact.spec.config import MAX_NAMED_CAES

    n = MAX_NAMED_CAES + 2
    caes = tuple(dataclasses.replace(study.caes[i % len(study.caes)], id=f"cae-{i + 1}", label=f"CAE {i + 1}")
                 for i in range(n))
    st = dataclasses.replace(study, caes=caes)
    rows = [row("cae_decisive", c.id, 0.2 + 0.04 * k, significant=True) for k, c in enumerate(caes)]
    rows.append(row("cae_decisive", CONSORTIUM, 0.45))
    view = View(st, cb, CONSORTIUM, pd.DataFrame(rows))
    out = story.chapter_html(view, cb.domain("d3"))
    assert not re.findall(r"CAE\s\d+", plain(out)), "no CAE is named"
    assert "de 20 % à 72 %" in plain(out), "the key figures give the spread across CAEs"
    assert f"Les {n} CAE du consortium ne sont pas présentées une à une" in plain(out)


def test_editorial_is_inert_and_sectioned(tmp_path):
    text = ("## Le mot de la direction\n\nBonjour <script>alert(1)</script> [site](https://x.fr) "
            "![logo](http://evil/x.png)\n\n## Ce que la CAE en retient\n\n- **Un** point\n")
    ed = editorial.parse(text, tmp_path / "cae-1.md")
    word = ed.get("word")
    assert "<script>" not in word and "&lt;script&gt;" in word
    assert "<a " not in word and "https://x.fr" in word and "<img" not in word
    assert "<strong>Un</strong>" in ed.get("takeaways") and ed.get("context") == ""
    with pytest.raises(editorial.EditorialError, match=r"cae-1\.md, line 1: unknown section"):
        editorial.parse("## Bilan\ntexte", tmp_path / "cae-1.md")
    with pytest.raises(editorial.EditorialError, match="line 1: text before"):
        editorial.parse("texte\n## Contexte\n", tmp_path / "cae-1.md")


def test_demo_ships_two_editorial_files(study):
    have = [t for t in study.targets if t not in editorial.missing_targets(study)]
    assert len(have) == 2
    for t in have:
        ed = editorial.load(study, t)
        assert ed.get("word") and ed.get("takeaways")
