"""Report rendering: document shell, numbering, table of contents, escaping, PDF and DOCX."""

import datetime as dt

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cae_impact import present, report

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
    nb = executed_nb(tmp_path / "03_profile.ipynb", [present.heading_html("Profil des entrepreneurs", 1)])
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
    with pytest.raises(FileNotFoundError, match="02_effect_d1.ipynb"):
        report.render_html([tmp_path / "02_effect_d1.ipynb"], META, tmp_path / "r.html")


def test_pdf_and_docx(tmp_path):
    import docx

    nb = executed_nb(tmp_path / "n.ipynb", [present.heading_html("Chapitre", 1),
                                             present.table_html(__import__("pandas").DataFrame({"Indicateur": ["a"], "Part": ["85 %"]}), caption="Résultats")])
    html = report.render_html([nb], META, tmp_path / "report.html")
    pdf = report.render_pdf(html, tmp_path / "report.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    out = report.render_docx(html, tmp_path / "report.docx")
    d = docx.Document(str(out))
    assert len(d.tables) >= 1
    assert any(p.style.name.startswith("Heading") for p in d.paragraphs)
