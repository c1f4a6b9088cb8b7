"""Local files and folders as Documents: Markdown, text, HTML, PDF, JSON and (extra) DOCX.

A folder is walked without leaving it: a symbolic link that resolves outside is
reported and skipped unless links are followed, and a link cycle is walked once.
Every file is read whole, so each is capped: its bytes, and for a ZIP-based
format (DOCX) what it unpacks to, before a parser sees it.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from ragtune.documents import Document, content_hash
from ragtune.errors import ExtractionError, RagtuneError, one_line
from ragtune.extract.html import extract_html
from ragtune.extract.pdf import pdf_pages
from ragtune.extract.text import check_json, decode_text

HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
READABLE_SUFFIXES = HTML_SUFFIXES | TEXT_SUFFIXES | {".pdf", ".json", ".docx"}
MAX_FILE_BYTES = 50 * 1024 * 1024
# What a ZIP-based file may unpack to: python-docx holds every part in memory and
# parses the XML ones, about twice the unpacked size in all.
MAX_UNPACKED_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Skipped:
    """A path a folder read passes over on purpose, and why (a link out of the folder)."""

    reason: str


FileResult = list[Document] | RagtuneError | Skipped
T = TypeVar("T")


def file_documents(path: Path) -> list[Document]:
    """One Document for a file, or one per page of a PDF. Errors name the file as given."""
    suffix = path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        if not path.exists():
            raise RagtuneError(f"{path}: no such file (give a file path or an http(s) URL)")
        if path.is_dir():
            raise RagtuneError(f"{path}: a folder, not a file")
        raise RagtuneError(
            f"{path}: unsupported file type {suffix or '(none)'}; "
            "expected HTML, Markdown, text, JSON, PDF or DOCX"
        )
    return named(str(path), lambda: _documents(path, suffix))


def _documents(path: Path, suffix: str) -> list[Document]:
    data, modified = _read(path)
    uri = path.resolve().as_uri()
    base: dict[str, object] = {
        "url": uri,
        "path": display_path(path.resolve()),
        "title": display_path(path.stem),
        "modified_at": datetime.fromtimestamp(modified, UTC).isoformat(timespec="seconds"),
    }
    if suffix in HTML_SUFFIXES:
        page = extract_html(data, url=uri)
        return [
            make_document(page.markdown, {**base, **page.metadata, "content_type": "text/html"})
        ]
    if suffix == ".pdf":
        return [
            make_document(
                text,
                {**base, "page": number, "content_type": "application/pdf"},
                f"{uri}#page={number}",
            )
            for number, text in pdf_pages(data)
        ]
    if suffix == ".docx":
        return [make_document(docx_text(data), {**base, "content_type": "application/docx"})]
    text = decode_text(data, "utf-8").strip()
    if suffix == ".json":
        text = check_json(text)
    if not text:
        raise ExtractionError("the file is empty")
    kind = "application/json" if suffix == ".json" else "text/markdown"
    return [make_document(text, {**base, "content_type": kind})]


def read_file(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; raises ExtractionError
    (without the path) for anything else."""
    return _read(path)[0]


