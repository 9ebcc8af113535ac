"""Tests of the report charts: figures, alt texts, determinism, disclosure."""

from __future__ import annotations

import base64
import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from cae_impact.core.frenchfmt import format_eur, format_pct
from cae_impact.render import charts

COLUMNS = [
    "indicator_id",
    "indicator_label",
    "domain_id",
    "target",
    "breakdown",
    "group",
    "category",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "n_unweighted",
    "base_weighted",
    "comparison",
    "p_value",
    "p_adjusted",
    "significant",
    "flag_caution",
    "suppressed",
    "suppression_reason",
]
N = {
    "cae-1": 80,
    "cae-2": 120,
    "cae-3": 74,
    "cae-4": 23,
    "cae-5": 95,
    "cae-6": 60,
    "cae-7": 117,
    "consortium": 569,
}
SECRET_SHARE = 0.973  # estimate of a suppressed row: must never be drawn or printed
SECRET_EUR = 4321.0


def _row(
    indicator_id,
    label,
    domain,
    target,
    estimate,
    *,
    breakdown="total",
    group=pd.NA,
    category=pd.NA,
    n=None,
    significant=pd.NA,
    suppressed=False,
    se=None,
    kind="share",
):
    n = N[target] if n is None else n
    if se is None:
        se = math.sqrt(max(estimate * (1 - estimate), 0.01) / n) if kind == "share" else 45.0
    lo, hi = estimate - 1.96 * se, estimate + 1.96 * se
    if kind == "share":
        lo, hi = max(0.0, lo), min(1.0, hi)
    return {
        "indicator_id": indicator_id,
        "indicator_label": label,
        "domain_id": domain,
        "target": target,
        "breakdown": breakdown,
        "group": group,
        "category": category,
        "estimate": estimate,
        "se": se,
        "ci_low": lo,
        "ci_high": hi,
        "n_unweighted": n,
        "base_weighted": float(n) * 2.1,
        "comparison": pd.NA if target == "consortium" else "consortium",
        "p_value": 0.2,
        "p_adjusted": 0.3,
        "significant": significant,
        "flag_caution": n < 30,
        "suppressed": suppressed,
        "suppression_reason": "min_cell_count" if suppressed else pd.NA,
    }


def fake_table() -> pd.DataFrame:
    """A realistic synthetic indicator table (CONTRACTS §5) for 7 CAEs and the consortium."""
    rows = []
    label = "La CAE a été décisive dans l'activation du projet"
    decisive = {
        "cae-1": 0.86,
        "cae-2": 0.88,
        "cae-3": 0.82,
        "cae-4": 0.62,
        "cae-5": 0.89,
        "cae-6": SECRET_SHARE,
        "cae-7": 0.84,
        "consortium": 0.85,
    }
    for t, v in decisive.items():
        rows.append(
            _row(
                "decisive",
                label,
                "d3",
                t,
                v,
                significant=(t == "cae-4") if t != "consortium" else pd.NA,
                suppressed=(t == "cae-6"),
            )
        )
    rows.append(
        _row(
            "decisive",
            label,
            "d3",
            "cae-3",
            0.84,
            breakdown="sex",
            group="F",
            n=44,
            significant=False,
        )
    )
    rows.append(
        _row(
            "decisive",
            label,
            "d3",
            "cae-3",
            0.80,
            breakdown="sex",
            group="M",
            n=30,
            significant=False,
        )
    )

    dist = {
        "cae-1": (0.10, 0.46, 0.30, 0.10, 0.04),
        "cae-2": (0.07, 0.48, 0.29, 0.11, 0.05),
        "cae-3": (0.05, 0.40, 0.35, 0.13, 0.07),
        "cae-4": (0.04, 0.35, 0.48, SECRET_SHARE / 10, 0.0353),
        "cae-5": (0.12, 0.45, 0.28, 0.10, 0.05),
        "cae-6": (0.08, 0.42, 0.32, 0.12, 0.06),
        "cae-7": (0.06, 0.47, 0.31, 0.11, 0.05),
        "consortium": (0.08, 0.44, 0.31, 0.11, 0.06),
    }
    for t, vals in dist.items():
        for code, v in zip(("freq", "reg", "rare", "jamais", "nsp"), vals, strict=True):
            rows.append(
                _row(
                    "exchange_peers",
                    "Fréquence des échanges avec les autres entrepreneurs",
                    "d5",
                    t,
                    v,
                    category=code,
                    suppressed=(t == "cae-4" and code == "jamais"),
                )
            )

    income = {
        "cae-1": (1050, 1420, 370, True),
        "cae-2": (980, 1510, 530, True),
        "cae-3": (1120, 1380, 260, False),
        "cae-4": (890, 1150, 260, False),
        "cae-5": (1240, 1610, 370, True),
        "cae-6": (SECRET_EUR, 1700, -2621, False),
        "cae-7": (1010, 1290, 280, False),
        "consortium": (1060, 1440, 380, True),
    }
    for t, (b, a, d, sig) in income.items():
        sup = t == "cae-6"
        for code, v in (("before", b), ("after", a), ("difference", d)):
            rows.append(
                _row(
                    "income",
                    "Revenu mensuel net",
                    "d3",
                    t,
                    float(v),
                    category=code,
                    kind="mean",
                    suppressed=sup,
                    significant=sig if code == "difference" else pd.NA,
                )
            )

    profile = {
        "share_women": (0.62, 0.58),
        "share_under_40": (0.31, 0.35),
        "share_bac3plus": (0.64, 0.59),
        "share_unemployed_before": (0.66, 0.70),
        "share_no_family_entrepreneur": (SECRET_SHARE, 0.53),
    }
    for ind, (c3, cons) in profile.items():
        rows.append(
            _row(ind, ind, "d1", "cae-3", c3, suppressed=(ind == "share_no_family_entrepreneur"))
        )
        rows.append(_row(ind, ind, "d1", "consortium", cons))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["significant"] = df["significant"].astype("boolean")
    return df


