"""Report documents from executed notebooks: one self-contained HTML, then PDF and DOCX.

The executed notebooks of a target (profile, then one per effect domain) are merged, their
inputs and any cell tagged ``remove-cell`` dropped, and exported with nbconvert's ``basic``
template. The result is wrapped in the report shell (cover, table of contents, running header,
« Données synthétiques » banner when the study is synthetic) with the print stylesheet, so
WeasyPrint lays it out on A4 and pandoc turns it into a Word document with real tables.

Every output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .config import CONSORTIUM, StudyConfig

TEMPLATES = Path(__file__).parent / "templates"
REMOVE_TAGS = {"remove-cell", "parameters", "injected-parameters"}


def notebook_order(domain_ids: list[str]) -> list[str]:
    """File names of a target's executed notebooks, in report order (profile, then domains)."""
    return ["03_profile.ipynb", *[f"02_effect_{d}.ipynb" for d in domain_ids]]


def _report_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Keep what a reader should see: markdown, and rich outputs of code cells (no streams)."""
    kept = []
    for cell in nb.cells:
        if REMOVE_TAGS & set(cell.metadata.get("tags", [])):
            continue
        if cell.cell_type == "markdown":
            kept.append(cell)
        elif cell.cell_type == "code":
            outputs = [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")]
            if outputs:
                new = nbformat.v4.new_code_cell(source="", outputs=outputs)
                kept.append(new)
    return kept


def merge_notebooks(paths: list[Path]) -> nbformat.NotebookNode:
    """Merge executed notebooks into one, keeping only what the report shows."""
    merged = nbformat.v4.new_notebook()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        merged.cells.extend(_report_cells(nb))
    return merged


def notebook_body_html(nb: nbformat.NotebookNode) -> str:
    """Export a notebook's cells as an HTML fragment (nbconvert ``basic`` template, no inputs)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return body


_HEADING_RE = re.compile(r"<h([12])(?: id=\"([^\"]*)\")?>(.*?)</h\1>", re.S)
_FIGCAP_RE = re.compile(r'(<figure class="chart">.*?<figcaption>)(.*?)(</figcaption>)', re.S)
_TABCAP_RE = re.compile(r"(<caption>)(.*?)(</caption>)", re.S)


def number_figures(body: str) -> str:
    """Prefix every chart caption with « Figure N » and every table caption with « Tableau N »."""
    counter = {"n": 0}

    def fig(m: re.Match[str]) -> str:
        counter["n"] += 1
        return f"{m.group(1)}<span class=\"fignum\">Figure {counter['n']}</span> – {m.group(2)}{m.group(3)}"

    body = _FIGCAP_RE.sub(fig, body)
    tcount = {"n": 0}

    def tab(m: re.Match[str]) -> str:
        tcount["n"] += 1
        return f"{m.group(1)}<span class=\"fignum\">Tableau {tcount['n']}</span> – {m.group(2)}{m.group(3)}"

    return _TABCAP_RE.sub(tab, body)


def add_toc(body: str, toc_depth: int = 1) -> tuple[str, str]:
    """Give every h1/h2 an id and return (body, table-of-contents HTML down to ``toc_depth``)."""
    entries: list[tuple[int, str, str]] = []
    used: set[str] = set()

    def repl(m: re.Match[str]) -> str:
        level, ident, text = int(m.group(1)), m.group(2), m.group(3)
        if not ident:
            base = re.sub(r"[^a-z0-9]+", "-", html.unescape(re.sub("<[^>]+>", "", text)).lower()).strip("-") or "section"
            ident, k = base, 2
            while ident in used:
                ident, k = f"{base}-{k}", k + 1
        used.add(ident)
        entries.append((level, ident, text))
        return f'<h{level} id="{ident}">{text}</h{level}>'

    body = _HEADING_RE.sub(repl, body)
    items = "".join(
        f'<li class="toc-l{level}"><a href="#{ident}">{text}</a></li>'
        for level, ident, text in entries
        if level <= toc_depth
    )
    return body, f'<nav class="toc" aria-label="Sommaire"><h2 class="toc-title">Sommaire</h2><ol>{items}</ol></nav>'


