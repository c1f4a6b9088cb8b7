"""The embedded store: one LanceDB table of chunks under the index directory."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ragtune.errors import InvalidIndexError, first_line
from ragtune.index.filters import COLUMN_KEYS, FilterValue, MetadataFilter, MetadataFilters
from ragtune.index.stores.base import Row, SearchHit, StoredChunk, batches

TABLE = "chunks"
IN_LIST_BATCH = 500  # values per SQL IN (...) list
# Below this many chunks an exact scan is fast enough (about 30 ms at 50k on one
# core); above it, an IVF-HNSW index with scalar-quantised vectors keeps a query
# near 15 ms at 100k with the same recall@5 on XQuAD (bench/store_latency.py).
VECTOR_INDEX_MIN_ROWS = 50_000
VECTOR_INDEX_NPROBES = 8
# Rows written since the index was built are searched exactly; past this share
# of the indexed rows they are folded into the index.
VECTOR_INDEX_MAX_UNINDEXED = 0.1
_RUST_LOCATION = re.compile(r",\s*/\S+\.rs:\d+:\d+")
_SQL_OPERATORS = {"==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


def schema(dimensions: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("doc_id", pa.string()),
            ("url", pa.string()),
            ("title", pa.string()),
            ("header", pa.string()),
            ("text", pa.string()),
            # What BM25 sees: the same header-plus-passage text the embedder saw.
            ("search_text", pa.string()),
            ("embed_hash", pa.string()),
            ("chunk_index", pa.int32()),
            # A JSON column, so filters can reach any key (json_get_* in SQL).
            ("metadata", pa.json_(pa.utf8())),
            ("vector", pa.list_(pa.float32(), dimensions)),
        ]
    )


class LanceStore:
    """Chunks with their vectors; every write is one atomic LanceDB commit."""

    def __init__(self, directory: Path, dimensions: int) -> None:
        # Lance's Rust logger writes warnings straight to stderr; ragtune reports
        # problems itself, as one line.
        os.environ.setdefault("LANCEDB_LOG", "error")
        import lancedb

        self.directory = directory
        self.location = str(directory)
        self.dimensions = dimensions
        with self._damage_reported():
            # Check for other processes' commits on every read: a long-lived reader
            # (a server, a chat) must see what an ingest running beside it commits.
            self._db = lancedb.connect(str(directory), read_consistency_interval=timedelta(0))
        self._table: Any = None

    @contextmanager
    def _damage_reported(self) -> Iterator[None]:
        """Turn LanceDB's read failures into one-line InvalidIndexErrors naming the index."""
        try:
            yield
        except (OSError, ValueError, RuntimeError) as error:
            raise InvalidIndexError(
                f"{self.directory.parent}: the index data is damaged ({_first_line(error)})"
            ) from None

    @property
    def table(self) -> Any:
        """The table, created if missing: for writers only."""
        if self._opened() is None:
            with self._damage_reported():
                # exist_ok: another process may create it at the same moment.
                self._table = self._db.create_table(
                    TABLE, schema=schema(self.dimensions), exist_ok=True
                )
        return self._table

    def _opened(self) -> Any | None:
        """The table if it exists. Readers never create it: an index killed before
        its first commit is simply empty."""
        if self._table is None:
            with self._damage_reported():
                if TABLE in self._db.list_tables().tables:
                    self._table = self._open_unless_being_created()
        return self._table

    def _open_unless_being_created(self) -> Any | None:
        try:
            return self._db.open_table(TABLE)
        except ValueError:
            if self._being_created():
                return None
            raise

    def _being_created(self) -> bool:
        """Whether the table's directory exists without its first version yet: another
        process is creating it right now (LanceDB lists it, but cannot open it until the
        first manifest is written). To a reader it is as empty as a missing table."""
        versions = self.directory / f"{TABLE}.lance" / "_versions"
        return not any(versions.glob("*.manifest"))

    def ensure_table(self) -> None:
        _ = self.table

    def check_readable(self) -> None:
        self.count()

    def replace_documents(self, doc_ids: list[str], chunks: list[StoredChunk]) -> None:
        if not doc_ids:
            return
        data = pa.Table.from_pylist([_row(c) for c in chunks], schema=schema(self.dimensions))
        stale = f"doc_id IN ({_sql_list(doc_ids)})"
        (
            self.table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(stale)
            .execute(data)
        )
        self._refresh_keyword_index()
        self._maintain_vector_index()

    def delete_documents(self, doc_ids: list[str]) -> None:
        if not doc_ids:
            return
        with self._damage_reported():
            self.table.delete(f"doc_id IN ({_sql_list(doc_ids)})")
        self._refresh_keyword_index()

    def _refresh_keyword_index(self) -> None:
        from lancedb.index import FTS

        self.table.create_index("search_text", config=FTS(), replace=True)

    def _maintain_vector_index(self) -> None:
        from lancedb.index import IvfHnswSq

        rows = self.table.count_rows()
        if rows < VECTOR_INDEX_MIN_ROWS:
            return
        stats = self._vector_index_stats()
        if stats is None:
            partitions = max(8, int(rows**0.5 / 20))
            self.table.create_index(
                "vector", config=IvfHnswSq(distance_type="cosine", num_partitions=partitions)
            )
        elif stats.num_unindexed_rows > VECTOR_INDEX_MAX_UNINDEXED * stats.num_indexed_rows:
            self.table.optimize()

    def _vector_index_stats(self) -> Any | None:
        for index in self.table.list_indices():
            if list(index.columns) == ["vector"]:
                return self.table.index_stats(index.name)
        return None

    def search_vector(
        self, vector: np.ndarray, limit: int, filters: MetadataFilters | None = None
    ) -> list[SearchHit]:
        if self.count() == 0:
            return []
        with self._damage_reported():
            query = (
                self.table.search(vector, vector_column_name="vector")
                .distance_type("cosine")
                .nprobes(VECTOR_INDEX_NPROBES)
            )
            if filters:
                query = query.where(where_clause(filters), prefilter=True)
            rows = query.limit(limit).to_list()
        return [
            SearchHit(row=_parsed(row), score=1.0 - float(row.pop("_distance"))) for row in rows
        ]

    def search_keyword(
        self, query: str, limit: int, filters: MetadataFilters | None = None
    ) -> list[SearchHit]:
        if self.count() == 0:
            return []
        with self._damage_reported():
            search = self.table.search(query, query_type="fts", fts_columns="search_text")
            if filters:
                search = search.where(where_clause(filters), prefilter=True)
            rows = search.limit(limit).to_list()
        return [SearchHit(row=_parsed(row), score=float(row.pop("_score"))) for row in rows]

    def count(self) -> int:
        table = self._opened()
        if table is None:
            return 0
        with self._damage_reported():
            return int(table.count_rows())

    def cached_vectors(self, hashes: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for batch in batches(sorted(hashes), IN_LIST_BATCH):
            for row in self._select(
                f"embed_hash IN ({_sql_list(batch)})", ["embed_hash", "vector"]
            ):
                found[row["embed_hash"]] = np.asarray(row["vector"], dtype=np.float32)
        return found

    def content_hashes(self, doc_ids: list[str]) -> dict[str, str]:
        hashes: dict[str, str] = {}
        for batch in batches(doc_ids, IN_LIST_BATCH):
            where = f"chunk_index = 0 AND doc_id IN ({_sql_list(batch)})"
            for row in self._select(where, ["doc_id", "metadata"]):
                hashes[row["doc_id"]] = json.loads(row["metadata"]).get("content_hash", "")
        return hashes

    def _select(self, where: str | None, columns: list[str]) -> list[dict[str, Any]]:
        rows = self.count()
        if rows == 0:
            return []
        with self._damage_reported():
            query = self.table.search()
            if where:
                query = query.where(where)
            return list(query.select(columns).limit(rows).to_list())

    def document_metadata(self) -> dict[str, dict[str, Any]]:
        rows = self._select("chunk_index = 0", ["url", "metadata"])
        return {row["url"]: json.loads(row["metadata"]) for row in rows}

    def document_hashes(self) -> dict[str, tuple[str, str]]:
        rows = self._select("chunk_index = 0", ["doc_id", "url", "metadata"])
        return {
            row["doc_id"]: (row["url"], json.loads(row["metadata"]).get("content_hash", ""))
            for row in rows
        }

    def count_documents(self) -> int:
        # One chunk 0 per document, and only the doc_id column is read.
        return len(self._select("chunk_index = 0", ["doc_id"]))

    def chunk_ids(self) -> list[str]:
        return [row["id"] for row in self._select(None, ["id"])]

    def chunk_texts(self) -> list[tuple[str, int, str, str]]:
        rows = self._select(None, ["doc_id", "chunk_index", "url", "text"])
        return [(r["doc_id"], r["chunk_index"], r["url"], r["text"]) for r in rows]

    def document_chunks(self, doc_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self._select(f"doc_id = {_sql_string(doc_id)}", ["chunk_index", "text", "metadata"])
        return sorted(
            ((row["chunk_index"], row["text"], json.loads(row["metadata"])) for row in rows),
            key=lambda chunk: chunk[0],
        )

    def close(self) -> None:
        self._table = None


def where_clause(filters: MetadataFilters) -> str:
    """Filters as a LanceDB (DataFusion) SQL condition."""
    return " AND ".join(f"({_condition(item)})" for item in filters.filters)


def _condition(item: MetadataFilter) -> str:
    if item.operator == "in":
        # One comparison per value type: a JSON value is read as the filter value's type.
        return " OR ".join(
            f"{_field(item.key, value)} = {_literal(value)}" for value in item.values
        )
    value = item.values[0]
    field = _field(item.key, value)
    if item.operator == "prefix":
        return f"starts_with({field}, {_literal(value)})"
    condition = f"{field} {_SQL_OPERATORS[item.operator]} {_literal(value)}"
    # A document without the key is "not equal" to any value.
    return f"{field} IS NULL OR {condition}" if item.operator == "!=" else condition


def _field(key: str, value: FilterValue) -> str:
    if key in COLUMN_KEYS:
        return key
    if isinstance(value, bool):
        function = "json_get_bool"
    elif isinstance(value, int | float):
        function = "json_get_float"
    else:
        function = "json_get_string"
    return f"{function}(metadata, {_sql_string(key)})"


def _literal(value: FilterValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value))
    return _sql_string(value)


def _row(chunk: StoredChunk) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "doc_id": chunk.doc_id,
        "url": chunk.url,
        "title": chunk.title,
        "header": chunk.header,
        "text": chunk.text,
        "search_text": chunk.embed_text,
        "embed_hash": chunk.embed_hash,
        "chunk_index": chunk.chunk_index,
        "metadata": json.dumps(chunk.metadata, ensure_ascii=False, default=str),
        "vector": chunk.vector.astype(np.float32),
    }


def _parsed(row: dict[str, Any]) -> Row:
    row["metadata"] = json.loads(row["metadata"])
    row["vector"] = np.asarray(row["vector"], dtype=np.float32)
    return row


def _sql_list(values: list[str]) -> str:
    return ", ".join(_sql_string(value) for value in values)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_line(error: BaseException) -> str:
    # Lance appends the Rust source location of the error; it means nothing to a user.
    return _RUST_LOCATION.sub("", first_line(error, limit=10_000))[:200]
