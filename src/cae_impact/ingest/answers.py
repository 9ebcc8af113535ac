"""Matching raw answers (codes or full answer texts) onto the codebook's choice codes.

Survey tools export a choice either as its code (``tres_satisfait``… in the codebook,
``A1``-style codes are not used) or as the full answer text shown to the respondent
(« Très satisfait(e) »). Texts typed again in a spreadsheet drift: extra spaces, another case,
missing accents, curly apostrophes. :func:`normalise_label` folds those differences away, and an
:class:`AnswerMatcher` maps any of them to the canonical code — or says it does not know it.

Google Forms joins the ticked boxes of a checkbox question with ``", "`` although an answer text
may itself contain a comma: :meth:`AnswerMatcher.split_joined` matches known texts instead of
splitting blindly.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_DASHES = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-"})
_SPACES_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([:;,.!?)])")
_SPACE_AFTER_PAREN_RE = re.compile(r"\(\s+")

TICKED_VALUES = frozenset({"y", "yes", "oui", "1", "1.0", "x", "true", "vrai", "coche", "selected"})
"""Cell values meaning « ticked » in a one-column-per-choice layout (LimeSurvey ``Y``, Kobo ``1``)."""

UNTICKED_VALUES = frozenset({"", "n", "no", "non", "0", "0.0", "false", "faux", "non coche"})
"""Cell values meaning « not ticked » in a one-column-per-choice layout."""

YES_ALIASES = frozenset({"y", "yes", "oui", "1", "true", "vrai", "o"})
NO_ALIASES = frozenset({"n", "no", "non", "0", "false", "faux"})


@lru_cache(maxsize=65536)
def normalise_label(text: str) -> str:
    """Fold case, accents, apostrophes, dashes and spaces of an answer text or header.

    Cached: exports repeat the same few answer texts thousands of times.

    >>> normalise_label("  Très   Satisfait(e) ")
    'tres satisfait(e)'
    >>> normalise_label("Aujourd’hui : NON CONCERNÉ") == normalise_label("aujourd'hui: non concerne")
    True
    """
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.translate(_APOSTROPHES).translate(_DASHES).replace("\u00a0", " ")
    text = _SPACES_RE.sub(" ", text).strip().casefold()
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    return _SPACE_AFTER_PAREN_RE.sub("(", text)


def _is_yes_no(labels: dict[str, str]) -> tuple[str, str] | None:
    yes = [code for code, label in labels.items() if normalise_label(label) == "oui"]
    no = [code for code, label in labels.items() if normalise_label(label) == "non"]
    if len(yes) == 1 and len(no) == 1:
        return yes[0], no[0]
    return None


@dataclass
class AnswerMatcher:
    """Maps raw answers of one scale onto its choice codes.

    Built from the scale's choices (code and French label). A raw answer matches a code when it
    equals the code (case-insensitively) or when its normalised text equals the normalised label
    of a choice. For a yes/no scale, the usual spellings (``Y``/``N``, ``1``/``0``, ``Oui``/
    ``Non``…) are accepted too, and ``aliases`` add a CAE's own spellings.
    """

    codes: tuple[str, ...]
    labels: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)
    labels_only: bool = False
    _lookup: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lookup: dict[str, str] = {}
        if self.labels_only:  # whole answer texts only: no code, no yes/no spelling, no alias
            for code in self.codes:
                if self.labels.get(code):
                    lookup[normalise_label(self.labels[code])] = code
            self._lookup = lookup
            return
        yes_no = _is_yes_no(self.labels)
        if yes_no is not None:
            for alias in YES_ALIASES:
                lookup[alias] = yes_no[0]
            for alias in NO_ALIASES:
                lookup[alias] = yes_no[1]
        for code in self.codes:
            label = self.labels.get(code, "")
            if label:
                lookup[normalise_label(label)] = code
        for code in self.codes:  # a code always wins over a label spelled like another code
            lookup[normalise_label(code)] = code
        for raw, code in self.aliases.items():  # a mapping file's own spellings win over all
            lookup[normalise_label(raw)] = code
        self._lookup = lookup

    @classmethod
    def from_scale(cls, scale, aliases: dict[str, str] | None = None, *, labels_only: bool = False) -> AnswerMatcher:
        """Build from a codebook ``Scale`` (``choices`` with ``code`` and ``label``).

        ``aliases`` maps other spellings (a mapping file's ``values``) to codes; ``labels_only``
        matches whole answer texts only (to split answers joined by spaces, where a single word
        must never be read as a code).
        """
        return cls(
            codes=tuple(c.code for c in scale.choices),
            labels={c.code: c.label for c in scale.choices},
            aliases=dict(aliases or {}),
            labels_only=labels_only,
        )

    def match(self, raw: str) -> str | None:
        """Canonical code of a raw answer, or None when it matches no choice."""
        return self._lookup.get(normalise_label(raw))

    def is_known(self, raw: str) -> bool:
        """True when ``raw`` matches a choice."""
        return self.match(raw) is not None

    def split_joined(self, raw: str, separator: str = ", ") -> tuple[list[str], list[str]]:
        """Split answers joined by ``separator`` into known codes and unknown pieces.

        Answer texts may contain the separator themselves, so the pieces are regrouped to match
        known answers: among all the ways to regroup consecutive pieces, the one with the fewest
        unknown pieces wins (then the fewest answers). Unknown pieces (an « Autre : … » answer
        typed by the respondent, a text of another questionnaire) are returned as written.

        >>> m = AnswerMatcher(("a", "b"), {"a": "Clients, fournisseurs", "b": "Banque"})
        >>> m.split_joined("Clients, fournisseurs, Banque, Mairie")
        (['a', 'b'], ['Mairie'])
        """
        raw = raw.strip()
        if not raw:
            return [], []
        mark = separator.strip() or separator
        bounds = [-len(mark)] + [m.start() for m in re.finditer(re.escape(mark), raw)] + [len(raw)]
        n = len(bounds) - 1

        def text_of(start: int, end: int) -> str:
            return raw[bounds[start] + len(mark) : bounds[end]].strip()

        # best[i] = (unknown count, answer count, segmentation) for pieces[:i]
        best: list[tuple[int, int, list[tuple[bool, str]]] | None] = [None] * (n + 1)
        best[0] = (0, 0, [])
        for end in range(1, n + 1):
            candidates = []
            for start in range(end):
                if best[start] is None:
                    continue
                text = text_of(start, end)
                code = self.match(text)
                unknown, count, seg = best[start]
                if code is not None:
                    candidates.append((unknown, count + 1, [*seg, (True, code)]))
                elif end - start == 1:
                    candidates.append((unknown + 1, count + 1, [*seg, (False, text)]))
            if candidates:
                best[end] = min(candidates, key=lambda c: (c[0], c[1]))
        _, _, segmentation = best[n]
        codes: list[str] = []
        unknown_pieces: list[str] = []
        for known, value in segmentation:
            if known:
                if value not in codes:
                    codes.append(value)
            elif value:
                unknown_pieces.append(value)
        return codes, unknown_pieces
