"""The server store: chunks in a PostgreSQL table, vectors in pgvector.

Vectors are searched through an HNSW index (cosine), keywords through a GIN
index over a generated ``tsvector`` ranked by ``ts_rank_cd`` (PostgreSQL has
no BM25), and metadata is ``jsonb`` so filters reach any key. Every write is
one transaction, so readers on other connections see the old chunks of a
document or its new ones, never a mix.

The password is never stored in the index or shown: give it through
``PGPASSWORD`` or ``~/.pgpass`` as libpq reads them, or in the URL (as its
userinfo or a ``password=`` parameter) each time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import numpy as np

from ragtune.errors import InvalidIndexError, StoreConnectionError, first_line
from ragtune.index.filters import COLUMN_KEYS, MetadataFilter, MetadataFilters
from ragtune.index.stores.base import Row, SearchHit, StoredChunk, batches
from ragtune.url_options import redact, replace_url_parts

if TYPE_CHECKING:
    import psycopg

SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 5
ANY_BATCH = 5000
EF_SEARCH_DEFAULT = 40  # pgvector's default for hnsw.ef_search
EF_SEARCH_MAX = 1000  # and its upper bound
_WORD = re.compile(r"[^\W_]+")
_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_ROW_COLUMNS = "id, doc_id, url, title, header, text, chunk_index, metadata, vector"
_SQL_OPERATORS = {"==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


def is_postgres_url(location: str) -> bool:
    return urlsplit(location).scheme in SCHEMES


def split_store_url(url: str) -> tuple[str, str | None]:
    """The libpq URL and the ``table`` query parameter ragtune adds to it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    table = next((value for key, value in query if key == "table"), None)
    # quote, not urlencode's default quote_plus: libpq reads "+" as a plus sign, so
    # options=-c%20hnsw.ef_search%3D200 must keep its %20.
    rest = urlencode([(key, value) for key, value in query if key != "table"], quote_via=quote)
    return replace_url_parts(url, query=rest), table


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.match(name):
        raise StoreConnectionError(
            f"invalid table name {name!r}: use lower-case letters, digits and _ (63 at most)"
        )
    return name


