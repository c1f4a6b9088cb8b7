"""``POST /v1/chat/completions``: a question answered from an index, as OpenAI shapes it.

The question is the last user message; earlier user/assistant pairs are the
conversation, replayed into a ``ChatSession`` so that a follow-up ("How much does
it cost?") is retrieved with the subject of the turn before, by the rule ``ragtune
chat`` uses (``ragtune.query.chat``). The engine is the CLI's
(``index.as_query_engine``): the same retrieval, abstention, prompt and fencing
(``ragtune.query.prompt``: sources quoted between tags, instructions in them
ignored), the same grounding.

**System messages from the client are ignored.** The RAG instructions are the
engine's system prompt and a client cannot replace or extend them: a system
message saying "ignore the sources" would otherwise undo the fencing. They are not
put into the history either (they are not turns of the conversation).

The engine is blocking: it runs in worker threads (one per answer, bounded by the
slots), and a stream's tokens are pulled from its iterator one thread hop at a
time, so the event loop never waits on the model.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio import to_thread
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ragtune.errors import RagtuneError
from ragtune.llm.base import DelegatingLLM
from ragtune.serve.config import AnswerMode, RetrievalMode
from ragtune.serve.errors import ApiError, one_line
from ragtune.serve.metrics import FIRST_TOKEN, GENERATED_TOKENS, PROMPT_TOKENS
from ragtune.serve.schemas import ChatCompletionRequest
from ragtune.serve.schemas import ChatMessage as RequestMessage
from ragtune.serve.slots import Slot

if TYPE_CHECKING:
    from ragtune.documents import NodeWithScore, Response
    from ragtune.index.vector_index import QueryEngine
    from ragtune.llm.base import LLM, ChatMessage
    from ragtune.serve.config import ServeConfig
    from ragtune.serve.state import ServedIndex

# Earlier turns replayed to rebuild the conversation's topic: a topic older than
# this would be carried only by a chain of that many follow-ups.
REPLAY_TURNS = 8
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_END = object()


@dataclass
class Conversation:
    """The question and the (question, answer) turns before it, oldest first."""

    question: str
    turns: list[tuple[str, str]] = field(default_factory=list)


def read_conversation(messages: list[RequestMessage], config: ServeConfig) -> Conversation:
    """The question (the last message, a user's) and the turns before it; 400 otherwise."""
    if len(messages) > config.max_messages:
        raise ApiError(
            400,
            f"{len(messages)} messages; the limit is {config.max_messages}",
            param="messages",
            code="too_many_messages",
        )
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user" or messages[-1].role != "user":
        raise ApiError(400, "the last message must be the user's question", param="messages")
    question = clean_question(talk[-1].text(), config.max_question_chars)
    turns: list[tuple[str, str]] = []
    pending: str | None = None
    for message in talk[:-1]:
        text = _CONTROL.sub("", message.text()).strip()
        if message.role == "user":
            pending = text[: config.max_question_chars] or None
        elif pending is not None:
            turns.append((pending, text))
            pending = None
    return Conversation(question, turns[-REPLAY_TURNS:])


def clean_question(text: str, limit: int) -> str:
    """``text`` without control characters; 400 when empty or over ``limit`` characters."""
    question = " ".join(_CONTROL.sub(" ", text).split())
    if not question:
        raise ApiError(400, "the question is empty", param="messages")
    if len(question) > limit:
        raise ApiError(
            400,
            f"the question is {len(question)} characters; the limit is {limit}",
            param="messages",
            code="question_too_long",
        )
    return question


@dataclass
class AnswerPlan:
    """What one request asks for, resolved against the server's defaults."""

    top_k: int
    mode: RetrievalMode
    filters: Any
    answer_mode: AnswerMode
    answer_tokens: int

    @classmethod
    def of(
        cls, request: ChatCompletionRequest, served: ServedIndex, config: ServeConfig
    ) -> AnswerPlan:
        options = request.ragtune
        # The bundled model extracts by default, a named one generates (query/engine.py).
        default_mode: AnswerMode = config.answer_mode or (
            "extract" if served.spec.llm is None else "auto"
        )
        asked = request.max_completion_tokens or request.max_tokens
        return cls(
            top_k=(options.top_k if options and options.top_k else config.top_k),
            mode=(options.mode if options and options.mode else config.mode),
            filters=options.filters if options else None,
            answer_mode=(options.answer_mode if options and options.answer_mode else default_mode),
            # A client may ask for fewer tokens than the operator allows, never more.
            answer_tokens=min(asked or config.answer_tokens, config.answer_tokens),
        )


class StoppableLLM(DelegatingLLM):
    """The index's model, for one answer, that stops at the next token once ``stop`` is
    set: a client gone mid-answer frees its llama.cpp slot within a token, not at the
    end of an answer nobody reads."""

    def __init__(self, model: LLM, stop: threading.Event) -> None:
        super().__init__(model)
        self.stop = stop

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        pieces = self.model.stream_chat(messages, max_tokens)
        try:
            for piece in pieces:
                if self.stop.is_set():
                    return
                yield piece
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()  # llama.cpp: the next chunk's callback tells it to stop


class Answering:
    """One answer in progress: the engine's token iterator and the Response it fills.

    ``next_piece`` runs in a worker thread that a cancelled request does not wait
    for; ``close`` sets ``stopped`` (the model stops at its next token), then waits
    for that read to end before closing the iterator, which only one thread may touch.
    """

    def __init__(self, served: ServedIndex, config: ServeConfig, plan: AnswerPlan) -> None:
        self.served = served
        self.config = config
        self.plan = plan
        self.llm: LLM | None = None
        self.tokens: Iterator[str] = iter(())
        self.response: Response | None = None
        self.stopped = threading.Event()
        self._reading = threading.Lock()

    def start(self, conversation: Conversation) -> None:
        """Retrieve, rewrite, pack the prompt (blocking: run in a worker thread)."""
        from ragtune.query.chat import ChatSession

        self.llm = self.served.llm
        engine = self.served.current().as_query_engine(
            similarity_top_k=self.plan.top_k,
            llm=StoppableLLM(self.llm, self.stopped),
            mode=self.plan.mode,
            filters=self.plan.filters,
            answer_mode=self.plan.answer_mode,
            answer_tokens=self.plan.answer_tokens,
            grounding=self.config.grounding,
        )
        session = ChatSession(engine, max_history_turns=self.config.history_turns)
        for question, answer in conversation.turns:
            session.remember(question, answer, lambda query: _passages(engine, query))
        self.tokens, self.response = session.stream(conversation.question)

    def next_piece(self) -> object:
        """The next piece of the answer, or ``_END`` (blocking)."""
        with self._reading:
            if self.stopped.is_set():
                return _END
            return next(self.tokens, _END)

    def finish_all(self) -> None:
        """Read the answer to its end (blocking)."""
        with self._reading:
            for _ in self.tokens:
                pass

    def close(self) -> None:
        """Stop generating (a client that went away): frees the model's slot (blocking)."""
        self.stopped.set()
        with self._reading:
            close = getattr(self.tokens, "close", None)
            if callable(close):
                close()


def _passages(engine: QueryEngine, query: str) -> list[NodeWithScore]:
    retriever = getattr(engine, "retriever", None)
    if retriever is None:
        return []
    try:
        return list(retriever.retrieve(query))
    except RagtuneError:  # an earlier turn that cannot be searched has no topic source
        return []


async def start_answer(
    request: ChatCompletionRequest,
    conversation: Conversation,
    served: ServedIndex,
    config: ServeConfig,
) -> Answering:
    answering = Answering(served, config, AnswerPlan.of(request, served, config))
    await to_thread.run_sync(answering.start, conversation)
    return answering


# --- the OpenAI shapes -----------------------------------------------------------------


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def source_list(response: Response) -> list[dict[str, Any]]:
    sources = []
    for number, node in enumerate(response.source_nodes, start=1):
        similarity = node.metadata.get("similarity")
        sources.append(
            {
                "number": number,
                "id": node.node_id,
                "document_id": node.node.ref_doc_id or None,
                "url": node.metadata.get("url"),
                "title": node.metadata.get("title"),
                "score": float(node.score),
                "similarity": float(similarity) if similarity is not None else None,
                "text": node.text,
            }
        )
    return sources


def extensions(response: Response) -> dict[str, Any]:
    """ragtune's fields beside OpenAI's: sources, what the answer cites, its grounding."""
    cited: list[int] = []
    for citation in response.citations:
        if citation.number not in cited:
            cited.append(citation.number)
    metadata = response.metadata
    return {
        "sources": source_list(response),
        "citations": cited,
        "grounding": [
            {
                "text": sentence.text,
                "supported": sentence.supported,
                "sources": list(sentence.sources),
                "evidence": [
                    {"number": item.number, "start": item.start, "end": item.end}
                    for item in sentence.evidence
                ],
            }
            for sentence in response.sentences
        ],
        "not_in_sources": bool(metadata.get("not_in_sources")),
        "reason": metadata.get("reason"),
        "retrieval_query": metadata.get("retrieval_query"),
    }


def finish_reason(response: Response) -> str:
    return "length" if response.metadata.get("truncated") else "stop"


def usage(answering: Answering) -> dict[str, int]:
    response = answering.response
    assert response is not None and answering.llm is not None
    prompt = int(response.metadata.get("prompt_tokens") or 0)
    completion = answering.llm.count_tokens(response.response) if response.response else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def record_tokens(answering: Answering, counted: dict[str, int]) -> None:
    response = answering.response
    if response is None or answering.llm is None:
        return
    model = answering.llm.name
    PROMPT_TOKENS.labels(model).inc(counted["prompt_tokens"])
    if "generate_s" in response.metadata:  # the model wrote (extracted answers count none)
        GENERATED_TOKENS.labels(model).inc(counted["completion_tokens"])


async def complete(
    request: ChatCompletionRequest,
    conversation: Conversation,
    served: ServedIndex,
    config: ServeConfig,
    slot: Slot,
) -> dict[str, Any]:
    """A whole ``chat.completion`` (the slot is released here)."""
    try:
        answering = await start_answer(request, conversation, served, config)
        await to_thread.run_sync(answering.finish_all)
    finally:
        slot.release()
    response = answering.response
    assert response is not None and answering.llm is not None
    counted = await to_thread.run_sync(usage, answering)
    record_tokens(answering, counted)
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": served.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.response},
                "finish_reason": finish_reason(response),
            }
        ],
        "usage": counted,
        **extensions(response),
    }


