"""Draw every chart of a built study's reports and list the texts that go past a figure's edge.

The report's chart titles are text above the image (never clipped); the images still hold
axis labels, legends and value labels, which this checks.

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
    from cae_impact.render import charts, present
    from cae_impact.run import pipeline
    from cae_impact.spec.config import load_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="config/study.yaml")
    parser.add_argument("--reports-root", default="reports")
    parser.add_argument("--processed-root", default="data/processed")
    args = parser.parse_args(argv)
    study = load_study(args.study)
    found: list[tuple[str, str, list[str]]] = []
    counted = {"charts": 0}
    original = present.chart_html

    def checking(fig, *, title, **kw):
        counted["charts"] += 1
        clipped = charts.clipped_texts(fig)
        if clipped:
            found.append((where["now"], title, clipped))
        return original(fig, title=title, **kw)

    present.chart_html = checking
    where = {"now": ""}
    common = dict(study=args.study, processed_root=args.processed_root, reports_root=args.reports_root)
    from cae_impact.spec.codebook import load_codebook

    domains = [d.id for d in load_codebook(study.codebook).domains]
    for target in study.targets:
        with contextlib.redirect_stdout(io.StringIO()):
            where["now"] = f"{target}/profile"
            ctx = pipeline.profile_context(target=target, **common)
            prof = pipeline.analyse_profile(ctx)
            pipeline.show_front(ctx, prof)
            pipeline.show_profile(ctx, prof)
            for domain in domains:
                where["now"] = f"{target}/{domain}"
                ctx = pipeline.effect_context(target=target, domain=domain, **common)
                analysis = pipeline.analyse_domain(ctx)
                pipeline.show_chapter(ctx, analysis)
    print(f"{counted['charts']} charts drawn, {len(found)} with a text past the figure's edge")
    for place, caption, texts in found:
        print(f"  {place}: {caption[:60]!r}: {[t[:50] for t in texts]}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
