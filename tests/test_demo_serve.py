"""``ragtune demo --serve``: the demo shop served in the foreground, as a user runs it (a
subprocess), until SIGTERM or Ctrl-C; a port already taken is one error line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from tests.helpers import assert_one_line_error, run_cli

READY = "Serving the demo shop at http://127.0.0.1:{port}/ (Ctrl-C to stop)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def demo_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``ragtune demo --serve ARGS`` running; yields the process and its first stderr line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ragtune", "demo", "--serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        # As from a terminal: a shell's background job (CI under nohup ... &) inherits
        # SIGINT ignored, and Ctrl-C would then never reach the server.
        preexec_fn=_default_sigint,
    )
    try:
        yield process, process.stderr.readline() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.read().decode()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_serves_the_shop_with_clean_urls_until_stopped(stop: signal.Signals) -> None:
    port = free_port()
    with demo_server("--port", str(port)) as (process, first_line):
        assert first_line.rstrip("\n") == READY.format(port=port)
        status, listing = get(f"http://127.0.0.1:{port}/products")
        assert status == 200 and "Dark Energy Potion" in listing
        status, page = get(f"http://127.0.0.1:{port}/products/dark-energy-potion")
        assert status == 200 and "cherry cola" in page
        process.send_signal(stop)
        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert stdout == "" and "Traceback" not in stderr
    with pytest.raises(OSError):  # the port is closed again
        get(f"http://127.0.0.1:{port}/products")


def test_port_in_use_is_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("demo", "--serve", "--port", str(port), timeout=60)
    assert_one_line_error(result, f"127.0.0.1:{port}", "in use", "--port")
    assert result.returncode == 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--serve", "--question", "Who?"), "--question cannot be used with --serve"),
        (("--port", "8001"), "--port needs --serve"),
    ],
)
def test_options_the_mode_would_ignore_are_refused(args: tuple[str, ...], fragment: str) -> None:
    result = run_cli("demo", *args, timeout=60)
    assert_one_line_error(result, fragment)


def test_a_sigterm_landing_while_a_request_is_handled_still_stops_the_server() -> None:
    """socketserver catches every Exception raised while it handles a request: the stop
    must not be one, or a SIGTERM landing there is swallowed and the server runs on.
    The signal is sent from inside request handling, so it lands there every time."""
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from ragtune.shop_server import serve_until_stopped

    class SignalledServer(ThreadingHTTPServer):
        def process_request(self, request: Any, client_address: Any) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            super().process_request(request, client_address)

    server = SignalledServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    port = server.server_address[1]
    watchdog = threading.Timer(15, server.shutdown)  # ends a server the signal failed to stop
    client = threading.Thread(target=_get_quietly, args=(f"http://127.0.0.1:{port}/",))
    watchdog.start()
    client.start()
    started = time.monotonic()
    try:
        serve_until_stopped(server)
    finally:
        watchdog.cancel()
        client.join(timeout=15)
    assert time.monotonic() - started < 10, "the SIGTERM was swallowed"


def _get_quietly(url: str) -> None:
    with suppress(OSError):
        urllib.request.urlopen(url, timeout=5).close()