def production_date() -> dt.date:
    """The report's date: SOURCE_DATE_EPOCH when set (reproducible builds), else today."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC).date()
    return dt.date.today()


_MONTHS = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre"]


def french_date(day: dt.date) -> str:
    """« 26 novembre 2026 » (« 1er » for the first day of a month).

    >>> french_date(dt.date(2026, 11, 1))
    '1er novembre 2026'
    """
    d = "1er" if day.day == 1 else str(day.day)
    return f"{d} {_MONTHS[day.month - 1]} {day.year}"


@dataclass(frozen=True)
class ReportMeta:
    """What the report shell prints around the body."""

    title: str
    target_label: str
    wave: str
    synthetic: bool
    date: str
    is_consortium: bool


def report_meta(study: StudyConfig, target: str) -> ReportMeta:
    """Build the report's metadata for a target."""
    return ReportMeta(
        title="Mesure de l'impact social — CAE-IMPACT",
        target_label=study.target_label(target),
        wave=study.wave,
        synthetic=study.synthetic,
        date=french_date(production_date()),
        is_consortium=target == CONSORTIUM,
    )


def wrap_document(body: str, meta: ReportMeta, annex_html: str = "") -> str:
    """Wrap the report body in the full document: cover, table of contents, banner, CSS."""
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    body = number_figures(body + annex_html)
    body, toc = add_toc(body)
    e = html.escape
    scope = "Rapport du consortium" if meta.is_consortium else "Rapport d'impact de la CAE"
    banner = (
        '<div class="synthetic-banner" role="note">Données synthétiques — démonstration : '
        "ce rapport ne décrit aucune CAE réelle.</div>"
        if meta.synthetic
        else ""
    )
    running = f"CAE-IMPACT · {e(meta.target_label)} · vague {e(meta.wave)}"
    if meta.synthetic:
        running += " · DONNÉES SYNTHÉTIQUES"
    return f"""<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{e(meta.title)} — {e(meta.target_label)} — {e(meta.wave)}</title>
<style>{css}</style>
</head>
<body data-running-header="{running}">
<div class="running-header" aria-hidden="true">{running}</div>
{banner}
<header class="cover">
  <p class="cover-kicker">{e(scope)}</p>
  <h1 class="cover-title">{e(meta.title)}</h1>
  <p class="cover-target">{e(meta.target_label)}</p>
  <p class="cover-wave">Vague d'enquête {e(meta.wave)}</p>
  <p class="cover-date">Produit le {e(meta.date)}</p>
  {'<p class="cover-synthetic">Données synthétiques — démonstration</p>' if meta.synthetic else ''}
  <p class="cover-credit">Méthode CAE-IMPACT conçue par Coopérer Pour Entreprendre et Ellyx.</p>
</header>
{toc}
<main>
{body}
</main>
</body>
</html>
"""


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    tmp.replace(path)


def render_html(notebook_paths: list[Path], meta: ReportMeta, out: Path, annex_html: str = "") -> Path:
    """Render the target's executed notebooks into one self-contained HTML report."""
    missing = [str(p) for p in notebook_paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"executed notebooks missing for the report: {', '.join(missing)}")
    body = notebook_body_html(merge_notebooks(notebook_paths))
    write_atomic(out, wrap_document(body, meta, annex_html))
    return out


def render_pdf(html_path: Path, out: Path) -> Path:
    """Render the HTML report to an A4 PDF with WeasyPrint (print stylesheet of the report)."""
    import logging

    from weasyprint import HTML

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    pdf = HTML(filename=str(html_path), base_url=str(html_path.parent)).write_pdf()
    write_atomic(out, pdf)
    return out


def render_docx(html_path: Path, out: Path) -> Path:
    """Render the HTML report to DOCX with pandoc: Word heading styles, real tables, images."""
    import pypandoc

    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.docx")
    pypandoc.convert_file(
        str(html_path),
        "docx",
        format="html",
        outputfile=str(tmp),
        extra_args=["--resource-path", str(html_path.parent)],
    )
    tmp.replace(out)
    return out
