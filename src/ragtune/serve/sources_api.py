"""ragtune's own source endpoints: ingest and sync jobs, their progress, the documents.

- ``POST /v1/ingest``: URLs (with crawl options), folders under ``--files-root``, or
  uploaded files (``multipart/form-data``) into an index, as a job: 202 and the job,
  ``Location: /v1/jobs/{id}``.
- ``POST /v1/sync``: bring an index up to date with its recorded sources, as a job.
- ``GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/events`` (SSE).
- ``GET /v1/documents`` (paged, filtered), ``GET /v1/documents/{id}`` (with its
  chunks), ``DELETE /v1/documents/{id}``.

Everything a client sends is checked before a job is queued, so a bad request
costs nothing and is answered 400 in OpenAI's shape: types (no coercion of
``"5"`` into 5), bounds on crawl options, at most ``MAX_URLS`` URLs of at most
``MAX_URL_CHARS`` characters, each an http(s) URL whose host resolves to public
addresses only (``check_public_url``) unless the server allows private ones. The
fetcher checks every connection again (``IngestSettings.allow_private_urls``), so a
name that resolves differently later, or a redirect, gains nothing. Local paths are
read only under ``--files-root`` (403 otherwise), after resolving symbolic links.
The jobs themselves run in ``jobs.py``; uploads are received in ``uploads.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ragtune.errors import AddressRefused, RagtuneError
from ragtune.index.lock import write_lock
from ragtune.index.vector_index import VectorStoreIndex
from ragtune.ingest import IngestSettings, ingest, stale_document_ids
from ragtune.net.address_guard import AddressPolicy, check_public_url
from ragtune.serve.config import ServeConfig
from ragtune.serve.errors import ApiError, one_line
from ragtune.serve.jobs import (
    FINISHED,
    JOB_ID,
    Job,
    JobManager,
    JobProgress,
    JobQueueFull,
    Work,
    new_job_id,
)
from ragtune.serve.state import ServedIndex, ServerState
from ragtune.serve.uploads import (
    StoredUpload,
    UnreadableUpload,
    receive_upload,
    sniff,
    upload_documents,
)
from ragtune.sync import sync

router = APIRouter()

MAX_URLS = 1_000
MAX_URL_CHARS = 4_096
MAX_PATHS = 100
MAX_PATTERNS = 100
MAX_PATTERN_CHARS = 500
MAX_PAGES = 10_000
MAX_DEPTH = 20
MAX_PAGE_SIZE = 200
# How long DELETE waits for its job before answering 202 with the job instead.
DELETE_WAIT_S = 30.0
# How often a job's event stream looks for a change, and sends a comment when idle.
STREAM_POLL_S = 0.2
STREAM_KEEPALIVE_S = 15.0
# Seconds a client told 429 (a full job queue) should wait.
QUEUE_RETRY_AFTER_S = 30

_DEFAULTS = IngestSettings()
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATTERN_CHARS)]
LocalPath = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)]
IndexName = Annotated[str, StringConstraints(max_length=64)]


class IngestRequest(BaseModel):
    """The body of ``POST /v1/ingest`` (JSON, or the form fields of an upload)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    index: IndexName | None = None
    model: IndexName | None = None  # the OpenAI endpoints' name for it
    urls: list[Url] = Field(default_factory=list, max_length=MAX_URLS)
    crawl: bool = _DEFAULTS.crawl
    max_pages: int = Field(_DEFAULTS.max_pages, ge=1, le=MAX_PAGES)
    max_depth: int = Field(_DEFAULTS.max_depth, ge=0, le=MAX_DEPTH)
    scope: Literal["path", "host", "domain"] = _DEFAULTS.scope
    include: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    exclude: list[Pattern] = Field(default_factory=list, max_length=MAX_PATTERNS)
    render: Literal["auto", "always", "never"] = _DEFAULTS.render
    paths: list[LocalPath] = Field(default_factory=list, max_length=MAX_PATHS)


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    index: IndexName | None = None
    model: IndexName | None = None


