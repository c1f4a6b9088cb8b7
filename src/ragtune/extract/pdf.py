"""PDF to text, one Document-sized piece per page so citations can name the page."""

from __future__ import annotations

import io
import logging

from ragtune.errors import ExtractionError, one_line

MAX_PDF_PAGES = 2000
# A few KB of compressed streams can inflate to gigabytes of text, each stream under
# pypdf's own per-stream limit; cap the total as files.MAX_FILE_BYTES caps a file.
MAX_PDF_TEXT_CHARS = 50 * 1024 * 1024


def pdf_pages(data: bytes) -> list[tuple[int, str]]:
    """(page number from 1, text) for every page with text; raises if none has any."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed PDFs warn per object
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError("the PDF is encrypted")
        pages = []
        total = 0
        for number, page in enumerate(reader.pages[:MAX_PDF_PAGES], start=1):
            text = (page.extract_text() or "").strip()
            total += len(text)
            if total > MAX_PDF_TEXT_CHARS:  # checked per page, so the work stops early
                raise ExtractionError(
                    f"too large (its text passes {total:,} characters by page {number}; "
                    f"the limit is {MAX_PDF_TEXT_CHARS:,})"
                )
            if text:
                pages.append((number, text))
    except ExtractionError:
        raise
    except Exception as error:
        # pypdf fails in many ways on hostile input (its own errors, but also
        # AssertionError, RecursionError, MemoryError): each is this file's failure.
        raise ExtractionError(f"unreadable PDF ({one_line(error)})") from None
    if not pages:
        raise ExtractionError("the PDF has no extractable text (scanned images?)")
    return pages
