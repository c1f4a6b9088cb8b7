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

from ragtune.errors import FetchError, RagtuneError, RedirectRefused, UnsupportedContentError
from ragtune.web.fetch import FetchedPage, Fetcher, Validators
from ragtune.web.robots import RobotsPolicy
from ragtune.web.sitemaps import sitemap_urls
from ragtune.web.urls import CrawlScope, UrlScope, absolute, check_seed, host_of, normalise

Status = Literal["fetched", "unchanged", "skipped", "failed"]
# Why a URL was skipped: robots.txt, its content type, a duplicate, a redirect the
# crawl may not follow; "sitemap" marks a sitemap that was only partly read;
# "max_pages" and "max_depth" a link in scope that the crawl's limits left unvisited.
SkipKind = Literal["robots", "type", "duplicate", "redirect", "sitemap", "max_pages", "max_depth"]
# The limits a crawl can stop at, as their options are named.
UNVISITED_KINDS: tuple[SkipKind, ...] = ("max_pages", "max_depth")
# How many unvisited links a report names; it counts them all.
UNVISITED_LISTED = 100
# As for Retry-After: a host that asks for longer between requests is too slow to crawl.
MAX_CRAWL_DELAY = 60.0


@dataclass(frozen=True)
class CrawlOptions:
    follow_links: bool = False
    max_depth: int = 3
    max_pages: int = 200
    same_site: bool = True
    scope: CrawlScope = "path"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    use_sitemaps: bool = True
    obey_robots: bool = True
    concurrency: int = 16
    # Pages already indexed from this crawl (``ragtune sync``): each is checked, and
    # new pages only fill what ``max_pages`` leaves after them.
    indexed: frozenset[str] = frozenset()


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
    skip_kind: SkipKind | None = None

    @property
    def unvisited(self) -> bool:
        """Whether this is a link the crawl's limits left alone (not a URL it tried)."""
        return self.skip_kind in UNVISITED_KINDS


@dataclass
class CrawlReport:
    """Counts and per-URL reasons, for the closing summary and the JSON report.

    Links left unvisited by ``max_pages`` or ``max_depth`` are not URLs the crawl
    tried: they are counted apart, by the limit that stopped them, and a bounded
    number of them listed.
    """

    events: list[CrawlEvent] = field(default_factory=list)

    def add(self, event: CrawlEvent) -> None:
        self.events.append(event)

    def _tried(self) -> list[CrawlEvent]:
        return [event for event in self.events if not event.unvisited]

    def counts(self) -> dict[str, int]:
        counts = Counter(event.status for event in self._tried())
        return {
            status: counts.get(status, 0)
            for status in ("fetched", "unchanged", "skipped", "failed")
        }

    def skipped_by_kind(self) -> dict[str, int]:
        kinds: Counter[str] = Counter()
        for event in self._tried():
            if event.status == "skipped":
                kinds[event.skip_kind or "other"] += 1
        return dict(kinds)

    def unvisited(self) -> dict[str, dict[str, Any]]:
        """Per limit that stopped the crawl (``max_pages``, ``max_depth``): how many
        links it left and the first of them; {} when the crawl ran out of links first."""
        found: dict[str, dict[str, Any]] = {}
        for event in self.events:
            if event.unvisited and event.skip_kind:
                entry = found.setdefault(event.skip_kind, {"count": 0, "urls": []})
                entry["count"] += 1
                if len(entry["urls"]) < UNVISITED_LISTED:
                    entry["urls"].append(event.url)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "skipped": self.skipped_by_kind(),
            "unvisited": self.unvisited(),
            "urls": [
                {"url": e.url, "status": e.status, "reason": e.reason, "depth": e.depth}
                for e in self._tried()
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
        # Set by run() from its seeds.
        self.scope = UrlScope([], same_site=options.same_site, scope=options.scope)
        # Runs in the worker thread right after a fetch (rendering, for one).
        self.on_fetched = on_fetched

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

        requested = 0  # pages not indexed before
        beyond_pages: list[str] = []  # links in scope that the page limit left
        beyond_depth: dict[str, None] = {}  # links in scope found at max_depth
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            running: dict[Future[CrawlEvent], str] = {}
            while frontier or running:
                while frontier and len(running) < options.concurrency:
                    url, depth = frontier.popleft()
                    if url not in indexed and requested >= room:
                        beyond_pages.append(url)  # reported, never fetched
                        continue
                    refusal = self._robots_refusal(url)
                    if refusal:
                        yield CrawlEvent(
                            url, "skipped", refusal.reason, depth, error=refusal, skip_kind="robots"
                        )
                        continue
                    running[pool.submit(self._visit, url, depth)] = url
                    requested += url not in indexed
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
                    if event.status in ("fetched", "unchanged") and options.follow_links:
                        for link in event.links:
                            if link in seen or not scope.allows(link):
                                continue
                            if event.depth < options.max_depth:
                                seen.add(link)
                                frontier.append((link, event.depth + 1))
                            else:  # a shallower page may still link to it: not seen yet
                                beyond_depth[link] = None
        for url in beyond_pages:
            reason = f"not visited: the page limit ({options.max_pages}) was reached"
            yield CrawlEvent(url, "skipped", reason, skip_kind="max_pages")
        for url in beyond_depth:
            if url not in seen:
                reason = f"not visited: the depth limit ({options.max_depth}) was reached"
                depth = options.max_depth + 1
                yield CrawlEvent(url, "skipped", reason, depth, skip_kind="max_depth")

    def _visit(self, url: str, depth: int) -> CrawlEvent:
        def check_redirect(target: str) -> str | None:
            return self._redirect_refusal(target, depth)

        try:
            page = self.fetcher.fetch(url, self.known.get(url), check_redirect=check_redirect)
        except UnsupportedContentError as error:
            return CrawlEvent(url, "skipped", error.reason, depth, error=error, skip_kind="type")
        except RedirectRefused as error:
            return CrawlEvent(
                url, "skipped", error.reason, depth, error=error, skip_kind="redirect"
            )
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
            reason = str(error).removeprefix(f"{url}: ")  # the report shows the URL beside it
            return CrawlEvent(url, "failed", reason, depth, error=error)
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

    def _robots_refusal(self, url: str) -> FetchError | None:
        """Why robots.txt keeps the crawl away from ``url``, or None (and then its
        host's Crawl-delay applies)."""
        slow = self.robots.too_slow(url)
        if slow:
            return FetchError(url, f"{slow}: the host is too slow to crawl", kind="robots")
        if not self.robots.allowed(url):
            return FetchError(url, "disallowed by robots.txt", kind="robots")
        delay = self.robots.crawl_delay(url)
        if delay is not None and delay > MAX_CRAWL_DELAY:
            return FetchError(
                url,
                f"robots.txt asks for a Crawl-delay of {delay:g} s, over the "
                f"{MAX_CRAWL_DELAY:g} s limit: the host is too slow to crawl",
                kind="robots",
            )
        if delay:
            self.fetcher.throttle.set_delay(host_of(url), delay)
        return None

    def _redirect_refusal(self, target: str, depth: int) -> str | None:
        """Why a page at ``depth`` may not redirect to ``target``, or None. A seed's
        redirect stays on the seeds' hosts; a found page's obeys the whole scope."""
        if depth and not self.scope.allows(target):
            return f"redirects to {target}, outside the crawl scope"
        if not self.scope.allows_host(target):
            return f"redirects to {target}, outside the crawl scope (give that URL to read it)"
        refusal = self._robots_refusal(target)
        return f"redirects to {target}, but {refusal.reason}" if refusal else None

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
