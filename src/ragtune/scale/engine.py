"""The seam between an ingest's steps and where they run.

``ragtune.ingest`` and ``ragtune.sync`` decide *what* to read and write (which
files changed, which pages, what the report says); an engine does the heavy
part: extracting files and turning documents into committed chunks. The local
engine is the single-process path, unchanged; the Ray engine
(``ragtune.scale.ray_ingest``) spreads the same steps over a cluster and writes
through the same index API, so both give the same index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

from ragtune.documents import Document
from ragtune.errors import RagtuneError
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.scale.steps import FileRead, ProgressHook, WriteTarget, read_file, write_documents
from ragtune.web.crawl import CrawlEvent, CrawlOptions
from ragtune.web.extraction_pool import Outcome, extract_pages
from ragtune.web.visits import FetchSettings, VisitPool

EngineName = Literal["local", "ray"]
ENGINES: tuple[EngineName, ...] = ("local", "ray")


class IngestEngine(Protocol):
    def extract_files(self, files: Sequence[Path]) -> Iterator[FileRead]:
        """Each file's Documents, in the order given, as they become ready."""
        ...

    def extract_pages(self, events: Iterator[CrawlEvent]) -> Iterator[tuple[CrawlEvent, Outcome]]:
        """Each crawl event with its page's Documents, in any order (a ``PageExtractor``)."""
        ...

    def visit_pool(self, settings: FetchSettings, options: CrawlOptions) -> VisitPool | None:
        """Where a crawl fetches; None: threads in this process (a ``VisitPoolFactory``)."""
        ...

    def write(
        self,
        index: VectorStoreIndex | None,
        documents: Sequence[Document],
        target: WriteTarget,
        progress: ProgressHook | None = None,
    ) -> VectorStoreIndex:
        """Add ``documents`` to ``index`` (None: create it at ``target``), in commits of
        about ``target.commit_every`` chunks; the caller holds the write lock."""
        ...


class LocalEngine:
    """Everything in this process: the default, and the fastest on one machine."""

    def extract_files(self, files: Sequence[Path]) -> Iterator[FileRead]:
        for file in files:
            yield read_file(file)

    def extract_pages(self, events: Iterator[CrawlEvent]) -> Iterator[tuple[CrawlEvent, Outcome]]:
        return extract_pages(events)

    def visit_pool(self, settings: FetchSettings, options: CrawlOptions) -> VisitPool | None:
        return None

    def write(
        self,
        index: VectorStoreIndex | None,
        documents: Sequence[Document],
        target: WriteTarget,
        progress: ProgressHook | None = None,
    ) -> VectorStoreIndex:
        return write_documents(index, documents, target, target.embedder, progress)


@contextmanager
def open_engine(name: str = "local", ray_address: str | None = None) -> Iterator[IngestEngine]:
    """The engine ``name`` names, connected (a Ray cluster: reached before anything is
    read, so a bad address fails fast and creates nothing) and closed afterwards."""
    if name == "local":
        if ray_address:
            raise RagtuneError("--ray-address applies to --engine ray")
        yield LocalEngine()
        return
    if name != "ray":
        raise RagtuneError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    from ragtune.scale.ray_ingest import RayEngine

    engine = RayEngine.connect(ray_address)
    try:
        yield engine
    finally:
        engine.close()
