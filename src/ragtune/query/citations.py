"""Citation markers in an answer: parsed, checked against the prompt's sources, mapped.

The prompt numbers its sources 1..n and asks the model to cite them as
``[n]``. A small model also writes ``[1, 2]``, ``[1][2]`` or ``[Source 1]``;
all are read, and rewritten to the plain ``[1, 2]`` form. A number that was
not among the prompt's sources (``[7]`` when there were three) is removed from
the answer text, with the space before it, and recorded in
``CitationFilter.dropped``: so every ``[n]`` left in an answer points to a
source that was in the prompt. The filter invents no citation for an answer
without markers; grounding (:mod:`ragtune.query.grounding`) attributes each
sentence to the source that supports it, and :func:`cite` writes the result
back as the sentence's marker.

``CitationFilter`` works on a token stream: it holds back only what might
still become a marker (a trailing space, an unclosed ``[...``), so the
streamed text and the final answer are the same string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragtune.documents import Citation, NodeWithScore

# "[1]", "[1, 2]", "[1;2]", "[1 and 2]", "[Source 1]", "[sources 1, 2]", with the space before it.
_MARKER = re.compile(
    r"(\s*)\[\s*(?:sources?\s*)?(\d{1,6}(?:\s*(?:,|;|and)\s*(?:sources?\s*)?\d{1,6})*)\s*\]",
    re.IGNORECASE,
)
# A sentence's closing stop, with the quotes or brackets that close it.
_CLOSING_STOP = re.compile(r"([.!?\u2026][\"'\u201d\u2019)\]]*)$")
# Every marker of a sentence, with the space before it.
_ANY_MARKER = re.compile(r"\s*\[\s*\d+(?:\s*,\s*\d+)*\s*\]")
# The tail of a stream that a later token could still turn into a marker.
_PARTIAL = re.compile(r"\s*(?:\[[A-Za-z\d\s,;]{0,24})?$")


class CitationFilter:
    """Rewrites ``[n]`` markers of an answer, piece by piece, against ``sources``."""

    def __init__(self, sources: Sequence[NodeWithScore]) -> None:
        self.sources = list(sources)
        self.cited: list[int] = []
        self.dropped: list[int] = []
        self._pending = ""

    def feed(self, piece: str) -> str:
        """The text that is final once ``piece`` has arrived (possibly empty)."""
        text = self._pending + piece
        hold = _PARTIAL.search(text)
        cut = hold.start() if hold else len(text)
        self._pending = text[cut:]
        return self._rewrite(text[:cut])

    def flush(self) -> str:
        """The rest, at the end of the answer."""
        text, self._pending = self._pending, ""
        return self._rewrite(text)

    @property
    def citations(self) -> list[Citation]:
        return [Citation(number, self.sources[number - 1]) for number in self.cited]

    def _rewrite(self, text: str) -> str:
        return _MARKER.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        kept: list[int] = []
        for number in (int(digits) for digits in re.findall(r"\d+", match.group(2))):
            if 1 <= number <= len(self.sources):
                if number not in kept:
                    kept.append(number)
                if number not in self.cited:
                    self.cited.append(number)
            elif number not in self.dropped:
                self.dropped.append(number)
        if not kept:
            return ""
        return match.group(1) + "[" + ", ".join(map(str, kept)) + "]"


def resolve_citations(
    answer: str, sources: Sequence[NodeWithScore]
) -> tuple[str, list[Citation], list[int]]:
    """The answer with its markers checked, the citations it makes, and the numbers dropped."""
    citation_filter = CitationFilter(sources)
    text = citation_filter.feed(answer) + citation_filter.flush()
    return text, citation_filter.citations, citation_filter.dropped


def cite(sentence: str, numbers: Sequence[int]) -> str:
    """``sentence`` with its markers replaced by one ``[n, m]`` for ``numbers``, placed
    before its closing stop ("... cola [1]."); without numbers, with no marker at all."""
    text = _ANY_MARKER.sub("", sentence).strip()
    if not numbers:
        return text
    marker = "[" + ", ".join(map(str, numbers)) + "]"
    stop = _CLOSING_STOP.search(text)
    if stop is None:
        return f"{text} {marker}"
    return f"{text[: stop.start()].rstrip()} {marker}{stop.group(1)}"
