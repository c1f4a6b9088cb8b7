"""A scriptable HTTP server on 127.0.0.1 that logs every request it receives.

The one local HTTP server of the tests: a ``Site`` maps paths to replies, ``serve``
runs it on a free loopback port. A route is a fixed ``Reply``, a function of the
``Request`` (for answers that depend on the method, headers or body), or ``in_turn``
(a scripted sequence, e.g. two 503s then an answer). A ``RawReply`` writes bytes as
they are, status line included, for servers that break HTTP on purpose.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[["Request"], "Reply | RawReply | None"]

NOT_FOUND_BODY = b"<h1>Not found</h1>"


@dataclass
class Reply:
    """An HTTP response. A bytes body is sent with its Content-Length (unless ``headers``
    states one, to lie about it); an iterator body is streamed with no length, and the
    connection closes after it."""

    status: int = 200
    body: bytes | Iterator[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"


@dataclass
class RawReply:
    """Bytes written to the socket exactly as given, status line and headers included;
    each chunk is flushed as it comes, so a generator can drip them. The connection
    closes after the last one."""

    chunks: Iterable[bytes]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float
    method: str = "GET"
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def in_turn(first: Reply, *then: Reply) -> Handler:
    """A route that answers with each reply in turn, then repeats the last one."""
    remaining = [first, *then]
    lock = threading.Lock()

    def answer(request: Request) -> Reply:
        with lock:
            return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return answer


class Site:
    """Routes map a path to a Reply, a RawReply or a function of the Request (GET or
    POST; the request's method and body are in the Request). A query string is ignored
    when matching. A path ending in ``*`` is a prefix route: ``/v1/*`` answers every path
    under ``/v1/`` and ``/*`` every path; an exact route wins, then the longest prefix."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | RawReply | Handler] = {}
        self.log: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.base = ""

    def page(self, path: str, html: str, **headers: str) -> None:
        self.routes[path] = Reply(body=html.encode("utf-8"), headers=dict(headers))

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path == path]

    def route_for(self, path: str) -> Reply | RawReply | Handler | None:
        if path in self.routes:
            return self.routes[path]
        prefixes = [key for key in self.routes if key.endswith("*") and path.startswith(key[:-1])]
        return self.routes[max(prefixes, key=len)] if prefixes else None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        length = int(headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(handler.path, headers, time.monotonic(), handler.command, body)
        with self._lock:
            self.log.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                route = self.route_for(handler.path.split("?")[0])
                reply = route(request) if callable(route) else route
            finally:
                # In flight until the reply is ready, not until this thread has
                # written it: the client may read the last byte, free its slot and
                # send the next request before this thread runs again on a busy
                # machine, and the count would then exceed a limit the client kept.
                with self._lock:
                    self.in_flight -= 1
            if reply is None:
                reply = Reply(404, NOT_FOUND_BODY)
            if isinstance(reply, RawReply):
                _write_raw(handler, reply)
            else:
                _write_reply(handler, reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it was meant to


def _write_reply(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    handler.send_response(reply.status)
    handler.send_header("Content-Type", reply.content_type)
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    states_length = any(name.lower() == "content-length" for name in reply.headers)
    if isinstance(reply.body, bytes):
        if not states_length:
            handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)
    else:
        # No length: the end of the body is the end of the connection.
        handler.send_header("Connection", "close")
        handler.close_connection = True
        handler.end_headers()
        for chunk in reply.body:
            handler.wfile.write(chunk)
            handler.wfile.flush()


def _write_raw(handler: BaseHTTPRequestHandler, reply: RawReply) -> None:
    handler.close_connection = True  # nothing here says where the response ends
    for chunk in reply.chunks:
        handler.wfile.write(chunk)
        handler.wfile.flush()


@contextmanager
def serve(site: Site) -> Iterator[Site]:
    class SiteHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            site._handle(self)

        def do_POST(self) -> None:  # noqa: N802
            site._handle(self)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    with serve_handler(SiteHandler) as base:
        site.base = base
        yield site


@contextmanager
def serve_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a background thread; yields the
    base URL (``http://127.0.0.1:PORT``) and shuts the server down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def dripping_headers_server() -> Iterator[str]:
    """The URL of a server that sends its status line, then one header line every 0.2 s
    for 30 s: a response that never completes, however patient the client's read timeout.
    (Raw sockets: the http.server machinery above cannot send headers slowly.)"""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def drip(connection: socket.socket) -> None:
        with connection:
            try:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n")
                for n in range(150):
                    if stop.is_set():
                        return
                    connection.sendall(f"X-Drip-{n}: still coming\r\n".encode())
                    time.sleep(0.2)
            except OSError:
                return  # the client gave up, as it should

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed: the test is over
                return
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        listener.close()