LIKERT = dict(
    indicator_id="exchange_peers",
    categories=["jamais", "rare", "reg", "freq"],
    labels={
        "freq": "Fréquemment",
        "reg": "Régulièrement",
        "rare": "Rarement",
        "jamais": "Jamais",
        "nsp": "Ne sait pas",
    },
    missing=["nsp"],
    source="enquête CAE-IMPACT 2026",
)
ITEMS = [
    charts.ProfileItem("share_women", "Femmes"),
    charts.ProfileItem("share_under_40", "Moins de 40 ans"),
    charts.ProfileItem("share_bac3plus", "Bac+3 ou plus"),
    charts.ProfileItem("share_unemployed_before", "Au chômage avant"),
    charts.ProfileItem("share_no_family_entrepreneur", "Aucun entrepreneur dans la famille"),
]


def _all_charts(df):
    return {
        "likert": charts.diverging_likert(df, **LIKERT),
        "dot": charts.dot_interval(df, indicator_id="decisive", source="enquête CAE-IMPACT 2026"),
        "dot_group": charts.dot_interval(
            df,
            indicator_id="decisive",
            by="group",
            target="cae-3",
            breakdown="sex",
            bar_labels={"F": "Femmes", "M": "Hommes"},
        ),
        "before_after": charts.before_after(df, indicator_id="income"),
        "profile": charts.profile_comparison(df, ITEMS, target="cae-3"),
    }


@pytest.fixture(scope="module")
def table():
    return fake_table()


@pytest.fixture(scope="module")
def rendered(table):
    return _all_charts(table)


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


@pytest.mark.parametrize("name", ["likert", "dot", "dot_group", "before_after", "profile"])
def test_chart_returns_figure_and_french_alt_text(rendered, name):
    fig, alt = rendered[name]
    assert isinstance(fig, Figure)
    assert isinstance(alt, str) and len(alt) > 40
    assert rendered[name].figure is fig and rendered[name].alt_text == alt
    assert isinstance(rendered[name].data, pd.DataFrame) and not rendered[name].data.empty
    texts = "\n".join(_texts(fig))
    assert "Source\u00a0: " in texts and "données synthétiques" in texts and "champ\u00a0:" in texts
    for english in ("Source:", "Before", "After", "Reference", "missing", "suppressed"):
        assert english not in texts


