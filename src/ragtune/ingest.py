"""Ingest: sources (URLs, files, folders) into an index, with a report of every URL.

An existing index is opened once, before anything is read: what it holds tells
the crawler which pages to ask for conditionally. The index is written after
everything was read, in commits of about ``commit_every`` chunks, a document's
chunks always together (and one more commit drops the pages a shorter PDF no
longer has): a failure before the first commit leaves it exactly as it was, a
later one keeps the commits made, and the rerun skips what they hold. After a
successful ingest the sources and their settings are recorded in
``sources.json``, for ``ragtune sync``.

A file is only extracted when its bytes changed since it was indexed
(``ragtune.file_ledger``, ``files.json``).

Where the heavy part runs is ``settings.engine``'s choice (``ragtune.scale``):
this process (``"local"``, the default) or a Ray cluster (``"ray"``); the index
they make is the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragtune.atomic import write_json_atomic
from ragtune.documents import OUTLINKS, Document
from ragtune.errors import InvalidIndexError, RagtuneError
from ragtune.extract.files import (
    FileStatus,
    Skipped,
    folder_files,
)
from ragtune.file_ledger import FileLedger
from ragtune.index.embedding import TextEmbedder, make_embedder
from ragtune.index.lock import write_lock
from ragtune.index.manifest import (
    MANIFEST,
    read_json,
)
from ragtune.index.stores.locate import probe_store
from ragtune.index.vector_index import (
    COMMIT_CHUNKS,
    InsertStats,
    VectorStoreIndex,
    check_index_target,
)
from ragtune.net.address_guard import AddressPolicy
from ragtune.scale.engine import EngineName, IngestEngine, LocalEngine, open_engine
from ragtune.scale.steps import FileRead, WriteTarget
from ragtune.web.crawl import CrawlEvent, CrawlReport, SkipKind
from ragtune.web.fetch import Validators
from ragtune.web.reader import WebReader
from ragtune.web.urls import CrawlScope, normalise, seed_key
from ragtune.web.visits import RenderMode

REPORT_FILE = "ingest-report.json"
SOURCES_FILE = "sources.json"
SOURCES_FORMAT = "ragtune-sources"
EventHook = Callable[[CrawlEvent], None]
EmbedHook = Callable[[int, int], None]
# Told how many more sources are about to be read, or None when that cannot be
# known beforehand (a crawl finds its pages as it goes).
PlanHook = Callable[[int | None], None]


@dataclass
class IngestSettings:
    crawl: bool = False
    # How far a crawl may go from its seeds: their folder, host or domain.
    scope: CrawlScope = "path"
    max_pages: int = 200
    max_depth: int = 3
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    render: RenderMode = "auto"
    # Origins besides its own that a rendered page may reach (--render-allow).
    render_allow: list[str] = field(default_factory=list)
    obey_robots: bool = True
    use_sitemaps: bool = True
    concurrency: int = 16
    per_host_concurrency: int = 4
    delay: float = 0.0
    timeout: float = 20.0
    skip_failures: bool = False
    # Whether a folder's symbolic links may lead out of it (--follow-symlinks).
    follow_symlinks: bool = False
    # Where a new index keeps its chunks: "lancedb" (inside the index directory)
    # or a postgresql:// URL; an existing index keeps the store it was made with.
    store: str | None = None
    commit_every: int = COMMIT_CHUNKS
    # The embedder of a new index: a model directory or an openai: endpoint spec
    # (default: the bundled MiniLM), and its backend (torch, onnx, onnx-int8).
    embed_model: str | None = None
    embed_backend: str | None = None
    # Whether URLs may lead to loopback, private, link-local (cloud metadata) and other
    # non-public addresses. True is the command line's behaviour; `ragtune serve`
    # sets False unless its operator passes --allow-private-urls. Not recorded for
    # sync: it belongs to whoever runs the ingest, not to the sources.
    allow_private_urls: bool = True
    # Networks (CIDR blocks, no ports) let through even when private URLs are refused.
    url_allow_networks: list[str] = field(default_factory=list)
    # Where extraction, chunking and embedding run: "local" (this process) or "ray"
    # (a Ray cluster at ray_address, else one started on this machine). Like the
    # two above, about one run, not recorded for sync.
    engine: EngineName = "local"
    ray_address: str | None = None


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
    on_plan: PlanHook | None = None,
) -> IngestResult:
    check_index_target(index_dir)  # fail before fetching anything
    check_sources_record(index_dir)
    if settings.store and not (index_dir / MANIFEST).exists():
        probe_store(settings.store)
    embedder = new_index_embedder(index_dir, settings)
    # The engine before anything is read: a cluster that cannot be reached fails now.
    with open_engine(settings.engine, settings.ray_address) as engine:
        return _ingest(sources, index_dir, settings, engine, embedder, on_event, on_embed, on_plan)


def _ingest(
    sources: list[str],
    index_dir: Path,
    settings: IngestSettings,
    engine: IngestEngine,
    embedder: TextEmbedder | None,
    on_event: EventHook | None,
    on_embed: EmbedHook | None,
    on_plan: PlanHook | None,
) -> IngestResult:
    existing = (
        VectorStoreIndex.load(index_dir, store=settings.store)
        if (index_dir / MANIFEST).exists()
        else None
    )
    urls = [s for s in sources if "://" in s]
    paths = [Path(s) for s in sources if "://" not in s]
    events: list[CrawlEvent] = []

    def record(event: CrawlEvent) -> None:
        events.append(event)
        if on_event:
            on_event(event)

    files = FileLedger.of(index_dir, existing) if paths else None
    documents = read_paths(paths, settings, record, files, on_plan, engine)
    known = validators_of(existing.store.document_metadata()) if existing and urls else {}
    documents += read_urls(urls, settings, record, known, on_plan=on_plan, engine=engine)

    # What the user named must work; a broken link found while crawling is only reported.
    named = {_event_url(source) for source in sources}
    failed_named = [
        e
        for e in events
        if e.status in ("failed", "skipped") and e.url in named and not e.unvisited
    ]
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

    # Writers take turns: the index, sources.json and the report change together.
    with write_lock(index_dir):
        target = WriteTarget(index_dir, settings.store, embedder, settings.commit_every)
        index = engine.write(existing, documents, target, on_embed)
        index.delete_documents(stale_document_ids(index, documents))
        if files is not None:
            files.save()
        skipped = {e.url for e in failed_named}  # with --skip-failures: not worth revisiting
        record_sources(index_dir, [s for s in sources if _event_url(s) not in skipped], settings)
        report = {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **CrawlReport(events).to_dict(),
        }
        write_json_atomic(index_dir / REPORT_FILE, report)
    return IngestResult(len(documents), report, index.stats(), index.last_insert)


def read_urls(
    urls: list[str],
    settings: IngestSettings,
    record: EventHook,
    known: dict[str, Validators] | None = None,
    indexed: frozenset[str] = frozenset(),
    on_plan: PlanHook | None = None,
    engine: IngestEngine | None = None,
) -> list[Document]:
    """The Documents of ``urls`` (and, crawling, of the pages they lead to).
    ``indexed``: pages a crawl already indexed, each checked whatever the page limit,
    which new pages only fill what they leave of. This process keeps the frontier
    (one polite crawler); ``engine`` fetches (default: threads here; Ray: a shard per
    host) and extracts the pages (default: worker processes here)."""
    if not urls:
        return []
    if on_plan:
        on_plan(None if settings.crawl else min(len(urls), settings.max_pages))
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
        render_allow=settings.render_allow,
        concurrency=settings.concurrency,
        per_host_concurrency=settings.per_host_concurrency,
        delay=settings.delay,
        timeout=settings.timeout,
        scope=settings.scope,
        indexed=indexed,
        address_policy=AddressPolicy.from_settings(settings),
        page_extractor=(engine or LocalEngine()).extract_pages,
        visit_pool=(engine or LocalEngine()).visit_pool,
    )
    return reader.load_data(urls, on_event=record, known=known)


def read_paths(
    paths: list[Path],
    settings: IngestSettings,
    record: EventHook,
    files: FileLedger | None = None,
    on_plan: PlanHook | None = None,
    engine: IngestEngine | None = None,
) -> list[Document]:
    """The Documents of files and folders; with ``files``, a file whose bytes are as
    recorded is reported unchanged and not read into Documents at all. Every file is
    listed first, so ``on_plan`` hears how many there are before the slow part:
    extraction, by ``engine`` (default: this process), reported in listing order."""
    listing = [listed for path in paths for listed in _files_of(path, settings)]
    if on_plan and paths:
        on_plan(len(listing))
    readable = [not isinstance(status, Skipped | RagtuneError) for _, status in listing]
    states = [
        files.check(_file_url(file), file) if files is not None and ok else None
        for (file, _), ok in zip(listing, readable, strict=True)
    ]
    to_read = [
        file
        for (file, _), ok, state in zip(listing, readable, states, strict=True)
        if ok and (state is None or not state.unchanged)
    ]
    # Lazy: the local engine extracts each file as the loop below reaches it.
    reads: Iterator[FileRead] = (engine or LocalEngine()).extract_files(to_read)
    documents: list[Document] = []
    for (file, status), state in zip(listing, states, strict=True):
        if isinstance(status, Skipped):
            record(_skipped_event(file, status))
            continue
        if isinstance(status, RagtuneError):
            _record_failure(file, status, record)
            continue
        url = _file_url(file)
        if state is not None and state.unchanged:
            record(CrawlEvent(url, "unchanged", "same content as when indexed"))
            continue
        read = next(reads)
        if isinstance(read, RagtuneError):
            _record_failure(file, read, record)
            continue
        if files is not None and state is not None:
            files.read(url, file, state.state, read)
        record(CrawlEvent(url, "fetched"))
        documents.extend(read)
    return documents


def _skipped_event(file: Path, skipped: Skipped) -> CrawlEvent:
    # A link is reported where it is, not where it leads; a file of a type not read is
    # counted with the pages a crawl skips for their content type.
    kind: SkipKind | None = "type" if skipped.unsupported else None
    uri = Path(os.path.abspath(file)).as_uri()
    return CrawlEvent(uri, "skipped", skipped.reason, skip_kind=kind)


def _record_failure(file: Path, error: RagtuneError, record: EventHook) -> None:
    # The report shows the URL beside the reason; the message starts with the path.
    reason = str(error).removeprefix(f"{file}: ")
    record(CrawlEvent(_file_url(file), "failed", reason, error=error))


def _files_of(path: Path, settings: IngestSettings) -> Iterator[tuple[Path, FileStatus]]:
    """A named file, or the files of a folder that ``read_folder`` would read: listed,
    not extracted, so a file found unchanged never is."""
    if not path.is_dir():
        yield path, None
        return
    yield from folder_files(path, settings.include, settings.exclude, settings.follow_symlinks)


def _file_url(path: Path | str) -> str:
    # Not Path.resolve(): on Python 3.11 it raises RuntimeError for a cycle of links.
    return Path(os.path.realpath(path)).as_uri()


def validators_of(metadata: dict[str, dict[str, Any]]) -> dict[str, Validators]:
    """What the last fetch of each page (metadata by URL) said, for conditional GETs."""
    return {
        url: Validators(
            meta.get("etag"), meta.get("last_modified"), tuple(meta.get(OUTLINKS) or ())
        )
        for url, meta in metadata.items()
        if meta.get("etag") or meta.get("last_modified")
    }


# --- What the index holds, by source -------------------------------------------------


@dataclass
class IndexedSource:
    """One indexed URL (or file) and its documents: one, or one per page of a PDF."""

    url: str
    metadata: dict[str, Any]  # of one of its documents: validators, path, fetched_at
    hashes: dict[str, str]  # document id -> content hash of the indexed text


def indexed_sources(
    index: VectorStoreIndex, urls: set[str] | None = None
) -> dict[str, IndexedSource]:
    """The index's documents grouped by URL (only those of ``urls``, when given);
    the pages of a PDF share their URL. A web page is keyed by its URL as a crawl
    spells it now, so a page that an older ragtune recorded as ``/%7euser`` is the
    page read as ``/~user``, replaced rather than indexed twice."""
    found: dict[str, IndexedSource] = {}
    keys: dict[str, str] = {}  # recorded URL -> key
    for url, meta in index.store.document_metadata().items():
        key = _indexed_key(url)
        if urls is None or key in urls:
            found.setdefault(key, IndexedSource(key, meta, {}))
            keys[url] = key
    for doc_id, (url, digest) in index.store.document_hashes().items():
        if url in keys:
            found[keys[url]].hashes[doc_id] = digest
    return found


def _indexed_key(url: str) -> str:
    return normalise(url) if url.startswith(("http://", "https://")) else url


def source_url(document: Document) -> str:
    return str(document.metadata.get("url") or document.metadata.get("path") or "")


def stale_document_ids(index: VectorStoreIndex, documents: list[Document]) -> list[str]:
    """Ids of indexed documents that a fresh read of their source no longer yields:
    the pages a shorter PDF lost (or a PDF that became a single page)."""
    fresh: dict[str, set[str]] = {}
    for document in documents:
        fresh.setdefault(source_url(document), set()).add(document.id_)
    if not fresh:
        return []
    return [
        doc_id
        for url, source in indexed_sources(index, set(fresh)).items()
        for doc_id in source.hashes
        if doc_id not in fresh[url]
    ]


# --- The sources each ingest was asked to read, for `ragtune sync` ----------------------

# The settings that say what to read; the rest (skip_failures) are about one run.
RECORDED_SETTINGS = (
    "crawl",
    "scope",
    "max_pages",
    "max_depth",
    "include",
    "exclude",
    "render",
    "render_allow",
    "obey_robots",
    "use_sitemaps",
    "concurrency",
    "per_host_concurrency",
    "delay",
    "timeout",
    "follow_symlinks",
)


@dataclass
class RecordedSource:
    source: str  # a normalised URL or an absolute path
    settings: IngestSettings
    recorded_at: str = ""

    @property
    def is_url(self) -> bool:
        return "://" in self.source


def _source_key(source: str) -> str:
    """How a source is recorded: URLs normalised, paths absolute (sync runs from anywhere)."""
    return seed_key(source) if "://" in source else str(Path(source).resolve())


def _event_url(source: str) -> str:
    """The URL the reading events of a named source carry (an unusable URL's with its
    credentials hidden, as the crawler reports it)."""
    return seed_key(source) if "://" in source else _file_url(source)


def record_sources(index_dir: Path, sources: list[str], settings: IngestSettings) -> None:
    """Add ``sources`` with ``settings`` to the index's record; a source already there
    takes the new settings."""
    recorded = {r.source: r for r in recorded_sources(index_dir)}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for source in sources:
        key = _source_key(source)
        recorded.pop(key, None)  # re-recorded sources move to the end, in the order given
        recorded[key] = RecordedSource(key, settings, now)
    write_json_atomic(
        index_dir / SOURCES_FILE,
        {
            "format": SOURCES_FORMAT,
            "version": 1,
            "sources": [
                {
                    "source": r.source,
                    "settings": {name: getattr(r.settings, name) for name in RECORDED_SETTINGS},
                    "recorded_at": r.recorded_at,
                }
                for r in recorded.values()
            ],
        },
    )


def check_sources_record(index_dir: Path) -> None:
    """Refuse an ingest that would rewrite a damaged record: the sources recorded
    before would be lost. A missing record is fine (the Python API keeps none)."""
    try:
        recorded_sources(index_dir)
    except InvalidIndexError as error:
        raise InvalidIndexError(
            f"{error}; repair it, or delete it to start the record afresh"
        ) from None


def recorded_sources(index_dir: Path) -> list[RecordedSource]:
    """The sources recorded by earlier ingests into ``index_dir``; [] when none were."""
    path = index_dir / SOURCES_FILE
    if not path.exists():
        return []
    try:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != SOURCES_FORMAT:
            raise ValueError("wrong format marker")
        recorded = []
        for entry in data["sources"]:
            # A crawl recorded before scopes existed kept to its seeds' hosts.
            values = {"scope": "host"} | {
                k: v for k, v in entry["settings"].items() if k in RECORDED_SETTINGS
            }
            recorded.append(
                RecordedSource(
                    str(entry["source"]), IngestSettings(**values), str(entry.get("recorded_at"))
                )
            )
        return recorded
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise InvalidIndexError(f"{path} is damaged ({error})") from None


def new_index_embedder(index_dir: Path, settings: IngestSettings) -> TextEmbedder | None:
    """The embedder the settings ask for; an existing index keeps its own."""
    if not (settings.embed_model or settings.embed_backend):
        return None
    if (index_dir / MANIFEST).exists():
        raise RagtuneError(
            f"{index_dir} already has its embedder; --embed-model and --embed-backend "
            "apply to a new index"
        )
    return make_embedder(settings.embed_model, settings.embed_backend)
