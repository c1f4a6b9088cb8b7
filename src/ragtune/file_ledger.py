"""Which files of a folder changed since they were indexed: ``files.json``.

A file is only extracted when its bytes changed since it was indexed: every
file's size, modification time and SHA-256 are recorded in ``files.json``
(written after the documents are committed, so it never runs ahead of the
index). The content hash decides, not the modification time, which ``cp -p``,
``rsync -t``, ``tar`` and a same-size rewrite within the clock's tick all keep;
reading and hashing a file costs a tiny part of extracting it (measured on a
317-page HTML manual: 0.05 s to hash it all, over a minute to extract it).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ragtune.documents import Document, content_hash
from ragtune.extract.files import MAX_FILE_BYTES
from ragtune.index.manifest import FileState, read_file_states, write_file_states

if TYPE_CHECKING:
    from ragtune.index.vector_index import VectorStoreIndex


@dataclass(frozen=True)
class _Check:
    state: FileState  # the file as it is now, its documents not yet known
    unchanged: bool


class FileLedger:
    """Each file's recorded state (``files.json``) against the file now and the
    index's documents, and the states this run found, to record once it is written."""

    def __init__(
        self, directory: Path, recorded: dict[str, FileState], indexed: dict[str, dict[str, str]]
    ) -> None:
        self.directory = directory
        self.recorded = recorded
        self.indexed = indexed  # file URL -> its indexed documents' ids and content hashes
        self.found: dict[str, FileState] = {}

    @classmethod
    def of(cls, directory: Path, index: VectorStoreIndex | None) -> FileLedger:
        indexed: dict[str, dict[str, str]] = {}
        if index is not None:
            for doc_id, (url, digest) in index.store.document_hashes().items():
                if url.startswith("file:"):
                    indexed.setdefault(url, {})[doc_id] = digest
        return cls(directory, read_file_states(directory), indexed)

    def check(self, url: str, file: Path) -> _Check | None:
        """Whether ``file`` is as recorded and its recorded documents are what the index
        holds (an index rolled back, or changed through the API, is read again); None
        when it cannot be read here (extraction then says why)."""
        state = _file_state(file)
        if state is None:
            return None
        recorded = self.recorded.get(url)
        unchanged = (
            recorded is not None
            and recorded.size == state.size
            and recorded.sha256 == state.sha256
            and self.indexed.get(url, {}) == recorded.documents
        )
        if unchanged and recorded is not None:
            self.found[url] = replace(recorded, mtime_ns=state.mtime_ns)
        return _Check(state, unchanged)

    def read(self, url: str, file: Path, before: FileState, documents: list[Document]) -> None:
        """Note what ``file`` gave, unless it changed while it was read (its next read
        must not be skipped on a hash of other bytes)."""
        after = _file_state(file, hash_bytes=False)
        if after is None or (after.size, after.mtime_ns) != (before.size, before.mtime_ns):
            return
        hashes = {document.id_: content_hash(document.text) for document in documents}
        self.found[url] = replace(before, documents=hashes)

    def save(self) -> None:
        """Record the states found; the caller holds the write lock, and the documents
        are committed. An index of web pages only gets no record."""
        if self.found or self.recorded:
            write_file_states(self.directory, {**self.recorded, **self.found})


def _file_state(file: Path, hash_bytes: bool = True) -> FileState | None:
    """A regular file's size, modification time and (``hash_bytes``) SHA-256; None
    when it cannot be read or is over the size limit."""
    try:
        # Without blocking, and checked on the open file: a FIFO would wait forever.
        with os.fdopen(os.open(file, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                return None
            if not hash_bytes:
                return FileState(info.st_size, info.st_mtime_ns, "")
            digest = hashlib.sha256()
            while block := stream.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return FileState(info.st_size, info.st_mtime_ns, digest.hexdigest())
