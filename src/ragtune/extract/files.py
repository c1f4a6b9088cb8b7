"""Local files and folders as Documents: Markdown, text, HTML, PDF, JSON and (extra) DOCX."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from ragtune.documents import Document, content_hash
from ragtune.errors import ExtractionError, RagtuneError
from ragtune.extract.html import ExtractedPage, extract_html
from ragtune.extract.pdf import pdf_pages
from ragtune.extract.text import check_json, decode_text

HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
READABLE_SUFFIXES = HTML_SUFFIXES | TEXT_SUFFIXES | {".pdf", ".json", ".docx"}
MAX_FILE_BYTES = 50 * 1024 * 1024


def extract_source(source: str) -> ExtractedPage:
    """The main content of one file or URL (for `ragtune extract`)."""
    if source.startswith(("http://", "https://")):
        from ragtune.web.fetch import Fetcher
        from ragtune.web.reader import page_to_documents

        with Fetcher() as fetcher:
            page = fetcher.fetch(source)
        if page.is_html:
            return extract_html(page.body, url=page.final_url)
        return _joined(page_to_documents(page))
    path = _checked(Path(source))
    if path.suffix.lower() in HTML_SUFFIXES:
        return extract_html(path.read_bytes(), url=path.resolve().as_uri())
    return _joined(file_documents(path))


def file_documents(path: Path) -> list[Document]:
    """One Document for a file, or one per page of a PDF."""
    path = _checked(path)
    suffix = path.suffix.lower()
    data = path.read_bytes()
    base: dict[str, object] = {
        "url": path.resolve().as_uri(),
        "path": str(path.resolve()),
        "title": path.stem,
        "modified_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(
            timespec="seconds"
        ),
    }
    if suffix in HTML_SUFFIXES:
        page = extract_html(data, url=str(base["url"]))
        return [
            make_document(page.markdown, {**base, **page.metadata, "content_type": "text/html"})
        ]
    if suffix == ".pdf":
        return [
            make_document(
                text,
                {**base, "page": number, "content_type": "application/pdf"},
                f"{base['url']}#page={number}",
            )
            for number, text in pdf_pages(data, str(path))
        ]
    if suffix == ".docx":
        return [make_document(_docx_text(path), {**base, "content_type": "application/docx"})]
    if suffix in TEXT_SUFFIXES or suffix == ".json":
        text = decode_text(data, "utf-8", str(path)).strip()
        if suffix == ".json":
            text = check_json(text, str(path))
        if not text:
            raise ExtractionError(f"{path}: the file is empty")
        kind = "application/json" if suffix == ".json" else "text/markdown"
        return [make_document(text, {**base, "content_type": kind})]
    raise RagtuneError(
        f"{path}: unsupported file type {suffix or '(none)'}; "
        "expected HTML, Markdown, text, JSON, PDF or DOCX"
    )


def read_folder(
    root: Path, include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Iterator[tuple[Path, list[Document] | RagtuneError]]:
    """Every readable file under ``root`` (recursively), filtered by glob patterns on the
    path relative to ``root``; files of other types are not read at all."""
    include, exclude = list(include), list(exclude)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden files and folders (.git, .venv) are never knowledge
        if path.suffix.lower() not in READABLE_SUFFIXES:
            continue
        if include and not any(fnmatch.fnmatch(relative, p) for p in include):
            continue
        if any(fnmatch.fnmatch(relative, p) for p in exclude):
            continue
        try:
            yield path, file_documents(path)
        except RagtuneError as error:
            yield path, error


def _checked(path: Path) -> Path:
    if not path.exists():
        raise RagtuneError(f"{path}: no such file (give a file path or an http(s) URL)")
    if not path.is_file():
        raise RagtuneError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RagtuneError(f"{path}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit")
    return path


def _docx_text(path: Path) -> str:
    try:
        import docx
    except ImportError:
        raise RagtuneError(
            f"{path}: reading DOCX needs the docx extra (pip install 'ragtune[docx]')"
        ) from None
    try:
        paragraphs = [p.text for p in docx.Document(str(path)).paragraphs if p.text.strip()]
    except Exception as error:  # python-docx raises a variety of zip and XML errors
        raise ExtractionError(f"{path}: unreadable DOCX ({type(error).__name__})") from None
    if not paragraphs:
        raise ExtractionError(f"{path}: the document is empty")
    return "\n\n".join(paragraphs)


def make_document(text: str, metadata: dict[str, object], doc_key: str = "") -> Document:
    """A Document with its content hash; ``doc_key`` gives each part of one source
    (a PDF's pages) an id of its own."""
    metadata["content_hash"] = content_hash(text)
    document = Document(text=text, metadata=metadata)
    if doc_key:
        document.id_ = content_hash(doc_key)[:32]
    return document


def _joined(documents: list[Document]) -> ExtractedPage:
    text = "\n\n".join(d.text for d in documents)
    first = documents[0].metadata
    return ExtractedPage(markdown=text, title=str(first.get("title", "")), metadata=first)
