"""Which words occur anywhere in an index: evidence that a question asks about
something the corpus never mentions.

Similarity cannot tell "What is the default value of shared_buffers?" from the
answerable "What is the default value of work_mem?" when the corpus documents
one setting and not the other: on the PostgreSQL manual the unanswerable
questions' best cosines (0.39-0.61) overlap the answerable ones' (0.45-0.81)
completely. That the name ``shared_buffers`` occurs in no passage at all is a
literal fact that no CPU or backend moves, and it decides such a question.

The vocabulary is every word of every stored chunk (``ragtune.words``), with
the parts of compound words too ("max_wal_size" also gives "max", "wal",
"size"), kept as a sorted array of 64-bit hashes in a ``.npy`` file beside the
manifest: 8 bytes a word, a lookup by binary search, loaded without pickle. It
is rebuilt with the score calibration after every write, from the store's
texts, so it follows deletes as well as inserts. The file name carries a digest
of its content and the manifest names the file it goes with, so a crash between
the two writes leaves the previous pair in force, never a mismatched one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from io import BytesIO
from pathlib import Path

import numpy as np

from ragtune.atomic import write_bytes_atomic
from ragtune.index.stores.base import ChunkStore
from ragtune.words import WORD, normalised, words_of

_PREFIX = "vocabulary-"
_NAME = re.compile(r"vocabulary-[0-9a-f]{16}\.npy")
# A compound word's parts: "pg_hba.conf", "max-age", "shared_buffers".
_JOINERS = re.compile(r"[-_.']")


def _hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


# Derived entries carry a mark no word has, so they never pass for a word.
_FUZZY, _PREFIX6, _INITIALS = "~", "^", "="
# Small words inside a name ("Bank of England", "Board of Church and Society").
_NAME_GLUE = frozenset({"of", "and", "the", "for", "de", "la", "du", "von", "van", "der"})
_SHORTEST_FUZZY = 5  # a one-letter slip in a shorter name makes another name
_LONGEST_RUN = 6


def plain_letters(word: str) -> str:
    """``word`` without accents: "Maizière" and "Maiziere" meet."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def one_letter_deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


class CorpusVocabulary:
    """The set of words an index's passages contain (stored as hashes: a false
    "present" has a chance of about n / 2**64, a false "absent" none).

    Besides the words, the corpus's capitalised words (its names) are kept in
    forms that forgive how people write names in questions: one letter wrong,
    missing, extra or two swapped ("Sheeshanks", "Ghandi"), accents dropped, a
    derived form sharing the first six letters ("Californian"), the initials of
    a run of names ("UMC" for "United Methodist Church") and two names written
    as one ("Superbowl"). Identifiers (``shared_buffers``) are matched exactly.
    """

    def __init__(self, hashes: np.ndarray) -> None:
        self._hashes = hashes

    @classmethod
    def of_texts(cls, texts: Iterable[str]) -> CorpusVocabulary:
        entries: set[str] = set()
        names: set[str] = set()
        for text in texts:
            for word in words_of(text):
                entries.add(word)
                if _JOINERS.search(word):
                    entries.update(part for part in _JOINERS.split(word) if part)
            for run in _name_runs(text):
                names.update(run)
                entries.update("".join(pair) for pair in zip(run, run[1:], strict=False))
                entries.update(_INITIALS + initials for initials in _initials(run))
        for name in names:
            plain = plain_letters(name)
            entries.add(plain)
            if len(plain) >= _SHORTEST_FUZZY:
                entries.add(_FUZZY + plain)
                entries.update(_FUZZY + variant for variant in one_letter_deletions(plain))
            if len(plain) >= 6:
                entries.add(_PREFIX6 + plain[:6])
        hashes = np.array(sorted({_hash(entry) for entry in entries}), dtype=np.uint64)
        return cls(hashes)

    def __len__(self) -> int:
        return int(self._hashes.size)

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str) or not self._hashes.size:
            return False
        value = np.uint64(_hash(word))
        position = int(np.searchsorted(self._hashes, value))
        return position < self._hashes.size and bool(self._hashes[position] == value)

    def mentions_name(self, name: str) -> bool:
        """Whether the corpus mentions ``name`` (lowercased), as written or in one of
        the forgiving forms above."""
        plain = plain_letters(name)
        forms = {name, plain, plain + "s", plain + "es"}
        if plain.endswith("s"):
            forms.add(plain[:-1])
        if any(form in self for form in forms):
            return True
        if plain.isalpha() and 2 <= len(plain) <= _LONGEST_RUN and _INITIALS + plain in self:
            return True
        if len(plain) >= 6 and _PREFIX6 + plain[:6] in self:
            return True
        if len(plain) >= _SHORTEST_FUZZY:
            fuzzy = {plain} | one_letter_deletions(plain)
            return any(_FUZZY + variant in self for variant in fuzzy)
        return False

    def to_bytes(self) -> bytes:
        buffer = BytesIO()
        np.save(buffer, self._hashes, allow_pickle=False)
        return buffer.getvalue()


def _name_runs(text: str) -> Iterator[list[str]]:
    """Runs of capitalised words, lowercased ("United Methodist Church"), small
    words inside a run skipped; a word opening a sentence counts too (it may be a
    name, and an extra entry costs only space)."""
    run: list[str] = []
    for match in WORD.finditer(text):
        raw = match.group(0).strip("'-")
        if raw[:1].isupper():
            run.append(normalised(raw.casefold()))
            continue
        if run and raw.casefold() in _NAME_GLUE:
            continue
        if run:
            yield run
            run = []
    if run:
        yield run


def _initials(run: list[str]) -> set[str]:
    letters = "".join(plain_letters(word)[:1] for word in run)
    return {
        letters[start:end]
        for start in range(len(letters))
        for end in range(start + 2, min(len(letters), start + _LONGEST_RUN) + 1)
    }


def build_vocabulary(store: ChunkStore) -> CorpusVocabulary:
    """The vocabulary of every passage in ``store``."""
    # The URL too: a page's name ("pg_dump.html") is part of what the corpus mentions.
    return CorpusVocabulary.of_texts(f"{url}\n{text}" for _, _, url, text in store.chunk_texts())


def save_vocabulary(vocabulary: CorpusVocabulary, directory: Path) -> str:
    """Write ``vocabulary`` into ``directory`` under a name that digests its content;
    returns the name, for the manifest to record."""
    data = vocabulary.to_bytes()
    name = f"{_PREFIX}{hashlib.sha256(data).hexdigest()[:16]}.npy"
    write_bytes_atomic(directory / name, data)
    return name


def remove_other_vocabularies(directory: Path, keep: str | None) -> None:
    """Delete vocabulary files the manifest no longer names (after it was saved)."""
    for path in directory.glob(f"{_PREFIX}*.npy"):
        if path.name != keep and _NAME.fullmatch(path.name):
            path.unlink(missing_ok=True)


def load_vocabulary(directory: Path, name: object) -> CorpusVocabulary | None:
    """The vocabulary the manifest names; None when there is none or the file is
    missing, damaged or not what its name says (the caller then goes without)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    path = directory / name
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest()[:16] != name[len(_PREFIX) : -len(".npy")]:
        return None
    try:
        hashes = np.load(BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None
    if hashes.dtype != np.uint64 or hashes.ndim != 1:
        return None
    return CorpusVocabulary(hashes)
