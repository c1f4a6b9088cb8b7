"""Printing an answer and the passages behind it (``ask``, ``chat``, ``demo``, ``retrieve``).

What a person needs to check an answer, in the order they need it:

- **the answer**, streamed as the model writes it;
- **the evidence**: for each source the answer relies on, the span of that source
  that supports it, quoted (from ``Response.sentences``; nothing when the answer was
  not checked against its sources), and any sentence no source supports;
- **the sources**, one row per page (its title and URL) with its passages under it:
  the number ``[n]`` the answer refers to, ``*`` when the answer relies on it, the
  passage's similarity to the question and its section of the page.

A passage shows its cosine similarity to the question, not ``node.score``: in hybrid
retrieval the score is the reciprocal-rank fusion scaled so that first place in both
rankings is 1.000, which reads as confidence even when the passage is barely related;
the cosine is one scale whichever ranking found the passage.

Everything printed here comes from pages or a model, so it goes through
:mod:`ragtune.terminal`: no markup, no control characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rich.text import Text

from ragtune.documents import NodeWithScore, Response
from ragtune.terminal import err, out, plain, styled

if TYPE_CHECKING:
    from ragtune.llm.base import LLM, ChatMessage

# Characters of a quoted evidence span, and of a passage's excerpt under ``retrieve``.
QUOTE_WIDTH = 300
EXCERPT_WIDTH = 160


class StreamingEngine(Protocol):
    """What printing an answer asks of a query engine: its tokens as they come, and a
    Response whose fields are complete once the tokens are exhausted."""

    def stream(self, question: str) -> tuple[Iterator[str], Response]: ...


@dataclass
class Page:
    """The passages of one page among a response's sources, with their prompt numbers."""

    url: str
    title: str
    passages: list[tuple[int, NodeWithScore]] = field(default_factory=list)


def stream_answer(engine: StreamingEngine, question: str) -> None:
    """Print the answer as the model writes it, then its evidence and its sources."""
    pieces, response = engine.stream(question)
    print_streamed(pieces, response)
    print_sources(response)


def print_streamed(pieces: Iterable[str], response: Response) -> None:
    """Print the answer piece by piece, then its evidence, which is only known once
    the last piece has been read."""
    for piece in pieces:
        out.print(piece, end="")
    out.print()
    if response.metadata.get("answer_mode") == "extract" and not response.metadata.get(
        "not_in_sources"
    ):
        # Say so: the reader should know no model wrote this (--answer picks the mode).
        err.print("(quoted from the sources; no model was asked: --answer generate asks one)")
    print_evidence(response)


def answer_without_index(model: LLM, question: str, as_json: bool) -> None:
    """The model's own answer, streamed (or as JSON), said to have no sources."""
    messages: list[ChatMessage] = [{"role": "user", "content": question}]
    if as_json:
        answer = model.chat(messages, max_tokens=256)
        out.print_data(
            {
                "answer": answer,
                "sources": [],
                "citations": [],
                "sentences": [],
                "metadata": {"index": None},
            }
        )
        return
    for piece in model.stream_chat(messages, max_tokens=256):
        out.print(piece, end="")
    out.print()
    err.print(f"(no index: answered by {model.name} alone, without sources)")


def print_evidence(response: Response) -> None:
    """Under the answer: each supporting span, quoted, after the number of its source,
    then each answer sentence that no source supports. Nothing when the answer was not
    checked against its sources (``response.sentences`` is empty)."""
    quotes = evidence_quotes(response)
    unsupported = [" ".join(s.text.split()) for s in response.sentences if not s.supported]
    if not quotes and not unsupported:
        return
    out.print(Text.assemble("\n", styled("Evidence", "bold")))
    for number, quote in quotes:
        out.print(Text.assemble(f"  [{number}] ", plain(f'"{quote}"')))
    for sentence in unsupported:
        label = styled("not in the sources:", "bold")
        out.print(Text.assemble("  ", label, " ", plain(f'"{sentence}"')))


