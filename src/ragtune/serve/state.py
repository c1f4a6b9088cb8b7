"""The served indexes: what a question reads, and the one writer per index.

A question reads the index as it was last committed: ``ServedIndex.current()``
returns the opened ``VectorStoreIndex`` and keeps returning it while an ingest
writes, so answers never see half an ingest. The writer (``writer`` lock, plus the
index's own on-disk write lock that other processes respect) calls ``reload()``
after its commit; requests already running keep the snapshot they started with.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ragtune.serve.config import IndexSpec, ServeConfig
from ragtune.serve.errors import ApiError

if TYPE_CHECKING:
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.llm.base import LLM


class ServedIndex:
    """One ``--index NAME=DIR`` and the LLM that answers over it."""

    def __init__(self, spec: IndexSpec, llm: LLM | None = None) -> None:
        self.spec = spec
        self.llm = llm
        # Serializes this server's ingests, syncs and deletes of this index.
        self.writer = threading.Lock()
        self._swap = threading.Lock()
        self._index: VectorStoreIndex | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def current(self) -> VectorStoreIndex:
        """The index as last committed (opened on first use)."""
        with self._swap:
            if self._index is None:
                self._index = self._open()
            return self._index

    def reload(self) -> VectorStoreIndex:
        """Open the index again, after a writer committed; later requests read this one."""
        fresh = self._open()
        with self._swap:
            self._index = fresh
        # The old one is not closed here: requests that started on it may still be
        # reading it; it is released when the last of them lets go of it.
        return fresh

    def exists(self) -> bool:
        from ragtune.index.manifest import MANIFEST

        return (self.spec.directory / MANIFEST).is_file()

    def _open(self) -> VectorStoreIndex:
        from ragtune import VectorStoreIndex  # with the query engine registered

        return VectorStoreIndex.load(self.spec.directory)


class ServerState:
    """Every served index by name; the first is the default."""

    def __init__(self, config: ServeConfig, indexes: dict[str, ServedIndex]) -> None:
        self.config = config
        self.indexes = indexes

    def index(self, name: str | None = None) -> ServedIndex:
        """The index a request names (a ``model`` or ``index`` field); None: the first."""
        if not name:
            return next(iter(self.indexes.values()))
        served = self.indexes.get(name)
        if served is None:
            known = ", ".join(self.indexes)
            raise ApiError(
                404,
                f"the model {name[:80]!r} does not exist; served: {known}",
                code="model_not_found",
                param="model",
            )
        return served
