"""Markdown-aware chunking, sized in the embedder's own tokens.

A page is split into blocks (paragraphs, whole tables, whole code fences,
list runs), each tagged with the heading path above it. Blocks are packed
greedily into chunks of at most ``chunk_size`` tokens, including a short
header naming the page and section, so that no chunk is silently truncated
by the embedder's window. A block too big for one chunk is split at
sentences, and a sentence too big at words.

A text's size is its token count, but never less than one token per
``MAX_CHARS_PER_TOKEN`` characters: a WordPiece tokenizer counts any word longer
than 100 characters as one unknown token, and a megabyte of base64 must not
become one "small" chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

TokenCounter = Callable[[str], int]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
MIN_BODY_TOKENS = 32
MAX_CHARS_PER_TOKEN = 16  # English runs at 4-5 characters a token


@dataclass
class Block:
    text: str
    headings: tuple[str, ...]


@dataclass
class _Unit:
    """A piece of a block, the smallest thing packed into a chunk."""

    text: str
    tokens: int
    block: int


@dataclass
class Chunk:
    text: str
    headings: tuple[str, ...]
    header: str
    token_count: int = 0
    metadata: dict[str, object] = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        """What the embedder sees: the header gives a bare passage its context."""
        return f"{self.header}\n\n{self.text}" if self.header else self.text


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_size: int = 192
    chunk_overlap: int = 24


def split_blocks(markdown: str) -> list[Block]:
    """Split Markdown into blocks that should not be cut, with their heading paths."""
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    titles: list[str] = []  # every heading, for a document that has nothing else
    current: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(current).strip()
        if text:
            blocks.append(Block(text, tuple(title for _, title in headings)))
        current.clear()

    for line in markdown.splitlines():
        if _FENCE.match(line):
            if not in_fence:
                flush()
            current.append(line)
            in_fence = not in_fence
            if not in_fence:
                flush()
            continue
        if in_fence:
            current.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            headings = [(lvl, title) for lvl, title in headings if lvl < level]
            headings.append((level, heading.group(2)))
            if heading.group(2):
                titles.append(heading.group(2))
            continue
        if not line.strip():
            # A blank line ends a paragraph, but not a table or list that resumes.
            flush()
            continue
        current.append(line)
    flush()
    if not blocks and markdown.strip():
        # A page that is only headings is still text someone may search for.
        blocks.append(Block("\n\n".join(titles) or markdown.strip(), ()))
    return blocks


class MarkdownChunker:
    def __init__(self, count_tokens: TokenCounter, config: ChunkingConfig | None = None) -> None:
        self.count_tokens = count_tokens
        self.config = config or ChunkingConfig()

    def size(self, text: str) -> int:
        """Tokens, but at least one per MAX_CHARS_PER_TOKEN characters (see the module doc)."""
        return max(self.count_tokens(text), len(text) // MAX_CHARS_PER_TOKEN)

    def chunk(self, markdown: str, title: str = "") -> list[Chunk]:
        chunks: list[Chunk] = []
        units: list[_Unit] = []
        unit_headings: tuple[str, ...] = ()
        header = ""
        budget = 0

        def emit() -> None:
            total = sum(u.tokens for u in units) + self.size(header)
            chunks.append(Chunk(_join(units), unit_headings, header, token_count=total))

        for block_number, block in enumerate(split_blocks(markdown)):
            block_header = make_header(title, block.headings)
            block_budget = max(MIN_BODY_TOKENS, self.config.chunk_size - self.size(block_header))
            for piece in self._fit(block.text, block_budget):
                size = self.size(piece)
                if not units or sum(u.tokens for u in units) + size > budget:
                    if units:
                        emit()
                        units = self._overlap(units, block_budget - size)
                    # A new chunk is named after the block its fresh content comes from.
                    unit_headings, header, budget = block.headings, block_header, block_budget
                units.append(_Unit(piece, size, block_number))
        if units:
            emit()
        return chunks

    def _overlap(self, units: list[_Unit], room: int) -> list[_Unit]:
        """The trailing units of the last chunk to repeat at the start of the next."""
        limit = min(self.config.chunk_overlap, room)
        kept: list[_Unit] = []
        total = 0
        for unit in reversed(units):
            if total + unit.tokens > limit:
                break
            kept.insert(0, unit)
            total += unit.tokens
        return kept

    def _fit(self, text: str, budget: int) -> list[str]:
        """Split a block into pieces of at most ``budget`` tokens, preferring sentence ends."""
        if self.size(text) <= budget:
            return [text]
        pieces: list[str] = []
        for sentence in _SENTENCE_END.split(text):
            if self.size(sentence) <= budget:
                pieces.append(sentence)
            else:
                pieces.extend(self._split_words(sentence, budget))
        return pieces

    def _split_words(self, text: str, budget: int) -> list[str]:
        """Greedy runs of words. A run's size is taken as the sum of its words' (true
        for WordPiece, close for others) and checked once as a whole: recounting the
        growing run at every word took 27 s for a megabyte without sentence ends."""
        pieces: list[str] = []
        words: list[str] = []
        total = 0
        sizes: dict[str, int] = {}  # prose repeats its words
        for word in text.split():
            size = sizes.get(word)
            if size is None:
                size = sizes[word] = self.size(word)
            if words and total + size > budget:
                pieces.extend(self._checked_run(words, budget))
                words, total = [], 0
            if size > budget:
                # A single enormous "word" (a URL, base64) is cut by characters.
                pieces.extend(_split_chars(word, budget, self.size))
                continue
            words.append(word)
            total += size
        if words:
            pieces.extend(self._checked_run(words, budget))
        return pieces

    def _checked_run(self, words: list[str], budget: int) -> list[str]:
        """The words as one piece, or halves of it where a tokenizer counts the joined
        run as more than the sum of its words."""
        piece = " ".join(words)
        if len(words) == 1 or self.size(piece) <= budget:
            return [piece]
        half = len(words) // 2
        return self._checked_run(words[:half], budget) + self._checked_run(words[half:], budget)


def make_header(title: str, headings: tuple[str, ...]) -> str:
    path = [h for h in headings if h and h != title]
    parts = [title] if title else []
    parts.extend(path)
    return " > ".join(parts)


def _join(units: list[_Unit]) -> str:
    """Sentences of one block rejoin with a space; separate blocks stay paragraphs."""
    text = ""
    for previous, unit in zip([None, *units], units, strict=False):
        if previous is None:
            text = unit.text
        elif previous.block == unit.block:
            text += " " + unit.text
        else:
            text += "\n\n" + unit.text
    return text


def _split_chars(word: str, budget: int, count: TokenCounter) -> list[str]:
    pieces = []
    step = max(1, budget)
    start = 0
    while start < len(word):
        end = min(len(word), start + step * 4)
        while end > start + 1 and count(word[start:end]) > budget:
            end = start + max(1, (end - start) // 2)
        pieces.append(word[start:end])
        start = end
    return pieces
