"""Hostile responses: each ends as a per-URL reason in the report, never as a crash."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator

import pytest
from tests.webserver import Reply, Request, Site, serve

from ragtune import WebReader


@pytest.fixture()
def site() -> Iterator[Site]:
    with serve(Site()) as running:
        yield running


def outcome(site: Site, path: str, **options: object) -> tuple[str, str, list]:  # type: ignore[type-arg]
    reader = WebReader(retries=0, **options)  # type: ignore[arg-type]
    documents = reader.load_data([site.base + path])
    [event] = [e for e in reader.report.events if e.url.endswith(path)]
    return event.status, event.reason, documents


def test_malformed_html_still_yields_its_text(site: Site) -> None:
    site.page(
        "/tagsoup",
        "<html><body><div><p>Unclosed <b>bold <i>text about the harbour pilot<table><tr><td>cell</div></span>",
    )
    status, _, [document] = outcome(site, "/tagsoup")
    assert status == "fetched" and "harbour pilot" in document.text


def test_binary_body_labelled_html(site: Site) -> None:
    site.routes["/fake"] = Reply(body=os.urandom(64 * 1024))
    status, reason, documents = outcome(site, "/fake")
    assert status == "failed" and documents == []
    assert "no readable text" in reason or "binary" in reason


def test_100_mb_body_stops_at_the_limit(site: Site) -> None:
    def endless() -> Iterator[bytes]:
        block = b"<p>" + b"x" * (1024 * 1024) + b"</p>"
        for _ in range(100):
            yield block

    site.routes["/huge"] = lambda request: Reply(body=endless())
    started = time.monotonic()
    status, reason, _ = outcome(site, "/huge")
    assert status == "failed" and "exceeds the 20971520-byte limit" in reason
    assert time.monotonic() - started < 10


def test_gzip_bomb_stops_at_the_limit(site: Site) -> None:
    bomb = gzip.compress(b"<p>" + b"\x00" * (200 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 300 * 1024  # 200 MB that travels as a few hundred kB
    site.routes["/bomb"] = Reply(body=bomb, headers={"Content-Encoding": "gzip"})
    status, reason, _ = outcome(site, "/bomb")
    assert status == "failed" and "decompressed body exceeds" in reason


def test_redirect_loop(site: Site) -> None:
    site.routes["/loop-a"] = Reply(302, b"", headers={"Location": "/loop-b"})
    site.routes["/loop-b"] = Reply(302, b"", headers={"Location": "/loop-a"})
    status, reason, _ = outcome(site, "/loop-a")
    assert (status, reason) == ("failed", "too many redirects")
    assert len(site.log) <= 12


def test_server_that_stalls_mid_body(site: Site) -> None:
    def stalls(request: Request) -> Reply:
        def body() -> Iterator[bytes]:
            yield b"<html><body><p>The first half arrives"
            time.sleep(5)
            yield b" and the rest never does in time.</p></body></html>"

        return Reply(body=body())

    site.routes["/stall"] = stalls
    started = time.monotonic()
    status, reason, _ = outcome(site, "/stall", timeout=1.0)
    assert status == "failed" and "timed out" in reason
    assert time.monotonic() - started < 4


def test_latin1_served_as_utf8(site: Site) -> None:
    text = "Les crêpes de la Bretagne sont délicieuses, et le café à Saint-Malo est très fort."
    body = f"<html><head><title>Crêpes</title></head><body><article><h1>Crêpes</h1><p>{text}</p></article></body></html>"
    site.routes["/latin1"] = Reply(
        body=body.encode("latin-1"), content_type="text/html; charset=utf-8"
    )
    site.routes["/latin1.txt"] = Reply(
        body=text.encode("latin-1"), content_type="text/plain; charset=utf-8"
    )
    for path in ("/latin1", "/latin1.txt"):
        status, _, [document] = outcome(site, path)
        assert status == "fetched"
        assert "crêpes de la Bretagne" in document.text and "café à Saint-Malo" in document.text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://", "URL has no host"),
        ("htp://example.com", "not an http(s) URL"),
        ("http://exa mple.com/", "invalid URL"),
        ("http://[::1", "invalid URL"),
        ("http://" + "a" * 9000 + ".com/", "longer than 8192"),
        ("http://bücher.invalid/straße", "cannot connect"),
    ],
)
def test_invalid_and_internationalised_urls(url: str, reason: str) -> None:
    reader = WebReader(retries=0)
    assert reader.load_data([url]) == []
    [event] = reader.report.events
    assert event.status == "failed" and reason in event.reason


def test_internationalised_path_on_a_live_server(site: Site) -> None:
    site.page(
        "/caf%C3%A9",
        "<html><body><article><h1>Café</h1><p>The harbour café opens at dawn for the pilots.</p></article></body></html>",
    )
    reader = WebReader()
    [document] = reader.load_data([site.base + "/café"])
    assert "opens at dawn" in document.text
