"""Ingest, sync and delete jobs: queued per index, run one at a time, watched as they go.

A job changes one served index. Jobs of one index run in turn, in a worker thread
that holds the index's ``writer`` lock (the index's own on-disk write lock, taken by
``ingest``/``sync`` themselves, keeps other processes out too); jobs of different
indexes run side by side. While a job writes, questions keep reading
``ServedIndex.current()``, the index as last committed; once the job has
committed, the worker reloads the served index so later questions see it. A job
that fails (its sources, its embedder, anything) leaves the index as its last
commit left it, and the next job runs as usual.

A job's record is the contract's job object (``Job.to_dict``): its state, progress
from the ingest hooks, the last ``MAX_EVENTS`` page events, the final report or a
one-line error, never a traceback. Records are kept in memory (the most recent
``KEPT_JOBS``) and written as JSON under ``<data dir>/jobs/`` at every change of
stage, so a finished job can be asked for after it left memory, or after a restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragtune.atomic import write_json_atomic
from ragtune.errors import RagtuneError
from ragtune.serve import metrics
from ragtune.serve.errors import one_line
from ragtune.serve.state import ServedIndex
from ragtune.web.crawl import CrawlEvent

log = logging.getLogger("ragtune.serve.jobs")

JobKind = Literal["ingest", "sync", "delete"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]
# A queued job is at "fetch" with nothing done: its status says it waits.
Stage = Literal["fetch", "embed", "commit", "done"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed"})
# The page events a job keeps: enough to show what it is doing, bounded for a crawl
# of thousands of pages.
MAX_EVENTS = 50
# Jobs waiting for one index beyond the running one; more is answered 429.
MAX_QUEUED_PER_INDEX = 16
# Job records kept in memory; older ones are read back from their JSON files.
KEPT_JOBS = 500
# Records of earlier runs of the server listed again after a restart.
RESTORED_JOBS = 100
# A running job's record is rewritten on disk at most this often (and at every stage).
SAVE_INTERVAL_S = 1.0
JOB_ID = re.compile(r"job_[0-9a-f]{32}")
# What a job whose worker failed unexpectedly says: the details are in the log only.
INTERNAL_ERROR = "internal error"
# What a job found unfinished in the records of an earlier run of the server says.
INTERRUPTED = "the server stopped before the job finished"


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


class JobQueueFull(Exception):
    """An index already has ``MAX_QUEUED_PER_INDEX`` jobs waiting."""

    def __init__(self, index: str, waiting: int) -> None:
        super().__init__(f"index {index!r} already has {waiting} jobs waiting; try again later")
        self.index = index


@dataclass
class Job:
    """One job's record; every change goes through its manager's lock."""

    id: str
    kind: JobKind
    index: str
    status: JobStatus = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stage: Stage = "fetch"
    done: int = 0
    total: int | None = None
    message: str = "waiting for its turn"
    events: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    report: dict[str, Any] | None = None
    error: str | None = None
    # Bumped at every change: what a stream of the job watches.
    version: int = 0

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "job",
            "kind": self.kind,
            "index": self.index,
            "status": self.status,
            "created": int(self.created),
            "started": None if self.started is None else int(self.started),
            "finished": None if self.finished is None else int(self.finished),
            "progress": {
                "stage": self.stage,
                "done": self.done,
                "total": self.total,
                "message": self.message,
            },
            "events": list(self.events),
            "report": self.report,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A record read back from its JSON file (written by ``to_dict``)."""
        progress = data.get("progress") or {}
        job = cls(
            id=str(data["id"]),
            kind=data["kind"],
            index=str(data["index"]),
            status=data["status"],
            created=float(data["created"]),
            started=_optional_float(data.get("started")),
            finished=_optional_float(data.get("finished")),
            stage=progress.get("stage", "done"),
            done=int(progress.get("done") or 0),
            total=progress.get("total"),
            message=str(progress.get("message") or ""),
            report=data.get("report"),
            error=data.get("error"),
        )
        job.events.extend(data.get("events") or [])
        if not job.is_finished:  # queued or running when that server stopped
            job.status, job.stage, job.error = "failed", "done", INTERRUPTED
            job.message = INTERRUPTED
        return job


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


