"""Tests of the French narrative: wording rules, disclosure, grammar."""

from __future__ import annotations

import random
import re

import pandas as pd
import pytest

from cae_impact.core.frenchfmt import NBSP, NNBSP
from cae_impact.render.narrative import (
    SUPPRESSED_TEXT,
    Support,
    de,
    finding_paragraph,
    indicator_paragraph,
    que,
    select_row,
    target_phrase,
)

LABEL = "La CAE a été décisive dans l'activation du projet"
STATEMENT = "jugent la CAE décisive dans l'activation de leur projet"


def row(
    target,
    estimate,
    lo,
    hi,
    n,
    *,
    significant=pd.NA,
    suppressed=False,
    caution=False,
    indicator_id="decisive",
    breakdown="total",
    group=pd.NA,
    category=pd.NA,
    comparison="consortium",
):
    return {
        "indicator_id": indicator_id,
        "indicator_label": LABEL,
        "domain_id": "d3",
        "target": target,
        "breakdown": breakdown,
        "group": group,
        "category": category,
        "estimate": estimate,
        "se": 0.03,
        "ci_low": lo,
        "ci_high": hi,
        "n_unweighted": n,
        "base_weighted": n * 2.0,
        "comparison": pd.NA if target == "consortium" else comparison,
        "p_value": 0.2,
        "p_adjusted": 0.3,
        "significant": significant,
        "flag_caution": caution,
        "suppressed": suppressed,
        "suppression_reason": "min_cell_count" if suppressed else pd.NA,
    }


@pytest.fixture
def table():
    return pd.DataFrame(
        [
            row("consortium", 0.851, 0.82, 0.88, 569),
            row("cae-3", 0.8249, 0.72, 0.894, 74, significant=False),
            row("cae-4", 0.62, 0.50, 0.73, 23, significant=True, caution=True),
            row("cae-5", 0.917, 0.61, 0.99, 6, suppressed=True),
            row("cae-6", 0.853, 0.80, 0.90, 60),
            row("cae-7", 0.93, 0.88, 0.96, 117, significant=True),
            row(
                "cae-3",
                0.86,
                0.74,
                0.93,
                44,
                breakdown="sex",
                group="F",
                comparison="M",
                significant=False,
            ),
            row(
                "cae-3",
                0.78,
                0.60,
                0.89,
                30,
                breakdown="sex",
                group="M",
                comparison="F",
                significant=False,
            ),
            row("consortium", 1420.0, 1370.0, 1470.0, 540, indicator_id="income", category="after"),
            row(
                "cae-3",
                1290.0,
                1150.0,
                1430.0,
                70,
                indicator_id="income",
                category="after",
                significant=True,
            ),
        ]
    )


def plain(text):
    """The text with no-break spaces as plain spaces, for readable assertions."""
    return text.replace(NBSP, " ").replace(NNBSP, " ").replace("\u2019", "'")


def test_example_paragraph_not_significant(table):
    text = plain(indicator_paragraph(table, "decisive", "cae-3", statement=STATEMENT))
    assert text == (
        "82 % des entrepreneurs de la CAE 3 (n = 74) jugent la CAE décisive dans l'activation "
        "de leur projet (intervalle de confiance à 95 % : 72 % à 89 %). C'est 3 points de moins "
        "que l'ensemble du consortium (85 %) ; l'écart n'est pas statistiquement significatif."
    )
    assert "significativement" not in text


def test_significant_difference_is_worded_with_agreement(table):
    text = plain(indicator_paragraph(table, "decisive", "cae-7", statement=STATEMENT))
    assert (
        "Cette part est significativement supérieure à celle de l'ensemble du consortium (85 %), avec un écart de 8 points."
        in text
    )
    low = plain(indicator_paragraph(table, "decisive", "cae-4", statement=STATEMENT))
    assert "significativement inférieure" in low and "23 points" in low
    assert "Base inférieure à 30 répondants : résultat à interpréter avec prudence." in low
    eur = plain(
        indicator_paragraph(
            table,
            "income",
            "cae-3",
            category="after",
            unit="eur",
            statement="déclarent un revenu mensuel net de",
        )
    )
    assert eur.startswith(
        "En moyenne, les entrepreneurs de la CAE 3 (n = 70) déclarent un revenu mensuel net de 1 290 €"
    )
    assert (
        "Ce montant est significativement inférieur à celui de l'ensemble du consortium (1 420 €), avec un écart de 130 €."
        in eur
    )


