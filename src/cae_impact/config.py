"""Study configuration: which wave, which CAEs, where their exports are, and report options.

The configuration file (``config/study.yaml`` by default) is the one place that lists the CAEs:
the Makefile, the build and the notebooks all read it from here, so a CAE is never typed twice.
Loading validates every field and names the offending entry on error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STUDY_PATH = PROJECT_ROOT / "config" / "study.yaml"
CONSORTIUM = "consortium"

MAX_NAMED_CAES = 12
"""Most CAEs the consortium report names one by one in its charts and tables.

Beyond it (a national study of 160 CAEs), one line per CAE would make the consortium report
hundreds of pages long, slow to draw and to lay out: its charts and tables then show the
consortium alone, with the spread across CAEs, and say where each CAE's figures are (the CAE's
own report, the consortium's indicators.xlsx).
"""

EXPORT_FORMATS = ("limesurvey", "kobo", "googleforms", "spreadsheet")
SEXES = ("F", "M")
STAGES = ("cape", "cesa", "associe")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class StudyConfigError(ValueError):
    """The study configuration is invalid; the message names the file and the entry."""


@dataclass(frozen=True)
class Population:
    """Register counts of one CAE, used for survey weights.

    ``by_sex_stage`` maps sex (``F``/``M``) to contract stage (``cape``/``cesa``/``associe``)
    to a head count; it is empty when the CAE only knows its total.
    """

    total: int
    by_sex_stage: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class CaeConfig:
    """One CAE of the study: its id, anonymised label, raw export and register counts."""

    id: str
    label: str
    export: Path
    format: str
    population: Population
    mapping: Path | None = None


@dataclass(frozen=True)
class ReportOptions:
    """Options that govern estimation and disclosure control in every report."""

    interval_method: str = "logit"
    confidence_level: float = 0.95
    min_cell_count: int = 5
    min_base_pct: int = 10
    caution_base: int = 30
    fdr_alpha: float = 0.05


@dataclass(frozen=True)
class StudyConfig:
    """A loaded, validated study configuration."""

    path: Path
    study: str
    title: str
    wave: str
    synthetic: bool
    codebook: Path
    caes: tuple[CaeConfig, ...]
    report: ReportOptions
    consortium_reference: Path | None = None
    """The published consortium figures a CAE report is compared with (:mod:`cae_impact.published`);
    None: the consortium of the same build (« live »)."""

    @property
    def cae_ids(self) -> list[str]:
        """The CAE ids, in configuration order."""
        return [c.id for c in self.caes]

    @property
    def targets(self) -> list[str]:
        """Every report target: each CAE, then the consortium."""
        return [*self.cae_ids, CONSORTIUM]

    def cae(self, cae_id: str) -> CaeConfig:
        """Return the CAE with this id, or raise a StudyConfigError listing the known ids."""
        for c in self.caes:
            if c.id == cae_id:
                return c
        raise StudyConfigError(
            f"{self.path}: unknown CAE {cae_id!r}; known CAEs: {', '.join(self.cae_ids)}"
        )

    def target_label(self, target: str) -> str:
        """The French label of a target: the CAE's anonymised label, or « Consortium »."""
        if target == CONSORTIUM:
            return "Consortium"
        return self.cae(target).label

    def processed_dir(self, cae_id: str, root: Path | None = None) -> Path:
        """Folder of a CAE's cleaned data: ``data/processed/<wave>/<cae>/``."""
        return (root or PROJECT_ROOT) / "data" / "processed" / self.wave / cae_id

    def report_dir(self, target: str, root: Path | None = None) -> Path:
        """Folder of a target's report: ``reports/<wave>/<target>/``."""
        return (root or PROJECT_ROOT) / "reports" / self.wave / target


def _require(mapping: dict[str, Any], key: str, where: str, path: Path) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise StudyConfigError(f"{path}: {where}: missing required field {key!r}")
    return mapping[key]


