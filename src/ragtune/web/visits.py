"""Visiting one URL of a crawl, and where visits run.

A visit is everything between "fetch this URL" and "here is what happened":
robots.txt, the fetch with its per-host politeness, redirects checked against
the crawl's scope, rendering, and the page's links. The crawler
(``ragtune.web.crawl``) decides what to visit; a visit pool runs the visits:

- ``ThreadVisits``: threads in this process around one Fetcher, so one set of
  per-host limits (the default);
- ``ragtune.scale.ray_fetch.RayVisits``: fetch shards on a Ray cluster, each
  the only one to fetch from the hosts it owns, so per-host limits hold
  cluster-wide.

Both run the same ``PageVisitor``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import lxml.etree
import lxml.html

from ragtune.errors import FetchError, RagtuneError, RedirectRefused, UnsupportedContentError
from ragtune.net.address_guard import AddressPolicy
from ragtune.web.crawl_events import CrawlEvent
from ragtune.web.fetch import DEFAULT_MAX_BYTES, FetchedPage, Fetcher, RetryPolicy, Validators
from ragtune.web.politeness import HostThrottle
from ragtune.web.render import PageRenderer
from ragtune.web.robots import RobotsPolicy
from ragtune.web.urls import UrlScope, absolute, host_of

RenderMode = Literal["never", "auto", "always"]
# As for Retry-After: a host that asks for longer between requests is too slow to crawl.
MAX_CRAWL_DELAY = 60.0

PageHandler = Callable[[CrawlEvent], None]


@dataclass(frozen=True)
class FetchSettings:
    """How to fetch and render: plain values, so a fetch shard on another machine
    builds the same Fetcher and renderer as this process."""

    timeout: float = 20.0
    max_bytes: int = DEFAULT_MAX_BYTES
    retries: int = 3
    per_host_concurrency: int = 4
    delay: float = 0.0
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)
    render: RenderMode = "auto"
    render_allow: tuple[str, ...] = ()
    obey_robots: bool = True

    def throttle(self) -> HostThrottle:
        return HostThrottle(per_host=self.per_host_concurrency, delay=self.delay)

    def fetcher(self, throttle: HostThrottle | None = None) -> Fetcher:
        return Fetcher(
            timeout=self.timeout,
            max_bytes=self.max_bytes,
            retry=RetryPolicy(retries=self.retries),
            throttle=throttle or self.throttle(),
            address_policy=self.address_policy,
        )

    def renderer(self) -> PageRenderer:
        return PageRenderer(self.render, self.max_bytes, self.render_allow, self.address_policy)


class PageVisitor:
    """One URL at a time, from any number of threads: robots.txt, the fetch, the
    redirect checks, ``on_fetched`` (rendering), the links."""

    def __init__(
        self,
        fetcher: Fetcher,
        obey_robots: bool = True,
        on_fetched: PageHandler | None = None,
        robots: RobotsPolicy | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.robots = robots or RobotsPolicy(fetcher, fetcher.user_agent, obey=obey_robots)
        self.on_fetched = on_fetched
        # The crawl's, once it knows its seeds.
        self.scope = UrlScope([])

    def visit(self, url: str, depth: int, validators: Validators | None = None) -> CrawlEvent:
        """What happened to ``url``; ``validators`` from an earlier fetch make it conditional."""
        refusal = self.robots_refusal(url)
        if refusal:
            return CrawlEvent(
                url, "skipped", refusal.reason, depth, error=refusal, skip_kind="robots"
            )

        def check_redirect(target: str) -> str | None:
            return self._redirect_refusal(target, depth)

        try:
            page = self.fetcher.fetch(url, validators, check_redirect=check_redirect)
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
            event.links = list(validators.links) if validators else []
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

    def robots_refusal(self, url: str) -> FetchError | None:
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
        refusal = self.robots_refusal(target)
        return f"redirects to {target}, but {refusal.reason}" if refusal else None


class VisitPool(Protocol):
    """Where a crawl's visits run. ``capacity``: the most visits in flight at once."""

    capacity: int

    def start(self, scope: UrlScope) -> None:
        """The crawl's scope, known once its seeds are; before the first submit."""
        ...

    def submit(self, url: str, depth: int, validators: Validators | None) -> Future[CrawlEvent]:
        """A visit of ``url``; its future never fails (a failure is a "failed" event)."""
        ...

    def close(self) -> None:
        """Cancel visits not yet started, wait for the running ones, free the fetchers."""
        ...


class ThreadVisits:
    """Visits on threads in this process, all through one visitor's Fetcher."""

    def __init__(self, visitor: PageVisitor, concurrency: int) -> None:
        self.visitor = visitor
        self.capacity = max(1, concurrency)
        self._threads: ThreadPoolExecutor | None = None

    def start(self, scope: UrlScope) -> None:
        self.visitor.scope = scope
        self._threads = ThreadPoolExecutor(max_workers=self.capacity)

    def submit(self, url: str, depth: int, validators: Validators | None) -> Future[CrawlEvent]:
        if self._threads is None:
            raise RuntimeError("ThreadVisits.submit before start")
        return self._threads.submit(self.visitor.visit, url, depth, validators)

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None


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
