"""A page's title, author, date, description and site name, as trafilatura finds them.

`trafilatura.bare_extraction(with_metadata=True)` also collects categories, tags and
a licence, which ragtune discards, and it looks for a byline by copying the page and
running four XPath expressions over it, each a few milliseconds on a page of a
thousand elements (libxml2 builds a node set for every test of every element):
together about a quarter of an extraction. `page_metadata` takes the same steps in
the same order with trafilatura's own helpers, less the discarded ones, and finds
the byline in one walk over the page that applies the same tests to each element.
tests/test_extract.py holds its answers equal to trafilatura's.
"""

from __future__ import annotations

import contextlib
import re
from copy import deepcopy
from typing import Any

from htmldate import find_date
from trafilatura.json_metadata import normalize_authors
from trafilatura.metadata import (
    META_URL,
    examine_meta,
    extract_meta_json,
    extract_sitename,
    extract_title,
    extract_url,
)
from trafilatura.settings import Document
from trafilatura.utils import trim

from ragtune.extract.tree_edits import replace

# trafilatura.xpaths.AUTHOR_XPATHS and AUTHOR_DISCARD_XPATHS as Python tests of one
# element: the same tag lists, attribute comparisons and re:test patterns (lxml runs
# re:test as re.search on the attribute's value, "" where there is none).
_BYLINE_TAGS = frozenset({"a", "address", "div", "link", "p", "span", "strong"})
_BYLINE_NAME = re.compile("author-?name|AuthorName|authorName")
_AUTHOR_TAGS = frozenset({"a", "div", "h3", "h4", "p", "span"})
_AUTHOR_ID = re.compile("author|zuozhe|bianji|xiaobian")
_AUTHOR_CLASS = re.compile(
    "author|channel-name|zuozhe|bianji|xiaobian|submitted-by|posted-by|journalist-name"
)
_ANY_AUTHOR_ID = re.compile("[Aa]uthor")
_ANY_AUTHOR_CLASS = re.compile("[Aa]uthor|screenname|writer|[Bb]yline")
# Every class or id that _byline_tests can accept holds one of these.
_MAYBE_BYLINE = re.compile("uthor|yl|BBL|name|writer|zuozhe|bianji|xiaobian|-by")
_DISCARD_TAGS = frozenset({"a", "div", "section", "span"})
_DISCARD_ID = re.compile("^comments|comment-?list|ProductReviews")
_DISCARD_CLASS = re.compile(
    "^[Cc]omments|commentlist|comments-list|sidebar|is-hidden|quote|embedly-instagram|"
    "article-(?:share|support)|print|category|meta-date|meta-reviewer"
)


def _byline_tests(element: Any, tag: str) -> tuple[bool, bool, bool]:
    """Whether each of AUTHOR_XPATHS selects the element."""
    get = element.get
    class_ = get("class") or ""
    id_ = get("id") or ""
    itemprop = get("itemprop") or ""
    first = tag == "author" or (
        tag in _BYLINE_TAGS
        and (
            get("rel") == "author"
            or id_ == "author"
            or class_ == "author"
            or itemprop == "author name"
            or any("".join(rel.itertext()) == "me" for rel in element.iterchildren("rel"))
            or get("data-testid") in ("AuthorCard", "AuthorURL")
            or bool(_BYLINE_NAME.search(class_))
        )
    )
    second = tag in _AUTHOR_TAGS and (
        class_ in ("byline", "username", "byl", "BBL")
        or "author" in itemprop
        or bool(_AUTHOR_ID.search(id_))
        or bool(_AUTHOR_CLASS.search(class_))
    )
    third = (
        "Byline" in (get("data-component") or "")
        or "author" in itemprop
        or bool(_ANY_AUTHOR_ID.search(id_))
        or bool(_ANY_AUTHOR_CLASS.search(class_))
    )
    return first, second, third


def _discarded(element: Any, tag: str) -> bool:
    """Whether AUTHOR_DISCARD_XPATHS select the element."""
    if tag in ("time", "figure"):
        return True
    if tag not in _DISCARD_TAGS:
        return False
    get = element.get
    class_ = get("class") or ""
    id_ = get("id") or ""
    return (
        id_ == "comments"
        or class_ in ("comments", "title", "date")
        or bool(_DISCARD_ID.search(id_))
        or bool(_DISCARD_CLASS.search(class_))
        or "Figure" in (get("data-component") or "")
    )


