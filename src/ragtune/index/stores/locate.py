"""Which store a ``--store`` value means: how it is named, checked and opened.

A store is ``lancedb`` (embedded, inside the index directory) or a
``postgresql://`` URL, optionally with ``?table=NAME``. The manifest keeps the
store's *name*: ``lancedb``, or the URL without its password and without the
table (which the manifest keeps apart).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ragtune.errors import RagtuneError
from ragtune.index.stores.base import ChunkStore
from ragtune.index.stores.lance import LanceStore
from ragtune.index.stores.postgres import (
    PostgresStore,
    check_table_name,
    is_postgres_url,
    split_store_url,
)
from ragtune.url_options import redact

EMBEDDED = "lancedb"
EMBEDDED_DIR = "lancedb"


def store_name(store: str) -> str:
    """How the manifest names a store: ``lancedb``, or the URL without password or table."""
    if store == EMBEDDED:
        return EMBEDDED
    if not is_postgres_url(store):
        raise RagtuneError(f"unknown store {redact(store)!r}; use lancedb or a postgresql:// URL")
    return redact(split_store_url(store)[0])


def new_table_name(store: str) -> str:
    """The table a new index in the server store ``store`` writes: the URL's
    ``table`` parameter, else a fresh name."""
    chosen = split_store_url(store)[1]
    if chosen:
        return check_table_name(chosen)
    # One table per index, so several indexes can share a database.
    return f"ragtune_{secrets.token_hex(6)}"


def probe_store(store: str) -> None:
    """Raise now if ``store`` names no usable store (bad scheme, server unreachable),
    before any slow work is done for it."""
    if store_name(store) == EMBEDDED:
        return
    table = split_store_url(store)[1]
    if table is not None:
        check_table_name(table)
    probe = PostgresStore(store, "probe", 1)
    try:
        _ = probe.connection
    finally:
        probe.close()


def open_store(index_dir: Path, store: str, table: str, dimensions: int) -> ChunkStore:
    """The store an index's manifest names: ``lancedb`` (inside the index directory)
    or a ``postgresql://`` URL."""
    if store == EMBEDDED:
        return LanceStore(index_dir / EMBEDDED_DIR, dimensions)
    return PostgresStore(store, table, dimensions)
