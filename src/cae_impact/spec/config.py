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

from cae_impact.core.paths import PROJECT_ROOT

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

DEFAULT_MIN_RESPONDENTS = 5
"""Fewest usable respondents a CAE must keep after cleaning (``min_respondents`` in the study
file): below it, no figure of the CAE could be published (cells under ``min_cell_count`` are
hidden) and the consortium would be estimated without it, so the cleaning step fails."""

MAX_YAML_BYTES = 5_000_000
"""Largest study file or codebook read (a study file is a few kB, the codebook ~100 kB)."""


class StudyConfigError(ValueError):
    """The study configuration is invalid; the message names the file and the entry."""


def check_yaml_text(text: str, path: Path, error: type[Exception] = None) -> None:
    """Refuse a YAML file that is too large or whose aliases could expand, before it is loaded.

    An alias repeats a node; nested aliases of lists or mappings (« billion laughs ») make a few
    hundred bytes expand into billions of entries when the data are walked. Only aliases of
    scalars are accepted (the codebook names its sources once, ``&national_report``): each adds
    one value, so the data stay as large as the file. Refused with the line, in milliseconds.
    """
    error = error or StudyConfigError
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{path}: file of {len(text):,} characters, more than the limit of "
                    f"{MAX_YAML_BYTES:,} (MAX_YAML_BYTES) for a study file or codebook")
    if "&" not in text and "*" not in text:
        return
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    collections: set[str] = set()
    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)) and event.anchor:
                collections.add(event.anchor)
            elif isinstance(event, yaml.AliasEvent) and event.anchor in collections:
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise error(f"{path}: line {line}: alias *{event.anchor} repeats a list or mapping; "
                            "aliases of lists and mappings are refused in a study file or codebook "
                            "(their expansion is unbounded: « billion laughs »); write the values out")
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc


def safe_yaml_load(path: Path, error: type[Exception] = None, loader=None):
    """Load a YAML file with a safe loader, after :func:`check_yaml_text` (size, no aliases)."""
    error = error or StudyConfigError
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if size > MAX_YAML_BYTES:
        raise error(f"{path}: file of {size:,} bytes, more than the limit of {MAX_YAML_BYTES:,} "
                    "(MAX_YAML_BYTES) for a study file or codebook")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    check_yaml_text(text, path, error)
    loader = loader or getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


