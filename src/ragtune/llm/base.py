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


class DelegatingLLM:
    """Another LLM, as it is: a wrapper subclasses this and overrides only what it changes
    (a stop between tokens, a record of the messages sent, a pace)."""

    def __init__(self, model: LLM) -> None:
        self.model = model

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def context_window(self) -> int:
        return self.model.context_window

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> str:
        return self.model.chat(messages, max_tokens)

    def stream_chat(self, messages: list[ChatMessage], max_tokens: int = 256) -> Iterator[str]:
        return self.model.stream_chat(messages, max_tokens)
