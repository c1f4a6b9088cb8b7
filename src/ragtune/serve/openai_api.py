"""The OpenAI-compatible routes and the server's own probes.

``/v1/chat/completions`` (``answers.py``), ``/v1/embeddings`` (the index's own
embedder), ``/v1/models`` (one model per served index), ``/v1/retrieve`` (ranked
passages, no LLM), ``/health`` and ``/metrics``. Keys, rate limits and body limits
were checked before any of these run (``guards.py``).
"""

from __future__ import annotations

import base64
import time
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ragtune.serve import answers
from ragtune.serve.errors import ApiError, one_line
from ragtune.serve.metrics import exposition
from ragtune.serve.schemas import (
    MAX_EMBEDDING_INPUTS,
    ChatCompletionRequest,
    EmbeddingRequest,
    RetrieveRequest,
)
from ragtune.serve.slots import AnswerSlots
from ragtune.serve.state import ServedIndex, ServerState

router = APIRouter()
STARTED = int(time.time())


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.ragtune
    return state


def answer_slots(request: Request) -> AnswerSlots:
    slots: AnswerSlots = request.app.state.slots
    return slots


def _counts(served: ServedIndex) -> dict[str, Any]:
    """Documents and chunks of the index as last committed (blocking)."""
    if not served.exists():
        return {"documents": 0, "chunks": 0, "ready": False}
    try:
        store = served.current().store
        return {"documents": store.count_documents(), "chunks": store.count(), "ready": True}
    except Exception:  # an index that cannot be opened is not ready; /health must answer
        return {"documents": 0, "chunks": 0, "ready": False}


@router.get("/health", tags=["server"])
async def health(request: Request) -> dict[str, Any]:
    """Whether the server answers, and each index's size. Needs no key."""
    state = server_state(request)
    indexes = {}
    for name, served in state.indexes.items():
        indexes[name] = await to_thread.run_sync(_counts, served)
    return {"status": "ok", "indexes": indexes}


@router.get("/metrics", tags=["server"])
async def metrics() -> Response:
    """Prometheus text: requests, latencies, tokens, queue depth, answers in flight, jobs."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/v1/models", tags=["openai"])
async def list_models(request: Request) -> dict[str, Any]:
    """One model per served index: its ``id`` is what ``model`` selects."""
    state = server_state(request)
    data = []
    for name, served in state.indexes.items():
        counts = await to_thread.run_sync(_counts, served)
        data.append(
            {
                "id": name,
                "object": "model",
                "created": STARTED,
                "owned_by": "ragtune",
                "ragtune": {
                    "llm": one_line(served.llm_name, 120),
                    "documents": counts["documents"],
                    "chunks": counts["chunks"],
                },
            }
        )
    return {"object": "list", "data": data}


@router.post("/v1/chat/completions", tags=["openai"], response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> dict[str, Any] | Response:
    """Answer the last user message from the index ``model`` names, citing sources.

    The answer carries ``[n]`` markers; the extension fields ``sources``,
    ``citations``, ``grounding``, ``not_in_sources``, ``reason`` and
    ``retrieval_query`` say what they point to and how each sentence is supported.
    """
    state = server_state(request)
    served = state.index(body.model)
    # The question is checked before a slot is taken: a bad request never waits.
    conversation = answers.read_conversation(body.messages, state.config)
    slot = await answer_slots(request).acquire()
    if body.stream:
        return await answers.stream(body, conversation, served, state.config, slot)
    return await answers.complete(body, conversation, served, state.config, slot)


@router.post("/v1/embeddings", tags=["openai"])
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    """Vectors from the index's own embedder (``model`` names the index)."""
    state = server_state(request)
    served = state.index(body.model)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise ApiError(400, "input is empty", param="input")
    if len(texts) > MAX_EMBEDDING_INPUTS:
        raise ApiError(
            400, f"{len(texts)} inputs; the limit is {MAX_EMBEDDING_INPUTS}", param="input"
        )
    slot = await answer_slots(request).acquire()
    try:
        vectors, tokens = await to_thread.run_sync(_embed, served, texts)
    finally:
        slot.release()
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
        for i, vector in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": served.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _embed(served: ServedIndex, texts: list[str]) -> tuple[list[np.ndarray], int]:
    embedder = served.current().embedder
    vectors = [np.asarray(v, dtype=np.float32) for v in embedder.embed(texts)]
    return vectors, sum(embedder.count_tokens(text) for text in texts)


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai package asks for: little-endian float32
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


@router.post("/v1/retrieve", tags=["ragtune"])
async def retrieve(body: RetrieveRequest, request: Request) -> dict[str, Any]:
    """Ranked passages for ``query`` from one index, without any LLM."""
    state = server_state(request)
    served = state.index(body.index or body.model)
    query = answers.clean_question(body.query, state.config.max_question_chars)
    slot = await answer_slots(request).acquire()
    try:
        nodes = await to_thread.run_sync(_retrieve, served, query, body)
    finally:
        slot.release()
    return {"object": "list", "data": nodes}


def _retrieve(served: ServedIndex, query: str, body: RetrieveRequest) -> list[dict[str, Any]]:
    retriever = served.current().as_retriever(
        similarity_top_k=body.top_k, mode=body.mode, filters=body.filters
    )
    return [
        {
            "id": node.node_id,
            "document_id": node.node.ref_doc_id or None,
            "url": node.metadata.get("url"),
            "title": node.metadata.get("title"),
            "score": float(node.score),
            "text": node.text,
            "metadata": _public_metadata(node.metadata),
        }
        for node in retriever.retrieve(query)
    ]


def _public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata fit for a client: JSON values only, no local file paths."""
    public: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in ("path", "file_path", "outlinks"):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        public[key] = value
    return public
