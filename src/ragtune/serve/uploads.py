"""Uploaded files: streamed to disk in the job's own folder, named safely, read by content.

``receive_upload`` parses a ``multipart/form-data`` body as it arrives (python-
multipart's streaming parser), writing each ``files`` part straight into
``<data dir>/uploads/<job id>/`` in chunks, counted as they come: a file over the
per-file limit, or a body over the total, is refused with 413 at that byte, and
everything written for the request is removed. Nothing is kept in memory beyond a
chunk, and nothing goes to a temporary directory outside the server's data dir.

A client's file name is only a label. ``safe_name`` keeps its last component
(either separator), drops control and reserved characters, leading dots and
Windows' device names, and caps its length; two files of one upload that end up
with the same name get a ``-2``, ``-3`` suffix. The stored path is never shown:
the documents of an upload are named ``upload://<name>`` (``upload_url``), so an
answer's sources say which file it came from without telling where the server
keeps it, and uploading a file of the same name again replaces its documents,
as ingesting a URL again does.

What a file is comes from its bytes (``sniff``), not its name: a ``.pdf`` that is
really an HTML page is read as HTML (and the job's events say so); an image, an
archive, an executable or any other binary is refused with 415.
"""

from __future__ import annotations

import io
import os
import shutil
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from urllib.parse import quote

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ragtune.documents import Document
from ragtune.extract.documents import Origin, content_documents, named
from ragtune.extract.files import MAX_FILE_BYTES
from ragtune.serve.errors import ApiError

UPLOAD_SCHEME = "upload://"
# Form parts a request may carry: files, and fields (a URL list may repeat "urls").
MAX_FILES = 100
MAX_FIELDS = 2_000
MAX_FIELD_BYTES = 64 * 1024
# A name's characters, and its bytes on disk (most file systems allow 255).
MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 240
SNIFF_BYTES = 8192
# Characters Windows refuses in names, beside the separators and control characters.
_FORBIDDEN = frozenset('<>:"|?*')
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{n}" for n in range(10)} | {f"LPT{n}" for n in range(10)}
)
# Leading bytes of formats that are certainly not documents ragtune reads.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"RIFF", "a RIFF file (audio, video or image)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (DOC, XLS, PPT)"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg file"),
    (b"fLaC", "a FLAC file"),
    (b"\x00\x00\x00", "a binary file"),
)
_HTML_STARTS = ("<!doctype html", "<html", "<head", "<body", "<?xml")
_HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
_KIND_NAMES = {
    "text/html": "HTML",
    "application/pdf": "PDF",
    "application/docx": "DOCX",
    "application/json": "JSON",
    "text/markdown": "text",
}
_SUFFIX_KINDS = {
    ".html": "text/html",
    ".htm": "text/html",
    ".xhtml": "text/html",
    ".pdf": "application/pdf",
    ".docx": "application/docx",
    ".json": "application/json",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/markdown",
    ".rst": "text/markdown",
}


@dataclass
class StoredUpload:
    """One uploaded file as stored: its safe name, where it is, what it is."""

    name: str
    path: Path
    size: int
    media_type: str = ""
    # Set when the content is not what the name says ("named .pdf, but it is HTML").
    note: str = ""

    @property
    def url(self) -> str:
        return upload_url(self.name)


@dataclass
class UploadForm:
    """A multipart request: its plain fields (each may repeat) and its stored files."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[StoredUpload] = field(default_factory=list)


def upload_url(name: str) -> str:
    """How an uploaded file's documents are named: ``upload://report.pdf``."""
    return UPLOAD_SCHEME + quote(name, safe="")


def safe_name(raw: str) -> str:
    """A client's file name made safe to store and to show: its last component only,
    printable, no leading dots, no Windows device name, at most MAX_NAME_CHARS."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in _FORBIDDEN)
    # Leading dots make hidden files (and ".."); Windows drops trailing dots and spaces.
    name = name.strip().lstrip(".").rstrip(". ")
    if name.split(".", 1)[0].upper().rstrip() in _RESERVED:  # CON, con.txt, LPT1.md
        name = f"_{name}"
    suffix = PurePath(name).suffix
    if len(suffix) > 16:
        suffix = ""
    stem = name.removesuffix(suffix)[: MAX_NAME_CHARS - len(suffix)]
    while len((stem + suffix).encode("utf-8")) > MAX_NAME_BYTES:  # wide characters
        stem = stem[:-1]
    name = (stem.rstrip(". ") + suffix) if stem else ""
    return name or f"upload{suffix}"


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name-2.ext``, ``name-3.ext``... the first not in ``taken``
    (compared without case: a case-insensitive file system would clash too)."""
    candidate, number = name, 1
    path = PurePath(name)
    while candidate.lower() in taken:
        number += 1
        candidate = f"{path.stem}-{number}{path.suffix}"
    taken.add(candidate.lower())
    return candidate


