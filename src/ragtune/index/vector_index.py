"""VectorStoreIndex: documents in, a persistent searchable index out (LlamaIndex's names).

This module is the index's lifecycle: create, load, insert, delete, stats, close.
Ranking is ``ragtune.index.ranking``; which store a ``store`` value names is
``ragtune.index.stores.locate``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import urlsplit

import numpy as np

from ragtune.documents import OUTLINKS, Document, Response, content_hash
from ragtune.errors import InvalidIndexError, RagtuneError
from ragtune.index.calibration import ScoreCalibration, calibrate
from ragtune.index.chunking import ChunkingConfig, MarkdownChunker
from ragtune.index.embedding import TextEmbedder, is_remote_spec, make_embedder
from ragtune.index.filters import FiltersArgument
from ragtune.index.lock import LOCK_FILE, write_lock
from ragtune.index.manifest import MANIFEST, Manifest
from ragtune.index.mmr import DEFAULT_MMR_LAMBDA
from ragtune.index.ranking import RetrievalMode, VectorIndexRetriever
from ragtune.index.stores import EMBEDDED, ChunkStore, StoredChunk
from ragtune.index.stores.locate import new_table_name, open_store, store_name
from ragtune.index.vocabulary import (
    CorpusVocabulary,
    build_vocabulary,
    load_vocabulary,
    remove_other_vocabularies,
    save_vocabulary,
)

if TYPE_CHECKING:
    from ragtune.llm.base import LLM

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


class QueryEngine(Protocol):
    """What ``as_query_engine`` returns: ``ragtune.query.RetrieverQueryEngine``."""

    @property
    def answer_mode(self) -> str:
        """How it answers: "generate", "extract" or "auto" (its default when none was asked for)."""
        ...

    @property
    def llm(self) -> LLM:
        """The model, loaded on first use."""
        ...

    def query(
        self,
        question: str,
        *,
        history: Sequence[tuple[str, str]] = (),
        retrieval_query: str | None = None,
    ) -> Response: ...

    def stream(
        self,
        question: str,
        *,
        history: Sequence[tuple[str, str]] = (),
        retrieval_query: str | None = None,
    ) -> tuple[Iterator[str], Response]: ...


class VectorStoreIndex:
    """A persistent index of document chunks and their embeddings."""

    # Builds as_query_engine's engine: ragtune.query.engine sets its
    # RetrieverQueryEngine here when imported, and the package root imports it the
    # first time ``ragtune.VectorStoreIndex`` is looked up. The query layer sits
    # above this one and may import it, never the reverse.
    query_engine_factory: ClassVar[Callable[..., QueryEngine] | None] = None

    def __init__(
        self,
        persist_dir: Path,
        manifest: Manifest,
        embedder: TextEmbedder,
        store_url: str | None = None,
    ) -> None:
        self.persist_dir = persist_dir
        self.last_insert = InsertStats()
        self._vocabulary: tuple[str, CorpusVocabulary] | None = None
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
        if store and store_name(store) != manifest.store:
            raise InvalidIndexError(
                f"{directory} keeps its chunks in {manifest.store}, not {store_name(store)}"
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
        name, table = store_name(store or EMBEDDED), "chunks"
        if name != EMBEDDED:
            table = new_table_name(store or "")
        manifest = Manifest(
            embedder_path=embedder.spec,
            embedder_backend=embedder.backend,
            embedder_name=embedder.name,
            dimensions=embedder.dimensions,
            chunk_size=size,
            chunk_overlap=overlap,
            store=name,
            table=table,
        )
        index = cls(directory, manifest, embedder, store_url=store)
        if name != EMBEDDED:
            # A server that cannot be reached fails here, before anything is written.
            index.store.ensure_table()
        directory.mkdir(parents=True, exist_ok=True)
        # The manifest before the embedded table: an ingest killed between the two
        # leaves an index that opens (empty) and that the rerun completes.
        manifest.save(directory)
        if name == EMBEDDED:
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
        # An index from before calibration (or its vocabulary) gets one at the next write.
        if done or self.calibration is None or self.vocabulary is None:
            self._recalibrate()
        return done

    def _recalibrate(self) -> None:
        """Measure what a cosine means in the index as it now is, and which words it
        holds, for the query engine's not-in-the-sources decision
        (``ragtune.index.calibration``, ``ragtune.index.vocabulary``)."""
        calibration = calibrate(self.store, self.embedder)
        self._vocabulary = None
        if calibration is not None:
            vocabulary = build_vocabulary(self.store)
            name = save_vocabulary(vocabulary, self.persist_dir)
            calibration = replace(calibration, vocabulary=name)
            self._vocabulary = (name, vocabulary)  # as written: no need to read it back
        self.manifest.calibration = calibration.to_dict() if calibration else None
        self.manifest.save(self.persist_dir)
        # Only once the manifest names the new file may the old one go.
        remove_other_vocabularies(self.persist_dir, calibration.vocabulary if calibration else None)

    @property
    def vocabulary(self) -> CorpusVocabulary | None:
        """The words of the index's passages; None for an index built before it existed."""
        calibration = self.calibration
        if calibration is None or calibration.vocabulary is None:
            return None
        if self._vocabulary is None or self._vocabulary[0] != calibration.vocabulary:
            loaded = load_vocabulary(self.persist_dir, calibration.vocabulary)
            if loaded is None:
                return None
            self._vocabulary = (calibration.vocabulary, loaded)
        return self._vocabulary[1]

    @property
    def calibration(self) -> ScoreCalibration | None:
        """The index's score calibration; None for an index built before calibration."""
        return ScoreCalibration.from_dict(self.manifest.calibration)

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
                self._recalibrate()
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
        return VectorIndexRetriever(
            self.store,
            self.embedder,
            similarity_top_k,
            mode,
            filters,
            mmr,
            mmr_lambda,
            metadata_keys=self.manifest.metadata_keys,
            calibration=self.calibration,
            vocabulary=self.vocabulary,
        )

    def as_query_engine(
        self,
        similarity_top_k: int = 4,
        llm: LLM | str | None = None,
        mode: RetrievalMode = "hybrid",
        filters: FiltersArgument = None,
        mmr: bool = False,
        **kwargs: Any,
    ) -> QueryEngine:
        """A ``RetrieverQueryEngine`` (``ragtune.query``) over ``as_retriever(...)``;
        ``kwargs`` are the engine's own options (``answer_tokens``, ``min_similarity``...)."""
        factory = VectorStoreIndex.query_engine_factory
        if factory is None:
            raise RuntimeError(
                "no query engine is registered: use ragtune.VectorStoreIndex "
                "(or import ragtune.query first)"
            )
        return factory(self.as_retriever(similarity_top_k, mode, filters, mmr), llm=llm, **kwargs)

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


def _site_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.hostname or "") if parts.scheme in ("http", "https") else ""


def _stored_embedder_spec(manifest: Manifest) -> str | None:
    # The index remembers its embedder; if that path moved (a new virtual
    # environment), the default model is used and its dimensions checked.
    spec = manifest.embedder_path
    return spec if is_remote_spec(spec) or Path(spec).exists() else None