# Form fields of an upload that repeat (or hold one value a line), and those of one value.
_LIST_FIELDS = frozenset({"urls", "include", "exclude", "paths"})
_BOOL_FIELDS = frozenset({"crawl"})
_INT_FIELDS = frozenset({"max_pages", "max_depth"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


# --- ingest ---------------------------------------------------------------------------


@router.post("/v1/ingest", status_code=202)
async def post_ingest(request: Request) -> JSONResponse:
    """Queue an ingest: JSON ``{"urls": [...], ...}`` or a multipart upload."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _ingest_upload(request)
    if content_type not in ("application/json", ""):
        raise ApiError(
            415,
            f"send application/json or multipart/form-data, not {content_type[:60]!r}",
            code="unsupported_media_type",
        )
    body = _validated(IngestRequest, await _json_object(request))
    served = _state(request).index(body.index or body.model or _query_index(request))
    manager = job_manager(request.app)
    _check_room(manager, served.name)
    sources = await _checked_sources(body, _state(request).config)
    if not sources:
        raise ApiError(400, "nothing to ingest: give urls, paths or files", param="urls")
    work = _ingest_work(served, sources, _settings(body, _state(request).config), [])
    return _accepted(_submit(manager, served, "ingest", work))


async def _ingest_upload(request: Request) -> JSONResponse:
    state = _state(request)
    manager = job_manager(request.app)
    # A full queue is told before the upload is read, when the index is in the URL.
    _check_room(manager, state.index(_query_index(request)).name)
    job_id = new_job_id()
    folder = manager.uploads_dir / job_id
    form = await receive_upload(
        request, folder, state.config.max_upload_bytes, state.config.max_upload_bytes
    )
    try:
        body = _validated(IngestRequest, _form_values(form.fields))
        served = state.index(body.index or body.model or _query_index(request))
        sources = await _checked_sources(body, state.config)
        if not form.files and not sources:
            raise ApiError(400, "nothing to ingest: give urls, paths or files", param="files")
        for upload in form.files:
            try:
                await anyio.to_thread.run_sync(sniff, upload)
            except UnreadableUpload as error:
                raise ApiError(
                    415, one_line(str(error)), code="unsupported_file_type", param="files"
                ) from None
        if not form.files:
            shutil.rmtree(folder, ignore_errors=True)
        settings = _settings(body, state.config)
        work = _ingest_work(served, sources, settings, form.files, folder)
        job = _submit(manager, served, "ingest", work, job_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _accepted(job)


def _settings(body: IngestRequest, config: ServeConfig) -> IngestSettings:
    return IngestSettings(
        crawl=body.crawl,
        scope=body.scope,
        max_pages=body.max_pages,
        max_depth=body.max_depth,
        include=list(body.include),
        exclude=list(body.exclude),
        render=body.render,
        allow_private_urls=config.allow_private_urls,
        url_allow_networks=list(config.url_allow_networks),
    )


async def _checked_sources(body: IngestRequest, config: ServeConfig) -> list[str]:
    """The request's URLs and paths, each checked (URL hosts resolved off the event loop)."""
    paths = _checked_paths(body.paths, config.files_root)
    urls = [url.strip() for url in body.urls]
    await anyio.to_thread.run_sync(_check_urls, urls, config)
    return urls + paths


def _check_urls(urls: list[str], config: ServeConfig) -> None:
    """Every URL http(s) and well formed; each host (once) resolving only to addresses
    the server's policy allows. 400 naming the first URL refused, and why."""
    anything = AddressPolicy.of(True)
    policy = AddressPolicy.of(config.allow_private_urls, config.url_allow_networks)
    hosts: dict[str, str] = {}
    for number, url in enumerate(urls):
        try:
            if not url or any(ch.isspace() or not ch.isprintable() for ch in url):
                raise AddressRefused(
                    one_line(url[:80]), "a URL has no spaces or control characters"
                )
            check_public_url(url, anything)  # its form only: no resolving yet
        except AddressRefused as error:
            raise ApiError(
                400, one_line(str(error)), code="invalid_url", param=f"urls.{number}"
            ) from None
        hosts.setdefault(_host_key(url), url)
    if not policy.guards:
        return
    for url in hosts.values():
        try:
            check_public_url(url, policy)
        except AddressRefused as error:
            raise ApiError(
                400, f"URL refused: {one_line(str(error))}", code="url_refused", param="urls"
            ) from None


def _host_key(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


def _checked_paths(paths: list[str], files_root: Path | None) -> list[str]:
    """Each path resolved (links followed) and inside ``files_root``; 403 otherwise."""
    if not paths:
        return []
    if files_root is None:
        raise ApiError(
            403,
            "this server does not read local paths (start it with --files-root DIR)",
            code="paths_not_allowed",
            param="paths",
        )
    root = Path(os.path.realpath(files_root))
    resolved = []
    for number, given in enumerate(paths):
        if "\x00" in given:
            raise ApiError(400, "a path has a NUL character", param=f"paths.{number}")
        real = Path(os.path.realpath(root / given))  # an absolute path replaces root
        shown = one_line(given, 120)
        if real != root and root not in real.parents:
            raise ApiError(
                403,
                f"path {shown!r} is outside the server's files root",
                code="path_outside_root",
                param=f"paths.{number}",
            )
        if not real.exists():
            raise ApiError(
                400,
                f"no such file or folder: {shown!r}",
                code="invalid_path",
                param=f"paths.{number}",
            )
        resolved.append(str(real))
    return resolved


def _form_values(fields: dict[str, list[str]]) -> dict[str, Any]:
    """An upload's form fields as the values of an IngestRequest: lists from repeated
    fields (or one a line), booleans and integers from their text; 400 for text that
    is neither."""
    values: dict[str, Any] = {}
    for name, texts in fields.items():
        if name in _LIST_FIELDS:
            values[name] = [line.strip() for text in texts for line in text.splitlines()]
            values[name] = [line for line in values[name] if line]
            continue
        if len(texts) > 1:
            raise ApiError(400, f"{name[:40]}: give it once", param=name[:40])
        text = texts[0].strip()
        if name in _BOOL_FIELDS:
            if text.lower() not in _TRUE | _FALSE:
                raise ApiError(400, f"{name}: not a boolean: {text[:40]!r}", param=name)
            values[name] = text.lower() in _TRUE
        elif name in _INT_FIELDS:
            if not text.isdigit() or len(text) > 9:
                raise ApiError(400, f"{name}: not a whole number: {text[:40]!r}", param=name)
            values[name] = int(text)
        else:
            values[name] = text
    return values


def _ingest_work(
    served: ServedIndex,
    sources: list[str],
    settings: IngestSettings,
    uploads: list[StoredUpload],
    upload_folder: Path | None = None,
) -> Work:
    """What an ingest job does: the sources through ``ingest``, then the uploads. The
    uploaded files are removed once the job ends, whatever its outcome: their text is
    in the index, and a document deleted later must leave no copy behind."""
    directory = served.spec.directory

    def work(progress: JobProgress) -> dict[str, Any]:
        report: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        try:
            if sources:
                result = ingest(
                    sources,
                    directory,
                    settings,
                    on_event=progress.on_event,
                    on_embed=progress.on_embed,
                    on_plan=progress.on_plan,
                )
                stats = result.stats
                report["sources"] = result.report
                report["insert"] = vars(result.insert)
            if uploads:
                report["uploads"], stats = _ingest_uploads(directory, uploads, progress)
        finally:
            if upload_folder is not None:
                shutil.rmtree(upload_folder, ignore_errors=True)
        return {"documents": stats["documents"], "chunks": stats["chunks"], **report}

    return work


def _ingest_uploads(
    directory: Path, uploads: list[StoredUpload], progress: JobProgress
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read every upload, then write their documents as one ingest would: all or
    nothing when a file cannot be read, a re-uploaded name replacing its documents."""
    progress.on_plan(len(uploads))
    documents = []
    failed: list[tuple[StoredUpload, str]] = []
    for upload in uploads:
        try:
            read = upload_documents(upload)
        except RagtuneError as error:
            failed.append((upload, one_line(str(error))))
            progress.page(upload.url, "failed", str(error))
            continue
        progress.page(upload.url, "fetched", upload.note)
        documents.extend(read)
    if failed:
        first, reason = failed[0]
        raise RagtuneError(
            f"{len(failed)} of {len(uploads)} files could not be read, index left unchanged "
            f"(first: {reason})"
        )
    with write_lock(directory):
        index = VectorStoreIndex.from_documents(
            documents, persist_dir=directory, progress=progress.on_embed
        )
        inserted = vars(index.last_insert)
        index.delete_documents(stale_document_ids(index, documents))
    files = [
        {"name": u.name, "url": u.url, "bytes": u.size, "type": u.media_type, "note": u.note}
        for u in uploads
    ]
    return {"files": files, "insert": inserted}, index.stats()


# --- sync -------------------------------------------------------------------------------


@router.post("/v1/sync", status_code=202)
async def post_sync(request: Request) -> JSONResponse:
    raw = await request.body()
    body = _validated(SyncRequest, _parsed_object(raw) if raw.strip() else {})
    state = _state(request)
    served = state.index(body.index or body.model or _query_index(request))
    if not served.exists():
        raise ApiError(400, f"index {served.name!r} holds nothing yet: ingest first")
    manager = job_manager(request.app)
    _check_room(manager, served.name)
    config = state.config

    def work(progress: JobProgress) -> dict[str, Any]:
        result = sync(
            served.spec.directory,
            allow_private_urls=config.allow_private_urls,
            url_allow_networks=config.url_allow_networks,
            on_event=progress.on_event,
            on_embed=progress.on_embed,
            on_plan=progress.on_plan,
        )
        report = result.to_dict()
        report.pop("index", None)  # the server's own path: not the client's business
        return report

    return _accepted(_submit(manager, served, "sync", work))


# --- jobs ---------------------------------------------------------------------------------


@router.get("/v1/jobs")
async def list_jobs(
    request: Request,
    index: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> dict[str, Any]:
    if index:
        _state(request).index(index)  # 404 for an index not served
    return {"object": "list", "data": job_manager(request.app).recent(limit, index)}


@router.get("/v1/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    snapshot = job_manager(request.app).snapshot(job_id)
    if snapshot is None:
        raise _no_job(job_id)
    return snapshot[0]


@router.get("/v1/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    """Server-sent events: the job at every change, the last one finished, then
    ``data: [DONE]``. A client that goes away stops its stream, never the job."""
    manager = job_manager(request.app)
    if manager.snapshot(job_id) is None:
        raise _no_job(job_id)

    async def events() -> AsyncIterator[str]:
        seen, quiet = -1, 0.0
        while True:
            snapshot = manager.snapshot(job_id)
            if snapshot is None:
                break
            job, version = snapshot
            if version != seen:
                seen, quiet = version, 0.0
                yield f"data: {json.dumps(job)}\n\n"
                if job["status"] in FINISHED:
                    break
            elif quiet >= STREAM_KEEPALIVE_S:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(STREAM_POLL_S)
            quiet += STREAM_POLL_S
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _no_job(job_id: str) -> ApiError:
    shown = job_id if JOB_ID.fullmatch(job_id) else one_line(job_id, 40)
    return ApiError(404, f"no job {shown!r}", code="job_not_found", param="job_id")


# --- documents --------------------------------------------------------------------------


@router.get("/v1/documents")
async def list_documents(
    request: Request,
    index: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    q: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    served = _state(request).index(index or model)
    documents = await anyio.to_thread.run_sync(_documents_of, served)
    if q and q.strip():
        needle = q.strip().lower()
        documents = [
            d for d in documents if needle in d["url"].lower() or needle in d["title"].lower()
        ]
    return {
        "object": "list",
        "data": documents[offset : offset + limit],
        "total": len(documents),
        "offset": offset,
        "limit": limit,
    }


@router.get("/v1/documents/{document_id}")
async def get_document(
    request: Request,
    document_id: str,
    index: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    served = _state(request).index(index or model)
    return await anyio.to_thread.run_sync(_document_with_chunks, served, document_id)


@router.delete("/v1/documents/{document_id}")
async def delete_document(
    request: Request,
    document_id: str,
    index: Annotated[str | None, Query(max_length=64)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    """Remove a document through the index's writer (as a ``delete`` job, in turn with
    ingests); 200 once done, or 202 with the job when ingests ahead of it take long."""
    served = _state(request).index(index or model)
    known = {d["id"] for d in await anyio.to_thread.run_sync(_documents_of, served)}
    if document_id not in known:
        raise _no_document(document_id, served.name)
    manager = job_manager(request.app)
    _check_room(manager, served.name)
    directory = served.spec.directory

    def work(progress: JobProgress) -> dict[str, Any]:
        progress.stage("commit", f"deleting {document_id}")
        index = VectorStoreIndex.load(directory)  # a handle of the writer's own
        if not index.delete_documents([document_id]):
            raise RagtuneError(f"no document {document_id!r} in index {served.name!r}")
        stats = index.stats()
        return {
            "deleted": [document_id],
            "documents": stats["documents"],
            "chunks": stats["chunks"],
        }

    job = _submit(manager, served, "delete", work)
    waited = 0.0
    while not job.is_finished and waited < DELETE_WAIT_S:
        await asyncio.sleep(0.05)
        waited += 0.05
    if not job.is_finished:
        return _accepted(job)
    if job.status == "failed":
        raise ApiError(409, job.error or "the document could not be deleted", code="delete_failed")
    return JSONResponse({"id": document_id, "deleted": True, "job": job.id})


def _no_document(document_id: str, index: str) -> ApiError:
    return ApiError(
        404,
        f"no document {one_line(document_id, 80)!r} in index {index!r}",
        code="document_not_found",
        param="document_id",
    )


# The documents of each opened index, listed at most every LISTING_TTL_S: a reload
# (after any write through this server) opens a new index and so lists afresh, and
# a write by another process (``ragtune ingest``) shows within the TTL.
LISTING_TTL_S = 10.0
_listings: weakref.WeakKeyDictionary[VectorStoreIndex, tuple[float, list[dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)
_listings_lock = threading.Lock()
# Metadata a client is not shown: where a file lives on the server, a page's links.
_PRIVATE_METADATA = frozenset({"path", "file_path", "outlinks"})


def _documents_of(served: ServedIndex) -> list[dict[str, Any]]:
    """Every document of the served index (as last committed), sorted by URL."""
    if not served.exists():
        return []
    index = served.current()
    with _listings_lock:
        cached = _listings.get(index)
    if cached is not None and time.monotonic() - cached[0] < LISTING_TTL_S:
        return cached[1]
    store = index.store
    metadata = store.document_metadata()
    # Chunk ids are "<document id>:<number>"; only the id column is read.
    chunks = Counter(chunk_id.rpartition(":")[0] for chunk_id in store.chunk_ids())
    documents = sorted(
        (
            {
                "id": doc_id,
                "url": url,
                "title": str(metadata.get(url, {}).get("title") or ""),
                "chunks": chunks.get(doc_id, 0),
            }
            for doc_id, (url, _hash) in store.document_hashes().items()
        ),
        key=lambda d: (d["url"], d["id"]),
    )
    with _listings_lock:
        _listings[index] = (time.monotonic(), documents)
    return documents


def _document_with_chunks(served: ServedIndex, document_id: str) -> dict[str, Any]:
    listed = next((d for d in _documents_of(served) if d["id"] == document_id), None)
    if listed is None:
        raise _no_document(document_id, served.name)
    # Only this document's rows are read, through the store's filter by id: at 100,000
    # chunks, reading every chunk's text to pick these took about a second (25 ms now,
    # bench/store_latency.py). The metadata is the document's own, not that of another
    # page of a PDF that shares its URL.
    chunks = served.current().store.document_chunks(document_id)
    metadata = chunks[0][2] if chunks else {}
    return {
        **listed,
        "object": "document",
        "metadata": {key: value for key, value in metadata.items() if key not in _PRIVATE_METADATA},
        "chunks": [
            {"id": f"{document_id}:{number}", "index": number, "text": text}
            for number, text, _metadata in chunks
        ],
    }


# --- shared -------------------------------------------------------------------------------

_managers_lock = threading.Lock()


def job_manager(app: FastAPI) -> JobManager:
    """The app's job manager, made on first use (its records under the data dir)."""
    manager: JobManager | None = getattr(app.state, "ragtune_jobs", None)
    if manager is None:
        with _managers_lock:
            manager = getattr(app.state, "ragtune_jobs", None)
            if manager is None:
                manager = JobManager(app.state.ragtune.config.data_dir)
                app.state.ragtune_jobs = manager
    return manager


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.ragtune
    return state


def _query_index(request: Request) -> str | None:
    name = request.query_params.get("index") or request.query_params.get("model")
    return name[:64] if name else None


def _check_room(manager: JobManager, index: str) -> None:
    try:
        manager.check_room(index)
    except JobQueueFull as full:
        raise _queue_full(full) from None


def _submit(
    manager: JobManager,
    served: ServedIndex,
    kind: Literal["ingest", "sync", "delete"],
    work: Work,
    job_id: str | None = None,
) -> Job:
    try:
        return manager.submit(served, kind, work, job_id)
    except JobQueueFull as full:
        raise _queue_full(full) from None


def _queue_full(full: JobQueueFull) -> ApiError:
    return ApiError(
        429,
        str(full),
        code="too_many_jobs",
        headers={"Retry-After": str(QUEUE_RETRY_AFTER_S)},
    )


def _accepted(job: Job) -> JSONResponse:
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


async def _json_object(request: Request) -> dict[str, Any]:
    return _parsed_object(await request.body())


def _parsed_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON ({one_line(str(error), 120)})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``data`` as ``model``; the first problem as a 400 naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = first.get("msg", "invalid value")
        raise ApiError(
            400, one_line(f"{where}: {message}" if where else message), param=where or None
        ) from None
