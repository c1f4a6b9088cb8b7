"""Main-content extraction from HTML, with trafilatura as the engine."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from html.parser import HTMLParser
from typing import Any

import trafilatura
from lxml import etree
from lxml import html as lxml_html
from trafilatura.utils import (
    DOCTYPE_TAG,
    FAULTY_HTML,
    decode_file,
    handle_compressed_file,
    is_dubious_html,
    repair_faulty_html,
)
from trafilatura.xml import xmltotxt

from ragtune.errors import ExtractionError
from ragtune.extract.code_blocks import restore_code_blocks, stash_code_blocks
from ragtune.extract.doc_markup import (
    collapse_whitespace,
    drop_permalinks,
    flatten_signatures,
    mark_admonitions,
    quote_admonitions,
)
from ragtune.extract.page_metadata import page_metadata
from ragtune.extract.text import decode_text

# Dates guessed from a copyright footer ("© 2026") are noise, so only
# dates the page states in its markup are kept.
_DATE_PARAMS = {"extensive_search": False, "original_date": True}
# One parser per thread: its error log, read after each parse, is the parser's own.
_PARSERS = threading.local()
# The characters below U+0020 that trafilatura.utils.INVALID_XML_CHARS removes, as bytes.
_XML_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_MAX_TREE_BYTES = 10_000_000
_MAX_TREE_TAGS = 200_000
# What str.splitlines splits on, and whitespace other than line breaks.
_LINE_BREAKS = re.compile("\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Only what must change matches (a lone space does not): re.sub keeps a piece per match.
_SPACE_RUNS = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_SPACES_AROUND_BREAKS = re.compile(r" \n ?|\n ")
_BLANK_LINES = re.compile(r"\n{3,}")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![\w*])")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()<>.!])")
# An inline code span: a run of backticks, then text, then a run of the same length.
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)")
_TABLE_RULE = re.compile(r"^\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$")


@dataclass(frozen=True)
class Block:
    """One block of a page's Markdown and the extractors whose output holds its text."""

    text: str
    sources: tuple[str, ...]


@dataclass
class ExtractedPage:
    """The main content of one page, as Markdown and (computed on first use) plain text."""

    markdown: str
    title: str
    metadata: dict[str, Any] = field(default_factory=dict)
    plain: str | Callable[[], str] = field(default="", repr=False)
    # Where each block came from; only the combining extractor (ensemble.py) says.
    blocks: list[Block] = field(default_factory=list, repr=False)

    @cached_property
    def text(self) -> str:
        # Indexing needs only the Markdown; rendering the text too cost a crawl ~10%.
        if callable(self.plain):
            return self.plain()
        return self.plain or self.markdown


def extract_html(html: str | bytes, url: str | None = None) -> ExtractedPage:
    """Extract the main content of an HTML page as Markdown and plain text.

    Headings, lists, tables and emphasis survive into the Markdown; navigation,
    headers and footers are dropped; code blocks come out fenced, verbatim. A page
    beyond what lxml will parse (nested deeper than 256 elements, a text over 10 MB)
    would lose everything past that point, and one over 10 MB or 200,000 tags would
    take minutes, so the whole text of such a page is taken instead, without the
    Markdown. Raises ExtractionError ("no readable text") when the page has no readable
    text at all.
    """
    if isinstance(html, bytes) and _is_binary(html):
        # trafilatura finds "text" in about 1 of 140 random 64 KB bodies.
        raise ExtractionError("binary data where HTML was expected")
    if _too_big_for_a_tree(html):
        return _streamed(html)
    try:
        tree, cut_short = _parse(html)
        if not cut_short:
            return _extracted(html, tree, url)
    except ExtractionError:
        raise
    except Exception:  # trafilatura and lxml on hostile markup; the plain reading still works
        pass
    return _streamed(html)


