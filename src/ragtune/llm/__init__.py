"""Language-model backends behind one small interface."""

from ragtune.llm.base import LLM, ChatMessage
from ragtune.llm.factory import load_llm

__all__ = ["LLM", "ChatMessage", "load_llm"]
