"""Draw every chart of a built study's reports and list the texts that go past a figure's edge.

Usage: python scripts/check_chart_titles.py [--study config/study.yaml] [--reports-root reports]
Runs the notebooks' chart code in-process (no kernel) for every target, the profile and every
effect domain, with the estimates already under ``reports/``; exits 1 when a text is clipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

import matplotlib

matplotlib.use("Agg")


def main(argv: list[str] | None = None) -> int:
    from cae_impact import charts, pipeline, present
    from cae_impact.config import load_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="config/study.yaml")
    parser.add_argument("--reports-root", default="reports")
    parser.add_argument("--processed-root", default="data/processed")
    args = parser.parse_args(argv)
    study = load_study(args.study)
    found: list[tuple[str, str, list[str]]] = []
    counted = {"charts": 0}
    original = present.figure_html

    def checking(fig, *, alt, caption, note=None, dpi=150):
        counted["charts"] += 1
        clipped = charts.clipped_texts(fig)
        if clipped:
            found.append((where["now"], caption, clipped))
        return original(fig, alt=alt, caption=caption, note=note, dpi=dpi)

    present.figure_html = checking
    where = {"now": ""}
    common = dict(study=args.study, processed_root=args.processed_root, reports_root=args.reports_root)
    from cae_impact.codebook import load_codebook

    domains = [d.id for d in load_codebook(study.codebook).domains]
    for target in study.targets:
        with contextlib.redirect_stdout(io.StringIO()):
            where["now"] = f"{target}/profile"
            ctx = pipeline.profile_context(target=target, **common)
            prof = pipeline.analyse_profile(ctx)
            pipeline.show_profile_intro(ctx, prof)
            for variable in prof.variables:
                pipeline.show_profile_variable(ctx, prof, variable)
            for domain in domains:
                where["now"] = f"{target}/{domain}"
                ctx = pipeline.effect_context(target=target, domain=domain, **common)
                analysis = pipeline.analyse_domain(ctx)
                pipeline.show_domain_intro(ctx, analysis)
                for indicator in analysis.indicators:
                    pipeline.show_indicator(ctx, analysis, indicator)
                pipeline.show_domain_findings(ctx, analysis)
    print(f"{counted['charts']} charts drawn, {len(found)} with a text past the figure's edge")
    for place, caption, texts in found:
        print(f"  {place}: {caption[:60]!r}: {[t[:50] for t in texts]}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