def test_caption_text_format():
    cap = charts.caption_text(
        source="enquête CAE-IMPACT 2026", field="entrepreneurs de la CAE 3", n=74
    )
    assert cap == (
        "Source\u00a0: enquête CAE-IMPACT 2026, données synthétiques\u202f; champ\u00a0: "
        "entrepreneurs de la CAE 3\u202f; n\u00a0=\u00a074."
    )
    assert "synthétiques" not in charts.caption_text(field="x", synthetic=False)


def test_same_input_gives_byte_identical_png_and_svg(table, tmp_path):
    digests = {"png": [], "svg": []}
    for run in range(2):
        fig, _ = charts.dot_interval(table, indicator_id="decisive")
        for fmt in digests:
            path = charts.save_figure(fig, tmp_path / f"run{run}.{fmt}")
            digests[fmt].append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests["png"][0] == digests["png"][1]
    assert digests["svg"][0] == digests["svg"][1]
    svg = (tmp_path / "run0.svg").read_text()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg
    png = (tmp_path / "run0.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"Matplotlib version" not in png


def test_report_png_same_pixels_as_stock_savefig(table):
    """The report's PNG (drawn once, RGB, zlib level 3) decodes to the very pixels of a plain
    ``savefig`` of the whole figure on the stock Agg canvas; the same figure gives the same bytes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from cae_impact.render import present

    # Each figure is drawn once, from its first layout (a second draw starts the constrained
    # layout from the first one's positions and can move things by a pixel).
    fig, _ = charts.dot_interval(table, indicator_id="decisive")
    first = present.png_bytes(fig)
    again, _ = charts.dot_interval(table, indicator_id="decisive")
    html = present.figure_html(again, alt="a", caption="c")
    assert base64.b64decode(html.split("base64,")[1].split('"')[0]) == first
    ours = Image.open(io.BytesIO(first))
    assert ours.mode == "RGB" and b"Software" not in first
    assert fig.dpi == 100, "the figure's own dpi is restored"

    stock, _ = charts.dot_interval(table, indicator_id="decisive")
    FigureCanvasAgg(stock)
    buf = io.BytesIO()
    stock.savefig(buf, format="png", dpi=150, metadata={"Software": None})
    theirs = Image.open(buf)
    assert ours.size == theirs.size
    assert np.array_equal(np.asarray(ours), np.asarray(theirs.convert("RGB")))


def test_report_png_transparent_background_on_white():
    import io

    from matplotlib.figure import Figure
    from PIL import Image

    from cae_impact.render import present

    fig = Figure(figsize=(1, 1))
    fig.patch.set_alpha(0)
    img = np.asarray(Image.open(io.BytesIO(present.png_bytes(fig, dpi=50))))
    assert img.shape == (50, 50, 3) and (img == 255).all()


def test_data_uri(rendered):
    uri = charts.figure_to_data_uri(rendered["dot"].figure)
    assert uri.startswith("data:image/png;base64,") and len(uri) > 1000
    assert charts.figure_to_data_uri(rendered["dot"].figure, fmt="svg").startswith(
        "data:image/svg+xml;base64,"
    )


def _numbers_drawn(fig: Figure) -> list[float]:
    """Every coordinate or extent of a drawn mark (bars and lines)."""
    values = []
    for rect in fig.findobj(Rectangle):
        values += [rect.get_x(), rect.get_width(), rect.get_x() + rect.get_width()]
    for line in fig.findobj(Line2D):
        values += [
            float(v)
            for v in np.atleast_1d(line.get_xdata())
            if isinstance(v, (int, float, np.floating))
        ]
    for ax in fig.axes:
        for coll in ax.collections:
            for seg in getattr(coll, "get_segments", lambda: [])():
                values += [float(p[0]) for p in seg]
    return values


def _contains(values, secret, tol=1e-9):
    return any(abs(v - secret) < tol for v in values)


def test_suppressed_rows_are_not_drawn(rendered):
    # dot chart: cae-6's estimate and interval are not drawn nor printed
    dot = rendered["dot"]
    assert not _contains(_numbers_drawn(dot.figure), charts_secret := 0.973)
    row = dot.data.set_index("key").loc["cae-6"]
    assert row["suppressed"] and np.isnan(row["value"])
    texts = _texts(dot.figure)
    assert format_pct(charts_secret) not in " ".join(texts) and "97" not in " ".join(texts)
    assert "s" in texts
    assert "97" not in dot.alt_text and "non diffusé" in dot.alt_text

    # diverging bar: a single suppressed category hides the whole bar of cae-4
    lik = rendered["likert"]
    cae4 = lik.data[lik.data["key"] == "cae-4"]
    assert cae4["suppressed"].all() and cae4["value"].isna().all()
    row_of_cae4 = 3  # bars are drawn top to bottom: CAE 1 … CAE 7, consortium
    for ax in lik.figure.axes:
        on_row = [r for r in ax.patches if abs(r.get_y() + r.get_height() / 2 - row_of_cae4) < 1e-9]
        assert on_row == []
    widths = [r.get_width() for r in lik.figure.findobj(Rectangle)]
    for v in (0.0973, 0.0353):  # widths no other bar has
        assert not _contains(widths, v)
    assert "s" in _texts(lik.figure)
    assert "CAE 4" in lik.alt_text and "97" not in lik.alt_text

    # before/after: cae-6 line not drawn, its amount not printed
    ba = rendered["before_after"]
    assert not _contains(_numbers_drawn(ba.figure), 4321.0)
    assert format_eur(4321) not in " ".join(_texts(ba.figure)) and "4321" not in ba.alt_text
    assert "4\u202f321" not in ba.alt_text

    # profile: the suppressed share of cae-3 is not drawn
    prof = rendered["profile"]
    assert not _contains([r.get_width() for r in prof.figure.findobj(Rectangle)], 0.973)
    assert "97" not in " ".join(_texts(prof.figure)) and "97" not in prof.alt_text


def test_likert_geometry_negative_left_positive_right(rendered):
    lik = rendered["likert"]
    ax = lik.figure.axes[0]
    rects = [r for r in ax.patches if isinstance(r, Rectangle) and r.get_width() > 0]
    # the bar of cae-1 (first row, y = 0): "Jamais" (0.10) and "Rarement" (0.30) left of zero
    row0 = sorted(
        (r for r in rects if abs(r.get_y() + r.get_height() / 2) < 1e-9), key=lambda r: r.get_x()
    )
    assert [round(r.get_width(), 6) for r in row0] == [0.10, 0.30, 0.46, 0.10]
    assert row0[1].get_x() + row0[1].get_width() == pytest.approx(0.0)
    assert row0[2].get_x() == pytest.approx(0.0)
    assert "Ne sait pas" in _texts(lik.figure)


def test_profile_caption_prints_reference_sources(rendered):
    texts = " ".join(_texts(rendered["profile"].figure))
    assert "Insee Première n°2007" in texts
    assert "contrefactuel" in texts
    assert "n.\u00a0d." in texts  # no national reference for the family item
    assert "≈" in texts  # « près d'un quart » is an approximate reference


def test_bad_inputs_raise(table):
    with pytest.raises(ValueError, match="neither in categories"):
        charts.diverging_likert(table, indicator_id="exchange_peers", categories=["jamais", "rare"])
    with pytest.raises(ValueError, match="pass indicator_id"):
        charts.dot_interval(table)
    with pytest.raises(ValueError, match="lacks columns"):
        charts.dot_interval(table.drop(columns=["suppressed"]), indicator_id="decisive")
    fig, _ = charts.dot_interval(table, indicator_id="decisive")
    with pytest.raises(ValueError, match="unsupported"):
        charts.save_figure(fig, "/tmp/x.jpg")


def test_likert_by_group_with_neutral_centred():
    rows = []
    for g, vals in {
        "F": (0.05, 0.10, 0.20, 0.40, 0.20, 0.05),
        "M": (0.05, 0.15, 0.30, 0.30, 0.15, 0.05),
    }.items():
        for code, v in zip(["pdt", "pp", "ni", "pl", "tt", "nsp"], vals, strict=True):
            rows.append(
                _row(
                    "isol",
                    "Moins isolé",
                    "d6",
                    "cae-3",
                    v,
                    breakdown="sex",
                    group=g,
                    category=code,
                    n=37,
                )
            )
    for code, v in zip(
        ["pdt", "pp", "ni", "pl", "tt", "nsp"], (0.05, 0.12, 0.25, 0.35, 0.18, 0.05), strict=True
    ):
        rows.append(_row("isol", "Moins isolé", "d6", "cae-3", v, category=code, n=74))
    df = pd.DataFrame(rows, columns=COLUMNS)
    fig, alt = charts.diverging_likert(
        df,
        categories=["pdt", "pp", "ni", "pl", "tt"],
        neutral="ni",
        missing=["nsp"],
        by="group",
        target="cae-3",
        breakdown="sex",
        bar_labels={"F": "Femmes", "M": "Hommes"},
    )
    ax = fig.axes[0]
    neutral = [r for r in ax.patches if r.get_facecolor()[:3] == pytest.approx((217 / 255,) * 3)]
    assert len(neutral) == 2
    for r in neutral:  # centred on zero
        assert r.get_x() == pytest.approx(-r.get_width() / 2)
    assert "Femmes" in alt and "Hommes" in alt
    assert "n\u00a0=\u00a074" in " ".join(_texts(fig))  # the target's base in the caption


def test_profile_accepts_codebook_reference_objects(table):
    class Ref:  # shape of cae_impact.spec.codebook.Reference
        value, text, label, year = 0.70, "environ 70 %", "CAE en France", 2020
        field, source = "Entrepreneurs des CAE, 2020", "IGAS-IGF, rapport sur les CAE, 2021"

    res = charts.profile_comparison(
        table,
        [charts.ProfileItem("share_unemployed_before", "Demandeurs d'emploi", reference=Ref())],
        target="consortium",
    )
    texts = " ".join(_texts(res.figure))
    assert "IGAS-IGF" in texts and "champ\u00a0: entrepreneurs des CAE, 2020" in texts
    assert "≈\u202f70\u202f%" in texts
    assert list(res.data["series"]) == ["Ensemble du consortium", "Référence nationale"]


LONG_TITLE = ("Part des entrepreneurs ayant acquis ou renforcé des compétences démocratiques et coopératives "
              "grâce à la CAE, au numérique, par le travail en collectif et dans les instances de la coopérative")


def test_no_chart_title_is_clipped_at_the_right_margin(table):
    """Every kind of chart, with a long title: no text of the figure goes past its edges."""
    made = {
        "likert": charts.diverging_likert(table, **LIKERT, title=LONG_TITLE),
        "dot": charts.dot_interval(table, indicator_id="decisive", title=LONG_TITLE),
        "before_after": charts.before_after(table, indicator_id="income", title=LONG_TITLE),
        "profile": charts.profile_comparison(table, ITEMS, target="cae-3", title=LONG_TITLE),
    }
    for name, (fig, _alt) in made.items():
        assert charts.clipped_texts(fig) == [], name
        legend_title = fig.legends[0].get_title().get_text()
        assert "\n" in legend_title and legend_title.replace("\n", " ").startswith(LONG_TITLE[:60]), name


def test_wrap_to_width_measures_the_bold_title():
    text = charts.wrap_to_width(LONG_TITLE, 300, 10.5, "bold")
    assert text.replace("\n", " ") == LONG_TITLE
    assert all(charts._text_width_pt(line, 10.5, "bold") <= 300 for line in text.split("\n"))
    # 80 characters of bold 10.5 pt text are wider than the figure: the old character wrap clipped
    assert charts._text_width_pt(LONG_TITLE[:80], 10.5, "bold") > charts.FIG_WIDTH * 72 - charts.TITLE_MARGIN_PT


def test_likert_legend_reads_in_the_drawn_order(rendered):
    """Legend entries left to right are the segments left to right: unfavourable first."""
    lik = rendered["likert"]
    ax = lik.figure.axes[0]
    colours = [t.get_facecolor() for t in lik.figure.legends[0].get_patches()]
    names = [t.get_text() for t in lik.figure.legends[0].get_texts()]
    row0 = sorted((r for r in ax.patches if isinstance(r, Rectangle) and r.get_width() > 0
                   and abs(r.get_y() + r.get_height() / 2) < 1e-9), key=lambda r: r.get_x())
    assert [r.get_facecolor() for r in row0] == colours[:len(row0)]
    assert names[0] == "Jamais" and names[3] == "Fréquemment"