class JobProgress:
    """What a running job tells its record: stages, counts and page events. Safe to
    call from the crawler's threads."""

    def __init__(self, manager: JobManager, job: Job) -> None:
        self._manager = manager
        self.job = job
        self._planned = 0
        self._open_ended = False  # a crawl: how many pages it reads is found as it goes
        self._read = 0

    def stage(self, stage: Stage, message: str, done: int = 0, total: int | None = None) -> None:
        with self._manager.changing(self.job, save=True) as job:
            job.stage, job.message, job.done, job.total = stage, message, done, total

    # The ingest and sync hooks (``on_plan``, ``on_event``, ``on_embed``):

    def on_plan(self, count: int | None) -> None:
        """More sources are about to be read (None: a crawl, whose size is unknown)."""
        with self._manager.changing(self.job) as job:
            if count is None:
                self._open_ended = True
            else:
                self._planned += count
            job.stage, job.total = "fetch", None if self._open_ended else self._planned

    def on_event(self, event: CrawlEvent) -> None:
        if event.unvisited:  # a link the crawl's limits left: not a page it read
            return
        self.page(event.url, event.status, event.reason)

    def page(self, url: str, status: str, reason: str = "") -> None:
        with self._manager.changing(self.job) as job:
            self._read += 1
            job.events.append({"url": url, "status": status, "reason": one_line(reason)})
            job.stage, job.done = "fetch", self._read
            total = f" of {job.total}" if job.total is not None else ""
            job.message = f"read {self._read}{total} sources"

    def on_embed(self, done: int, total: int) -> None:
        first = self.job.stage != "embed"
        with self._manager.changing(self.job, save=first) as job:
            job.stage, job.done, job.total = "embed", done, total
            job.message = f"embedded {done} of {total} chunks"


# What a job does: given its progress, it changes the index and returns its report.
Work = Callable[[JobProgress], dict[str, Any]]


