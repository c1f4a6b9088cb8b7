"""Code blocks carried verbatim through main-content extraction.

trafilatura keeps a `<pre>` as code only when it guesses the text is code, and
flattens the rest into one line (on a Sphinx page, 25 of 28 blocks). So before it
runs, each code block is taken out of the parsed page, its text kept exactly as a
browser shows it, and a placeholder paragraph (one unique word, which trafilatura
keeps like any other paragraph) put in its place; after it runs, each placeholder
in the Markdown becomes a fenced block again, with its language where the page
names one.

A code block is a `<pre>` (Sphinx, MkDocs, Pygments, highlight.js, DocBook's
programlisting and screen all render to one), or a `<code>` with line breaks that
stands alone in a block. A `<code>` inside a paragraph is inline and stays there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from ragtune.extract.tree_edits import classes, replace

# Line-number gutters (Pygments tables and inline spans, highlight.js, Prism, Hexo):
# the numbers are not part of the code.
_GUTTERS = frozenset(
    {"linenos", "lineno", "linenodiv", "gutter", "line-numbers-rows", "hljs-ln-numbers"}
)
_LANGUAGE_PREFIXES = ("language-", "lang-", "highlight-", "brush:")
# Class values that say "highlighted" or "no language", not which language.
_NOT_LANGUAGES = frozenset(
    {"", "none", "text", "default", "plaintext", "plain", "nohighlight", "auto", "notranslate"}
)
_LANGUAGE_NAME = re.compile(r"^[\w+#.-]{1,32}$")
_BLOCK_PARENTS = frozenset(
    {"div", "td", "li", "dd", "body", "section", "article", "figure", "main", "blockquote"}
)
_BACKTICKS = re.compile(r"`{3,}")
# A line's block prefix in Markdown: quote markers, then a list marker.
_LINE_PREFIX = re.compile(r"^((?:[ \t]*>[ \t]?)*)([ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+)?")


@dataclass(frozen=True)
class CodeBlock:
    text: str
    language: str


def stash_code_blocks(tree: etree._Element, placeholder: str) -> list[CodeBlock]:
    """Replace each code block in the tree by a paragraph `{placeholder}{index}`;
    return the blocks, in that index order."""
    blocks: list[CodeBlock] = []
    candidates = [
        element
        for element in tree.iter("pre", "code")
        if element.tag == "pre" or _is_code_block(element)
    ]
    for element in candidates:
        if _inside(element, "pre") or _in_gutter(element):
            continue  # part of a block already taken, or a gutter that goes with its table
        text = _verbatim(element)
        table = _gutter_table(element)
        target = element if table is None else table
        language = _language(element, target)
        if text.strip():
            stand_in = etree.Element("p")
            stand_in.text = f"{placeholder}{len(blocks)}"
            blocks.append(CodeBlock(text, language))
            replace(target, stand_in)
        else:
            replace(target, None)
    return blocks


def restore_code_blocks(
    markdown: str, placeholder: str, blocks: list[CodeBlock], *, fenced: bool = True
) -> str:
    """Put each block back where its placeholder came out: a fenced block on its own
    lines (indented under a list item or quote it sits in), or inline code inside a
    table row. With fenced=False (plain text) the bare text goes back."""
    if not blocks or placeholder not in markdown:
        return markdown
    token = re.compile(re.escape(placeholder) + r"(\d+)")
    lines: list[str] = []
    for line in markdown.split("\n"):
        if placeholder not in line:
            lines.append(line)
            continue
        if line.lstrip().startswith("|"):
            lines.append(token.sub(lambda m: _inline(blocks, m, fenced), line))
            continue
        lines.extend(_block_lines(line, token, blocks, fenced))
    return "\n".join(lines)


def _block_lines(
    line: str, token: re.Pattern[str], blocks: list[CodeBlock], fenced: bool
) -> list[str]:
    """A line holding placeholders as lines: its text, then each block below it, under
    the line's list or quote indentation."""
    prefix_match = _LINE_PREFIX.match(line)
    assert prefix_match is not None  # every group is optional
    quote, marker = prefix_match.group(1), prefix_match.group(2) or ""
    lead = quote + marker
    indent = quote + " " * len(marker)
    out: list[str] = []
    rest = line[len(lead) :]
    position = 0
    for match in token.finditer(rest):
        before = rest[position : match.start()].strip()
        if before:
            out.append((indent if out else lead) + before)
        index = int(match.group(1))
        if index < len(blocks):
            body = _fenced(blocks[index]) if fenced else blocks[index].text
            for code_line in body.split("\n"):
                line_prefix = indent if out else lead
                # a blank code line keeps only its quote markers, no trailing spaces
                out.append(line_prefix + code_line if code_line else line_prefix.rstrip())
        position = match.end()
    after = rest[position:].strip()
    if after:
        out.append(indent + after)
    return out


