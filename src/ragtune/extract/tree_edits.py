"""Small edits of a parsed page that the pre-extraction passes share."""

from __future__ import annotations

from lxml import etree


def classes(element: etree._Element) -> set[str]:
    """The element's class names."""
    value = element.get("class")
    return set(value.split()) if value else set()


def replace(element: etree._Element, replacement: etree._Element | None) -> None:
    """Swap an element for another (or for nothing), keeping the text that follows it."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    if replacement is not None:
        replacement.tail = tail
        parent.replace(element, replacement)
        return
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


def unwrap(element: etree._Element) -> None:
    """Put an element's text and children in its place, the element itself gone."""
    parent = element.getparent()
    if parent is None:
        return
    previous = element.getprevious()
    if element.text:
        if previous is not None:
            previous.tail = (previous.tail or "") + element.text
        else:
            parent.text = (parent.text or "") + element.text
    children = list(element)
    index = parent.index(element)
    for offset, child in enumerate(children):
        parent.insert(index + offset, child)  # moves it out of element
    if element.tail:
        last = children[-1] if children else previous
        if last is not None:
            last.tail = (last.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)