class PostgresStore:
    """Chunks in one PostgreSQL table with a pgvector column."""

    def __init__(self, url: str, table: str, dimensions: int) -> None:
        self.dsn, _ = split_store_url(url)
        self.location = redact(url)
        self.table = check_table_name(table)
        self.dimensions = dimensions
        self._connection: psycopg.Connection[Any] | None = None
        # The HNSW candidate count of the last vector search (diagnostics, tests).
        self.effective_ef_search: int | None = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        return self._connection

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
            from pgvector.psycopg import register_vector
        except ImportError:
            raise StoreConnectionError(
                "the PostgreSQL store needs the postgres extra: pip install 'ragtune[postgres]'"
            ) from None
        try:
            connection = psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S)
        except (psycopg.Error, ValueError) as error:
            raise StoreConnectionError(
                f"cannot connect to {self.location}: {redact(first_line(error))}"
            ) from None
        try:
            with connection.transaction():
                connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(connection)
        except psycopg.Error as error:
            connection.close()
            raise StoreConnectionError(
                f"{self.location}: the pgvector extension is not available "
                f"({redact(first_line(error))})"
            ) from None
        return connection

    @contextmanager
    def _errors_reported(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        connection = self.connection
        try:
            yield connection
        except psycopg.OperationalError as error:
            connection.close()
            raise StoreConnectionError(f"{self.location}: {redact(first_line(error))}") from None
        except psycopg.Error as error:
            raise InvalidIndexError(
                f"{self.location} table {self.table}: {redact(first_line(error))}"
            ) from None

    def ensure_table(self) -> None:
        t = self.table
        with self._errors_reported() as db, db.transaction():
            db.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {t} (
                    id text PRIMARY KEY,
                    doc_id text NOT NULL,
                    url text NOT NULL,
                    title text NOT NULL,
                    header text NOT NULL,
                    text text NOT NULL,
                    search_text text NOT NULL,
                    embed_hash text NOT NULL,
                    chunk_index integer NOT NULL,
                    metadata jsonb NOT NULL,
                    vector vector({self.dimensions}) NOT NULL,
                    search_tsv tsvector
                        GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED
                )"""
            )
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_doc_id ON {t} (doc_id, chunk_index)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_embed_hash ON {t} (embed_hash)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {t}_search ON {t} USING gin (search_tsv)")
            db.execute(
                f"CREATE INDEX IF NOT EXISTS {t}_vector ON {t} "
                "USING hnsw (vector vector_cosine_ops)"
            )

    def check_readable(self) -> None:
        with self._errors_reported() as db:
            found = db.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()
            db.rollback()
        if not found or found[0] is None:
            raise InvalidIndexError(f"{self.location} has no table {self.table}")

    def replace_documents(self, doc_ids: list[str], chunks: list[StoredChunk]) -> None:
        if not doc_ids:
            return
        t = self.table
        with self._errors_reported() as db, db.transaction():
            db.execute(f"DELETE FROM {t} WHERE doc_id = ANY(%s)", (doc_ids,))
            with db.cursor().copy(
                f"COPY {t} (id, doc_id, url, title, header, text, search_text, embed_hash, "
                "chunk_index, metadata, vector) FROM STDIN"
            ) as copy:
                for chunk in chunks:
                    copy.write_row(
                        (
                            *map(_no_nul, (chunk.id, chunk.doc_id, chunk.url, chunk.title)),
                            *map(_no_nul, (chunk.header, chunk.text, chunk.embed_text)),
                            chunk.embed_hash,
                            chunk.chunk_index,
                            _json(chunk.metadata),
                            _vector_text(chunk.vector),
                        )
                    )

    def delete_documents(self, doc_ids: list[str]) -> None:
        if not doc_ids:
            return
        with self._errors_reported() as db, db.transaction():
            db.execute(f"DELETE FROM {self.table} WHERE doc_id = ANY(%s)", (doc_ids,))

    def search_vector(
        self, vector: np.ndarray, limit: int, filters: MetadataFilters | None = None
    ) -> list[SearchHit]:
        where, params = where_clause(filters)
        with self._errors_reported() as db, db.transaction():
            # Keep scanning the HNSW graph until `limit` rows pass the filter
            # (pgvector 0.8).
            db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            self.effective_ef_search = self._widen_ef_search(db, limit)
            rows = db.execute(
                f"SELECT {_ROW_COLUMNS}, vector <=> %s AS distance FROM {self.table} "
                f"{where} ORDER BY distance LIMIT %s",
                [np.asarray(vector, dtype=np.float32), *params, limit],
            ).fetchall()
        return [SearchHit(row=_row(row), score=1.0 - float(row[-1])) for row in rows]

    @staticmethod
    def _widen_ef_search(db: psycopg.Connection[Any], limit: int) -> int:
        """Look at no fewer than ``2 x limit`` HNSW candidates, for this transaction only.

        The server's own ``hnsw.ef_search`` (``ALTER DATABASE``/``ALTER ROLE ... SET``, or
        ``options=-c hnsw.ef_search=N`` in the store URL) is kept when it is wider: recall
        at a million chunks needs hundreds of candidates, and that is the operator's
        trade of latency for recall, which a fixed value here would override.
        """
        wanted = min(EF_SEARCH_MAX, limit * 2)
        # Before pgvector's library is loaded in this session the setting may be unknown
        # (NULL with missing_ok): then pgvector's own default applies.
        row = db.execute(
            "SELECT set_config('hnsw.ef_search', greatest(coalesce(nullif("
            "current_setting('hnsw.ef_search', true), '')::int, %s), %s)::text, true)",
            [EF_SEARCH_DEFAULT, wanted],
        ).fetchone()
        return int(row[0]) if row else wanted

    def search_keyword(
        self, query: str, limit: int, filters: MetadataFilters | None = None
    ) -> list[SearchHit]:
        words = sorted(set(_WORD.findall(query.lower())))
        if not words:
            return []
        # Any word may match (OR), as in BM25; to_tsquery stems them and drops stop words.
        tsquery = " | ".join(words[:64])
        where, params = where_clause(filters, "search_tsv @@ q")
        with self._errors_reported() as db, db.transaction():
            rows = db.execute(
                f"SELECT {_ROW_COLUMNS}, ts_rank_cd(search_tsv, q, 1) AS rank "
                f"FROM {self.table}, to_tsquery('english', %s) AS q "
                f"{where} ORDER BY rank DESC, id LIMIT %s",
                [tsquery, *params, limit],
            ).fetchall()
        return [SearchHit(row=_row(row), score=float(row[-1])) for row in rows]

    def count(self) -> int:
        return int(self._scalar(f"SELECT count(*) FROM {self.table}"))

    def count_documents(self) -> int:
        return int(self._scalar(f"SELECT count(*) FROM {self.table} WHERE chunk_index = 0"))

    def _scalar(self, sql: str) -> Any:
        with self._errors_reported() as db, db.transaction():
            row = db.execute(sql).fetchone()
        return row[0] if row else None

    def _select(self, sql: str, values: list[str]) -> Iterator[tuple[Any, ...]]:
        for batch in batches(values, ANY_BATCH):
            with self._errors_reported() as db, db.transaction():
                yield from db.execute(sql, (batch,)).fetchall()

    def cached_vectors(self, hashes: set[str]) -> dict[str, np.ndarray]:
        sql = f"SELECT DISTINCT ON (embed_hash) embed_hash, vector FROM {self.table} "
        sql += "WHERE embed_hash = ANY(%s)"
        return {key: _numpy(vector) for key, vector in self._select(sql, sorted(hashes))}

    def content_hashes(self, doc_ids: list[str]) -> dict[str, str]:
        sql = f"SELECT doc_id, metadata->>'content_hash' FROM {self.table} "
        sql += "WHERE chunk_index = 0 AND doc_id = ANY(%s)"
        return {doc_id: value or "" for doc_id, value in self._select(sql, doc_ids)}

    def document_metadata(self) -> dict[str, dict[str, Any]]:
        with self._errors_reported() as db, db.transaction():
            rows = db.execute(
                f"SELECT url, metadata FROM {self.table} WHERE chunk_index = 0"
            ).fetchall()
        return {url: metadata for url, metadata in rows}

    def document_hashes(self) -> dict[str, tuple[str, str]]:
        with self._errors_reported() as db, db.transaction():
            rows = db.execute(
                f"SELECT doc_id, url, metadata->>'content_hash' FROM {self.table} "
                "WHERE chunk_index = 0"
            ).fetchall()
        return {doc_id: (url, digest or "") for doc_id, url, digest in rows}

    def chunk_ids(self) -> list[str]:
        with self._errors_reported() as db, db.transaction():
            return [row[0] for row in db.execute(f"SELECT id FROM {self.table}").fetchall()]

    def chunk_texts(self) -> list[tuple[str, int, str, str]]:
        with self._errors_reported() as db, db.transaction():
            rows = db.execute(f"SELECT doc_id, chunk_index, url, text FROM {self.table}").fetchall()
        return [(doc_id, index, url, text) for doc_id, index, url, text in rows]

    def document_chunks(self, doc_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        with self._errors_reported() as db, db.transaction():
            rows = db.execute(
                f"SELECT chunk_index, text, metadata FROM {self.table} "
                "WHERE doc_id = %s ORDER BY chunk_index",
                (_no_nul(doc_id),),  # as the id was written
            ).fetchall()
        return [(index, text, metadata) for index, text, metadata in rows]

    def drop(self) -> None:
        """Remove the table and everything in it."""
        with self._errors_reported() as db, db.transaction():
            db.execute(f"DROP TABLE IF EXISTS {self.table}")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def where_clause(filters: MetadataFilters | None, *conditions: str) -> tuple[str, list[Any]]:
    """Filters (and fixed conditions) as a SQL WHERE clause and its parameters."""
    parts = list(conditions)
    params: list[Any] = []
    for item in filters.filters if filters else ():
        sql, values = _condition(item)
        parts.append(f"({sql})")
        params.extend(values)
    return ("WHERE " + " AND ".join(parts) if parts else ""), params


def _condition(item: MetadataFilter) -> tuple[str, list[Any]]:
    if item.key in COLUMN_KEYS:
        column = item.key  # a fixed name from COLUMN_KEYS, never user text
        if item.operator == "in":
            return f"{column} = ANY(%s)", [[str(v) for v in item.values]]
        if item.operator == "prefix":
            return f"starts_with({column}, %s)", [item.value]
        return f"{column} {_SQL_OPERATORS[item.operator]} %s", [str(item.value)]
    if item.operator == "in":
        return "metadata -> %s = ANY(%s::jsonb[])", [
            item.key,
            [json.dumps(v) for v in item.values],
        ]
    if item.operator == "prefix":
        return "starts_with(metadata ->> %s, %s)", [item.key, item.value]
    # jsonb compares numbers as numbers and strings as strings.
    condition = f"metadata -> %s {_SQL_OPERATORS[item.operator]} %s::jsonb"
    params = [item.key, json.dumps(item.value)]
    if item.operator == "!=":
        return f"metadata -> %s IS NULL OR {condition}", [item.key, *params]
    return condition, params


def _row(values: tuple[Any, ...]) -> Row:
    keys = ("id", "doc_id", "url", "title", "header", "text", "chunk_index", "metadata", "vector")
    row = dict(zip(keys, values, strict=False))
    row["vector"] = _numpy(row["vector"])
    return row


def _numpy(vector: Any) -> np.ndarray:
    # pgvector's loader gives a Vector object (newer releases) or a numpy array.
    return np.asarray(
        vector.to_numpy() if hasattr(vector, "to_numpy") else vector, dtype=np.float32
    )


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.8g}" for value in np.asarray(vector, dtype=np.float32)) + "]"


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters; a scraped page sometimes does.
    return text.replace("\x00", "")


def _json(metadata: dict[str, Any]) -> str:
    # jsonb rejects the \u0000 escape as well as a raw NUL.
    return json.dumps(metadata, ensure_ascii=False, default=str).replace("\\u0000", "")
