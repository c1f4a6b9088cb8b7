"""Content to Documents: the one place that reads bytes of each media type as Markdown.

A fetched page (``web/``) and a local file (``files.py``) both come here with their
bytes, their media type and a :class:`Origin`. HTML becomes its main content as
Markdown, a PDF one Document per page with text, DOCX its paragraphs, JSON and
text themselves. Like every extractor here, these raise ExtractionError with the
bare reason; wrap the call in :func:`named` to put the source's name in front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from ragtune.documents import Document, content_hash
from ragtune.errors import ExtractionError, RagtuneError
from ragtune.extract.html import ExtractedPage, extract_html
from ragtune.extract.media_types import DOCX_TYPES, HTML_TYPES, JSON_TYPES, PDF_TYPES
from ragtune.extract.pdf import pdf_pages
from ragtune.extract.text import check_json, decode_text
from ragtune.extract.word import docx_text

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where content was read from, as its Documents will name it."""

    url: str  # the document's identity: a PDF page's id derives from URL#page=N
    base_url: str  # what the bytes were read from (after redirects): HTML links resolve here
    title: str  # unless the content names its own (an HTML page does)
    metadata: dict[str, object] = field(default_factory=dict)  # kept on every Document


# How an HTML page is read: extract_html, or the combining extractor's modes.
HtmlExtractor = Literal["default", "fast", "best"]


def content_documents(
    data: bytes, media_type: str, origin: Origin, encoding: str | None = None
) -> list[Document]:
    """The Documents whose text is Markdown: one, or one per PDF page with text.

    ``encoding`` is the declared character set of text; it is trusted only if it
    decodes the bytes. Every Document's metadata holds the origin's, its ``title``
    and ``content_type`` (``media_type``), and its ``content_hash``.
    """
    common = {"title": origin.title, **origin.metadata, "content_type": media_type}
    if media_type in HTML_TYPES:
        page = extract_html(data, url=origin.base_url)
        return [make_document(page.markdown, {**common, **page.metadata})]
    if media_type in PDF_TYPES:
        return [
            make_document(text, {**common, "page": number}, f"{origin.url}#page={number}")
            for number, text in pdf_pages(data)
        ]
    if media_type in DOCX_TYPES:
        return [make_document(docx_text(data), common)]
    text = decode_text(data, encoding).strip()
    if media_type in JSON_TYPES:
        text = check_json(text)
    if not text:
        raise ExtractionError("the document is empty")
    return [make_document(text, common)]


def main_content(
    data: bytes,
    media_type: str,
    origin: Origin,
    encoding: str | None = None,
    extractor: HtmlExtractor = "default",
) -> ExtractedPage:
    """One source's main content as one page (what ``ragtune extract`` prints): an HTML
    page's own extraction, with its plain text; anything else its Documents joined.
    ``extractor`` "fast" or "best" reads HTML with the combining extractor
    (``ragtune.extract.ensemble``) instead of ``extract_html``."""
    if media_type in HTML_TYPES and extractor != "default":
        try:  # resiliparse and readability: an extra, loaded only when asked for
            from ragtune.extract.ensemble import extract_combined
        except ImportError as missing:
            package = (missing.name or "").split(".")[0] or "its libraries"
            raise RagtuneError(
                f"--extractor {extractor} needs {package}: pip install 'ragtune[ensemble]'"
            ) from None
        return extract_combined(data, url=origin.base_url, extractor=extractor)
    if media_type in HTML_TYPES:
        return extract_html(data, url=origin.base_url)
    documents = content_documents(data, media_type, origin, encoding)
    first = documents[0].metadata
    return ExtractedPage(
        markdown="\n\n".join(document.text for document in documents),
        title=str(first.get("title", "")),
        metadata=first,
    )


def named(source: str, read: Callable[[], T]) -> T:
    """``read()``, with the name of the document put once in front of an extraction error."""
    try:
        return read()
    except ExtractionError as error:
        raise ExtractionError(f"{source}: {error}") from None


def make_document(text: str, metadata: dict[str, object], doc_key: str = "") -> Document:
    """A Document with its content hash; ``doc_key`` gives each part of one source
    (a PDF's pages) an id of its own. Text and metadata are made valid Unicode: one
    lone surrogate would fail the tokenizer, and with it the whole ingest."""
    text = valid_unicode(text)
    for key, value in metadata.items():
        if isinstance(value, str):
            metadata[key] = valid_unicode(value)
    metadata["content_hash"] = content_hash(text)
    document = Document(text=text, metadata=metadata)
    if doc_key:
        document.id_ = content_hash(doc_key)[:32]
    return document


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (valid text is returned as is)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
