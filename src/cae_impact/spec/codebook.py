"""The référentiel (codebook): domains, findings, scales, questions and indicators of CAE-IMPACT.

Every other piece of the pipeline — questionnaire generation, ingestion of the survey tools'
exports, cleaning, estimation and the reports — reads the questionnaire and the indicator
definitions from ``config/codebook.yaml`` through this module, so that a question or an answer code
is defined exactly once. Loading validates the whole file and raises :class:`CodebookError` naming
the entry at fault, because a silent mistake in the référentiel (a code missing from a scale, a
skip rule naming a question that does not exist) would otherwise surface as a wrong figure in a
report. See ``docs/CONTRACTS.md`` §1 for the contract.

Command line::

    python -m cae_impact.spec.codebook check [CODEBOOK]
    python -m cae_impact.spec.codebook coverage docs/coverage.md [--codebook CODEBOOK]
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cae_impact.core.paths import PROJECT_ROOT

from .config import safe_yaml_load

DEFAULT_CODEBOOK_PATH = PROJECT_ROOT / "config" / "codebook.yaml"

QUESTION_TYPES = ("single", "multiple", "likert", "frequency", "yesno", "numeric", "text")
CHOICE_TYPES = ("single", "multiple", "likert", "frequency", "yesno")
SINGLE_CHOICE_TYPES = ("single", "likert", "frequency", "yesno")
RULE_KINDS = ("share", "distribution", "any_of", "mean", "median", "paired_difference")
QUALIFIERS = ("equal", "about", "more_than", "less_than", "range", "qualitative")
SCOPES = ("consortium", "some_caes", "by_group")
DIRECTIONS = ("above", "below")
SHARE_BASES = ("valid", "all")

DOMAIN_ID_RE = re.compile(r"^d[0-9]+$")
FINDING_ID_RE = re.compile(r"^f[0-9]+$")
QUESTION_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
INDICATOR_ID_RE = QUESTION_ID_RE
SCALE_ID_RE = QUESTION_ID_RE
EXPORT_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,19}$")
CHOICE_CODE_RE = re.compile(r"^[a-z0-9]{1,20}$")
MIN_INDICATORS_PER_DOMAIN = 3
PROFILE_SECTION = "profile"


class CodebookError(ValueError):
    """The codebook is invalid; the message names the file and the entry at fault."""


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """One of the seven effect domains (a chapter of the national report)."""

    id: str
    number: int
    title: str
    short_title: str
    description: str


@dataclass(frozen=True)
class Finding:
    """A published finding (« enseignement ») and the domains and indicators that support it."""

    id: str
    text: str
    domain_ids: tuple[str, ...]
    indicator_ids: tuple[str, ...]
    #: a few words naming the theme in « L’essentiel » (« Accès aux droits »)
    short: str = ""


@dataclass(frozen=True)
class Section:
    """A section of the questionnaire: ``profile`` or a domain id, with its French title."""

    id: str
    title: str
    intro: str = ""


#: the choice code of « Autre » and the suffix of the column that keeps the typed text
OTHER_CHOICE = "autre"
OTHER_TEXT_SUFFIX = "__autre_texte"


@dataclass(frozen=True)
class Choice:
    """One answer of a scale.

    ``missing`` marks « Ne sait pas » / « Non concerné(e) » answers, which are recorded but left
    out of the base of a share; ``exclusive`` marks answers of a multiple-choice question that
    cannot be ticked together with another one (« Aucune de ces aides »).
    """

    code: str
    label: str
    missing: bool = False
    exclusive: bool = False


@dataclass(frozen=True)
class ChoiceGroup:
    """A grouping of answer codes used by the reports (e.g. « Jusqu'au Bac » = infbac + bac)."""

    code: str
    label: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Scale:
    """An answer scale: its choices in questionnaire order, and optional report groupings."""

    id: str
    ordered: bool
    choices: tuple[Choice, ...]
    report_groups: tuple[ChoiceGroup, ...] = ()

    @property
    def codes(self) -> list[str]:
        """Every choice code, in order."""
        return [c.code for c in self.choices]

    @property
    def valid_codes(self) -> list[str]:
        """The codes that count in the base of a share (not marked ``missing``)."""
        return [c.code for c in self.choices if not c.missing]

    @property
    def missing_codes(self) -> list[str]:
        """The codes marked ``missing`` (« Ne sait pas », « Non concerné(e) »…)."""
        return [c.code for c in self.choices if c.missing]

    def choice(self, code: str) -> Choice:
        """The choice with this code; KeyError if the scale has none."""
        for c in self.choices:
            if c.code == code:
                return c
        raise KeyError(f"scale {self.id!r} has no choice {code!r}")

    def label(self, code: str) -> str:
        """The French label of a code."""
        return self.choice(code).label


@dataclass(frozen=True)
class Question:
    """A question of the questionnaire.

    ``relevant`` is an XLSForm expression over other question ids (skip logic); a respondent to
    whom the question is not relevant has NA. ``personal`` marks free texts that may hold
    personal data. ``min``/``max`` bound numeric answers (in ``unit``).
    """

    id: str
    export_code: str
    section: str
    text: str
    type: str
    scale_id: str | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    relevant: str | None = None
    required: bool = False
    personal: bool = False
    hint: str | None = None

    @property
    def has_choices(self) -> bool:
        """True for question types answered by choosing in a scale."""
        return self.type in CHOICE_TYPES


@dataclass(frozen=True)
class PublishedFigure:
    """A figure of the national consortium report, quoted with its wording and source.

    ``value`` is the published proportion (None when the report gives no single number);
    ``qualifier`` says how to read it (``equal``, ``about``, ``more_than``, ``range``,
    ``qualitative``); ``scope`` says what it describes: the consortium, ``some_caes`` (a range
    seen in some CAEs, ``low``–``high``) or ``by_group`` (values per ``groups`` of the
    ``breakdown``). ``low``/``high`` with a ``breakdown`` and scope ``consortium`` give the range
    over the groups of that breakdown. ``direction`` (``above``/``below``) compares a
    qualitative figure with the indicator's national reference.
    """

    text: str
    source: str
    value: float | None = None
    wording: str = ""
    qualifier: str = "equal"
    scope: str = "consortium"
    low: float | None = None
    high: float | None = None
    breakdown: str | None = None
    groups: Mapping[str, float] = field(default_factory=dict)
    direction: str | None = None


@dataclass(frozen=True)
class Reference:
    """A national benchmark shown next to an indicator, with its source, year and field."""

    value: float
    text: str
    label: str
    year: int
    field: str
    source: str


@dataclass(frozen=True)
class Indicator:
    """An indicator: its domain, French label, estimation rule, breakdowns and published figure.

    ``rule`` is a mapping with ``kind`` (one of :data:`RULE_KINDS`) and its arguments
    (CONTRACTS.md §1); ``question_ids`` are the questions the rule reads.
    """

    id: str
    domain_id: str
    label: str
    question_ids: tuple[str, ...]
    rule: Mapping[str, Any]
    breakdowns: tuple[str, ...] = ()
    published: PublishedFigure | None = None
    references: tuple[Reference, ...] = ()
    #: short label for charts and key figures (« Femmes », « CAE décisive »); the label if empty
    short: str = ""
    #: for a share, the verb phrase completing « 62 % des entrepreneurs de la CAE 3 … »
    #: (« jugent la CAE décisive dans l’activation de leur projet »); for a mean, a median or a
    #: change, the noun phrase of the quantity (« le revenu mensuel net moyen »)
    statement: str = ""
    #: who the share counts, plural (« anciens demandeurs d’emploi »); « entrepreneurs » if empty
    population: str = ""
    #: which way is good news: ``higher`` (default), ``lower`` (« jamais d’échange »), or
    #: ``none`` for a description of the public (share of women): « points forts » and
    #: « points de vigilance » use it, the tests do not
    favourable: str = "higher"

    @property
    def short_label(self) -> str:
        """The short label, or the label."""
        return self.short or self.label

    @property
    def kind(self) -> str:
        """The rule kind (``share``, ``distribution``…)."""
        return str(self.rule["kind"])


@dataclass(frozen=True)
class TechnicalField:
    """A hidden field every export carries (questionnaire version, respondent identifier)."""

    id: str
    export_code: str
    label: str


@dataclass(frozen=True)
class Codebook:
    """The loaded, validated référentiel."""

    path: Path
    version: str
    title: str
    domains: list[Domain]
    findings: list[Finding]
    sections: list[Section]
    scales: dict[str, Scale]
    questions: dict[str, Question]
    indicators: list[Indicator]
    profile_question_ids: list[str]
    version_field: TechnicalField
    respondent_field: TechnicalField
    register_mapping: dict[str, dict[str, Any]]

    def question(self, question_id: str) -> Question:
        """The question with this id; KeyError naming the known ids otherwise."""
        try:
            return self.questions[question_id]
        except KeyError:
            raise KeyError(f"unknown question {question_id!r}") from None

    def indicator(self, indicator_id: str) -> Indicator:
        """The indicator with this id."""
        for ind in self.indicators:
            if ind.id == indicator_id:
                return ind
        raise KeyError(f"unknown indicator {indicator_id!r}")

    def domain(self, domain_id: str) -> Domain:
        """The domain with this id."""
        for d in self.domains:
            if d.id == domain_id:
                return d
        raise KeyError(f"unknown domain {domain_id!r}")

    def finding(self, finding_id: str) -> Finding:
        """The finding with this id."""
        for f in self.findings:
            if f.id == finding_id:
                return f
        raise KeyError(f"unknown finding {finding_id!r}")

    def section(self, section_id: str) -> Section:
        """The questionnaire section with this id."""
        for s in self.sections:
            if s.id == section_id:
                return s
        raise KeyError(f"unknown section {section_id!r}")

    def scale_of(self, question_id: str) -> Scale:
        """The answer scale of a choice question; KeyError for numeric and text questions."""
        q = self.question(question_id)
        if q.scale_id is None:
            raise KeyError(f"question {question_id!r} ({q.type}) has no scale")
        return self.scales[q.scale_id]

    def questions_in_section(self, section_id: str) -> list[Question]:
        """The questions of one section, in questionnaire order."""
        return [q for q in self.questions.values() if q.section == section_id]

    def indicators_of_domain(self, domain_id: str) -> list[Indicator]:
        """The indicators of one domain, in codebook order."""
        return [i for i in self.indicators if i.domain_id == domain_id]

    def findings_of_indicator(self, indicator_id: str) -> list[Finding]:
        """The findings an indicator supports."""
        return [f for f in self.findings if indicator_id in f.indicator_ids]

    @property
    def published_indicators(self) -> list[Indicator]:
        """The indicators quoted in the national report."""
        return [i for i in self.indicators if i.published is not None]

    def register_code(self, key: str, register_value: str) -> str:
        """Map a register key of config/study.yaml to a choice code (``sex``, ``F`` -> ``f``)."""
        return str(self.register_mapping[key]["codes"][register_value])

    def processed_columns(self) -> dict[str, str]:
        """Canonical columns of ``responses.parquet`` and their pandas dtypes (CONTRACTS.md §3)."""
        cols: dict[str, str] = {
            "respondent_id": "string",
            "cae_id": "string",
            "wave": "string",
            "submitted_at": "datetime64[ns]",
        }
        others = self.other_text_columns()
        for q in self.questions.values():
            if q.type == "multiple":
                for code in self.scale_of(q.id).codes:
                    cols[f"{q.id}__{code}"] = "boolean"
            elif q.type == "numeric":
                cols[q.id] = "Float64"
            else:
                cols[q.id] = "string"
            if q.id in others:
                cols[others[q.id]] = "string"
        return cols

    def other_text_columns(self) -> dict[str, str]:
        """The free-text column of each choice question that has an « autre » (other) choice.

        What a respondent typed after « Autre » (Google Forms' built-in option, Kobo's
        ``or_other``, LimeSurvey's « Autre ») is kept there, masked like every free text; the
        question itself gets the ``autre`` code.
        """
        out = {}
        for q in self.questions.values():
            if q.type in CHOICE_TYPES and q.scale_id is not None \
                    and OTHER_CHOICE in self.scale_of(q.id).codes:
                out[q.id] = f"{q.id}{OTHER_TEXT_SUFFIX}"
        return out

    def is_relevant(self, question_id: str, answers: Mapping[str, Any]) -> bool:
        """Evaluate a question's skip logic on one respondent's canonical answers.

        ``answers`` maps question ids to a choice code (single-choice questions), a collection of
        codes (multiple), a number, a string, or None when unanswered. Follows ODK semantics: an
        unanswered question compares equal to the empty string.
        """
        expr = self.question(question_id).relevant
        if not expr:
            return True
        return bool(parse_relevant(expr).evaluate(answers))


# --------------------------------------------------------------------------------------------
# Skip-logic expressions (the subset of XLSForm / XPath the questionnaire uses)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    """``${question} op literal`` with op in = != < <= > >=."""

    question_id: str
    op: str
    value: str | float

    def evaluate(self, answers: Mapping[str, Any]) -> bool:
        """Evaluate on canonical answers (unanswered = empty string, as in ODK)."""
        raw = answers.get(self.question_id)
        if _is_blank(raw):
            raw = ""
        if isinstance(self.value, str):
            left: Any = "" if raw == "" else str(raw)
            if isinstance(raw, (set, frozenset, list, tuple)):
                left = " ".join(sorted(str(x) for x in raw))
        else:
            if raw == "":
                return self.op == "!="
            left = float(raw)
        return _compare(left, self.op, self.value)

    def questions(self) -> Iterator[str]:
        """The question ids read by the expression."""
        yield self.question_id


@dataclass(frozen=True)
class Selected:
    """``selected(${question}, 'code')``."""

    question_id: str
    code: str

    def evaluate(self, answers: Mapping[str, Any]) -> bool:
        """True when the code is the answer, or among the ticked answers."""
        raw = answers.get(self.question_id)
        if _is_blank(raw):
            return False
        if isinstance(raw, (set, frozenset, list, tuple)):
            return self.code in raw
        return self.code in str(raw).split()

    def questions(self) -> Iterator[str]:
        """The question ids read by the expression."""
        yield self.question_id


@dataclass(frozen=True)
class BoolOp:
    """``a and b and …`` or ``a or b or …``."""

    op: str
    items: tuple[Any, ...]

    def evaluate(self, answers: Mapping[str, Any]) -> bool:
        """Evaluate every operand."""
        values = (item.evaluate(answers) for item in self.items)
        return all(values) if self.op == "and" else any(values)

    def questions(self) -> Iterator[str]:
        """The question ids read by the expression."""
        for item in self.items:
            yield from item.questions()


@dataclass(frozen=True)
class Not:
    """``not(a)``."""

    item: Any

    def evaluate(self, answers: Mapping[str, Any]) -> bool:
        """Negate the operand."""
        return not self.item.evaluate(answers)

    def questions(self) -> Iterator[str]:
        """The question ids read by the expression."""
        yield from self.item.questions()


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN
        return True
    try:
        import pandas as pd

        if value is pd.NA:
            return True
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(value, (set, frozenset, list, tuple)):
        return len(value) == 0
    return isinstance(value, str) and value.strip() == ""


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


_TOKEN_RE = re.compile(
    r"\s*(?:(?P<ref>\$\{[a-z][a-z0-9_]*\})|(?P<str>'[^']*'|\"[^\"]*\")|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op>!=|<=|>=|=|<|>)|(?P<punct>[(),])|(?P<word>[A-Za-z][A-Za-z-]*))"
)


class RelevantSyntaxError(ValueError):
    """A skip-logic expression uses syntax outside the supported XLSForm subset."""


@functools.lru_cache(maxsize=1024)
def parse_relevant(expr: str) -> Compare | Selected | BoolOp | Not:
    """Parse a skip-logic expression into a small expression tree.

    Supported: ``${q} = 'code'`` (and ``!=``, ``<``, ``<=``, ``>``, ``>=`` with numbers),
    ``selected(${q}, 'code')``, ``not(…)``, ``and``, ``or`` and parentheses — the subset of
    XLSForm that LimeSurvey, KoboToolbox, Google Forms sections and a paper questionnaire can
    all express.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise RelevantSyntaxError(f"cannot read {text[pos:]!r} in {expr!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    parser = _Parser(tokens, expr)
    node = parser.parse_or()
    if parser.i != len(tokens):
        raise RelevantSyntaxError(f"unexpected {tokens[parser.i][1]!r} in {expr!r}")
    return node


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], expr: str) -> None:
        self.tokens = tokens
        self.expr = expr
        self.i = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        tok = self._peek()
        if tok is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            want = value or kind or "a token"
            got = tok[1] if tok else "end of expression"
            raise RelevantSyntaxError(f"expected {want!r}, got {got!r} in {self.expr!r}")
        self.i += 1
        return tok

    def parse_or(self) -> Any:
        items = [self.parse_and()]
        while self._peek() == ("word", "or"):
            self.i += 1
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def parse_and(self) -> Any:
        items = [self.parse_atom()]
        while self._peek() == ("word", "and"):
            self.i += 1
            items.append(self.parse_atom())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def parse_atom(self) -> Any:
        tok = self._peek()
        if tok is None:
            raise RelevantSyntaxError(f"unexpected end of {self.expr!r}")
        if tok == ("punct", "("):
            self.i += 1
            node = self.parse_or()
            self._take("punct", ")")
            return node
        if tok == ("word", "not"):
            self.i += 1
            self._take("punct", "(")
            node = self.parse_or()
            self._take("punct", ")")
            return Not(node)
        if tok == ("word", "selected"):
            self.i += 1
            self._take("punct", "(")
            ref = self._take("ref")[1][2:-1]
            self._take("punct", ",")
            code = self._take("str")[1][1:-1]
            self._take("punct", ")")
            return Selected(ref, code)
        if tok[0] == "ref":
            self.i += 1
            op = self._take("op")[1]
            lit_kind, lit = self._take()
            if lit_kind == "str":
                if op not in ("=", "!="):
                    raise RelevantSyntaxError(f"use = or != to compare with a code in {self.expr!r}")
                return Compare(tok[1][2:-1], op, lit[1:-1])
            if lit_kind == "num":
                return Compare(tok[1][2:-1], op, float(lit))
            raise RelevantSyntaxError(f"expected a 'code' or a number after {op!r} in {self.expr!r}")
        raise RelevantSyntaxError(f"unexpected {tok[1]!r} in {self.expr!r}")


def relevant_conditions(expr: str) -> list[Compare | Selected]:
    """The elementary conditions (comparisons and ``selected``) of a skip-logic expression."""
    out: list[Compare | Selected] = []

    def walk(node: Any) -> None:
        if isinstance(node, (Compare, Selected)):
            out.append(node)
        elif isinstance(node, BoolOp):
            for item in node.items:
                walk(item)
        elif isinstance(node, Not):
            walk(node.item)

    walk(parse_relevant(expr))
    return out


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A YAML loader that refuses duplicate keys (PyYAML silently keeps the last one).

    Built on libyaml's parser when PyYAML has it (7x faster: every notebook loads the codebook).
    """


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise CodebookError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Ctx:
    """Carries the file path so every error names the file and the entry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> CodebookError:
        return CodebookError(f"{self.path}: {where}: {message}")

    def require(self, mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict):
            raise self.fail(where, "expected a mapping")
        if key not in mapping or mapping[key] is None:
            raise self.fail(where, f"missing required field {key!r}")
        return mapping[key]

    def text(self, mapping: dict, key: str, where: str, required: bool = True) -> str:
        value = self.require(mapping, key, where) if required else mapping.get(key)
        if value is None:
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            raise self.fail(where, f"{key!r} must be a non-empty text")
        return value.strip()

    def id(self, mapping: dict, pattern: re.Pattern[str], where: str, key: str = "id") -> str:
        value = self.require(mapping, key, where)
        if not isinstance(value, str) or not pattern.match(value):
            raise self.fail(where, f"{key} {value!r} does not match {pattern.pattern}")
        return value

    def id_list(self, value: Any, where: str, key: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"{key!r} must be a list of ids")
        if len(set(value)) != len(value):
            raise self.fail(where, f"{key!r} lists an id twice")
        return tuple(value)


def _number(ctx: _Ctx, value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.fail(where, f"{key!r} must be a number, got {value!r}")
    return float(value)


def _proportion(ctx: _Ctx, value: Any, where: str, key: str) -> float | None:
    number = _number(ctx, value, where, key)
    if number is not None and not 0.0 <= number <= 1.0:
        raise ctx.fail(where, f"{key!r} must be a proportion between 0 and 1, got {value!r}")
    return number


def _parse_domains(ctx: _Ctx, raw: Any) -> list[Domain]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("domains", "expected a non-empty list")
    domains: list[Domain] = []
    for i, d in enumerate(raw):
        where = f"domains[{i}]"
        did = ctx.id(d, DOMAIN_ID_RE, where)
        where = f"domains[{i}] ({did})"
        if any(x.id == did for x in domains):
            raise ctx.fail(where, "duplicate domain id")
        number = ctx.require(d, "number", where)
        if not isinstance(number, int) or isinstance(number, bool) or f"d{number}" != did:
            raise ctx.fail(where, f"number {number!r} does not match the id")
        domains.append(
            Domain(
                id=did,
                number=number,
                title=ctx.text(d, "title", where),
                short_title=ctx.text(d, "short_title", where),
                description=ctx.text(d, "description", where, required=False),
            )
        )
    return domains


def _parse_sections(ctx: _Ctx, raw: Any, domain_ids: set[str]) -> list[Section]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("sections", "expected a non-empty list")
    sections: list[Section] = []
    for i, s in enumerate(raw):
        where = f"sections[{i}]"
        sid = ctx.require(s, "id", where)
        where = f"sections[{i}] ({sid})"
        if sid != PROFILE_SECTION and sid not in domain_ids:
            raise ctx.fail(where, f"a section is {PROFILE_SECTION!r} or a domain id, not {sid!r}")
        if any(x.id == sid for x in sections):
            raise ctx.fail(where, "duplicate section id")
        sections.append(Section(sid, ctx.text(s, "title", where), ctx.text(s, "intro", where, False)))
    return sections


def _parse_scales(ctx: _Ctx, raw: Any) -> dict[str, Scale]:
    if not isinstance(raw, dict) or not raw:
        raise ctx.fail("scales", "expected a non-empty mapping of scale id to scale")
    scales: dict[str, Scale] = {}
    for sid, s in raw.items():
        where = f"scales.{sid}"
        if not isinstance(sid, str) or not SCALE_ID_RE.match(sid):
            raise ctx.fail(where, f"scale id {sid!r} does not match {SCALE_ID_RE.pattern}")
        raw_choices = ctx.require(s, "choices", where)
        if not isinstance(raw_choices, list) or len(raw_choices) < 2:
            raise ctx.fail(where, "a scale needs at least two choices")
        choices: list[Choice] = []
        labels: set[str] = set()
        for j, c in enumerate(raw_choices):
            cwhere = f"{where}.choices[{j}]"
            code = ctx.require(c, "code", cwhere)
            code = str(code) if isinstance(code, int) and not isinstance(code, bool) else code
            if not isinstance(code, str) or not CHOICE_CODE_RE.match(code):
                raise ctx.fail(cwhere, f"code {code!r} does not match {CHOICE_CODE_RE.pattern}")
            cwhere = f"{where}.choices[{j}] ({code})"
            if any(x.code == code for x in choices):
                raise ctx.fail(cwhere, "duplicate choice code in the scale")
            label = ctx.text(c, "label", cwhere)
            if label.casefold() in labels:
                raise ctx.fail(cwhere, f"duplicate label {label!r} in the scale")
            labels.add(label.casefold())
            choices.append(
                Choice(code, label, bool(c.get("missing", False)), bool(c.get("exclusive", False)))
            )
        codes = {c.code for c in choices}
        groups: list[ChoiceGroup] = []
        for j, g in enumerate(s.get("report_groups") or []):
            gwhere = f"{where}.report_groups[{j}]"
            gcode = ctx.id(g, CHOICE_CODE_RE, gwhere, key="code")
            members = ctx.id_list(ctx.require(g, "codes", gwhere), gwhere, "codes")
            for m in members:
                if m not in codes:
                    raise ctx.fail(gwhere, f"code {m!r} is not in the scale")
            groups.append(ChoiceGroup(gcode, ctx.text(g, "label", gwhere), members))
        if not all(isinstance(s.get(k, False), bool) for k in ("ordered",)):
            raise ctx.fail(where, "'ordered' must be true or false")
        scales[sid] = Scale(sid, bool(s.get("ordered", False)), tuple(choices), tuple(groups))
    return scales


def _parse_questions(
    ctx: _Ctx, raw: Any, scales: dict[str, Scale], section_ids: list[str]
) -> dict[str, Question]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("questions", "expected a non-empty list")
    questions: dict[str, Question] = {}
    export_codes: dict[str, str] = {}
    texts: dict[str, str] = {}
    for i, q in enumerate(raw):
        where = f"questions[{i}]"
        qid = ctx.id(q, QUESTION_ID_RE, where)
        where = f"questions[{i}] ({qid})"
        if qid in questions:
            raise ctx.fail(where, "duplicate question id")
        code = ctx.id(q, EXPORT_CODE_RE, where, key="export_code")
        if code.lower() in export_codes:
            raise ctx.fail(where, f"export_code {code!r} is already used by {export_codes[code.lower()]!r}")
        export_codes[code.lower()] = qid
        section = ctx.require(q, "section", where)
        if section not in section_ids:
            raise ctx.fail(where, f"section {section!r} is not listed under 'sections'")
        text = ctx.text(q, "text", where)
        if text in texts:
            raise ctx.fail(where, f"same text as question {texts[text]!r} (texts identify questions in Google Forms exports)")
        texts[text] = qid
        qtype = ctx.require(q, "type", where)
        if qtype not in QUESTION_TYPES:
            raise ctx.fail(where, f"type {qtype!r} is not one of {', '.join(QUESTION_TYPES)}")
        scale_id = q.get("scale")
        if qtype in CHOICE_TYPES:
            if scale_id is None:
                raise ctx.fail(where, f"a {qtype} question needs a 'scale'")
            if scale_id not in scales:
                raise ctx.fail(where, f"scale {scale_id!r} is not defined under 'scales'")
            scale = scales[scale_id]
            if qtype == "multiple":
                for c in scale.choices:
                    if ", " in c.label:
                        raise ctx.fail(
                            where,
                            f"label {c.label!r} of scale {scale_id!r} holds ', ': Google Forms joins the "
                            "ticked answers of a multiple-choice question with ', '",
                        )
            if qtype in ("likert", "frequency") and not scale.ordered:
                raise ctx.fail(where, f"a {qtype} question needs an ordered scale; {scale_id!r} is not")
            if qtype == "yesno" and not {"oui", "non"} <= set(scale.codes):
                raise ctx.fail(where, f"a yesno question needs a scale with codes 'oui' and 'non'; {scale_id!r} has none")
        elif scale_id is not None:
            raise ctx.fail(where, f"a {qtype} question takes no scale")
        qmin = _number(ctx, q.get("min"), where, "min")
        qmax = _number(ctx, q.get("max"), where, "max")
        if (qmin is not None or qmax is not None) and qtype != "numeric":
            raise ctx.fail(where, "min and max apply to numeric questions only")
        if qmin is not None and qmax is not None and qmin > qmax:
            raise ctx.fail(where, f"min {qmin:g} is above max {qmax:g}")
        relevant = q.get("relevant")
        if relevant is not None:
            if not isinstance(relevant, str) or not relevant.strip():
                raise ctx.fail(where, "relevant must be a non-empty XLSForm expression")
            try:
                conditions = relevant_conditions(relevant)
            except RelevantSyntaxError as exc:
                raise ctx.fail(where, f"relevant: {exc}") from None
            for cond in conditions:
                ref = cond.question_id
                if ref not in questions:
                    what = "a later question" if any(x.get("id") == ref for x in raw if isinstance(x, dict)) else "an unknown question"
                    raise ctx.fail(where, f"relevant refers to {what} {ref!r}")
                target = questions[ref]
                literal = cond.code if isinstance(cond, Selected) else cond.value
                if isinstance(literal, str):
                    if target.scale_id is None:
                        raise ctx.fail(where, f"relevant compares {ref!r} ({target.type}) with a code")
                    if literal not in scales[target.scale_id].codes:
                        raise ctx.fail(where, f"relevant uses code {literal!r}, not in the scale of {ref!r}")
        personal = q.get("personal", False)
        if personal and qtype != "text":
            raise ctx.fail(where, "only text questions are marked personal")
        unit = q.get("unit")
        hint = q.get("hint")
        questions[qid] = Question(
            id=qid,
            export_code=code,
            section=section,
            text=text,
            type=qtype,
            scale_id=scale_id,
            unit=str(unit) if unit is not None else None,
            min=qmin,
            max=qmax,
            relevant=relevant.strip() if relevant else None,
            required=bool(q.get("required", False)),
            personal=bool(personal),
            hint=str(hint).strip() if hint else None,
        )
    return questions


def _parse_published(
    ctx: _Ctx, raw: Any, where: str, questions: dict[str, Question], scales: dict[str, Scale]
) -> PublishedFigure:
    where = f"{where}.published"
    if not isinstance(raw, dict):
        raise ctx.fail(where, "expected a mapping")
    qualifier = raw.get("qualifier", "equal")
    if qualifier not in QUALIFIERS:
        raise ctx.fail(where, f"qualifier {qualifier!r} is not one of {', '.join(QUALIFIERS)}")
    scope = raw.get("scope", "consortium")
    if scope not in SCOPES:
        raise ctx.fail(where, f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    value = _proportion(ctx, raw.get("value"), where, "value")
    low = _proportion(ctx, raw.get("low"), where, "low")
    high = _proportion(ctx, raw.get("high"), where, "high")
    if (low is None) != (high is None) or (low is not None and high is not None and low > high):
        raise ctx.fail(where, "give both 'low' and 'high', with low <= high")
    breakdown = raw.get("breakdown")
    groups_raw = raw.get("groups") or {}
    if not isinstance(groups_raw, dict):
        raise ctx.fail(where, "'groups' must map choice codes to proportions")
    groups: dict[str, float] = {}
    if breakdown is not None:
        if breakdown not in questions or questions[breakdown].scale_id is None:
            raise ctx.fail(where, f"breakdown {breakdown!r} is not a choice question")
        codes = scales[questions[breakdown].scale_id].codes  # type: ignore[index]
        for code, v in groups_raw.items():
            if code not in codes:
                raise ctx.fail(where, f"group {code!r} is not a code of {breakdown!r}")
            groups[code] = _proportion(ctx, v, where, f"groups.{code}")  # type: ignore[assignment]
    elif groups_raw:
        raise ctx.fail(where, "'groups' needs a 'breakdown'")
    if scope == "by_group" and not groups:
        raise ctx.fail(where, "scope by_group needs a breakdown and its groups")
    if scope == "some_caes" and low is None:
        raise ctx.fail(where, "scope some_caes needs 'low' and 'high'")
    if scope == "consortium" and qualifier != "qualitative" and value is None:
        raise ctx.fail(where, "a consortium figure needs a 'value' (or qualifier: qualitative)")
    direction = raw.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise ctx.fail(where, f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    return PublishedFigure(
        text=ctx.text(raw, "text", where),
        source=ctx.text(raw, "source", where),
        value=value,
        wording=ctx.text(raw, "wording", where, required=False),
        qualifier=qualifier,
        scope=scope,
        low=low,
        high=high,
        breakdown=breakdown,
        groups=groups,
        direction=direction,
    )


def _favourable(ctx: _Ctx, ind: dict, where: str) -> str:
    value = ind.get("favourable", "higher")
    if value not in ("higher", "lower", "none"):
        raise ctx.fail(where, f"favourable {value!r} is not one of higher, lower, none")
    return str(value)


def _parse_rule(
    ctx: _Ctx, raw: Any, where: str, questions: dict[str, Question], scales: dict[str, Scale]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    where = f"{where}.rule"
    kind = ctx.require(raw, "kind", where)
    if kind not in RULE_KINDS:
        raise ctx.fail(where, f"kind {kind!r} is not one of {', '.join(RULE_KINDS)}")
    allowed = {
        "share": {"kind", "question", "codes", "base"},
        "distribution": {"kind", "question"},
        "any_of": {"kind", "question", "codes"},
        "mean": {"kind", "question"},
        "median": {"kind", "question"},
        "paired_difference": {"kind", "before", "after"},
    }[kind]
    unknown = set(raw) - allowed
    if unknown:
        raise ctx.fail(where, f"unknown argument(s) for {kind}: {', '.join(sorted(unknown))}")

    def question_arg(key: str, types: tuple[str, ...]) -> Question:
        qid = ctx.require(raw, key, where)
        if qid not in questions:
            raise ctx.fail(where, f"{key} {qid!r} is not a question of the codebook")
        q = questions[qid]
        if q.type not in types:
            raise ctx.fail(where, f"{kind} needs a {' or '.join(types)} question; {qid!r} is {q.type}")
        return q

    rule: dict[str, Any] = {"kind": kind}
    if kind == "paired_difference":
        before = question_arg("before", ("numeric",))
        after = question_arg("after", ("numeric",))
        if before.id == after.id:
            raise ctx.fail(where, "before and after must be two questions")
        if before.unit != after.unit:
            raise ctx.fail(where, f"before and after have different units ({before.unit!r}, {after.unit!r})")
        rule.update(before=before.id, after=after.id)
        return rule, (before.id, after.id)
    if kind in ("mean", "median"):
        q = question_arg("question", ("numeric",))
    elif kind == "any_of":
        q = question_arg("question", ("multiple",))
    elif kind == "share":
        q = question_arg("question", SINGLE_CHOICE_TYPES)
    else:
        q = question_arg("question", CHOICE_TYPES)
    rule["question"] = q.id
    if kind in ("share", "any_of"):
        codes = ctx.id_list(ctx.require(raw, "codes", where), where, "codes")
        if not codes:
            raise ctx.fail(where, "codes must list at least one code")
        scale = scales[q.scale_id]  # type: ignore[index]
        for code in codes:
            if code not in scale.codes:
                raise ctx.fail(where, f"code {code!r} is not in scale {scale.id!r} of question {q.id!r}")
        rule["codes"] = list(codes)
    if kind == "share":
        base = raw.get("base", "valid")
        if base not in SHARE_BASES:
            raise ctx.fail(where, f"base {base!r} is not one of {', '.join(SHARE_BASES)}")
        rule["base"] = base
    return rule, (q.id,)


def _parse_references(ctx: _Ctx, raw: Any, where: str) -> tuple[Reference, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.fail(f"{where}.references", "expected a list")
    refs = []
    for j, r in enumerate(raw):
        rwhere = f"{where}.references[{j}]"
        year = ctx.require(r, "year", rwhere)
        if not isinstance(year, int):
            raise ctx.fail(rwhere, f"year {year!r} must be an integer")
        refs.append(
            Reference(
                value=_proportion(ctx, ctx.require(r, "value", rwhere), rwhere, "value"),  # type: ignore[arg-type]
                text=ctx.text(r, "text", rwhere),
                label=ctx.text(r, "label", rwhere),
                year=year,
                field=ctx.text(r, "field", rwhere),
                source=ctx.text(r, "source", rwhere),
            )
        )
    return tuple(refs)


def _parse_indicators(
    ctx: _Ctx,
    raw: Any,
    domain_ids: list[str],
    questions: dict[str, Question],
    scales: dict[str, Scale],
    profile_ids: list[str],
) -> list[Indicator]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("indicators", "expected a non-empty list")
    indicators: list[Indicator] = []
    for i, ind in enumerate(raw):
        where = f"indicators[{i}]"
        iid = ctx.id(ind, INDICATOR_ID_RE, where)
        where = f"indicators[{i}] ({iid})"
        if any(x.id == iid for x in indicators):
            raise ctx.fail(where, "duplicate indicator id")
        domain = ctx.require(ind, "domain", where)
        if domain not in domain_ids:
            raise ctx.fail(where, f"domain {domain!r} is not defined under 'domains'")
        rule, qids = _parse_rule(ctx, ctx.require(ind, "rule", where), where, questions, scales)
        breakdowns = ctx.id_list(ind.get("breakdowns"), where, "breakdowns")
        for b in breakdowns:
            if b not in profile_ids:
                raise ctx.fail(where, f"breakdown {b!r} is not a profile question")
        published = ind.get("published")
        indicators.append(
            Indicator(
                id=iid,
                domain_id=domain,
                label=ctx.text(ind, "label", where),
                question_ids=qids,
                rule=rule,
                breakdowns=breakdowns,
                published=_parse_published(ctx, published, where, questions, scales) if published is not None else None,
                references=_parse_references(ctx, ind.get("references"), where),
                short=ctx.text(ind, "short", where, required=False),
                statement=ctx.text(ind, "statement", where, required=False),
                population=ctx.text(ind, "population", where, required=False),
                favourable=_favourable(ctx, ind, where),
            )
        )
    return indicators


def _parse_findings(
    ctx: _Ctx, raw: Any, domain_ids: list[str], indicators: list[Indicator]
) -> list[Finding]:
    if not isinstance(raw, list) or not raw:
        raise ctx.fail("findings", "expected a non-empty list")
    by_id = {i.id: i for i in indicators}
    findings: list[Finding] = []
    for i, f in enumerate(raw):
        where = f"findings[{i}]"
        fid = ctx.id(f, FINDING_ID_RE, where)
        where = f"findings[{i}] ({fid})"
        if any(x.id == fid for x in findings):
            raise ctx.fail(where, "duplicate finding id")
        fdomains = ctx.id_list(ctx.require(f, "domains", where), where, "domains")
        if not fdomains:
            raise ctx.fail(where, "a finding needs at least one domain")
        for d in fdomains:
            if d not in domain_ids:
                raise ctx.fail(where, f"domain {d!r} is not defined under 'domains'")
        findicators = ctx.id_list(ctx.require(f, "indicators", where), where, "indicators")
        if not findicators:
            raise ctx.fail(where, "a finding needs at least one indicator")
        for ind_id in findicators:
            if ind_id not in by_id:
                raise ctx.fail(where, f"indicator {ind_id!r} is not defined under 'indicators'")
            if by_id[ind_id].domain_id not in fdomains:
                raise ctx.fail(
                    where,
                    f"indicator {ind_id!r} belongs to domain {by_id[ind_id].domain_id}, "
                    f"not one of the finding's domains ({', '.join(fdomains)})",
                )
        findings.append(Finding(fid, ctx.text(f, "text", where), fdomains, findicators,
                                ctx.text(f, "short", where, required=False)))
    return findings


def _parse_technical(ctx: _Ctx, raw: Any, questions: dict[str, Question]) -> tuple[TechnicalField, TechnicalField]:
    out = []
    for key in ("version", "respondent"):
        where = f"technical_fields.{key}"
        entry = ctx.require(raw or {}, key, "technical_fields")
        fid = ctx.id(entry, QUESTION_ID_RE, where)
        code = ctx.id(entry, EXPORT_CODE_RE, where, key="export_code")
        if fid in questions or any(q.export_code.lower() == code.lower() for q in questions.values()):
            raise ctx.fail(where, f"{fid!r} / {code!r} collides with a question")
        out.append(TechnicalField(fid, code, ctx.text(entry, "label", where)))
    return out[0], out[1]


def _parse_register_mapping(
    ctx: _Ctx, raw: Any, questions: dict[str, Question], scales: dict[str, Scale]
) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ctx.fail("register_mapping", "expected a mapping")
    out: dict[str, dict[str, Any]] = {}
    for key, entry in raw.items():
        where = f"register_mapping.{key}"
        qid = ctx.require(entry, "question", where)
        if qid not in questions or questions[qid].scale_id is None:
            raise ctx.fail(where, f"question {qid!r} is not a choice question of the codebook")
        codes = ctx.require(entry, "codes", where)
        if not isinstance(codes, dict):
            raise ctx.fail(where, "codes must map register values to choice codes")
        scale = scales[questions[qid].scale_id]  # type: ignore[index]
        for reg, code in codes.items():
            if code not in scale.codes:
                raise ctx.fail(where, f"register value {reg!r} maps to {code!r}, not a code of {qid!r}")
        out[str(key)] = {"question": qid, "codes": {str(k): str(v) for k, v in codes.items()}}
    return out


def parse_codebook(raw: Any, path: Path | str = "<codebook>") -> Codebook:
    """Validate an already-parsed codebook mapping and build the :class:`Codebook`.

    Raises CodebookError naming the entry at fault.
    """
    ctx = _Ctx(Path(path))
    if not isinstance(raw, dict):
        raise ctx.fail("top level", "expected a mapping")
    version = ctx.require(raw, "version", "top level")
    if not isinstance(version, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", version):
        raise ctx.fail("version", f"{version!r} must be a text of letters, digits, '.', '_' or '-'")
    domains = _parse_domains(ctx, ctx.require(raw, "domains", "top level"))
    domain_ids = [d.id for d in domains]
    sections = _parse_sections(ctx, ctx.require(raw, "sections", "top level"), set(domain_ids))
    scales = _parse_scales(ctx, ctx.require(raw, "scales", "top level"))
    questions = _parse_questions(ctx, ctx.require(raw, "questions", "top level"), scales, [s.id for s in sections])
    profile_ids = list(ctx.id_list(ctx.require(raw, "profile_questions", "top level"), "profile_questions", "profile_questions"))
    for pid in profile_ids:
        if pid not in questions:
            raise ctx.fail("profile_questions", f"{pid!r} is not a question of the codebook")
        if questions[pid].type not in SINGLE_CHOICE_TYPES:
            raise ctx.fail("profile_questions", f"{pid!r} must be a single-choice question")
    indicators = _parse_indicators(
        ctx, ctx.require(raw, "indicators", "top level"), domain_ids, questions, scales, profile_ids
    )
    for d in domains:
        n = sum(1 for i in indicators if i.domain_id == d.id)
        if n < MIN_INDICATORS_PER_DOMAIN:
            raise ctx.fail(
                f"domains ({d.id})",
                f"has {n} indicator(s); every domain needs at least {MIN_INDICATORS_PER_DOMAIN}",
            )
    findings = _parse_findings(ctx, ctx.require(raw, "findings", "top level"), domain_ids, indicators)
    version_field, respondent_field = _parse_technical(ctx, raw.get("technical_fields"), questions)
    register_mapping = _parse_register_mapping(ctx, raw.get("register_mapping"), questions, scales)
    return Codebook(
        path=Path(path),
        version=version,
        title=str(raw.get("title", "")),
        domains=domains,
        findings=findings,
        sections=sections,
        scales=scales,
        questions=questions,
        indicators=indicators,
        profile_question_ids=profile_ids,
        version_field=version_field,
        respondent_field=respondent_field,
        register_mapping=register_mapping,
    )


def load_codebook(path: str | Path | None = None) -> Codebook:
    """Load and validate the codebook (``config/codebook.yaml`` by default).

    Raises CodebookError naming the file and the entry at fault.
    """
    path = Path(path) if path is not None else DEFAULT_CODEBOOK_PATH
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path
    if not path.exists():
        raise CodebookError(f"{path}: codebook not found")
    try:
        raw = safe_yaml_load(path, CodebookError, _UniqueKeyLoader)
    except CodebookError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise CodebookError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise CodebookError(f"{path}: not valid YAML: {exc}") from exc
    return parse_codebook(raw, path)


# --------------------------------------------------------------------------------------------
# Coverage: which indicators document which domain and finding
# --------------------------------------------------------------------------------------------


def coverage_table(cb: Codebook):
    """One row per indicator: its domain, rule, questions, findings and published figure.

    Returns a pandas DataFrame with columns ``domain_id``, ``domain_number``, ``domain_title``,
    ``indicator_id``, ``indicator_label``, ``kind``, ``question_ids``, ``finding_ids``,
    ``published`` (the report's figure as published, empty when not published), ``breakdowns``.
    """
    import pandas as pd

    rows = []
    for d in cb.domains:
        for ind in cb.indicators_of_domain(d.id):
            rows.append(
                {
                    "domain_id": d.id,
                    "domain_number": d.number,
                    "domain_title": d.title,
                    "indicator_id": ind.id,
                    "indicator_label": ind.label,
                    "kind": ind.kind,
                    "question_ids": ", ".join(ind.question_ids),
                    "finding_ids": ", ".join(f.id for f in cb.findings_of_indicator(ind.id)),
                    "published": ind.published.text if ind.published else "",
                    "breakdowns": ", ".join(ind.breakdowns),
                }
            )
    return pd.DataFrame(rows)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def coverage_markdown(cb: Codebook) -> str:
    """The coverage report (docs/coverage.md) as Markdown, generated from the codebook."""
    table = coverage_table(cb)
    n_questions = len(cb.questions)
    lines = [
        "# Coverage of the référentiel",
        "",
        f"Generated from `config/codebook.yaml` (questionnaire version {cb.version}) by "
        "`python -m cae_impact.spec.codebook coverage docs/coverage.md`. Do not edit by hand.",
        "",
        f"{len(cb.indicators)} indicators over {len(cb.domains)} effect domains, "
        f"{len(cb.published_indicators)} of them quoted in the national report; "
        f"{n_questions} questions ({len(cb.profile_question_ids)} profile questions); "
        f"{len(cb.findings)} findings.",
        "",
        "## Domains",
        "",
        "| Domain | Title | Indicators | Published | Findings |",
        "|---|---|---:|---:|---|",
    ]
    for d in cb.domains:
        sub = table[table["domain_id"] == d.id]
        findings = [f.id for f in cb.findings if d.id in f.domain_ids]
        lines.append(
            f"| {d.id} | {_md_escape(d.title)} | {len(sub)} | {int((sub['published'] != '').sum())} | "
            f"{', '.join(findings)} |"
        )
    lines += ["", "## Findings", "", "| Finding | Text | Domains | Indicators |", "|---|---|---|---|"]
    for f in cb.findings:
        lines.append(
            f"| {f.id} | {_md_escape(f.text)} | {', '.join(f.domain_ids)} | {', '.join(f.indicator_ids)} |"
        )
    lines += [
        "",
        "## Indicators",
        "",
        "| Domain | Indicator | Label | Rule | Questions | Findings | Published figure |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.domain_id} | `{row.indicator_id}` | {_md_escape(row.indicator_label)} | {row.kind} | "
            f"{row.question_ids} | {row.finding_ids} | {_md_escape(row.published)} |"
        )
    lines += ["", "## Questions", "", "| Section | Question | Export code | Type | Scale | Skip logic |", "|---|---|---|---|---|---|"]
    for q in cb.questions.values():
        rel = f"`{q.relevant}`" if q.relevant else ""
        lines.append(
            f"| {q.section} | `{q.id}` | `{q.export_code}` | {q.type} | {q.scale_id or q.unit or ''} | {_md_escape(rel)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``check`` validates the codebook; ``coverage OUT`` writes the coverage report."""
    parser = argparse.ArgumentParser(prog="python -m cae_impact.spec.codebook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate the codebook and print a summary")
    p_check.add_argument("codebook", nargs="?", default=None)
    p_cov = sub.add_parser("coverage", help="write the coverage report (Markdown)")
    p_cov.add_argument("out", type=Path)
    p_cov.add_argument("--codebook", default=None)
    args = parser.parse_args(argv)
    try:
        cb = load_codebook(args.codebook)
    except CodebookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "check":
        print(
            f"{cb.path}: version {cb.version}, {len(cb.domains)} domains, {len(cb.findings)} findings, "
            f"{len(cb.questions)} questions, {len(cb.indicators)} indicators "
            f"({len(cb.published_indicators)} published)"
        )
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(coverage_markdown(cb), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
