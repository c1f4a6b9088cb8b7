"""Shared fixtures: the demo shop and a server of awkward responses, both on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.postgres_server import PostgresServer, missing_reason, start_postgres  # noqa: E402

from ragtune import VectorStoreIndex, WebReader  # noqa: E402
from ragtune.shop_server import serve_shop  # noqa: E402

POTION_PATH = "/products/dark-energy-potion"


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


class _AwkwardHandler(BaseHTTPRequestHandler):
    """Responses a real crawler meets: errors, binaries, wrong types."""

    routes: dict[str, tuple[int, str, bytes]] = {
        "/page": (
            200,
            "text/html; charset=utf-8",
            b"<html><head><title>Plain page</title></head><body><article><h1>Plain page</h1>"
            b"<p>The moon orbits the earth every 27.3 days, a sidereal month.</p>"
            b"</article></body></html>",
        ),
        "/notes.txt": (200, "text/plain", b"Plain text notes about the lighthouse workshop."),
        "/image.png": (200, "image/png", b"\x89PNG\r\n\x1a\n" + bytes(256)),
        "/data.bin": (200, "application/octet-stream", os.urandom(512)),
        "/empty": (200, "text/html", b""),
        "/server-error": (500, "text/html", b"<h1>boom</h1>"),
    }

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/huge":
            # 30 MB of HTML with no Content-Length: only counting the bytes can stop it.
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            block = b"<p>" + b"a" * 1_048_576 + b"</p>"
            try:
                for _ in range(30):
                    self.wfile.write(block)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should
            return
        if self.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(100 * 1024**3))
            self.end_headers()
            return
        status, content_type, body = self.routes.get(
            self.path, (404, "text/html", b"<h1>Not found</h1>")
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def awkward_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AwkwardHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragtune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def run_cli_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> subprocess.CompletedProcess[str]:
    """``ragtune ARGS`` through cli.main, in this process: no interpreter and torch start-up."""
    from ragtune import cli

    monkeypatch.setattr("sys.argv", ["ragtune", *args])
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return subprocess.CompletedProcess(
        args, code if isinstance(code, int) else 1, captured.out, captured.err
    )


def one_line_message(error: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    """A raised error's message: one line that names every fragment."""
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failure is one line on stderr that names the problem, a non-zero exit, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
