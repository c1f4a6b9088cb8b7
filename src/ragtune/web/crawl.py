"""The crawler: a breadth-first, polite, concurrent walk from seed URLs.

A plain list of URLs is a crawl of depth 0 without sitemaps, so both go
through the same robots, politeness, retry and deduplication rules. The
crawler keeps the frontier, the limits and deduplication; a visit pool
(``ragtune.web.visits``) fetches, in this process or on a cluster.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ragtune.errors import FetchError
from ragtune.web.crawl_events import (
    UNVISITED_KINDS,
    UNVISITED_LISTED,
    CrawlEvent,
    CrawlOptions,
    CrawlReport,
    SkipKind,
    Status,
)
from ragtune.web.fetch import Fetcher, Validators
from ragtune.web.robots import RobotsPolicy
from ragtune.web.sitemaps import sitemap_urls
from ragtune.web.urls import UrlScope, check_seed, normalise
from ragtune.web.visits import PageHandler, PageVisitor, ThreadVisits, VisitPool

# The crawl's types stay importable from here, where the rest of ragtune takes them.
__all__ = [
    "UNVISITED_KINDS",
    "UNVISITED_LISTED",
    "CrawlEvent",
    "CrawlOptions",
    "CrawlReport",
    "Crawler",
    "SkipKind",
    "Status",
]


class Crawler:
    """``visits`` runs the fetches (default: threads here, through ``fetcher``);
    ``fetcher`` also reads the sitemaps."""

    def __init__(
        self,
        fetcher: Fetcher,
        options: CrawlOptions,
        known: dict[str, Validators] | None = None,
        on_fetched: PageHandler | None = None,
        visits: VisitPool | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.options = options
        self.known = known or {}
        self.robots = RobotsPolicy(fetcher, fetcher.user_agent, obey=options.obey_robots)
        # Set by run() from its seeds.
        self.scope = UrlScope([], same_site=options.same_site, scope=options.scope)
        self.visits = visits or ThreadVisits(
            # One robots policy for the sitemaps and the visits: robots.txt read once.
            PageVisitor(fetcher, options.obey_robots, on_fetched, robots=self.robots),
            options.concurrency,
        )

    def run(self, seeds: list[str]) -> Iterator[CrawlEvent]:
        options = self.options
        frontier: deque[tuple[str, int]] = deque()
        seen: set[str] = set()
        dedup = _DedupState()
        for raw in seeds:
            try:
                check_seed(raw)
            except FetchError as error:  # its URL as the user gave it, credentials hidden
                yield CrawlEvent(error.url, "failed", error.reason, error=error)
                continue
            url = normalise(raw)
            if url not in seen:
                seen.add(url)
                frontier.append((url, 0))
        valid_seeds = [url for url, _ in frontier]
        scope = self.scope = UrlScope(
            valid_seeds,
            list(options.include),
            list(options.exclude),
            options.same_site,
            options.scope,
        )
        # Indexed pages are always checked; new pages only fill what they leave.
        indexed = options.indexed
        room = max(0, options.max_pages - len(indexed))
        if options.follow_links and options.use_sitemaps:
            cut: list[FetchError] = []
            for url in self._sitemap_pages(valid_seeds, options.max_pages, cut.append):
                if url not in seen and scope.allows(url):
                    seen.add(url)
                    frontier.append((url, 1))
            for note in cut:  # reported, but not a failure: the entries before the cut were used
                yield CrawlEvent(note.url, "skipped", note.reason, skip_kind="sitemap")

        requested = 0  # pages not indexed before, asked for (robots refusals give theirs back)
        beyond_pages: list[str] = []  # links in scope that the page limit left
        beyond_depth: dict[str, None] = {}  # links in scope found at max_depth
        visits = self.visits
        visits.start(scope)
        running: dict[Future[CrawlEvent], bool] = {}  # each visit: whether it took room
        try:
            while frontier or running:
                while frontier and len(running) < visits.capacity:
                    url, depth = frontier[0]
                    new = url not in indexed
                    if new and requested >= room:
                        if any(running.values()):
                            break  # a running visit refused by robots.txt gives its room back
                        frontier.popleft()
                        beyond_pages.append(url)  # reported, never fetched
                        continue
                    frontier.popleft()
                    running[visits.submit(url, depth, self.known.get(url))] = new
                    requested += new
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    took_room = running.pop(future)
                    event = future.result()
                    if event.skip_kind == "robots":
                        requested -= took_room
                    if event.status == "fetched" and event.page is not None:
                        duplicate = self._duplicate_of(event, dedup, seen)
                        if duplicate:
                            event.status, event.reason, event.page = "skipped", duplicate, None
                            event.skip_kind = "duplicate"
                    yield event
                    if event.status in ("fetched", "unchanged") and options.follow_links:
                        for link in event.links:
                            if link in seen or not scope.allows(link):
                                continue
                            if event.depth < options.max_depth:
                                seen.add(link)
                                frontier.append((link, event.depth + 1))
                            else:  # a shallower page may still link to it: not seen yet
                                beyond_depth[link] = None
        finally:
            visits.close()
        for url in beyond_pages:
            reason = f"not visited: the page limit ({options.max_pages}) was reached"
            yield CrawlEvent(url, "skipped", reason, skip_kind="max_pages")
        for url in beyond_depth:
            if url not in seen:
                reason = f"not visited: the depth limit ({options.max_depth}) was reached"
                depth = options.max_depth + 1
                yield CrawlEvent(url, "skipped", reason, depth, skip_kind="max_depth")

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

    def _sitemap_pages(
        self, seeds: list[str], limit: int, on_cut: Callable[[FetchError], None]
    ) -> Iterator[str]:
        origins = list(dict.fromkeys(f"{urlsplit(s).scheme}://{urlsplit(s).netloc}" for s in seeds))
        sitemaps: list[str] = []
        for origin in origins:
            sitemaps.extend(self.robots.sitemaps(origin + "/"))
            sitemaps.append(f"{origin}/sitemap.xml")
        yield from sitemap_urls(
            self.fetcher, sitemaps, limit, self.scope.allows_host, on_cut, self.scope.allows
        )


@dataclass
class _DedupState:
    digests: dict[str, str] = field(default_factory=dict)
    crawled: set[str] = field(default_factory=set)
