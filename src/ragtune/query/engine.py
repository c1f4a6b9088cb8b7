"""The query engine: retrieve, pack, generate, and return the answer with its sources."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ragtune.documents import NodeWithScore, Response
from ragtune.index.vector_index import validate_query
from ragtune.llm.base import LLM, load_llm
from ragtune.query.prompt import PackedPrompt, pack_prompt

if TYPE_CHECKING:
    from ragtune.index.vector_index import VectorIndexRetriever


class RetrieverQueryEngine:
    """``query(question)`` returns a Response; its ``source_nodes`` are the prompt's sources."""

    def __init__(
        self,
        retriever: VectorIndexRetriever,
        llm: LLM | str | None = None,
        answer_tokens: int = 128,
        relevance_ratio: float = 0.75,
    ) -> None:
        self.retriever = retriever
        self.relevance_ratio = relevance_ratio
        self._llm_spec = llm
        self._llm: LLM | None = None
        self.answer_tokens = answer_tokens

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = load_llm(self._llm_spec)
        return self._llm

    def _prepare(self, question: str) -> tuple[PackedPrompt, dict[str, float]]:
        question = validate_query(question)
        started = time.perf_counter()
        nodes = keep_relevant(self.retriever.retrieve(question), self.relevance_ratio)
        retrieved = time.perf_counter()
        packed = pack_prompt(
            question, nodes, self.llm.count_tokens, self.llm.context_window, self.answer_tokens
        )
        timings = {"retrieve_s": retrieved - started}
        return packed, timings

    def query(self, question: str) -> Response:
        packed, timings = self._prepare(question)
        started = time.perf_counter()
        answer = self.llm.chat(packed.messages, max_tokens=self.answer_tokens)
        timings["generate_s"] = time.perf_counter() - started
        return Response(answer, packed.sources, self._metadata(packed, timings))

    def stream(self, question: str) -> tuple[Iterator[str], Response]:
        """Tokens as they arrive, and a Response whose ``response`` fills in as they are read."""
        packed, timings = self._prepare(question)
        response = Response("", packed.sources, self._metadata(packed, timings))

        def tokens() -> Iterator[str]:
            started = time.perf_counter()
            for piece in self.llm.stream_chat(packed.messages, max_tokens=self.answer_tokens):
                response.response += piece
                yield piece
            response.response = response.response.strip()
            response.metadata["generate_s"] = time.perf_counter() - started

        return tokens(), response

    def _metadata(self, packed: PackedPrompt, timings: dict[str, float]) -> dict[str, object]:
        return {"model": self.llm.name, "prompt_tokens": packed.prompt_tokens, **timings}


def keep_relevant(nodes: list[NodeWithScore], ratio: float) -> list[NodeWithScore]:
    """Drop sources scoring far below the best one.

    A small model answers better from two pertinent passages than from two
    pertinent ones and two distractors, and a shorter prompt is faster.
    """
    if not nodes or ratio <= 0:
        return nodes
    # Fused ranks say little about how close a passage is; the embedding
    # similarity does, so the cut uses it where the retriever gave one.
    similarity = {id(n): n.metadata.get("similarity", n.score) for n in nodes}
    floor = max(similarity.values()) * ratio
    return [node for node in nodes if similarity[id(node)] >= floor]
