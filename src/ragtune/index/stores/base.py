"""What every chunk store holds and answers: the contract the stores share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ragtune.documents import content_hash
from ragtune.index.filters import MetadataFilters

# Row keys every search hit carries: id, doc_id, url, title, header, text,
# chunk_index, metadata (a dict) and vector (float32, unit length).
Row = dict[str, Any]


@dataclass
class StoredChunk:
    id: str
    doc_id: str
    url: str
    title: str
    header: str
    text: str
    chunk_index: int
    metadata: dict[str, Any]
    vector: np.ndarray
    embed_text: str  # the passage under its title and section path, as the embedder saw it

    @property
    def embed_hash(self) -> str:
        """The embedding cache key: the same text always gets the same vector."""
        return content_hash(self.embed_text)[:32]


@dataclass
class SearchHit:
    row: Row
    score: float


class ChunkStore(Protocol):
    """Chunks with their vectors. Each write is atomic: a reader sees a document's
    old chunks or its new ones, never a mix, and a killed writer leaves the last
    committed state."""

    location: str

    def ensure_table(self) -> None:
        """Create the (empty) table if the store is new."""

    def check_readable(self) -> None:
        """Raise InvalidIndexError / StoreConnectionError now rather than at query time."""

    def replace_documents(self, doc_ids: list[str], chunks: list[StoredChunk]) -> None:
        """Insert ``chunks`` and drop every other chunk of ``doc_ids``, in one commit."""

    def delete_documents(self, doc_ids: list[str]) -> None:
        """Remove every chunk of ``doc_ids`` in one commit."""

    def search_vector(
        self, vector: np.ndarray, limit: int, filters: MetadataFilters | None = None
    ) -> list[SearchHit]:
        """Nearest chunks by cosine similarity; score in [-1, 1], higher is closer."""
        ...

    def search_keyword(
        self, query: str, limit: int, filters: MetadataFilters | None = None
    ) -> list[SearchHit]:
        """Best chunks by keyword relevance; higher is better."""
        ...

    def count(self) -> int: ...

    def count_documents(self) -> int: ...

    def cached_vectors(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Stored vectors for the embed hashes that are already in the store."""
        ...

    def content_hashes(self, doc_ids: list[str]) -> dict[str, str]:
        """The content hash each of ``doc_ids`` was indexed with, for those indexed."""
        ...

    def document_metadata(self) -> dict[str, dict[str, Any]]:
        """The metadata of each indexed document (that of its first chunk), by URL."""
        ...

    def document_hashes(self) -> dict[str, tuple[str, str]]:
        """Every document: its id -> (URL, content hash). A PDF's pages share a URL."""
        ...

    def chunk_ids(self) -> list[str]:
        """Every chunk id, for integrity checks."""
        ...

    def chunk_texts(self) -> list[tuple[str, int, str, str]]:
        """(doc_id, chunk_index, url, text) of every chunk, for training on the index."""
        ...

    def document_chunks(self, doc_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(chunk_index, text, metadata) of one document's chunks in order, read through
        the store's own filter rather than by reading every chunk; empty for an
        unknown id."""
        ...

    def close(self) -> None: ...


def batches(values: list[str], size: int) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]