class JobManager:
    """The jobs of one server: a queue and (while it has work) a worker per index."""

    def __init__(self, data_dir: Path | None, max_queued: int = MAX_QUEUED_PER_INDEX) -> None:
        if data_dir is None:
            # A directory the server owns for its lifetime, never one it serves.
            data_dir = Path(tempfile.mkdtemp(prefix="ragtune-serve-"))
            weakref.finalize(self, shutil.rmtree, data_dir, ignore_errors=True)
        self.data_dir = data_dir
        self.records_dir = data_dir / "jobs"
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queues: dict[str, deque[tuple[Job, Work, ServedIndex]]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._saved_at: dict[str, float] = {}
        self._load_recent()
        self._discard_stale_uploads()

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    # --- submitting and reading --------------------------------------------------------

    def check_room(self, index: str) -> None:
        """Raise JobQueueFull when a new job for ``index`` would be refused."""
        with self._lock:
            waiting = len(self._queues.get(index, ()))
        if waiting >= self.max_queued:
            raise JobQueueFull(index, waiting)

    def submit(
        self, served: ServedIndex, kind: JobKind, work: Work, job_id: str | None = None
    ) -> Job:
        """Queue ``work`` on ``served``; it runs after the index's earlier jobs."""
        job = Job(id=job_id or new_job_id(), kind=kind, index=served.name)
        with self._lock:
            queue = self._queues.setdefault(served.name, deque())
            if len(queue) >= self.max_queued:
                raise JobQueueFull(served.name, len(queue))
            queue.append((job, work, served))
            self._remember(job)
            worker = self._workers.get(served.name)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(
                    target=self._work_through,
                    args=(served.name,),
                    name=f"ragtune-jobs-{served.name}",
                    daemon=True,
                )
                self._workers[served.name] = worker
                worker.start()
        self._save(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, from memory or from its record; None when unknown."""
        if not JOB_ID.fullmatch(job_id):
            return None
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None else self._load(job_id)

    def snapshot(self, job_id: str) -> tuple[dict[str, Any], int] | None:
        """The job's object and version, read together; None when unknown."""
        job = self.get(job_id)
        if job is None:
            return None
        with self._lock:
            return job.to_dict(), job.version

    def recent(self, limit: int, index: str | None = None) -> list[dict[str, Any]]:
        """The jobs kept in memory, newest first."""
        with self._lock:
            jobs = [job for job in reversed(self._jobs.values()) if index in (None, job.index)]
            return [job.to_dict() for job in jobs[:limit]]

    # --- running -------------------------------------------------------------------------

    def _work_through(self, index: str) -> None:
        """The worker of one index: its queued jobs in turn, then it ends."""
        while True:
            with self._lock:
                queue = self._queues.get(index)
                if not queue:
                    self._workers.pop(index, None)
                    return
                job, work, served = queue.popleft()
            self._run(job, work, served)

    def _run(self, job: Job, work: Work, served: ServedIndex) -> None:
        progress = JobProgress(self, job)
        with served.writer, _counted_running(job.kind):
            with self.changing(job, save=True):
                job.status, job.started, job.stage = "running", time.time(), "fetch"
                job.message = "started"
            before = _manifest_state(served)
            report: dict[str, Any] | None = None
            error: str | None = None
            try:
                report = work(progress)
            except RagtuneError as failure:
                error = self._shown(str(failure), served)
            except Exception:
                log.exception("job %s (%s of %s) failed", job.id, job.kind, job.index)
                error = INTERNAL_ERROR
            if error is None:
                progress.stage("commit", "opening the index as committed")
                _reload(served)
            elif _manifest_state(served) != before:
                _reload(served)  # a failed job may have committed part of its work: serve it
            # Finished only once the served index is what the job left: a client told
            # "succeeded" asks its next question of the new state.
            self._finish(job, report, error)

    def _shown(self, message: str, served: ServedIndex) -> str:
        """A product error's message as a job shows it: one line, with the server's own
        directories (the index's, the data dir) named rather than spelt out."""
        for path, name in (
            (served.spec.directory, f"<index {served.name}>"),
            (self.data_dir, "<server data>"),
        ):
            for spelling in {str(path), os.path.abspath(path), os.path.realpath(path)}:
                message = message.replace(spelling, name)
        return one_line(message)

    def _finish(
        self, job: Job, report: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        with self.changing(job, save=True):
            job.finished = time.time()
            job.stage = "done"
            if error is None and report is not None:
                job.status, job.report, job.message = "succeeded", report, "finished"
            else:
                job.status = "failed"
                job.error = error or INTERNAL_ERROR
                job.message = job.error
        metrics.JOBS.labels(job.kind, job.status).inc()

    @contextlib.contextmanager
    def changing(self, job: Job, save: bool = False) -> Iterator[Job]:
        """Change ``job`` under the lock; its record is written when ``save`` (a new
        stage) or when the last write is older than SAVE_INTERVAL_S."""
        with self._lock:
            yield job
            job.version += 1
            now = time.monotonic()
            due = now - self._saved_at.get(job.id, 0.0) >= SAVE_INTERVAL_S
        if save or due:
            self._save(job)

    # --- records ---------------------------------------------------------------------------

    def _remember(self, job: Job) -> None:
        """Keep ``job`` in memory (the caller holds the lock), forgetting the oldest
        finished ones beyond KEPT_JOBS (their records stay on disk)."""
        self._jobs[job.id] = job
        excess = len(self._jobs) - KEPT_JOBS
        for old_id in [i for i, j in self._jobs.items() if j.is_finished][: max(excess, 0)]:
            del self._jobs[old_id]
            self._saved_at.pop(old_id, None)

    def _save(self, job: Job) -> None:
        # Records are written in the order their snapshots were taken: a slow write of
        # an older state can never land after the final one.
        with self._records_lock:
            with self._lock:
                data = job.to_dict()
                self._saved_at[job.id] = time.monotonic()
            try:
                write_json_atomic(self.records_dir / f"{job.id}.json", data)
            except OSError as error:  # the job goes on; only its record after a restart is lost
                log.warning("cannot write the record of job %s: %s", job.id, error)

    def _load_recent(self) -> None:
        """The newest records of earlier runs, so ``recent`` lists them after a restart;
        a job they left unfinished is recorded as failed (``INTERRUPTED``)."""
        try:
            paths = sorted(
                (p for p in self.records_dir.glob("job_*.json") if JOB_ID.fullmatch(p.stem)),
                key=lambda p: p.stat().st_mtime_ns,
            )[-RESTORED_JOBS:]
        except OSError:
            return
        for path in paths:
            job = self._load(path.stem)
            if job is None:
                continue
            self._jobs[job.id] = job
            if job.error == INTERRUPTED:
                self._save(job)
        self._jobs = OrderedDict(sorted(self._jobs.items(), key=lambda item: item[1].created))

    def _discard_stale_uploads(self) -> None:
        """Remove the uploads of jobs an earlier run left unfinished: a job removes its
        own when it ends, so any still here belong to no job of this server."""
        try:
            folders = [p for p in self.uploads_dir.iterdir() if JOB_ID.fullmatch(p.name)]
        except OSError:
            return
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def _load(self, job_id: str) -> Job | None:
        path = self.records_dir / f"{job_id}.json"
        try:
            return Job.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("the record of job %s cannot be read: %s", job_id, error)
            return None


@contextlib.contextmanager
def _counted_running(kind: str) -> Iterator[None]:
    metrics.JOBS_RUNNING.labels(kind).inc()
    try:
        yield
    finally:
        metrics.JOBS_RUNNING.labels(kind).dec()


def _manifest_state(served: ServedIndex) -> tuple[int, int] | None:
    """When and how the index's manifest was last written: every commit rewrites it."""
    from ragtune.index.manifest import MANIFEST

    try:
        info = os.stat(served.spec.directory / MANIFEST)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _reload(served: ServedIndex) -> bool:
    """Serve the index as now committed; False (and the old state kept) when it cannot
    be opened."""
    if not served.exists():
        return False
    try:
        served.reload()
    except Exception:
        log.exception("the index %s could not be reopened after a job", served.name)
        return False
    return True
