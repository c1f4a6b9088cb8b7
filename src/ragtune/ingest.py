"""Ingest: sources (URLs, files, folders) into an index, with a report of every URL.

The index is written once, after everything was read, in one commit: a
failure anywhere before that leaves it exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragtune.documents import Document
from ragtune.errors import RagtuneError
from ragtune.extract.files import file_documents, read_folder
from ragtune.index.manifest import MANIFEST, write_json_atomic
from ragtune.index.vector_index import InsertStats, VectorStoreIndex, check_index_target
from ragtune.web.crawl import CrawlEvent, CrawlReport
from ragtune.web.fetch import Validators
from ragtune.web.reader import RenderMode, WebReader
from ragtune.web.urls import normalise

REPORT_FILE = "ingest-report.json"
EventHook = Callable[[CrawlEvent], None]
EmbedHook = Callable[[int, int], None]


@dataclass
class IngestSettings:
    crawl: bool = False
    max_pages: int = 200
    max_depth: int = 3
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    render: RenderMode = "auto"
    obey_robots: bool = True
    use_sitemaps: bool = True
    concurrency: int = 16
    per_host_concurrency: int = 4
    delay: float = 0.0
    timeout: float = 20.0
    skip_failures: bool = False


@dataclass
class IngestResult:
    documents: int
    report: dict[str, Any]
    stats: dict[str, Any]
    insert: InsertStats


def ingest(
    sources: list[str],
    index_dir: Path,
    settings: IngestSettings,
    on_event: EventHook | None = None,
    on_embed: EmbedHook | None = None,
) -> IngestResult:
    check_index_target(index_dir)  # fail before fetching anything
    urls = [s for s in sources if "://" in s]
    paths = [Path(s) for s in sources if "://" not in s]
    events: list[CrawlEvent] = []

    def record(event: CrawlEvent) -> None:
        events.append(event)
        if on_event:
            on_event(event)

    documents = _read_paths(paths, settings, record)
    documents += _read_urls(urls, index_dir, settings, record)

    # What the user named must work; a broken link found while crawling is only reported.
    named = {normalise(u) for u in urls} | {p.resolve().as_uri() for p in paths}
    failed_named = [e for e in events if e.status in ("failed", "skipped") and e.url in named]
    if failed_named and not settings.skip_failures:
        first = failed_named[0]
        raise RagtuneError(
            f"{len(failed_named)} of {len(sources)} sources failed, index left unchanged "
            f"(first: {first.url}: {first.reason}); use --skip-failures to index the rest"
        )
    unchanged = sum(1 for e in events if e.status == "unchanged")
    if not documents and not unchanged:
        failed = [e for e in events if e.status in ("failed", "skipped")]
        example = f" (first: {failed[0].url}: {failed[0].reason})" if failed else ""
        raise RagtuneError(f"nothing to index: no page could be read{example}")

    index = (
        VectorStoreIndex.from_documents(documents, persist_dir=index_dir, progress=on_embed)
        if documents
        else VectorStoreIndex.load(index_dir)
    )
    report = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **CrawlReport(events).to_dict(),
    }
    write_json_atomic(index_dir / REPORT_FILE, report)
    return IngestResult(len(documents), report, index.stats(), index.last_insert)


def _read_urls(
    urls: list[str], index_dir: Path, settings: IngestSettings, record: EventHook
) -> list[Document]:
    if not urls:
        return []
    reader = WebReader(
        ignore_scrape_failures=True,
        crawl=settings.crawl,
        max_depth=settings.max_depth,
        max_pages=settings.max_pages,
        include=settings.include,
        exclude=settings.exclude,
        obey_robots=settings.obey_robots,
        use_sitemaps=settings.use_sitemaps,
        render=settings.render,
        concurrency=settings.concurrency,
        per_host_concurrency=settings.per_host_concurrency,
        delay=settings.delay,
        timeout=settings.timeout,
    )
    return reader.load_data(urls, on_event=record, known=known_validators(index_dir))


def _read_paths(paths: list[Path], settings: IngestSettings, record: EventHook) -> list[Document]:
    documents: list[Document] = []
    for path in paths:
        if path.is_dir():
            results = list(read_folder(path, settings.include, settings.exclude))
        else:
            try:
                results = [(path, file_documents(path))]
            except RagtuneError as error:
                results = [(path, error)]
        for file, result in results:
            url = file.resolve().as_uri()
            if isinstance(result, RagtuneError):
                reason = str(result).removeprefix(f"{file}: ")
                record(CrawlEvent(url, "failed", reason, error=result))
            else:
                record(CrawlEvent(url, "fetched"))
                documents.extend(result)
    return documents


def known_validators(index_dir: Path) -> dict[str, Validators]:
    """ETag / Last-Modified of every page already in the index, for conditional GETs."""
    if not (index_dir / MANIFEST).exists():
        return {}
    metadata = VectorStoreIndex.load(index_dir).store.document_metadata()
    return {
        url: Validators(meta.get("etag"), meta.get("last_modified"))
        for url, meta in metadata.items()
        if meta.get("etag") or meta.get("last_modified")
    }
