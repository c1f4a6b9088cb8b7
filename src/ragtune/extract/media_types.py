"""The media types ragtune reads, by how it reads them.

Web pages are known by their Content-Type; files by their suffix, mapped onto the
same types in ``files.py``. ``READABLE_TYPES`` is what a fetch accepts: DOCX is read
from files only.
"""

from __future__ import annotations

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
JSON_TYPES = frozenset({"application/json", "application/ld+json"})
PDF_TYPES = frozenset({"application/pdf"})
# Files say "application/docx" in their metadata; the registered type is the long one.
DOCX_TYPES = frozenset(
    {"application/docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
)
READABLE_TYPES = HTML_TYPES | TEXT_TYPES | JSON_TYPES | PDF_TYPES
