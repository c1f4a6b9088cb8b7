"""An answer made fit to show: plain text, no repeats, and an end that is not a silent cut.

- **Plain text.** A model that read HTML pages writes HTML back, now and then a
  ``<script src=...>``. ``MarkupFilter`` removes every tag and comment, and the
  whole body of ``script`` and ``style`` elements, from a stream of pieces: it
  holds back only what may still become a tag (an unclosed ``<tag``, an open
  ``<script>`` block), so no piece of a tag is ever emitted. A ``<`` not
  followed by a letter, ``/`` or ``!`` ("a < b") is text and stays.
- **Repeats.** A small model loops; :func:`repeat_key` is what two sentences
  share when one repeats the other (case, punctuation, spacing and citation
  markers ignored).
- **Cut answers.** An answer that filled its token budget and whose last
  sentence has no closing stop was cut by the budget: the fragment is dropped
  when a whole sentence precedes it, and otherwise kept with ``CUT_MARK``
  after it, so a reader sees that it is unfinished.
"""

from __future__ import annotations

import re

CUT_MARK = " …"
# The longest unclosed "<tag ..." held back before deciding it was text after all.
MAX_TAG_CHARS = 400

_BLOCK = re.compile(r"<\s*(script|style)\b.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_OPEN_BLOCK = re.compile(r"<\s*(?:script|style)\b", re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# As a browser reads them: "<" then a letter, "/" or "!" at once ("a < b" is no tag).
_TAG = re.compile(r"<[/!]?[A-Za-z][^<>]*>")
_PARTIAL_TAG = re.compile(r"<(?:!-?|[/!]?(?:[A-Za-z][^<>]*)?)?$")
_ENDS_SENTENCE = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?:\s*\[[\d,\s]+\])?\s*$")
_MARKER = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")


def strip_markup(text: str) -> str:
    """``text`` without HTML tags, comments, or script and style elements."""
    text = _COMMENT.sub("", _BLOCK.sub("", text))
    text = _TAG.sub("", text)
    block = _OPEN_BLOCK.search(text)
    if block is not None:  # a script never closed: nothing after it is text
        text = text[: block.start()]
    tail = _PARTIAL_TAG.search(text[-MAX_TAG_CHARS:])
    return text[: len(text) - len(tail.group(0))] if tail else text


class MarkupFilter:
    """:func:`strip_markup` on a stream: ``feed`` returns what is final, ``flush`` the rest."""

    def __init__(self) -> None:
        self._pending = ""
        self.removed = False

    def feed(self, piece: str) -> str:
        text = self._pending + piece
        cut = _holding_point(text)
        self._pending = text[cut:]
        return self._clean(text[:cut])

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._clean(text)

    def _clean(self, text: str) -> str:
        cleaned = strip_markup(text)
        if cleaned != text:
            self.removed = True
        return cleaned


def _holding_point(text: str) -> int:
    """Where the part of ``text`` that may still become markup begins."""
    open_blocks = [m for m in _OPEN_BLOCK.finditer(text) if not _BLOCK.match(text, m.start())]
    if open_blocks:
        return open_blocks[0].start()
    comment = text.rfind("<!--")
    if comment != -1 and "-->" not in text[comment:]:
        return comment
    partial = _PARTIAL_TAG.search(text[-MAX_TAG_CHARS:])
    if partial is not None:
        return len(text) - len(text[-MAX_TAG_CHARS:]) + partial.start()
    return len(text)


def repeat_key(sentence: str) -> str:
    """What a sentence and its repeat have in common."""
    return " ".join(re.sub(r"[\W_]+", " ", _MARKER.sub("", sentence).casefold()).split())


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends with a closing stop (a citation marker may follow it)."""
    return bool(_ENDS_SENTENCE.search(text))
