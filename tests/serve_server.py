"""``running_server(config)``: ``ragtune serve``'s app under uvicorn on 127.0.0.1, in a thread.

A real server on a free port, answering over real sockets: what a client such as the
``openai`` package meets. It waits until ``/health`` answers and shuts down cleanly
(uvicorn's graceful shutdown) when the ``with`` block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from ragtune.serve.app import create_app
from ragtune.serve.config import ServeConfig
from ragtune.serve.state import ServerState

STARTUP_SECONDS = 120.0


@contextmanager
def running_server(
    config: ServeConfig, state: ServerState | None = None, **uvicorn_options: Any
) -> Iterator[str]:
    """Serve ``create_app(config, state)``; yields the base URL (``http://127.0.0.1:PORT``)."""
    app = create_app(config, state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "timeout_graceful_shutdown": 10}
    options.update(uvicorn_options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    # uvicorn installs no signal handlers outside the main thread: should_exit stops it.
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="serve", daemon=True
    )
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base, thread)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _wait_until_healthy(base: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the server stopped while starting")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not answer /health within {STARTUP_SECONDS:.0f} s")
