"""The PostgreSQL store's HNSW candidate count: wide enough for the asked top-k, and never
narrower than what the operator set on the server or in the store URL."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from tests.postgres_server import PostgresServer

from ragtune import Document, VectorStoreIndex
from ragtune.index.stores.postgres import PostgresStore

DIMENSIONS = 4


@pytest.fixture()
def table(postgres: PostgresServer) -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _store(url: str, table: str) -> PostgresStore:
    store = PostgresStore(url, table, DIMENSIONS)
    store.ensure_table()
    return store


def _search(store: PostgresStore, limit: int) -> int:
    store.search_vector(np.ones(DIMENSIONS, dtype=np.float32), limit)
    assert store.effective_ef_search is not None
    return store.effective_ef_search


def test_the_default_looks_at_twice_the_top_k(postgres: PostgresServer, table: str) -> None:
    store = _store(postgres.table_url(table), table)
    try:
        assert _search(store, 5) == 40  # pgvector's default is wider than 2 x 5
        assert _search(store, 300) == 600
        assert _search(store, 5000) == 1000  # pgvector's upper bound
    finally:
        store.close()


def test_the_servers_setting_is_kept_and_not_changed(postgres: PostgresServer, table: str) -> None:
    """As ALTER DATABASE/ROLE ... SET hnsw.ef_search would set it for every session."""
    store = _store(postgres.table_url(table), table)
    try:
        with store.connection.transaction():  # the store's connection is not autocommit
            store.connection.execute("SET hnsw.ef_search = 250")
        assert _search(store, 5) == 250
        assert _search(store, 200) == 400
        # set for the search's transaction only: the session's value is untouched
        with store.connection.transaction():
            assert store.connection.execute("SHOW hnsw.ef_search").fetchone() == ("250",)
    finally:
        store.close()


def test_options_in_the_store_url_reach_every_search(
    postgres: PostgresServer, table: str, tmp_path: Path
) -> None:
    options = quote("-c hnsw.ef_search=300")
    url = f"{postgres.table_url(table)}&options={options}"
    documents = [
        Document(text=f"The {colour} lantern burns for {hours} hours.", metadata={"url": f"n{i}"})
        for i, (colour, hours) in enumerate([("red", 12), ("blue", 30), ("green", 7)])
    ]
    index = VectorStoreIndex.from_documents(documents, persist_dir=tmp_path / "idx", store=url)
    reopened = VectorStoreIndex.load(tmp_path / "idx")
    nodes = reopened.as_retriever(similarity_top_k=2, mode="dense").retrieve("blue lantern")
    assert "blue" in nodes[0].text
    store = reopened.store
    assert isinstance(store, PostgresStore)
    assert store.effective_ef_search == 300
    index.close()
    reopened.close()