def test_untested_and_close_values(table):
    text = plain(indicator_paragraph(table, "decisive", "cae-6"))
    assert text.startswith(f"{LABEL} : 85 % des entrepreneurs de la CAE 6 (n = 60)")
    assert "proche de celui de l'ensemble du consortium (85 %)" in text
    assert "n'a pas fait l'objet d'un test statistique" in text
    assert "significativement" not in text


def test_suppressed_row_never_leaks(table):
    text = indicator_paragraph(table, "decisive", "cae-5", statement=STATEMENT)
    assert text.startswith(SUPPRESSED_TEXT)
    assert not re.search(r"\d\s*%", text) and "92" not in text and "61" not in text
    assert "n\u00a0=" not in text and "significativement" not in text


def test_comparison_with_a_suppressed_row_is_left_out(table):
    t = table.copy()
    t.loc[t["target"].eq("consortium") & t["indicator_id"].eq("decisive"), "suppressed"] = True
    text = plain(indicator_paragraph(t, "decisive", "cae-7", statement=STATEMENT))
    assert "85 %" not in text and "consortium" not in text and "écart" not in text
    assert "significativement" not in text


def test_group_comparison(table):
    text = plain(
        indicator_paragraph(
            table,
            "decisive",
            "cae-3",
            breakdown="sex",
            group="F",
            population="femmes entrepreneures",
            phrases={"M": "les hommes"},
            statement=STATEMENT,
        )
    )
    assert text.startswith("86 % des femmes entrepreneures de la CAE 3 (n = 44)")
    assert (
        "C'est 8 points de plus que les hommes (78 %) ; l'écart n'est pas statistiquement significatif."
        in text
    )


def test_consortium_paragraph_has_no_comparison(table):
    text = plain(indicator_paragraph(table, "decisive", "consortium", statement=STATEMENT))
    assert text.startswith("85 % des entrepreneurs de l'ensemble du consortium (n = 569)")
    assert "écart" not in text


def test_missing_row_raises(table):
    with pytest.raises(KeyError):
        indicator_paragraph(table, "decisive", "cae-9")
    with pytest.raises(ValueError):
        indicator_paragraph(table, "decisive", "cae-3", unit="kg")


def test_grammar_helpers():
    assert de("entrepreneurs") == "d'entrepreneurs"
    assert de("l'ensemble du consortium") == "de l'ensemble du consortium"
    assert de("le consortium") == "du consortium" and de("les CAE") == "des CAE"
    assert de("handicap") == "de handicap" and de("hommes") == "d'hommes"
    assert que("Ellyx") == "qu'Ellyx" and que("la CAE 3") == "que la CAE 3"
    assert target_phrase("cae-3") == "la CAE 3"
    assert target_phrase("consortium") == "l'ensemble du consortium"
    assert target_phrase("coodemarrage", {"coodemarrage": "Coodémarrage 53"}) == "Coodémarrage 53"


def test_select_row_treats_total_and_na_alike(table):
    t = table.copy()
    t.loc[t["breakdown"].eq("total"), "group"] = "total"
    assert select_row(t, "decisive", "cae-3")["estimate"] == pytest.approx(0.8249)
    assert select_row(t, "decisive", "cae-3", breakdown="sex", group="M")["estimate"] == 0.78
    assert select_row(t, "decisive", "cae-99") is None


def test_select_row_reads_positions_and_refuses_duplicates(table):
    t = table.copy()
    t.index = [f"r{i}" for i in reversed(range(len(t)))]  # labels unrelated to positions
    got = select_row(t, "decisive", "cae-3", breakdown="sex", group="M")
    assert got.name == t[(t["target"] == "cae-3") & (t["group"] == "M")].index[0]
    twice = pd.concat([t, t.iloc[[0]]])
    first = t.iloc[0]
    with pytest.raises(ValueError, match="2 rows"):
        select_row(twice, first["indicator_id"], first["target"], breakdown=first["breakdown"],
                   group=first["group"], category=first["category"])


