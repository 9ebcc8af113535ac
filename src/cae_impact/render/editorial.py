"""Editorial content a CAE owns: the director's word, context, takeaways, funders.

One Markdown file per target and wave, next to the study configuration:
``<editorial_dir>/<wave>/<target>.md`` (``editorial_dir`` defaults to ``config/editorial``; the
consortium's file is ``consortium.md``). The file is divided by level-2 headings, each one of:

======================================  ==========================================
heading (case and accents ignored)      where it goes in the report
======================================  ==========================================
« Le mot de la direction »              the cover (and the HTML's first page)
« Contexte »                            « La CAE en bref »
« Ce que la CAE en retient »            its own section after the chapters
« Partenaires financiers »              the cover, under the title
======================================  ==========================================

Every section is optional; an absent file leaves the sections out (the build lists the targets
without one). The text is included as written, but inert, like a respondent's free text: raw
HTML is escaped, links are printed as text (with their address), images are replaced by their
description. Markdown is parsed by mistune (already in the environment for nbconvert); only the
renderer is ours, to keep it inert.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import mistune

from cae_impact.spec.config import StudyConfig
from cae_impact.spec.layout import editorial_path

#: files larger than this are refused (an editorial page is a few hundred words)
MAX_BYTES = 50_000

SECTIONS = {
    "le mot de la direction": "word",
    "mot de la direction": "word",
    "contexte": "context",
    "ce que la cae en retient": "takeaways",
    "ce que le consortium en retient": "takeaways",
    "ce que le reseau en retient": "takeaways",
    "partenaires financiers": "funders",
    "financeurs": "funders",
}
TITLES = {
    "word": "Le mot de la direction",
    "context": "Contexte",
    "takeaways": "Ce que la CAE en retient",
    "funders": "Partenaires financiers",
}


class EditorialError(ValueError):
    """An editorial file that cannot be included (names the file and the line)."""


@dataclass(frozen=True)
class Editorial:
    """The sections of one editorial file, as inert HTML fragments (empty when absent)."""

    path: Path | None = None
    sections: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        """The section's HTML, or ''."""
        return self.sections.get(key, "")

    def __bool__(self) -> bool:
        return bool(self.sections)


class _InertRenderer(mistune.HTMLRenderer):
    """mistune's HTML renderer with nothing active: no raw HTML, no link, no image."""

    def __init__(self) -> None:
        super().__init__(escape=True)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        shown = html.escape(url)
        return text if shown in text else f"{text} ({shown})"

    def image(self, text: str, url: str, title: str | None = None) -> str:
        return f"[{text}]" if text else ""

    def heading(self, text: str, level: int, **attrs) -> str:
        # Headings of the file become bold paragraphs: the report's outline is the report's.
        return f'<p class="editorial-heading"><strong>{text}</strong></p>\n'

    def block_html(self, html_text: str) -> str:
        return f"<p>{html.escape(html_text)}</p>\n"

    def inline_html(self, html_text: str) -> str:
        return html.escape(html_text)


_MARKDOWN = mistune.create_markdown(renderer=_InertRenderer(), plugins=["strikethrough"])


def render_inert(text: str) -> str:
    """Markdown → HTML with every tag of the source escaped and no link or image."""
    return str(_MARKDOWN(text)).strip()


def _key(heading: str) -> str:
    plain = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode().lower()
    plain = re.sub(r"[’'`]", " ", plain)
    return re.sub(r"\s+", " ", plain).strip(" :.")


def parse(text: str, path: Path) -> Editorial:
    """Split an editorial file into its sections; EditorialError naming the file and line."""
    chunks: dict[str, list[str]] = {}
    current: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^##\s+(.+?)\s*#*\s*$", line)
        if m and not line.startswith("###"):
            key = SECTIONS.get(_key(m.group(1)))
            if key is None:
                known = " », « ".join(TITLES.values())
                raise EditorialError(
                    f"{path}, line {lineno}: unknown section « {m.group(1)} »; the sections are "
                    f"« {known} »")
            if key in chunks:
                raise EditorialError(f"{path}, line {lineno}: section « {m.group(1)} » given twice")
            chunks[key] = []
            current = key
            continue
        if current is None:
            if line.strip() and not line.startswith("# "):
                raise EditorialError(
                    f"{path}, line {lineno}: text before the first section heading (« ## Le mot de "
                    "la direction », « ## Contexte »…)")
            continue
        chunks[current].append(line)
    sections = {k: render_inert("\n".join(v)) for k, v in chunks.items() if "\n".join(v).strip()}
    return Editorial(path, sections)


def load(study: StudyConfig, target: str) -> Editorial:
    """The target's editorial content; an empty Editorial when it has no file."""
    path = editorial_path(study, target)
    if not path.is_file():
        return Editorial()
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise EditorialError(f"{path}: {len(data)} bytes; an editorial file is limited to {MAX_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EditorialError(f"{path}: not UTF-8 text ({exc})") from exc
    return parse(text, path)


def missing_targets(study: StudyConfig) -> list[str]:
    """The targets of the study without an editorial file (the build lists them)."""
    return [t for t in study.targets if not editorial_path(study, t).is_file()]
