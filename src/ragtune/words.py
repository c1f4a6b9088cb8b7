"""Words as ragtune compares them: one tokenizer for the index's vocabulary and the
query layer's content words, so a word found at ingest is the word asked about."""

from __future__ import annotations

import re

# Letters, digits and underscores, with inner apostrophes and hyphens: "max_wal_size",
# "o'brien" and "custom-format" are one word each.
WORD = re.compile(r"[\w'-]+")


def normalised(word: str) -> str:
    """``word`` without edge apostrophes and hyphens or a possessive "'s"."""
    word = word.strip("'-")
    return word[:-2] if word.endswith("'s") else word


def words_of(text: str) -> frozenset[str]:
    """Every word of ``text``, lowercased and normalised."""
    return frozenset(normalised(raw) for raw in WORD.findall(text.casefold()))
