"""Chunk stores: the embedded LanceDB default and PostgreSQL + pgvector."""

from __future__ import annotations

from pathlib import Path

from ragtune.index.stores.base import ChunkStore, SearchHit, StoredChunk
from ragtune.index.stores.lance import LanceStore
from ragtune.index.stores.postgres import PostgresStore, is_postgres_url

EMBEDDED = "lancedb"
EMBEDDED_DIR = "lancedb"


def open_store(index_dir: Path, store: str, table: str, dimensions: int) -> ChunkStore:
    """The store an index's manifest names: ``lancedb`` (inside the index directory)
    or a ``postgresql://`` URL."""
    if store == EMBEDDED:
        return LanceStore(index_dir / EMBEDDED_DIR, dimensions)
    return PostgresStore(store, table, dimensions)


__all__ = [
    "EMBEDDED",
    "ChunkStore",
    "LanceStore",
    "PostgresStore",
    "SearchHit",
    "StoredChunk",
    "is_postgres_url",
    "open_store",
]
