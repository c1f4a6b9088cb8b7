"""Content words: what a question asks about, without its grammar.

Shared by the chat's follow-up rule (a turn's topic) and the engine's
not-in-the-sources decision (does a passage contain what the question names).
"""

from __future__ import annotations

import re


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
WORD = re.compile(r"[\w'-]+")


def _normalised(word: str) -> str:
    word = word.strip("'-")
    return word[:-2] if word.endswith("'s") else word


def key_terms(text: str) -> list[str]:
    """The content words of ``text``, lowercased, in order, without repeats."""
    terms: list[str] = []
    for raw in WORD.findall(text.casefold()):
        word = _normalised(raw)
        if not word or word in STOP_WORDS or word in ANAPHORS or word in terms:
            continue
        terms.append(word)
    return terms


def words_of(text: str) -> frozenset[str]:
    """Every word of ``text``, lowercased and normalised as ``key_terms`` does."""
    return frozenset(_normalised(raw) for raw in WORD.findall(text.casefold()))
