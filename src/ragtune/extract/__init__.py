"""Turn bytes into Markdown plus metadata: HTML, PDF, DOCX, JSON and text, from the
web or from files (``documents.py`` is the one place content becomes Documents)."""

from ragtune.extract.html import ExtractedPage, extract_html

__all__ = ["ExtractedPage", "extract_html"]
