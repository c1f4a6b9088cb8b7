"""Content words: what a question asks about, without its grammar.

Shared by the chat's follow-up rule (a turn's topic), the engine's
not-in-the-sources decision (does a passage contain what the question names)
and answer grounding (are an answer sentence's words, numbers and names in a
source).
"""

from __future__ import annotations

import re

from ragtune.words import WORD, normalised


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ANAPHORS = _words(
    "it its itself they them their theirs themselves that this these those one ones "
    "he him his she her hers"
)
STOP_WORDS = _words(
    """a an the of to in on at for from by with about as into over under and or but not no
    is are was were be been being am do does did doing have has had having can could will
    would shall should may might must what which who whom whose when where why how much many
    tell me please i you we us my your our there here than then so if also any some all
    more most very just get got give"""
)


def key_terms(text: str) -> list[str]:
    """The content words of ``text``, lowercased, in order, without repeats."""
    terms: list[str] = []
    for raw in WORD.findall(text.casefold()):
        word = normalised(raw)
        if not word or word in STOP_WORDS or word in ANAPHORS or word in terms:
            continue
        terms.append(word)
    return terms


# A number as written: digits with decimal or thousands separators.
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# Words that look like names at the start of a clause but name nothing in the sources.
NOT_NAMES = _words("source sources yes no note however also overall answer question")


def stem(word: str) -> str:
    """A crude stem that makes inflections meet: "tastes" and "taste", "flavored"
    and "flavor" (the first five letters of the word without a plural ``s``)."""
    if word.endswith("s") and len(word) > 3 and not word.endswith("ss"):
        word = word[:-1]
    return word[:5]


def content_stems(text: str) -> frozenset[str]:
    """The stems of ``text``'s content words (numbers are left to :func:`numbers_of`)."""
    return frozenset(stem(term) for term in key_terms(text) if not term[:1].isdigit())


def numbers_of(text: str) -> frozenset[str]:
    """The numbers in ``text``, thousands separators removed ("1,000" is "1000")."""
    found: set[str] = set()
    for match in NUMBER.finditer(text):
        number = match.group(0)
        # "1,000" and "1,000,000" group thousands; "1,5" (a decimal comma) does not.
        if re.fullmatch(r"\d{1,3}(?:,\d{3})+", number):
            number = number.replace(",", "")
        found.add(number.rstrip(".,"))
    return frozenset(found)


def names_of(text: str) -> frozenset[str]:
    """The capitalised content words of ``text`` that do not open a sentence or clause,
    lowercased: in "Ask Mira about the Frost Giant Elixir" these are mira, frost, giant
    and elixir."""
    names: set[str] = set()
    for match in WORD.finditer(text):
        raw = match.group(0)
        before = text[: match.start()].rstrip()
        opens_clause = not before or before[-1] in ".!?:;\n\"'(-*#|>"
        word = normalised(raw.casefold())
        if (
            raw[:1].isupper()
            and not opens_clause
            and word not in STOP_WORDS
            and word not in ANAPHORS
            and word not in NOT_NAMES
        ):
            names.add(word)
    return frozenset(names)
