"""Serve the static demo shop on loopback: in a background thread for ``ragtune demo``,
the tests and the benchmarks (``serve_shop``), or in the foreground until Ctrl-C or
SIGTERM for ``ragtune demo --serve`` (``bind_shop`` then ``serve_until_stopped``)."""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ragtune.assets import demo_shop_dir

if TYPE_CHECKING:  # ingest loads only when the shop is crawled
    from ragtune.ingest import IngestSettings

LOOPBACK = "127.0.0.1"


class _CleanURLHandler(SimpleHTTPRequestHandler):
    """Serves /products/x from products/x.html, so the shop has extension-less URLs."""

    def translate_path(self, path: str) -> str:
        local = Path(super().translate_path(path))
        page = local.with_name(local.name + ".html")
        return str(page if not local.is_file() and page.is_file() else local)

    def list_directory(self, path: str) -> None:  # type: ignore[override]
        self.send_error(404, "Not found")
        return None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the demo prints its own progress


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def bind_shop(
    host: str = LOOPBACK, port: int = 0, directory: Path | None = None
) -> ThreadingHTTPServer:
    """A server for the shop, bound and listening but not yet serving (port 0: any free one).

    Raises OSError when the address cannot be bound (port in use, no such address).
    """
    handler = partial(_CleanURLHandler, directory=str(directory or demo_shop_dir()))
    address = host.strip("[]")
    server_class = _IPv6Server if ":" in address else ThreadingHTTPServer
    return server_class((address, port), handler)


def base_url(server: ThreadingHTTPServer) -> str:
    """The server's root URL without the trailing slash, e.g. http://127.0.0.1:8000."""
    host, port = server.socket.getsockname()[:2]  # the port bound when asked for port 0
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@contextmanager
def serve_shop(directory: Path | None = None, port: int = 0) -> Iterator[str]:
    """Serve the shop in a background thread; yields its base URL, e.g. http://127.0.0.1:PORT."""
    server = bind_shop(LOOPBACK, port, directory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base_url(server)
    finally:
        server.shutdown()
        server.server_close()


class _Stop(BaseException):
    """Raised by the SIGTERM handler to leave ``serve_forever``. A BaseException, as
    KeyboardInterrupt is: socketserver catches every Exception raised while it handles
    a request, and a SIGTERM landing there was swallowed (the server ran on)."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def serve_until_stopped(server: ThreadingHTTPServer) -> None:
    """Serve in this thread until Ctrl-C or SIGTERM, then close the socket and return.

    Both are the normal way to stop a foreground server, so both end it the same way.
    Requests still being answered are dropped: the pages are static and small.
    """
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


# Where `ragtune demo` starts its crawl of the shop, and how it crawls: the product
# listing links to every page; nothing needs a browser.
SHOP_START = "/products"


def shop_crawl_settings() -> IngestSettings:
    from ragtune.ingest import IngestSettings

    return IngestSettings(
        crawl=True, max_pages=500, max_depth=4, render="never", skip_failures=True
    )


def crawl_shop(index_dir: Path) -> int:
    """Serve the shop and ingest it into ``index_dir`` as ``ragtune demo`` does; the
    number of chunks written (benchmarks build their index this way)."""
    from ragtune.ingest import ingest

    with serve_shop() as base:
        result = ingest([f"{base}{SHOP_START}"], index_dir, shop_crawl_settings())
    return int(result.stats["chunks"])
