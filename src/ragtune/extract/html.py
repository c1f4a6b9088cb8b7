"""Main-content extraction from HTML, with trafilatura as the engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import trafilatura
from trafilatura.xml import xmltotxt

from ragtune.errors import ExtractionError

# Dates guessed from a copyright footer ("© 2026") are noise, so only
# dates the page states in its markup are kept.
_DATE_PARAMS = {"extensive_search": False, "original_date": True}
_BLANK_LINES = re.compile(r"\n{3,}")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()<>.!])")
_TABLE_RULE = re.compile(r"^\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$")


@dataclass
class ExtractedPage:
    """The main content of one page, as Markdown and (computed on first use) plain text."""

    markdown: str
    title: str
    metadata: dict[str, Any] = field(default_factory=dict)
    plain: str | Callable[[], str] = field(default="", repr=False)

    @cached_property
    def text(self) -> str:
        # Indexing needs only the Markdown; rendering the text too cost a crawl ~10%.
        if callable(self.plain):
            return self.plain()
        return self.plain or self.markdown


def extract_html(html: str | bytes, url: str | None = None) -> ExtractedPage:
    """Extract the main content of an HTML page as Markdown and plain text.

    Headings, lists, tables and emphasis survive into the Markdown; navigation,
    headers and footers are dropped. Raises ExtractionError when the page has no
    readable text at all.
    """
    document: Any = trafilatura.bare_extraction(  # a Document, since as_dict is False
        html,
        url=url,
        include_tables=True,
        include_formatting=True,
        include_comments=False,
        with_metadata=True,
        date_extraction_params=_DATE_PARAMS,
    )
    plain: str | Callable[[], str]
    if document is not None and document.body is not None:
        body = document.body
        markdown = _plain_inline(_tidy(xmltotxt(body, include_formatting=True)))
        plain = lambda: _plain_tables(_tidy(xmltotxt(body, include_formatting=False)))  # noqa: E731
    else:
        # trafilatura gives up on very short pages; their whole text is the content.
        plain = markdown = _tidy(trafilatura.html2txt(html))
    if not markdown:
        raise ExtractionError(f"{url or 'the page'} has no readable text")

    title = (document.title if document is not None else None) or _first_heading(markdown)
    metadata: dict[str, Any] = {"title": title}
    if document is not None:
        for key in ("author", "date", "description", "sitename", "language"):
            value = getattr(document, key, None)
            if value:
                metadata[key] = value
    return ExtractedPage(markdown=markdown, title=title, metadata=metadata, plain=plain)


def _plain_inline(markdown: str) -> str:
    """Drop bold and italic markers and trafilatura's backslash escapes inside text,
    keep the words. Neither helps retrieval, and both break exact phrases ("Liebe\\_r",
    "\\[1\\]"): on the extraction-eval set, F1 0.921 -> 0.923 and recall 0.937 -> 0.942.
    Escapes that protect block structure (#, +, -, |) stay."""
    return _ESCAPE.sub(r"\1", _ITALIC.sub(r"\1", _BOLD.sub(r"\2", markdown)))


def _plain_tables(text: str) -> str:
    """trafilatura's plain text keeps Markdown table pipes; plain text wants tab-separated cells."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if _TABLE_RULE.match(stripped):
            continue
        if stripped.startswith("|") and stripped.endswith("|"):
            line = "\t".join(cell.strip() for cell in stripped.strip("|").split("|"))
        lines.append(line)
    return "\n".join(lines)


def _tidy(text: str) -> str:
    return _BLANK_LINES.sub("\n\n", text).strip()


def _first_heading(markdown: str) -> str:
    for line in markdown.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:200]
    return ""
