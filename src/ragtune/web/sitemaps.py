"""Sitemap discovery: /sitemap.xml, robots.txt Sitemap: lines, sitemap indexes, gzip."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import lxml.etree

from ragtune.errors import FetchError
from ragtune.web.fetch import Fetcher
from ragtune.web.urls import normalise

SITEMAP_TYPES = frozenset(
    {
        "application/xml",
        "text/xml",
        "application/x-gzip",
        "application/gzip",
        "application/octet-stream",
    }
)
MAX_SITEMAPS = 50
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit, uncompressed


def sitemap_urls(fetcher: Fetcher, sitemaps: list[str], limit: int) -> Iterator[str]:
    """Page URLs listed by ``sitemaps`` and any sitemap indexes they name, at most ``limit``."""
    queue = list(dict.fromkeys(sitemaps))
    seen = set(queue)
    yielded = 0
    fetched = 0
    while queue and fetched < MAX_SITEMAPS and yielded < limit:
        sitemap = queue.pop(0)
        fetched += 1
        try:
            page = fetcher.fetch(sitemap, accept=SITEMAP_TYPES)
        except FetchError:
            continue  # a missing sitemap only means less discovery
        root = _parse(page.body)
        if root is None:
            continue
        for loc in root.iterfind(".//{*}loc"):
            url = normalise((loc.text or "").strip())
            if not url.startswith(("http://", "https://")):
                continue
            if _local(root.tag) == "sitemapindex":
                if url not in seen:
                    seen.add(url)
                    queue.append(url)
            else:
                yield url
                yielded += 1
                if yielded >= limit:
                    return


def _parse(body: bytes) -> lxml.etree._Element | None:
    if body[:2] == b"\x1f\x8b":
        try:
            # Bounded decompression: a sitemap bomb stops at the protocol's size limit.
            body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, MAX_SITEMAP_BYTES)
        except (zlib.error, EOFError, gzip.BadGzipFile):
            return None
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        return lxml.etree.fromstring(body, parser)
    except lxml.etree.XMLSyntaxError:
        return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
