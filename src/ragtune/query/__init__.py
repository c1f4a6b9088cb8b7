"""Answer questions from retrieved sources."""

from ragtune.query.engine import RetrieverQueryEngine

__all__ = ["RetrieverQueryEngine"]
