"""The interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypedDict, runtime_checkable

from ragtune.errors import ModelNotFoundError


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


def load_llm(spec: LLM | str | None = None) -> LLM:
    """An LLM from a spec: None for the bundled default, or a path to a GGUF file."""
    if spec is not None and not isinstance(spec, str):
        return spec
    from ragtune.llm.llamacpp import LlamaCppLLM

    if spec is None:
        return LlamaCppLLM()
    path = Path(spec.removeprefix("gguf:"))
    if path.suffix.lower() != ".gguf":
        raise ModelNotFoundError(f"{spec}: expected a .gguf model file")
    return LlamaCppLLM(path)
