"""The plain data types that flow through ragtune: documents, nodes, responses.

Names and attributes follow LlamaIndex (``Document``, ``TextNode``,
``NodeWithScore``, ``Response.source_nodes``) so its users feel at home.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Metadata key of a crawled page's links; kept on the document's first chunk
# only, and not shown with retrieved nodes.
OUTLINKS = "outlinks"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Document:
    """One source (a page, a file) as Markdown text plus metadata such as ``url`` and ``title``."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id_: str = ""

    def __post_init__(self) -> None:
        if not self.id_:
            source = str(self.metadata.get("url") or self.metadata.get("path") or "")
            self.id_ = content_hash(source or self.text)[:32]

    @property
    def doc_id(self) -> str:
        return self.id_


@dataclass
class TextNode:
    """A chunk of a document, the unit that is embedded, stored and retrieved."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    id_: str = ""
    ref_doc_id: str = ""
    # The stored unit-length vector, when the node came from an index.
    embedding: Any = field(default=None, repr=False, compare=False)

    @property
    def node_id(self) -> str:
        return self.id_


@dataclass
class NodeWithScore:
    """A retrieved node and its relevance score (higher is better)."""

    node: TextNode
    score: float

    @property
    def text(self) -> str:
        return self.node.text

    @property
    def metadata(self) -> dict[str, Any]:
        return self.node.metadata

    @property
    def node_id(self) -> str:
        return self.node.id_

    @property
    def section(self) -> list[str]:
        """The headings above this passage in its page, outermost first. A heading that
        repeats the page's title is left out: it names the page, not a section of it."""
        title = self.metadata.get("title")
        headings = self.metadata.get("heading_path") or []
        return [str(heading) for heading in headings if heading and heading != title]

    def __repr__(self) -> str:
        url = self.metadata.get("url", "")
        return f"NodeWithScore(score={self.score:.3f}, url={url!r}, text={self.text[:60]!r}...)"

    def to_dict(self) -> dict[str, Any]:
        """The node as JSON data. ``score`` is the ranking's own score (BM25 in keyword
        mode; in hybrid mode the rank fusion, scaled so that first place in both rankings
        is 1.0, a rank and not a confidence); ``similarity`` is the passage's cosine
        similarity to the question, one scale whichever ranking found it (None where
        retrieval set none)."""
        return {
            "id": self.node.id_,
            "score": self.score,
            "similarity": self.metadata.get("similarity"),
            "url": self.metadata.get("url"),
            "title": self.metadata.get("title"),
            "section": self.section,
            "text": self.text,
            "metadata": self.metadata,
        }


@dataclass
class Citation:
    """A ``[number]`` marker of an answer and the prompt source it points to."""

    number: int
    node: NodeWithScore

    @property
    def url(self) -> str | None:
        url = self.node.metadata.get("url")
        return str(url) if url is not None else None

    @property
    def title(self) -> str | None:
        title = self.node.metadata.get("title")
        return str(title) if title is not None else None

    @property
    def text(self) -> str:
        return self.node.text

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "id": self.node.node_id,
            "url": self.url,
            "title": self.title,
            "text": self.text,
        }


@dataclass
class Evidence:
    """Where a source supports an answer sentence: characters ``start:end`` of the text
    of the source the prompt numbered ``number``."""

    number: int
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.number, "start": self.start, "end": self.end}


@dataclass
class AnswerSentence:
    """One sentence of an answer and what grounds it: ``sources`` are the numbers of
    the prompt's sources that support it (empty when none does, ``supported`` False)."""

    text: str
    supported: bool
    sources: list[int] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "supported": self.supported,
            "sources": list(self.sources),
            "evidence": [item.to_dict() for item in self.evidence],
        }


@dataclass
class Response:
    """An answer and the source nodes it was grounded in. ``str(response)`` is the answer.

    ``source_nodes[n - 1]`` is the source the prompt numbered ``n``; ``citations``
    lists the sources the answer actually cites as ``[n]``, in order of first
    mention (empty when the answer cites none). ``sentences`` is the answer sentence
    by sentence with the sources and spans that support each (empty when the answer
    was not checked against its sources).
    """

    response: str
    source_nodes: list[NodeWithScore] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    citations: list[Citation] = field(default_factory=list)
    sentences: list[AnswerSentence] = field(default_factory=list)

    def __str__(self) -> str:
        return self.response

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.response,
            "sources": [node.to_dict() for node in self.source_nodes],
            "citations": [citation.to_dict() for citation in self.citations],
            "sentences": [sentence.to_dict() for sentence in self.sentences],
            "metadata": self.metadata,
        }
