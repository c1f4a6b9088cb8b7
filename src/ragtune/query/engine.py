"""The query engine: retrieve, pack, generate, and return the answer with its sources."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ragtune.documents import NodeWithScore, Response
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.llm.base import LLM
from ragtune.llm.factory import load_llm
from ragtune.query.citations import CitationFilter
from ragtune.query.prompt import PackedPrompt, pack_prompt
from ragtune.query.terms import key_terms, words_of
from ragtune.questions import validate_query


class Retriever(Protocol):
    """What the engine asks for passages (an index's ``as_retriever()``).

    ``retrieve`` checks the question it is given (``ragtune.questions.validate_query``):
    the engine does not check it again.
    """

    def retrieve(self, query: str) -> list[NodeWithScore]: ...


NOT_IN_SOURCES = "The indexed sources do not contain the answer to this question."
# Below this cosine between the question and its closest passage, the engine
# answers NOT_IN_SOURCES without asking the LLM. It sits between the demo shop's
# answerable and unrelated questions with the default embedder; the calibration
# and its spread across backends and CPUs are in docs/benchmarks.md ("The
# not-in-sources threshold").
DEFAULT_MIN_SIMILARITY = 0.22
# Near the threshold a cosine is not a decision (it moves with the CPU): within
# three times the measured spread below it, a question is still in the sources
# when one retrieved passage holds at least two thirds of its content words (two
# or more), a literal match no CPU changes.
NEAR_THRESHOLD = 0.045
KEYWORD_EVIDENCE = 2 / 3


class RetrieverQueryEngine:
    """``query(question)`` returns a Response; its ``source_nodes`` are the prompt's sources.

    When no retrieved passage reaches ``min_similarity`` (the cosine between
    question and passage, whatever the retrieval mode), the answer is
    ``not_in_sources_answer`` and the LLM is neither loaded nor asked; the
    response's metadata says so (``not_in_sources``, ``best_similarity``) and
    ``source_nodes`` still lists what was retrieved. ``min_similarity=0``
    always asks the LLM. Within ``NEAR_THRESHOLD`` below ``min_similarity``, where
    the CPU and the backend can move a cosine across it, a passage holding
    ``KEYWORD_EVIDENCE`` of the question's content words still answers.
    """

    def __init__(
        self,
        retriever: Retriever,
        llm: LLM | str | None = None,
        answer_tokens: int = 128,
        relevance_ratio: float = 0.75,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
        not_in_sources_answer: str = NOT_IN_SOURCES,
    ) -> None:
        self.retriever = retriever
        self.relevance_ratio = relevance_ratio
        self._llm_spec = llm
        self._llm: LLM | None = None
        self.answer_tokens = answer_tokens
        self.min_similarity = min_similarity
        self.not_in_sources_answer = not_in_sources_answer

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            self._llm = load_llm(self._llm_spec)
        return self._llm

    def _retrieve(
        self, question: str, retrieval_query: str | None = None
    ) -> tuple[list[NodeWithScore], dict[str, Any]]:
        started = time.perf_counter()
        query = retrieval_query.strip() if retrieval_query and retrieval_query.strip() else None
        if query is not None:
            # The retriever checks what it searches for; here the model is asked
            # another text, which nothing else checks.
            validate_query(question)
        nodes = keep_relevant(self.retriever.retrieve(query or question), self.relevance_ratio)
        metadata: dict[str, Any] = {"retrieve_s": time.perf_counter() - started}
        if query is not None:
            metadata["retrieval_query"] = query
        best = best_similarity(nodes)
        metadata["best_similarity"] = best
        evidence = keyword_evidence(query or question, nodes)
        metadata["keyword_evidence"] = evidence
        below = best is not None and best < self.min_similarity
        near = best is not None and best >= self.min_similarity - NEAR_THRESHOLD
        if not nodes or (below and not (near and evidence >= KEYWORD_EVIDENCE)):
            metadata["not_in_sources"] = True
            metadata["reason"] = (
                "nothing was retrieved"
                if best is None
                else f"best similarity {best:.3f} is below min_similarity {self.min_similarity}"
            )
        return nodes, metadata

    def _prepare(
        self, question: str, nodes: list[NodeWithScore], history: Sequence[tuple[str, str]] = ()
    ) -> PackedPrompt:
        return pack_prompt(
            question,
            nodes,
            self.llm.count_tokens,
            self.llm.context_window,
            self.answer_tokens,
            history=history,
        )

    def query(
        self,
        question: str,
        *,
        history: Sequence[tuple[str, str]] = (),
        retrieval_query: str | None = None,
    ) -> Response:
        """Answer ``question``.

        ``history`` holds earlier ``(question, answer)`` turns of a conversation
        (oldest first; the latest that fit go into the prompt), and
        ``retrieval_query`` replaces the question for retrieval only (a chat's
        standalone rewrite of a follow-up question).
        """
        nodes, metadata = self._retrieve(question, retrieval_query)
        if metadata.get("not_in_sources"):
            return Response(self.not_in_sources_answer, nodes, metadata)
        packed = self._prepare(question.strip(), nodes, history)
        started = time.perf_counter()
        answer = self.llm.chat(packed.messages, max_tokens=self.answer_tokens)
        metadata["generate_s"] = time.perf_counter() - started
        citations = CitationFilter(packed.sources)
        text = (citations.feed(answer) + citations.flush()).strip()
        return Response(
            text,
            packed.sources,
            self._metadata(packed, metadata, citations),
            citations.citations,
        )

    def stream(
        self,
        question: str,
        *,
        history: Sequence[tuple[str, str]] = (),
        retrieval_query: str | None = None,
    ) -> tuple[Iterator[str], Response]:
        """Tokens as they arrive, and a Response whose ``response`` fills in as they are read.

        ``citations`` (and ``metadata["dropped_citations"]``) are set once the
        tokens are exhausted. ``history`` and ``retrieval_query`` as in :meth:`query`.
        """
        nodes, metadata = self._retrieve(question, retrieval_query)
        if metadata.get("not_in_sources"):
            response = Response("", nodes, metadata)

            def fixed() -> Iterator[str]:
                response.response = self.not_in_sources_answer
                yield self.not_in_sources_answer

            return fixed(), response
        packed = self._prepare(question.strip(), nodes, history)
        citations = CitationFilter(packed.sources)
        response = Response("", packed.sources, self._metadata(packed, metadata, citations))

        def tokens() -> Iterator[str]:
            started = time.perf_counter()
            for piece in self.llm.stream_chat(packed.messages, max_tokens=self.answer_tokens):
                text = citations.feed(piece)
                if text:
                    response.response += text
                    yield text
            rest = citations.flush()
            if rest:
                response.response += rest
                yield rest
            response.response = response.response.strip()
            response.citations = citations.citations
            response.metadata["generate_s"] = time.perf_counter() - started

        return tokens(), response

    def _metadata(
        self, packed: PackedPrompt, metadata: dict[str, Any], citations: CitationFilter
    ) -> dict[str, Any]:
        # The same list object: a stream fills it in as markers arrive.
        metadata["dropped_citations"] = citations.dropped
        return {
            "model": self.llm.name,
            "prompt_tokens": packed.prompt_tokens,
            "history_turns": packed.history_turns,
            "duplicates_dropped": packed.duplicates_dropped,
            **metadata,
        }


# index.as_query_engine() builds this engine: the index layer may not import
# the query layer above it, so the engine hands itself down.
VectorStoreIndex.query_engine_factory = RetrieverQueryEngine


def best_similarity(nodes: list[NodeWithScore]) -> float | None:
    """The highest question-passage cosine among ``nodes``; None when no node carries one."""
    values = [float(n.metadata["similarity"]) for n in nodes if "similarity" in n.metadata]
    return max(values) if values else None


def keyword_evidence(question: str, nodes: list[NodeWithScore]) -> float:
    """The largest share of the question's content words that one passage contains
    (0 for a question of fewer than two content words: one shared word proves nothing)."""
    terms = set(key_terms(question))
    if len(terms) < 2 or not nodes:
        return 0.0
    return max(len(terms & words_of(node.text)) / len(terms) for node in nodes)


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
