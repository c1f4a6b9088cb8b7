"""Which HTTP statuses are tried again: 408, 429, 500, 502, 503 and 504, and no other.

Each is answered by a real server on 127.0.0.1 (tests/webserver.py), which counts
the requests: the crawler's fetcher and the OpenAI-compatible client share the set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tests.webserver import Reply, Site, in_turn, serve

from ragtune.errors import FetchError, LLMEndpointError
from ragtune.llm.openai_compat import OpenAICompatibleLLM
from ragtune.net.retry import RETRY_STATUSES
from ragtune.web.fetch import Fetcher, RetryPolicy

RETRIED = (408, 429, 500, 502, 503, 504)
# Statuses that would answer the same again: the rest of 5xx and ordinary client errors.
NOT_RETRIED = (400, 403, 404, 410, 425, 501, 505, 507, 511)
PAGE = b"<html><body><article><h1>Back</h1><p>The page is back.</p></article></body></html>"
CHAT_ANSWER = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})


@pytest.fixture(scope="module")
def server() -> Iterator[Site]:
    with serve(Site()) as site:
        yield site


@pytest.fixture()
def site(server: Site) -> Site:
    """The module's server with no routes and an empty log (one server: each stops slowly)."""
    server.routes.clear()
    server.log.clear()
    return server


def fetcher(retries: int) -> Fetcher:
    return Fetcher(timeout=5.0, retry=RetryPolicy(retries=retries, backoff=0.01))


def test_the_documented_list_is_the_code() -> None:
    assert frozenset(RETRIED) == RETRY_STATUSES


@pytest.mark.parametrize("status", RETRIED)
def test_a_passing_failure_is_tried_again_until_it_passes(site: Site, status: int) -> None:
    site.routes["/page"] = in_turn(Reply(status), Reply(status), Reply(200, PAGE))
    with fetcher(retries=2) as client:
        page = client.fetch(f"{site.base}/page")
    assert page.status == 200 and b"The page is back" in page.body
    assert len(site.requests_for("/page")) == 3


@pytest.mark.parametrize("status", RETRIED)
def test_retries_run_out_with_the_status_named(site: Site, status: int) -> None:
    site.routes["/page"] = Reply(status)
    with fetcher(retries=2) as client, pytest.raises(FetchError) as caught:
        client.fetch(f"{site.base}/page")
    assert caught.value.status == status
    assert f"HTTP {status}" in caught.value.reason and "gave up after 3 attempts" in str(
        caught.value
    )
    assert len(site.requests_for("/page")) == 3


@pytest.mark.parametrize("status", NOT_RETRIED)
def test_a_lasting_failure_fails_at_once(site: Site, status: int) -> None:
    site.routes["/page"] = in_turn(Reply(status), Reply(200, PAGE))
    with fetcher(retries=3) as client, pytest.raises(FetchError) as caught:
        client.fetch(f"{site.base}/page")
    assert caught.value.status == status and f"HTTP {status}" in caught.value.reason
    assert len(site.requests_for("/page")) == 1


@pytest.mark.parametrize(("status", "requests"), [(504, 2), (501, 1), (505, 1)])
def test_the_llm_client_retries_the_same_statuses(site: Site, status: int, requests: int) -> None:
    error = Reply(status, b'{"error": {"message": "no"}}', content_type="application/json")
    answer = Reply(200, CHAT_ANSWER.encode(), content_type="application/json")
    site.routes["/v1/chat/completions"] = in_turn(error, answer)
    llm = OpenAICompatibleLLM(
        f"{site.base}/v1", "m", context_window=2048, timeout=5.0, retries=2, backoff=0.0
    )
    try:
        if requests == 1:
            with pytest.raises(LLMEndpointError, match=f"HTTP {status}"):
                llm.chat([{"role": "user", "content": "Hello?"}])
        else:
            assert llm.chat([{"role": "user", "content": "Hello?"}]) == "hi"
    finally:
        llm.close()
    assert len(site.requests_for("/v1/chat/completions")) == requests