class SlotStreamingResponse(StreamingResponse):
    """A stream that releases its answer slot however it ends, even if it never starts."""

    def __init__(self, content: AsyncIterator[str], slot: Slot, answering: Answering) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.slot = slot
        self.answering = answering

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.answering.stopped.set()  # before waiting: the read in flight ends sooner
            try:
                with anyio.CancelScope(shield=True):
                    # A client gone mid-answer: stop the model before the slot is free.
                    await to_thread.run_sync(self.answering.close)
            finally:
                self.slot.release()


async def stream(
    request: ChatCompletionRequest,
    conversation: Conversation,
    served: ServedIndex,
    config: ServeConfig,
    slot: Slot,
) -> SlotStreamingResponse:
    """SSE ``chat.completion.chunk`` events, then ``data: [DONE]``."""
    arrived = time.perf_counter()
    try:
        answering = await start_answer(request, conversation, served, config)
    except BaseException:
        slot.release()
        raise
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    return SlotStreamingResponse(
        _events(answering, served.name, include_usage, arrived), slot, answering
    )


async def _events(
    answering: Answering, model: str, include_usage: bool, arrived: float
) -> AsyncIterator[str]:
    response = answering.response
    assert response is not None and answering.llm is not None
    identity = completion_id()
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": identity,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, sources=source_list(response))
    first = True
    try:
        # abandon_on_cancel: a client gone mid-answer is not kept waiting for the
        # read in flight; the response's close() stops it (see SlotStreamingResponse).
        while (
            piece := await to_thread.run_sync(answering.next_piece, abandon_on_cancel=True)
        ) is not _END:
            if first:
                FIRST_TOKEN.labels(answering.llm.name).observe(time.perf_counter() - arrived)
                first = False
            yield chunk({"content": piece})
    except RagtuneError as error:  # the model failed mid-answer: say so in the stream
        body = {"error": {"message": one_line(str(error)), "type": "server_error"}}
        yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"
        return
    counted = await to_thread.run_sync(usage, answering)
    record_tokens(answering, counted)
    extra: dict[str, Any] = extensions(response)
    if include_usage:
        extra["usage"] = counted
    yield chunk({}, finish_reason(response), **extra)
    yield "data: [DONE]\n\n"
