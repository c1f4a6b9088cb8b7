"""One spelling per page (RFC 3986 section 6.2.2): percent-escapes normalised.

An escaped unreserved character is decoded (``%7E`` is ``~``), any other escape gets
upper-case hex (``%c3%a9`` is ``%C3%A9``), a reserved character stays escaped
(``%2F`` is not ``/``). A crawl of a site whose links spell one page several ways
reads it once, and an index an older ragtune wrote with the old spelling is updated
in place rather than given the page twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.webserver import Site, serve

from ragtune.documents import Document
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.ingest import IngestSettings, ingest
from ragtune.sync import sync
from ragtune.web.reader import WebReader
from ragtune.web.urls import normalise, normalise_escapes

BASE = "http://example.com"


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("/caf%c3%a9", "/caf%C3%A9"),  # hex digits upper-cased
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),  # and a raw character escaped, the same way
        ("/%7Euser/", "/~user/"),  # unreserved characters decoded
        ("/%7euser/", "/~user/"),
        ("/%41%62%2d%2E%5f%30", "/Ab-._0"),
        ("/a%2Fb", "/a%2Fb"),  # reserved characters stay escaped
        ("/a%2fb", "/a%2Fb"),
        ("/a%3fb%23c%25d", "/a%3Fb%23c%25d"),
        ("/a%20b", "/a%20b"),
        ("/a%zzb%4", "/a%zzb%4"),  # not an escape: left as it is
        ("/docs/%2e%2e/faq", "/faq"),  # escaped dots are dot segments once decoded
        ("/docs/%2E/faq", "/docs/faq"),
    ],
)
def test_path_escapes_have_one_spelling(spelling: str, normal: str) -> None:
    assert normalise(BASE + spelling) == BASE + normal
    assert normalise(normalise(BASE + spelling)) == BASE + normal


@pytest.mark.parametrize(
    ("query", "normal"),
    [
        ("q=%7euser&lang=%41", "q=~user&lang=A"),
        ("q=caf%c3%a9", "q=caf%C3%A9"),
        # Reserved in a query: a & or = that is data, a + that is not a space.
        ("a=1%262&b=x%3dy&c=1%2b1&d=a+b", "a=1%262&b=x%3Dy&c=1%2B1&d=a+b"),
        ("z=1&a=2&m=%2f", "z=1&a=2&m=%2F"),  # the parameters keep their order
    ],
)
def test_query_escapes_have_one_spelling_and_keep_their_order(query: str, normal: str) -> None:
    assert normalise(f"{BASE}/search?{query}") == f"{BASE}/search?{normal}"


def test_escapes_alone() -> None:
    assert normalise_escapes("%7e%2f%c3%a9") == "~%2F%C3%A9"
    assert normalise_escapes("100%") == "100%"


# --- a real crawl ------------------------------------------------------------------------

SPELLINGS = ["/~keeper/log.html", "/%7Ekeeper/log.html", "/%7ekeeper/log.html"]
CAFE_SPELLINGS = ["/caf%c3%a9.html", "/caf%C3%A9.html", "/café.html"]


def article(title: str, text: str, links: list[str] | None = None) -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links or [])
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{text}</p><ul>{anchors}</ul></article></body></html>"
    )


@pytest.fixture()
def lighthouse() -> Iterator[Site]:
    """A site whose index links to each of two pages under three spellings."""
    site = Site()
    site.page(
        "/index.html", article("Lighthouse", "The lighthouse pages.", SPELLINGS + CAFE_SPELLINGS)
    )
    site.page("/~keeper/log.html", article("Log", "The keeper logs the weather at noon."))
    site.page("/caf%C3%A9.html", article("Café", "The harbour café opens at dawn."))
    with serve(site) as served:
        yield served


def test_a_page_linked_under_several_spellings_is_read_once(lighthouse: Site) -> None:
    reader = WebReader(crawl=True, use_sitemaps=False)
    documents = reader.load_data([f"{lighthouse.base}/index.html"])
    urls = sorted(d.metadata["url"] for d in documents)
    assert urls == [
        f"{lighthouse.base}/caf%C3%A9.html",
        f"{lighthouse.base}/index.html",
        f"{lighthouse.base}/~keeper/log.html",
    ]
    assert len({d.id_ for d in documents}) == 3
    # One request per page: the other spellings were known before they were asked for.
    assert len(lighthouse.requests_for("/~keeper/log.html")) == 1
    assert len(lighthouse.requests_for("/caf%C3%A9.html")) == 1
    asked = {r.path for r in lighthouse.log}
    assert not asked & {"/%7Ekeeper/log.html", "/%7ekeeper/log.html", "/caf%c3%a9.html"}


def old_index(directory: Path, url: str) -> None:
    """An index as an older ragtune wrote it: the page under the spelling it was linked by."""
    page = Document("The keeper logs the weather at noon.", {"url": url, "title": "Log"})
    VectorStoreIndex.from_documents([page], persist_dir=directory)


def test_ingest_into_an_old_index_replaces_the_page_under_its_old_spelling(
    lighthouse: Site, tmp_path: Path
) -> None:
    old_index(tmp_path / "idx", f"{lighthouse.base}/%7ekeeper/log.html")
    ingest(
        [f"{lighthouse.base}/%7Ekeeper/log.html"],
        tmp_path / "idx",
        IngestSettings(use_sitemaps=False),
    )
    index = VectorStoreIndex.load(tmp_path / "idx")
    assert list(index.store.document_metadata()) == [f"{lighthouse.base}/~keeper/log.html"]
    assert index.stats()["documents"] == 1


def test_sync_of_an_old_index_replaces_the_page_under_its_old_spelling(
    lighthouse: Site, tmp_path: Path
) -> None:
    old_index(tmp_path / "idx", f"{lighthouse.base}/%7ekeeper/log.html")
    result = sync(tmp_path / "idx")
    [synced] = result.urls
    assert (synced.url, synced.action) == (f"{lighthouse.base}/~keeper/log.html", "changed")
    index = VectorStoreIndex.load(tmp_path / "idx")
    assert list(index.store.document_metadata()) == [f"{lighthouse.base}/~keeper/log.html"]
    assert index.stats()["documents"] == 1
