"""The steps both engines share: reading one file, and writing through the index API."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragtune.documents import Document
from ragtune.errors import RagtuneError
from ragtune.extract.files import file_documents
from ragtune.index.embedding import TextEmbedder
from ragtune.index.vector_index import COMMIT_CHUNKS, VectorStoreIndex

# One file's Documents, or why it could not be read (reported, never raised).
FileRead = list[Document] | RagtuneError
ProgressHook = Callable[[int, int], None]


@dataclass
class WriteTarget:
    """Where documents go: the index directory, and for a new index its store and
    embedder (None: the bundled one)."""

    index_dir: Path
    store: str | None = None
    embedder: TextEmbedder | None = None
    commit_every: int = COMMIT_CHUNKS


def read_file(file: Path) -> FileRead:
    try:
        return file_documents(file)
    except RagtuneError as error:
        return error


def write_documents(
    index: VectorStoreIndex | None,
    documents: Sequence[Document],
    target: WriteTarget,
    embedder: TextEmbedder | None,
    progress: ProgressHook | None,
) -> VectorStoreIndex:
    """The index API's write: a new index from ``documents``, or them inserted."""
    if index is None:
        # Another writer may have created the index since: from_documents then adds to it.
        return VectorStoreIndex.from_documents(
            documents,
            persist_dir=target.index_dir,
            progress=progress,
            store=target.store,
            commit_every=target.commit_every,
            embed_model=embedder,
        )
    if documents:
        index.insert_documents(documents, progress=progress, commit_every=target.commit_every)
    return index
