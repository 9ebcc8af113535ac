"""Display helpers for notebooks: what a notebook shows is what the report prints.

A notebook never formats numbers or writes HTML itself: it calls these helpers, which emit
rich outputs (HTML) that JupyterLab shows to the researcher and that the report renderer
(``cae_impact.render.report``) lays out in the HTML, PDF and DOCX documents. Text that comes from
data (labels, free-text answers) is always escaped, so an answer holding ``<script>``,
markdown or a spreadsheet formula is shown as plain text and never interpreted.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Tags understood by the report renderer.
TAG_REMOVE = "remove-cell"  # cell and outputs never reach the report (validation, saving)

PNG_COMPRESS_LEVEL = 3
"""zlib level of the charts' PNG. On these charts (flat colours and text) Pillow's default (6)
takes 1.7 times as long as level 3 for files 1-2 % larger; every level is lossless, so the
pixels are the same."""


def esc(text: Any) -> str:
    """Escape any value for HTML text content (quotes included)."""
    return html.escape("" if text is None else str(text), quote=True)


def _display_html(markup: str) -> None:
    from IPython.display import HTML, display

    display(HTML(markup))


def heading_html(text: str, level: int = 2, anchor: str | None = None) -> str:
    """Return a heading element; ``anchor`` becomes its id (for the table of contents)."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{esc(text)}</h{level}>"


def paragraph_html(text: str, css_class: str | None = None) -> str:
    """Return an escaped paragraph."""
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return f"<p{cls}>{esc(text)}</p>"


def table_html(
    frame: pd.DataFrame,
    *,
    caption: str | None = None,
    note: str | None = None,
    numeric_columns: Iterable[str] = (),
    css_class: str = "data",
    lecture: str | None = None,
    champ: str | None = None,
    source: str | None = None,
) -> str:
    """Return an HTML table of already formatted (string) cells, every cell escaped.

    ``numeric_columns`` are right-aligned. ``note`` is printed under the table (suppression
    rule, symbols), then the « Lecture », « Champ » and « Source » lines (:func:`sources_html`).
    """
    numeric = set(numeric_columns)
    parts = [f'<figure class="table"><table class="{esc(css_class)}">']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    parts.append("<thead><tr>")
    for col in frame.columns:
        align = ' class="num"' if col in numeric else ""
        parts.append(f"<th scope=\"col\"{align}>{esc(col)}</th>")
    parts.append("</tr></thead><tbody>")
    for row in frame.itertuples(index=False):
        parts.append("<tr>")
        for col, value in zip(frame.columns, row, strict=True):
            align = ' class="num"' if col in numeric else ""
            parts.append(f"<td{align}>{esc('' if value is None or (isinstance(value, float) and pd.isna(value)) else value)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    below = (f'<p class="note">{esc(note)}</p>' if note else "") + sources_html(lecture, champ, source)
    if below:
        parts.append(f'<figcaption class="note">{below}</figcaption>')
    parts.append("</figure>")
    return "".join(parts)


def png_bytes(fig: Any, *, dpi: int = 150) -> bytes:
    """The chart as an opaque RGB PNG at ``dpi``: drawn once, nothing in it varies between runs.

    The charts are laid out by matplotlib's constrained layout to their figure size, so the
    image is the whole figure: ``savefig(bbox_inches="tight")`` would lay every chart out and
    draw it a second time to crop a few pixels of margin. The image has no alpha channel
    (the charts are drawn on white): WeasyPrint otherwise splits and re-compresses the alpha
    of every image it puts in a PDF. Pillow writes no date or software version.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    screen_dpi = fig.dpi
    fig._set_dpi(dpi, forward=False)  # as savefig does: text and lines sized for the output dpi
    try:
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        if rgba[..., 3].min() < 255:  # a transparent background: put it on white
            image = Image.alpha_composite(Image.new("RGBA", rgba.shape[1::-1], "white"),
                                          Image.fromarray(rgba)).convert("RGB")
        else:
            image = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    finally:
        fig._set_dpi(screen_dpi, forward=False)
    buf = io.BytesIO()
    image.save(buf, format="png", compress_level=PNG_COMPRESS_LEVEL, dpi=(dpi, dpi))
    return buf.getvalue()


def figure_html(fig: Any, *, alt: str, caption: str, note: str | None = None, dpi: int = 150) -> str:
    """Return a ``<figure>`` with the chart as an embedded PNG, its alt text and caption.

    The PNG is written without a timestamp so that the same figure gives the same bytes.
    """
    data = base64.b64encode(png_bytes(fig, dpi=dpi)).decode("ascii")
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return (
        f'<figure class="chart"><img src="data:image/png;base64,{data}" alt="{esc(alt)}"/>'
        f"<figcaption>{esc(caption)}</figcaption>{note_html}</figure>"
    )


def sources_html(lecture: str | None, champ: str | None, source: str | None) -> str:
    """The « Lecture : », « Champ : », « Source : » lines printed under a chart or a table."""
    lines = [("Lecture", lecture), ("Champ", champ), ("Source", source)]
    items = "".join(f'<p class="src"><span class="src-key">{k} :</span> {esc(v)}</p>'
                    for k, v in lines if v)
    return f'<div class="sources">{items}</div>' if items else ""


def chart_html(fig: Any, *, alt: str, title: str, lecture: str | None, champ: str | None,
               source: str | None, note: str | None = None, dpi: int = 150) -> str:
    """A chart of the report: its title above, the image, then the lines under it.

    The title states what the chart shows; the note and the « Lecture », « Champ », « Source »
    lines are text under the image (not in it).
    """
    import matplotlib.pyplot as plt

    data = base64.b64encode(png_bytes(fig, dpi=dpi)).decode("ascii")
    plt.close(fig)
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return (f'<figure class="chart"><figcaption>{esc(title)}</figcaption>'
            f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}"/>'
            f"{note_html}{sources_html(lecture, champ, source)}</figure>")


def show_heading(text: str, level: int = 2, anchor: str | None = None) -> None:
    """Display a heading (it enters the report's table of contents when level <= 2)."""
    _display_html(heading_html(text, level, anchor))


def show_paragraphs(paragraphs: Sequence[str] | str, css_class: str | None = None) -> None:
    """Display one or several escaped paragraphs."""
    if isinstance(paragraphs, str):
        paragraphs = [paragraphs]
    _display_html("".join(paragraph_html(p, css_class) for p in paragraphs))


def show_table(frame: pd.DataFrame, **kwargs: Any) -> None:
    """Display a formatted table (see :func:`table_html`)."""
    _display_html(table_html(frame, **kwargs))


def show_figure(fig: Any, *, alt: str, caption: str, note: str | None = None) -> None:
    """Display a chart with its alt text and caption, then close it (no duplicate display)."""
    import matplotlib.pyplot as plt

    _display_html(figure_html(fig, alt=alt, caption=caption, note=note))
    plt.close(fig)


def show_box(title: str, lines: Sequence[str], css_class: str = "box") -> None:
    """Display a framed box (key figures, warnings) of escaped lines."""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    _display_html(f'<aside class="{esc(css_class)}"><p class="box-title">{esc(title)}</p><ul>{items}</ul></aside>')


def _show(markup: str) -> None:
    from IPython.display import HTML, display

    display(HTML(markup))


def show_frame(frame) -> None:
    """A table of unformatted results, as HTML only (6 significant digits).

    The text form of a wide DataFrame puts numbers side by side, which the personal-data scan
    of the published notebooks would read as phone numbers.
    """
    _show(frame.to_html(float_format=lambda v: f"{v:.6g}", na_rep="", max_rows=500, border=0))
