"""Chunk stores: the embedded LanceDB default and PostgreSQL + pgvector."""

from __future__ import annotations

from ragtune.index.stores.base import ChunkStore, SearchHit, StoredChunk
from ragtune.index.stores.lance import LanceStore
from ragtune.index.stores.locate import EMBEDDED, open_store, probe_store, store_name
from ragtune.index.stores.postgres import PostgresStore, is_postgres_url

__all__ = [
    "EMBEDDED",
    "ChunkStore",
    "LanceStore",
    "PostgresStore",
    "SearchHit",
    "StoredChunk",
    "is_postgres_url",
    "open_store",
    "probe_store",
    "store_name",
]