def _read(path: Path) -> tuple[bytes, float]:
    """The file's bytes and modification time. Opened without blocking and checked on
    the open file: a FIFO would wait forever, and a file can change after a stat."""
    limit = MAX_FILE_BYTES
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ExtractionError("no such file (give a file path or an http(s) URL)") from None
    except OSError as error:
        raise ExtractionError(f"cannot read the file ({error.strerror or error})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ExtractionError("a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ExtractionError("not a regular file (a pipe, socket or device)")
        if info.st_size > limit:
            raise ExtractionError(_too_large(info.st_size, limit))
        try:
            data = file.read(limit + 1)
        except OSError as error:
            raise ExtractionError(f"cannot read the file ({error.strerror or error})") from None
    if len(data) > limit:  # it grew after the check
        raise ExtractionError(_too_large(len(data), limit))
    return data, info.st_mtime


def _too_large(size: int, limit: int) -> str:
    return f"too large ({size:,} bytes; the limit is {limit:,})"


def docx_text(data: bytes) -> str:
    """The paragraphs of a DOCX file, once its parts are known to fit in memory."""
    try:
        import docx
    except ImportError:
        raise ExtractionError(
            "reading DOCX needs the docx extra (pip install 'ragtune[docx]')"
        ) from None
    check_unpacked_size(data, "DOCX")
    try:
        document = docx.Document(io.BytesIO(data))
        paragraphs = [p.text for p in document.paragraphs if p.text.strip()]
    except Exception as error:  # python-docx raises a variety of zip and XML errors
        raise ExtractionError(f"unreadable DOCX ({type(error).__name__})") from None
    if not paragraphs:
        raise ExtractionError("the document is empty")
    return "\n\n".join(paragraphs)


def check_unpacked_size(data: bytes, kind: str) -> None:
    """Refuse a ZIP-based ``kind`` of file whose members unpack to more than
    MAX_UNPACKED_BYTES in all. The declared sizes are a true bound: zipfile stops a
    member at its declared size (and fails its checksum), so a member that lies about
    its size cannot grow past it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except Exception as error:  # BadZipFile, or struct/value errors on a damaged directory
        raise ExtractionError(f"unreadable {kind} ({one_line(error)})") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise ExtractionError(
            f"too large (unpacks to {unpacked:,} bytes; the limit is {MAX_UNPACKED_BYTES:,})"
        )


def read_folder(
    root: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow_symlinks: bool = False,
) -> Iterator[tuple[Path, FileResult]]:
    """Every readable file under ``root`` (recursively), filtered by glob patterns on the
    path relative to ``root``; files of other types are not read at all. Hidden files
    and folders are never read. A symbolic link leading out of ``root`` is yielded as
    Skipped unless ``follow_symlinks``; a folder reached twice (a link cycle) is read once."""
    include, exclude = list(include), list(exclude)
    for path, entry in _walk(root, follow_symlinks):
        if path != root:
            relative = path.relative_to(root).as_posix()
            if entry is None and path.suffix.lower() not in READABLE_SUFFIXES:
                continue
            if include and not any(fnmatch.fnmatch(relative, p) for p in include):
                continue
            if any(fnmatch.fnmatch(relative, p) for p in exclude):
                continue
        if entry is not None:
            yield path, entry
            continue
        try:
            yield path, file_documents(path)
        except RagtuneError as error:
            yield path, error


# What the walk makes of a path: None for a file to read, or why it is passed over.
_Entry = Skipped | RagtuneError | None


def _walk(root: Path, follow_symlinks: bool) -> Iterator[tuple[Path, _Entry]]:
    """Every non-hidden file under ``root`` (and each folder that cannot be entered),
    depth first in sorted order. Folders are known by device and inode, files by their
    resolved path, so neither a link cycle nor two links to one place read it twice."""
    top = Path(os.path.realpath(root))
    seen_folders: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    pending: list[Iterator[Path]] = []
    folder: Path | None = root
    while folder is not None or pending:
        if folder is not None:
            listing = _list_folder(folder, seen_folders)
            if isinstance(listing, RagtuneError):
                yield folder, listing
            elif listing is not None:
                pending.append(listing)
            folder = None
            continue
        path = next(pending[-1], None)
        if path is None:
            pending.pop()
            continue
        entry = _classify(path, top, follow_symlinks)
        if entry == "folder":
            folder = path
            continue
        if entry is None:
            target = os.path.realpath(path)
            if target in seen_files:
                continue
            seen_files.add(target)
        yield path, entry


def _list_folder(folder: Path, seen: set[tuple[int, int]]) -> Iterator[Path] | RagtuneError | None:
    """The folder's non-hidden paths in sorted order; None when it was listed before."""
    try:
        info = folder.stat()
        if (info.st_dev, info.st_ino) in seen:
            return None
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as scan:
            names = sorted(entry.name for entry in scan if not entry.name.startswith("."))
    except OSError as error:
        return ExtractionError(f"{folder}: cannot read the folder ({error.strerror or error})")
    return (folder / name for name in names)


def _classify(path: Path, top: Path, follow_symlinks: bool) -> _Entry | Literal["folder"]:
    """'folder' to enter, None for a file to read, or why the path is passed over."""
    is_link = path.is_symlink()
    try:
        info = path.stat()  # of the link's target
    except OSError as error:
        if is_link:  # dangling, or a cycle of links
            return Skipped(f"a broken symbolic link ({error.strerror or error})")
        return ExtractionError(f"{path}: cannot read ({error.strerror or error})")
    if is_link and not follow_symlinks:
        target = Path(os.path.realpath(path))
        if target != top and top not in target.parents:
            return Skipped(
                f"a symbolic link to {target}, outside the folder (--follow-symlinks reads it)"
            )
    if stat.S_ISDIR(info.st_mode):
        return "folder"
    if not stat.S_ISREG(info.st_mode):
        return Skipped("not a regular file (a pipe, socket or device)")
    return None


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


def display_path(path: Path | str) -> str:
    """A path as text: bytes of a file name that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