def _parse_population(raw: Any, where: str, path: Path) -> Population:
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{path}: {where}.population: expected a mapping with 'total'")
    total = _require(raw, "total", f"{where}.population", path)
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        raise StudyConfigError(f"{path}: {where}.population.total: expected a positive integer, got {total!r}")
    cells = raw.get("by_sex_stage") or {}
    parsed: dict[str, dict[str, int]] = {}
    for sex, stages in cells.items():
        if sex not in SEXES:
            raise StudyConfigError(f"{path}: {where}.population.by_sex_stage: unknown sex {sex!r} (use F or M)")
        if not isinstance(stages, dict):
            raise StudyConfigError(f"{path}: {where}.population.by_sex_stage.{sex}: expected a mapping")
        parsed[sex] = {}
        for stage, count in stages.items():
            if stage not in STAGES:
                raise StudyConfigError(
                    f"{path}: {where}.population.by_sex_stage.{sex}: unknown stage {stage!r} "
                    f"(use {', '.join(STAGES)})"
                )
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise StudyConfigError(
                    f"{path}: {where}.population.by_sex_stage.{sex}.{stage}: expected a count, got {count!r}"
                )
            parsed[sex][stage] = count
    if parsed:
        cell_sum = sum(v for stages in parsed.values() for v in stages.values())
        if cell_sum != total:
            raise StudyConfigError(
                f"{path}: {where}.population: by_sex_stage adds up to {cell_sum}, not total {total}"
            )
    return Population(total=total, by_sex_stage=parsed)


def load_study(path: str | Path | None = None, root: Path | None = None) -> StudyConfig:
    """Load and validate a study configuration.

    ``path`` defaults to ``config/study.yaml``; relative paths inside the file are taken from
    ``root`` (the project root by default). Raises StudyConfigError naming the entry at fault.
    """
    root = root or PROJECT_ROOT
    path = Path(path) if path is not None else DEFAULT_STUDY_PATH
    if not path.is_absolute():
        path = root / path
    if not path.exists():
        raise StudyConfigError(f"{path}: study configuration not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{path}: expected a mapping at the top level")
    wave = str(_require(raw, "wave", "top level", path))
    if not _ID_RE.match(wave):
        raise StudyConfigError(f"{path}: wave {wave!r}: use letters, digits and '-' only")
    caes_raw = _require(raw, "caes", "top level", path)
    if not isinstance(caes_raw, list) or not caes_raw:
        raise StudyConfigError(f"{path}: caes: expected a non-empty list")
    caes: list[CaeConfig] = []
    seen_ids: set[str] = set()
    seen_labels: set[str] = set()
    for i, c in enumerate(caes_raw):
        where = f"caes[{i}]"
        cid = str(_require(c, "id", where, path))
        where = f"caes[{i}] ({cid})"
        if not _ID_RE.match(cid) or cid == CONSORTIUM:
            raise StudyConfigError(
                f"{path}: {where}: id must be lower-case letters, digits and '-', and not 'consortium'"
            )
        if cid in seen_ids:
            raise StudyConfigError(f"{path}: {where}: duplicate CAE id")
        label = str(_require(c, "label", where, path))
        if label in seen_labels:
            raise StudyConfigError(f"{path}: {where}: duplicate label {label!r}")
        fmt = str(_require(c, "format", where, path))
        if fmt not in EXPORT_FORMATS:
            raise StudyConfigError(
                f"{path}: {where}.format: {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}"
            )
        mapping = c.get("mapping")
        if fmt == "spreadsheet" and not mapping:
            raise StudyConfigError(f"{path}: {where}: format spreadsheet needs a 'mapping' file")
        seen_ids.add(cid)
        seen_labels.add(label)
        caes.append(
            CaeConfig(
                id=cid,
                label=label,
                export=root / str(_require(c, "export", where, path)),
                format=fmt,
                population=_parse_population(_require(c, "population", where, path), where, path),
                mapping=(root / str(mapping)) if mapping else None,
            )
        )
    rep = raw.get("report") or {}
    known = set(ReportOptions.__dataclass_fields__)
    unknown = set(rep) - known
    if unknown:
        raise StudyConfigError(f"{path}: report: unknown option(s) {', '.join(sorted(unknown))}")
    options = ReportOptions(**rep)
    if options.interval_method not in ("logit", "beta"):
        raise StudyConfigError(f"{path}: report.interval_method: use 'logit' or 'beta'")
    reference = raw.get("consortium_reference", "live")
    if not isinstance(reference, str) or not reference.strip():
        raise StudyConfigError(
            f"{path}: consortium_reference: expected 'live' or the path of a file written by "
            f"'make publish-reference', got {reference!r}"
        )
    return StudyConfig(
        path=path,
        study=str(raw.get("study", "study")),
        title=str(raw.get("title", "")),
        wave=wave,
        synthetic=bool(raw.get("synthetic", False)),
        codebook=root / str(raw.get("codebook", "config/codebook.yaml")),
        caes=tuple(caes),
        report=options,
        consortium_reference=None if reference.strip() == "live" else root / reference.strip(),
    )
