"""National reference figures for the profile of CAE entrepreneurs, with their sources.

The reports set the profile of CAE entrepreneurs (sex, age, diploma, prior status) beside
published national figures: INSEE's surveys of business creators (SINE), the labour force, the
diploma of the 25-64 year-olds, and the IGAS-IGF report on CAEs. The figures live in
``data/external/national_references.csv``, one row per figure, and every row carries its field
(*champ*), source, year and address: a chart or a paragraph that uses a row prints that source.

Columns of the table (all text in French where a reader sees it):

``ref_id``
    unique identifier of the figure (``sine2022_share_women``);
``indicator``
    what is measured (``share_women``, ``share_under_40``, ``share_bac3plus``,
    ``share_employed_before``, ``share_unemployed_before``, ``share_job_seekers_before``,
    ``share_entrepreneur_salarie``, ``diploma_25_64``);
``category``
    the category of a distribution (``diploma_25_64``: ``none_brevet``, ``cap_bep``, ``bac``,
    ``bac2``, ``above_bac2``, ``undetermined``), empty (``<NA>``) for a single share;
``label``
    French label of the figure; ``field``: the population it describes (*champ*);
``value``
    a proportion in [0, 1]; ``value_as_published``: the wording of the source (« six sur dix »);
``approximate``
    ``True`` when the source gives a rounded wording (« près d'un quart ») rather than a figure;
``source``
    the publication (« Insee Première n°2007, juillet 2024 (enquête SINE 2022) »);
``year``
    the year the figure describes (not the publication year, which ``source`` gives);
``url``
    where the publication can be read; ``note``: anything a reader of the figure must know.

CAE entrepreneurs register no company, so they are outside INSEE's creator surveys: the
comparison is between populations, not a counterfactual. :func:`comparability_caveat` gives the
sentence the reports print next to every such comparison.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cae_impact.core.frenchfmt import NNBSP, format_pct, french_typography
from cae_impact.core.paths import PROJECT_ROOT

DEFAULT_REFERENCES_PATH = PROJECT_ROOT / "data" / "external" / "national_references.csv"

REQUIRED_COLUMNS = (
    "ref_id",
    "indicator",
    "category",
    "label",
    "field",
    "value",
    "value_as_published",
    "approximate",
    "source",
    "year",
    "url",
    "note",
)
_NON_EMPTY = ("ref_id", "indicator", "label", "field", "value_as_published", "source", "url")

DEFAULT_PROFILE_REFERENCES: dict[str, str] = {
    "share_women": "sine2022_share_women",
    "share_under_40": "sine2022_share_under_40",
    "share_bac3plus": "sine2022_share_bac3plus",
    "share_employed_before": "sine2022_share_employed_before",
    "share_unemployed_before": "sine2022_share_unemployed_before",
    "share_job_seekers_before": "igas2020_share_job_seekers_before",
    # indicator ids of config/codebook.yaml
    "women_share": "sine2022_share_women",
    "under40_share": "sine2022_share_under_40",
    "bac3plus_share": "sine2022_share_bac3plus",
    "former_jobseeker_share": "igas2020_share_job_seekers_before",
}
"""For each profile indicator (reference names and codebook indicator ids), the reference printed
by default: the most recent survey of all creators, micro-entrepreneurs included (SINE 2022),
whose activities are closest to those hosted by a CAE; for prior job seekers, the IGAS-IGF figure
on all CAE entrepreneurs (the codebook's choice)."""

DIPLOMA_BANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "up_to_bac": ("Jusqu'au Bac", ("none_brevet", "cap_bep", "bac")),
    "bac2": ("Bac+2", ("bac2",)),
    "above_bac2": ("Bac+3 ou plus", ("above_bac2",)),
}
"""INSEE diploma categories grouped into the bands of the CAE-IMPACT reports (Bac+3 and
Bac+5 et plus are merged: INSEE publishes only « supérieur à Bac+2 »)."""


class ReferencesError(ValueError):
    """The reference table is invalid; the message names the row and the column."""


def load_references(path: str | Path | None = None) -> pd.DataFrame:
    """Load and validate the national reference table; return it as a DataFrame.

    Checks that every required column is present, that ``ref_id`` is unique, that every row has a
    field, source, year, address and published wording, that values are proportions, years
    plausible, and that each distribution sums to 1 (± 0.005, the rounding of the source).
    ``category`` and ``note`` are pandas strings with ``<NA>`` when empty; ``value`` is float,
    ``year`` int, ``approximate`` bool.
    """
    path = Path(path) if path is not None else DEFAULT_REFERENCES_PATH
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ReferencesError(f"{path}: missing columns {missing}")
    df = raw.loc[:, list(REQUIRED_COLUMNS)].copy()
    for col in REQUIRED_COLUMNS:
        df[col] = df[col].str.strip()
    for i, row in df.iterrows():
        where = f"{path}, line {int(i) + 2} ({row['ref_id'] or '?'})"
        for col in _NON_EMPTY:
            if not row[col]:
                raise ReferencesError(f"{where}: empty {col}")
        if not row["url"].startswith(("https://", "http://")):
            raise ReferencesError(f"{where}: url is not an address: {row['url']!r}")
        if row["approximate"] not in ("true", "false"):
            raise ReferencesError(f"{where}: approximate must be true or false")
        try:
            value = float(row["value"])
            year = int(row["year"])
        except ValueError as exc:
            raise ReferencesError(f"{where}: value or year is not a number ({exc})") from exc
        if not 0.0 <= value <= 1.0:
            raise ReferencesError(f"{where}: value {value} is not a proportion in [0, 1]")
        if not 1990 <= year <= 2100:
            raise ReferencesError(f"{where}: implausible year {year}")
    if df["ref_id"].duplicated().any():
        dup = sorted(df.loc[df["ref_id"].duplicated(), "ref_id"])
        raise ReferencesError(f"{path}: duplicated ref_id {dup}")
    df["value"] = df["value"].astype(float)
    df["year"] = df["year"].astype(int)
    df["approximate"] = df["approximate"].eq("true")
    for col in ("category", "note"):
        df[col] = df[col].replace("", pd.NA).astype("string")
    dist = df[df["category"].notna()]
    for (indicator, source, year), part in dist.groupby(["indicator", "source", "year"]):
        total = part["value"].sum()
        if abs(total - 1.0) > 0.005:
            raise ReferencesError(
                f"{path}: distribution {indicator} ({source}, {year}) sums to {total:.3f}, not 1"
            )
    return df.reset_index(drop=True)


