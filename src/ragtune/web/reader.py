"""WebReader: URLs in, Markdown Documents out (LlamaIndex's ScrapflyReader, offline)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from ragtune.documents import Document, content_hash
from ragtune.errors import ExtractionError, FetchError, RagtuneError
from ragtune.extract import extract_html
from ragtune.web.crawl import CrawlLimits, crawl
from ragtune.web.fetch import FetchedPage, Fetcher

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, "Document | RagtuneError"], None]


class WebReader:
    """Fetch web pages and return their main content as Markdown Documents.

    ``ignore_scrape_failures=True`` (the default, as in LlamaIndex's
    ScrapflyReader) logs and skips pages that fail; ``False`` raises the first
    failure. ``crawl=True`` also follows same-site links from each URL.
    """

    def __init__(
        self,
        ignore_scrape_failures: bool = True,
        crawl: bool = False,
        max_depth: int = 3,
        max_pages: int = 200,
        timeout: float = 20.0,
    ) -> None:
        self.ignore_scrape_failures = ignore_scrape_failures
        self.crawl = crawl
        self.limits = CrawlLimits(max_depth=max_depth, max_pages=max_pages)
        self.timeout = timeout
        self.failures: list[RagtuneError] = []

    def load_data(
        self, urls: Iterable[str], on_page: ProgressCallback | None = None
    ) -> list[Document]:
        """Fetch ``urls`` and return one Document per readable page."""
        return list(self.lazy_load_data(urls, on_page))

    def lazy_load_data(
        self, urls: Iterable[str], on_page: ProgressCallback | None = None
    ) -> Iterator[Document]:
        seeds = [url.strip() for url in urls]
        self.failures = []
        with Fetcher(timeout=self.timeout) as fetcher:
            for url, result in self._fetch_all(fetcher, seeds):
                try:
                    if isinstance(result, RagtuneError):
                        raise result
                    document = page_to_document(result)
                except RagtuneError as error:
                    self._record_failure(error)
                    if on_page:
                        on_page(url, error)
                    continue
                if on_page:
                    on_page(url, document)
                yield document

    def _fetch_all(
        self, fetcher: Fetcher, seeds: list[str]
    ) -> Iterator[tuple[str, FetchedPage | FetchError]]:
        if self.crawl:
            yield from crawl(fetcher, seeds, self.limits)
            return
        for url in seeds:
            try:
                yield url, fetcher.fetch(url)
            except FetchError as error:
                yield url, error

    def _record_failure(self, error: RagtuneError) -> None:
        if not self.ignore_scrape_failures:
            raise error
        logger.warning("skipped %s", error)
        self.failures.append(error)


def page_to_document(page: FetchedPage) -> Document:
    """Turn a fetched page into a Document whose text is Markdown."""
    fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
    if page.is_html:
        extracted = extract_html(page.body, url=page.final_url)
        markdown, metadata = extracted.markdown, dict(extracted.metadata)
    else:
        markdown = page.body.decode(page.encoding or "utf-8", errors="replace").strip()
        if not markdown:
            raise ExtractionError(f"{page.url}: the document is empty")
        metadata = {"title": page.final_url.rsplit("/", 1)[-1] or page.final_url}
    metadata.update(
        url=page.url,
        final_url=page.final_url,
        content_type=page.content_type,
        fetched_at=fetched_at,
        content_hash=content_hash(markdown),
    )
    return Document(text=markdown, metadata=metadata)
