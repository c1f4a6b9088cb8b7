"""Sentences of a text, with their character offsets, whole or as a stream arrives.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quotes or
brackets after it) when whitespace follows and the next word does not start in
lower case, and the word before the stop is no abbreviation ("e.g.", "Dr.") or
initial; a line break always ends one, so a Markdown list item, table row or
heading is a sentence of its own. A citation marker right after the stop
("... vanilla. [1]") belongs to the sentence it follows. A stop inside a number
("$12.99") ends nothing, since no whitespace follows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The stop, closing quotes or brackets, and a citation marker that follows it.
_STOP = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?:\s*\[\d+(?:\s*,\s*\d+)*\])?(?=\s|$)")
_LINE = re.compile(r"[^\n]+")
_LAST_WORD = re.compile(r"(\S+)$")
_ABBREVIATED = "mr mrs ms dr prof st jr sr vs etc e.g i.e eg ie inc ltd co corp fig approx ca cf al"
ABBREVIATIONS = frozenset(_ABBREVIATED.split(" "))


@dataclass(frozen=True)
class Sentence:
    """Characters ``start:end`` of a text, which are ``text`` (trimmed of whitespace)."""

    start: int
    end: int
    text: str


def _ends_sentence(line: str, stop: re.Match[str]) -> bool:
    rest = line[stop.end() :].lstrip()
    if rest and rest[0].islower():
        return False
    before = _LAST_WORD.search(line[: stop.start()])
    if before is None:
        return True
    word = before.group(1).casefold().lstrip("(\"'")
    is_initial = len(word) == 1 and word.isalpha() and stop.group(0).startswith(".")
    return word not in ABBREVIATIONS and not is_initial


def split_sentences(text: str) -> list[Sentence]:
    """The sentences of ``text`` in order, each with its offsets into ``text``."""
    sentences: list[Sentence] = []
    for line in _LINE.finditer(text):
        start = 0
        body = line.group(0)
        for stop in _STOP.finditer(body):
            if _ends_sentence(body, stop):
                _append(sentences, text, line.start() + start, line.start() + stop.end())
                start = stop.end()
        _append(sentences, text, line.start() + start, line.end())
    return sentences


def _append(sentences: list[Sentence], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        lead = len(piece) - len(piece.lstrip())
        sentences.append(Sentence(start + lead, start + lead + len(stripped), stripped))


class SentenceBuffer:
    """Turns a stream of text pieces into whole sentences as soon as each is known to end.

    A sentence is whole once the next one has begun or its line has ended;
    ``flush`` returns what is left at the end of the stream. Each sentence comes
    with ``True`` when a line break separated it from the one before.
    """

    def __init__(self) -> None:
        self._text = ""
        self._newline_before = False

    def feed(self, piece: str) -> list[tuple[str, bool]]:
        self._text += piece
        sentences = split_sentences(self._text)
        if not sentences:
            return []
        last = sentences[-1]
        whole = sentences if "\n" in self._text[last.end :] else sentences[:-1]
        if not whole:
            return []
        done = self._emit(whole)
        self._text = self._text[whole[-1].end :]
        return done

    def flush(self) -> list[tuple[str, bool]]:
        sentences = split_sentences(self._text)
        self._text = ""
        return self._emit(sentences)

    def _emit(self, sentences: list[Sentence]) -> list[tuple[str, bool]]:
        done: list[tuple[str, bool]] = []
        previous_end = 0
        for sentence in sentences:
            gap = self._text[previous_end : sentence.start]
            newline = self._newline_before or "\n" in gap
            self._newline_before = False
            done.append((sentence.text, newline))
            previous_end = sentence.end
        if "\n" in self._text[previous_end:]:
            self._newline_before = True
        return done
