"""The single extractors the ensemble (``ensemble.py``) asks for a second opinion.

Each takes the page's HTML and returns its main text as lines, or no lines when
it finds none or fails: an extractor that breaks on one page is a missing vote
there, never a failed extraction, since ragtune's own extraction (``html.py``)
is always the base. Chosen by measurement on the extraction-eval set
(``bench/extraction.py``, 990 pages, 2 cores), F1 and pages/s:

- resiliparse 2.0 main content: F1 0.862 (recall 0.953, the highest), 259 pages/s.
  It keeps most of what trafilatura drops, so it nominates blocks to add.
- trafilatura with ``favor_precision``: F1 0.919 (precision 0.915), 24 pages/s.
- readability-lxml 0.9: F1 0.872 (precision 0.883), 27 pages/s.
  These two slower voters are asked only in the "best" mode.

jusText was measured and left out: it needs the page's language for its stop
words, and with the English list it kept 13% of the wanted text on this mostly
German set.
"""

from __future__ import annotations

import re

import trafilatura
from lxml import html as lxml_html
from readability import Document as ReadabilityDocument
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

from ragtune.extract.html import parse_utf8

_WORDS = re.compile(r"\w+")


def comparison_key(text: str) -> str:
    """Text reduced to its lower-cased words, so that blocks from extractors that
    render whitespace, punctuation, bullets and table cells differently compare."""
    return " ".join(_WORDS.findall(text.lower()))


def as_text(html: str | bytes) -> str:
    if isinstance(html, str):
        return html
    return bytes_to_str(html, detect_encoding(html) or "utf-8")


def resiliparse_lines(html: str) -> list[str]:
    """resiliparse's main-content text, one block per line, list items as "- " lines."""
    try:
        text = extract_plain_text(
            HTMLTree.parse(html),
            main_content=True,
            preserve_formatting=True,
            list_bullets=True,
            alt_texts=False,
            links=False,
            form_fields=False,
            noscript=False,
            comments=False,
        )
    except Exception:  # a third-party parser on hostile markup: no vote
        return []
    return [line.strip().replace("\u2022 ", "- ", 1) for line in text.splitlines() if line.strip()]


def anchor_keys(html: str) -> frozenset[str]:
    """The comparison keys of every link text on the page: a block made of them is
    navigation, however central it sits."""
    # As bytes, as the base extraction parses them: XHTML pages' links count too.
    root = parse_utf8(html)
    if root is None:  # unparseable: no link evidence
        return frozenset()
    keys = (comparison_key("".join(anchor.itertext())) for anchor in root.iter("a"))
    return frozenset(key for key in keys if key)


def trafilatura_precision_key(html: str, url: str | None) -> str:
    """trafilatura's precision-first reading of the page, as one comparison key."""
    try:
        text = trafilatura.extract(html, url=url, favor_precision=True, include_tables=True)
    except Exception:  # trafilatura and lxml on hostile markup: no vote
        return ""
    return comparison_key(text or "")


def readability_key(html: str) -> str:
    """readability's article, as one comparison key."""
    try:
        summary = ReadabilityDocument(html).summary(html_partial=True)
        if not summary.strip():
            return ""
        return comparison_key(lxml_html.fromstring(summary).text_content())
    except Exception:  # readability and lxml on hostile markup: no vote
        return ""
