"""Report documents from executed notebooks: one self-contained HTML, then PDF and DOCX.

The executed notebooks of a target (profile, then the effect domains' chapters) are merged, their
inputs and any cell tagged ``remove-cell`` dropped, and exported with nbconvert's ``basic``
template. The result is wrapped in the report shell (cover, table of contents, running header,
« Données synthétiques » banner when the study is synthetic) with the print stylesheet, so
WeasyPrint lays it out on A4 and pandoc turns it into a Word document with real tables.

Every output is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import base64
import datetime as dt
import gc
import hashlib
import html
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from cae_impact.core.files import write_atomic
from cae_impact.core.frenchfmt import french_typography
from cae_impact.render import editorial
from cae_impact.spec.codebook import load_codebook
from cae_impact.spec.config import CONSORTIUM, PROJECT_ROOT, StudyConfig

TEMPLATES = Path(__file__).parent / "templates"
#: cells the report leaves out; ``evidence`` cells stay in the executed notebooks for reviewers
REMOVE_TAGS = {"remove-cell", "parameters", "injected-parameters", "evidence"}


def notebook_order(evolution: bool = False) -> list[str]:
    """File names of a target's executed notebooks, in report order.

    The profile, the evolution since the previous wave when there is one, then the effect
    domains (one notebook, a chapter each).
    """
    return ["04_profile.ipynb", *(["05_evolution.ipynb"] if evolution else []), "03_effect.ipynb"]


def _report_cells(nb: nbformat.NotebookNode, *, validate: bool = True) -> list[nbformat.NotebookNode]:
    """Keep what a reader should see: markdown, and rich outputs of code cells (no streams).

    ``validate=False`` builds the output cells without checking them against the notebook
    schema (nbformat's ``new_code_cell`` does, ~5 ms a cell): for the cache key only, which
    reads their type, source and outputs.
    """
    kept = []
    for cell in nb.cells:
        if REMOVE_TAGS & set(cell.metadata.get("tags", [])):
            continue
        if cell.cell_type == "markdown":
            kept.append(cell)
        elif cell.cell_type == "code":
            outputs = [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")]
            if outputs:
                if validate:
                    new = nbformat.v4.new_code_cell(source="", outputs=outputs)
                else:
                    new = nbformat.NotebookNode(cell_type="code", metadata=nbformat.NotebookNode(),
                                                execution_count=None, source="", outputs=outputs)
                kept.append(new)
    return kept


def require_notebooks(paths: list[Path]) -> None:
    """Raise FileNotFoundError naming the executed notebooks of a report that are missing."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"executed notebooks missing for the report: {', '.join(missing)}")


def report_content_digest(paths: list[Path]) -> str:
    """sha256 of what the executed notebooks put in the report (:func:`_report_cells`).

    The HTML is made from these cells only: a change elsewhere in a notebook (a researcher's
    note in a ``remove-cell`` cell, metadata) leaves the report, and its cache key, unchanged.
    """
    digest = hashlib.sha256()
    for path in paths:
        nb = nbformat.from_dict(json.loads(Path(path).read_bytes()))
        for cell in _report_cells(nb, validate=False):
            digest.update(json.dumps([cell.cell_type, cell.get("source", ""), cell.get("outputs", [])],
                                     sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def merge_notebooks(paths: list[Path]) -> nbformat.NotebookNode:
    """Merge executed notebooks into one, keeping only what the report shows."""
    merged = nbformat.v4.new_notebook()
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        merged.cells.extend(_report_cells(nb))
    for i, cell in enumerate(merged.cells):
        cell.id = f"c{i:04d}"  # nbformat draws random ids: fixed ones keep the HTML reproducible
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
    study: StudyConfig | None = None
    target: str | None = None


def report_meta(study: StudyConfig, target: str) -> ReportMeta:
    """Build the report's metadata for a target (with the study, so the annexes can be built)."""
    return ReportMeta(
        title="Mesure de l’impact social — CAE-IMPACT",
        target_label=study.target_label(target),
        wave=study.wave,
        synthetic=study.synthetic,
        date=french_date(production_date()),
        is_consortium=target == CONSORTIUM,
        study=study,
        target=target,
    )


_APOS_ENTITY_RE = re.compile(r"&#(?:x27|39);")
_TEXT_SPLIT_RE = re.compile(r"(<style\b.*?</style>|<script\b.*?</script>|<[^>]*>)", re.S | re.I)


def typeset(markup: str) -> str:
    """Apply French typography (:func:`french_typography`) to the text nodes of an HTML fragment.

    Tags, attributes and style sheets are left alone; text is already escaped, and entities
    (``&lt;``, ``&#x27;``) are kept intact.
    """
    parts = _TEXT_SPLIT_RE.split(markup)
    # html.escape writes an apostrophe as &#x27;: in a text node it is a plain character again,
    # so that « l'annexe » gets its typographic apostrophe like the rest of the prose
    return "".join(p if i % 2 else french_typography(_APOS_ENTITY_RE.sub("'", p)) for i, p in enumerate(parts))


_TABLE_FIG_RE = re.compile(r'<figure class="table">(.*?)</figure>', re.S)
LONG_TABLE_ROWS = 10


def mark_long_tables(body: str, rows: int = LONG_TABLE_ROWS) -> str:
    """Class ``long`` on tables of more than ``rows`` rows: they may break across pages.

    Shorter tables are kept on one page; a long one repeats its header row on every page.
    """
    def repl(m: re.Match[str]) -> str:
        if m.group(1).count("<tr") > rows or 'class="data questionnaire"' in m.group(1):
            return f'<figure class="table long">{m.group(1)}</figure>'
        return m.group(0)

    return _TABLE_FIG_RE.sub(repl, body)


def exclusion_note(study: StudyConfig | None) -> str:
    """The French sentence saying which CAEs the study excludes (``exclude_caes``), and why."""
    excluded = getattr(study, "excluded", ()) if study is not None else ()
    if not excluded:
        return ""
    parts = [f"{c.label} ({reason})" for c, reason in excluded]
    return (f"Périmètre : {len(excluded)} CAE inscrite(s) à l'étude en est exclue(s) et n'entre(nt) "
            f"pas dans les chiffres du consortium : {' ; '.join(parts)}.")


def add_exclusion_to_method(annex_html: str, study: StudyConfig | None) -> str:
    """The annexes with :func:`exclusion_note` first in the method annex (consortium report)."""
    note = exclusion_note(study)
    if not note:
        return annex_html
    para = f'<p class="excluded-caes"><strong>{html.escape(note)}</strong></p>'
    m = re.search(r'<h\d id="annexe-methode"[^>]*>.*?</h\d>', annex_html, flags=re.S)
    if m is None:
        return para + annex_html
    return annex_html[: m.end()] + para + annex_html[m.end():]


def wrap_document(body: str, meta: ReportMeta, annex_html: str = "", front_html: str = "",
                  editorial=None) -> str:
    """Wrap the report body in the full document: cover, table of contents, banner, CSS.

    ``front_html`` comes right after the table of contents, ``annex_html`` after the chapters;
    ``editorial`` (:class:`cae_impact.render.editorial.Editorial`) puts the director's word and the
    funders on the cover and « Ce que la CAE en retient » after the chapters. French typography
    is applied to every text node.
    """
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    takeaways = ""
    if editorial is not None and editorial.get("takeaways"):
        title = "Ce que le consortium en retient" if meta.is_consortium else "Ce que la CAE en retient"
        takeaways = (f'<h1 id="retient">{title}</h1>'
                     f'<div class="editorial takeaways">{editorial.get("takeaways")}</div>')
    body = typeset(mark_long_tables(number_figures(front_html + body + takeaways + (annex_html or ""))))
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
  <h1 class="cover-title">{e(meta.title).replace("CAE-IMPACT", '<span class="nowrap">CAE-IMPACT</span>')}</h1>
  <p class="cover-target">{e(meta.target_label)}</p>
  <p class="cover-wave">Vague d'enquête {e(meta.wave)}</p>
  <p class="cover-date">Produit le {e(meta.date)}</p>
  {'<p class="cover-synthetic">Données synthétiques — démonstration</p>' if meta.synthetic else ''}
  {f'<p class="cover-excluded">{e(exclusion_note(meta.study))}</p>' if meta.is_consortium and exclusion_note(meta.study) else ''}
  {_cover_editorial(editorial)}
  <p class="cover-credit">Méthode CAE-IMPACT conçue par Coopérer Pour Entreprendre et Ellyx.</p>
</header>
{toc}
{reading_guide(meta)}
<main>
{body}
</main>
</body>
</html>
"""


def reading_guide(meta: ReportMeta) -> str:
    """« Comment lire ce rapport », under the table of contents."""
    who = "du consortium" if meta.is_consortium else "de la CAE"
    against = ("les CAE entre elles et avec le reste du consortium" if meta.is_consortium
               else "la CAE à l’ensemble du consortium")
    items = [
        f"« L’essentiel » résume en une page ce que disent les entrepreneurs {who}, thème par thème.",
        "Chaque chapitre porte sur l’un des sept effets mesurés par la méthode CAE-IMPACT ; son titre "
        "énonce le résultat principal, ses chiffres clés comparent " + against + ".",
        "Sous chaque graphique et chaque tableau, « Lecture » dit comment le lire, « Champ » qui est "
        "compté et sur combien de répondants, « Source » d’où viennent les chiffres.",
        "« Nettement » signale un écart trop grand pour tenir au hasard des réponses ; les autres "
        "écarts ne sont pas présentés comme des différences.",
        "Les tableaux détaillés (chaque indicateur selon le profil des répondants, avec marges "
        "d’erreur et tests) sont dans le fichier indicators.xlsx et dans les carnets d’analyse "
        "joints au rapport ; les annexes décrivent la méthode, la qualité des données, le "
        "questionnaire et la provenance des chiffres.",
    ]
    lis = "".join(f"<li>{html.escape(french_typography(i), quote=False)}</li>" for i in items)
    return (f'<aside class="box reading-guide"><p class="box-title">Comment lire ce rapport</p>'
            f"<ul>{lis}</ul></aside>")


def _cover_editorial(editorial) -> str:
    """The director's word and the funders on the cover (already inert HTML), or ''."""
    if editorial is None:
        return ""
    parts = []
    if editorial.get("word"):
        parts.append('<section class="cover-word"><h2 class="cover-word-title">Le mot de la direction</h2>'
                     f'{typeset(editorial.get("word"))}</section>')
    if editorial.get("funders"):
        parts.append('<section class="cover-funders"><p class="cover-funders-title">Avec le soutien de</p>'
                     f'{typeset(editorial.get("funders"))}</section>')
    return "".join(parts)


def _reports_root_of(out: Path, meta: ReportMeta) -> Path:
    """``reports/`` from ``reports/<wave>/<target>/report.html``, else the project's."""
    folder = out.resolve().parent
    if meta.target and folder.name == meta.target and folder.parent.name == meta.wave:
        return folder.parent.parent
    return PROJECT_ROOT / "reports"


def _processed_root_of(reports_root: Path, meta: ReportMeta) -> Path:
    """The cleaned data beside ``reports_root`` (``processed/`` or ``data/processed/``), else the project's."""
    study = meta.study
    for cand in (reports_root.parent / "processed", reports_root.parent / "data" / "processed"):
        if study is not None and study.cae_ids and (cand / study.wave / study.cae_ids[0]).is_dir():
            return cand
    return PROJECT_ROOT / "data" / "processed"


def render_html(notebook_paths: list[Path], meta: ReportMeta, out: Path, annex_html: str | None = None,
                *, front_html: str | None = None, reports_root: Path | None = None,
                processed_root: Path | None = None) -> Path:
    """Render the target's executed notebooks into one self-contained HTML report.

    When ``meta`` carries the study (:func:`report_meta`), « L'essentiel », the verbatim box and
    the annexes are computed from the study's files (:mod:`cae_impact.render.annexes`) unless given:
    estimates and weighting under ``reports_root`` (default: the ``reports/`` folder ``out`` is
    in), cleaned data under ``processed_root`` (default: ``processed/`` or ``data/processed/``
    beside that folder, else the project's ``data/processed``), and the
    ``manifest.json`` beside the report when there is one.
    """
    require_notebooks(notebook_paths)
    body = notebook_body_html(merge_notebooks(notebook_paths))
    if meta.study is not None and meta.target is not None:
        from cae_impact.render import annexes
        cb = load_codebook(meta.study.codebook)
        reports_root = reports_root or _reports_root_of(out, meta)
        processed_root = processed_root or _processed_root_of(reports_root, meta)
        front_html = front_html or ""
        if annex_html is None:
            annex_html = annexes.build_annexes(meta.study, meta.target, reports_root=reports_root,
                                               processed_root=processed_root, codebook=cb,
                                               manifest_path=out.parent / "manifest.json")
    if meta.is_consortium and meta.study is not None:
        annex_html = add_exclusion_to_method(annex_html or "", meta.study)
    ed = None
    if meta.study is not None and meta.target is not None:
        ed = editorial.load(meta.study, meta.target)
    write_atomic(out, wrap_document(body, meta, annex_html or "", front_html or "", editorial=ed))
    return out


# --- The print variant: what WeasyPrint lays out -------------------------------------------------
#
# WeasyPrint is a pure-Python layout engine: its cost grows with the number of boxes and of text
# runs it measures. The PDF is therefore rendered from a leaner, print-only variant of the same
# document, made in memory (the HTML file is left as it is):
#
# * the five nested ``<div>`` wrappers nbconvert puts around every output are dropped (they carry
#   no style in print, but cost a box, a cascade and a layout pass each: ~10 % of the elements);
# * the charts' base64 ``data:`` URIs are taken out of the markup (the pure-Python HTML parser
#   otherwise scans megabytes of base64 in the consortium report) and served to WeasyPrint from
#   memory by a URL fetcher;
# * tables get their column widths up front (``<colgroup>``) and are laid out with
#   ``table-layout: fixed`` (class ``print-cols``, see report.css): WeasyPrint's automatic table
#   layout measures the min- and max-content width of every cell by shaping its text word by word,
#   which was half of the text shaping of a report of ~3 000 table cells. The widths follow the
#   same CSS 2.1 automatic layout algorithm, on widths measured from the DejaVu Sans font metrics.

_NB_WRAPPER_CLASSES = ("output_wrapper", "output", "output_area",
                       "output_html rendered_html output_subarea")
_DIV_TAG_RE = re.compile(r'<div\b(?:\s+class="([^"]*)")?[^>]*>|</div>')


def _unwrap_notebook_divs(markup: str) -> str:
    """Drop nbconvert's cell and output wrapper ``<div>`` (with their matching ``</div>``)."""
    out: list[str] = []
    stack: list[bool] = []
    pos = 0
    for m in _DIV_TAG_RE.finditer(markup):
        if m.group(0) == "</div>":
            drop = stack.pop() if stack else False
        else:
            cls = m.group(1) or ""
            drop = cls in _NB_WRAPPER_CLASSES or cls.startswith("cell border-box-sizing")
            stack.append(drop)
        if drop:
            out.append(markup[pos:m.start()])
            pos = m.end()
    out.append(markup[pos:])
    return "".join(out)


_DATA_IMG_RE = re.compile(r'(<img\b[^>]*?\bsrc=")data:(image/[a-z+]+);base64,([^"]*)(")')
PRINT_IMAGE_SCHEME = "report-image"


def _extract_images(markup: str) -> tuple[str, dict[str, tuple[str, bytes]]]:
    """Replace each ``data:`` image by ``report-image:N``; return the markup and N -> (type, bytes)."""
    images: dict[str, tuple[str, bytes]] = {}

    def repl(m: re.Match[str]) -> str:
        url = f"{PRINT_IMAGE_SCHEME}:{len(images)}"
        images[url] = (m.group(2), base64.b64decode(m.group(3)))
        return f"{m.group(1)}{url}{m.group(4)}"

    return _DATA_IMG_RE.sub(repl, markup), images


# Geometry of a table cell in print, in em of the table's text (report.css: html 10pt,
# table.data 0.88rem, cell padding 0.4rem left and right; A4 less 18 mm margins each side).
_CELL_FONT_PT = 8.8
_CELL_PADDING_EM = 0.8 * 10 / _CELL_FONT_PT
_TEXT_WIDTH_EM = (210 - 2 * 18) / 25.4 * 72 / _CELL_FONT_PT
_FALLBACK_CHAR_EM = {False: 0.62, True: 0.68}  # mean advance of DejaVu Sans (regular, bold)


class _TextMeasure:
    """Advance width of a text in em, from the DejaVu Sans metrics (regular and bold).

    The font files come with matplotlib (a dependency of the project), so measuring needs no
    system font lookup; words are cached (table texts repeat a lot). Without them, a mean
    advance per character is used.
    """

    def __init__(self) -> None:
        self._fonts: dict[bool, object | None] = {}
        self._cache: dict[tuple[str, bool], float] = {}

    def _font(self, bold: bool):
        if bold not in self._fonts:
            font = None
            try:
                from PIL import ImageFont

                spec = importlib.util.find_spec("matplotlib")  # located, not imported
                if spec and spec.submodule_search_locations:
                    ttf = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf"
                    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
                    font = ImageFont.truetype(str(ttf / name), 100, layout_engine=ImageFont.Layout.BASIC)
            except Exception:  # noqa: BLE001 - any failure falls back to a mean advance
                font = None
            self._fonts[bold] = font
        return self._fonts[bold]

    def width(self, text: str, bold: bool = False) -> float:
        key = (text, bold)
        if key not in self._cache:
            font = self._font(bold)
            if font is None:
                self._cache[key] = len(text) * _FALLBACK_CHAR_EM[bold]
            else:
                self._cache[key] = font.getlength(text) / 100  # type: ignore[attr-defined]
        return self._cache[key]


_TABLE_RE = re.compile(r'<table class="(data[^"]*)">(.*?)</table>', re.S)
_ROW_RE = re.compile(r"<tr\b[^>]*>(.*?)</tr>", re.S)
_CELL_RE = re.compile(r"<(t[hd])\b([^>]*)>(.*?)</t[hd]>", re.S)
_TAG_RE = re.compile(r"<[^>]+>")


def column_widths(table_inner: str, measure: _TextMeasure | None = None,
                  available_em: float = _TEXT_WIDTH_EM, padding_em: float = _CELL_PADDING_EM,
                  min_text_em: float = 0.0) -> list[float] | None:
    """Column widths (percent of the table) of an HTML table, as CSS automatic layout gives them.

    Min-content of a cell is its widest word (its whole text when ``class="num"``, which does not
    wrap), max-content its whole text; header cells are bold. ``min_text_em`` widens the
    min-content of a text cell to that width (or its whole text when shorter), so that a label
    beside many number columns is not squeezed to its longest word. When the max-content widths fit,
    columns share the width in proportion to them; otherwise each column gets its min-content
    width plus a share of the rest in proportion to (max - min). ``None`` for a table this does
    not model (spanning cells, ragged rows).
    """
    if "colspan" in table_inner or "rowspan" in table_inner:
        return None
    measure = measure or _TextMeasure()
    mins: list[float] = []
    maxs: list[float] = []
    for row in _ROW_RE.findall(table_inner):
        cells = _CELL_RE.findall(row)
        if not mins:
            mins, maxs = [0.0] * len(cells), [0.0] * len(cells)
        if len(cells) != len(mins):
            return None
        for i, (tag, attrs, content) in enumerate(cells):
            text = " ".join(html.unescape(_TAG_RE.sub("", content)).split(" "))
            bold = tag == "th"
            whole = measure.width(text, bold)
            if 'class="num"' in attrs:
                widest = whole
            else:
                widest = max((measure.width(w, bold) for w in text.split()), default=0.0)
                widest = max(widest, min(whole, min_text_em))
            mins[i] = max(mins[i], widest + padding_em)
            maxs[i] = max(maxs[i], whole + padding_em)
    if not mins:
        return None
    if sum(maxs) <= available_em:
        widths = maxs
    elif sum(mins) < available_em:
        spread = sum(mx - mn for mn, mx in zip(mins, maxs, strict=True))
        ratio = (available_em - sum(mins)) / spread
        widths = [mn + (mx - mn) * ratio for mn, mx in zip(mins, maxs, strict=True)]
    else:
        widths = mins
    total = sum(widths)
    return [100 * w / total for w in widths]


def add_column_widths(markup: str) -> str:
    """Give every plain ``table.data`` a ``<colgroup>`` of its column widths and class ``print-cols``.

    Tables with a class of their own (``essentials``, ``questionnaire``, ``provenance``) are left
    as they are: report.css gives them their widths in print.
    """
    measure = _TextMeasure()

    def repl(m: re.Match[str]) -> str:
        cls, inner = m.group(1), m.group(2)
        widths = column_widths(inner, measure) if cls in ("data", "data compact") else None
        if widths is None:
            return m.group(0)
        cols = "".join(f'<col style="width:{w:.2f}%"/>' for w in widths)
        cap = re.match(r"\s*<caption>.*?</caption>", inner, re.S)
        at = cap.end() if cap else 0
        return (f'<table class="{cls} print-cols">{inner[:at]}<colgroup>{cols}</colgroup>'
                f"{inner[at:]}</table>")

    return _TABLE_RE.sub(repl, markup)


def print_html(markup: str) -> tuple[str, dict[str, tuple[str, bytes]]]:
    """The print variant of a report's HTML, and the images it refers to (see above)."""
    markup, images = _extract_images(markup)
    return add_column_widths(_unwrap_notebook_divs(markup)), images


def render_pdf(html_path: Path, out: Path) -> Path:
    """Render the HTML report to an A4 PDF with WeasyPrint (print stylesheet of the report).

    WeasyPrint lays out the print variant of the report (:func:`print_html`), with its images
    served from memory.
    """
    from weasyprint import HTML  # preloaded by the build's kernel server
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    markup, images = print_html(html_path.read_text(encoding="utf-8"))

    class _Fetcher(URLFetcher):
        def fetch(self, url, headers=None):
            if url in images:
                mime, data = images[url]
                return URLFetcherResponse(url, data, {"Content-Type": mime})
            return super().fetch(url, headers)

    # WeasyPrint allocates hundreds of thousands of long-lived objects (boxes, styles, Pango
    # layouts): Python's cyclic garbage collector kept re-scanning them, ~15 % of the rendering
    # time. It is paused while rendering (peak memory grows by ~5 %) and restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        document = HTML(string=markup, base_url=str(html_path.parent), url_fetcher=_Fetcher())
        pdf = document.write_pdf()
    finally:
        if gc_was_enabled:
            gc.enable()
    write_atomic(out, pdf)
    return out


REFERENCE_DOCX = TEMPLATES / "reference.docx"
_DOCX_STRIP_RE = re.compile(
    r'<header class="cover">.*?</header>|<nav class="toc".*?</nav>|<div class="running-header"[^>]*>.*?</div>', re.S)
_DOCX_TABLE_FIG_RE = re.compile(r'<figure class="table(?: long)?">(.*?)</figure>', re.S)
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S)


_DOCX_CHART_FIG_RE = re.compile(r'<figure class="chart">(.*?)</figure>', re.S)


def docx_html(markup: str) -> str:
    """The HTML given to pandoc: without the cover, the HTML contents and the running header.

    Word gets its own title block (document metadata) and a TOC field (``--toc``) instead.
    """
    markup = _DOCX_STRIP_RE.sub("", markup)
    banner = re.search(r'<div class="synthetic-banner"[^>]*>(.*?)</div>', markup, flags=re.S)
    if banner:  # pandoc keeps what is in <main>: the banner goes first in it
        markup = markup.replace(banner.group(0), "").replace(
            "<main>", f'<main>\n<p class="synthetic-banner"><strong>{banner.group(1)}</strong></p>', 1)
    # A <figure> becomes a one-cell layout table in Word: tables are given as plain tables,
    # their note as a paragraph under them.
    def table_fig(m: re.Match[str]) -> str:
        inner = re.sub(r'<figcaption class="note">(.*?)</figcaption>', r'<div class="note">\1</div>', m.group(1), flags=re.S)
        return f'<div class="table">{inner}</div>'

    # A chart likewise: its title a paragraph above the image, its lines paragraphs under it
    # (inside a <figure>, pandoc set the lines beside a shrunken image).
    def chart_fig(m: re.Match[str]) -> str:
        inner = m.group(1)
        title = re.search(r"<figcaption>(.*?)</figcaption>", inner, flags=re.S)
        rest = inner.replace(title.group(0), "") if title else inner
        img = re.search(r"<img\b[^>]*>", rest)
        below = rest.replace(img.group(0), "") if img else rest
        head = f'<p class="chart-title"><strong>{title.group(1)}</strong></p>' if title else ""
        return f'<div class="chart">{head}<p>{img.group(0) if img else ""}</p>{below}</div>'

    markup = _DOCX_CHART_FIG_RE.sub(chart_fig, markup)
    return docx_table_layout(_DOCX_TABLE_FIG_RE.sub(table_fig, markup))


# Word's text width: A4 less 2 cm margins each side (templates/reference.docx), in em of the
# 10 pt table text; a cell's margins (0.19 cm each side in Word and LibreOffice) and some slack
# for the renderer's own rounding.
_DOCX_TEXT_WIDTH_EM = 170 / 25.4 * 72 / 10
_DOCX_PADDING_EM = 2 * 0.19 / 2.54 * 72 / 10 + 0.5
_DOCX_MIN_TEXT_EM = 13.0  # a label column is at least ~4.5 cm wide when its text is longer
_NUM_CELL_RE = re.compile(r'<(t[hd])([^>]*?)\bclass="num"([^>]*)>')


def docx_table_layout(markup: str) -> str:
    """Column widths and right-aligned numbers for pandoc, which reads both from the HTML.

    Every ``table.data`` gets a ``<colgroup>`` of the widths CSS automatic layout would give on a
    Word page (:func:`column_widths`: a label column is as wide as its words allow, a number
    column as its widest number), so no label wraps over many lines in equal columns; cells of
    class ``num`` (and so their columns) are aligned right.
    """
    measure = _TextMeasure()

    def table(m: re.Match[str]) -> str:
        cls, inner = m.group(1), m.group(2)
        inner = _NUM_CELL_RE.sub(r'<\1\2class="num" style="text-align:right"\3>', inner)
        widths = None if "<colgroup" in inner else column_widths(
            inner, measure, _DOCX_TEXT_WIDTH_EM, _DOCX_PADDING_EM, _DOCX_MIN_TEXT_EM)
        if widths is None:
            return f'<table class="{cls}">{inner}</table>'
        cols = "".join(f'<col style="width:{w:.2f}%"/>' for w in widths)
        cap = re.match(r"\s*<caption>.*?</caption>", inner, re.S)
        at = cap.end() if cap else 0
        return f'<table class="{cls}">{inner[:at]}<colgroup>{cols}</colgroup>{inner[at:]}</table>'

    return _TABLE_RE.sub(table, markup)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_field(paragraph, instruction: str, placeholder: str = "", dirty: bool = False) -> None:
    """Append a Word field (``PAGE``, ``NUMPAGES``, ``PAGEREF x``) to a python-docx paragraph."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def run_with(child) -> None:
        r = OxmlElement("w:r")
        r.append(child)
        paragraph._p.append(r)

    begin = OxmlElement("w:fldChar")
    begin.set(qn("w:fldCharType"), "begin")
    if dirty:
        begin.set(qn("w:dirty"), "true")
    run_with(begin)
    instr = OxmlElement("w:instrText")
    instr.set(qn("xml:space"), "preserve")
    instr.text = f" {instruction} "
    run_with(instr)
    sep = OxmlElement("w:fldChar")
    sep.set(qn("w:fldCharType"), "separate")
    run_with(sep)
    text = OxmlElement("w:t")
    text.text = placeholder
    run_with(text)
    end = OxmlElement("w:fldChar")
    end.set(qn("w:fldCharType"), "end")
    run_with(end)


def _docx_header_footer(doc, running: str) -> None:
    """The running header (target, wave, synthetic label) and « Page X sur Y » in the footer."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt, RGBColor

    grey = RGBColor(0x5B, 0x65, 0x70)
    for section in doc.sections:
        section.header.is_linked_to_previous = False
        section.footer.is_linked_to_previous = False
        head = section.header.paragraphs[0]
        head.text = ""
        head.alignment = WD_ALIGN_PARAGRAPH.CENTER
        run = head.add_run(running)
        run.font.size, run.font.color.rgb = Pt(8), grey
        foot = section.footer.paragraphs[0]
        foot.text = ""
        foot.alignment = WD_ALIGN_PARAGRAPH.RIGHT
        for part in ("Page ", ("PAGE", "1"), " sur ", ("NUMPAGES", "1")):
            if isinstance(part, str):
                foot.add_run(part)
            else:
                _docx_field(foot, *part)
        for r in foot._p.iter(f"{_W}r"):
            rpr = r.find(f"{_W}rPr")
            if rpr is None:
                rpr = OxmlElement("w:rPr")
                r.insert(0, rpr)
            for tag, val in (("w:color", "5B6570"), ("w:sz", "16")):
                el = OxmlElement(tag)
                el.set(qn("w:val"), val)
                rpr.append(el)


def docx_toc_entries(doc) -> list[tuple[object, str]]:
    """(paragraph element, text) of every « Heading 1 » paragraph of a document, in order."""
    entries = []
    for p in doc.element.body.iter(f"{_W}p"):
        style = p.find(f"{_W}pPr/{_W}pStyle")
        if style is None or style.get(f"{_W}val") != "Heading1":
            continue
        text = "".join(t.text or "" for t in p.iter(f"{_W}t")).strip()
        if text:
            entries.append((p, text))
    return entries


def _docx_fill_toc(doc) -> int:
    """Replace pandoc's empty TOC field by the chapters' entries; return how many.

    pandoc writes a TOC field with no result: Word and LibreOffice show an empty « Sommaire »
    until the reader refreshes it. It becomes plain paragraphs instead, one per chapter: a link
    to the chapter's bookmark, a dotted tab and a ``PAGEREF`` field for its page, which
    LibreOffice computes on opening and Word when it updates the fields (the fields are marked
    ``dirty`` so that it does on opening). LibreOffice does not compute a ``PAGEREF`` inside a
    TOC field's result, hence no TOC field.
    """
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    body = doc.element.body
    sdt = next((el for el in body.iter(f"{_W}sdt")
                if el.find(f".//{_W}docPartGallery") is not None
                and el.find(f".//{_W}docPartGallery").get(f"{_W}val") == "Table of Contents"), None)
    entries = docx_toc_entries(doc)
    if sdt is None or not entries:
        return 0
    title = sdt.find(f"{_W}sdtContent/{_W}p")  # « Sommaire », style TOCHeading
    anchor = sdt
    if title is not None:
        sdt.addnext(title)
        anchor = title
    ids = [int(el.get(f"{_W}id")) for el in body.iter(f"{_W}bookmarkStart") if el.get(f"{_W}id", "").isdigit()]
    next_id = max(ids, default=0) + 1
    for k, (heading, text) in enumerate(entries, 1):
        # A bookmark of our own inside the heading paragraph (« _Toc » names are hidden in
        # Word): LibreOffice loses pandoc's body-level bookmark of the last section.
        mark = f"_Toc{k:04d}"
        start, stop = OxmlElement("w:bookmarkStart"), OxmlElement("w:bookmarkEnd")
        start.set(qn("w:id"), str(next_id))
        start.set(qn("w:name"), mark)
        stop.set(qn("w:id"), str(next_id))
        next_id += 1
        ppr_h = heading.find(f"{_W}pPr")
        if ppr_h is not None:
            ppr_h.addnext(start)
        else:
            heading.insert(0, start)
        heading.append(stop)
        p = OxmlElement("w:p")
        ppr = OxmlElement("w:pPr")
        tabs = OxmlElement("w:tabs")
        tab = OxmlElement("w:tab")
        tab.set(qn("w:val"), "right")
        tab.set(qn("w:leader"), "dot")
        tab.set(qn("w:pos"), str(int(17 / 2.54 * 1440) - 10))
        tabs.append(tab)
        spacing = OxmlElement("w:spacing")
        spacing.set(qn("w:before"), "0")
        spacing.set(qn("w:after"), "60")
        ppr.append(tabs)
        ppr.append(spacing)
        p.append(ppr)
        link = OxmlElement("w:hyperlink")
        link.set(qn("w:anchor"), mark)
        link.set(qn("w:history"), "1")
        r = OxmlElement("w:r")
        t = OxmlElement("w:t")
        t.set(qn("xml:space"), "preserve")
        t.text = text
        r.append(t)
        r.append(OxmlElement("w:tab"))
        link.append(r)
        p.append(link)
        _docx_field(type("P", (), {"_p": link})(), f"PAGEREF {mark} \\h", "", dirty=True)
        anchor.addnext(p)
        anchor = p
    body.remove(sdt)
    return len(entries)


def finish_docx(path: Path, running: str) -> None:
    """Header, footer and table of contents of pandoc's DOCX; fixed zip dates (reproducible)."""
    import docx

    doc = docx.Document(str(path))
    _docx_header_footer(doc, running)
    _docx_fill_toc(doc)
    for paragraph in doc.paragraphs:  # a chart's or table's title stays with it on the page
        if paragraph.text.startswith(("Figure ", "Tableau ")):
            paragraph.paragraph_format.keep_with_next = True
    raw = io.BytesIO()
    doc.save(raw)
    path.write_bytes(_fixed_zip(raw))


_FIXED_ZIP_TIME = (2026, 1, 1, 0, 0, 0)


def _fixed_zip(raw) -> bytes:
    """A DOCX container with its parts in a fixed order and fixed dates and modes.

    The same document then gives the same bytes.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(src.namelist(), key=lambda n: (n != "[Content_Types].xml", n)):
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, src.read(name))
    return buf.getvalue()


def make_reference_docx(out: Path = REFERENCE_DOCX) -> Path:
    """Write the Word reference document (styles) deterministically, from pandoc's default.

    DejaVu Sans body text (Calibri where DejaVu is missing falls back in Word), headings in the
    report's blue, A4 pages with 2 cm margins, table and caption styles; zip entries carry a
    fixed date so the same code gives the same bytes.
    """
    import docx
    import pypandoc
    from docx.enum.section import WD_ORIENT
    from docx.shared import Cm, Pt, RGBColor

    pandoc = pypandoc.get_pandoc_path()
    default = subprocess.run([pandoc, "--print-default-data-file", "reference.docx"],
                             capture_output=True, check=True).stdout
    doc = docx.Document(io.BytesIO(default))
    accent, ink = RGBColor(0x0B, 0x5D, 0x7A), RGBColor(0x1D, 0x27, 0x33)
    styles = {st.name: st for st in doc.styles}
    for name in ("Normal", "Body Text", "First Paragraph", "Compact", "Block Text", "Footnote Text",
                 "Caption", "Table Caption", "Image Caption", "Title", "Subtitle", "Date", "Author"):
        st = styles.get(name)
        if st is None:
            continue
        st.font.name = "DejaVu Sans"
        st.font.color.rgb = ink
    styles["Normal"].font.size = Pt(10)
    for name, size in (("Heading 1", 18), ("Heading 2", 14), ("Heading 3", 12), ("Heading 4", 11),
                       ("Title", 26), ("Subtitle", 16)):
        st = styles.get(name)
        if st is None:
            continue
        st.font.name = "DejaVu Sans"
        st.font.size = Pt(size)
        st.font.bold = name != "Subtitle"
        st.font.color.rgb = accent
    # A chapter starts a page, as in the PDF (the cover and the « Sommaire » share the first).
    styles["Heading 1"].paragraph_format.page_break_before = True
    for name in ("Caption", "Table Caption", "Image Caption"):
        if name in styles:
            styles[name].font.size = Pt(9)
            styles[name].font.italic = False
    for section in doc.sections:
        section.orientation = WD_ORIENT.PORTRAIT
        section.page_width, section.page_height = Cm(21), Cm(29.7)
        for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
            setattr(section, side, Cm(2))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "ref.docx"
        doc.save(str(raw))
        data = _fixed_zip(raw)
    write_atomic(out, data)
    return out


def render_docx(html_path: Path, out: Path, reference_doc: Path | None = None) -> Path:
    """Render the HTML report to DOCX with pandoc: Word heading styles, real tables, images.

    The Word document has a title block, a table of contents whose entries are written in
    (« Sommaire », chapters, page numbers as fields), the running header (with the synthetic
    label) and « Page X sur Y » in the footer (:func:`finish_docx`), tables whose columns fit
    their content with numbers on the right (:func:`docx_table_layout`), and the styles of
    ``templates/reference.docx``.
    """
    import pypandoc

    markup = html_path.read_text(encoding="utf-8")
    m = _TITLE_RE.search(markup)
    title = html.unescape(m.group(1)) if m else "Rapport CAE-IMPACT"
    d = re.search(r'<p class="cover-date">(.*?)</p>', markup)
    ref = reference_doc or REFERENCE_DOCX
    tmp_html = html_path.with_name(f".{html_path.stem}.docx-src-{os.getpid()}.html")
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.docx")
    img_dir = html_path.with_name(f".{html_path.stem}.docx-img-{os.getpid()}")
    try:
        # The charts go to pandoc as image files, not as base64 inside the HTML: parsing
        # megabytes of base64 text took pandoc 1.5 GB and 8 s for the consortium report.
        src, images = _images_to_files(docx_html(markup), img_dir)
        tmp_html.write_text(src, encoding="utf-8")
        args = ["--resource-path", f"{img_dir}{os.pathsep}{html_path.parent}", "--toc", "--toc-depth=1",
                "-M", f"title={title}", "-M", "toc-title=Sommaire", "-M", "lang=fr-FR"]
        if d:
            args += ["-M", f"date={html.unescape(d.group(1))}"]
        if 'class="synthetic-banner"' in markup:
            args += ["-M", "subtitle=Données synthétiques — démonstration"]
        if ref.exists():
            args += ["--reference-doc", str(ref)]
        pypandoc.convert_file(str(tmp_html), "docx", format="html", outputfile=str(tmp), extra_args=args)
        running = re.search(r'data-running-header="([^"]*)"', markup)
        finish_docx(tmp, html.unescape(running.group(1)) if running else title)
        tmp.replace(out)
    finally:
        tmp_html.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        shutil.rmtree(img_dir, ignore_errors=True)
    return out


_IMAGE_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/svg+xml": ".svg", "image/gif": ".gif"}


def _images_to_files(markup: str, folder: Path) -> tuple[str, list[Path]]:
    """Write each ``data:`` image of ``markup`` to ``folder``; return the markup pointing at them."""
    folder.mkdir(parents=True, exist_ok=True)
    markup, images = _extract_images(markup)
    paths = []
    for i, (url, (mime, data)) in enumerate(images.items()):
        path = folder / f"figure-{i + 1:02d}{_IMAGE_SUFFIX.get(mime, '.bin')}"
        path.write_bytes(data)
        markup = markup.replace(f'"{url}"', f'"{path.name}"', 1)  # found via --resource-path
        paths.append(path)
    return markup, paths
