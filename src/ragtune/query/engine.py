"""The query engine: retrieve, pack, generate, and return the answer with its sources."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

from ragtune.documents import Citation, NodeWithScore, Response
from ragtune.errors import RagtuneError
from ragtune.index.calibration import ScoreCalibration
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.index.vocabulary import CorpusVocabulary
from ragtune.llm.base import LLM
from ragtune.llm.factory import load_llm
from ragtune.query.abstention import absent_terms, best_similarity, decide, keyword_evidence
from ragtune.query.assembly import AnswerAssembler
from ragtune.query.extractive import extract_answer
from ragtune.query.grounding import GROUNDING_MODES, Embed, GroundingMode, Passages, SupportChecker
from ragtune.query.prompt import PackedPrompt, drop_near_duplicates, pack_prompt
from ragtune.questions import validate_query


class Retriever(Protocol):
    """What the engine asks for passages (an index's ``as_retriever()``).

    ``retrieve`` checks the question it is given (``ragtune.questions.validate_query``):
    the engine does not check it again.
    """

    def retrieve(self, query: str) -> list[NodeWithScore]: ...


NOT_IN_SOURCES = "The indexed sources do not contain the answer to this question."
AnswerMode = Literal["generate", "extract", "auto"]
ANSWER_MODES: tuple[AnswerMode, ...] = ("generate", "extract", "auto")
# Measured with the bundled SmolLM2-135M (docs/benchmarks.md): on 30 XQuAD questions
# the answer contained the gold answer for 0.80 of questions extracted, 0.70 auto and
# 0.07 generated (strict grounding dropped most of what it wrote), in 0.09 s against
# 1-2 s; on 49 questions about the PostgreSQL manual 0.55 extracted, 0.61 auto, 0.18
# generated. So without a named model the engine extracts; a model the user names
# generates, and its answer is followed by the extractive one when grounding had to
# cut it, or replaced by it when grounding kept nothing.
BUNDLED_MODEL_ANSWER_MODE: AnswerMode = "extract"
NAMED_MODEL_ANSWER_MODE: AnswerMode = "auto"
# The model stopped at its budget when its answer is this close to it in tokens
# (retokenising an answer can count a token or two fewer than were generated).
BUDGET_SLACK = 2


class RetrieverQueryEngine:
    """``query(question)`` returns a Response; its ``source_nodes`` are the prompt's sources.

    When the retrieved passages do not hold the answer (:mod:`ragtune.query.abstention`:
    the best question-passage cosine read against the index's own score
    calibration, with keyword evidence, and names in the question that the corpus
    never mentions), the answer is ``not_in_sources_answer`` and the LLM is neither
    loaded nor asked; the response's metadata says so (``not_in_sources``,
    ``reason``, ``best_similarity``, ``keyword_evidence``, ``absent_terms``) and
    ``source_nodes`` still lists what was retrieved. ``min_similarity`` replaces
    the calibration with a fixed cosine threshold; ``min_similarity=0`` always
    asks the LLM.

    ``answer_mode`` is ``"generate"`` (the LLM writes the answer), ``"extract"``
    (the best answering sentence of the sources, quoted; no LLM) or ``"auto"``
    (generate; the extractive answer replaces a generated one that grounding kept
    nothing of, and follows one it had to cut); by default
    ``"extract"`` with the bundled model (``llm=None``) and ``"auto"`` with any other
    (the measurements are beside ``BUNDLED_MODEL_ANSWER_MODE``).
    ``grounding`` checks each generated sentence against the prompt's sources
    (:mod:`ragtune.query.grounding`): ``"strict"`` drops unsupported sentences,
    ``"mark"`` keeps them with ``supported=False``, ``"off"`` returns the model's
    text as written (markup removed, markers checked) with no ``sentences``.
    """

    def __init__(
        self,
        retriever: Retriever,
        llm: LLM | str | None = None,
        answer_tokens: int = 128,
        relevance_ratio: float = 0.75,
        min_similarity: float | None = None,
        not_in_sources_answer: str = NOT_IN_SOURCES,
        grounding: GroundingMode = "strict",
        answer_mode: AnswerMode | None = None,
    ) -> None:
        if answer_mode is None:
            answer_mode = BUNDLED_MODEL_ANSWER_MODE if llm is None else NAMED_MODEL_ANSWER_MODE
        if grounding not in GROUNDING_MODES:
            raise RagtuneError(
                f"grounding must be one of {', '.join(GROUNDING_MODES)}, not {grounding!r}"
            )
        if answer_mode not in ANSWER_MODES:
            raise RagtuneError(
                f"answer_mode must be one of {', '.join(ANSWER_MODES)}, not {answer_mode!r}"
            )
        self.grounding: GroundingMode = grounding
        self.answer_mode: AnswerMode = answer_mode
        self.retriever = retriever
        self.relevance_ratio = relevance_ratio
        self._llm_spec = llm
        self._llm: LLM | None = None
        self.answer_tokens = answer_tokens
        self.min_similarity = min_similarity
        # What a cosine means in this index, measured at ingest; an index built
        # before calibration existed has none, and a plain retriever carries none.
        calibration = getattr(retriever, "calibration", None)
        self.calibration = calibration if isinstance(calibration, ScoreCalibration) else None
        vocabulary = getattr(retriever, "vocabulary", None)
        self.vocabulary = vocabulary if isinstance(vocabulary, CorpusVocabulary) else None
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
        evidence = keyword_evidence(query or question, nodes)
        absent = absent_terms(query or question, self.vocabulary)
        metadata.update(best_similarity=best, keyword_evidence=evidence, absent_terms=absent)
        if not nodes:
            metadata.update(not_in_sources=True, reason="nothing was retrieved")
        elif best is not None:  # a retriever that gives no cosine leaves nothing to judge
            decision = decide(best, evidence, self.calibration, self.min_similarity, absent)
            metadata["abstention_rule"] = decision.rule
            if not decision.in_sources:
                metadata.update(not_in_sources=True, reason=decision.reason)
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
        if self.answer_mode == "extract":
            return self._extract(question, nodes, metadata)
        packed = self._prepare(question.strip(), nodes, history)
        pieces, response = self._generate(question, packed, metadata, streaming=False)
        for _ in pieces:
            pass
        return response

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
        if metadata.get("not_in_sources") or self.answer_mode == "extract":
            if metadata.get("not_in_sources"):
                response = Response(self.not_in_sources_answer, nodes, metadata)
            else:
                response = self._extract(question, nodes, metadata)
            return iter([response.response]), response
        packed = self._prepare(question.strip(), nodes, history)
        return self._generate(question, packed, metadata, streaming=True)

    def _embed(self) -> Embed | None:
        """The index's own embedder (the retriever's), for sentence similarity."""
        embed = getattr(getattr(self.retriever, "embedder", None), "embed", None)
        return embed if callable(embed) else None

    def _extract(
        self, question: str, nodes: list[NodeWithScore], metadata: dict[str, Any]
    ) -> Response:
        started = time.perf_counter()
        sources = drop_near_duplicates(nodes)
        sentence = extract_answer(question.strip(), Passages.of(sources, self._embed()))
        metadata.update(answer_mode="extract", extract_s=time.perf_counter() - started)
        if sentence is None:
            metadata.update(
                not_in_sources=True, reason="no source sentence says more than the question"
            )
            return Response(self.not_in_sources_answer, sources, metadata)
        number = sentence.sources[0]
        return Response(
            sentence.text, sources, metadata, [Citation(number, sources[number - 1])], [sentence]
        )

    def _generate(
        self, question: str, packed: PackedPrompt, metadata: dict[str, Any], *, streaming: bool
    ) -> tuple[Iterator[str], Response]:
        splitting = time.perf_counter()
        passages = Passages.of(packed.sources, self._embed())
        split_s = time.perf_counter() - splitting
        assembler = AnswerAssembler(
            packed.sources,
            SupportChecker(passages, question),
            self.grounding,
            (lambda: extract_answer(question, passages)) if self.answer_mode == "auto" else None,
        )
        response = Response("", packed.sources, self._metadata(packed, metadata, assembler))

        def tokens() -> Iterator[str]:
            started = time.perf_counter()
            grounding_s = split_s  # the share of the answer's time spent on checking it
            raw: list[str] = []
            pieces: Iterable[str] = (
                self.llm.stream_chat(packed.messages, max_tokens=self.answer_tokens)
                if streaming
                else [self.llm.chat(packed.messages, max_tokens=self.answer_tokens)]
            )
            for piece in pieces:
                raw.append(piece)
                checking = time.perf_counter()
                text = assembler.feed(piece)
                grounding_s += time.perf_counter() - checking
                if text:
                    response.response += text
                    yield text
            spent = self._budget_spent("".join(raw), len(raw) if streaming else 0)
            checking = time.perf_counter()
            rest = assembler.finish(spent)
            grounding_s += time.perf_counter() - checking
            if rest:
                response.response += rest
                yield rest
            response.response = response.response.strip()
            response.citations = assembler.citations
            response.sentences = assembler.sentences if self.grounding != "off" else []
            response.metadata.update(
                generate_s=time.perf_counter() - started,
                grounding_s=grounding_s,
                answer_mode="extract" if assembler.fell_back else "generate",
                # auto: the extractive answer followed a generated one grounding had cut
                extract_added=assembler.supplemented,
                unsupported_dropped=assembler.unsupported_dropped,
                repeats_dropped=assembler.repeats_dropped,
                truncated=assembler.truncated,
                markup_removed=assembler.markup.removed,
            )

        return tokens(), response

    def _budget_spent(self, answer: str, pieces: int) -> bool:
        """Whether the model stopped because it reached ``answer_tokens``."""
        if pieces >= self.answer_tokens:
            return True
        return self.llm.count_tokens(answer) >= self.answer_tokens - BUDGET_SLACK

    def _metadata(
        self, packed: PackedPrompt, metadata: dict[str, Any], assembler: AnswerAssembler
    ) -> dict[str, Any]:
        # The same list object: a stream fills it in as markers arrive.
        metadata["dropped_citations"] = assembler.dropped_citations
        metadata["grounding"] = self.grounding
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
