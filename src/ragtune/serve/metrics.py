"""Prometheus metrics of ``ragtune serve``, answered as text at ``GET /metrics``.

One registry for the process (not prometheus_client's global one, which other
libraries may fill): a test that starts several apps in one process sees their
counts add up, as a scrape of one long-running server would. Other modules record
through the objects here, e.g. ``JOBS.labels(kind, status).inc()``.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The *_created series double the text and tell a scraper nothing it uses here.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "ragtune_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "ragtune_request_seconds",
    "Time from a request's arrival to the end of its response (a stream's last byte).",
    ["route"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
FIRST_TOKEN = Histogram(
    "ragtune_time_to_first_token_seconds",
    "Time from a chat request's arrival to its first answer text.",
    ["model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter(
    "ragtune_prompt_tokens", "Prompt tokens sent to the LLMs.", ["model"], registry=REGISTRY
)
GENERATED_TOKENS = Counter(
    "ragtune_generated_tokens",
    "Answer tokens the LLMs generated (extracted answers count none).",
    ["model"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "ragtune_answers_in_flight", "Answers being computed now (slots busy).", registry=REGISTRY
)
QUEUE_DEPTH = Gauge(
    "ragtune_queue_depth", "Requests waiting for a free answer slot.", registry=REGISTRY
)
REJECTED = Counter(
    "ragtune_rejected",
    "Requests refused before any work: queue_full, rate_limited, unauthorized, too_large.",
    ["reason"],
    registry=REGISTRY,
)
JOBS = Counter(
    "ragtune_jobs",
    "Ingest, sync and delete jobs by kind and final status.",
    ["kind", "status"],
    registry=REGISTRY,
)
JOBS_RUNNING = Gauge("ragtune_jobs_running", "Jobs running now.", ["kind"], registry=REGISTRY)


def exposition() -> tuple[bytes, str]:
    """The metrics as Prometheus text, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every request by its route template (never the raw path: a scan of
    random URLs must not mint a label each) and times it to its response's end."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = _route_of(scope)
            REQUESTS.labels(route, scope.get("method", ""), str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
