"""sync removes a page by what the server answered (404, 410), never by how an error reads.

Every FetchError's message is reworded here, to a random string and to a misleading
"HTTP 404 Not Found": sync must still remove exactly the pages that vanished and keep
every page that failed for another reason, against a real site and a real index.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.webserver import Reply, Site, serve

from ragtune import VectorStoreIndex
from ragtune.errors import FetchError, FetchErrorKind
from ragtune.ingest import IngestSettings, ingest
from ragtune.sync import sync

PAGES = {
    "/stays": "The harbour crane lifts forty tonnes at full reach.",
    "/not-found": "The pilot boat leaves from the north quay at dawn.",
    "/gone": "The lock gates open two hours either side of high water.",
    "/broken": "The dry dock drains in ninety minutes with both pumps.",
    "/slow": "The swing bridge turns for masts taller than twelve metres.",
}
ELSEWHERE = "The ferry to the island sails on the hour from the south pier."


def html(text: str) -> bytes:
    title = text.split()[1].title()
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        f"<p>{text}</p></article></body></html>"
    ).encode()


def drip() -> Iterator[bytes]:
    """A body that arrives a byte at a time and never ends in time."""
    for _ in range(100):
        yield b" "
        time.sleep(0.2)


def indexed_urls(index_dir: Path) -> set[str]:
    retriever = VectorStoreIndex.load(index_dir).as_retriever(100, mode="dense")
    return {node.metadata["url"] for node in retriever.retrieve("harbour")}


@pytest.mark.parametrize("wording", ["random", "HTTP 404 Not Found"])
def test_sync_decides_by_status_whatever_the_errors_say(
    wording: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_dir = tmp_path / "index"
    with serve(Site()) as site:
        base = site.base
        with serve(Site()) as elsewhere:
            for path, text in PAGES.items():
                site.page(path, html(text).decode())
            elsewhere.page("/ferry", html(ELSEWHERE).decode())
            refused_url = elsewhere.base + "/ferry"
            urls = [base + path for path in PAGES] + [refused_url]
            ingest(urls, index_dir, IngestSettings(render="never"))
        # That server is closed now: its port refuses connections.
        assert indexed_urls(index_dir) == set(urls)

        reason = secrets.token_hex(8) if wording == "random" else wording
        kinds: dict[str, FetchErrorKind] = {}
        original = FetchError.__init__

        def reworded(self: FetchError, url: str, _reason: str, **options: Any) -> None:
            original(self, url, reason, **options)
            kinds[url] = self.kind

        monkeypatch.setattr(FetchError, "__init__", reworded)
        site.routes["/not-found"] = Reply(404, b"<h1>Not Found</h1>")
        site.routes["/gone"] = Reply(410, b"<h1>Gone</h1>")
        site.routes["/broken"] = Reply(500, b"<h1>Internal Server Error</h1>")
        site.routes["/slow"] = lambda request: Reply(200, drip())
        result = sync(index_dir, timeout=0.5)

    actions = {u.url.removeprefix(base): u.action for u in result.urls}
    assert actions == {
        "/stays": "unchanged",
        "/not-found": "removed",
        "/gone": "removed",
        "/broken": "failed",
        "/slow": "failed",
        refused_url: "failed",
    }
    # Every failure was reworded, so none of the decisions above read an error's wording.
    reasons = {u.reason.removesuffix("; kept") for u in result.urls if u.action != "unchanged"}
    assert reasons == {reason}
    assert kinds[base + "/not-found"] == kinds[base + "/gone"] == "http_status"
    assert kinds[base + "/broken"] == "http_status"
    assert kinds[base + "/slow"] == "timeout"
    assert kinds[refused_url] == "connection"
    assert indexed_urls(index_dir) == {
        base + "/stays",
        base + "/broken",
        base + "/slow",
        refused_url,
    }
