"""WebReader: URLs in, Markdown Documents out (LlamaIndex's ScrapflyReader, offline)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from ragtune.documents import OUTLINKS, Document
from ragtune.errors import FetchError, RagtuneError
from ragtune.net.address_guard import AddressPolicy
from ragtune.web.crawl import Crawler, CrawlEvent, CrawlOptions, CrawlReport
from ragtune.web.extraction_pool import PageExtractor, extract_pages
from ragtune.web.fetch import DEFAULT_MAX_BYTES, Validators
from ragtune.web.render import allowed_origin
from ragtune.web.urls import CRAWL_SCOPES, CrawlScope
from ragtune.web.visits import FetchSettings, RenderMode, VisitPool

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[CrawlEvent], None]
# Where a crawl fetches (``ingest --engine ray``: fetch shards on the cluster); None:
# threads in this process.
VisitPoolFactory = Callable[[FetchSettings, CrawlOptions], VisitPool | None]


class WebReader:
    """Fetch web pages and return their main content as Markdown Documents.

    ``ignore_scrape_failures=True`` (the default, as in LlamaIndex's
    ScrapflyReader) logs and skips pages that fail; ``False`` raises the first
    failure. ``crawl=True`` follows links breadth-first (robots.txt obeyed,
    sitemaps read) within ``scope``: the seed's folder (``"path"``), its host
    (``"host"``) or its registrable domain, subdomains included (``"domain"``).
    ``indexed`` names pages an earlier crawl indexed (``ragtune sync``): each is
    checked whatever ``max_pages`` says, and new pages only fill what they leave.
    ``render="auto"`` runs JavaScript (Playwright and the system's Chromium) only
    for app-shell pages; a rendered page reaches its own origin and those in
    ``render_allow`` (its CDN, its API) only.
    ``address_policy`` (``ragtune serve``) says which network addresses may be
    connected to, by the fetches and by rendered pages; by default, any.
    ``page_extractor`` turns fetched pages into Documents: by default in worker
    processes beside the crawl (``ingest --engine ray``: on the cluster).
    ``visit_pool`` says where pages are fetched: by default threads here
    (``ingest --engine ray``: fetch shards on the cluster, each owning its hosts).
    ``reader.report`` says what happened to every URL.
    """

    def __init__(
        self,
        ignore_scrape_failures: bool = True,
        crawl: bool = False,
        max_depth: int = 3,
        max_pages: int = 200,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        same_site: bool = True,
        obey_robots: bool = True,
        use_sitemaps: bool = True,
        render: RenderMode = "auto",
        render_allow: Iterable[str] = (),
        concurrency: int = 16,
        per_host_concurrency: int = 4,
        delay: float = 0.0,
        timeout: float = 20.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retries: int = 3,
        scope: CrawlScope = "path",
        indexed: Iterable[str] = (),
        address_policy: AddressPolicy | None = None,
        page_extractor: PageExtractor | None = None,
        visit_pool: VisitPoolFactory | None = None,
    ) -> None:
        if render not in ("never", "auto", "always"):
            raise RagtuneError(f"unknown render mode {render!r}; use never, auto or always")
        if scope not in CRAWL_SCOPES:  # here, not at the first load_data
            raise RagtuneError(f"unknown crawl scope {scope!r}; use path, host or domain")
        self.ignore_scrape_failures = ignore_scrape_failures
        self.options = CrawlOptions(
            follow_links=crawl,
            max_depth=max_depth if crawl else 0,
            max_pages=max_pages,
            same_site=same_site,
            scope=scope,
            include=tuple(include),
            exclude=tuple(exclude),
            use_sitemaps=use_sitemaps,
            obey_robots=obey_robots,
            concurrency=concurrency,
            # One URL, not its characters.
            indexed=frozenset([indexed] if isinstance(indexed, str) else indexed),
        )
        if isinstance(render_allow, str):  # one origin, not its characters
            render_allow = [render_allow]
        self.fetch_settings = FetchSettings(
            timeout=timeout,
            max_bytes=max_bytes,
            retries=retries,
            per_host_concurrency=per_host_concurrency,
            delay=delay,
            address_policy=address_policy or AddressPolicy(),
            render=render,
            render_allow=tuple(allowed_origin(origin) for origin in render_allow),
            obey_robots=obey_robots,
        )
        # Kept across load_data calls: a Retry-After holds for the next call too.
        self.throttle = self.fetch_settings.throttle()
        self.page_extractor = page_extractor or extract_pages
        self.visit_pool = visit_pool
        self.report = CrawlReport()
        self.failures: list[RagtuneError] = []

    def load_data(
        self,
        urls: Iterable[str],
        on_event: ProgressCallback | None = None,
        known: dict[str, Validators] | None = None,
    ) -> list[Document]:
        """Fetch ``urls`` (and, when crawling, what they link to); one Document per readable page.

        ``known`` maps URLs to the validators of an earlier fetch: those answering
        304 Not Modified are reported as unchanged and yield no Document.
        """
        return list(self.lazy_load_data(urls, on_event, known))

    def lazy_load_data(
        self,
        urls: Iterable[str],
        on_event: ProgressCallback | None = None,
        known: dict[str, Validators] | None = None,
    ) -> Iterator[Document]:
        self.report = CrawlReport()
        self.failures = []
        with self.fetch_settings.fetcher(self.throttle) as fetcher:
            renderer = self.fetch_settings.renderer()
            visits = self.visit_pool(self.fetch_settings, self.options) if self.visit_pool else None
            crawler = Crawler(fetcher, self.options, known, on_fetched=renderer, visits=visits)
            try:
                for event, result in self.page_extractor(crawler.run([str(url) for url in urls])):
                    documents = self._settle(event, result)
                    if self.options.follow_links and event.links:
                        # Kept with the page so a later crawl can follow them on 304.
                        for document in documents:
                            document.metadata[OUTLINKS] = list(event.links)
                    self.report.add(event)
                    if on_event:
                        on_event(event)
                    yield from documents
            finally:
                renderer.close()

    def _settle(self, event: CrawlEvent, result: list[Document] | RagtuneError) -> list[Document]:
        """Record the event's outcome; the Documents it yields, if any."""
        if isinstance(result, RagtuneError):
            # The report shows the URL beside the reason; the message starts with it.
            reason = str(result).removeprefix(f"{event.url}: ")
            event.status, event.reason, event.error = "failed", reason, result
        if event.status in ("failed", "skipped") and event.error is not None:
            self._record_failure(event.error)
        return result if isinstance(result, list) else []

    def _record_failure(self, error: RagtuneError) -> None:
        if not self.ignore_scrape_failures:
            raise error
        logger.warning("skipped %s", error)
        self.failures.append(error)


__all__ = ["FetchError", "WebReader"]
