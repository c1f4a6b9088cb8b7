"""Extraction beside fetching: pages become Documents in worker processes during a crawl.

Extraction is CPU-bound Python (trafilatura, lxml) and the GIL would make the
crawl wait for it; measured on a 2-core machine, a 2,000-page crawl spent
most of its time extracting in the crawling process. Small jobs stay
in-process: starting workers costs about a second.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context

from ragtune.documents import Document
from ragtune.errors import ExtractionError, RagtuneError
from ragtune.runtime import env_count
from ragtune.web.crawl import CrawlEvent
from ragtune.web.fetch import FetchedPage
from ragtune.web.pages import page_to_documents

IN_PROCESS_PAGES = 16  # pages extracted in-process before workers are worth starting
MAX_PENDING_PER_WORKER = 8  # back-pressure: the crawl waits when extraction falls behind

Outcome = list[Document] | RagtuneError
# Where a crawl's pages are extracted: this module's process pool by default, a Ray
# cluster's workers with ``ingest --engine ray``. Events go in as fetched; each comes
# back with its outcome, in any order.
PageExtractor = Callable[[Iterator[CrawlEvent]], Iterator[tuple[CrawlEvent, Outcome]]]


def extract_pages(events: Iterator[CrawlEvent]) -> Iterator[tuple[CrawlEvent, Outcome]]:
    """Each crawl event with its Documents (or the error extraction raised)."""
    workers = extraction_workers()
    pool: ProcessPoolExecutor | None = None
    pending: dict[Future[list[Document] | str], CrawlEvent] = {}
    extracted = 0
    try:
        for event in events:
            if event.status != "fetched" or event.page is None:
                yield event, []
                continue
            extracted += 1
            if extracted <= IN_PROCESS_PAGES or workers == 1:
                yield event, outcome(convert(event.page))
                continue
            if pool is None:
                # spawn, not fork: the crawler's threads and sockets must not be copied.
                pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            pending[pool.submit(convert, event.page)] = event
            while len(pending) >= workers * MAX_PENDING_PER_WORKER:
                yield from _collect(pending, FIRST_COMPLETED)
            yield from _collect(pending, None)
        while pending:
            yield from _collect(pending, FIRST_COMPLETED)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def extraction_workers() -> int:
    """Worker processes for a crawl's extraction: ``RAGTUNE_EXTRACT_WORKERS``, else one a CPU."""
    return env_count("RAGTUNE_EXTRACT_WORKERS", os.cpu_count() or 1)


def convert(page: FetchedPage) -> list[Document] | str:
    """page_to_documents, with a failure returned as its message (exceptions with
    custom constructors do not survive the trip between processes)."""
    try:
        return page_to_documents(page)
    except RagtuneError as error:
        return str(error)


def _collect(
    pending: dict[Future[list[Document] | str], CrawlEvent], mode: str | None
) -> Iterator[tuple[CrawlEvent, Outcome]]:
    if mode is None:
        done = [future for future in pending if future.done()]
    else:
        done, _ = wait(pending, return_when=mode)  # type: ignore[assignment]
    for future in done:
        yield pending.pop(future), outcome(future.result())


def outcome(result: list[Document] | str) -> Outcome:
    return ExtractionError(result) if isinstance(result, str) else result
