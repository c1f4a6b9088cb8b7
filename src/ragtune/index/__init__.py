"""Chunk, embed, store and retrieve."""

from ragtune.index.ranking import VectorIndexRetriever
from ragtune.index.vector_index import VectorStoreIndex

__all__ = ["VectorIndexRetriever", "VectorStoreIndex"]
