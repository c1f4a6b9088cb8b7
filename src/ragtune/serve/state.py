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


class ModelPool:
    """The LLMs that answer, one instance per ``--llm`` spec, shared by every index that
    names it; each loaded with ``parallel`` llama.cpp slots where the backend has them."""

    def __init__(self, parallel: int = 1) -> None:
        self.parallel = parallel
        self._models: dict[str | None, LLM] = {}
        self._lock = threading.Lock()

    def get(self, spec: str | None) -> LLM:
        """The model for ``spec`` (None: the bundled one), loaded on first use."""
        with self._lock:
            model = self._models.get(spec)
            if model is None:
                model = self._load(spec)
                self._models[spec] = model
            return model

    def _load(self, spec: str | None) -> LLM:
        from ragtune.llm import load_llm

        model = load_llm(spec)
        reserve = getattr(model, "reserve_slots", None)
        if callable(reserve):  # llama.cpp: parallel slots, batched together
            reserve(self.parallel)
        load = getattr(model, "load", None)
        if callable(load):  # fail now, not on the first question
            load()
        return model


class ServedIndex:
    """One ``--index NAME=DIR`` and the LLM that answers over it."""

    def __init__(
        self, spec: IndexSpec, llm: LLM | None = None, models: ModelPool | None = None
    ) -> None:
        self.spec = spec
        self._llm = llm
        self._models = models or ModelPool()
        # Serializes this server's ingests, syncs and deletes of this index.
        self.writer = threading.Lock()
        self._swap = threading.Lock()
        self._index: VectorStoreIndex | None = None
        self._opened: tuple[int, int, int] | None = None  # the manifest it was opened at

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def llm(self) -> LLM:
        """The model answering over this index (loaded on first use, shared by spec)."""
        if self._llm is None:
            self._llm = self._models.get(self.spec.llm)
        return self._llm

    @property
    def llm_name(self) -> str:
        """The model's name without loading it."""
        if self._llm is not None:
            return self._llm.name
        if self.spec.llm:
            return self.spec.llm
        from ragtune.assets import DEFAULT_LLM

        return DEFAULT_LLM.relative_path.rsplit(".", 1)[0]

    def current(self) -> VectorStoreIndex:
        """The index as last committed (opened on first use).

        Another process may commit too: a second replica's ingest into the same
        PostgreSQL store, or ``ragtune ingest`` run beside the server. Every commit
        replaces the manifest (atomically, so a new inode), whose calibration and
        vocabulary a question is judged by; when it is no longer the one opened, the
        index is opened again, so replicas agree on what they answer from.
        """
        with self._swap:
            if self._index is not None and self._manifest_signature() == self._opened:
                return self._index
        return self.reload()

    def reload(self) -> VectorStoreIndex:
        """Open the index again, after a writer committed; later requests read this one."""
        with self._swap:
            previous = self._index
        signature = self._manifest_signature()
        fresh = self._open(previous)
        with self._swap:
            self._index = fresh
            self._opened = signature
        # The old one is not closed here: requests that started on it may still be
        # reading it; it is released when the last of them lets go of it.
        return fresh

    def _manifest_signature(self) -> tuple[int, int, int] | None:
        from ragtune.index.manifest import MANIFEST

        try:
            status = (self.spec.directory / MANIFEST).stat()
        except OSError:
            return None
        return (status.st_ino, status.st_mtime_ns, status.st_size)

    def exists(self) -> bool:
        from ragtune.index.manifest import MANIFEST

        return (self.spec.directory / MANIFEST).is_file()

    def _open(self, previous: VectorStoreIndex | None = None) -> VectorStoreIndex:
        from ragtune import VectorStoreIndex  # with the query engine registered

        if previous is not None:
            # The same embedder (an index never changes it): no second model load.
            return VectorStoreIndex.load(self.spec.directory, embed_model=previous.embedder)
        return VectorStoreIndex.load(self.spec.directory)


class ServerState:
    """Every served index by name; the first is the default."""

    def __init__(self, config: ServeConfig, indexes: dict[str, ServedIndex]) -> None:
        self.config = config
        self.indexes = indexes

    @classmethod
    def from_config(cls, config: ServeConfig) -> ServerState:
        """The indexes ``config`` names, their models in one pool (loaded when first
        used, or all at once by ``load_models``)."""
        models = ModelPool(config.parallel)
        return cls(config, {s.name: ServedIndex(s, models=models) for s in config.indexes})

    def load_models(self) -> None:
        """Open every index and load every model now: a missing one fails at startup."""
        for served in self.indexes.values():
            if not served.exists():
                from ragtune.errors import InvalidIndexError

                where = served.spec.directory
                raise InvalidIndexError(f"--index {served.name}: {where} is not a ragtune index")
            served.current()
            _ = served.llm

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
