"""A scriptable HTTP server on 127.0.0.1 that logs every request it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[["Request"], "Reply | None"]


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterator[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float


class Site:
    """Routes map a path to a Reply or to a function of the Request."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | Handler] = {}
        self.log: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.base = ""

    def page(self, path: str, html: str, **headers: str) -> None:
        self.routes[path] = Reply(body=html.encode("utf-8"), headers=dict(headers))

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.log if r.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        request = Request(
            handler.path, {k.lower(): v for k, v in handler.headers.items()}, time.monotonic()
        )
        with self._lock:
            self.log.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            route = self.routes.get(handler.path.split("?")[0])
            reply = route(request) if callable(route) else route
            if reply is None:
                reply = Reply(404, b"<h1>Not found</h1>")
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if isinstance(reply.body, bytes):
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
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it was meant to
        finally:
            with self._lock:
                self.in_flight -= 1


@contextmanager
def serve(site: Site) -> Iterator[Site]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            site._handle(self)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
