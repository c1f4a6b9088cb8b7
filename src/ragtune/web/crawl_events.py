"""What a crawl is told and what it reports: its options, one event per URL, the report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from ragtune.errors import RagtuneError
from ragtune.web.fetch import FetchedPage
from ragtune.web.urls import CrawlScope

Status = Literal["fetched", "unchanged", "skipped", "failed"]
# Why a URL was skipped: robots.txt, its content type, a duplicate, a redirect the
# crawl may not follow; "sitemap" marks a sitemap that was only partly read;
# "max_pages" and "max_depth" a link in scope that the crawl's limits left unvisited.
SkipKind = Literal["robots", "type", "duplicate", "redirect", "sitemap", "max_pages", "max_depth"]
# The limits a crawl can stop at, as their options are named.
UNVISITED_KINDS: tuple[SkipKind, ...] = ("max_pages", "max_depth")
# How many unvisited links a report names; it counts them all.
UNVISITED_LISTED = 100


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