def get_reference(ref_id: str, refs: pd.DataFrame | None = None) -> pd.Series:
    """Return the row of one reference figure by its ``ref_id`` (KeyError if absent)."""
    refs = load_references() if refs is None else refs
    hit = refs.loc[refs["ref_id"] == ref_id]
    if hit.empty:
        raise KeyError(f"no national reference {ref_id!r}")
    return hit.iloc[0]


def default_reference(indicator: str, refs: pd.DataFrame | None = None) -> pd.Series:
    """Return the default reference row for a profile indicator (see DEFAULT_PROFILE_REFERENCES)."""
    if indicator not in DEFAULT_PROFILE_REFERENCES:
        raise KeyError(f"no default national reference for {indicator!r}")
    return get_reference(DEFAULT_PROFILE_REFERENCES[indicator], refs)


def reference_value_text(row: pd.Series, decimals: int = 0) -> str:
    """Display a reference value: « 40 % », or « ≈ 25 % » when the source gives a wording only."""
    text = format_pct(row["value"], decimals)
    approximate = row.get("approximate", False)
    return f"≈{NNBSP}{text}" if bool(approximate) and approximate is not pd.NA else text


def reference_source_text(rows: pd.Series | pd.DataFrame) -> str:
    """Return the French source line for one or more reference rows, for a caption or a footnote.

    Each distinct source appears once with its field:
    « Référence nationale : Insee Première n°2007, juillet 2024 (enquête SINE 2022), champ :
    créateurs d'entreprises, micro-entrepreneurs inclus, 1er semestre 2022, France ».
    """
    frame = rows.to_frame().T if isinstance(rows, pd.Series) else rows
    parts: list[str] = []
    seen: set[tuple[str, str]] = set()
    for _, row in frame.iterrows():
        key = (str(row["source"]), str(row["field"]))
        if key in seen:
            continue
        seen.add(key)
        parts.append(f"{row['source']}, champ : {row['field']}")
    if not parts:
        return ""
    head = "Référence nationale : " if len(parts) == 1 else "Références nationales : "
    return french_typography(head + " ; ".join(parts))


def diploma_reference_bands(refs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Group INSEE's diploma distribution of the 25-64 year-olds into the report's bands.

    Returns one row per band (``band``, ``label``, ``value``, ``source``, ``field``, ``year``,
    ``url``, ``note``); ``value`` is the sum of the published rounded shares, and « non
    déterminé » is left out, so the bands sum to a little under 1. The note says so.
    """
    refs = load_references() if refs is None else refs
    dist = refs[refs["indicator"] == "diploma_25_64"]
    if dist.empty:
        raise KeyError("no diploma_25_64 distribution in the national references")
    first = dist.iloc[0]
    records = []
    for band, (label, cats) in DIPLOMA_BANDS.items():
        part = dist[dist["category"].isin(cats)]
        if len(part) != len(cats):
            raise KeyError(f"diploma categories {cats} incomplete in the national references")
        records.append(
            {
                "band": band,
                "label": label,
                "value": round(float(part["value"].sum()), 6),
                "approximate": False,
                "source": first["source"],
                "field": first["field"],
                "year": int(first["year"]),
                "url": first["url"],
                "note": "somme des catégories publiées par l'Insee ; « non déterminé » exclu",
            }
        )
    return pd.DataFrame.from_records(records)


def comparability_caveat(short: bool = False) -> str:
    """Return the French caveat printed next to every comparison with national creators.

    CAE entrepreneurs register no company: they are outside INSEE's surveys of business creators,
    so the comparison is between two populations, not a counterfactual. ``short=True`` gives a
    one-sentence version for a chart caption.
    """
    if short:
        text = (
            "Comparaison de populations, et non contrefactuel : les entrepreneurs de CAE "
            "n'immatriculent pas d'entreprise et n'entrent pas dans le champ des enquêtes "
            "de l'Insee sur les créateurs."
        )
    else:
        text = (
            "Les entrepreneurs d'une CAE n'immatriculent pas d'entreprise : leur activité est "
            "hébergée par la coopérative, sous son propre numéro SIRET. Ils n'entrent donc pas "
            "dans le champ des enquêtes de l'Insee sur les créateurs d'entreprises (enquêtes "
            "SINE). La comparaison avec ces chiffres nationaux rapproche deux populations "
            "différentes, observées à des dates et selon des méthodes différentes : elle situe le "
            "profil des entrepreneurs de CAE, elle ne dit pas ce que ces personnes seraient "
            "devenues sans la CAE (ce n'est pas un contrefactuel)."
        )
    return french_typography(text)
