"""VectorStoreIndex: documents in, a persistent searchable index out (LlamaIndex's names)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import numpy as np

from ragtune.documents import OUTLINKS, Document, NodeWithScore, TextNode, content_hash
from ragtune.errors import InvalidIndexError, InvalidQueryError, RagtuneError
from ragtune.index.chunking import ChunkingConfig, MarkdownChunker
from ragtune.index.embedding import TextEmbedder, is_remote_spec, make_embedder
from ragtune.index.filters import FiltersArgument, MetadataFilters, as_filters
from ragtune.index.lock import LOCK_FILE, write_lock
from ragtune.index.manifest import MANIFEST, Manifest
from ragtune.index.mmr import DEFAULT_MMR_LAMBDA, mmr_select
from ragtune.index.stores import EMBEDDED, ChunkStore, SearchHit, StoredChunk, open_store
from ragtune.index.stores.postgres import check_table_name, is_postgres_url
from ragtune.questions import validate_query
from ragtune.url_options import redact

if TYPE_CHECKING:
    from ragtune.llm.base import LLM
    from ragtune.query.engine import RetrieverQueryEngine

RetrievalMode = Literal["hybrid", "dense", "keyword"]
RETRIEVAL_MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")
# Standard RRF constant; each ranking is read this many times deeper than top-k.
RRF_K = 60
FUSION_DEPTH = 4
ProgressHook = Callable[[int, int], None]
# Documents are committed in groups of about this many chunks: a killed ingest
# keeps what it committed, and the rerun skips those documents.
COMMIT_CHUNKS = 512


@dataclass
class InsertStats:
    """What the last insert did: documents seen, left as they were (same text),
    chunks written, and chunks actually embedded (the rest came from the cache)."""

    documents: int = 0
    unchanged: int = 0
    chunks: int = 0
    embedded: int = 0


class VectorStoreIndex:
    """A persistent index of document chunks and their embeddings."""

    def __init__(
        self,
        persist_dir: Path,
        manifest: Manifest,
        embedder: TextEmbedder,
        store_url: str | None = None,
    ) -> None:
        self.persist_dir = persist_dir
        self.last_insert = InsertStats()
        self.manifest = manifest
        self.embedder = embedder
        self.store: ChunkStore = open_store(
            persist_dir, store_url or manifest.store, manifest.table, manifest.dimensions
        )
        self.chunker = MarkdownChunker(
            embedder.count_tokens, ChunkingConfig(manifest.chunk_size, manifest.chunk_overlap)
        )

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        persist_dir: str | Path | None = None,
        embed_model: str | Path | TextEmbedder | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        progress: ProgressHook | None = None,
        store: str | None = None,
        commit_every: int = COMMIT_CHUNKS,
    ) -> VectorStoreIndex:
        """Build an index from ``documents``, or add them to the index already at ``persist_dir``.

        Without ``persist_dir`` the index lives in a temporary directory removed at exit.
        A document whose URL is already indexed replaces its old chunks. ``store`` is
        ``"lancedb"`` (the default, inside ``persist_dir``) or a ``postgresql://`` URL
        (add ``?table=NAME`` to choose the table); ``persist_dir`` then holds the
        index's description only. Writers into one index take turns (see
        ``ragtune.index.lock``); the first one creates it.
        """
        if not documents:
            raise RagtuneError("no documents to index: every source failed or was empty")
        temporary = persist_dir is None
        directory = Path(persist_dir or tempfile.mkdtemp(prefix="ragtune-index-"))
        check_index_target(directory)
        with write_lock(directory):
            if (directory / MANIFEST).exists():
                index = cls.load(directory, embed_model=embed_model, store=store)
            else:
                index = cls._create(directory, embed_model, chunk_size, chunk_overlap, store)
            if temporary:
                weakref.finalize(index, shutil.rmtree, directory, ignore_errors=True)
            index.insert_documents(documents, progress=progress, commit_every=commit_every)
        return index

    @classmethod
    def load(
        cls,
        persist_dir: str | Path,
        embed_model: str | Path | TextEmbedder | None = None,
        store: str | None = None,
    ) -> VectorStoreIndex:
        """Open an index written by ``from_documents`` or ``ragtune ingest``.

        ``store`` may repeat the index's PostgreSQL URL with its password, which
        the index never keeps (libpq's PGPASSWORD and ~/.pgpass work too).
        """
        directory = Path(persist_dir)
        manifest = Manifest.load(directory)
        if store and _store_name(store) != manifest.store:
            raise InvalidIndexError(
                f"{directory} keeps its chunks in {manifest.store}, not {_store_name(store)}"
            )
        if embed_model is None:
            # The embedder the index was built with, on the same backend, so
            # questions are embedded exactly as the passages were.
            embedder = make_embedder(_stored_embedder_spec(manifest), manifest.embedder_backend)
        else:
            embedder = make_embedder(embed_model)
        if embedder.dimensions != manifest.dimensions:
            raise InvalidIndexError(
                f"{directory} was built with {manifest.dimensions}-dimension embeddings, "
                f"but {embedder.spec} makes {embedder.dimensions}"
            )
        index = cls(directory, manifest, embedder, store_url=store)
        index.store.check_readable()
        return index

    @classmethod
    def _create(
        cls,
        directory: Path,
        embed_model: str | Path | TextEmbedder | None,
        chunk_size: int | None,
        chunk_overlap: int | None,
        store: str | None = None,
    ) -> VectorStoreIndex:
        check_index_target(directory)
        embedder = make_embedder(embed_model)
        # The window includes [CLS] and [SEP]; a chunk must fit inside it whole.
        window = embedder.max_tokens - 2
        size = min(chunk_size or ChunkingConfig.chunk_size, window)
        overlap = ChunkingConfig.chunk_overlap if chunk_overlap is None else chunk_overlap
        if size < 16 or not 0 <= overlap < size:
            raise RagtuneError(f"invalid chunking: size {size}, overlap {overlap}")
        store_name, table = _store_name(store or EMBEDDED), "chunks"
        if store_name != EMBEDDED:
            table = _table_name(store or "", directory)
        manifest = Manifest(
            embedder_path=embedder.spec,
            embedder_backend=embedder.backend,
            embedder_name=embedder.name,
            dimensions=embedder.dimensions,
            chunk_size=size,
            chunk_overlap=overlap,
            store=store_name,
            table=table,
        )
        index = cls(directory, manifest, embedder, store_url=store)
        if store_name != EMBEDDED:
            # A server that cannot be reached fails here, before anything is written.
            index.store.ensure_table()
        directory.mkdir(parents=True, exist_ok=True)
        # The manifest before the embedded table: an ingest killed between the two
        # leaves an index that opens (empty) and that the rerun completes.
        manifest.save(directory)
        if store_name == EMBEDDED:
            index.store.ensure_table()
        return index

    def insert_documents(
        self,
        documents: Sequence[Document],
        progress: ProgressHook | None = None,
        commit_every: int = COMMIT_CHUNKS,
    ) -> int:
        """Chunk, embed and store ``documents``; returns the number of chunks written.

        Documents are committed in groups of about ``commit_every`` chunks, each
        group in one atomic write, a document's chunks always together: a failure
        or a kill keeps the groups already committed, and inserting the same
        documents again skips them (their text is unchanged).
        """
        if commit_every < 1:
            raise RagtuneError(f"commit_every must be at least 1, not {commit_every}")
        with write_lock(self.persist_dir):
            return self._insert(documents, progress, commit_every)

    def _insert(
        self, documents: Sequence[Document], progress: ProgressHook | None, commit_every: int
    ) -> int:
        unique = {doc.id_: doc for doc in documents}  # the last copy of a URL wins
        indexed = self.store.content_hashes(list(unique))
        changed = {
            doc_id: doc
            for doc_id, doc in unique.items()
            if indexed.get(doc_id) != content_hash(doc.text)
        }
        chunked = [(doc_id, self._chunks_of(doc)) for doc_id, doc in changed.items()]
        total = sum(len(chunks) for _, chunks in chunked)
        stats = InsertStats(documents=len(unique), unchanged=len(unique) - len(changed))
        self.last_insert = stats
        done = 0
        for group in _commit_groups(chunked, commit_every):
            chunks = [chunk for _, doc_chunks in group for chunk in doc_chunks]
            stats.embedded += self._fill_vectors(chunks, done, total, progress)
            self._record_metadata_keys(chunks)
            self.store.replace_documents([doc_id for doc_id, _ in group], chunks)
            self.manifest.save(self.persist_dir)
            done += len(chunks)
            stats.chunks = done
        return done

    def _fill_vectors(
        self, chunks: list[StoredChunk], done: int, total: int, progress: ProgressHook | None
    ) -> int:
        """Give each chunk its vector; returns how many had to be embedded."""
        # A chunk whose text was embedded before (an unchanged paragraph of a
        # changed page) takes its stored vector instead of being embedded again.
        cached = self.store.cached_vectors({chunk.embed_hash for chunk in chunks})
        # Each new text once, even when several chunks share it (boilerplate).
        fresh = {c.embed_hash: c.embed_text for c in chunks if c.embed_hash not in cached}

        def overall(group_done: int, _group_total: int) -> None:
            if progress:
                progress(done + len(chunks) - len(fresh) + group_done, total)

        vectors = self._embed(list(fresh.values()), overall)
        cached.update(zip(fresh, vectors, strict=True))
        for chunk in chunks:
            chunk.vector = cached[chunk.embed_hash]
        return len(fresh)

    def _record_metadata_keys(self, chunks: list[StoredChunk]) -> None:
        keys = set(self.manifest.metadata_keys)
        for chunk in chunks:
            keys.update(chunk.metadata)
        self.manifest.metadata_keys = sorted(keys)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove the documents with these ids (URLs) and all their chunks; returns
        how many of them were in the index."""
        if not doc_ids:
            return 0
        with write_lock(self.persist_dir):
            present = self.store.content_hashes(list(doc_ids))
            if present:
                self.store.delete_documents(list(present))
                self.manifest.save(self.persist_dir)
        return len(present)

    def _chunks_of(self, document: Document) -> list[StoredChunk]:
        title = str(document.metadata.get("title") or "")
        url = str(document.metadata.get("url") or document.metadata.get("path") or "")
        site = _site_of(url)
        # Once per document: hashed per chunk, a 40 MB text took hours (chunks x size).
        text_hash = content_hash(document.text)
        stored = []
        for number, chunk in enumerate(self.chunker.chunk(document.text, title=title)):
            metadata = dict(document.metadata)
            if site:
                metadata.setdefault("site", site)
            if number > 0:
                metadata.pop(OUTLINKS, None)  # the first chunk carries them for the page
            metadata.update(
                heading_path=list(chunk.headings),
                chunk_index=number,
                # What the next insert compares against to leave an unchanged document alone.
                content_hash=text_hash,
            )
            stored.append(
                StoredChunk(
                    id=f"{document.id_}:{number}",
                    doc_id=document.id_,
                    url=url,
                    title=title,
                    header=chunk.header,
                    text=chunk.text,
                    chunk_index=number,
                    metadata=metadata,
                    vector=None,  # type: ignore[arg-type]  # filled once all are embedded
                    embed_text=chunk.embed_text,
                )
            )
        return stored

    def _embed(self, texts: list[str], progress: ProgressHook | None) -> list[np.ndarray]:
        """Vectors for ``texts``, in their order. The texts go to the embedder
        sorted by length, so a batch pads to similar lengths, not to its longest."""
        batch = 64
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            for position, vector in zip(
                chosen, self.embedder.embed([texts[i] for i in chosen]), strict=True
            ):
                vectors[position] = vector
            if progress:
                progress(min(start + batch, len(texts)), len(texts))
        return vectors

    def as_retriever(
        self,
        similarity_top_k: int = 4,
        mode: RetrievalMode = "hybrid",
        filters: FiltersArgument = None,
        mmr: bool = False,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
    ) -> VectorIndexRetriever:
        return VectorIndexRetriever(self, similarity_top_k, mode, filters, mmr, mmr_lambda)

    def as_query_engine(
        self,
        similarity_top_k: int = 4,
        llm: LLM | str | None = None,
        mode: RetrievalMode = "hybrid",
        filters: FiltersArgument = None,
        mmr: bool = False,
        **kwargs: Any,
    ) -> RetrieverQueryEngine:
        from ragtune.query.engine import RetrieverQueryEngine

        retriever = self.as_retriever(similarity_top_k, mode, filters, mmr)
        return RetrieverQueryEngine(retriever, llm=llm, **kwargs)

    def stats(self) -> dict[str, Any]:
        return {
            "persist_dir": str(self.persist_dir),
            "documents": self.store.count_documents(),
            "chunks": self.store.count(),
            "embedder": self.manifest.embedder_name,
            "chunk_size": self.manifest.chunk_size,
            "store": self.store.location,
        }

    def close(self) -> None:
        """Release the store's connection (PostgreSQL); the index stays usable."""
        self.store.close()


class VectorIndexRetriever:
    """Ranks an index's chunks for a question.

    ``mode="hybrid"`` (the default) fuses BM25 keyword ranks with embedding
    ranks by reciprocal-rank fusion: keywords catch exact names and rare words
    a small embedder blurs, embeddings catch paraphrases. Scores are scaled so
    that first place in both rankings is 1.0. ``"dense"`` and ``"keyword"``
    use one ranking alone, with its own scores.

    ``filters`` restrict the search to matching chunks before ranking (see
    ``ragtune.index.filters``); ``mmr=True`` re-ranks the candidates by maximal
    marginal relevance, trading some relevance (``mmr_lambda`` 1.0 keeps it
    all) for passages that say different things.
    """

    def __init__(
        self,
        index: VectorStoreIndex,
        similarity_top_k: int = 4,
        mode: RetrievalMode = "hybrid",
        filters: FiltersArgument = None,
        mmr: bool = False,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
    ) -> None:
        if similarity_top_k < 1:
            raise InvalidQueryError("top-k must be at least 1")
        if mode not in RETRIEVAL_MODES:
            raise InvalidQueryError(
                f"unknown retrieval mode {mode!r}; use one of {RETRIEVAL_MODES}"
            )
        if not 0.0 <= mmr_lambda <= 1.0:
            raise InvalidQueryError(f"mmr_lambda must be between 0 and 1, not {mmr_lambda}")
        self.index = index
        self.similarity_top_k = similarity_top_k
        self.mode = mode
        self.filters: MetadataFilters = as_filters(filters)
        self.filters.check_keys(index.manifest.metadata_keys)
        self.mmr = mmr
        self.mmr_lambda = mmr_lambda

    def retrieve(self, query: str) -> list[NodeWithScore]:
        query = validate_query(query)
        store = self.index.store
        k = self.similarity_top_k
        # MMR chooses among more candidates than it returns.
        wanted = k * FUSION_DEPTH if self.mmr else k
        filters = self.filters or None
        query_vector = self.index.embedder.embed_query(query)
        if self.mode == "keyword":
            hits = store.search_keyword(query, wanted, filters)
            nodes = [_scored(hit.row, hit.score) for hit in hits]
            similarity = {hit.row["id"]: _cosine(query_vector, hit.row) for hit in hits}
        else:
            dense = store.search_vector(query_vector, wanted * FUSION_DEPTH, filters)
            similarity = {hit.row["id"]: hit.score for hit in dense}
            if self.mode == "dense":
                nodes = [_scored(hit.row, hit.score) for hit in dense[:wanted]]
            else:
                keyword = store.search_keyword(query, wanted * FUSION_DEPTH, filters)
                for hit in keyword:
                    similarity.setdefault(hit.row["id"], _cosine(query_vector, hit.row))
                nodes = reciprocal_rank_fusion({"dense": dense, "keyword": keyword}, wanted)
        if self.mmr:
            nodes = mmr_select(nodes, query_vector, k, self.mmr_lambda)
        # Every node says how close it is to the question on one scale, whichever
        # ranking found it: the query engine cuts weak sources on this.
        for node in nodes:
            node.metadata["similarity"] = similarity[node.node_id]
        return nodes


def reciprocal_rank_fusion(rankings: dict[str, list[SearchHit]], limit: int) -> list[NodeWithScore]:
    """Fuse named rankings; each node keeps its score in each ranking that found it."""
    fused: dict[str, float] = {}
    rows: dict[str, dict[str, Any]] = {}
    scores: dict[str, dict[str, float]] = {}
    for name, ranking in rankings.items():
        for rank, hit in enumerate(ranking, start=1):
            key = hit.row["id"]
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
            rows.setdefault(key, hit.row)
            scores.setdefault(key, {})[name] = hit.score
    best_possible = len(rankings) / (RRF_K + 1)
    order = sorted(fused, key=fused.__getitem__, reverse=True)[:limit]
    nodes = []
    for key in order:
        node = _scored(rows[key], fused[key] / best_possible)
        node.metadata["retrieval_scores"] = scores[key]
        nodes.append(node)
    return nodes


def check_index_target(directory: Path) -> None:
    """Raise unless ``directory`` is an index, empty, or absent: never write into foreign files."""
    if (directory / MANIFEST).exists():
        Manifest.load(directory)
    elif not directory.exists():
        _check_can_create(directory)
    elif not directory.is_dir() or not all(map(_being_created, directory.iterdir())):
        raise InvalidIndexError(
            f"{directory} exists and is not a ragtune index; use a new or empty directory"
        )


def _check_can_create(directory: Path) -> None:
    """Raise if the nearest existing ancestor of ``directory`` is a file, or a directory
    this user may not write in. Whatever else stops it being made, the write lock
    reports when it makes it."""
    ancestor = next((parent for parent in directory.parents if parent.exists()), None)
    if ancestor is None:
        return
    if not ancestor.is_dir():
        reason = f"{ancestor} is not a directory"
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        reason = f"{ancestor} is not writable"
    else:
        return
    raise InvalidIndexError(f"cannot write the index at {directory}: {reason}")


def _being_created(path: Path) -> bool:
    """The lock file, or the first manifest half written: another writer is creating
    the index in this directory right now."""
    name = path.name
    return name == LOCK_FILE or (name.startswith(f".{MANIFEST}.") and name.endswith(".tmp"))


def _scored(row: dict[str, Any], score: float) -> NodeWithScore:
    return NodeWithScore(node=_node(row), score=score)


def _node(row: dict[str, Any]) -> TextNode:
    metadata = {key: value for key, value in row["metadata"].items() if key != OUTLINKS}
    metadata.setdefault("url", row["url"])
    metadata.setdefault("title", row["title"])
    metadata["header"] = row["header"]
    node = TextNode(text=row["text"], metadata=metadata, id_=row["id"], ref_doc_id=row["doc_id"])
    node.embedding = row["vector"]
    return node


def _cosine(query_vector: np.ndarray, row: dict[str, Any]) -> float:
    # Vectors are unit length, so the dot product is the cosine similarity.
    return float(np.dot(query_vector, row["vector"]))


def _commit_groups(
    chunked: list[tuple[str, list[StoredChunk]]], size: int
) -> list[list[tuple[str, list[StoredChunk]]]]:
    """Documents in order, grouped so each group holds about ``size`` chunks."""
    groups: list[list[tuple[str, list[StoredChunk]]]] = [[]]
    filled = 0
    for item in chunked:
        if filled >= size:
            groups.append([])
            filled = 0
        groups[-1].append(item)
        filled += len(item[1])
    return [group for group in groups if group]


def probe_store(store: str) -> None:
    """Raise now if ``store`` names no usable store (bad scheme, server unreachable),
    before any slow work is done for it."""
    if _store_name(store) == EMBEDDED:
        return
    from ragtune.index.stores.postgres import PostgresStore, split_store_url

    table = split_store_url(store)[1]
    if table is not None:
        check_table_name(table)

    probe = PostgresStore(store, "probe", 1)
    try:
        _ = probe.connection
    finally:
        probe.close()


def _site_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or "") if parts.scheme in ("http", "https") else ""


def _store_name(store: str) -> str:
    """How the manifest names a store: ``lancedb``, or the URL without password or table."""
    if store == EMBEDDED:
        return EMBEDDED
    if not is_postgres_url(store):
        raise RagtuneError(f"unknown store {redact(store)!r}; use lancedb or a postgresql:// URL")
    from ragtune.index.stores.postgres import split_store_url

    return redact(split_store_url(store)[0])


def _table_name(store: str, directory: Path) -> str:
    from ragtune.index.stores.postgres import split_store_url

    chosen = split_store_url(store)[1]
    if chosen:
        return check_table_name(chosen)
    # One table per index, so several indexes can share a database.
    return f"ragtune_{secrets.token_hex(6)}"


def _stored_embedder_spec(manifest: Manifest) -> str | None:
    # The index remembers its embedder; if that path moved (a new virtual
    # environment), the default model is used and its dimensions checked.
    spec = manifest.embedder_path
    return spec if is_remote_spec(spec) or Path(spec).exists() else None
