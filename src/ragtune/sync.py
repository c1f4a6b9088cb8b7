"""Sync: bring an index up to date with its sources (`ragtune sync`).

1. Every source that earlier ingests recorded (``sources.json``) is read again
   with its recorded settings. A crawl starts from its seeds and from every
   indexed page in its scope, so each is checked even when the page linking
   to it answers 304 (and is not read); the links of every page that changed
   are followed, which is where new pages appear. New pages fill what
   ``max_pages`` leaves after the indexed ones, and no more: the links beyond
   the limit are counted and listed (``unvisited``), never added, so a crawl's
   index does not grow with every sync.
2. Every indexed document that step 1 did not reach (all of them, for an
   index built through the Python API, which records no sources) is
   revisited on its own.
   In both steps a page already indexed is asked for with ``If-None-Match`` /
   ``If-Modified-Since``: a 304, or a body whose text hashes the same, leaves
   it alone; a changed page is re-embedded and its old chunks replaced (a PDF
   that lost pages loses them). A file whose size and SHA-256 are those
   recorded when it was indexed (``files.json``) is not extracted again; any
   other file is read again and its text compared.
3. A page that answers 404 or 410, or a file that was deleted, is removed with
   all its chunks (every page of a PDF). Any other failure (timeout, 5xx,
   refused connection, unreadable file) keeps the page and reports it as
   failed: a flaky server must never empty an index.

Pages that robots.txt now disallows, that the crawl skips as duplicates, that
now redirect out of the crawl's scope (another host, by default: its content is
never indexed under the old URL), or whose content type is no longer readable
are kept and reported as skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

from ragtune.documents import Document, content_hash
from ragtune.errors import FetchError, RagtuneError
from ragtune.file_ledger import FileLedger
from ragtune.index.lock import write_lock
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.ingest import (
    RECORDED_SETTINGS,
    EmbedHook,
    EventHook,
    IndexedSource,
    IngestSettings,
    PlanHook,
    RecordedSource,
    indexed_sources,
    read_paths,
    read_urls,
    recorded_sources,
    source_url,
    validators_of,
)
from ragtune.scale.engine import EngineName, IngestEngine, open_engine
from ragtune.scale.steps import WriteTarget
from ragtune.web.crawl import CrawlEvent, CrawlReport
from ragtune.web.urls import UrlScope

Action = Literal["unchanged", "changed", "added", "removed", "failed", "skipped"]
ACTIONS: tuple[Action, ...] = ("unchanged", "changed", "added", "removed", "failed", "skipped")
# Not Found and Gone: the server says the page no longer exists. Anything else (403,
# 5xx, a timeout) may pass, and must never empty an index.
VANISHED_STATUSES = frozenset({404, 410})
# When one URL was reached twice (by two recorded sources), the most informative result wins.
_PRIORITY = {"fetched": 3, "unchanged": 2, "skipped": 1, "failed": 0}


@dataclass
class SyncedUrl:
    """What sync did with one URL (or file): all the documents read from it, together."""

    url: str
    action: Action
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"url": self.url, "action": self.action, "reason": self.reason}


@dataclass
class SyncResult:
    """Counts per action, chunks written and embedded, and what happened to every URL.

    With ``dry_run`` nothing was written: the counts say what a sync would do.
    """

    index_dir: Path
    urls: list[SyncedUrl] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0  # the rest of the written chunks reused a stored vector
    documents: int = 0  # in the index afterwards
    chunks: int = 0
    dry_run: bool = False
    # Links a crawl's limits left unvisited, by limit: {"max_pages": {"count", "urls"}}.
    unvisited: dict[str, dict[str, Any]] = field(default_factory=dict)

    def count(self, action: Action) -> int:
        return sum(1 for url in self.urls if url.action == action)

    @property
    def checked(self) -> int:
        return len(self.urls)

    @property
    def unchanged(self) -> int:
        return self.count("unchanged")

    @property
    def changed(self) -> int:
        return self.count("changed")

    @property
    def added(self) -> int:
        return self.count("added")

    @property
    def removed(self) -> int:
        return self.count("removed")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    def counts(self) -> dict[str, int]:
        return {"checked": self.checked, **{action: self.count(action) for action in ACTIONS}}

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": str(self.index_dir),
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "chunks_written": self.chunks_written,
            "chunks_embedded": self.chunks_embedded,
            "documents": self.documents,
            "chunks": self.chunks,
            "unvisited": self.unvisited,
            "urls": [url.to_dict() for url in self.urls],
        }


def sync(
    index_dir: str | Path,
    *,
    concurrency: int | None = None,
    timeout: float | None = None,
    dry_run: bool = False,
    store: str | None = None,
    allow_private_urls: bool = True,
    url_allow_networks: Sequence[str] = (),
    engine: EngineName = "local",
    ray_address: str | None = None,
    on_event: EventHook | None = None,
    on_embed: EmbedHook | None = None,
    on_plan: PlanHook | None = None,
) -> SyncResult:
    """Revisit the sources of the index at ``index_dir``; see the module docstring.

    ``concurrency`` and ``timeout`` override the recorded settings; ``store``
    repeats the index's PostgreSQL URL where it needs a password.
    ``allow_private_urls`` and ``url_allow_networks`` are IngestSettings' (they are
    never recorded: ``ragtune serve`` refuses private addresses to every sync).
    ``engine`` and ``ray_address`` say where files are extracted and changed pages
    embedded (``ragtune.scale``). Raises RagtuneError when nothing could be checked
    at all (every URL failed).
    """
    with open_engine(engine, ray_address) as runner:
        return _sync(
            Path(index_dir),
            runner,
            _Overrides(concurrency, timeout, allow_private_urls, tuple(url_allow_networks)),
            dry_run,
            store,
            on_event,
            on_embed,
            on_plan,
        )


def _sync(
    directory: Path,
    engine: IngestEngine,
    overrides: _Overrides,
    dry_run: bool,
    store: str | None,
    on_event: EventHook | None,
    on_embed: EmbedHook | None,
    on_plan: PlanHook | None,
) -> SyncResult:
    index = VectorStoreIndex.load(directory, store=store)
    recorded = recorded_sources(directory)
    indexed = indexed_sources(index)
    if not recorded and not indexed:
        raise RagtuneError(
            f"nothing to sync: {directory} records no sources and holds no documents"
        )
    reading = _Reading(indexed, FileLedger.of(directory, index), engine, on_event, on_plan)
    for url in [url for url, source in indexed.items() if not source.hashes]:
        # Documents given ids of their own through the Python API: not ours to replace.
        reading.record(CrawlEvent(url, "skipped", "its document ids are not derived from it"))
        del indexed[url]
    claimed: set[str] = set()  # indexed pages that a crawl below starts from
    for settings, sources in _grouped(recorded, overrides):
        pages: list[str] = []
        if settings.crawl:
            pages = _indexed_pages(sources, settings, indexed, claimed)
        reading.read(sources, settings, pages)
    reading.revisit([url for url in indexed if url not in reading.events], recorded, overrides)
    result = SyncResult(
        directory,
        [reading.outcome(url) for url in sorted(reading.events)],
        dry_run=dry_run,
        unvisited=CrawlReport(reading.unvisited).unvisited(),
    )
    busy = result.unchanged + result.changed + result.added + result.removed
    if result.failed and not busy:
        first = next(url for url in result.urls if url.action == "failed")
        raise RagtuneError(
            f"sync failed: none of {result.failed} URLs could be checked, index left unchanged "
            f"(first: {first.url}: {first.reason})"
        )
    if not dry_run:
        # One turn for all of its writes, never interleaved with an ingest's.
        with write_lock(directory):
            _write(index, result, reading, engine, on_embed)
            reading.files.save()
    stats = index.stats()
    result.documents, result.chunks = stats["documents"], stats["chunks"]
    return result


def _write(
    index: VectorStoreIndex,
    result: SyncResult,
    reading: _Reading,
    engine: IngestEngine,
    on_embed: EmbedHook | None,
) -> None:
    """Insert changed and new documents, then drop removed ones and lost PDF pages."""
    action = {url.url: url.action for url in result.urls}
    fresh = [
        document
        for url, documents in reading.documents.items()
        if action.get(url) in ("changed", "added")
        for document in documents
    ]
    if fresh:
        engine.write(index, fresh, WriteTarget(index.persist_dir), on_embed)
        result.chunks_written = index.last_insert.chunks
        result.chunks_embedded = index.last_insert.embedded
    gone: list[str] = []
    for url, source in reading.indexed.items():
        if action.get(url) == "removed":
            gone.extend(source.hashes)
        elif action.get(url) == "changed":
            kept = {d.id_ for d in reading.documents.get(url, [])}
            gone.extend(doc_id for doc_id in source.hashes if doc_id not in kept)  # lost PDF pages
    index.delete_documents(gone)


class _Reading:
    """Everything read during one sync: the latest event per URL and the documents."""

    def __init__(
        self,
        indexed: dict[str, IndexedSource],
        files: FileLedger,
        engine: IngestEngine,
        on_event: EventHook | None,
        on_plan: PlanHook | None,
    ) -> None:
        self.indexed = indexed
        self.files = files
        self.engine = engine
        self.on_event = on_event
        self.on_plan = on_plan
        self.events: dict[str, CrawlEvent] = {}
        self.unvisited: list[CrawlEvent] = []  # links a crawl's limits left
        self.documents: dict[str, list[Document]] = {}  # by source URL
        self.known = validators_of({url: source.metadata for url, source in indexed.items()})

    def record(self, event: CrawlEvent) -> None:
        if event.unvisited:  # not a page of the index's, nor one to add
            self.unvisited.append(event)
            if self.on_event:
                self.on_event(event)
            return
        earlier = self.events.get(event.url)
        if earlier is None or _PRIORITY[event.status] >= _PRIORITY[earlier.status]:
            self.events[event.url] = event
        if self.on_event:
            self.on_event(event)

    def add(self, documents: list[Document]) -> None:
        for document in documents:
            self.documents.setdefault(source_url(document), []).append(document)

    def read(self, sources: list[str], settings: IngestSettings, pages: list[str]) -> None:
        """Read recorded ``sources``; a crawl also starts from its indexed ``pages``."""
        paths = [Path(s) for s in sources if "://" not in s]
        self.add(read_paths(paths, settings, self.record, self.files, self.on_plan, self.engine))
        urls = [s for s in sources if "://" in s]
        self.add(
            read_urls(
                urls + pages,
                settings,
                self.record,
                self.known,
                frozenset(pages),
                self.on_plan,
                self.engine,
            )
        )

    def revisit(
        self,
        urls: list[str],
        recorded: list[RecordedSource],
        overrides: _Overrides,
    ) -> None:
        """Check each of ``urls`` (indexed, not reached by the recorded sources) on its own."""
        web: dict[tuple[Any, ...], tuple[IngestSettings, list[str]]] = {}
        files = [path for url in urls if (path := _file_path(url)) and path.exists()]
        if self.on_plan and files:
            self.on_plan(len(files))
        for url in urls:
            path = _file_path(url)
            if path is not None:
                if path.exists():
                    read = read_paths(
                        [path], IngestSettings(), self.record, self.files, engine=self.engine
                    )
                    self.add(read)
                else:
                    self.record(CrawlEvent(url, "failed", "no such file"))
            elif urlsplit(url).scheme in ("http", "https"):
                settings = _revisit_settings(url, recorded, overrides)
                web.setdefault(_key(settings), (settings, []))[1].append(url)
            else:
                self.record(CrawlEvent(url, "skipped", "not an http(s) URL or a file; kept"))
        for settings, group in web.values():
            # A plain list of URLs stops at max_pages too: every one of them must be checked.
            group_settings = replace(settings, max_pages=len(group))
            read = read_urls(
                group,
                group_settings,
                self.record,
                self.known,
                on_plan=self.on_plan,
                engine=self.engine,
            )
            self.add(read)

    def outcome(self, url: str) -> SyncedUrl:
        event = self.events[url]
        source = self.indexed.get(url)
        if event.status == "fetched":
            if source is None:
                return SyncedUrl(url, "added")
            fresh = {d.id_: content_hash(d.text) for d in self.documents.get(url, [])}
            if fresh == source.hashes:
                return SyncedUrl(url, "unchanged", "same text")
            return SyncedUrl(url, "changed")
        if event.status == "unchanged":
            return SyncedUrl(url, "unchanged", event.reason)
        if event.status == "skipped":
            return SyncedUrl(url, "skipped", event.reason + ("; kept" if source else ""))
        if _vanished(event):
            reason = "no such file" if _file_path(url) else event.reason
            if source is None:
                return SyncedUrl(url, "skipped", f"{reason}; not in the index")
            return SyncedUrl(url, "removed", reason)
        return SyncedUrl(url, "failed", event.reason + ("; kept" if source else ""))


def _vanished(event: CrawlEvent) -> bool:
    """Whether a failure means the page is gone for good: the server answered 404 or 410
    (decided by the error's kind and status, never by its wording), or the file is gone."""
    path = _file_path(event.url)
    if path is not None:
        return not path.exists()
    error = event.error
    return (
        isinstance(error, FetchError)
        and error.kind == "http_status"
        and error.status in VANISHED_STATUSES
    )


def _file_path(url: str) -> Path | None:
    """The local file behind a file: URL, or None for a web page."""
    return Path(url2pathname(urlsplit(url).path)) if url.startswith("file:") else None


def _grouped(
    recorded: list[RecordedSource], overrides: _Overrides
) -> list[tuple[IngestSettings, list[str]]]:
    """Recorded sources grouped by settings, so sources ingested together are read together."""
    groups: dict[tuple[Any, ...], tuple[IngestSettings, list[str]]] = {}
    for entry in recorded:
        settings = overrides.applied(entry.settings)
        groups.setdefault(_key(settings), (settings, []))[1].append(entry.source)
    return list(groups.values())


def _indexed_pages(
    sources: list[str],
    settings: IngestSettings,
    indexed: dict[str, IndexedSource],
    claimed: set[str],
) -> list[str]:
    """The indexed pages in a crawl's scope (not claimed by an earlier crawl): it starts
    from each of them, and they take their share of its page limit."""
    seeds = [s for s in sources if "://" in s]
    scope = UrlScope(seeds, settings.include, settings.exclude, scope=settings.scope)
    pages = [
        url
        for url in indexed
        if url not in claimed and urlsplit(url).scheme in ("http", "https") and scope.allows(url)
    ]
    claimed.update(pages)
    return pages


def _revisit_settings(
    url: str, recorded: list[RecordedSource], overrides: _Overrides
) -> IngestSettings:
    """Settings to fetch one indexed page with: those of a recorded source on its host
    (rendering, robots, politeness), without crawling or URL filters."""
    host = urlsplit(url).netloc
    base = next(
        (r.settings for r in recorded if r.is_url and urlsplit(r.source).netloc == host),
        IngestSettings(),
    )
    settings = replace(base, crawl=False, include=[], exclude=[])
    return overrides.applied(settings)


@dataclass(frozen=True)
class _Overrides:
    """What this sync's caller says over the recorded settings."""

    concurrency: int | None
    timeout: float | None
    allow_private_urls: bool
    url_allow_networks: tuple[str, ...]

    def applied(self, settings: IngestSettings) -> IngestSettings:
        settings = replace(
            settings,
            allow_private_urls=self.allow_private_urls,
            url_allow_networks=list(self.url_allow_networks),
        )
        if self.concurrency is not None:
            settings = replace(settings, concurrency=self.concurrency)
        if self.timeout is not None:
            settings = replace(settings, timeout=self.timeout)
        return settings


def _key(settings: IngestSettings) -> tuple[Any, ...]:
    values = (getattr(settings, name) for name in RECORDED_SETTINGS)
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


__all__ = ["SyncResult", "SyncedUrl", "sync"]
