"""``reports/index.html``: every report of the wave, its formats, and what produced them."""

from __future__ import annotations

import html
import json
from pathlib import Path

from cae_impact.core.environment import git_state
from cae_impact.core.files import write_atomic
from cae_impact.render.report import french_date, production_date
from cae_impact.spec.config import PROJECT_ROOT, StudyConfig

FORMATS = (
    ("report.html", "HTML"),
    ("report.pdf", "PDF"),
    ("report.docx", "DOCX"),
    ("indicators.csv", "Indicateurs (CSV)"),
    ("indicators.xlsx", "Indicateurs (XLSX)"),
    ("manifest.json", "Provenance"),
)


STUDY_RECORD = "_study.json"
"""Written in ``reports/<wave>/`` by each index step: what the index says about that wave."""


def study_record(study: StudyConfig) -> dict:
    """What the index needs of a study's wave (title, targets and their labels)."""
    try:
        where = str(study.path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        where = study.path.name
    return {
        "study": where,
        "name": study.study,
        "title": study.title,
        "wave": study.wave,
        "synthetic": bool(study.synthetic),
        "targets": [{"id": t, "label": study.target_label(t)} for t in study.targets],
        "excluded": [{"id": c.id, "label": c.label, "reason": r} for c, r in getattr(study, "excluded", ())],
    }


def built_waves(reports_root: Path) -> list[dict]:
    """Every wave built in this checkout (``reports/<wave>/_study.json``), in wave order."""
    out = []
    for path in sorted(Path(reports_root).glob(f"*/{STUDY_RECORD}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("wave") == path.parent.name:
            out.append(record)
    return out


def _wave_section(record: dict, reports_root: Path) -> str:
    e = html.escape
    wave = record["wave"]
    rows = []
    for t in record.get("targets", []):
        target = t["id"]
        folder = reports_root / wave / target
        links = []
        for name, label in FORMATS:
            if (folder / name).exists():
                links.append(f'<a href="{e(wave)}/{e(target)}/{name}">{e(label)}</a>')
        nb_dir = folder / "notebooks"
        if nb_dir.exists():
            links.append(f'<a href="{e(wave)}/{e(target)}/notebooks/">Carnets exécutés</a>')
        status = " · ".join(links) if links else "<em>non produit</em>"
        rows.append(f"<tr><th scope=\"row\">{e(t.get('label', target))}</th><td>{status}</td></tr>")
    banner = ('<p class="synthetic">Données synthétiques — démonstration : aucun de ces rapports ne décrit '
              "une CAE réelle.</p>" if record.get("synthetic") else "")
    excluded = record.get("excluded") or []
    note = ("<p>CAE exclue(s) de l'étude : " + " ; ".join(
        f"{e(x['label'])} ({e(x['reason'])})" for x in excluded) + "</p>") if excluded else ""
    return f"""<section>
<h2>Vague {e(wave)} — {e(record.get('title') or record.get('name') or '')}</h2>
<p class="meta">Étude : {e(record.get('study', ''))}</p>
{banner}{note}
<table><thead><tr><th>Rapport</th><th>Documents</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
</section>"""


def write_index(study: StudyConfig, reports_root: Path) -> Path:
    """Write ``<reports_root>/index.html`` listing every study and wave built in the checkout.

    The study being built records its wave (``reports/<wave>/_study.json``); the index lists
    every recorded wave, so building another study does not drop the first one from it.
    """
    e = html.escape
    record_path = reports_root / study.wave / STUDY_RECORD
    write_atomic(record_path, json.dumps(study_record(study), ensure_ascii=False, indent=2) + "\n")
    git = git_state()
    commit, dirty = git["commit"] or "inconnu", bool(git["dirty"])
    sections = [_wave_section(r, reports_root) for r in built_waves(reports_root)]
    state = f"{commit[:12]}{' (modifications non commitées)' if dirty else ''}"
    doc = f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"/>
<title>CAE-IMPACT — rapports</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; max-width: 50rem; margin: 2rem auto; color: #1d2733; }}
h1, h2 {{ color: #0b5d7a; }} table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; border-bottom: 1px solid #d6dbe0; padding: 0.4rem; }}
.synthetic {{ background: #fff4d6; border: 1px solid #e0b84c; padding: 0.4rem; font-weight: bold; }}
.meta {{ color: #5b6570; font-size: 0.9rem; }}
</style></head>
<body>
<h1>CAE-IMPACT — rapports d'impact social</h1>
{''.join(sections)}
<p class="meta">Produits le {e(french_date(production_date()))}, à partir du commit {e(state)}.</p>
</body></html>
"""
    path = reports_root / "index.html"
    write_atomic(path, doc)
    return path
