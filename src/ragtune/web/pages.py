"""A fetched page as Documents: HTML to Markdown, a PDF page by page, text and JSON.

Its own module because it runs in the extraction worker processes too
(``extraction_pool``), which the reader drives.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ragtune.documents import Document
from ragtune.errors import ExtractionError
from ragtune.extract import extract_html
from ragtune.extract.files import make_document, named
from ragtune.extract.pdf import pdf_pages
from ragtune.extract.text import check_json, decode_text
from ragtune.web.fetch import JSON_TYPES, PDF_TYPES, FetchedPage


def page_to_documents(page: FetchedPage) -> list[Document]:
    """A fetched page as Documents whose text is Markdown: one, or one per PDF page.
    An ExtractionError names the page's URL once, in front of the reason."""
    return named(page.url, lambda: _page_documents(page))


def _page_documents(page: FetchedPage) -> list[Document]:
    base: dict[str, object] = {
        "url": page.url,
        "final_url": page.final_url,
        "content_type": page.content_type,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if page.etag:
        base["etag"] = page.etag
    if page.last_modified:
        base["last_modified"] = page.last_modified
    if page.rendered:
        base["rendered"] = True
    if page.is_html:
        try:
            extracted = extract_html(page.body, url=page.final_url)
        except ExtractionError as error:
            if not page.blocked_origins:
                raise
            # Most likely why a rendered app shell stayed empty: say what would fix it.
            origins = ", ".join(page.blocked_origins[:3])
            raise ExtractionError(
                f"{error} after rendering; the page also asked {origins}, which rendered "
                "pages may not reach (allow an origin with --render-allow)"
            ) from None
        return [make_document(extracted.markdown, {**extracted.metadata, **base})]
    if page.content_type in PDF_TYPES:
        title = _name_of(page.final_url)
        return [
            make_document(
                text, {"title": title, "page": number, **base}, f"{page.url}#page={number}"
            )
            for number, text in pdf_pages(page.body)
        ]
    text = decode_text(page.body, page.encoding).strip()
    if page.content_type in JSON_TYPES:
        text = check_json(text)
    if not text:
        raise ExtractionError("the document is empty")
    return [make_document(text, {"title": _name_of(page.final_url), **base})]


def _name_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1] or url