class _Receiver:
    """The callbacks of python-multipart's parser: files into ``folder``, fields kept."""

    def __init__(self, folder: Path, max_file_bytes: int, max_total_bytes: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.form = UploadForm()
        self._taken: set[str] = set()
        self._total = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._field: str | None = None
        self._field_data = bytearray()
        self._file: io.BufferedWriter | None = None
        self._upload: StoredUpload | None = None
        self._partial: Path | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._field = None
        self._field_data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise ApiError(400, "a multipart part has no name", code="invalid_multipart")
        field_name = name.decode("utf-8", "replace")
        if b"filename" not in options:
            if sum(len(values) for values in self.form.fields.values()) >= MAX_FIELDS:
                raise ApiError(400, f"more than {MAX_FIELDS:,} form fields", code="too_many")
            self._field = field_name
            return
        if field_name != "files":
            raise ApiError(
                400, f"files go in parts named 'files', not {field_name[:40]!r}", param="files"
            )
        if len(self.form.files) >= MAX_FILES:
            raise ApiError(400, f"more than {MAX_FILES} files in one upload", param="files")
        stored = unique_name(
            safe_name(options[b"filename"].decode("utf-8", "replace")), self._taken
        )
        # Written under a hidden name, renamed once whole: a reader of the folder never
        # takes a partial file for an upload.
        partial = self.folder / f".part-{len(self.form.files)}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._partial = partial
        self._upload = StoredUpload(stored, self.folder / stored, 0)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        self._total += size
        if self._total > self.max_total_bytes:
            raise _too_large("the upload", self.max_total_bytes)
        if self._file is None or self._upload is None:
            if len(self._field_data) + size > MAX_FIELD_BYTES:
                raise ApiError(400, f"a form field is over {MAX_FIELD_BYTES:,} bytes")
            self._field_data += data[start:end]
            return
        self._upload.size += size
        if self._upload.size > self.max_file_bytes:
            raise _too_large(f"the file {self._upload.name!r}", self.max_file_bytes)
        self._file.write(data[start:end])

    def on_part_end(self) -> None:
        if self._file is not None and self._upload is not None and self._partial is not None:
            self._file.close()
            self._file = None
            os.replace(self._partial, self._upload.path)
            self.form.files.append(self._upload)
            self._upload = self._partial = None
        elif self._field is not None:
            value = self._field_data.decode("utf-8", "replace")
            self.form.fields.setdefault(self._field, []).append(value)
            self._field = None

    @property
    def inside_file(self) -> bool:
        """Whether a file part began and has not ended (a body cut short)."""
        return self._file is not None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, f"{what} is over the limit of {limit:,} bytes", code="too_large")


async def receive_upload(
    request: Request, folder: Path, max_file_bytes: int, max_total_bytes: int
) -> UploadForm:
    """Stream the request's multipart body into ``folder`` (created here); on any
    failure (a limit, a broken body, a client that went away) the folder is removed
    and the error raised: 413 over a limit, 400 for a body that is not multipart."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "multipart/form-data needs a boundary", code="invalid_multipart")
    folder.mkdir(parents=True, exist_ok=False, mode=0o700)
    receiver = _Receiver(folder, min(max_file_bytes, MAX_FILE_BYTES), max_total_bytes)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            if chunk:
                # Disk writes happen in the callbacks: off the event loop.
                await anyio.to_thread.run_sync(parser.write, chunk)
        parser.finalize()
        if receiver.inside_file:
            raise ApiError(400, "the multipart body ended inside a file", code="invalid_multipart")
    except FormParserError:
        _discard(receiver, folder)
        raise ApiError(400, "malformed multipart body", code="invalid_multipart") from None
    except BaseException:  # a limit, a client gone (ClientDisconnect), a cancellation
        _discard(receiver, folder)
        raise
    return receiver.form


def _discard(receiver: _Receiver, folder: Path) -> None:
    receiver.close()
    shutil.rmtree(folder, ignore_errors=True)


# --- what a file is, by its content ---------------------------------------------------


class UnreadableUpload(Exception):
    """An uploaded file of a kind ragtune does not read."""


def sniff(upload: StoredUpload) -> str:
    """The media type ``upload`` is read as, from its first bytes; sets ``upload.note``
    when that is not what its name says. Raises UnreadableUpload (one line) for a kind
    of file ragtune cannot read."""
    with open(upload.path, "rb") as file:
        head = file.read(SNIFF_BYTES)
    suffix = PurePath(upload.name).suffix.lower()
    media_type = _content_type(upload, head, suffix)
    claimed = _SUFFIX_KINDS.get(suffix)
    if claimed and claimed != media_type:
        kind = _KIND_NAMES[media_type]
        upload.note = f"named {suffix}, but its content is {kind}: read as {kind}"
    upload.media_type = media_type
    return media_type


def _content_type(upload: StoredUpload, head: bytes, suffix: str) -> str:
    if not head.strip():
        raise UnreadableUpload(f"{upload.name}: the file is empty")
    # A PDF's header may follow some junk; readers look for it in the first kilobyte.
    if b"%PDF-" in head[:1024]:
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        if _is_docx(upload.path):
            return "application/docx"
        raise UnreadableUpload(f"{upload.name}: a ZIP archive, not a Word document")
    for signature, kind in _BINARY_SIGNATURES:
        if head.startswith(signature):
            raise UnreadableUpload(f"{upload.name}: {kind}, which ragtune does not read")
    if not _looks_like_text(head):
        raise UnreadableUpload(f"{upload.name}: binary content, which ragtune does not read")
    start = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n").lower()
    if start.startswith(_HTML_STARTS) or (suffix in _HTML_SUFFIXES and start.startswith("<")):
        return "text/html"
    if suffix == ".json" or (start[:1] in ("{", "[") and suffix not in _SUFFIX_KINDS):
        return "application/json"
    return "text/markdown"


def _is_docx(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _looks_like_text(head: bytes) -> bool:
    """No NUL bytes (unless UTF-16 says why) and few control characters."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    controls = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13, 27))
    return controls <= len(head) // 100


def upload_documents(upload: StoredUpload) -> list[Document]:
    """The Documents of a sniffed upload, named ``upload://<name>``, never by where
    the server stored it. Errors are one line that names the file."""
    data = upload.path.read_bytes()
    url = upload.url
    origin = Origin(
        url=url,
        base_url=url,
        title=upload.name,
        metadata={
            "url": url,
            "filename": upload.name,
            "uploaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return named(upload.name, lambda: content_documents(data, upload.media_type, origin))
