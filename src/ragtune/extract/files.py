"""Read one local file or URL into an ExtractedPage (for `ragtune extract`)."""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import ExtractionError, RagtuneError
from ragtune.extract.html import ExtractedPage, extract_html

HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
MAX_FILE_BYTES = 50 * 1024 * 1024


def extract_source(source: str) -> ExtractedPage:
    if source.startswith(("http://", "https://")):
        from ragtune.web.fetch import Fetcher
        from ragtune.web.reader import page_to_document

        with Fetcher() as fetcher:
            document = page_to_document(fetcher.fetch(source))
        return ExtractedPage(
            markdown=document.text,
            text=document.text,
            title=str(document.metadata.get("title", "")),
            metadata=document.metadata,
        )
    return extract_file(Path(source))


def extract_file(path: Path) -> ExtractedPage:
    if not path.exists():
        raise RagtuneError(f"{path}: no such file (give a file path or an http(s) URL)")
    if not path.is_file():
        raise RagtuneError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RagtuneError(f"{path}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit")
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix in HTML_SUFFIXES:
        return extract_html(data, url=path.resolve().as_uri())
    if suffix in TEXT_SUFFIXES:
        if b"\x00" in data:
            raise ExtractionError(f"{path}: binary data in a text file")
        text = data.decode("utf-8", errors="replace").strip()
        if not text:
            raise ExtractionError(f"{path}: the file is empty")
        return ExtractedPage(
            markdown=text, text=text, title=path.stem, metadata={"title": path.stem}
        )
    raise RagtuneError(
        f"{path}: unsupported file type {suffix or '(none)'}; expected HTML, Markdown or text"
    )