def _inline(blocks: list[CodeBlock], match: re.Match[str], fenced: bool) -> str:
    index = int(match.group(1))
    if index >= len(blocks):
        return ""
    text = " ".join(blocks[index].text.split())
    return f"`{text}`" if fenced and "`" not in text else text


def _fenced(block: CodeBlock) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(block.text)), default=2)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{block.language}\n{block.text}\n{fence}"


def _is_code_block(code: etree._Element) -> bool:
    """A `<code>` outside `<pre>` that is a block: it has line breaks and stands alone
    in a block element. Inside a paragraph, source line breaks are just spaces."""
    parent = code.getparent()
    if parent is None or parent.tag not in _BLOCK_PARENTS or len(parent) != 1:
        return False
    if (parent.text or "").strip() or (code.tail or "").strip():
        return False
    return "\n" in "".join(code.itertext()).strip()


def _verbatim(element: etree._Element) -> str:
    """The block's text as a browser shows it: every character kept, highlighting
    markup gone, line numbers dropped, `<br>` a line break. The line break right after
    `<pre>` (which browsers drop) and blank lines at either end are left out."""
    for gutter in [e for e in element.iter() if classes(e) & _GUTTERS]:
        if gutter is not element:
            replace(gutter, None)
    for br in element.iter("br"):
        br.tail = "\n" + (br.tail or "")
    return "".join(element.itertext()).strip("\n")


def _language(element: etree._Element, target: etree._Element) -> str:
    """The language the page names for this block: on the block, on a `<code>` in it,
    or on a wrapper up to three levels above what the block replaces (Sphinx's
    highlight-*, MkDocs' language-* around a line-number table)."""
    candidates = [element, *element.iterchildren("code")]
    above_target = None
    for ancestor in element.iterancestors():
        candidates.append(ancestor)
        if ancestor is target.getparent():
            above_target = 0
        if above_target is not None:
            above_target += 1
            if above_target == 3:
                break
    for candidate in candidates:
        for attribute in ("data-lang", "data-language"):
            value = (candidate.get(attribute) or "").strip().lower()
            if value not in _NOT_LANGUAGES and _LANGUAGE_NAME.match(value):
                return value
        names = (candidate.get("class") or "").split()
        for name in names:
            for prefix in _LANGUAGE_PREFIXES:
                if name.startswith(prefix):
                    value = name[len(prefix) :].lower()
                    if value not in _NOT_LANGUAGES and _LANGUAGE_NAME.match(value):
                        return value
        if "sourceCode" in names:  # pandoc: class="sourceCode python"
            for name in names:
                if name != "sourceCode" and name.lower() not in _NOT_LANGUAGES:
                    return name.lower() if _LANGUAGE_NAME.match(name) else ""
    return ""


def _inside(element: etree._Element, tag: str) -> bool:
    return any(True for _ in element.iterancestors(tag))


def _in_gutter(element: etree._Element) -> bool:
    for node in (element, *element.iterancestors()):
        if classes(node) & _GUTTERS:
            return True
        if node.tag == "table":
            return False
    return False


def _gutter_table(element: etree._Element) -> etree._Element | None:
    """The table that lays a block out beside its line numbers, if there is one: the
    whole table goes, numbers and all, and the block takes its place."""
    for table in element.iterancestors("table"):
        if "highlighttable" in classes(table) or any(
            classes(cell) & _GUTTERS for cell in table.iter("td", "th")
        ):
            return table
        return None
    return None
