"""Shared fixtures: the demo shop and a server of awkward responses, both on 127.0.0.1,
a PostgreSQL server, each store in turn, and small folders of notes.

Plain helpers (run_cli, assert_one_line_error, ...) are in tests/helpers.py: test
modules import those, never this file.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.postgres_server import PostgresServer, missing_reason, start_postgres  # noqa: E402
from tests.webserver import Reply, Site, serve  # noqa: E402

from ragtune import VectorStoreIndex, WebReader  # noqa: E402
from ragtune.shop_server import serve_shop  # noqa: E402


@pytest.fixture(scope="session")
def shop_url() -> Iterator[str]:
    with serve_shop() as base:
        yield base


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL + pgvector server on 127.0.0.1 for the whole session."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    # Not under pytest's temporary root: that is private to root, and the
    # server runs as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="ragtune-pg-"))
    server = start_postgres(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["lancedb", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store in turn: the embedded one, then a fresh table on the test server."""
    if request.param == "lancedb":
        return "lancedb"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.table_url(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def shop_index_dir(shop_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole shop, crawled and indexed once for the session; tests must not modify it."""
    directory = tmp_path_factory.mktemp("shop") / "index"
    documents = WebReader(crawl=True).load_data(urls=[f"{shop_url}/products"])
    VectorStoreIndex.from_documents(documents, persist_dir=directory)
    return directory


@pytest.fixture()
def notes(tmp_path: Path) -> Path:
    """A folder of two one-fact Markdown files."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "kites.md").write_text("# Kites\n\nThe griffin kite costs 89 dollars.\n")
    (folder / "lamps.md").write_text("# Lamps\n\nThe lighthouse lamp burns for 40 hours.\n")
    return folder


@pytest.fixture(scope="session")
def shop_index(shop_index_dir: Path) -> VectorStoreIndex:
    return VectorStoreIndex.load(shop_index_dir)


def _awkward_site() -> Site:
    """Responses a real crawler meets: errors, binaries, wrong types, bodies too big."""
    site = Site()
    site.page(
        "/page",
        "<html><head><title>Plain page</title></head><body><article><h1>Plain page</h1>"
        "<p>The moon orbits the earth every 27.3 days, a sidereal month.</p>"
        "</article></body></html>",
    )
    site.routes["/notes.txt"] = Reply(
        body=b"Plain text notes about the lighthouse workshop.", content_type="text/plain"
    )
    site.routes["/image.png"] = Reply(
        body=b"\x89PNG\r\n\x1a\n" + bytes(256), content_type="image/png"
    )
    site.routes["/data.bin"] = Reply(body=os.urandom(512), content_type="application/octet-stream")
    site.routes["/empty"] = Reply(content_type="text/html")
    site.routes["/server-error"] = Reply(500, b"<h1>boom</h1>", content_type="text/html")
    # 30 MB of HTML with no Content-Length: only counting the bytes can stop it.
    site.routes["/huge"] = lambda request: Reply(body=_megabyte_paragraphs(30))
    # A length far over any limit, and a body that never comes: the header alone must do.
    site.routes["/declared-huge"] = Reply(
        body=iter(()), headers={"Content-Length": str(100 * 1024**3)}
    )
    return site


def _megabyte_paragraphs(count: int) -> Iterator[bytes]:
    block = b"<p>" + b"a" * 1_048_576 + b"</p>"
    for _ in range(count):
        yield block


@pytest.fixture(scope="session")
def awkward_url() -> Iterator[str]:
    with serve(_awkward_site()) as site:
        yield site.base


@pytest.fixture()
def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
