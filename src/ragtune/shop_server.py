"""Serve the static demo shop on a free loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from ragtune.assets import demo_shop_dir

if TYPE_CHECKING:  # ingest loads only when the shop is crawled
    from ragtune.ingest import IngestSettings


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


@contextmanager
def serve_shop(directory: Path | None = None, port: int = 0) -> Iterator[str]:
    """Serve the shop in a background thread; yields its base URL, e.g. http://127.0.0.1:PORT."""
    handler = partial(_CleanURLHandler, directory=str(directory or demo_shop_dir()))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
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