def _extracted(html: str | bytes, tree: Any, url: str | None) -> ExtractedPage:
    markup = _DocMarkup(tree) if tree is not None else None
    # What trafilatura's with_metadata=True finds, less what is discarded here.
    found = page_metadata(tree, url, _DATE_PARAMS) if tree is not None else None
    document: Any = trafilatura.bare_extraction(  # a Document, since as_dict is False
        tree if tree is not None else html,
        url=url or (found.url if found is not None else None),
        include_tables=True,
        include_formatting=True,
        include_comments=False,
        # Not "python", which renders a plain text of the body: that is done here.
        output_format="markdown",
        date_extraction_params=_DATE_PARAMS,
    )
    plain: str | Callable[[], str]
    if document is not None and document.body is not None:
        body = document.body
        restore = markup.restore if markup is not None else _unchanged
        # Restored last: code keeps its blank lines and its text is not for _plain_inline.
        markdown = restore(_plain_inline(_tidy(xmltotxt(body, include_formatting=True))), True)
        plain = lambda: restore(  # noqa: E731
            _plain_tables(_tidy(xmltotxt(body, include_formatting=False))), False
        ).strip()
    else:
        # trafilatura gives up on very short pages; their whole text is the content.
        plain = markdown = _tidy(trafilatura.html2txt(html))
    if not markdown:
        raise ExtractionError("no readable text")

    if document is None:
        found = None  # as trafilatura's metadata goes with the extraction it gave up
    title = (found.title if found is not None else None) or _first_heading(markdown)
    metadata: dict[str, Any] = {"title": title}
    if found is not None:
        for key in ("author", "date", "description", "sitename", "language"):
            value = getattr(found, key, None)
            if value:
                metadata[key] = value
    return ExtractedPage(markdown=markdown, title=title, metadata=metadata, plain=plain)


class _DocMarkup:
    """A parsed page prepared for trafilatura (code blocks and admonitions replaced by
    placeholder paragraphs, documentation markup made plain), and the way back from
    its output to the page's code blocks and admonitions."""

    def __init__(self, tree: Any) -> None:
        # A fresh word per page: no page text can collide with a placeholder.
        self.placeholder = f"ragtune{secrets.token_hex(5)}"
        drop_permalinks(tree)
        self.blocks = stash_code_blocks(tree, f"{self.placeholder}c")
        flatten_signatures(tree)
        self.titles = mark_admonitions(tree, f"{self.placeholder}a")
        collapse_whitespace(tree)

    def restore(self, text: str, markdown: bool) -> str:
        # Quotes first: quoting evens out blank lines, which code must keep as they are.
        text = quote_admonitions(text, f"{self.placeholder}a", self.titles, quote=markdown)
        return restore_code_blocks(text, f"{self.placeholder}c", self.blocks, fenced=markdown)


def _unchanged(text: str, markdown: bool) -> str:
    return text


def _is_binary(data: bytes) -> bool:
    """NUL bytes early on, in a body without a UTF-16 byte order mark (the one text
    encoding that is full of them)."""
    return not data.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" in data[:8192]


def _too_big_for_a_tree(html: str | bytes) -> bool:
    """Whether the tree-based extraction would take too long or too much memory: it costs
    about 30 us and a few hundred bytes per element (a 20 MB page of nested divs took 92 s
    and 960 MB), so past 200,000 tags or 10 MB the whole text is streamed instead. The
    extraction-eval pages have at most 20,000 tags, Python's HTML manual 98,000."""
    if len(html) > _MAX_TREE_BYTES:
        return True
    return html.count("<" if isinstance(html, str) else b"<") > _MAX_TREE_TAGS  # type: ignore[arg-type]


def _parse(html: str | bytes) -> tuple[Any, bool]:
    """The page as trafilatura.load_html parses it (decoded, repaired, the same parser
    settings), and whether lxml stopped short of its end (nested deeper than 256
    elements, a text over 10 MB: it then drops the rest silently).

    One parse serves the check, the clean-ups, the metadata and trafilatura. Its
    elements are lxml.html's HtmlElement, found by lxml's built-in class lookup rather
    than lxml.html's own, a Python call for every element touched (millions per 1,000
    pages); only lxml.html's form-field classes, which trafilatura never uses, are lost."""
    text, clean = _decoded(html)
    beginning = text[:50].lower()
    dubious = is_dubious_html(beginning)
    text = _repaired(text, beginning) if clean else repair_faulty_html(text, beginning)
    parser = _parser()
    try:
        tree = lxml_html.fromstring(text, parser=parser)
    except ValueError:  # "Unicode strings with encoding declaration are not supported."
        tree = _parse_bytes(text, parser)
    else:
        if tree is None or len(tree) < 1:
            tree = _parse_bytes(text, parser)
    cut_short = any(entry.type == etree.ErrorTypes.ERR_RESOURCE_LIMIT for entry in parser.error_log)
    if tree is not None and dubious and len(tree) < 2:
        tree = None  # not HTML at all, as trafilatura judges it
    return tree, cut_short