def test_finding_paragraph(table):
    finding = (
        "La CAE facilite grandement l'activation du projet entrepreneurial et son accélération."
    )
    text = plain(
        finding_paragraph(finding, table, [Support("decisive", STATEMENT, published=0.85)], "cae-3")
    )
    assert text.startswith(
        "Enseignement de l'expérimentation nationale : « La CAE facilite grandement"
    )
    assert "accélération »." in text
    assert "Les résultats de la CAE 3 qui s'y rapportent" in text
    assert "82 % des entrepreneurs de la CAE 3" in text
    assert (
        "Pour mémoire, le rapport national de l'expérimentation CAE-IMPACT indiquait 85 %" in text
    )
    hidden = finding_paragraph(
        finding, table, [Support("decisive", STATEMENT, label="CAE décisive")], "cae-5"
    )
    assert "résultat non diffusé (secret statistique)" in hidden
    assert not re.search(r"\d\s*%", hidden)

    class Finding:
        text = finding

    assert "facilite grandement" in finding_paragraph(Finding(), table, [], "cae-3")


def test_rules_hold_on_random_rows():
    """Whatever the numbers: « significativement » only when flagged, suppressed never shown."""
    rng = random.Random(20261126)
    for _ in range(300):
        cons = rng.uniform(0.05, 0.95)
        est = rng.uniform(0.05, 0.95)
        n = rng.randint(3, 300)
        sig = rng.choice([True, False, pd.NA])
        sup = rng.random() < 0.25
        cons_sup = rng.random() < 0.1
        df = pd.DataFrame(
            [
                row("consortium", cons, cons - 0.03, cons + 0.03, 500, suppressed=cons_sup),
                row(
                    "cae-1",
                    est,
                    max(0, est - 0.1),
                    min(1, est + 0.1),
                    n,
                    significant=sig,
                    suppressed=sup,
                ),
            ]
        )
        text = indicator_paragraph(df, "decisive", "cae-1", statement=STATEMENT)
        if sig is not True or sup or cons_sup:
            assert "significativement" not in text
        else:
            assert "significativement" in text
        if sup:
            assert text.startswith(SUPPRESSED_TEXT) and not re.search(
                r"\d", text.replace("CAE 1", "")
            )
        elif n < 30:
            assert "à interpréter avec prudence" in text
        if cons_sup:
            assert "consortium" not in text


def test_narrative_doctests_pass():
    import doctest

    from cae_impact.render import narrative

    result = doctest.testmod(narrative)
    assert result.attempted >= 4 and result.failed == 0


def test_calibrated_share_is_given_as_the_register_figure():
    """The share of women (weights calibrated on sex): no sampling error, no interval, no test."""
    rows = [row("consortium", 0.597, 0.597, 0.597, 558), row("cae-3", 0.6556, 0.6556, 0.6556, 80)]
    for r in rows:
        r.update(se=1e-17, p_value=float("nan"), p_adjusted=float("nan"), significant=pd.NA,
                 indicator_label="Part de femmes parmi les entrepreneurs")
    table = pd.DataFrame(rows)
    text = plain(indicator_paragraph(table, "decisive", "cae-3"))
    assert text.startswith(
        "Part de femmes parmi les entrepreneurs : 66 % des entrepreneurs de la CAE 3 (n = 80) ; "
        "part connue par les registres des CAE, sur lesquels les poids sont calés : elle n'a pas "
        "de marge d'erreur d'échantillonnage.")
    assert "intervalle de confiance" not in text and "significativement" not in text
    # a share of 100 % has no variance either, but keeps its interval: it is not calibrated
    full = pd.DataFrame([row("consortium", 0.8, 0.7, 0.9, 500),
                         {**row("cae-3", 1.0, 0.95, 1.0, 40), "se": 0.0}])
    assert "intervalle de confiance" in plain(indicator_paragraph(full, "decisive", "cae-3"))
