"""Local files and folders as Documents: Markdown, text, HTML, PDF, JSON and (extra) DOCX.

A folder is walked without leaving it: a symbolic link that resolves outside is
reported and skipped unless links are followed, and a link cycle is walked once.
Every file is read whole, so each is capped: its bytes here, and what a ZIP-based
format (DOCX) unpacks to in ``word.py``, before a parser sees it. The bytes become
Documents in ``documents.py``, as a fetched page's do.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ragtune.documents import Document
from ragtune.errors import ExtractionError, RagtuneError
from ragtune.extract.documents import (
    HtmlExtractor,
    Origin,
    content_documents,
    main_content,
    named,
)
from ragtune.extract.html import ExtractedPage

# The media type each readable suffix is read as, and named in a Document's metadata.
SUFFIX_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".xhtml": "text/html",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/markdown",
    ".rst": "text/markdown",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".docx": "application/docx",
}
READABLE_SUFFIXES = frozenset(SUFFIX_TYPES)
MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Skipped:
    """A path a folder read passes over on purpose, and why: a link out of the folder,
    or (``unsupported``) a file of a type ragtune does not read."""

    reason: str
    unsupported: bool = False


FileResult = list[Document] | RagtuneError | Skipped


def file_documents(path: Path) -> list[Document]:
    """One Document for a file, or one per page of a PDF. Errors name the file as given."""
    media_type = _media_type(path)
    return named(str(path), lambda: content_documents(*_file_content(path, media_type)))


def file_main_content(path: Path, extractor: HtmlExtractor = "default") -> ExtractedPage:
    """A file's main content as one page (``ragtune extract``). Errors name the file."""
    media_type = _media_type(path)
    return named(
        str(path), lambda: main_content(*_file_content(path, media_type), extractor=extractor)
    )


def _media_type(path: Path) -> str:
    """The media type a file is read as, from its suffix; a one-line error for a file
    that is missing, a folder, or of a type not read."""
    suffix = path.suffix.lower()
    if suffix in SUFFIX_TYPES:
        return SUFFIX_TYPES[suffix]
    if not path.exists():
        raise RagtuneError(f"{path}: no such file (give a file path or an http(s) URL)")
    if path.is_dir():
        raise RagtuneError(f"{path}: a folder, not a file")
    raise RagtuneError(
        f"{path}: unsupported file type {suffix or '(none)'}; "
        "expected HTML, Markdown, text, JSON, PDF or DOCX"
    )


def _file_content(path: Path, media_type: str) -> tuple[bytes, str, Origin, str]:
    """The file's bytes, media type and origin, and the character set its text is read in."""
    data, modified = _read(path)
    uri = path.resolve().as_uri()
    origin = Origin(
        url=uri,
        base_url=uri,
        title=display_path(path.stem),
        metadata={
            "url": uri,
            "path": display_path(path.resolve()),
            "modified_at": datetime.fromtimestamp(modified, UTC).isoformat(timespec="seconds"),
        },
    )
    return data, media_type, origin, "utf-8"


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


# What a folder read makes of a file it picked: None to read it, or why it is not read.
FileStatus = Skipped | RagtuneError | None


def folder_files(
    root: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow_symlinks: bool = False,
) -> Iterator[tuple[Path, FileStatus]]:
    """The files ``read_folder`` reads, each with its status, none of them opened: every
    file under ``root`` (recursively) whose path relative to ``root`` matches the
    include globs (when any) and no exclude glob. A file of a type not read (an image,
    a spreadsheet, a file with no suffix) comes as Skipped, so a report names it
    rather than leaving it out unsaid. Hidden files and folders are never picked. A
    symbolic link leading out of ``root`` comes as Skipped unless ``follow_symlinks``;
    a folder reached twice (a link cycle) is walked once; a folder that cannot be
    listed comes as the error (``root`` itself included)."""
    include, exclude = list(include), list(exclude)
    for path, status in _walk(root, follow_symlinks):
        if path != root:
            relative = path.relative_to(root).as_posix()
            if include and not any(fnmatch.fnmatch(relative, p) for p in include):
                continue
            if any(fnmatch.fnmatch(relative, p) for p in exclude):
                continue
            if status is None and path.suffix.lower() not in READABLE_SUFFIXES:
                status = _unsupported(path)
        yield path, status


def _unsupported(path: Path) -> Skipped:
    suffix = path.suffix.lower() or "(no suffix)"
    return Skipped(
        f"unsupported type {suffix}; ragtune reads HTML, Markdown, text, JSON, PDF and DOCX",
        unsupported=True,
    )


def read_folder(
    root: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow_symlinks: bool = False,
) -> Iterator[tuple[Path, FileResult]]:
    """The Documents of every file ``folder_files`` picks, or why a file gave none;
    files of other types are not opened, only named as Skipped."""
    for path, status in folder_files(root, include, exclude, follow_symlinks):
        if status is not None:
            yield path, status
            continue
        try:
            yield path, file_documents(path)
        except RagtuneError as error:
            yield path, error


def _walk(root: Path, follow_symlinks: bool) -> Iterator[tuple[Path, FileStatus]]:
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


def _classify(path: Path, top: Path, follow_symlinks: bool) -> FileStatus | Literal["folder"]:
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


def display_path(path: Path | str) -> str:
    """A path as text: bytes of a file name that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
