"""Breadth-first discovery of same-site pages from seed URLs."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html

from ragtune.errors import FetchError
from ragtune.web.fetch import FetchedPage, Fetcher


@dataclass(frozen=True)
class CrawlLimits:
    max_depth: int = 3
    max_pages: int = 200


def crawl(
    fetcher: Fetcher, seeds: list[str], limits: CrawlLimits
) -> Iterator[tuple[str, FetchedPage | FetchError]]:
    """Yield (url, page or error) for each seed and every same-host page linked from it.

    Failures are yielded, not raised, so one bad link does not end a crawl.
    """
    hosts = {urlsplit(seed).netloc for seed in seeds}
    queue: deque[tuple[str, int]] = deque((normalise(seed), 0) for seed in seeds)
    seen = {url for url, _ in queue}
    fetched = 0
    while queue and fetched < limits.max_pages:
        url, depth = queue.popleft()
        try:
            page = fetcher.fetch(url)
        except FetchError as error:
            yield url, error
            continue
        fetched += 1
        yield url, page
        if depth >= limits.max_depth or not page.is_html:
            continue
        for link in links(page):
            if urlsplit(link).netloc in hosts and link not in seen:
                seen.add(link)
                queue.append((link, depth + 1))


def links(page: FetchedPage) -> list[str]:
    try:
        tree = lxml.html.fromstring(page.body)
    except (ValueError, lxml.etree.ParserError):
        return []
    found = []
    for href in tree.xpath("//a/@href"):
        absolute = normalise(urljoin(page.final_url, str(href).strip()))
        if absolute.startswith(("http://", "https://")):
            found.append(absolute)
    return found


def normalise(url: str) -> str:
    return urldefrag(url)[0]
