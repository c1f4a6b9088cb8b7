"""Which source supports each sentence of an answer, and where.

The sources are the passages that were in the prompt, numbered as the prompt
numbered them, split into sentences (:mod:`ragtune.query.sentences`). An answer
sentence is checked in three steps:

1. **Facts.** Every number in it, and every capitalised word that does not open
   it (a name: "Mira", "Northern Reaches"), must occur in some source or in the
   question. One that occurs nowhere was invented: the sentence is unsupported.
2. **Words.** Its *claim* is its content words (stemmed) and numbers that the
   question did not already hold: "The flavor of the potion is mango" asked
   "What is the flavor of the potion?" claims "mango". In each source, the
   window of up to ``WINDOW`` consecutive sentences (with the source's title)
   that holds most of the claim is its candidate span. A span that holds at
   least ``LEXICAL_SUPPORT`` of the claim supports the sentence.
3. **Meaning.** A span holding at least ``PARTIAL_SUPPORT`` of the claim supports
   a paraphrase when the answer sentence and one sentence of the span are close
   in meaning: a cosine of at least ``SEMANTIC_SUPPORT`` between their vectors
   from the index's own embedder (computed only when step 2 did not decide).

A sentence with nothing to check (no content word and no number: "Yes.") is
unsupported. A supported sentence cites the sources its ``[n]`` markers name
where they support it, and otherwise its best supporting source; its evidence
is the span in each.

What this misses: a sentence that recombines words of one span into a false
claim ("the potion is not cherry flavoured" against "cherry flavour"), negation,
and a number or name right in one source but attributed to the wrong subject.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ragtune.documents import AnswerSentence, Evidence, NodeWithScore
from ragtune.query.sentences import split_sentences
from ragtune.query.terms import content_stems, names_of, numbers_of
from ragtune.words import words_of

GroundingMode = Literal["strict", "mark", "off"]
GROUNDING_MODES: tuple[GroundingMode, ...] = ("strict", "mark", "off")
Embed = Callable[[list[str]], Any]

# Consecutive source sentences one claim may draw on (a claim often joins two or three).
WINDOW = 3
LEXICAL_SUPPORT = 0.6
PARTIAL_SUPPORT = 0.34
# MiniLM puts a paraphrase of a sentence at 0.7-0.9 and another sentence on the same
# subject at 0.3-0.55; onnx-int8, onnx and torch put one pair at most 0.016 apart
# (measured on the grounding tests' sentences: docs/benchmarks.md).
SEMANTIC_SUPPORT = 0.6

_MARKER = re.compile(r"\s*\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


@dataclass
class SourceSentence:
    """One sentence of the source the prompt numbered ``number``, at ``start:end`` of its text."""

    number: int
    start: int
    end: int
    text: str
    stems: frozenset[str]
    numbers: frozenset[str]


@dataclass
class Passages:
    """The prompt's sources sentence by sentence; sentence vectors are computed on first use."""

    sources: list[NodeWithScore]
    embed: Embed | None = None
    sentences: list[SourceSentence] = field(default_factory=list)
    titles: dict[int, frozenset[str]] = field(default_factory=dict)
    numbers: frozenset[str] = frozenset()
    words: frozenset[str] = frozenset()
    _vectors: np.ndarray[Any, Any] | None = None

    @classmethod
    def of(cls, sources: Sequence[NodeWithScore], embed: Embed | None = None) -> Passages:
        passages = cls(list(sources), embed)
        numbers: set[str] = set()
        words: set[str] = set()
        for number, node in enumerate(passages.sources, 1):
            title = str(node.metadata.get("title") or node.metadata.get("header") or "")
            passages.titles[number] = content_stems(title)
            numbers |= numbers_of(node.text) | numbers_of(title)
            words |= words_of(node.text) | words_of(title)
            for sentence in split_sentences(node.text):
                passages.sentences.append(
                    SourceSentence(
                        number,
                        sentence.start,
                        sentence.end,
                        sentence.text,
                        content_stems(sentence.text),
                        numbers_of(sentence.text),
                    )
                )
        passages.numbers = frozenset(numbers)
        passages.words = frozenset(words)
        return passages

    def of_source(self, number: int) -> list[int]:
        return [i for i, sentence in enumerate(self.sentences) if sentence.number == number]

    def vectors(self) -> np.ndarray[Any, Any] | None:
        """Unit vectors of every source sentence, in order (None without an embedder)."""
        if self.embed is None or not self.sentences:
            return None
        if self._vectors is None:
            self._vectors = np.asarray(self.embed([s.text for s in self.sentences]), np.float32)
        return self._vectors

    def vector(self, text: str) -> np.ndarray[Any, Any] | None:
        if self.embed is None:
            return None
        return np.asarray(self.embed([text]), np.float32)[0]


