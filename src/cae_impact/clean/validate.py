"""``cae-impact validate EXPORT``: is a survey export usable, and which export setting to choose.

Built on :func:`cae_impact.clean.cleaning.validate_export` (accounting and problems of the cleaning,
nothing written), with what the survey tools' export settings need:

- the format is recognised without ``--format`` and the report says which export setting it
  recognised (« Réglage reconnu : … », from the adapter);
- the verdict is never « UTILISABLE » when an answer could not be read
  (:func:`cae_impact.ingest.readability.find_unreadable`): it counts the unreadable answers per
  question and names the export setting to choose instead.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cae_impact.clean.cleaning import validate_export as clean_validate
from cae_impact.ingest import ADAPTERS, read_export
from cae_impact.ingest.problems import Problem
from cae_impact.ingest.readability import SETTING_ADVICE, Unreadable, advice, find_unreadable
from cae_impact.spec.codebook import CodebookError, load_codebook

VERDICT_BAD = "Verdict : export NON UTILISABLE — corrigez-le et renvoyez-le"


@dataclass
class ToolValidation:
    """The cleaning's validation report, with the setting recognised and the unreadable answers."""

    report: object  # cae_impact.clean.cleaning.ValidationReport
    setting: str = ""
    unreadable: Unreadable = field(default_factory=Unreadable)

    @property
    def usable(self) -> bool:
        """True when the export can be used and no answer was lost."""
        return bool(self.report.usable) and not self.unreadable

    def format_text(self) -> str:
        """The report in French, for CAE staff."""
        lines = self.report.format_text().rstrip("\n").split("\n")
        if self.setting:
            at = next((i + 1 for i, line in enumerate(lines) if line.startswith("Format : ")), 1)
            lines.insert(at, f"Réglage d'export reconnu : {self.setting}")
        if self.report.error is not None:
            known = SETTING_ADVICE.get(self.report.format or "")
            options = [known] if known else [SETTING_ADVICE[f] for f in ("limesurvey", "kobo", "googleforms")]
            at = next((i + 1 for i, line in enumerate(lines) if line.startswith("  ") and i > 0
                       and lines[i - 1].startswith("ERREUR")), len(lines) - 1)
            lines.insert(at, "  Si le fichier vient d'un outil d'enquête, exportez-le de nouveau avec ce réglage : "
                         + " ; ou ".join(options))
        if self.unreadable:
            setting = advice(self.report.format, self.unreadable)
            verdict = f"Verdict : export NON UTILISABLE — {self.unreadable.summary()}"
            if setting:
                verdict += f". Exportez de nouveau le fichier avec ce réglage : {setting}"
            lines = [line for line in lines if not line.startswith("Verdict : ")] + [verdict]
        return "\n".join(lines) + "\n"


def validate_export(path: str | Path, format: str | None = None, mapping: str | Path | None = None,
                    codebook=None) -> ToolValidation:
    """Validate an export (see the module docstring); never raises for a bad file."""
    if codebook is None:
        codebook = load_codebook()
    report = clean_validate(path, format, mapping, codebook)
    out = ToolValidation(report)
    if report.error is not None or report.format is None:
        return out
    raw = read_export(path, report.format, mapping=mapping, codebook=codebook)
    out.setting = raw.setting
    out.unreadable = find_unreadable(raw)
    if out.unreadable:
        report.usable = False
        report.problems.append(
            Problem("error", "unreadable_answers", f"{out.unreadable.summary()} : elles seraient perdues")
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """``cae-impact validate EXPORT [--format F] [--mapping M] [--codebook C]``: print the report.

    Returns 0 when the export is usable, 1 when it is not, 2 for a usage error, an invalid
    codebook or an internal error (printed in French, never as a bare traceback).
    """
    return run_cli(argv, validate_export)


def run_cli(argv: list[str] | None, validate) -> int:
    """The ``validate`` command line around a validation function (see :func:`main`).

    ``validate(path, format, mapping, codebook)`` returns a report with ``format_text()`` and
    ``usable``; :func:`main_validate` runs the cleaning's own check with it.
    """
    parser = argparse.ArgumentParser(
        prog="cae-impact validate",
        description="Vérifie un export d'enquête avant son envoi : bilan des lignes et problèmes relevés.",
    )
    parser.add_argument("export", help="fichier exporté (CSV ou XLSX)")
    parser.add_argument("--format", choices=tuple(ADAPTERS), help="format de l'export (reconnu sinon)")
    parser.add_argument("--mapping", help="fichier de correspondance des colonnes (format spreadsheet)")
    parser.add_argument("--codebook", help="référentiel (défaut : config/codebook.yaml)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        codebook = load_codebook(args.codebook)
    except CodebookError as exc:
        sys.stdout.write(f"ERREUR — référentiel invalide : {exc}\n")
        return 2
    try:
        result = validate(args.export, args.format, args.mapping, codebook)
    except Exception as exc:  # a bug, not the file: say so instead of a bare traceback
        sys.stdout.write(
            f"ERREUR INTERNE en vérifiant {args.export} : {type(exc).__name__}: {exc}\n"
            "Ce n'est pas forcément un problème du fichier : transmettez ce message à l'équipe "
            "CAE-IMPACT avec la version du logiciel.\n"
        )
        return 2
    sys.stdout.write(result.format_text())
    return 0 if result.usable else 1


def main_validate(argv: list[str] | None = None) -> int:
    """The cleaning's own check as a command line (:func:`run_cli`).

    ``cae-impact validate`` itself runs :func:`main`, which adds the tool's export setting and
    the answers that could not be read.
    """
    return run_cli(argv, clean_validate)