def page_metadata(tree: Any, url: str | None, date_params: dict[str, Any]) -> Document:
    """trafilatura.metadata.extract_metadata on a parsed page, less categories, tags
    and licence (and with no author blacklist, as ragtune passes none)."""
    metadata = examine_meta(tree)
    if metadata.author and " " not in metadata.author:
        metadata.author = None
    # trafilatura's JSON-LD reading: its own bugs cost those fields, not the page
    with contextlib.suppress(Exception):
        metadata = extract_meta_json(tree, metadata)
    if not metadata.title:
        metadata.title = extract_title(tree)
    if not metadata.author:
        metadata.author = _byline(tree)
    if not metadata.url:
        metadata.url = extract_url(tree, url)
    metadata.date = find_date(tree, **{**date_params, "url": metadata.url})
    if not metadata.sitename:
        metadata.sitename = extract_sitename(tree)
    if metadata.sitename:
        metadata.sitename = metadata.sitename.lstrip("@")
        if (
            metadata.sitename
            and "." not in metadata.sitename
            and not metadata.sitename[0].isupper()
        ):
            metadata.sitename = metadata.sitename.title()
    elif metadata.url:
        found = META_URL.match(metadata.url)
        if found:
            metadata.sitename = found[1]
    metadata.filedate = date_params.get("max_date")
    metadata.clean_and_trim()
    return metadata


def _byline(tree: Any) -> str | None:
    """trafilatura.metadata.extract_author, without its copy of the page.

    That copy, less comments, dates and figures (AUTHOR_DISCARD_XPATHS), is searched
    with AUTHOR_XPATHS in turn, the first byline of 3 to 119 characters winning. An
    element's attributes are the same in the copy, so it is selected there if it is
    selected here and neither it nor an element around it was taken out; its text is
    the same unless something inside it was, and then it is read from a copy of it
    alone, pruned the same way (deleted elements leave their tails behind)."""
    # <rel> elements are all but unheard of: find their parents once, not at each element.
    rel_parents = {rel.getparent() for rel in tree.iter("rel")}
    found: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    maybe = _MAYBE_BYLINE.search
    for element in tree.iter():
        get = element.get
        class_ = get("class")
        id_ = get("id")
        if not (
            (class_ and maybe(class_))
            or (id_ and maybe(id_))
            or get("itemprop") is not None
            or get("data-testid") is not None
            or get("data-component") is not None
            or get("rel") == "author"
            or element.tag == "author"
            or element in rel_parents
        ):
            continue
        tag = element.tag
        if isinstance(tag, str):
            for selected, elements in zip(_byline_tests(element, tag), found, strict=True):
                if selected:
                    elements.append(element)
    for elements in found:
        for element in elements:
            if _taken_out(element, tree):
                continue
            content = trim(" ".join(_pruned(element).itertext()))
            if content and 2 < len(content) < 120:
                return normalize_authors(None, content)
    return None


def _is_discarded(element: Any) -> bool:
    tag = element.tag
    return isinstance(tag, str) and _discarded(element, tag)


def _taken_out(element: Any, root: Any) -> bool:
    """Whether the element is not in trafilatura's pruned copy of `root` (whose own
    removal, as that of the copy's root, does nothing)."""
    while element is not None and element is not root:
        if _is_discarded(element):
            return True
        element = element.getparent()
    return False


def _pruned(element: Any) -> Any:
    """The element as it reads in trafilatura's pruned copy of the page."""
    inside = [part for part in element.iterdescendants() if _is_discarded(part)]
    if not inside:
        return element
    copy = deepcopy(element)
    originals = list(element.iter())  # held, so that no two of them share an id()
    positions = {id(part): index for index, part in enumerate(originals)}
    copies = list(copy.iter())
    for part in inside:
        replace(copies[positions[id(part)]], None)  # as trafilatura's delete_element
    return copy
