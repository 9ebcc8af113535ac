"""``reports/index.html``: every report of the wave, its formats, and what produced them."""

from __future__ import annotations

import html
import subprocess
from pathlib import Path

from .config import PROJECT_ROOT, StudyConfig
from .report import french_date, production_date, write_atomic

FORMATS = (
    ("report.html", "HTML"),
    ("report.pdf", "PDF"),
    ("report.docx", "DOCX"),
    ("indicators.csv", "Indicateurs (CSV)"),
    ("indicators.xlsx", "Indicateurs (XLSX)"),
    ("manifest.json", "Provenance"),
)


def git_state(root: Path = PROJECT_ROOT) -> tuple[str, bool]:
    """Return (commit hash or 'inconnu', whether the work tree has uncommitted changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "inconnu", False


def write_index(study: StudyConfig, reports_root: Path) -> Path:
    """Write ``<reports_root>/index.html`` linking every target's documents that exist."""
    e = html.escape
    commit, dirty = git_state()
    rows = []
    for target in study.targets:
        folder = reports_root / study.wave / target
        links = []
        for name, label in FORMATS:
            if (folder / name).exists():
                links.append(f'<a href="{e(study.wave)}/{e(target)}/{name}">{e(label)}</a>')
        nb_dir = folder / "notebooks"
        if nb_dir.exists():
            links.append(f'<a href="{e(study.wave)}/{e(target)}/notebooks/">Carnets exécutés</a>')
        status = " · ".join(links) if links else "<em>non produit</em>"
        rows.append(f"<tr><th scope=\"row\">{e(study.target_label(target))}</th><td>{status}</td></tr>")
    banner = (
        '<p class="synthetic">Données synthétiques — démonstration : aucun de ces rapports ne décrit '
        "une CAE réelle.</p>"
        if study.synthetic
        else ""
    )
    state = f"{commit[:12]}{' (modifications non commitées)' if dirty else ''}"
    doc = f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"/>
<title>CAE-IMPACT — rapports de la vague {e(study.wave)}</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; max-width: 50rem; margin: 2rem auto; color: #1d2733; }}
h1 {{ color: #0b5d7a; }} table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; border-bottom: 1px solid #d6dbe0; padding: 0.4rem; }}
.synthetic {{ background: #fff4d6; border: 1px solid #e0b84c; padding: 0.4rem; font-weight: bold; }}
.meta {{ color: #5b6570; font-size: 0.9rem; }}
</style></head>
<body>
<h1>CAE-IMPACT — rapports de la vague {e(study.wave)}</h1>
<p>{e(study.title)}</p>
{banner}
<table><thead><tr><th>Rapport</th><th>Documents</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
<p class="meta">Produits le {e(french_date(production_date()))}, à partir du commit {e(state)}.</p>
</body></html>
"""
    path = reports_root / "index.html"
    write_atomic(path, doc)
    return path
