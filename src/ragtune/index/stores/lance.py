"""The embedded vector store: one LanceDB table of chunks under the index directory."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ragtune.documents import content_hash
from ragtune.errors import InvalidIndexError

TABLE = "chunks"
IN_LIST_BATCH = 500  # values per SQL IN (...) list
_RUST_LOCATION = re.compile(r",\s*/\S+\.rs:\d+:\d+")


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

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "doc_id": self.doc_id,
            "url": self.url,
            "title": self.title,
            "header": self.header,
            "text": self.text,
            "search_text": self.embed_text,
            "embed_hash": self.embed_hash,
            "chunk_index": self.chunk_index,
            "metadata": json.dumps(self.metadata, ensure_ascii=False, default=str),
            "vector": self.vector.astype(np.float32),
        }


@dataclass
class SearchHit:
    row: dict[str, Any]
    score: float


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
            ("metadata", pa.string()),
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
        self.dimensions = dimensions
        with self._damage_reported():
            self._db = lancedb.connect(str(directory))
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
        if self._table is None:
            with self._damage_reported():
                if TABLE in self._db.list_tables().tables:
                    self._table = self._db.open_table(TABLE)
                else:
                    self._table = self._db.create_table(TABLE, schema=schema(self.dimensions))
        return self._table

    def ensure_table(self) -> None:
        """Open the table, creating it empty if the store is new."""
        _ = self.table

    def check_readable(self) -> None:
        """Open the table and read its size, so damage is reported at load time."""
        with self._damage_reported():
            self.table.count_rows()

    def replace_documents(self, doc_ids: list[str], chunks: list[StoredChunk]) -> None:
        """Insert ``chunks`` and drop every other chunk of ``doc_ids``, in one commit."""
        if not doc_ids:
            return
        data = pa.Table.from_pylist([c.row() for c in chunks], schema=schema(self.dimensions))
        stale = f"doc_id IN ({_sql_list(doc_ids)})"
        (
            self.table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(stale)
            .execute(data)
        )
        self._refresh_keyword_index()

    def _refresh_keyword_index(self) -> None:
        from lancedb.index import FTS

        self.table.create_index("search_text", config=FTS(), replace=True)

    def search_vector(self, vector: np.ndarray, limit: int) -> list[SearchHit]:
        """Nearest chunks by cosine similarity; score in [-1, 1], higher is closer."""
        if self.count() == 0:
            return []
        with self._damage_reported():
            rows = (
                self.table.search(vector, vector_column_name="vector")
                .distance_type("cosine")
                .limit(limit)
                .to_list()
            )
        return [SearchHit(row=row, score=1.0 - float(row.pop("_distance"))) for row in rows]

    def search_keyword(self, query: str, limit: int) -> list[SearchHit]:
        """Best chunks by BM25 over the passage, its title and section path."""
        if self.count() == 0:
            return []
        with self._damage_reported():
            rows = (
                self.table.search(query, query_type="fts", fts_columns="search_text")
                .limit(limit)
                .to_list()
            )
        return [SearchHit(row=row, score=float(row.pop("_score"))) for row in rows]

    def count(self) -> int:
        return int(self.table.count_rows())

    def cached_vectors(self, hashes: set[str]) -> dict[str, np.ndarray]:
        """Stored vectors for the embed hashes that are already in the index."""
        found: dict[str, np.ndarray] = {}
        for batch in _batches(sorted(hashes), IN_LIST_BATCH):
            for row in self._select(
                f"embed_hash IN ({_sql_list(batch)})", ["embed_hash", "vector"]
            ):
                found[row["embed_hash"]] = np.asarray(row["vector"], dtype=np.float32)
        return found

    def content_hashes(self, doc_ids: list[str]) -> dict[str, str]:
        """The content hash each of ``doc_ids`` was indexed with, for those indexed."""
        hashes: dict[str, str] = {}
        for batch in _batches(doc_ids, IN_LIST_BATCH):
            where = f"chunk_index = 0 AND doc_id IN ({_sql_list(batch)})"
            for row in self._select(where, ["doc_id", "metadata"]):
                hashes[row["doc_id"]] = json.loads(row["metadata"]).get("content_hash", "")
        return hashes

    def _select(self, where: str, columns: list[str]) -> list[dict[str, Any]]:
        rows = self.count()
        if rows == 0:
            return []
        with self._damage_reported():
            return list(self.table.search().where(where).select(columns).limit(rows).to_list())

    def document_metadata(self) -> dict[str, dict[str, Any]]:
        """The metadata of each indexed document (that of its first chunk), by URL."""
        rows = self._select("chunk_index = 0", ["url", "metadata"])
        return {row["url"]: json.loads(row["metadata"]) for row in rows}

    def count_documents(self) -> int:
        # One chunk 0 per document, and only the doc_id column is read.
        return len(self._select("chunk_index = 0", ["doc_id"]))


def _sql_list(values: list[str]) -> str:
    return ", ".join(_sql_string(value) for value in values)


def _batches(values: list[str], size: int) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _first_line(error: BaseException) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    # Lance appends the Rust source location of the error; it means nothing to a user.
    return _RUST_LOCATION.sub("", line)[:200]
