"""An embedder whose vectors were computed elsewhere (a Ray actor pool) and arrive as a stream.

The index writes through its one path (``VectorStoreIndex.insert_documents``:
chunk ids, commit groups, the embedding cache, calibration), so a distributed
ingest keeps its atomicity and crash rules by construction. That path asks its
embedder for the vectors of one commit group at a time; this embedder answers
from the vectors already received and waits for the stream only for the ones
still missing, so the first groups are committed while the cluster embeds the
rest. A text the stream never brings (the calibration's probe questions) is
embedded here, by the model the vectors were made with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from tokenizers import Tokenizer

from ragtune.index.embedding import TextEmbedder

# One batch from the stream: the texts and their vectors, row for row.
VectorBatch = tuple[list[str], np.ndarray]


class StreamedEmbedder(TextEmbedder):
    """``inner``'s identity (spec, backend, tokenizer: the manifest records them) with
    vectors taken from ``batches``; ``on_arrival`` hears how many texts each batch brought."""

    def __init__(
        self,
        inner: TextEmbedder,
        batches: Iterator[VectorBatch],
        on_arrival: Callable[[int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.batch_size = inner.batch_size
        self._batches: Iterator[VectorBatch] | None = batches
        self._on_arrival = on_arrival
        # Every vector received is kept: a write retried after a store failure asks again.
        self._vectors: dict[str, np.ndarray] = {}
        self.embedded_here = 0  # texts the stream did not bring

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def spec(self) -> str:
        return self.inner.spec

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @property
    def dimensions(self) -> int:
        return self.inner.dimensions

    @property
    def tokenizer(self) -> Tokenizer:
        return self.inner.tokenizer

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        missing = [text for text in texts if text not in self._vectors]
        while missing and self._batches is not None:
            self._receive()
            missing = [text for text in missing if text not in self._vectors]
        if missing:
            unique = list(dict.fromkeys(missing))
            self._vectors.update(zip(unique, self.inner.embed(unique), strict=True))
            self.embedded_here += len(unique)
        return np.stack([self._vectors[text] for text in texts])

    def _receive(self) -> None:
        assert self._batches is not None
        batch = next(self._batches, None)
        if batch is None:
            self._batches = None
            return
        texts, vectors = batch
        self._vectors.update(zip(texts, vectors, strict=True))
        if self._on_arrival:
            self._on_arrival(len(texts))

    def drain(self) -> None:
        """Receive the rest of the stream (so the cluster's job ends before it is left)."""
        while self._batches is not None:
            self._receive()
