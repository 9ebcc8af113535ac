"""Write the survey-tool export fixtures of tests/test_ingest_tools.py from 30 known respondents.

Usage (from the repository root, with the project's virtual environment)::

    python3 -m venv /tmp/fpvenv && /tmp/fpvenv/bin/pip install formpack python-dateutil
    .venv/bin/python scripts/make_export_fixtures.py --formpack-python /tmp/fpvenv/bin/python

(formpack is not on every package index: ``pip install /path/to/a/formpack/checkout`` works too.)

1. ``answers.json``: 30 respondents drawn with a fixed seed, answering every question of the
   codebook as a respondent can (skip logic applied, exclusive choices alone, numbers within
   bounds, free texts with commas, quotes and line breaks).
2. ``kobo/``: exports written by **formpack itself** (KoboToolbox's exporter), run in its own
   environment (``--formpack-python``) on the form content of the XLSForm that ``make
   questionnaire`` writes, in every setting of Kobo's download screen that matters: XML values
   or French labels, with or without groups in headers, select_multiple as one column, separate
   0/1 columns or both; CSV (as ``to_csv``: ``;``, every cell quoted) and XLSX (``to_xlsx``).
   The formpack version and commit are written to the fixture folder's README.
3. ``limesurvey/``: exports written by a Python replica of LimeSurvey's CSV export
   (``Writer.php``: heading and answer formats; ``SurveyObj.php``: full answers, « N/A » for a
   sub-question not shown, numbers without trailing zeros; ``CsvWriter.php``: UTF-8 BOM, every
   cell quoted, CRLF, a blank line at the end), on the survey structure ``make questionnaire``
   writes (LimeSurvey answer codes of 1 to 5 characters).
4. ``googleforms/``: the Forms download (``Timestamp``/``Horodateur`` as
   ``2026/03/14 10:22:31 AM UTC+1``) and the Sheets download (``14/03/2026 10:22:31``), checkbox
   answers joined by ``", "``, and the built-in « Autre » option (the typed text in place of the
   choice).

The fixtures are committed: the tests never need formpack.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cae_impact.ingest.limesurvey import FIXED_COLUMNS  # noqa: E402
from cae_impact.spec.codebook import load_codebook  # noqa: E402
from cae_impact.spec.codes import limesurvey_answer_codes, limesurvey_subquestion_codes  # noqa: E402
from cae_impact.spec.questionnaire import LANG, build_xlsform  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "exports"
N = 30
SEED = 20261206

TEXTS = [
    "Plus de sérénité, moins d'administratif.",
    "Un cadre, des collègues, une vraie protection sociale.",
    'Le « test » de mon activité, sans risque ; et le "statut" de salarié.',
    "Deux choses :\n- la comptabilité ;\n- les rencontres.",
    "RAS",
]
OTHER_TEXTS = {  # typed in Google Forms' « Autre » option
    "sector": "Ébéniste, restauration de meubles",
    "prior_status": "Congé parental",
    "training_topics": "Anglais, prise de parole en public",
}


# ------------------------------------------------------------------------------------ truth
def draw_answers(cb) -> list[dict]:
    """The 30 respondents: rid, times and answers (codes, lists of codes, numbers, texts)."""
    rng = random.Random(SEED)
    start = datetime(2026, 3, 2, 9, 0, 0)
    people = []
    for i in range(N):
        answers: dict = {}
        for q in cb.questions.values():
            if q.relevant and not cb.is_relevant(q.id, answers):
                answers[q.id] = None
                continue
            if not q.required and rng.random() < 0.06:
                answers[q.id] = None  # left unanswered
                continue
            if q.type == "multiple":
                scale = cb.scale_of(q.id)
                plain = [c.code for c in scale.choices if not c.exclusive]
                exclusive = [c.code for c in scale.choices if c.exclusive]
                if exclusive and rng.random() < 0.15:
                    answers[q.id] = [rng.choice(exclusive)]
                else:
                    k = rng.randint(1, len(plain))
                    chosen = set(rng.sample(plain, k))
                    answers[q.id] = [c for c in plain if c in chosen]
            elif q.has_choices:
                answers[q.id] = rng.choice(cb.scale_of(q.id).codes)
            elif q.type == "numeric":
                lo = int(q.min if q.min is not None else 0)
                hi = int(q.max if q.max is not None else 100)
                hi = min(hi, lo + 5000)
                answers[q.id] = rng.randint(lo, hi)
            else:
                answers[q.id] = rng.choice(TEXTS)
        for q in cb.questions.values():  # skip logic on the answers actually given
            if q.relevant and not cb.is_relevant(q.id, answers):
                answers[q.id] = None
        started = start + timedelta(hours=7 * i, minutes=rng.randint(0, 50))
        people.append(
            {
                "rid": f"R{i + 1:03d}{rng.choice('ABCDEFGH')}{rng.randint(100, 999)}",
                "started": started.isoformat(sep=" "),
                "submitted": (started + timedelta(minutes=rng.randint(8, 40), seconds=rng.randint(0, 59))).isoformat(sep=" "),
                "answers": answers,
            }
        )
    return people


# ------------------------------------------------------------------------------------ Kobo
def formpack_content(cb) -> dict:
    """The form content formpack reads, from the generated XLSForm (columns as in the sheets:
    formpack's ``expand_content`` turns ``label::Français (fr)`` into its translations)."""
    wb = build_xlsform(cb)
    sheets = {}
    for sheet in ("survey", "choices", "settings"):
        rows = list(wb[sheet].iter_rows(values_only=True))
        head = [str(h) for h in rows[0]]
        sheets[sheet] = [
            {k: str(v) for k, v in zip(head, values, strict=False) if v not in (None, "")} for values in rows[1:]
        ]
    return {"survey": sheets["survey"], "choices": sheets["choices"], "settings": sheets["settings"][0]}


def kobo_submissions(cb, people) -> list[dict]:
    """Submissions as kpi stores them: XPaths with groups, space-joined select_multiple codes."""
    subs = []
    for i, p in enumerate(people):
        started = datetime.fromisoformat(p["started"])
        ended = datetime.fromisoformat(p["submitted"])
        sub = {
            "_id": 1000 + i,
            "_uuid": f"6f0c{i:04d}-aaaa-4bbb-8ccc-{i:012d}",
            "_submission_time": (ended - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
            "_validation_status": {},
            "_notes": [],
            "_status": "submitted_via_web",
            "_submitted_by": None,
            "__version__": "vCAEimpact2026",
            "_tags": [],
            "start": started.strftime("%Y-%m-%dT%H:%M:%S.000+01:00"),
            "end": ended.strftime("%Y-%m-%dT%H:%M:%S.000+01:00"),
            cb.respondent_field.id: p["rid"],
            cb.version_field.id: cb.version,
        }
        for q in cb.questions.values():
            value = p["answers"][q.id]
            if value is None:
                continue
            path = f"{q.section}/{q.id}"
            sub[path] = " ".join(value) if isinstance(value, list) else str(value)
        subs.append(sub)
    return subs


KOBO_RUNNER = textwrap.dedent(
    """
    import json, sys
    from formpack import FormPack
    from formpack.schema.fields import (IdCopyField, NotesCopyField, SubmissionTimeCopyField,
                                        TagsCopyField, ValidationStatusCopyField)
    job = json.load(sys.stdin)
    pack = FormPack([{"content": job["content"], "version": "vCAEimpact2026"}],
                    title="Questionnaire CAE-IMPACT", id_string="cae_impact")
    # the copy fields kpi passes to formpack (kpi/utils/export_task / SubmissionExportTask)
    copy = (IdCopyField, "_uuid", SubmissionTimeCopyField, ValidationStatusCopyField, NotesCopyField,
            "_status", "_submitted_by", "__version__", TagsCopyField)
    for s in job["settings"]:
        lang = s["lang"] if s["lang"] is not None else False
        export = pack.export(lang=lang, hierarchy_in_labels=s["groups"], multiple_select=s["multiple"],
                             copy_fields=copy, force_index=True, tag_cols_for_header=[],
                             xls_types_as_text=s["types_as_text"])
        if s["ext"] == "csv":
            with open(s["path"], "w", encoding="utf-8", newline="") as fh:
                for line in export.to_csv(job["submissions"]):
                    fh.write(line + "\\r\\n")
        else:
            export.to_xlsx(s["path"], job["submissions"])
    """
)


def formpack_version(python: str) -> str:
    code = (
        "import importlib.metadata as m, json, pathlib\n"
        "d = m.distribution('formpack')\n"
        "direct = d.read_text('direct_url.json') or ''\n"
        "print(d.version, direct)\n"
    )
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


KOBO_SETTINGS = [
    # (file stem, lang, groups in headers, select_multiple, extension)
    ("xml_nogroups_both", None, False, "both", "csv"),
    ("xml_nogroups_summary", None, False, "summary", "csv"),
    ("xml_nogroups_details", None, False, "details", "csv"),
    ("xml_groups_both", None, True, "both", "csv"),
    ("labels_nogroups_both", LANG, False, "both", "csv"),
    ("labels_nogroups_summary", LANG, False, "summary", "csv"),
    ("labels_nogroups_details", LANG, False, "details", "csv"),
    ("labels_groups_both", LANG, True, "both", "csv"),
    ("labels_groups_details", LANG, True, "details", "csv"),
    ("xml_nogroups_both", None, False, "both", "xlsx"),
    ("labels_nogroups_summary", LANG, False, "summary", "xlsx"),
    ("labels_groups_details", LANG, True, "details", "xlsx"),
    ("labels_nogroups_both_typed", LANG, False, "both", "xlsx"),  # numbers and dates as Excel types
]


def write_kobo(cb, people, python: str, commit: str) -> list[str]:
    out = OUT / "kobo"
    out.mkdir(parents=True, exist_ok=True)
    settings = [
        {"path": str(out / f"{stem}.{ext}"), "lang": lang, "groups": groups, "multiple": multiple, "ext": ext,
         "types_as_text": not stem.endswith("_typed")}
        for stem, lang, groups, multiple, ext in KOBO_SETTINGS
    ]
    job = {"content": formpack_content(cb), "submissions": kobo_submissions(cb, people), "settings": settings}
    subprocess.run([python, "-c", KOBO_RUNNER], input=json.dumps(job), text=True, check=True)
    version = formpack_version(python)
    (out / "README.md").write_text(
        "# KoboToolbox exports written by formpack\n\n"
        f"Written by `scripts/make_export_fixtures.py` with formpack {version.split()[0]}"
        f" (commit {commit or 'unknown'}), KoboToolbox's exporter, on the form content of the XLSForm of"
        " `make questionnaire` and the 30 respondents of `../answers.json`.\n\n"
        "File names: `xml` (« XML values and headers ») or `labels` (the form's French labels),"
        " `groups`/`nogroups` (« Include groups in headers »), `both`/`summary`/`details`"
        " (select_multiple in one column, separate 0/1 columns, or both); `_typed`: numbers and dates"
        " stored as Excel numbers and dates (« Store date and number responses as text » off).\n",
        encoding="utf-8",
    )
    return [Path(s["path"]).name for s in settings]


# ------------------------------------------------------------------------------------ LimeSurvey
LS_TEXTS = {"fr": {"Yes": "Oui", "No": "Non", "N/A": "N/A"}, "en": {"Yes": "Yes", "No": "No", "N/A": "N/A"}}
LS_FIXED = ("id", "submitdate", "lastpage", "startlanguage", "seed", "token")


def limesurvey_fields(cb) -> list[dict]:
    """The field map of the survey structure (questions and sub-questions, in order)."""
    fields = [{"code": code, "fixed": True} for code in LS_FIXED]
    fields.append({"code": cb.respondent_field.export_code, "type": "S", "text": cb.respondent_field.label, "tech": "rid"})
    fields.append({"code": cb.version_field.export_code, "type": "S", "text": cb.version_field.label, "tech": "qversion"})
    for q in cb.questions.values():
        if q.type == "multiple":
            scale = cb.scale_of(q.id)
            sq = limesurvey_subquestion_codes(scale)
            for c in scale.choices:
                fields.append({"code": f"{q.export_code}[{sq[c.code]}]", "type": "M", "text": q.text, "sub": c.label, "qid": q.id, "choice": c.code})
        elif q.has_choices:
            fields.append({"code": q.export_code, "type": "L", "text": q.text, "qid": q.id})
        elif q.type == "numeric":
            fields.append({"code": q.export_code, "type": "N", "text": q.text, "qid": q.id})
        else:
            fields.append({"code": q.export_code, "type": "T", "text": q.text, "qid": q.id})
    return fields


def ls_stored_value(cb, field: dict, person: dict, index: int):
    """What LimeSurvey's response table holds (None: NULL, the question was not shown)."""
    if field.get("fixed"):
        return {
            "id": str(index + 1),
            "submitdate": person["submitted"],
            "lastpage": "8",
            "startlanguage": "fr",
            "seed": str(100000000 + index * 7919),
            "token": f"tok{index:04d}",
        }[field["code"]]
    if field.get("tech") == "rid":
        return person["rid"]
    if field.get("tech") == "qversion":
        return cb.version
    q = cb.question(field["qid"])
    shown = not q.relevant or cb.is_relevant(q.id, person["answers"])
    value = person["answers"][q.id]
    if not shown:
        return None
    if field["type"] == "M":
        return "Y" if value and field["choice"] in value else ""
    if value is None:
        return ""
    if field["type"] == "L":
        return limesurvey_answer_codes(cb.scale_of(q.id))[value]
    if field["type"] == "N":
        return f"{float(value):.10f}"  # decimal(30,10)
    return str(value)


def ls_cell(cb, field: dict, stored, answers: str, lang: str) -> str:
    """Writer::getShortAnswer / getLongAnswer (SurveyObj.php)."""
    if field.get("fixed") or field.get("tech"):
        return "" if stored is None else stored
    kind = field["type"]
    if kind == "N":
        if stored is None or stored.strip() == "":
            return ""
        if "." in stored:
            stored = stored.rstrip("0").rstrip(".")
        return stored
    if answers == "short":
        return "" if stored is None else stored
    if kind == "M":
        if stored == "Y":
            return LS_TEXTS[lang]["Yes"]
        if stored in ("N", ""):
            return LS_TEXTS[lang]["No"]
        return LS_TEXTS[lang]["N/A"]
    if kind == "L":
        if stored is None:
            return ""
        scale = cb.scale_of(field["qid"])
        by_ls = {ls: cb.scale_of(field["qid"]).label(code) for code, ls in limesurvey_answer_codes(scale).items()}
        return by_ls.get(stored, "")
    return "" if stored is None else stored


def ls_heading(field: dict, headings: str, lang: str) -> str:
    """Writer::write headings: code, full (text [sub-question text]) or codetext."""
    code = field["code"]
    if field.get("fixed"):
        text = FIXED_COLUMNS[code][1 if lang == "en" else 2]
    else:
        text = field["text"] + (f" [{field['sub']}]" if field.get("sub") else "")
    if headings == "code":
        return code
    if headings == "full":
        return text
    return f"{code}. {text}"


def ls_escape(value: str) -> str:
    """CsvWriter::csvEscape: every cell quoted, quotes doubled, line breaks as LF."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return '"' + value.replace('"', '""') + '"'


LS_SETTINGS = [
    # (file stem, headings, answers, separator, interface language)
    ("full_long_comma_fr", "full", "long", ",", "fr"),
    ("code_short_comma_fr", "code", "short", ",", "fr"),
    ("code_long_semicolon_fr", "code", "long", ";", "fr"),
    ("codetext_short_semicolon_en", "codetext", "short", ";", "en"),
    ("codetext_long_comma_fr", "codetext", "long", ",", "fr"),
    ("full_short_semicolon_en", "full", "short", ";", "en"),
]


def write_limesurvey(cb, people) -> list[str]:
    out = OUT / "limesurvey"
    out.mkdir(parents=True, exist_ok=True)
    fields = limesurvey_fields(cb)
    names = []
    for stem, headings, answers, sep, lang in LS_SETTINGS:
        records = [sep.join(ls_escape(ls_heading(f, headings, lang)) for f in fields)]
        for i, person in enumerate(people):
            records.append(sep.join(ls_escape(ls_cell(cb, f, ls_stored_value(cb, f, person, i), answers, lang)) for f in fields))
        data = "\ufeff" + "".join(r + "\r\n" for r in records) + "\r\n"
        (out / f"{stem}.csv").write_bytes(data.encode("utf-8"))
        names.append(f"{stem}.csv")
    (out / "README.md").write_text(
        "# LimeSurvey exports (replica of LimeSurvey's CSV writer)\n\n"
        "Written by `scripts/make_export_fixtures.py`, a Python replica of LimeSurvey's "
        "`application/helpers/admin/export/Writer.php`, `CsvWriter.php` and `SurveyObj.php`, on the "
        "survey structure of `make questionnaire` and the 30 respondents of `../answers.json`.\n\n"
        "File names: headings (`code`, `full` question text, `codetext`), answers (`short` codes or "
        "`long` full answers), field separator, interface language of the fixed columns.\n",
        encoding="utf-8",
    )
    return names


# ------------------------------------------------------------------------------------ Google Forms
def google_rows(cb, people, style: str) -> list[list[str]]:
    header = ["Horodateur" if style == "sheets" else "Timestamp", cb.respondent_field.label, cb.version_field.label]
    header += [q.text for q in cb.questions.values()]
    rows = [header]
    for person in people:
        when = datetime.fromisoformat(person["submitted"])
        if style == "sheets":
            stamp = when.strftime("%d/%m/%Y %H:%M:%S")
        else:
            stamp = when.strftime("%Y/%m/%d %I:%M:%S %p") + " UTC+1"
        row = [stamp, person["rid"], cb.version]
        for q in cb.questions.values():
            value = person["answers"][q.id]
            if value is None:
                row.append("")
            elif q.type == "multiple":
                scale = cb.scale_of(q.id)
                texts = [OTHER_TEXTS[q.id] if (c == "autre" and q.id in OTHER_TEXTS) else scale.label(c) for c in value]
                row.append(", ".join(texts))
            elif q.has_choices:
                row.append(OTHER_TEXTS[q.id] if (value == "autre" and q.id in OTHER_TEXTS) else cb.scale_of(q.id).label(value))
            else:
                row.append(str(value))
        rows.append(row)
    return rows


def write_google(cb, people) -> list[str]:
    out = OUT / "googleforms"
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for style in ("forms", "sheets"):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerows(google_rows(cb, people, style))
        (out / f"{style}.csv").write_text(buf.getvalue(), encoding="utf-8", newline="")
        names.append(f"{style}.csv")
    (out / "README.md").write_text(
        "# Google Forms exports (replica)\n\n"
        "`forms.csv`: « Télécharger les réponses (.csv) » of the form (`Timestamp`, "
        "`2026/03/02 10:12:31 AM UTC+1`); `sheets.csv`: the responses sheet downloaded as CSV from a "
        "French Sheets (`Horodateur`, `02/03/2026 10:12:31`). Checkbox answers joined by `, `; "
        "the « Autre » option of `sector`, `prior_status` and `training_topics` holds the typed text.\n",
        encoding="utf-8",
    )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formpack-python", help="python of an environment where formpack is installed")
    parser.add_argument("--formpack-commit", default="", help="formpack commit the environment was installed from")
    args = parser.parse_args(argv)
    cb = load_codebook()
    people = draw_answers(cb)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "answers.json").write_text(json.dumps(people, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (OUT / "README.md").write_text(
        "# Survey-tool exports of 30 known respondents\n\n"
        "Written by `scripts/make_export_fixtures.py` (see its docstring to regenerate them); read by "
        "`tests/test_ingest_tools.py`, which compares every cleaned answer with `answers.json`.\n\n"
        "- `kobo/`: written by formpack itself, KoboToolbox's exporter (version and commit in "
        "`kobo/README.md`);\n"
        "- `limesurvey/`: a replica of LimeSurvey's CSV export (`Writer.php`, `CsvWriter.php`, "
        "`SurveyObj.php`) on the survey structure of `make questionnaire`;\n"
        "- `googleforms/`: a replica of the Forms and Sheets CSV downloads.\n\n"
        "Synthetic data: no real person.\n",
        encoding="utf-8",
    )
    written = write_limesurvey(cb, people) + write_google(cb, people)
    if args.formpack_python:
        written += write_kobo(cb, people, args.formpack_python, args.formpack_commit)
    else:
        print("no --formpack-python: Kobo fixtures left as they are", file=sys.stderr)
    for name in written:
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
