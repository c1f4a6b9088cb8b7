"""The extract answer mode: the source sentence that best answers the question, quoted.

No model writes anything, so the answer is faithful by construction: it is a
sentence of a source, cited, with its span as evidence. A sentence is scored by
how many of the question's content words it and its source's title hold
(``overlap``, 0 to 1) plus its cosine to the question under the index's own
embedder (``similarity``); a sentence that holds nothing the question does not
already say (no new content word or number) cannot carry the answer and is
skipped. A question that asks for a quantity or a date ("how much", "when",
"what year") wants a number and one about a price ("cost", "price") an amount of
money: a sentence that has it gains ``NUMBER_BONUS`` (and "cost" is read as "price",
the word shop pages use). Markdown around the sentence (list bullets, heading marks,
table pipes) is left out of the quoted text, not out of the evidence span.
"""

from __future__ import annotations

import re

import numpy as np

from ragtune.documents import AnswerSentence, Evidence
from ragtune.query.citations import cite
from ragtune.query.grounding import Passages, SourceSentence
from ragtune.query.terms import content_stems, numbers_of, stem

# The openings and words of questions whose answer is a number (a price, a date, an age).
_ASKS_NUMBER = re.compile(
    r"\b(?:how (?:much|many|long|old|far|big|tall|high|heavy|often|large)|when|"
    r"what (?:year|date|time|percentage|age)|which year)\b",
    re.IGNORECASE,
)
# Worth about a third of the question's words: enough to prefer "Price: $29.50" to a
# description of the same product, not to pick a number from an unrelated passage.
NUMBER_BONUS = 0.3
_ASKS_PRICE = re.compile(r"\b(?:cost|costs|price|prices|priced)\b", re.IGNORECASE)
_MONEY = re.compile(r"[$\u20ac\u00a3\u00a5]\s?\d|\d\s?(?:dollars?|euros?|pounds?|USD|EUR|GBP)\b")
_BULLET = re.compile(r"^\s*(?:[-*+>]|#{1,6}|\d+[.)])\s+")


def extract_answer(question: str, passages: Passages) -> AnswerSentence | None:
    """The best answer-bearing sentence of ``passages`` for ``question``, or None when
    no source sentence says anything beyond the question."""
    asked = content_stems(question)
    asked_numbers = numbers_of(question)
    candidates = [
        (index, sentence)
        for index, sentence in enumerate(passages.sentences)
        if (sentence.stems - asked - passages.titles.get(sentence.number, frozenset()))
        or (sentence.numbers - asked_numbers)
    ]
    if not candidates:
        return None
    similarity = _similarities(question, passages)
    wants_money = bool(_ASKS_PRICE.search(question))
    wants_number = not wants_money and bool(_ASKS_NUMBER.search(question))
    if wants_money:
        asked = (asked - {stem("cost")}) | {stem("price")}

    def score(item: tuple[int, SourceSentence]) -> float:
        index, sentence = item
        held = sentence.stems | passages.titles.get(sentence.number, frozenset())
        overlap = len(asked & held) / len(asked) if asked else 0.0
        has_it = _MONEY.search(sentence.text) if wants_money else wants_number and sentence.numbers
        bonus = NUMBER_BONUS if has_it else 0.0
        return overlap + bonus + (float(similarity[index]) if similarity is not None else 0.0)

    _, best = max(candidates, key=score)
    return AnswerSentence(
        quoted(best.text, best.number),
        supported=True,
        sources=[best.number],
        evidence=[Evidence(best.number, best.start, best.end)],
    )


def quoted(text: str, number: int) -> str:
    """``text`` as an answer: Markdown marks off, table cells joined, cited as ``[number]``."""
    text = _BULLET.sub("", text)
    if text.startswith("|"):
        cells = [cell.strip() for cell in text.strip("|").split("|") if cell.strip()]
        text = ": ".join(cells[:2]) + (" (" + ", ".join(cells[2:]) + ")" if cells[2:] else "")
    return cite(" ".join(text.split()), [number])


def _similarities(question: str, passages: Passages) -> np.ndarray | None:
    vectors = passages.vectors()
    vector = passages.vector(question) if vectors is not None else None
    return None if vectors is None or vector is None else vectors @ vector
