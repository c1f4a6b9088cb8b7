"""The whole-response deadline of every HTTP client ragtune makes, and its proxies."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from tests.webserver import Site, dripping_headers_server, serve

from ragtune.net.deadline import Deadline, deadline_client
from ragtune.web.fetch import Fetcher

PROXIED_PAGE = "http://docs.example.test/page"


@pytest.fixture()
def proxy() -> Iterator[Site]:
    """A forward proxy that answers for one page itself: a proxied request names the
    whole URL, which is the route."""
    with serve(Site()) as site:
        site.page(
            PROXIED_PAGE, "<html><body><article><p>Served by the proxy.</p></article></body></html>"
        )
        yield site


@pytest.fixture()
def dripping_url() -> Iterator[str]:
    """A server whose headers drip for 30 s (tests/webserver.py)."""
    with dripping_headers_server() as url:
        yield url


def test_environment_proxies_are_honoured(proxy: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # A client with a transport of its own would ignore HTTP_PROXY; the crawler's must not.
    monkeypatch.setenv("HTTP_PROXY", proxy.base)
    monkeypatch.setenv("NO_PROXY", "")
    with Fetcher(timeout=5) as fetcher:
        page = fetcher.fetch(PROXIED_PAGE)
    assert b"Served by the proxy." in page.body
    assert [request.path for request in proxy.log] == [PROXIED_PAGE]


def test_no_proxy_hosts_are_reached_directly(
    proxy: Site, dripping_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    deadline = Deadline()
    with deadline_client(deadline, timeout=httpx.Timeout(5.0)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException), deadline.within(1.0):
            client.get(dripping_url)
    assert time.monotonic() - started < 3
    assert proxy.log == []


def test_deadline_bounds_a_response_whose_every_read_is_quick(dripping_url: str) -> None:
    deadline = Deadline()
    with deadline_client(deadline, timeout=httpx.Timeout(5.0)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException), deadline.within(1.0):
            client.get(dripping_url)
        assert 0.9 < time.monotonic() - started < 3
        assert deadline.at is None  # released with the block


def test_an_inner_deadline_cannot_extend_an_outer_one() -> None:
    deadline = Deadline()
    with deadline.within(1.0):
        outer = deadline.at
        with deadline.within(60.0):
            assert deadline.at == outer
        with deadline.within(0.1):
            assert deadline.at is not None and outer is not None and deadline.at < outer
        assert deadline.at == outer
    assert deadline.at is None