def inside(path: Path, *roots: Path) -> bool:
    """True when ``path`` (symbolic links resolved) is inside one of ``roots``."""
    real = Path(path).resolve()
    return any(real.is_relative_to(Path(r).resolve()) for r in roots)


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
class PreviousWave:
    """An earlier wave a study compares with, by its published figures (``make publish-wave``)."""

    wave: str
    figures: Path


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
    """The published consortium figures a CAE report is compared with (:mod:`cae_impact.analysis.published`);
    None: the consortium of the same build (« live »)."""
    min_respondents: int = DEFAULT_MIN_RESPONDENTS
    """Fewest usable respondents a CAE must keep after cleaning (see DEFAULT_MIN_RESPONDENTS)."""
    excluded: tuple[tuple[CaeConfig, str], ...] = ()
    """CAEs listed in ``caes`` but left out of this study by ``exclude_caes`` (id, reason): not
    cleaned, no report, not in the consortium, which says so on its cover and method annex."""
    data_dir: Path | None = None
    """A folder outside the project where exports may be read (``data_dir``); None: inside only."""
    previous_waves: tuple[PreviousWave, ...] = ()
    """Earlier waves, oldest first, named by their published figures (:mod:`cae_impact.analysis.waves`):
    the reports say what changed since the last one; the consortium shows the trend over all."""

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
        raw = safe_yaml_load(path)
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise StudyConfigError(f"{path}: expected a mapping at the top level")
    data_dir = raw.get("data_dir")
    if data_dir is not None:
        if not isinstance(data_dir, str) or not data_dir.strip():
            raise StudyConfigError(f"{path}: data_dir: expected the path of a folder, got {data_dir!r}")
        data_dir = (root / data_dir.strip()).resolve()
        if not data_dir.is_dir():
            raise StudyConfigError(f"{path}: data_dir: {data_dir} is not a folder")
    own = (root, PROJECT_ROOT) if Path(root).resolve() != PROJECT_ROOT.resolve() else (root,)
    readable = (*own, data_dir) if data_dir else own

    def contained(value: str, where: str, roots: tuple[Path, ...] = readable) -> Path:
        target = root / str(value)
        if not inside(target, *roots):
            allowed = " or ".join(str(Path(r).resolve()) for r in roots)
            hint = ("" if data_dir or roots != readable else
                    "; to read exports from a folder outside the project, name it in 'data_dir'")
            raise StudyConfigError(f"{path}: {where}: {value!r} resolves to {target.resolve()}, outside "
                                   f"{allowed}{hint}")
        return target
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
                export=contained(_require(c, "export", where, path), f"{where}.export"),
                format=fmt,
                population=_parse_population(_require(c, "population", where, path), where, path),
                mapping=contained(mapping, f"{where}.mapping") if mapping else None,
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
    minimum = raw.get("min_respondents", DEFAULT_MIN_RESPONDENTS)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 1:
        raise StudyConfigError(f"{path}: min_respondents: expected an integer of 1 or more, got {minimum!r}")
    excluded_raw = raw.get("exclude_caes") or []
    if not isinstance(excluded_raw, list):
        raise StudyConfigError(f"{path}: exclude_caes: expected a list of {{id, reason}}")
    excluded: list[tuple[CaeConfig, str]] = []
    by_id = {c.id: c for c in caes}
    for i, entry in enumerate(excluded_raw):
        where = f"exclude_caes[{i}]"
        cid = str(_require(entry, "id", where, path))
        reason = entry.get("reason")
        if cid not in by_id:
            raise StudyConfigError(f"{path}: {where}: {cid!r} is not a CAE of 'caes' ({', '.join(by_id)})")
        if not isinstance(reason, str) or not reason.strip():
            raise StudyConfigError(f"{path}: {where} ({cid}): say why the CAE is excluded in 'reason' "
                                   "(it is printed on the consortium report)")
        excluded.append((by_id.pop(cid), reason.strip()))
    if excluded and not by_id:
        raise StudyConfigError(f"{path}: exclude_caes: every CAE is excluded")
    caes = [c for c in caes if c.id in by_id]
    codebook = contained(str(raw.get("codebook", "config/codebook.yaml")), "codebook")
    reference_path = (None if reference.strip() == "live"
                      else contained(reference.strip(), "consortium_reference", own))
    previous_raw = raw.get("previous_waves") or []
    if not isinstance(previous_raw, list):
        raise StudyConfigError(f"{path}: previous_waves: expected a list of {{wave, figures}}")
    previous: list[PreviousWave] = []
    for i, entry in enumerate(previous_raw):
        where = f"previous_waves[{i}]"
        pwave = str(_require(entry, "wave", where, path))
        if not _ID_RE.match(pwave) or pwave == wave:
            raise StudyConfigError(f"{path}: {where}: wave {pwave!r} must be an id other than this wave's")
        figures = _require(entry, "figures", where, path)
        if not isinstance(figures, str) or not figures.strip():
            raise StudyConfigError(f"{path}: {where}.figures: expected the path of a file written by "
                                   "'make publish-wave'")
        previous.append(PreviousWave(wave=pwave, figures=contained(figures.strip(), f"{where}.figures", own)))
    return StudyConfig(
        path=path,
        study=str(raw.get("study", "study")),
        title=str(raw.get("title", "")),
        wave=wave,
        synthetic=bool(raw.get("synthetic", False)),
        codebook=codebook,
        caes=tuple(caes),
        report=options,
        consortium_reference=reference_path,
        min_respondents=minimum,
        excluded=tuple(excluded),
        data_dir=data_dir,
        previous_waves=tuple(previous),
    )
