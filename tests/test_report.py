"""Report rendering: document shell, numbering, table of contents, escaping, PDF and DOCX."""

import datetime as dt
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cae_impact.render import present, report

META = report.ReportMeta(title="Mesure", target_label="CAE 3", wave="2026", synthetic=True,
                         date="1er décembre 2026", is_consortium=False)


def executed_nb(path, html_outputs, markdown="## Une section"):
    cells = [new_code_cell("x = 1", metadata={"tags": ["parameters", "remove-cell"]}), new_markdown_cell(markdown)]
    for h in html_outputs:
        cells.append(new_code_cell("show()", outputs=[new_output("display_data", data={"text/html": h})]))
    cells.append(new_code_cell("print('noise')", outputs=[new_output("stream", name="stdout", text="noise\n")]))
    nb = new_notebook(cells=cells)
    nbformat.write(nb, path)
    return path


def test_french_date():
    assert report.french_date(dt.date(2026, 11, 26)) == "26 novembre 2026"
    assert report.french_date(dt.date(2026, 3, 1)) == "1er mars 2026"


def test_figures_and_tables_numbered_in_order():
    body = ('<figure class="chart"><img alt="a"/><figcaption>Premier</figcaption></figure>'
            '<table><caption>T</caption></table>'
            '<figure class="chart"><img alt="b"/><figcaption>Second</figcaption></figure>')
    out = report.number_figures(body)
    assert out.index("Figure 1</span> – Premier") < out.index("Figure 2</span> – Second")
    assert "Tableau 1</span> – T" in out


def test_toc_links_every_chapter():
    body, toc = report.add_toc("<h1>Profil</h1><h2>Sexe</h2><h1>Profil</h1>", toc_depth=2)
    assert 'id="profil"' in body and 'id="profil-2"' in body and 'id="sexe"' in body
    assert toc.count("<li") == 3 and 'href="#profil-2"' in toc
    _, chapters_only = report.add_toc("<h1>Profil</h1><h2>Sexe</h2>")
    assert chapters_only.count("<li") == 1


