"""VectorStoreIndex: documents in, a persistent searchable index out (LlamaIndex's names)."""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ragtune.documents import Document, NodeWithScore, TextNode, content_hash
from ragtune.errors import InvalidIndexError, InvalidQueryError, RagtuneError
from ragtune.index.chunking import ChunkingConfig, MarkdownChunker
from ragtune.index.embedding import Embedder
from ragtune.index.manifest import MANIFEST, Manifest
from ragtune.index.store import LanceStore, SearchHit, StoredChunk

if TYPE_CHECKING:
    from ragtune.llm.base import LLM
    from ragtune.query.engine import RetrieverQueryEngine

STORE_DIR = "lancedb"
RetrievalMode = Literal["hybrid", "dense", "keyword"]
RETRIEVAL_MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")
# Standard RRF constant; each ranking is read this many times deeper than top-k.
RRF_K = 60
FUSION_DEPTH = 4
ProgressHook = Callable[[int, int], None]
MAX_QUERY_CHARS = 4000


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

    def __init__(self, persist_dir: Path, manifest: Manifest, embedder: Embedder) -> None:
        self.persist_dir = persist_dir
        self.last_insert = InsertStats()
        self.manifest = manifest
        self.embedder = embedder
        self.store = LanceStore(persist_dir / STORE_DIR, manifest.dimensions)
        self.chunker = MarkdownChunker(
            embedder.count_tokens, ChunkingConfig(manifest.chunk_size, manifest.chunk_overlap)
        )

    @classmethod
    def from_documents(
        cls,
        documents: Sequence[Document],
        persist_dir: str | Path | None = None,
        embed_model: str | Path | Embedder | None = None,
        chunk_size: int | None = None,
        chunk_overlap: int | None = None,
        progress: ProgressHook | None = None,
    ) -> VectorStoreIndex:
        """Build an index from ``documents``, or add them to the index already at ``persist_dir``.

        Without ``persist_dir`` the index lives in a temporary directory removed at exit.
        A document whose URL is already indexed replaces its old chunks.
        """
        if not documents:
            raise RagtuneError("no documents to index: every source failed or was empty")
        temporary = persist_dir is None
        directory = Path(persist_dir or tempfile.mkdtemp(prefix="ragtune-index-"))
        if (directory / MANIFEST).exists():
            index = cls.load(directory, embed_model=embed_model)
        else:
            index = cls._create(directory, embed_model, chunk_size, chunk_overlap)
        if temporary:
            weakref.finalize(index, shutil.rmtree, directory, ignore_errors=True)
        index.insert_documents(documents, progress=progress)
        return index

    @classmethod
    def load(
        cls, persist_dir: str | Path, embed_model: str | Path | Embedder | None = None
    ) -> VectorStoreIndex:
        """Open an index written by ``from_documents`` or ``ragtune ingest``."""
        directory = Path(persist_dir)
        manifest = Manifest.load(directory)
        embedder = _embedder(embed_model or _stored_embedder_path(manifest))
        if embedder.dimensions != manifest.dimensions:
            raise InvalidIndexError(
                f"{directory} was built with {manifest.dimensions}-dimension embeddings, "
                f"but {embedder.model_path} makes {embedder.dimensions}"
            )
        index = cls(directory, manifest, embedder)
        index.store.check_readable()
        return index

    @classmethod
    def _create(
        cls,
        directory: Path,
        embed_model: str | Path | Embedder | None,
        chunk_size: int | None,
        chunk_overlap: int | None,
    ) -> VectorStoreIndex:
        check_index_target(directory)
        embedder = _embedder(embed_model)
        # The window includes [CLS] and [SEP]; a chunk must fit inside it whole.
        window = embedder.max_tokens - 2
        size = min(chunk_size or ChunkingConfig.chunk_size, window)
        overlap = ChunkingConfig.chunk_overlap if chunk_overlap is None else chunk_overlap
        if size < 16 or not 0 <= overlap < size:
            raise RagtuneError(f"invalid chunking: size {size}, overlap {overlap}")
        manifest = Manifest(
            embedder_path=str(embedder.model_path),
            embedder_name=embedder.name,
            dimensions=embedder.dimensions,
            chunk_size=size,
            chunk_overlap=overlap,
        )
        directory.mkdir(parents=True, exist_ok=True)
        index = cls(directory, manifest, embedder)
        index.store.ensure_table()  # before the manifest marks this directory an index
        manifest.save(directory)
        return index

    def insert_documents(
        self, documents: Sequence[Document], progress: ProgressHook | None = None
    ) -> int:
        """Chunk, embed and store ``documents``; returns the number of chunks written.

        Everything is embedded before anything is written, and the write is a
        single commit, so a failure leaves the index as it was.
        """
        unique = {doc.id_: doc for doc in documents}  # the last copy of a URL wins
        indexed = self.store.content_hashes(list(unique))
        changed = {
            doc_id: doc
            for doc_id, doc in unique.items()
            if indexed.get(doc_id) != content_hash(doc.text)
        }
        chunks: list[StoredChunk] = []
        for document in changed.values():
            chunks.extend(self._chunks_of(document))
        # A chunk whose text was embedded before (an unchanged paragraph of a
        # changed page) takes its stored vector instead of being embedded again.
        cached = self.store.cached_vectors({chunk.embed_hash for chunk in chunks})
        fresh = [chunk for chunk in chunks if chunk.embed_hash not in cached]
        vectors = self._embed([chunk.embed_text for chunk in fresh], progress)
        for chunk, vector in zip(fresh, vectors, strict=True):
            chunk.vector = vector
        for chunk in chunks:
            if chunk.embed_hash in cached:
                chunk.vector = cached[chunk.embed_hash]
        self.last_insert = InsertStats(
            documents=len(unique),
            unchanged=len(unique) - len(changed),
            chunks=len(chunks),
            embedded=len(fresh),
        )
        if changed:
            self.store.replace_documents(list(changed), chunks)
            self.manifest.save(self.persist_dir)
        return len(chunks)

    def _chunks_of(self, document: Document) -> list[StoredChunk]:
        title = str(document.metadata.get("title") or "")
        url = str(document.metadata.get("url") or document.metadata.get("path") or "")
        stored = []
        for number, chunk in enumerate(self.chunker.chunk(document.text, title=title)):
            metadata = dict(document.metadata)
            metadata.update(
                heading_path=list(chunk.headings),
                chunk_index=number,
                # What the next insert compares against to leave an unchanged document alone.
                content_hash=content_hash(document.text),
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

    def _embed(self, texts: list[str], progress: ProgressHook | None) -> Any:
        batch = 64
        parts = []
        for start in range(0, len(texts), batch):
            parts.append(self.embedder.embed(texts[start : start + batch]))
            if progress:
                progress(min(start + batch, len(texts)), len(texts))
        return np.concatenate(parts) if parts else []

    def as_retriever(
        self, similarity_top_k: int = 4, mode: RetrievalMode = "hybrid"
    ) -> VectorIndexRetriever:
        return VectorIndexRetriever(self, similarity_top_k, mode)

    def as_query_engine(
        self, similarity_top_k: int = 4, llm: LLM | str | None = None, **kwargs: Any
    ) -> RetrieverQueryEngine:
        from ragtune.query.engine import RetrieverQueryEngine

        return RetrieverQueryEngine(self.as_retriever(similarity_top_k), llm=llm, **kwargs)

    def stats(self) -> dict[str, Any]:
        return {
            "persist_dir": str(self.persist_dir),
            "documents": self.store.count_documents(),
            "chunks": self.store.count(),
            "embedder": self.manifest.embedder_name,
            "chunk_size": self.manifest.chunk_size,
        }


class VectorIndexRetriever:
    """Ranks an index's chunks for a question.

    ``mode="hybrid"`` (the default) fuses BM25 keyword ranks with embedding
    ranks by reciprocal-rank fusion: keywords catch exact names and rare words
    a small embedder blurs, embeddings catch paraphrases. Scores are scaled so
    that first place in both rankings is 1.0. ``"dense"`` and ``"keyword"``
    use one ranking alone, with its own scores.
    """

    def __init__(
        self, index: VectorStoreIndex, similarity_top_k: int = 4, mode: RetrievalMode = "hybrid"
    ) -> None:
        if similarity_top_k < 1:
            raise InvalidQueryError("top-k must be at least 1")
        if mode not in RETRIEVAL_MODES:
            raise InvalidQueryError(
                f"unknown retrieval mode {mode!r}; use one of {RETRIEVAL_MODES}"
            )
        self.index = index
        self.similarity_top_k = similarity_top_k
        self.mode = mode

    def retrieve(self, query: str) -> list[NodeWithScore]:
        query = validate_query(query)
        store = self.index.store
        k = self.similarity_top_k
        if self.mode == "keyword":
            return [_scored(hit.row, hit.score) for hit in store.search_keyword(query, k)]
        query_vector = self.index.embedder.embed_query(query)
        dense = store.search_vector(query_vector, k * FUSION_DEPTH)
        similarity = {hit.row["id"]: hit.score for hit in dense}
        if self.mode == "dense":
            nodes = [_scored(hit.row, hit.score) for hit in dense[:k]]
        else:
            keyword = store.search_keyword(query, k * FUSION_DEPTH)
            for hit in keyword:
                # Vectors are unit length, so the dot product is the cosine similarity.
                similarity.setdefault(hit.row["id"], float(np.dot(query_vector, hit.row["vector"])))
            nodes = reciprocal_rank_fusion({"dense": dense, "keyword": keyword}, k)
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
    elif directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidIndexError(
            f"{directory} exists and is not a ragtune index; use a new or empty directory"
        )


def validate_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise InvalidQueryError("the question is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQueryError(
            f"the question is {len(query)} characters; the limit is {MAX_QUERY_CHARS}"
        )
    return query.strip()


def _scored(row: dict[str, Any], score: float) -> NodeWithScore:
    return NodeWithScore(node=_node(row), score=score)


def _node(row: dict[str, Any]) -> TextNode:
    metadata = json.loads(row["metadata"])
    metadata.setdefault("url", row["url"])
    metadata.setdefault("title", row["title"])
    metadata["header"] = row["header"]
    return TextNode(text=row["text"], metadata=metadata, id_=row["id"], ref_doc_id=row["doc_id"])


def _embedder(model: str | Path | Embedder | None) -> Embedder:
    return model if isinstance(model, Embedder) else Embedder(model)


def _stored_embedder_path(manifest: Manifest) -> str | None:
    # The index remembers its embedder; if that path moved (a new virtual
    # environment), the default model is used and its dimensions checked.
    return manifest.embedder_path if Path(manifest.embedder_path).exists() else None
