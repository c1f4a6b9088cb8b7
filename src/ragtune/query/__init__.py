"""Answer questions from retrieved sources."""

from ragtune.query.chat import ChatSession
from ragtune.query.engine import RetrieverQueryEngine

__all__ = ["ChatSession", "RetrieverQueryEngine"]