def test_render_html_keeps_outputs_drops_code_and_streams(tmp_path):
    nb = executed_nb(tmp_path / "04_profile.ipynb", [present.heading_html("Profil des entrepreneurs", 1)])
    out = report.render_html([nb], META, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    assert "Profil des entrepreneurs" in text and "Une section" in text
    assert "noise" not in text and "x = 1" not in text and "show()" not in text
    assert "Données synthétiques" in text and 'lang="fr"' in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text, "self-contained"


def test_respondent_text_is_never_interpreted(tmp_path):
    evil = '<script>alert(1)</script> <img src=x onerror=alert(2)> **gras** =1+1'
    cell = present.table_html(__import__("pandas").DataFrame({"Verbatim": [evil]}))
    nb = executed_nb(tmp_path / "n.ipynb", [cell])
    html = report.render_html([nb], META, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "**gras** =1+1" in html


def test_missing_notebook_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_effect.ipynb"):
        report.render_html([tmp_path / "03_effect.ipynb"], META, tmp_path / "r.html")


EVIL = '<script>alert(1)</script> <img src=x onerror=alert(2)> **gras** =1+1'


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """One small report in the three formats: a chapter, a table, a chart, a verbatim box."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from cae_impact.render import story

    tmp = tmp_path_factory.mktemp("docs")
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["a", "b"], [1, 2])
    outputs = [present.heading_html("Chapitre", 1),
               present.table_html(pd.DataFrame({"Indicateur": ["a"], "Part": ["85 %"]}), caption="Résultats"),
               present.heading_html("Annexe", 1),
               present.table_html(pd.DataFrame({
                   "Indicateur": ["Part des entrepreneurs pour qui la CAE a été décisive dans l’activation de "
                                  "leur projet entrepreneurial et son accélération"] * 2,
                   "CAE 3": ["85 %", "12 345 €"], "Consortium": ["81 %", "9 876 €"], "n": ["1 234", "98"]}),
                   caption="Largeurs", numeric_columns=["CAE 3", "Consortium", "n"]),
               present.figure_html(fig, alt="Barres a et b", caption="Un graphique"),
               story.verbatim_box([EVIL, "Une réponse : vraiment utile !"], "Qu’est-ce qui a changé ?")]
    nb = executed_nb(tmp / "n.ipynb", outputs)
    html = report.render_html([nb], META, tmp / "report.html")
    pdf = report.render_pdf(html, tmp / "report.pdf")
    out = report.render_docx(html, tmp / "report.docx")
    return html, pdf, out


def test_pdf_is_a4_and_respondent_text_is_plain(documents):
    import subprocess

    _, pdf, _ = documents
    assert pdf.read_bytes().startswith(b"%PDF")
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    assert "595.276 x 841.89" in info or "595.28 x 841.89" in info, "A4"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "<script>alert(1)</script>" in flat and "<img src=x onerror=alert(2)>" in flat
    assert "**gras** =1+1" in flat and "Paroles d’entrepreneurs" in flat
    assert "Page 1 / " in flat and "Figure 1" in flat


def test_docx_tables_images_headings_toc_and_plain_text(documents):
    import docx

    _, _, out = documents
    d = docx.Document(str(out))
    assert len(d.tables) >= 1 and d.tables[0].cell(0, 0).text == "Indicateur"
    assert len(d.inline_shapes) >= 1, "the chart is an embedded image"
    styles = {p.style.name for p in d.paragraphs}
    assert "Heading 1" in styles
    text = "\n".join(p.text for p in d.paragraphs)
    assert "<script>alert(1)</script>" in text and "<img src=x onerror=alert(2)>" in text
    assert "**gras** =1+1" in text and "Données synthétiques" in text
    assert "Sommaire" not in text.split("Chapitre")[-1], "the HTML contents list is not repeated"
    assert d.styles["Heading 1"].font.color.rgb is not None, "reference document styles applied"


def test_docx_header_footer_with_page_numbers_and_synthetic_label(documents):
    import docx

    _, _, out = documents
    section = docx.Document(str(out)).sections[0]
    assert "CAE 3" in section.header.paragraphs[0].text and "DONNÉES SYNTHÉTIQUES" in section.header.paragraphs[0].text
    foot = section.footer.paragraphs[0]
    instructions = [t.text.strip() for t in foot._p.iter(f"{report._W}instrText")]
    assert instructions == ["PAGE", "NUMPAGES"]
    assert foot.text.startswith("Page ") and " sur " in foot.text


def test_docx_table_of_contents_has_its_entries_written(documents):
    """The « Sommaire » lists the chapters with a page field each, without a refresh."""
    import docx

    _, _, out = documents
    d = docx.Document(str(out))
    xml = d.element.xml
    assert "TOC \\o" not in xml, "no empty TOC field left"
    texts = [p.text for p in d.paragraphs]
    at = texts.index("Sommaire")
    assert texts[at + 1:at + 3] == ["Chapitre\t", "Annexe\t"]
    links = d.paragraphs[at + 1]._p.findall(f"{report._W}hyperlink")
    mark = links[0].get(f"{report._W}anchor")
    assert f"PAGEREF {mark} \\h" in xml
    heading = next(p for p in d.paragraphs if p.style.name == "Heading 1" and p.text == "Chapitre")
    assert heading._p.find(f"{report._W}bookmarkStart").get(f"{report._W}name") == mark


def test_docx_columns_fit_their_content_and_numbers_are_right_aligned(documents):
    import docx

    _, _, out = documents
    table = next(t for t in docx.Document(str(out)).tables if t.cell(0, 0).text == "Indicateur" and len(t.columns) == 4)
    grid = [int(c.get(f"{report._W}w")) for c in table._tbl.iter(f"{report._W}gridCol")]
    assert grid[0] > 2.5 * max(grid[1:]), f"the label column is the wide one: {grid}"
    assert min(grid) > 0.08 * sum(grid), "a number column holds its widest number"
    for row in table.rows:
        assert row.cells[0].paragraphs[0].alignment in (None, 0)
        for cell in row.cells[1:]:
            assert cell.paragraphs[0].alignment == 2, "numbers on the right"  # WD_ALIGN_PARAGRAPH.RIGHT


def test_docx_table_layout_gives_widths_and_alignment():
    html = ('<table class="data"><caption>C</caption><thead><tr><th>Libellé</th><th class="num">n</th></tr></thead>'
            '<tbody><tr><td>Un libellé assez long pour occuper la ligne</td><td class="num">12</td></tr></tbody></table>')
    out = report.docx_table_layout(html)
    widths = [float(w) for w in re.findall(r'width:([0-9.]+)%', out)]
    assert len(widths) == 2 and widths[0] > 4 * widths[1]
    assert out.index("<colgroup>") > out.index("</caption>")
    assert out.count('style="text-align:right"') == 2


def test_html_alt_text_and_linked_toc(documents):
    import re

    html, _, _ = documents
    text = html.read_text(encoding="utf-8")
    imgs = re.findall(r"<img\b[^>]*>", text)
    assert imgs and all(re.search(r'alt="[^"]+"', i) for i in imgs)
    assert '<a href="#chapitre">Chapitre</a>' in text and '<h1 id="chapitre">' in text
    assert "<script" not in text.lower()


def test_typeset_french_text_not_markup():
    out = report.typeset('<p class="a:b">Note: 12% ; vraiment?</p><style>a:hover{x:y}</style><p>&lt;b&gt;; «x»</p>')
    assert out.startswith('<p class="a:b">Note\xa0: 12\u202f%\u202f; vraiment\u202f?</p><style>a:hover{x:y}</style>')
    assert "&lt;b&gt;;" in out and "«\xa0x\xa0»" in out
    assert report.typeset(out) == out


def test_typeset_gives_escaped_apostrophes_their_typographic_form():
    """html.escape writes ' as &#x27; (the method annex's sentences): the text gets ’ all the same,
    an attribute keeps its entity."""
    import html

    out = report.typeset(f'<p title="l&#x27;a">{html.escape("l" + chr(39) + "effet de plan")}</p>')
    assert out == '<p title="l&#x27;a">l\u2019effet de plan</p>'


def test_long_tables_may_break_with_repeated_header():
    import pandas as pd

    short = present.table_html(pd.DataFrame({"a": range(3)}))
    long = present.table_html(pd.DataFrame({"a": range(40)}))
    out = report.mark_long_tables(short + long)
    assert out.count('class="table long"') == 1 and "<thead>" in long
    css = (report.TEMPLATES / "report.css").read_text(encoding="utf-8")
    assert "thead { display: table-header-group; }" in css and "size: A4" in css


def test_reference_docx_is_deterministic(tmp_path):
    a = report.make_reference_docx(tmp_path / "a.docx").read_bytes()
    b = report.make_reference_docx(tmp_path / "b.docx").read_bytes()
    assert a == b == report.REFERENCE_DOCX.read_bytes(), "templates/reference.docx is up to date"


def test_render_html_with_study_adds_front_and_annexes(tmp_path):
    import dataclasses

    from cae_impact.spec.config import load_study

    study = load_study()
    meta = dataclasses.replace(report.report_meta(study, "cae-3"), date="1er décembre 2026")
    nb = executed_nb(tmp_path / "n.ipynb", [present.heading_html("Profil des entrepreneurs", 1)])
    out = report.render_html([nb], meta, tmp_path / "r.html", reports_root=tmp_path / "reports",
                             processed_root=tmp_path / "processed")
    text = out.read_text(encoding="utf-8")
    text = text[text.index("<main>"):]
    order = [text.index(s) for s in ("<main>", "Profil des entrepreneurs</h1>", "Annexe A", "Annexe B",
                                     "Annexe C", "Annexe D")]
    assert order == sorted(order)
    assert 'href="#annexe-provenance"' in out.read_text(encoding="utf-8")


def test_html_is_byte_reproducible(tmp_path):
    nb = executed_nb(tmp_path / "n.ipynb", [present.heading_html("Chapitre", 1), present.paragraph_html("texte")])
    a = report.render_html([nb], META, tmp_path / "a.html").read_bytes()
    b = report.render_html([nb], META, tmp_path / "b.html").read_bytes()
    assert a == b


def test_print_variant_drops_notebook_wrappers_and_serves_images_from_memory(documents):
    html, _, _ = documents
    markup = html.read_text(encoding="utf-8")
    assert 'class="output_area"' in markup and "data:image/png;base64," in markup
    lean, images = report.print_html(markup)
    for wrapper in ('class="output_wrapper"', 'class="output"', 'class="output_area"',
                    'class="output_html rendered_html output_subarea"', 'class="cell border-box-sizing'):
        assert wrapper not in lean
    assert lean.count("<div") == lean.count("</div>"), "wrappers dropped with their closing tags"
    assert "data:image" not in lean and len(images) == 1
    (url, (mime, data)), = images.items()
    assert f'src="{url}"' in lean and mime == "image/png" and data.startswith(b"\x89PNG")
    strip = lambda s: re.sub(r"<[^>]+>|\s+", "", s)  # noqa: E731
    assert strip(lean) == strip(markup), "same text, same order"
    assert report.print_html(markup) == (lean, images), "deterministic"


def test_print_tables_get_column_widths_from_their_content():
    import pandas as pd

    table = present.table_html(pd.DataFrame({"Réponse": ["Demandeur(se) d'emploi indemnisé(e) (allocation chômage, ARE)", "Salarié(e)"],
                                             "CAE 1": ["51\u202f%", "11\u202f%"]}),
                               caption="Situation", numeric_columns=["CAE 1"])
    out = report.add_column_widths(table)
    assert '<table class="data print-cols"><caption>Situation</caption><colgroup>' in out
    widths = [float(w) for w in re.findall(r'<col style="width:([\d.]+)%"/>', out)]
    assert len(widths) == 2 and abs(sum(widths) - 100) < 0.05 and widths[0] > 3 * widths[1]
    # The numeric column is never narrower than its header and values, which do not wrap.
    measure = report._TextMeasure()
    assert widths[1] / 100 * report._TEXT_WIDTH_EM >= measure.width("CAE 1", bold=True)
    # Short tables keep their natural proportions (CSS: widths in proportion to max-content).
    short = report.column_widths("<tr><td>aaaa</td><td>aa</td></tr>")
    assert short is not None and abs(short[0] / short[1] - (4 * 1 + 2.2) / (2 * 1 + 2.2)) < 0.5
    # Without the font files, a mean advance per character gives the same proportions, roughly.
    blind = report._TextMeasure()
    blind._fonts = {False: None, True: None}
    rough = report.column_widths(re.search(r"<table[^>]*>(.*)</table>", table, re.S).group(1), blind)
    assert rough is not None and abs(rough[0] - widths[0]) < 10
    # Spanning cells and tables with a class of their own keep the automatic layout.
    assert report.column_widths('<tr><td colspan="2">a</td></tr><tr><td>b</td><td>c</td></tr>') is None
    special = table.replace('class="data"', 'class="data essentials"')
    assert report.add_column_widths(special) == special


def test_render_pdf_restores_the_garbage_collector(documents, tmp_path):
    import gc

    html, _, _ = documents
    assert gc.isenabled()
    report.render_pdf(html, tmp_path / "a.pdf")
    assert gc.isenabled()


def test_pdf_embeds_the_chart_and_keeps_the_tables(documents):
    import subprocess

    _, pdf, _ = documents
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    kinds = [line.split()[2] for line in images.splitlines()[2:]]
    assert kinds.count("image") == 1, "the chart, once"
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Tableau 1 – Résultats" in text and "Indicateur Part" in text and "85" in text
    assert "Sommaire" in text and "Chapitre" in text
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                                                          check=True).stdout).group(1))
    assert 3 <= pages <= 5, "cover, contents, one chapter (with the verbatim box)"


def test_report_content_digest_follows_what_the_report_shows(tmp_path):
    """The HTML's cache key: a hidden (remove-cell) edit or a stream keeps it, a visible edit,
    an output or the order of the notebooks changes it."""
    a = executed_nb(tmp_path / "a.ipynb", ["<p>un</p>"])
    b = executed_nb(tmp_path / "b.ipynb", ["<p>deux</p>"])
    base = report.report_content_digest([a, b])
    nb = nbformat.read(a, as_version=4)
    nb.cells.insert(0, new_markdown_cell("note du chercheur", metadata={"tags": ["remove-cell"]}))
    nb.cells[-1].outputs[0]["text"] = "other noise\n"
    nb.cells[1].source = "y = 2"  # the hidden parameters cell
    nbformat.write(nb, a)
    assert report.report_content_digest([a, b]) == base
    assert report.report_content_digest([b, a]) != base
    executed_nb(tmp_path / "a.ipynb", ["<p>un</p>"], markdown="## Une autre section")
    assert report.report_content_digest([a, b]) != base
    executed_nb(tmp_path / "a.ipynb", ["<p>un !</p>"])
    assert report.report_content_digest([a, b]) != base
    executed_nb(tmp_path / "a.ipynb", ["<p>un</p>"])
    assert report.report_content_digest([a, b]) == base


def test_report_content_digest_skips_schema_validation_and_keeps_its_value(tmp_path, monkeypatch):
    """The key is computed without validating cells (~5 ms each: most of an HTML cache hit) and
    has the value it had when the cells were validated (existing cache entries still hit)."""
    import hashlib
    import json

    a = executed_nb(tmp_path / "a.ipynb", ["<p>un</p>", "<p>deux</p>"])
    b = executed_nb(tmp_path / "b.ipynb", ["<p>trois</p>"])
    expected = hashlib.sha256()
    for path in (a, b):
        nb = nbformat.from_dict(json.loads(path.read_bytes()))
        for cell in report._report_cells(nb):  # validated cells, as before
            expected.update(json.dumps([cell.cell_type, cell.get("source", ""), cell.get("outputs", [])],
                                       sort_keys=True, ensure_ascii=False).encode())
        expected.update(b"\0")

    def no_validation(*args, **kwargs):
        raise AssertionError("the digest validated a cell")

    monkeypatch.setattr(nbformat.v4.nbbase, "validate", no_validation)
    assert report.report_content_digest([a, b]) == expected.hexdigest()


_PHONE_PROBE = """<script>
const out = [];
for (const cell of document.querySelectorAll('table.data td, table.data th')) {
  const range = document.createRange(); range.selectNodeContents(cell);
  const lines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
  out.push([cell.textContent.split(/\\s+/).filter(Boolean).length, lines, cell.textContent].join('|'));
}
const outer = window.parent.document.body;
outer.setAttribute('data-cells', JSON.stringify(out));
outer.setAttribute('data-page-width', document.documentElement.scrollWidth);
outer.setAttribute('data-view-width', window.innerWidth);
</script>"""


def test_html_on_a_phone_never_breaks_words_and_tables_scroll(tmp_path):
    """At 390 px wide, no table cell writes a word one letter a line; the page itself stays 390 px."""
    import json
    import shutil
    import subprocess

    import pandas as pd

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium")
    label = "Part des entrepreneurs demandeurs d’emploi ou allocataires du RSA juste avant leur entrée"
    essentials = present.table_html(
        pd.DataFrame({"Indicateur": [label] * 3, "CAE 5": ["62 %", "31 %", "s"], "Consortium": ["60 %", "34 %", "s"],
                      "Écart significatif ?": ["non", "oui", "—"]}),
        numeric_columns=["CAE 5", "Consortium"], css_class="data essentials")
    wide = present.table_html(
        pd.DataFrame({"CAE": ["CAE 5"], "Entrepreneurs (registre)": ["260"], "Répondants retenus": ["99"],
                      "Taux de réponse": ["38 %"], "Taille effective": ["89"], "Intervalle de confiance à 95 %": ["[34 % ; 55 %]"]}),
        caption="Population", numeric_columns=["Entrepreneurs (registre)", "Répondants retenus", "Taux de réponse",
                                                "Taille effective"])
    page = report.wrap_document(present.heading_html("Chapitre", 1) + essentials + wide, META)
    # Headless Chromium's window is at least 500 px wide: the page is laid out in a 390 px
    # frame (srcdoc: same origin, so the probe reports to the outer page).
    import html as html_mod

    inner = page.replace("</body>", _PHONE_PROBE + "</body>")
    path = tmp_path / "phone.html"
    path.write_text(f'<!DOCTYPE html><html><body style="margin:0"><iframe width="390" height="2000" '
                    f'style="border:0" srcdoc="{html_mod.escape(inner, quote=True)}"></iframe></body></html>',
                    encoding="utf-8")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=390,2000",
                          "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    cells = json.loads(html_unescape(re.search(r'data-cells="([^"]*)"', dom).group(1)))
    assert re.search(r'data-view-width="390"', dom) and len(cells) > 20
    broken = [c for c in cells if int(c.split("|")[1]) > max(1, int(c.split("|")[0]))]
    assert not broken, f"words broken inside at 390 px: {broken}"
    assert int(re.search(r'data-page-width="(\d+)"', dom).group(1)) <= 390, "wide tables scroll in their figure"


def html_unescape(text):
    import html

    return html.unescape(text)


def test_editorial_content_goes_on_the_cover_and_after_the_chapters(tmp_path):
    """The demo's CAE 4 has an editorial file: its word and funders on the cover, its
    « Ce que la CAE en retient » after the chapters and before the annexes."""
    import dataclasses

    from cae_impact.spec.config import load_study

    study = load_study()
    meta = dataclasses.replace(report.report_meta(study, "cae-4"), date="1er décembre 2026")
    nb = executed_nb(tmp_path / "n.ipynb", [present.heading_html("7. Innovation", 1)])
    text = report.render_html([nb], meta, tmp_path / "r.html", reports_root=tmp_path / "reports",
                              processed_root=tmp_path / "processed").read_text(encoding="utf-8")
    cover = text[text.index('<header class="cover">'):text.index("</header>")]
    assert "Le mot de la direction" in cover and "Avec le soutien de" in cover
    assert "Ce que la CAE en retient" in text[text.index('<nav class="toc"'):text.index("</nav>")]
    main = text[text.index("<main>"):]
    order = [main.index(s) for s in ("7. Innovation", 'id="retient"', "Annexe A")]
    assert order == sorted(order)
