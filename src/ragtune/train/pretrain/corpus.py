"""The text a tokenizer or a model is trained on, streamed one document at a time.

A corpus is ``--data`` (a .txt/.md file, a directory of them, or JSON(L) records
``{"text": ...}``), ``--from-index`` (the documents of a ragtune index), or both. Texts
are read lazily so a corpus larger than memory streams through; errors name the file
and line, and come when that file or line is reached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import DatasetError
from ragtune.index.manifest import MANIFEST


@dataclass(frozen=True)
class Corpus:
    data: Path | None = None
    from_index: Path | None = None

    def __post_init__(self) -> None:
        if self.data is None and self.from_index is None:
            raise DatasetError("no text to train on: give --data PATH or --from-index DIR")

    def texts(self) -> Iterator[str]:
        """The text, in a fixed order (files sorted, records in file order): a document at a
        time, or a piece at a time of a file too big to hold (see ``pieces``)."""
        for text, _ends in self.pieces():
            yield text

    def pieces(self) -> Iterator[tuple[str, bool]]:
        """(text, whether it ends a document): a text file past 64 MiB comes in pieces cut
        after a line break, so no file is ever held whole."""
        from ragtune.train.data.records import iter_text_records

        if self.data is not None:
            for record in iter_text_records(self.data):
                yield record.text, not record.continued
        if self.from_index is not None:
            for text in _index_texts(self.from_index):
                yield text, True

    def describe(self) -> str:
        parts = [str(p) for p in (self.data, self.from_index) if p is not None]
        return " + ".join(parts)

    def fingerprint(self) -> str:
        """Changes when any text may have changed: every file's path, size and mtime (as
        make decides), and an index's manifest. Cheap: nothing is read but metadata."""
        digest = hashlib.sha256()
        if self.data is not None:
            for file in _files(self.data):
                info = file.stat()
                digest.update(f"{file}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        if self.from_index is not None:
            manifest = self.from_index / MANIFEST
            try:
                digest.update(manifest.read_bytes())
            except OSError as error:
                raise DatasetError(
                    f"{self.from_index}: not a ragtune index ({error.strerror or error})"
                ) from None
        return digest.hexdigest()


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if not path.is_dir():
        return [path.resolve()]
    found: list[Path] = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, n).resolve() for n in sorted(names) if not n.startswith(".")]
    return found


# Chunks repeat the end of the one before (ragtune.index.chunking's chunk_overlap words);
# a repeat is looked for within this many characters of the end.
_OVERLAP_CHARS = 2000


def _without_overlap(previous: str, chunk: str) -> str:
    """``chunk`` less its beginning that repeats the end of ``previous``."""
    start = max(0, len(previous) - _OVERLAP_CHARS)
    probe = chunk[:16]
    position = previous.find(probe, start) if len(probe) == 16 else -1
    while position != -1:
        tail = previous[position:]
        if chunk.startswith(tail):
            return chunk[len(tail) :].lstrip()
        position = previous.find(probe, position + 1)
    return chunk


def _index_texts(index_dir: Path) -> Iterator[str]:
    """An index's chunks joined back into documents, in URL order, without the words each
    chunk repeats from the one before."""
    from ragtune.index.vector_index import VectorStoreIndex

    if not (index_dir / MANIFEST).is_file():
        raise DatasetError(f"{index_dir}: not a ragtune index (no {MANIFEST})")
    index = VectorStoreIndex.load(index_dir)
    try:
        rows = sorted(index.store.chunk_texts(), key=lambda row: (row[2], row[1], row[0]))
    finally:
        index.close()
    document: list[str] = []
    current: object = None
    found = False
    for doc_id, _number, _url, text in rows:
        if doc_id != current and document:
            found = True
            yield "\n\n".join(document)
            document = []
        current = doc_id
        if document:
            text = _without_overlap(document[-1], text)
        if text.strip():
            document.append(text)
    if document:
        found = True
        yield "\n\n".join(document)
    if not found:
        raise DatasetError(f"{index_dir}: the index holds no documents to train on")


__all__ = ["Corpus"]
