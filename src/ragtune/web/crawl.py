"""The crawler: a breadth-first, polite, concurrent walk from seed URLs.

A plain list of URLs is a crawl of depth 0 without sitemaps, so both go
through the same robots, politeness, retry and deduplication rules.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import lxml.etree
import lxml.html

from ragtune.errors import FetchError, RagtuneError, UnsupportedContentError
from ragtune.web.fetch import FetchedPage, Fetcher, Validators
from ragtune.web.robots import RobotsPolicy
from ragtune.web.sitemaps import sitemap_urls
from ragtune.web.urls import UrlScope, absolute, check_url, normalise

Status = Literal["fetched", "unchanged", "skipped", "failed"]
SkipKind = Literal["robots", "type", "duplicate"]


@dataclass(frozen=True)
class CrawlOptions:
    follow_links: bool = False
    max_depth: int = 3
    max_pages: int = 200
    same_site: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    use_sitemaps: bool = True
    obey_robots: bool = True
    concurrency: int = 16


@dataclass
class CrawlEvent:
    """What happened to one URL."""

    url: str
    status: Status
    reason: str = ""
    depth: int = 0
    page: FetchedPage | None = None
    error: RagtuneError | None = None
    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    skip_kind: SkipKind | None = None  # why a skipped URL was skipped: robots, type, duplicate


@dataclass
class CrawlReport:
    """Counts and per-URL reasons, for the closing summary and the JSON report."""

    events: list[CrawlEvent] = field(default_factory=list)

    def add(self, event: CrawlEvent) -> None:
        self.events.append(event)

    def counts(self) -> dict[str, int]:
        counts = Counter(event.status for event in self.events)
        return {
            status: counts.get(status, 0)
            for status in ("fetched", "unchanged", "skipped", "failed")
        }

    def skipped_by_kind(self) -> dict[str, int]:
        kinds: Counter[str] = Counter()
        for event in self.events:
            if event.status == "skipped":
                kinds[event.skip_kind or "other"] += 1
        return dict(kinds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "skipped": self.skipped_by_kind(),
            "urls": [
                {"url": e.url, "status": e.status, "reason": e.reason, "depth": e.depth}
                for e in self.events
            ],
        }


PageHandler = Callable[[CrawlEvent], None]


class Crawler:
    def __init__(
        self,
        fetcher: Fetcher,
        options: CrawlOptions,
        known: dict[str, Validators] | None = None,
        on_fetched: PageHandler | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.options = options
        self.known = known or {}
        self.robots = RobotsPolicy(fetcher, fetcher.user_agent, obey=options.obey_robots)
        # Runs in the worker thread right after a fetch (rendering, for one).
        self.on_fetched = on_fetched

    def run(self, seeds: list[str]) -> Iterator[CrawlEvent]:
        options = self.options
        frontier: deque[tuple[str, int]] = deque()
        seen: set[str] = set()
        dedup = _DedupState()
        for raw in seeds:
            try:
                check_url(raw)
            except FetchError as error:
                yield CrawlEvent(raw, "failed", error.reason, error=error)
                continue
            url = normalise(raw)
            if url not in seen:
                seen.add(url)
                frontier.append((url, 0))
        valid_seeds = [url for url, _ in frontier]
        scope = UrlScope(
            valid_seeds, list(options.include), list(options.exclude), options.same_site
        )
        if options.follow_links and options.use_sitemaps:
            for url in self._sitemap_pages(valid_seeds, options.max_pages):
                if url not in seen and scope.allows(url):
                    seen.add(url)
                    frontier.append((url, 1))

        requested = 0
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            running: dict[Future[CrawlEvent], str] = {}
            while frontier or running:
                while (
                    frontier
                    and len(running) < options.concurrency
                    and requested < options.max_pages
                ):
                    url, depth = frontier.popleft()
                    if not self.robots.allowed(url):
                        refusal = FetchError(url, "disallowed by robots.txt")
                        yield CrawlEvent(
                            url, "skipped", refusal.reason, depth, error=refusal, skip_kind="robots"
                        )
                        continue
                    self._apply_crawl_delay(url)
                    running[pool.submit(self._visit, url, depth)] = url
                    requested += 1
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    event = future.result()
                    if event.status == "fetched" and event.page is not None:
                        duplicate = self._duplicate_of(event, dedup, seen)
                        if duplicate:
                            event.status, event.reason, event.page = "skipped", duplicate, None
                            event.skip_kind = "duplicate"
                    yield event
                    if (
                        event.status in ("fetched", "unchanged")
                        and options.follow_links
                        and event.depth < options.max_depth
                    ):
                        for link in event.links:
                            if link not in seen and scope.allows(link):
                                seen.add(link)
                                frontier.append((link, event.depth + 1))

    def _visit(self, url: str, depth: int) -> CrawlEvent:
        try:
            page = self.fetcher.fetch(url, self.known.get(url))
        except UnsupportedContentError as error:
            return CrawlEvent(url, "skipped", error.reason, depth, error=error, skip_kind="type")
        except FetchError as error:
            return CrawlEvent(url, "failed", error.reason, depth, error=error)
        if page.not_modified:
            event = CrawlEvent(
                url, "unchanged", "not modified since the last fetch", depth, page=page
            )
            # The links it had last time, so a recrawl still reaches pages beyond it.
            event.links = list(self.known[url].links) if url in self.known else []
            return event
        event = CrawlEvent(url, "fetched", depth=depth, page=page)
        try:
            if self.on_fetched:
                self.on_fetched(event)
        except RagtuneError as error:
            return CrawlEvent(url, "failed", str(error), depth, error=error)
        if event.page is not None and event.page.is_html:
            event.links, event.canonical = links_and_canonical(event.page)
        return event

    def _duplicate_of(self, event: CrawlEvent, state: _DedupState, seen: set[str]) -> str:
        """A reason to skip a page already crawled under another URL, or ''."""
        assert event.page is not None
        final = normalise(event.page.final_url)
        if final != event.url:
            if final in state.crawled:
                return f"redirects to {final}, already crawled"
            seen.add(final)
        canonical = event.canonical
        if canonical and canonical != event.url:
            if canonical in state.crawled:
                return f"duplicate of its canonical URL {canonical}"
            seen.add(canonical)  # never fetch the canonical separately
        digest = hashlib.sha256(event.page.body).hexdigest()
        if digest in state.digests:
            state.crawled.add(event.url)  # its content is in, under the other URL
            return f"same content as {state.digests[digest]}"
        state.digests[digest] = event.url
        state.crawled.update({event.url, final})
        return ""

    def _apply_crawl_delay(self, url: str) -> None:
        delay = self.robots.crawl_delay(url)
        if delay:
            self.fetcher.throttle.set_delay(urlsplit(url).netloc.lower(), delay)

    def _sitemap_pages(self, seeds: list[str], limit: int) -> Iterator[str]:
        origins = list(dict.fromkeys(f"{urlsplit(s).scheme}://{urlsplit(s).netloc}" for s in seeds))
        sitemaps: list[str] = []
        for origin in origins:
            sitemaps.extend(self.robots.sitemaps(origin + "/"))
            sitemaps.append(f"{origin}/sitemap.xml")
        yield from sitemap_urls(self.fetcher, sitemaps, limit)


@dataclass
class _DedupState:
    digests: dict[str, str] = field(default_factory=dict)
    crawled: set[str] = field(default_factory=set)


def links_and_canonical(page: FetchedPage) -> tuple[list[str], str | None]:
    try:
        tree = lxml.html.fromstring(page.body)
    except (ValueError, lxml.etree.ParserError):
        return [], None
    links = []
    for href in tree.xpath("//a/@href"):
        url = absolute(page.final_url, str(href))
        if url:
            links.append(url)
    canonical = None
    for href in tree.xpath("//link[@rel='canonical']/@href"):
        canonical = absolute(page.final_url, str(href))
        break
    return links, canonical