def _decoded(html: str | bytes) -> tuple[str, bool]:
    """trafilatura.utils.decode_file(html), and whether the text is known to hold no
    character that repair_faulty_html would remove: a regular expression over the
    whole text (about 2% of an extraction) finds them, where the bytes of a page that
    decodes as UTF-8 show it for a tenth of that."""
    if isinstance(html, bytes) and handle_compressed_file(html) is html:
        try:
            text = html.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            controls = len(html.translate(None, _XML_CONTROL_BYTES)) != len(html)
            return text, not (controls or b"\xef\xbf\xbe" in html or b"\xef\xbf\xbf" in html)
    return decode_file(html), False


def _repaired(text: str, beginning: str) -> str:
    """trafilatura.utils.repair_faulty_html on a text without XML control characters."""
    if "doctype" in beginning:
        first_line, _, rest = text.partition("\n")
        text = DOCTYPE_TAG.sub("", first_line, count=1) + "\n" + rest
    for line in text[:4096].splitlines()[:4]:
        if "<html" in line and line.endswith("/>"):
            text = FAULTY_HTML.sub(r"\1>", text, count=1)
            break
    return text


def _parser() -> etree.HTMLParser:
    """This thread's parser, with trafilatura.utils.HTML_PARSER's settings."""
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = etree.HTMLParser(
            collect_ids=False,
            default_doctype=False,
            encoding="utf-8",
            remove_comments=True,
            remove_pis=True,
        )
        parser.set_element_class_lookup(
            etree.ElementDefaultClassLookup(
                element=lxml_html.HtmlElement,
                comment=lxml_html.HtmlComment,
                pi=lxml_html.HtmlProcessingInstruction,
                entity=lxml_html.HtmlEntity,
            )
        )
        _PARSERS.parser = parser
    return parser


def parse_utf8(text: str) -> Any:
    """A page's text parsed as UTF-8 bytes with trafilatura's parser settings (lxml
    refuses a str that opens with an XML declaration, as XHTML pages do); None where
    lxml finds no tree."""
    return _parse_bytes(text, _parser())


def _parse_bytes(text: str, parser: etree.HTMLParser) -> Any:
    try:
        return lxml_html.fromstring(text.encode("utf8", "surrogatepass"), parser=parser)
    except Exception:  # as trafilatura.utils.fromstring_bytes
        return None


def _streamed(html: str | bytes) -> ExtractedPage:
    """The whole text of a page that the tree-based extraction cannot take, read as a
    stream of tags (no nesting limit, no size limit on a text)."""
    source = html if isinstance(html, str) else decode_text(html, None)
    reader = _TextReader()
    reader.feed(source)
    reader.close()
    text = _tidy(_collapsed_lines("".join(reader.parts)))
    if not text:
        raise ExtractionError("no readable text")
    title = " ".join(reader.title.split())[:200] or _first_heading(text)
    return ExtractedPage(markdown=text, title=title, metadata={"title": title})


def _collapsed_lines(text: str) -> str:
    """Each line's whitespace runs as one space, no space at either end of a line. Not
    with str.split: on a 20 MB one-line text its list of words took 200 MB more."""
    text = _LINE_BREAKS.sub("\n", text)
    return _SPACES_AROUND_BREAKS.sub("\n", _SPACE_RUNS.sub(" ", text))


class _TextReader(HTMLParser):
    """Collects a page's text, a line break at every block element, skipping scripts."""

    _BLOCKS = frozenset(
        {"address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt"}
        | {"figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6"}
        | {"header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table"}
        | {"td", "th", "tr", "ul"}
    )
    _HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            self.parts.append(data)


def _plain_inline(markdown: str) -> str:
    """Drop bold and italic markers and trafilatura's backslash escapes inside text,
    keep the words. Neither helps retrieval, and both break exact phrases ("Liebe\\_r",
    "\\[1\\]"): on the extraction-eval set, F1 0.921 -> 0.923 and recall 0.937 -> 0.942.
    Escapes that protect block structure (#, +, -, |) stay. Inline code is left as it
    is: there `__init__` and `f(*args, **kwargs)` are the text, not emphasis."""
    parts: list[str] = []
    position = 0
    for span in _CODE_SPAN.finditer(markdown):
        parts.append(_plain_prose(markdown[position : span.start()]))
        parts.append(span.group())
        position = span.end()
    parts.append(_plain_prose(markdown[position:]))
    return "".join(parts)


def _plain_prose(text: str) -> str:
    return _ESCAPE.sub(r"\1", _ITALIC.sub(r"\1", _BOLD.sub(r"\2", text)))


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
