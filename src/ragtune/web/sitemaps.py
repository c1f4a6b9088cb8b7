"""Sitemap discovery: /sitemap.xml, robots.txt Sitemap: lines, sitemap indexes, gzip."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

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
_FEED_BYTES = 1024 * 1024


def sitemap_urls(
    fetcher: Fetcher,
    sitemaps: list[str],
    limit: int,
    in_scope: Callable[[str], bool] = lambda url: True,
    on_cut: Callable[[FetchError], None] = lambda note: None,
    wanted: Callable[[str], bool] = lambda url: True,
) -> Iterator[str]:
    """Page URLs listed by ``sitemaps`` and any sitemap indexes they name that are
    ``wanted``, at most ``limit`` (a host-wide sitemap must not spend a crawl's limit
    on pages outside its scope).

    Only sitemaps ``in_scope`` are read, and no redirect out of it is followed. A
    sitemap over the protocol's size limit is read up to it, and ``on_cut`` told.
    """
    queue = [sitemap for sitemap in dict.fromkeys(sitemaps) if in_scope(sitemap)]
    seen = set(queue)
    yielded = 0
    fetched = 0

    def check_redirect(target: str) -> str | None:
        return None if in_scope(target) else f"redirects to {target}, outside the crawl scope"

    while queue and fetched < MAX_SITEMAPS and yielded < limit:
        sitemap = queue.pop(0)
        fetched += 1
        try:
            page = fetcher.fetch(
                sitemap,
                accept=SITEMAP_TYPES,
                max_bytes=MAX_SITEMAP_BYTES,
                truncate=True,
                check_redirect=check_redirect,
            )
        except FetchError:
            continue  # a missing sitemap only means less discovery
        body, cut = _decompressed(page.body)
        if page.truncated or cut:
            on_cut(
                FetchError(
                    sitemap,
                    f"sitemap truncated at the {MAX_SITEMAP_BYTES / 2**20:g} MB limit; "
                    "the entries before the cut were used",
                    kind="too_large",
                )
            )
        for is_index, text in _entries(body):
            url = normalise(text)
            if not url.startswith(("http://", "https://")):
                continue
            if is_index:
                if url not in seen and in_scope(url):
                    seen.add(url)
                    queue.append(url)
            elif wanted(url):
                yield url
                yielded += 1
                if yielded >= limit:
                    return


def _decompressed(body: bytes) -> tuple[bytes, bool]:
    """A gzipped sitemap inflated up to the size limit (so a bomb stops there), and
    whether it was cut; any other body as it is."""
    if body[:2] != b"\x1f\x8b":
        return body, False
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_SITEMAP_BYTES)
    except zlib.error:
        return b"", False
    return data, bool(inflater.unconsumed_tail)


def _entries(body: bytes) -> Iterator[tuple[bool, str]]:
    """(from a sitemap index?, <loc> text) for each <loc>, in order, as far as the XML
    goes: a sitemap cut off mid-way, or broken, still gives the entries before."""
    parser = lxml.etree.XMLPullParser(
        events=("end",), tag="{*}loc", resolve_entities=False, no_network=True, huge_tree=False
    )
    for start in range(0, len(body), _FEED_BYTES):
        try:
            parser.feed(body[start : start + _FEED_BYTES])
        except lxml.etree.XMLSyntaxError:
            yield from _read(parser)
            return
        yield from _read(parser)


def _read(parser: lxml.etree.XMLPullParser) -> Iterator[tuple[bool, str]]:
    for _, loc in parser.read_events():
        entry = loc.getparent()  # <url> or <sitemap>; an image's <loc> names no page
        if entry is None or _local(entry.tag) not in ("url", "sitemap"):
            continue
        root = loc.getroottree().getroot()
        yield _local(root.tag) == "sitemapindex", (loc.text or "").strip()
        listing = entry.getparent()
        # Entries already read are dropped, so a large sitemap is never whole in memory.
        while listing is not None and entry.getprevious() is not None:
            del listing[0]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