def evidence_quotes(response: Response) -> list[tuple[int, str]]:
    """``(source number, quoted text)`` for every evidence span of the answer, by source
    number, then by position in the source. Spans of one source that overlap are quoted
    once; a span that points outside its source is ignored rather than trusted."""
    spans: dict[int, list[tuple[int, int]]] = {}
    for sentence in response.sentences:
        for evidence in sentence.evidence:
            if not 1 <= evidence.number <= len(response.source_nodes):
                continue
            length = len(response.source_nodes[evidence.number - 1].text)
            start, end = max(0, evidence.start), min(length, evidence.end)
            if start < end:
                spans.setdefault(evidence.number, []).append((start, end))
    quotes = []
    for number in sorted(spans):
        text = response.source_nodes[number - 1].text
        for start, end in _merged(spans[number]):
            quotes.append((number, excerpt(text[start:end], QUOTE_WIDTH)))
    return quotes


def cited_numbers(response: Response) -> set[int]:
    """The sources the answer relies on: those it cites as ``[n]`` and those found to
    support one of its sentences (when the model wrote no marker), so that every
    source quoted as evidence is one marked cited."""
    cited = {citation.number for citation in response.citations}
    for sentence in response.sentences:
        cited.update(sentence.sources)
        cited.update(evidence.number for evidence in sentence.evidence)
    return cited


def print_sources(response: Response) -> None:
    """The response's sources, one row per page and one per passage under it."""
    if response.metadata.get("not_in_sources"):
        reason = response.metadata.get("reason", "no passage is close enough")
        err.print(f"({reason}; the LLM was not asked)")
        heading = " (closest passages, none close enough)"
    else:
        heading = " (* cited in the answer)"
    out.print(Text.assemble("\n", styled("Sources", "bold"), heading))
    cited = cited_numbers(response)
    for page in pages_of(response.source_nodes):
        out.print(Text.assemble("  ", _page_label(page)))
        for number, node in page.passages:
            mark = "*" if number in cited else " "
            section = " > ".join(node.section)
            row = Text.assemble(f"   {mark}[{number}] ", closeness(node))
            if section:
                row.append_text(Text.assemble("  ", plain(section)))
            out.print(row)


def print_ranked(nodes: Sequence[NodeWithScore]) -> None:
    """``retrieve``'s listing: rank, similarity and URL, then title and section, then
    the start of the passage."""
    for rank, node in enumerate(nodes, 1):
        label = styled(f"{rank}. {closeness(node)}", "bold")
        out.print(Text.assemble(label, "  ", plain(str(node.metadata.get("url") or ""))))
        place = " > ".join(part for part in [_title_of(node), *node.section] if part)
        if place:
            out.print(Text.assemble("   ", plain(place)))
        out.print(Text.assemble("   ", plain(excerpt(node.text, EXCERPT_WIDTH))))


def pages_of(nodes: Sequence[NodeWithScore]) -> list[Page]:
    """The nodes grouped by page, each with its 1-based prompt number; pages in the order
    of their first passage, passages in prompt order."""
    pages: dict[str, Page] = {}
    for number, node in enumerate(nodes, 1):
        url = str(node.metadata.get("url") or "")
        key = url or node.node.ref_doc_id or node.node_id
        page = pages.setdefault(key, Page(url=url, title=_title_of(node)))
        page.passages.append((number, node))
    return list(pages.values())


def closeness(node: NodeWithScore) -> str:
    """How close the passage is to the question: its cosine similarity where retrieval
    set one, else (a node from elsewhere) its score, named as such."""
    similarity = node.metadata.get("similarity")
    if similarity is None:
        return f"score {node.score:.3f}"
    return f"similarity {float(similarity):.3f}"


def excerpt(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _page_label(page: Page) -> Text:
    if page.title and page.url and page.title != page.url:
        return Text.assemble(styled(page.title, "bold"), "  ", plain(page.url))
    return styled(page.title or page.url or "(untitled)", "bold")


def _title_of(node: NodeWithScore) -> str:
    return " ".join(str(node.metadata.get("title") or "").split())


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching ``(start, end)`` spans joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
