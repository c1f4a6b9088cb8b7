"""A stand-in for the Hugging Face Hub's file routes on 127.0.0.1, for ``HF_ENDPOINT``.

It answers what ``huggingface_hub.hf_hub_download`` asks: ``HEAD`` and ``GET``
``/{owner}/{name}/resolve/{revision}/{file}``, the HEAD with the headers the real Hub sends
for an LFS file (``X-Repo-Commit``, ``ETag`` and ``X-Linked-Etag`` holding the SHA-256,
``X-Linked-Size``, ``Content-Length``), the GET with ``Range`` support (206 and
``Content-Range``), and the Hub's errors (401/404 with ``X-Error-Code``: ``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``). tests/webserver.py answers neither HEAD nor
Range, hence this server beside it.

A file can misbehave as a test needs: drop the connection partway through its first
full transfer, or serve bytes other than those its checksum states.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote

from tests.webserver import serve_handler

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)")
_RANGE = re.compile(r"bytes=(?P<start>\d+)-")


@dataclass
class HubFile:
    """A file in a repository. ``served`` is what a GET sends (by default ``content``:
    other bytes make a checksum mismatch); ``cut_after`` drops the connection after that
    many bytes of the first GET that asks for the whole file."""

    content: bytes
    served: bytes | None = None
    cut_after: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class FakeHub:
    """Repositories by id, each a dict of files; ``tokens`` makes a repository private:
    it answers only requests that carry ``Authorization: Bearer TOKEN``."""

    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    base: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, repo: str, filename: str, file: HubFile) -> None:
        self.repos.setdefault(repo, {})[filename] = file

    def requests(self, method: str | None = None) -> list[Logged]:
        with self._lock:
            return [r for r in self.log if method is None or r.method == method]

    def transfers(self) -> list[Logged]:
        """The GET requests for files (huggingface_hub also asks the Hub other things)."""
        return [r for r in self.requests("GET") if "/resolve/" in r.path]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.log.append(
                Logged(
                    handler.command,
                    handler.path,
                    headers.get("range"),
                    headers.get("authorization"),
                )
            )
        match = _RESOLVE.fullmatch(handler.path.split("?")[0])
        if match is None:
            return _error(handler, 404, "RepoNotFound")
        repo, revision = match["repo"], unquote(match["revision"])
        files = self.repos.get(repo)
        token = self.tokens.get(repo)
        if files is None or (token and headers.get("authorization") != f"Bearer {token}"):
            # The Hub answers a private repository as it answers a missing one.
            return _error(handler, 401 if token else 404, "RepoNotFound")
        if revision not in ("main", COMMIT):
            return _error(handler, 404, "RevisionNotFound")
        file = files.get(unquote(match["file"]))
        if file is None:
            return _error(handler, 404, "EntryNotFound", {"X-Repo-Commit": COMMIT})
        if handler.command == "HEAD":
            return _head(handler, file)
        return self._get(handler, file, headers.get("range"))

    def _get(self, handler: BaseHTTPRequestHandler, file: HubFile, range_: str | None) -> None:
        body = file.content if file.served is None else file.served
        start = 0
        if range_ and (wanted := _RANGE.fullmatch(range_)):
            start = int(wanted["start"])
        with self._lock:  # the cut happens once: the resumed transfer completes
            cut = file.cut_after if start == 0 else None
            if cut is not None:
                file.cut_after = None
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body) - start))
        handler.send_header("Accept-Ranges", "bytes")
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.end_headers()
        if cut is None:
            handler.wfile.write(body[start:])
            return
        handler.wfile.write(body[:cut])
        handler.wfile.flush()
        # Mid-body, as a dropped connection does: the client has fewer bytes than promised.
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)


def _head(handler: BaseHTTPRequestHandler, file: HubFile) -> None:
    handler.send_response(200)
    for name, value in {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(file.content)),
        "Accept-Ranges": "bytes",
        "X-Repo-Commit": COMMIT,
        "ETag": f'"{file.sha256}"',
        "X-Linked-Etag": f'"{file.sha256}"',
        "X-Linked-Size": str(len(file.content)),
    }.items():
        handler.send_header(name, value)
    handler.end_headers()


def _error(
    handler: BaseHTTPRequestHandler, status: int, code: str, extra: dict[str, str] | None = None
) -> None:
    body = b'{"error": "' + code.encode() + b'"}'
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("X-Error-Code", code)
    for name, value in (extra or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@contextmanager
def serve_hub(hub: FakeHub) -> Iterator[FakeHub]:
    """Run ``hub`` on a free loopback port; ``hub.base`` is the value for HF_ENDPOINT."""

    class HubHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:  # noqa: N802
            hub.handle(self)

        def do_GET(self) -> None:  # noqa: N802
            with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up, as it may
                hub.handle(self)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    with serve_handler(HubHandler) as base:
        hub.base = base
        yield hub
