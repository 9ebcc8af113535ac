"""The build steps' own bookkeeping: what a step that finds everything in the cache still pays."""

import os
import shutil
from dataclasses import replace

from cae_impact.run import cli, steps
from cae_impact.spec import codebook as codebook_mod
from cae_impact.spec.config import PROJECT_ROOT, load_study


def test_domain_ids_load_the_codebook_once_until_it_changes(tmp_path, monkeypatch):
    """A step asks for the domains once per progress line: the codebook is read once per
    process, and again as soon as the file changes."""
    book = tmp_path / "codebook.yaml"
    shutil.copyfile(PROJECT_ROOT / "config" / "codebook.yaml", book)
    study = replace(load_study(PROJECT_ROOT / "config" / "study.yaml"), codebook=book)
    loads = []
    real = codebook_mod.load_codebook

    def counting(path=None):
        loads.append(path)
        return real(path)

    monkeypatch.setattr(steps, "load_codebook", counting)  # the steps module imports it at its top
    first = cli._domain_ids(study)
    assert first and cli._domain_ids(study) == first
    assert cli.total_notebooks(study) == len(study.caes) + 1 + len(study.targets) * 2  # 03 (every domain), 04
    assert len(loads) == 1
    cli._domain_ids(study).append("not-a-domain")  # callers get their own list
    assert cli._domain_ids(study) == first

    text = book.read_text(encoding="utf-8")
    book.write_text(text + "\n# edited\n", encoding="utf-8")
    st = book.stat()
    os.utime(book, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cli._domain_ids(study) == first
    assert len(loads) == 2


def test_render_makes_the_formats_asked_for_in_document_order(monkeypatch):
    """`render --to` takes several formats (the Makefile asks for the three in one step): HTML
    first, the PDF and DOCX made from it after."""
    done = []
    monkeypatch.setattr(cli, "_render_one", lambda args, study, processed, reports, fmt, remaining: done.append(fmt))
    assert cli.main(["render", "--target", "consortium", "--to", "docx", "html", "pdf"]) == 0
    assert done == ["html", "pdf", "docx"]
    done.clear()
    assert cli.main(["render", "--target", "consortium", "--to", "pdf"]) == 0
    assert done == ["pdf"]


def test_a_render_handed_over_keeps_every_option():
    """A render step that hands its work over to a child with the renderers passes the same
    options on (study, roots, cache, --no-cache)."""
    argv = ["--study", "s.yaml", "--processed-root", "p", "--reports-root", "r", "--notebooks-dir", "n",
            "--cache-root", "c"]
    for extra in ([], ["--no-cache"]):
        args = cli.make_parser().parse_args([*argv, *extra, "render", "--target", "t", "--to", "pdf", "docx"])
        again = cli.make_parser().parse_args([*cli._global_argv(args), "render", "--target", "t", "--to", "pdf", "docx"])
        assert vars(again) == vars(args)
