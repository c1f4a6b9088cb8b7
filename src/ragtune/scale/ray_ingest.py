"""Ingest on a Ray cluster (``ragtune ingest ... --engine ray``, extra ``ragtune[ray]``).

What runs where:

- **Fetching and crawling** stay in the driver, in the one polite crawler
  (``ragtune.web``): per-host limits, robots.txt and delays then hold
  cluster-wide because one process keeps them, and a crawl finds the same pages
  in the same order as a local ingest. Fetching is network-bound and capped per
  host, so spreading it would gain little; the CPU work it leads to is below.
- **Crawled pages** are extracted by Ray tasks, one page each, while the driver
  crawls on (a bounded number in flight, so a fast crawl cannot fill the object
  store); JavaScript rendering, when a page needs it, stays with the crawler.
- **Files** are read and extracted by Ray tasks, a few files each (the workers
  must see the same paths: one machine, or a shared filesystem).
- **Chunking** runs in Ray Data tasks with the index's own chunker settings;
  **embedding** in an actor pool, one model load per actor, on GPUs (one each)
  when the cluster has them and the embedder runs on PyTorch, with a larger batch
  there. Texts go to the actors once each, minus those the store already holds
  vectors for, exactly as in a local ingest.
- **Writing** is the driver's, through the index API
  (``VectorStoreIndex.from_documents``/``insert_documents``): the same chunk ids
  (``DOC_ID:N``), commit groups, content-hash skipping, calibration. The vectors
  reach it as a stream (``ragtune.scale.streamed``), in document order, so the
  first groups are committed while the cluster embeds the rest.

Faults: Ray retries the tasks of a lost worker and restarts its actors elsewhere,
and every write replaces a document's chunks by its id, so each chunk is in the
index exactly once however often it was computed. A killed driver leaves the
groups it committed; the rerun skips them (their text is unchanged). A store that
cannot be reached is retried (``STORE_RETRY_DELAYS``), then the ingest stops with
one line; the index keeps its committed groups and a rerun completes it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ragtune.documents import Document, content_hash
from ragtune.errors import RagtuneError, StoreConnectionError, first_line
from ragtune.index.chunking import ChunkingConfig, MarkdownChunker
from ragtune.index.embedding import TextEmbedder, is_remote_spec, make_embedder
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.scale.ray_fetch import RayVisits
from ragtune.scale.steps import FileRead, ProgressHook, WriteTarget, read_file, write_documents
from ragtune.scale.streamed import StreamedEmbedder, VectorBatch
from ragtune.web.crawl import CrawlEvent, CrawlOptions
from ragtune.web.extraction_pool import Outcome, convert, outcome
from ragtune.web.visits import FetchSettings, VisitPool

log = logging.getLogger(__name__)

# Seconds between attempts to write to a store that cannot be reached (about 30 s in all).
STORE_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0)
FILES_PER_TASK = 8
# Fetched pages waiting for extraction, per cluster CPU: enough to keep every worker
# busy, few enough that pages (up to 20 MB each) never pile up in the object store.
PAGES_IN_FLIGHT_PER_CPU = 8
DOCUMENTS_PER_CHUNK_TASK = 64
# Texts per actor call: one text per ONNX run either way (see index/embedding/local.py);
# on a GPU a PyTorch batch this size fills the device far better than 32.
CPU_EMBED_BATCH = 32
GPU_EMBED_BATCH = 256
# A Ray started for one ingest keeps texts and vectors in flight only: a small
# object store, no dashboard, and no memory monitor killing workers because
# other programs on a shared machine use memory.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
RAY_EXTRA = "--engine ray needs the ray extra: pip install 'ragtune[ray]'"
JOIN_AFTER_LOCAL = (
    "cannot join the Ray cluster at {address}: this process already ran a Ray of its own, "
    "and Ray cannot join another cluster from it; run the ingest in a new process"
)
# Set once this process has started a Ray of its own: Ray 2.60 then joins another
# cluster without complaint, but every task there fails (OwnerDiedError).
_local_ray_started = False


class RayEngine:
    """Extraction, chunking and embedding on Ray; the driver writes."""

    def __init__(self, ray: Any, started_here: bool) -> None:
        self.ray = ray
        self.started_here = started_here

    @classmethod
    def connect(cls, address: str | None) -> RayEngine:
        """Join the cluster at ``address`` (host:port, ray://host:port or auto; else
        ``$RAY_ADDRESS``, as Ray's own tools read it), or start Ray on this machine for
        the run; an application's own Ray session is used as it is."""
        try:
            import ray
            import ray.data
        except ImportError:
            raise RagtuneError(RAY_EXTRA) from None
        address = address or os.environ.get("RAY_ADDRESS", "").strip() or None
        started_here = not ray.is_initialized()
        if started_here:
            _start_or_join(ray, address)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        # Document order in, document order out: the writer commits groups as they complete.
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # ragtune's own progress display reports
        return cls(ray, started_here)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()

    def resources(self) -> tuple[int, int]:
        """The cluster's CPUs and GPUs."""
        total = self.ray.cluster_resources()
        return int(total.get("CPU", 0)), int(total.get("GPU", 0))

    # --- Files -----------------------------------------------------------------------

    def extract_files(self, files: Sequence[Path]) -> Iterator[FileRead]:
        if not files:
            return
        task = self.ray.remote(num_cpus=1, max_retries=3)(_read_files)
        groups = [list(files[i : i + FILES_PER_TASK]) for i in range(0, len(files), FILES_PER_TASK)]
        pending = [task.remote(group) for group in groups]
        for reference in pending:
            yield from self._get(reference)

    # --- Crawled pages ---------------------------------------------------------------

    def visit_pool(self, settings: FetchSettings, options: CrawlOptions) -> VisitPool:
        """Fetch shards, one a cluster CPU at most, each owning the hosts it fetches."""
        return RayVisits(self.ray, settings, options, shards=max(1, self.resources()[0]))

    def extract_pages(self, events: Iterator[CrawlEvent]) -> Iterator[tuple[CrawlEvent, Outcome]]:
        """Each fetched page extracted by a Ray task while the crawl goes on; the other
        events (skipped, failed, unchanged) pass straight through."""
        task = self.ray.remote(num_cpus=1, max_retries=3)(convert)
        most = max(1, self.resources()[0]) * PAGES_IN_FLIGHT_PER_CPU
        pending: dict[Any, CrawlEvent] = {}
        for event in events:
            if event.status != "fetched" or event.page is None:
                yield event, []
                continue
            pending[task.remote(event.page)] = event
            yield from self._extracted(pending, block=len(pending) >= most)
        while pending:
            yield from self._extracted(pending, block=True)

    def _extracted(
        self, pending: dict[Any, CrawlEvent], block: bool
    ) -> Iterator[tuple[CrawlEvent, Outcome]]:
        """The pages whose extraction has finished; with ``block``, at least one."""
        ready, _ = self.ray.wait(
            list(pending), num_returns=1 if block else len(pending), timeout=None if block else 0
        )
        for reference in ready:
            yield pending.pop(reference), outcome(self._get(reference))

    # --- Chunks and vectors ------------------------------------------------------------

    def write(
        self,
        index: VectorStoreIndex | None,
        documents: Sequence[Document],
        target: WriteTarget,
        progress: ProgressHook | None = None,
    ) -> VectorStoreIndex:
        inner = index.embedder if index is not None else make_embedder(target.embedder)
        chunking = index.chunker.config if index is not None else new_index_chunking(inner)
        changed = _changed_documents(index, documents)
        texts = self._chunk_texts(changed, inner, chunking)
        cached = index.store.cached_vectors({_embed_hash(t) for t in texts}) if index else {}
        fresh = [t for t in dict.fromkeys(texts) if _embed_hash(t) not in cached]
        done = len(texts) - len(fresh)

        def arrived(count: int) -> None:
            nonlocal done
            done += count
            if progress:
                progress(done, len(texts))

        batches = self.embed_stream(fresh, inner)
        streamed = StreamedEmbedder(inner, batches, arrived)
        try:
            written = self._write_retrying(index, documents, target, streamed)
            streamed.drain()
        finally:
            batches.close()  # a failed write stops the cluster's job
        written.embedder = inner
        return written

    def _write_retrying(
        self,
        index: VectorStoreIndex | None,
        documents: Sequence[Document],
        target: WriteTarget,
        embedder: StreamedEmbedder,
    ) -> VectorStoreIndex:
        """The write, tried again while the store cannot be reached: each attempt skips
        the documents an earlier one committed, and no text is embedded twice."""
        for attempt, delay in enumerate((*STORE_RETRY_DELAYS, None), start=1):
            if index is not None:
                index.embedder = embedder
            try:
                return write_documents(index, documents, target, embedder, progress=None)
            except StoreConnectionError as error:
                if delay is None:
                    raise StoreConnectionError(
                        f"{error} (still unreachable after {attempt} attempts over "
                        f"{sum(STORE_RETRY_DELAYS):.0f} s; the index keeps the batches "
                        "committed before, and a rerun completes it)"
                    ) from None
                log.warning("store unreachable (%s); retrying in %.0f s", error, delay)
                time.sleep(delay)
            finally:
                if index is not None:
                    index.embedder = embedder.inner
        raise AssertionError("unreachable")  # the loop returns or raises

    def _chunk_texts(
        self, documents: list[Document], embedder: TextEmbedder, chunking: ChunkingConfig
    ) -> list[str]:
        """The texts the index will embed for ``documents`` (each chunk's ``embed_text``),
        in document order, chunked by Ray tasks."""
        if not documents:
            return []
        rows = [{"title": _title(doc), "text": doc.text} for doc in documents]
        chunked = self.ray.data.from_items(rows).map_batches(
            _chunk_batch,
            fn_kwargs={"model": _model_of(embedder), "chunking": chunking},
            batch_size=DOCUMENTS_PER_CHUNK_TASK,
            batch_format="numpy",
            num_cpus=1,
        )
        with self._job_errors():
            return [
                str(text)
                for batch in chunked.iter_batches(batch_size=None, batch_format="numpy")
                for text in batch["embed_text"].tolist()
            ]

    def embed_stream(
        self, texts: list[str], embedder: TextEmbedder
    ) -> Generator[VectorBatch, None, None]:
        """Vectors for ``texts``, in their order, from a pool of embedding actors."""
        if not texts:
            return
        cpus, gpus = self.resources()
        on_gpu = gpus > 0 and embedder.backend == "torch"
        actors = gpus if on_gpu else max(1, cpus)
        batch = GPU_EMBED_BATCH if on_gpu else CPU_EMBED_BATCH
        actors = max(1, min(actors, -(-len(texts) // batch)))
        embedded = self.ray.data.from_items([{"text": text} for text in texts]).map_batches(
            EmbeddingActor,
            fn_constructor_kwargs={"model": _model_of(embedder), "batch_size": batch},
            batch_size=batch,
            batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if on_gpu else 0,
            num_cpus=0 if on_gpu else 1,
        )
        with self._job_errors():
            for result in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                vectors = np.asarray(result["vector"], dtype=np.float32)
                yield [str(text) for text in result["text"].tolist()], vectors

    def _get(self, reference: Any) -> Any:
        with self._job_errors():
            return self.ray.get(reference)

    @contextmanager
    def _job_errors(self) -> Iterator[None]:
        """A failure inside the cluster as one line (a worker's traceback stays in
        Ray's logs); a ragtune error raised on a worker as itself."""
        try:
            yield
        except self.ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, RagtuneError):
                raise cause from None
            raise RagtuneError(f"the Ray job failed: {first_line(error)}") from None


def _start_or_join(ray: Any, address: str | None) -> None:
    with warnings.catch_warnings():
        # Ray forks and at once executes its node processes; LanceDB (loaded by then)
        # warns about forks it cannot tell from ones that go on running Python.
        warnings.filterwarnings("ignore", "lancedb fork support", RuntimeWarning)
        _init(ray, address)


def _init(ray: Any, address: str | None) -> None:
    global _local_ray_started
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        if _local_ray_started:
            raise RagtuneError(JOIN_AFTER_LOCAL.format(address=address))
        check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except Exception as error:  # Ray raises ConnectionError, ValueError, RuntimeError...
            reason = first_line(error)
            raise RagtuneError(f"cannot join the Ray cluster at {address}: {reason}") from None
        return
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    try:
        ray.init(
            # "local": a Ray of our own even where another runs on this machine (without
            # it ray.init joins that one, and refuses num_cpus there).
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            **quiet,
        )
    except Exception as error:
        raise RagtuneError(f"cannot start Ray on this machine: {first_line(error)}") from None
    _local_ray_started = True


def check_reachable(address: str) -> None:
    """Fail in seconds on an address nothing listens at: ``ray.init`` retries for minutes."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise RagtuneError(
            f"bad --ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto"
        )
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RagtuneError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def new_index_chunking(embedder: TextEmbedder) -> ChunkingConfig:
    """The chunking a new index gets (``VectorStoreIndex._create``): the default size,
    capped so a chunk fits the model's window with [CLS] and [SEP]."""
    size = min(ChunkingConfig.chunk_size, embedder.max_tokens - 2)
    return ChunkingConfig(size, ChunkingConfig.chunk_overlap)


def _changed_documents(
    index: VectorStoreIndex | None, documents: Sequence[Document]
) -> list[Document]:
    """The documents the write will chunk and embed: the last copy of each id, minus
    those whose indexed text is the same (as ``insert_documents`` decides)."""
    unique = {doc.id_: doc for doc in documents}
    if index is None:
        return list(unique.values())
    indexed = index.store.content_hashes(list(unique))
    return [doc for doc_id, doc in unique.items() if indexed.get(doc_id) != content_hash(doc.text)]


def _embed_hash(text: str) -> str:
    # StoredChunk.embed_hash: the key of the store's embedding cache.
    return content_hash(text)[:32]


def _title(document: Document) -> str:
    return str(document.metadata.get("title") or "")


# --- On the workers ---------------------------------------------------------------------

# What a worker needs to rebuild the driver's embedder: spec, backend, dimensions.
Model = tuple[str, str, int]


def _model_of(embedder: TextEmbedder) -> Model:
    return embedder.spec, embedder.backend, embedder.dimensions


@lru_cache(maxsize=4)
def _worker_embedder(model: Model) -> TextEmbedder:
    """The driver's embedder, made again here. A model path this machine lacks means the
    bundled model (as an index loaded from a moved environment does), if it matches."""
    spec, backend, dimensions = model
    local = is_remote_spec(spec) or Path(spec).exists()
    embedder = make_embedder(spec if local else None, None if is_remote_spec(spec) else backend)
    if embedder.dimensions != dimensions:
        raise RagtuneError(
            f"this Ray worker has no {spec}: its {embedder.spec} makes {embedder.dimensions} "
            f"dimensions, not {dimensions}"
        )
    return embedder


def _read_files(files: list[Path]) -> list[FileRead]:
    return [read_file(file) for file in files]


def _chunk_batch(
    batch: dict[str, np.ndarray], model: Model, chunking: ChunkingConfig
) -> dict[str, np.ndarray]:
    chunker = MarkdownChunker(_worker_embedder(model).count_tokens, chunking)
    texts = [
        chunk.embed_text
        for title, text in zip(batch["title"].tolist(), batch["text"].tolist(), strict=True)
        for chunk in chunker.chunk(str(text), title=str(title))
    ]
    return {"embed_text": np.array(texts, dtype=object)}


class EmbeddingActor:
    """One model load per actor; called with batches of texts."""

    def __init__(self, model: Model, batch_size: int) -> None:
        self.embedder = _worker_embedder(model)
        self.embedder.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(text) for text in batch["text"].tolist()]
        return {"text": batch["text"], "vector": self.embedder.embed(texts)}
