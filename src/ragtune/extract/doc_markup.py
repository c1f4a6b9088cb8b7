"""Documentation-generator markup made readable before main-content extraction.

Sphinx, MkDocs and DocBook pages carry markup that trafilatura renders badly: the
permalink sign after every heading ("Examples¶"), API signatures built from one
`<em>` per parameter (so `*` and `\\` leak out as emphasis and escapes), admonitions
that come out as unmarked paragraphs, and source line breaks inside paragraphs that
survive as hard breaks (and turn an inline `<code>` that spans one into a block).
Each helper here rewrites the parsed page in place; `quote_admonitions` finishes
the admonitions in the Markdown, where their placeholders came out.
"""

from __future__ import annotations

import re

from lxml import etree

from ragtune.extract.tree_edits import classes, replace, unwrap

_PERMALINK_SIGNS = frozenset({"¶", "#", "§", "🔗", "¶#"})
_PERMALINK_CLASSES = frozenset({"headerlink", "anchorjs-link", "header-anchor", "anchor-link"})
_PERMALINK_TITLES = ("permalink to this", "link to this", "permanent link", "direct link to")
_SOURCE_LINKS = frozenset({"viewcode-link", "viewcode-back"})
_ADMONITION_KINDS = (
    "note", "warning", "tip", "hint", "important", "caution", "danger", "attention",
    "error", "seealso", "info", "abstract", "success", "question", "failure", "bug",
    "example", "quote", "todo",
)  # fmt: skip
_ADMONITION_TITLES = {"seealso": "See also", "todo": "To do"}
# Whitespace a browser collapses to one space (not the no-break space).
_SPACES = " \t\n\r\f"
_SOURCE_WHITESPACE = re.compile(f"[{_SPACES}]+")
_VERBATIM = frozenset({"pre", "textarea", "script", "style"})
# Blocks whose text a browser trims at both ends.
_TEXT_BLOCKS = frozenset(
    {"p", "li", "dt", "dd", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "caption", "figcaption"}
)
# A Markdown line that starts a block other than a paragraph.
_NOT_PARAGRAPH = re.compile(r"^\s*(?:```|~~~|[-*+] |\d{1,9}[.)] |#|\||>)")


def drop_permalinks(tree: etree._Element) -> None:
    """Remove the "link to this section" anchors (¶, #) that generators put in headings,
    signatures and captions."""
    doomed = []
    for anchor in tree.iter("a"):
        get = anchor.get
        names = get("class")
        title = get("title")
        href = get("href")
        if (
            (names and not _PERMALINK_CLASSES.isdisjoint(names.split()))
            or (title and title.strip().lower().startswith(_PERMALINK_TITLES))
            or (
                href
                and href.startswith("#")
                and len(anchor) == 0
                and (anchor.text or "").strip() in _PERMALINK_SIGNS
            )
        ):
            doomed.append(anchor)
    for anchor in doomed:
        replace(anchor, None)


def flatten_signatures(tree: etree._Element) -> None:
    """Turn each Sphinx API description (`<dl class="py function">`: signature lines in
    `<dt>`, the description in `<dd>`) into the signature as one line of inline code
    followed by its description, so `(fp, /, *, parse_float=float)` reads as written."""
    for term in list(tree.iter("dt")):
        if not _is_signature(term):
            continue
        for link in [part for part in term.iter() if classes(part) & _SOURCE_LINKS]:
            replace(link, None)  # autodoc's "[source]" is no part of the signature
        signature = " ".join("".join(term.itertext()).split())
        for child in list(term):
            term.remove(child)
        term.tag = "p"
        term.text = None
        term.attrib.clear()
        if signature:
            code = etree.SubElement(term, "code")
            code.text = signature
        entry = term.getparent()
        if entry is not None and entry.tag == "dl":
            # Without the list around it, trafilatura renders the description as
            # paragraphs, not as a list item glued to the signature. No container
            # either: its boilerplate rules (link density, classes like "c macro")
            # drop a description block whose text is mostly cross-references.
            for description in list(entry.iterchildren("dd")):
                unwrap(description)
            unwrap(entry)


