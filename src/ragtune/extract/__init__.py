"""Turn fetched bytes (HTML for now) into Markdown plus metadata."""

from ragtune.extract.html import ExtractedPage, extract_html

__all__ = ["ExtractedPage", "extract_html"]
