"""One page read on its own: a fetched page as Documents (a crawl's pages, in the
extraction workers too), and one URL or file as its main content (``ragtune extract``).

What a page becomes is decided in ``extract/documents.py``; this module says what
the fetch knows of where the page came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ragtune.documents import Document
from ragtune.errors import ExtractionError
from ragtune.extract.documents import (
    HtmlExtractor,
    Origin,
    content_documents,
    main_content,
    named,
)
from ragtune.extract.files import file_main_content
from ragtune.extract.html import ExtractedPage
from ragtune.net.address_guard import AddressPolicy
from ragtune.web.fetch import FetchedPage, Fetcher


def page_to_documents(page: FetchedPage) -> list[Document]:
    """A fetched page as Documents whose text is Markdown: one, or one per PDF page.
    An ExtractionError names the page's URL once, in front of the reason."""
    return named(page.url, lambda: _page_documents(page))


def extract_source(
    source: str, extractor: HtmlExtractor = "default", address_policy: AddressPolicy | None = None
) -> ExtractedPage:
    """The main content of one file or http(s) URL; ``extractor`` as ``main_content``;
    a URL is fetched from the addresses ``address_policy`` allows (by default, any)."""
    if not source.startswith(("http://", "https://")):
        return file_main_content(Path(source), extractor)
    with Fetcher(address_policy=address_policy) as fetcher:
        page = fetcher.fetch(source)
    return named(
        source,
        lambda: main_content(
            page.body, page.content_type, _origin(page), page.encoding, extractor=extractor
        ),
    )


def _page_documents(page: FetchedPage) -> list[Document]:
    try:
        return content_documents(page.body, page.content_type, _origin(page), page.encoding)
    except ExtractionError as error:
        if not (page.is_html and page.blocked_origins):
            raise
        # Most likely why a rendered app shell stayed empty: say what would fix it.
        origins = ", ".join(page.blocked_origins[:3])
        raise ExtractionError(
            f"{error} after rendering; the page also asked {origins}, which rendered "
            "pages may not reach (allow an origin with --render-allow)"
        ) from None


def _origin(page: FetchedPage) -> Origin:
    metadata: dict[str, object] = {
        "url": page.url,
        "final_url": page.final_url,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if page.etag:
        metadata["etag"] = page.etag
    if page.last_modified:
        metadata["last_modified"] = page.last_modified
    if page.rendered:
        metadata["rendered"] = True
    title = page.final_url.rstrip("/").rsplit("/", 1)[-1] or page.final_url
    return Origin(url=page.url, base_url=page.final_url, title=title, metadata=metadata)