def mark_admonitions(tree: etree._Element, placeholder: str) -> list[str]:
    """Put a start paragraph `{placeholder}s{index}` before each admonition (Sphinx and
    MkDocs `div.admonition`, MkDocs `details`) and an end paragraph `{placeholder}e{index}`
    after it, and take out its title; return the titles. `quote_admonitions` turns what
    comes out between the two into a quote."""
    titles: list[str] = []
    for box in list(tree.iter("div", "aside", "details", "section")):
        if box.tag != "details" and "admonition" not in (box.get("class") or ""):
            continue  # what _admonition_title says, without building the set of classes
        title = _admonition_title(box)
        if title is None or box.getparent() is None:
            continue
        start, end = etree.Element("p"), etree.Element("p")
        start.text = f"{placeholder}s{len(titles)}"
        end.text = f"{placeholder}e{len(titles)}"
        titles.append(title)
        box.addprevious(start)
        end.tail, box.tail = box.tail, None
        box.addnext(end)
        box.tag = "div"  # trafilatura drops <details> and <aside>
    return titles


def quote_admonitions(
    markdown: str, placeholder: str, titles: list[str], *, quote: bool = True
) -> str:
    """Quote each admonition's lines (`> **Note:** ...`) between its placeholders; with
    quote=False (plain text) only the title goes in front (`Note: ...`)."""
    if not titles or placeholder not in markdown:
        return markdown
    marker = re.compile(rf"^\s*{re.escape(placeholder)}([se])(\d+)\s*$")
    out: list[str] = []
    depth = last_depth = 0
    title: str | None = None
    blank = False
    for line in markdown.split("\n"):
        found = marker.match(line)
        if found:
            index = int(found.group(2))
            if found.group(1) == "s":
                depth += 1
                title = titles[index] if index < len(titles) else None
            else:
                depth = max(0, depth - 1)
                # the blank line after a quote ends it, even if another one follows
                last_depth = min(last_depth, depth)
                title = None
            continue
        if placeholder in line:  # a marker trafilatura ran into other text: drop it
            line = re.sub(rf"{re.escape(placeholder)}[se]\d+", "", line)
        if not line.strip():
            blank = True
            continue
        prefix = "> " * depth if quote else ""
        if blank and out:
            out.append(("> " * min(depth, last_depth)).rstrip() if quote else "")
        blank = False
        if title is not None:
            label = f"**{title}:**" if quote else f"{title}:"
            if _NOT_PARAGRAPH.match(line):
                out.extend([prefix + label, prefix.rstrip()])
            else:
                line = f"{label} {line.lstrip()}"
            title = None
        out.append(prefix + line)
        last_depth = depth
    return "\n".join(out)


def collapse_whitespace(tree: etree._Element) -> None:
    """Collapse source whitespace in text as a browser does, so a line break in the
    HTML source is a space, not a hard break in the middle of a sentence, and a block
    neither starts nor ends with one. Code blocks have been taken out by now; anything
    else verbatim is skipped."""
    collapse = _SOURCE_WHITESPACE.sub
    for element in tree.iter():
        tag = element.tag
        if tag in _VERBATIM:
            continue
        text = element.text
        if text is not None and ("\n" in text or "\t" in text or "\r" in text):
            element.text = text = collapse(" ", text)
        tail = element.tail
        if tail is not None and ("\n" in tail or "\t" in tail or "\r" in tail):
            element.tail = collapse(" ", tail)
        if tag in _TEXT_BLOCKS:
            if text:
                element.text = text = text.lstrip(_SPACES)
            if len(element):
                last = element[-1]
                if last.tail:
                    last.tail = last.tail.rstrip(_SPACES)
            elif text:
                element.text = text.rstrip(_SPACES)


def _is_signature(term: etree._Element) -> bool:
    """Sphinx 4+ marks signatures `dt.sig`; older Sphinx only names their parts
    (`descname`, `sig-name`) inside a `dl` of a domain object."""
    names = classes(term)
    if "sig" in names or "sig-object" in names:
        return True
    return any(classes(part) & {"descname", "sig-name"} for part in term.iter("code", "span"))


def _admonition_title(box: etree._Element) -> str | None:
    """The admonition's title, taken out of the tree, or None if this is no admonition."""
    names = classes(box)
    if box.tag == "details":
        summary = next(box.iterchildren("summary"), None)
        title = _text(summary) if summary is not None else ""
        if summary is not None:
            replace(summary, None)
        return title or _kind_title(names) or "Details"
    if "admonition" not in names:
        return None
    heading = next(
        (child for child in box.iterchildren() if "admonition-title" in classes(child)), None
    )
    title = _text(heading) if heading is not None else ""
    if heading is not None:
        replace(heading, None)
    return (title or _kind_title(names) or "Note").rstrip(":")


def _kind_title(names: set[str]) -> str:
    for kind in _ADMONITION_KINDS:
        if kind in names:
            return _ADMONITION_TITLES.get(kind, kind.capitalize())
    return ""


def _text(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())