@dataclass
class Span:
    """The best window of one source for a claim: sentences ``first..last`` (indices into
    ``Passages.sentences``) and the share of the claim they hold."""

    number: int
    first: int
    last: int
    coverage: float
    similarity: float = 0.0


def citation_numbers(text: str) -> list[int]:
    """The source numbers the ``[n]`` markers of ``text`` name, in order, without repeats."""
    found: list[int] = []
    for group in _MARKER.findall(text):
        for number in map(int, re.findall(r"\d+", group)):
            if number not in found:
                found.append(number)
    return found


def without_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


class SupportChecker:
    """Checks answer sentences against ``passages`` for ``question`` (the module's rules)."""

    def __init__(self, passages: Passages, question: str) -> None:
        self.passages = passages
        self.question_stems = content_stems(question)
        self.question_numbers = numbers_of(question)
        self.question_words = words_of(question)

    def check(self, sentence: str) -> AnswerSentence:
        """``sentence`` (its ``[n]`` markers kept in ``text``) with the sources that support it."""
        plain = without_markers(sentence)
        unsupported = AnswerSentence(sentence, supported=False)
        if self._invented(plain):
            return unsupported
        claim = self._claim(plain)
        if not claim:
            return unsupported
        spans = [span for span in self._best_spans(claim) if span.coverage >= PARTIAL_SUPPORT]
        supporting = [span for span in spans if span.coverage >= LEXICAL_SUPPORT]
        if not supporting and spans:
            supporting = self._close_in_meaning(plain, spans)
        if not supporting:
            return unsupported
        cited = citation_numbers(sentence)
        chosen = [span for span in supporting if span.number in cited]
        if not chosen:
            chosen = [max(supporting, key=lambda span: (span.coverage, span.similarity))]
        return AnswerSentence(
            sentence,
            supported=True,
            sources=[span.number for span in chosen],
            evidence=[self._evidence(span, claim) for span in chosen],
        )

    def _invented(self, plain: str) -> bool:
        numbers = numbers_of(plain) - self.question_numbers - self.passages.numbers
        names = names_of(plain) - self.question_words - self.passages.words
        return bool(numbers or names)

    def _claim(self, plain: str) -> frozenset[str]:
        stems = content_stems(plain)
        numbers = numbers_of(plain) - self.question_numbers
        claim = (stems - self.question_stems) | numbers
        # A sentence that only restates the question claims what it restates.
        return claim or stems | numbers_of(plain)

    def _best_spans(self, claim: frozenset[str]) -> list[Span]:
        spans: list[Span] = []
        for number in range(1, len(self.passages.sources) + 1):
            indices = self.passages.of_source(number)
            title = self.passages.titles.get(number, frozenset())
            best: Span | None = None
            for offset in range(len(indices)):
                held: set[str] = set(title)
                for width in range(min(WINDOW, len(indices) - offset)):
                    sentence = self.passages.sentences[indices[offset + width]]
                    held |= sentence.stems | sentence.numbers
                    coverage = len(claim & held) / len(claim)
                    if best is None or coverage > best.coverage:
                        best = Span(number, indices[offset], indices[offset + width], coverage)
            if best is not None:
                spans.append(best)
        return spans

    def _close_in_meaning(self, plain: str, spans: list[Span]) -> list[Span]:
        vectors = self.passages.vectors()
        vector = self.passages.vector(plain) if vectors is not None else None
        if vectors is None or vector is None:
            return []
        close = []
        for span in spans:
            span.similarity = float(np.max(vectors[span.first : span.last + 1] @ vector))
            if span.similarity >= SEMANTIC_SUPPORT:
                close.append(span)
        return close

    def _evidence(self, span: Span, claim: frozenset[str]) -> Evidence:
        # The window's outer sentences that hold nothing of the claim are no evidence.
        sentences = self.passages.sentences
        contributing = [
            i
            for i in range(span.first, span.last + 1)
            if claim & (sentences[i].stems | sentences[i].numbers)
        ] or [span.first]
        return Evidence(
            span.number, sentences[contributing[0]].start, sentences[contributing[-1]].end
        )
