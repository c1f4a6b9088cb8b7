"""A crawl's fetches on a Ray cluster: fetch shards, each the only one to fetch from its hosts.

Per-host politeness (the concurrency cap, ``--delay``, robots.txt's Crawl-delay,
Retry-After blocks) lives in a Fetcher's throttle. Every request to a host goes
through the one shard that owns the host, so those limits hold cluster-wide
however many shards run: the frontier is sharded by host. The driver keeps what
must be one (``ragtune.web.crawl``): the frontier, the seen set, the page and
depth limits, deduplication, and ``--concurrency`` as the crawl's total of
requests in flight.

Hosts go to shards round robin in the order the crawl meets them: a crawl of a
few hosts spreads over as many shards, where hashing host names could put two
on one shard and leave another idle. A shard is a threaded actor (the visits
wait on the network) that asks for no CPU: extraction and embedding keep the
cluster's CPUs. A shard that dies is restarted and its visits in flight are
retried; a visit that still fails is a failed event, and the crawl goes on.

A redirect to another host is followed by the shard that fetched the first URL,
under that shard's limits for the new host (as a browser would follow it).
"""

from __future__ import annotations

from concurrent.futures import Future
from contextlib import suppress
from typing import Any

from ragtune.errors import FetchError, first_line
from ragtune.web.crawl import CrawlEvent, CrawlOptions
from ragtune.web.fetch import Validators
from ragtune.web.urls import UrlScope, host_of
from ragtune.web.visits import FetchSettings, PageVisitor

# Restarts of a dead shard, and retries of each visit it had in flight.
SHARD_RESTARTS = 3
CLOSE_TIMEOUT_S = 30.0


class FetchShard:
    """A Ray actor: visits of the hosts it owns, through one Fetcher and renderer."""

    def __init__(self, settings: FetchSettings, scope: UrlScope) -> None:
        self.fetcher = settings.fetcher()
        self.renderer = settings.renderer()
        self.visitor = PageVisitor(self.fetcher, settings.obey_robots, self.renderer)
        self.visitor.scope = scope

    def visit(self, url: str, depth: int, validators: Validators | None) -> CrawlEvent:
        return self.visitor.visit(url, depth, validators)

    def close(self) -> None:
        self.renderer.close()
        self.fetcher.close()


class RayVisits:
    """A ``VisitPool`` of up to ``shards`` fetch shards, started as hosts appear."""

    def __init__(
        self, ray: Any, settings: FetchSettings, options: CrawlOptions, shards: int
    ) -> None:
        self.ray = ray
        self.settings = settings
        self.capacity = max(1, options.concurrency)
        self.shard_count = max(1, shards)
        self.owners: dict[str, int] = {}  # host -> the index of the shard that fetches it
        self._shards: list[Any] = []
        self._scope = UrlScope([])

    def start(self, scope: UrlScope) -> None:
        self._scope = scope

    def submit(self, url: str, depth: int, validators: Validators | None) -> Future[CrawlEvent]:
        visited: Future[CrawlEvent] = Future()
        reference = self._shard_of(host_of(url)).visit.remote(url, depth, validators)
        reference.future().add_done_callback(lambda done: _settle(visited, done, url, depth))
        return visited

    def close(self) -> None:
        for shard in self._shards:
            with suppress(self.ray.exceptions.RayError):
                self.ray.get(shard.close.remote(), timeout=CLOSE_TIMEOUT_S)
            with suppress(self.ray.exceptions.RayError):
                self.ray.kill(shard)
        self._shards = []

    def _shard_of(self, host: str) -> Any:
        index = self.owners.get(host)
        if index is None:
            index = self.owners[host] = len(self.owners) % self.shard_count
        while len(self._shards) <= index:
            self._shards.append(self._start_shard())
        return self._shards[index]

    def _start_shard(self) -> Any:
        actor = self.ray.remote(FetchShard).options(
            num_cpus=0,  # waiting on the network: the CPUs stay with extraction and embedding
            max_concurrency=self.capacity,
            max_restarts=SHARD_RESTARTS,
            max_task_retries=SHARD_RESTARTS,
            scheduling_strategy="SPREAD",
        )
        return actor.remote(self.settings, self._scope)


def _settle(visited: Future[CrawlEvent], done: Future[Any], url: str, depth: int) -> None:
    """The shard's event; its failure (the shard gone for good) as a failed visit."""
    try:
        event = done.result()
    except Exception as error:  # a RayError: a failure of the cluster, not of the page
        reason = f"the fetch worker failed: {first_line(error)}"
        failure = FetchError(url, reason, kind="connection")
        event = CrawlEvent(url, "failed", reason, depth, error=failure)
    visited.set_result(event)
