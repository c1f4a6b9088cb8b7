"""The request bodies of the OpenAI-compatible routes, as OpenAI reads them.

Unknown fields are ignored (``extra="ignore"``), as OpenAI does, so a client sending
``temperature``, ``user`` or ``seed`` works; a field of the wrong type is refused
(strict types: ``"stream": "yes"`` or ``"max_tokens": "10"`` are a 400, not coerced).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from ragtune.serve.config import AnswerMode, RetrievalMode

MAX_TOP_K = 50
# OpenAI's own cap on embedding inputs in one request.
MAX_EMBEDDING_INPUTS = 2048


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # A string, or OpenAI's list of content parts (only text parts are read).
    content: StrictStr | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(_Lenient):
    include_usage: StrictBool = False


class RagtuneOptions(_Lenient):
    """ragtune's own options of a chat request (the ``ragtune`` extension field)."""

    top_k: StrictInt | None = Field(None, ge=1, le=MAX_TOP_K)
    mode: RetrievalMode | None = None
    filters: dict[StrictStr, Any] | list[StrictStr] | None = None
    answer_mode: AnswerMode | None = None


class ChatCompletionRequest(_Lenient):
    model: StrictStr | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    n: StrictInt = Field(1, ge=1, le=1)
    ragtune: RagtuneOptions | None = None


class EmbeddingRequest(_Lenient):
    model: StrictStr | None = None
    input: StrictStr | list[StrictStr]
    encoding_format: Literal["float", "base64"] = "float"


class RetrieveRequest(_Lenient):
    query: StrictStr
    index: StrictStr | None = None
    model: StrictStr | None = None  # an alias of index
    top_k: StrictInt = Field(5, ge=1, le=MAX_TOP_K)
    mode: RetrievalMode = "hybrid"
    filters: dict[StrictStr, Any] | list[StrictStr] | None = None
