"""The interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypedDict, runtime_checkable


class ChatMessage(TypedDict):
    role: str
    content: str


@runtime_checkable
class LLM(Protocol):
    """A chat model: counts its own tokens, answers, and streams."""

    @property
    def name(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str: ...

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]: ...
