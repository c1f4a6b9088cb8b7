"""Chunk, embed, store and retrieve."""

from ragtune.index.vector_index import VectorIndexRetriever, VectorStoreIndex

__all__ = ["VectorIndexRetriever", "VectorStoreIndex"]
