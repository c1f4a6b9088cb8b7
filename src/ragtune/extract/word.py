"""Word documents (DOCX) to text (the docx extra), once their parts are known to fit in memory."""

from __future__ import annotations

import io
import zipfile

from ragtune.errors import ExtractionError, one_line

# What a ZIP-based file may unpack to: python-docx holds every part in memory and
# parses the XML ones, about twice the unpacked size in all.
MAX_UNPACKED_BYTES = 128 * 1024 * 1024


def docx_text(data: bytes) -> str:
    """The non-blank paragraphs of a DOCX file, separated by blank lines."""
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
